"""Images per second of the training input pipeline (TFRecords, decode, paired jitter).

Usage:
  python benchmarks/bench_input_pipeline.py                # facades, paper jitter, batch 1
  python benchmarks/bench_input_pipeline.py --images=3000 --repeats=5
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 2000, "Images per timed run.")
flags.DEFINE_integer("repeats", 5, "Timed runs (median reported).")
flags.DEFINE_integer("batch_size", 1, "Batch size.")
flags.DEFINE_string("data_dir", "", "TFRecords; default: facades from ../shared/data.")


def main(argv):
    del argv
    from benchmarks.common import facades_records, machine, report, summary
    from tf_pix2pix.configuration import DataConfig
    from tf_pix2pix.data import build_dataset

    data_dir = FLAGS.data_dir or facades_records()
    config = DataConfig(data_dir=data_dir, batch_size=FLAGS.batch_size)
    iterator = iter(build_dataset(config, "train", training=True))
    batches = FLAGS.images // FLAGS.batch_size
    for _ in range(200):
        next(iterator)
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        times.append(time.perf_counter() - start)
    stats = summary(times)
    rate = batches * FLAGS.batch_size / stats["median_s"]
    result = {"benchmark": "input_pipeline", "images_per_s": rate, "batch_size": FLAGS.batch_size,
              "images": batches * FLAGS.batch_size, **stats, **machine()}
    report(result, [("images/s (median)", f"{rate:.0f}"),
                    ("run", f"{batches * FLAGS.batch_size} images x {FLAGS.repeats} runs")])


if __name__ == "__main__":
    app.run(main)
