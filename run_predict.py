"""Translates a folder or a TFRecord split; writes images, an HTML gallery and metrics.

Examples:
  # A|B pairs (input | target): outputs, index.html, metrics.json, metrics.csv
  python run_predict.py --model_dir runs/demo --input_dir data/demo/images/test \
      --source=aligned --output_dir results/demo
  # Plain input images through an exported SavedModel version (a folder, a file or a pattern)
  python run_predict.py --saved_model exported/demo/1 --input_dir photos --output_dir out
  python run_predict.py --saved_model exported/demo/1 --input 'shots/*.jpg' --output_dir out
  # A TFRecord split built by data_prep.build_tfrecords
  python run_predict.py --model_dir runs/demo --tfrecord_dir data/demo/tfrecords --split=test \
      --output_dir results/test
  # CycleGAN: G_B (B -> A) on the testB domain of unaligned TFRecords
  python run_predict.py --model_dir runs/h2z --tfrecord_dir data/h2z --split=test \
      --direction=BtoA --output_dir results/zebra2horse
  # Loss curves of a training run as a PNG
  python run_predict.py --model_dir runs/demo --plot_losses --output_dir results/demo
"""

from __future__ import annotations

import os

from absl import flags

# First: cli quiets TensorFlow's start-up banner before anything imports TensorFlow.
from tf_pix2pix.cli import UserError, define_flags, run_main  # noqa: I001
from tf_pix2pix import api
from tf_pix2pix.configuration import MetricsConfig, option_fields
from tf_pix2pix.metrics.fcn_score import table
from tf_pix2pix.serving import predict as predict_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training directory to restore the generator from.")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix; default: the latest in --model_dir.")
flags.DEFINE_string("saved_model", None, "An exported version folder (export_dir/<version>).")
flags.DEFINE_string("input_dir", None, "Images to translate (--source=images) or A|B pairs "
                    "(--source=aligned): a folder, one file, or a quoted pattern such as "
                    "'shots/*.jpg'.")
flags.DEFINE_alias("input", "input_dir")
flags.DEFINE_enum("source", "images", ["images", "aligned"],
                  "What --input_dir holds: plain input images, or A|B pairs with targets.")
flags.DEFINE_string("tfrecord_dir", None, "TFRecord folder (instead of --input_dir).")
flags.DEFINE_string("split", "test", "Split of --tfrecord_dir.")
flags.DEFINE_string("output_dir", None, "Where images, index.html and metrics go.")
flags.DEFINE_enum("test_mode", "eval", ["eval", "paper"],
                  "With --model_dir: eval (dropout off, running BN statistics) or paper (dropout "
                  "on, batch statistics). A SavedModel keeps the mode it was exported with.")
flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"],
                  "With --model_dir of a CycleGAN: translate with G_A (AtoB) or G_B (BtoA); a "
                  "TFRecord split of unaligned data then reads domain A or B.")
flags.DEFINE_enum("on_bad_image", "fail", ["fail", "skip"],
                  "fail: stop at the first unreadable image; skip: skip, count and list it.")
flags.DEFINE_list("metrics", ["l1", "psnr", "ssim"], "With targets: any of l1, psnr, ssim, "
                  "fid, kid (FID/KID over the whole set, Inception-v3 features); fcn: the "
                  "paper's FCN-score with --segmenter (also without targets).")
define_flags(MetricsConfig)  # FID/KID and FCN-score options, stated once
flags.DEFINE_enum("protocol", "native", ["native", "reference"],
                  "native: every image at its own size, --test_mode as given; reference: as the "
                  "reference's test.py, inputs resized to 256x256 and paper test mode.")
flags.DEFINE_bool("plot_losses", False, "Write <output_dir>/losses.png from --model_dir's "
                  "TensorBoard events.")
flags.DEFINE_bool("overwrite", False, "Replace an --output_dir that holds an earlier "
                  "prediction (without it the folder must be new or empty).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> None:
    f = FLAGS
    if f.plot_losses and not f.model_dir:
        raise UserError("--plot_losses needs --model_dir")
    if f.plot_losses and not (f.input_dir or f.tfrecord_dir):
        _plot_losses()
        return
    if bool(f.model_dir) == bool(f.saved_model):
        raise UserError("pass exactly one of --model_dir and --saved_model")
    if bool(f.input_dir) == bool(f.tfrecord_dir):
        raise UserError("pass exactly one of --input_dir and --tfrecord_dir")
    if f.saved_model and f.checkpoint:
        raise UserError("--checkpoint chooses a checkpoint of --model_dir; a --saved_model "
                        "holds one")
    model_dir = f.model_dir
    summary = api.predict(
        model_dir or f.saved_model, f.output_dir, f.input_dir or "", f.tfrecord_dir or "",
        f.source, f.split, checkpoint=f.checkpoint, on_bad_image=f.on_bad_image,
        metrics=tuple(f.metrics), protocol=f.protocol, progress=f.progress,
        overwrite=f.overwrite,
        # With --model_dir the flags choose; a SavedModel keeps what it was exported with.
        direction=f.direction if model_dir else None,
        test_mode=(f.test_mode if model_dir or f["test_mode"].present else None),
        **{field.name: f[name].value
           for name, (_, field) in option_fields(MetricsConfig).items()})
    line = f"translated {summary['count']} image(s) into {f.output_dir} (index.html)"
    scores = [f"{name}={summary[key]:{fmt}}" for key, name, fmt in (
        ("l1", "L1", ".4f"), ("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f"),
        ("fid", "FID", ".2f"), ("kid", "KID", ".4f")) if key in summary]
    if scores:
        line += f"; {' '.join(scores)} (metrics.json, metrics.csv)"
    print(line)
    if "fcn" in summary:
        print(f"FCN-score ({summary['fcn']['pixels']} labelled pixels):")
        print(table(summary))
    if "fid_warning" in summary:
        print(f"warning: {summary['fid_warning']}")
    print(f"skipped: {summary['num_skipped']}")
    for s in summary["skipped"]:
        print(f"  skipped {s['file']}: {s['reason']}")
    if f.plot_losses:  # after the predictions, which replace the folder as a whole
        _plot_losses()


def _plot_losses() -> None:
    path = predict_lib.plot_losses(FLAGS.model_dir, os.path.join(FLAGS.output_dir, "losses.png"))
    print(f"wrote {path}")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
