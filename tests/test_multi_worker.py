"""Two real worker processes of ``run_train.py --strategy=multi_worker`` on localhost.

Each test starts two Python processes with their own ``TF_CONFIG`` (free local ports, CPU
collectives over gRPC), as a user would on two machines. They are the suite's slowest tests
(about 10 s per launch on 2 cores), marked ``multiprocess``; ``-m "not multiprocess"`` skips them.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix.runtime.checkpointing import checkpoint_dir

from conftest import TINY_FLAGS
from test_training import tiny_config

pytestmark = pytest.mark.multiprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tiny_config as flags. No dropout, so that the job computes exactly one process's function
# (replicas draw other dropout masks than one process: README); unet_32 has no dropout layers
# anyway, the flag says so.
FLAGS = [*TINY_FLAGS, "--no_dropout", "--summary_every_steps", "2", "--image_every_steps", "4",
         "--n_epochs", "2", "--n_epochs_decay", "2", "--val_max_examples", "4", "--progress=false"]


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Job:
    """Two ``run_train.py`` workers; worker 0 is the chief."""

    def __init__(self, records_dir, model_dir, scratch, *args):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
        self.procs = []
        for index in range(2):
            env = dict(os.environ, TMPDIR=str(scratch), TF_CPP_MIN_LOG_LEVEL="2",
                       TF_CONFIG=json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": index}}))
            self.procs.append(subprocess.Popen(
                [sys.executable, os.path.join(REPO, "run_train.py"), "--data_dir", records_dir,
                 "--model_dir", str(model_dir), "--strategy", "multi_worker", *FLAGS, *args],
                env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

    def wait(self, timeout=240):
        """``[(returncode, stdout, stderr)]`` of both workers."""
        outputs = [p.communicate(timeout=timeout) for p in self.procs]
        return [(p.returncode, *o) for p, o in zip(self.procs, outputs)]


def ours(scratch):
    """The project's files in the workers' temporary folder."""
    return [n for n in os.listdir(scratch) if n.startswith("tf_pix2pix")]


def digest(out):
    return re.search(r"weights_sha256=([0-9a-f]{64})", out).group(1)


def wait_for_checkpoint(model_dir, job, timeout=120):
    """Blocks until the chief has written a checkpoint (training is under way)."""
    deadline = time.monotonic() + timeout
    while not tf.train.latest_checkpoint(checkpoint_dir(str(model_dir))):
        assert time.monotonic() < deadline, "no checkpoint written"
        assert all(p.poll() is None for p in job.procs), job.wait()
        time.sleep(0.2)


def assert_close_to(model_dir, reference_dir, step):
    """The job's checkpoint of ``step`` equals a one-process run's within float tolerance."""
    job = tf.train.load_checkpoint(os.path.join(checkpoint_dir(str(model_dir)), f"ckpt-{step}"))
    one = tf.train.load_checkpoint(os.path.join(checkpoint_dir(str(reference_dir)),
                                                f"ckpt-{step}"))
    names = [n for n in job.get_variable_to_shape_map()
             if n.endswith("VARIABLE_VALUE") and not n.startswith("save_counter")]
    assert len(names) > 100 and set(names) <= set(one.get_variable_to_shape_map())
    for name in names:
        a, b = job.get_tensor(name), one.get_tensor(name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
        else:
            assert np.array_equal(a, b), name


@pytest.fixture(scope="module")
def one_process(records_dir, tmp_path_factory):
    """The same training in one process (default strategy), 10 steps, checkpoint every 2."""
    from tf_pix2pix.runtime.training import train

    model_dir = tmp_path_factory.mktemp("one_process")
    cfg = tiny_config(records_dir, model_dir, max_steps=10, save_every_steps=2,
                      keep_checkpoints=10, no_dropout=True)
    train(cfg, progress=False)
    return model_dir


def test_two_workers_train_as_one_process_and_only_the_chief_writes(records_dir, tmp_path,
                                                                    one_process):
    model_dir, scratch = tmp_path / "m", tmp_path / "scratch"
    scratch.mkdir()
    results = Job(records_dir, model_dir, scratch, "--max_steps", "6", "--save_every_steps",
                  "4").wait()
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert "step=6/6" in out
    # Bit-identical weights on both workers; equal to one process on the same global batch.
    assert digest(results[0][1]) == digest(results[1][1])
    assert_close_to(model_dir, one_process, 6)
    # The chief alone wrote model_dir: one events file per folder, no file from the other
    # worker; the other worker's temporary checkpoints are gone.
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "samples", "train",
                                             "val"]
    assert len(os.listdir(model_dir / "train")) == 1 and len(os.listdir(model_dir / "val")) == 1
    assert sorted(os.listdir(model_dir / "checkpoints")) == [
        "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index",
        "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
    assert "val_step0000006.png" in os.listdir(model_dir / "samples")
    assert ours(scratch) == []
    assert "val_l1=" in results[0][1] and "val_l1=" not in results[1][1]

    # Restarting both resumes from the chief's checkpoint and continues as one process would.
    results = Job(records_dir, model_dir, scratch, "--max_steps", "10",
                  "--save_every_steps", "4").wait()
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert f"Resumed from {model_dir}/checkpoints/ckpt-6 at step 6" in out
    assert digest(results[0][1]) == digest(results[1][1])
    assert_close_to(model_dir, one_process, 10)
    assert ours(scratch) == []


def test_sigterm_to_one_worker_checkpoints_and_stops_both(records_dir, tmp_path):
    model_dir, scratch = tmp_path / "m", tmp_path / "scratch"
    scratch.mkdir()
    job = Job(records_dir, model_dir, scratch, "--max_steps", "100000", "--save_every_steps",
              "2", "--keep_checkpoints", "100")
    wait_for_checkpoint(model_dir, job)
    job.procs[1].send_signal(signal.SIGTERM)
    (rc0, out0, err0), (rc1, out1, err1) = job.wait()
    assert (rc0, rc1) == (130, 130), err0[-2000:] + err1[-2000:]
    step = int(re.search(r"Stopped by signal 15 at step (\d+)", out1).group(1))
    assert f"Stopped by a signal to another worker at step {step}" in out0
    assert digest(out0) == digest(out1)
    assert tf.train.latest_checkpoint(checkpoint_dir(str(model_dir))).endswith(f"ckpt-{step}")
    assert ours(scratch) == []
    # Both restarted: they resume at the saved step, not earlier.
    results = Job(records_dir, model_dir, scratch, "--max_steps", str(step + 2),
                  "--save_every_steps", "2").wait()
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert f"ckpt-{step} at step {step}" in out


def test_kill_9_of_a_worker_stops_the_other_with_a_clear_error(records_dir, tmp_path):
    model_dir, scratch = tmp_path / "m", tmp_path / "scratch"
    scratch.mkdir()
    job = Job(records_dir, model_dir, scratch, "--max_steps", "100000", "--save_every_steps",
              "2")
    wait_for_checkpoint(model_dir, job)
    job.procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    out, err = job.procs[0].communicate(timeout=120)
    rc = job.procs[0].returncode
    elapsed = time.monotonic() - start
    job.wait()
    assert rc == 1 and elapsed < 120
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost another worker of the 2-worker job at step ")
    assert "restart every worker with the same command: training resumes from " in last
    assert "Traceback" not in err
    saved = int(re.search(r"ckpt-(\d+)$", last).group(1))
    assert len(ours(scratch)) == 1  # the killed worker could not remove its checkpoints
    results = Job(records_dir, model_dir, scratch, "--max_steps", str(saved + 2),
                  "--save_every_steps", "2").wait()
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert f"ckpt-{saved} at step {saved}" in out
        assert f"step={saved + 2}/{saved + 2}" in out
    assert ours(scratch) == []  # including what the killed worker left
