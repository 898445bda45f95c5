"""Latency and throughput of an exported SavedModel's ``translate`` signature.

Usage:
  python benchmarks/bench_serving.py                       # exports a paper-size model first
  python benchmarks/bench_serving.py --saved_model exported/demo/1 --size=128

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
flags.DEFINE_integer("size", 256, "Image height and width.")
flags.DEFINE_integer("repeats", 30, "Timed calls for the batch-1 latency.")
flags.DEFINE_integer("batch_repeats", 5, "Timed calls for the batch-8 throughput.")
flags.DEFINE_enum("test_mode", "eval", ["eval", "paper"], "Mode of the export.")


def _export_fresh_model() -> str:
    import tensorflow as tf

    from benchmarks.common import scratch_dir
    from tf_pix2pix.config import ExperimentConfig, TrainConfig, save_config
    from tf_pix2pix.export_lib import ExportConfig, export
    from tf_pix2pix.networks import build_generator

    model_dir = scratch_dir("bench_serving_")
    config = ExperimentConfig(train=TrainConfig(model_dir=model_dir))
    save_config(config, model_dir)
    generator = build_generator(config.model, 3, 3)
    path = tf.train.Checkpoint(generator=generator).save(
        os.path.join(model_dir, "checkpoints", "ckpt"))
    return export(ExportConfig(model_dir=model_dir, export_dir=os.path.join(model_dir, "export"),
                               checkpoint=path, test_mode=FLAGS.test_mode))


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks.common import machine, report, summary, time_calls

    path = FLAGS.saved_model or _export_fresh_model()
    translate = tf.saved_model.load(path).signatures["translate"]
    one = tf.random.uniform([1, FLAGS.size, FLAGS.size, 3], -1, 1)
    eight = tf.random.uniform([8, FLAGS.size, FLAGS.size, 3], -1, 1)
    latency = summary(time_calls(lambda: translate(images=one)["images"].numpy(), warmup=3,
                                 repeats=FLAGS.repeats))
    batch = summary(time_calls(lambda: translate(images=eight)["images"].numpy(), warmup=2,
                               repeats=FLAGS.batch_repeats))
    throughput = 8 / batch["median_s"]
    result = {"benchmark": "serving_translate", "size": FLAGS.size, "test_mode": FLAGS.test_mode,
              "p50_s": latency["median_s"], "p95_s": latency["p95_s"],
              "batch8_images_per_s": throughput,
              "saved_model": FLAGS.saved_model or "fresh export (removed at exit)", **machine()}
    report(result, [("batch-1 p50 / p95", f"{latency['median_s']:.3f} / "
                                          f"{latency['p95_s']:.3f} s"),
                    ("batch-8 throughput", f"{throughput:.1f} images/s")])


if __name__ == "__main__":
    app.run(main)
