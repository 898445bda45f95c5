"""Cost of the per-step stop agreement between two worker processes on this machine.

Usage:
  python benchmarks/bench_multi_worker.py [--calls=300 --warmup=20]

Starts two processes of itself with a TF_CONFIG each (MultiWorkerMirroredStrategy over local
ports, CPU collectives) and times ``train_lib.stop_agreement`` — the one all-reduce per step the
trainer adds under ``--strategy=multi_worker`` so that a SIGTERM to any worker stops all of them
at the same step. Reports the chief's median.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("calls", 300, "Timed agreements.")
flags.DEFINE_integer("warmup", 20, "Untimed agreements first.")
flags.DEFINE_integer("worker_index", -1, "Internal: run as this worker of the pair.")


def _worker() -> None:
    import tensorflow as tf

    from benchmarks.common import summary, time_calls
    from tf_pix2pix.runtime.workers import stop_agreement

    agree = stop_agreement(tf.distribute.MultiWorkerMirroredStrategy())
    times = time_calls(lambda: agree(False), FLAGS.warmup, FLAGS.calls)
    print(json.dumps(summary(times)))


def main(argv):
    del argv
    if FLAGS.worker_index >= 0:
        _worker()
        return
    from benchmarks.common import machine, report

    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    procs = [subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), f"--worker_index={i}",
         f"--calls={FLAGS.calls}", f"--warmup={FLAGS.warmup}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}}))) for i in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: exit codes {[p.returncode for p in procs]}")
    chief = json.loads(outputs[0].strip().splitlines()[-1])
    result = {"benchmark": "multi_worker_stop_agreement", **chief, **machine()}
    report(result, [("stop agreement (2 workers)",
                     f"median {chief['median_s'] * 1e3:.2f} ms, p95 {chief['p95_s'] * 1e3:.2f} ms "
                     f"over {chief['repeats']} calls")])


if __name__ == "__main__":
    app.run(main)
