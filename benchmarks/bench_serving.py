"""Latency and throughput of an exported SavedModel's ``translate`` signature, and the batch-1
latency of the TFLite (LiteRT interpreter) and ONNX (ONNX Runtime) files of the same export.

Usage:
  python benchmarks/bench_serving.py                       # exports a paper-size model first
  python benchmarks/bench_serving.py --model=cycle_gan     # the reference's CycleGAN generator
  python benchmarks/bench_serving.py --saved_model exported/demo/1 --size=128
  # pix2pixHD's local enhancer on 2048x1024 label maps (SavedModel, LiteRT, ONNX Runtime)
  python benchmarks/bench_serving.py --model=pix2pix_hd --options=netG=local,ngf=32 \
      --size=1024 --width=2048 --repeats=3 --batch_repeats=0 --quantize=float32

Without --saved_model it trains nothing: it saves a freshly initialised paper-configuration
generator as a checkpoint and exports it (the speed does not depend on the weights).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", "", "An exported version folder; default: export one.")
flags.DEFINE_integer("size", 256, "Image height (and width).")
flags.DEFINE_integer("width", 0, "Image width; 0 = --size.")
flags.DEFINE_list("options", [], "Model options of the fresh export as name=value (netG=local, "
                  "ngf=32, ...).")
flags.DEFINE_list("quantize", ["float32", "float16", "dynamic"], "TFLite variants to export.")
flags.DEFINE_list("formats", ["tflite", "onnx"], "Other runtimes' files to export and time.")
flags.DEFINE_integer("repeats", 30, "Timed calls for the batch-1 latency.")
flags.DEFINE_integer("batch_repeats", 5, "Timed calls for the batch-8 throughput (0: skip).")
flags.DEFINE_enum("test_mode", "eval", ["eval", "paper"], "Mode of the export.")
flags.DEFINE_string("model", "pix2pix", "A registered model (tf_pix2pix.models) whose "
                    "reference generator is exported fresh.")


def _export_fresh_model() -> str:
    import tensorflow as tf

    from benchmarks.common import parse_options, scratch_dir
    from tf_pix2pix import models
    from tf_pix2pix.configuration import save_config
    from tf_pix2pix.serving.export import ExportConfig, export

    model_dir = scratch_dir("bench_serving_")
    model = models.get(FLAGS.model)
    chosen = parse_options(FLAGS.options)
    config = models.resolve(FLAGS.model, model_dir=model_dir, **chosen)
    save_config(config, model_dir)
    root = model.generator_slots(config)["AtoB"].root
    generator = model.build_generator(config, "AtoB")
    path = tf.train.Checkpoint(**{root: generator}).save(
        os.path.join(model_dir, "checkpoints", "ckpt"))
    formats = ("saved_model",) if FLAGS.test_mode == "paper" else ("saved_model",
                                                                     *FLAGS.formats)
    return export(ExportConfig(model_dir=model_dir, export_dir=os.path.join(model_dir, "export"),
                               checkpoint=path, test_mode=FLAGS.test_mode, formats=formats,
                               tflite_size=FLAGS.size, tflite_width=FLAGS.width,
                               tflite_variants=tuple(FLAGS.quantize)))


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks.common import machine, report, summary, time_calls
    from tf_pix2pix.serving.export import read_export_info

    import resource

    path = FLAGS.saved_model or _export_fresh_model()
    translate = tf.saved_model.load(path).signatures["translate"]
    channels = translate.structured_input_signature[1]["images"].shape[-1]
    width = FLAGS.width or FLAGS.size
    one = tf.random.uniform([1, FLAGS.size, width, channels], -1, 1)
    latency = summary(time_calls(lambda: translate(images=one)["images"].numpy(),
                                 warmup=min(3, FLAGS.repeats), repeats=FLAGS.repeats))
    rows = [("SavedModel batch-1 p50 / p95", f"{latency['median_s']:.3f} / "
                                             f"{latency['p95_s']:.3f} s")]
    throughput = float("nan")
    if FLAGS.batch_repeats:
        eight = tf.random.uniform([8, FLAGS.size, width, channels], -1, 1)
        batch = summary(time_calls(lambda: translate(images=eight)["images"].numpy(), warmup=2,
                                   repeats=FLAGS.batch_repeats))
        throughput = 8 / batch["median_s"]
        rows.append(("SavedModel batch-8 throughput", f"{throughput:.1f} images/s"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    rows.append(("peak RSS so far (export, SavedModel)", f"{rss:.2f} GiB"))
    others = {}
    for item in read_export_info(path).get("files", []):
        rows.append((f"peak RSS before {item['file']}",
                     f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2:.2f} GiB"))
        if item["format"] == "tflite" and item["input_shape"][1:3] != [FLAGS.size, width]:
            continue
        stats = _runtime_latency(os.path.join(path, item["file"]), item["format"],
                                 one.numpy())
        others[item["file"]] = {"p50_s": stats["median_s"], "p95_s": stats["p95_s"],
                                "mib": item["bytes"] / 2 ** 20,
                                "max_abs_error": item["max_abs_error"]}
        rows.append((f"{item['file']} batch-1 p50 / p95",
                     f"{stats['median_s']:.3f} / {stats['p95_s']:.3f} s "
                     f"({item['bytes'] / 2 ** 20:.1f} MiB, max |diff| "
                     f"{item['max_abs_error']:.1e})"))
    result = {"benchmark": "serving_translate", "size": FLAGS.size, "width": width,
              "test_mode": FLAGS.test_mode, "model": FLAGS.model, "options": FLAGS.options,
              "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
              "p50_s": latency["median_s"], "p95_s": latency["p95_s"],
              "batch8_images_per_s": throughput, "other_runtimes": others,
              "saved_model": FLAGS.saved_model or "fresh export (removed at exit)", **machine()}
    report(result, rows)


def _runtime_latency(path: str, fmt: str, image):
    """Batch-1 latency of a .tflite file (LiteRT) or an .onnx file (ONNX Runtime)."""
    from benchmarks.common import summary, time_calls
    from tf_pix2pix.serving.convert import onnx_runner, tflite_runner

    with open(path, "rb") as f:
        model = f.read()
    call = (tflite_runner if fmt == "tflite" else onnx_runner)(model)
    return summary(time_calls(lambda: call(image), warmup=min(3, FLAGS.repeats),
                              repeats=FLAGS.repeats))


if __name__ == "__main__":
    app.run(main)
