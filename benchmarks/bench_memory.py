"""Peak resident memory of a training run of run_train.py (paper configuration by default).

Usage:
  python benchmarks/bench_memory.py --steps=30 [--precision=mixed_bfloat16]

Runs ``run_train.py`` as a child process on facades TFRecords and reports the child's peak RSS
(``ru_maxrss``), which includes checkpoint writes (every 10 steps here).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 30, "Training steps.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras mixed-precision policy.")


def main(argv):
    del argv
    from benchmarks.common import facades_records, machine, report, scratch_dir

    data_dir = facades_records()
    model_dir = scratch_dir("bench_memory_")
    repo = os.path.join(os.path.dirname(__file__), "..")
    cmd = [sys.executable, os.path.join(repo, "run_train.py"), "--data_dir", data_dir,
           "--direction=BtoA", "--model_dir", model_dir, f"--max_steps={FLAGS.steps}",
           "--save_every_steps=10", f"--precision={FLAGS.precision}", "--noprogress",
           "--val_max_examples=0"]
    subprocess.run(cmd, check=True, capture_output=True)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    result = {"benchmark": "train_peak_rss", "peak_rss_gib": peak_gib, "steps": FLAGS.steps,
              "precision": FLAGS.precision, **machine()}
    report(result, [("peak RSS", f"{peak_gib:.2f} GiB ({FLAGS.steps} steps, "
                                 f"{FLAGS.precision})")])


if __name__ == "__main__":
    app.run(main)
