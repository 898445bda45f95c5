"""Translates a folder or a TFRecord split; writes images, an HTML gallery and metrics.

Examples:
  # A|B pairs (input | target): outputs, index.html, metrics.json, metrics.csv
  python run_predict.py --model_dir runs/demo --input_dir data/demo/images/test \
      --source=aligned --output_dir results/demo
  # Plain input images through an exported SavedModel version
  python run_predict.py --saved_model exported/demo/1 --input_dir photos --output_dir out
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

from tf_pix2pix.cli import UserError, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training directory to restore the generator from.")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix; default: the latest in --model_dir.")
flags.DEFINE_string("saved_model", None, "An exported version folder (export_dir/<version>).")
flags.DEFINE_string("input_dir", None, "Folder of images (--source=images) or A|B pairs "
                    "(--source=aligned).")
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
flags.DEFINE_bool("plot_losses", False, "Write <output_dir>/losses.png from --model_dir's "
                  "TensorBoard events.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tf_pix2pix import predict_lib

    f = FLAGS
    if f.plot_losses:
        if not f.model_dir:
            raise UserError("--plot_losses needs --model_dir")
        path = predict_lib.plot_losses(f.model_dir, os.path.join(f.output_dir, "losses.png"))
        print(f"wrote {path}")
        if not (f.input_dir or f.tfrecord_dir):
            return
    if bool(f.model_dir) == bool(f.saved_model):
        raise UserError("pass exactly one of --model_dir and --saved_model")
    if bool(f.input_dir) == bool(f.tfrecord_dir):
        raise UserError("pass exactly one of --input_dir and --tfrecord_dir")
    translator = (predict_lib.translator_from_model_dir(f.model_dir, f.test_mode, f.checkpoint,
                                                        f.direction)
                  if f.model_dir else predict_lib.translator_from_saved_model(f.saved_model))
    skipped: list[dict[str, str]] = []
    source, path = (("tfrecord", f.tfrecord_dir) if f.tfrecord_dir else (f.source, f.input_dir))
    examples = predict_lib.iterate_examples(source, path, translator.config, f.split,
                                            f.on_bad_image, skipped, translator.direction)
    summary = predict_lib.predict(translator, examples, f.output_dir, f.progress, skipped)
    line = f"translated {summary['count']} image(s) into {f.output_dir} (index.html)"
    if "l1" in summary:
        line += (f"; L1={summary['l1']:.4f} PSNR={summary['psnr']:.2f} dB "
                 f"SSIM={summary['ssim']:.4f} (metrics.json, metrics.csv)")
    print(line)
    print(f"skipped: {summary['num_skipped']}")
    for s in skipped:
        print(f"  skipped {s['file']}: {s['reason']}")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
