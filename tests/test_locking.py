"""One trainer per model_dir: the lock, its stale cases, and two real trainers on one folder."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tf_pix2pix.runtime.locking import LOCK_FILENAME, ModelDirLock, ModelDirLockedError

from conftest import TINY_FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_lock(folder, **fields):
    record = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": None,
              "started": "2026-11-28T10:00:00+00:00", **fields}
    (folder / LOCK_FILENAME).write_text(json.dumps(record))


def test_a_held_lock_refuses_another_process_and_is_released(tmp_path):
    from tf_pix2pix.runtime.locking import _process_start

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, pid=holder.pid, process_start=_process_start(holder.pid))
        with pytest.raises(ModelDirLockedError, match=rf"{tmp_path} is in use by another "
                                                      rf"trainer \(pid {holder.pid} on "):
            ModelDirLock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()
    with ModelDirLock(str(tmp_path)) as lock:  # its process is gone now: stale
        held = json.loads((tmp_path / LOCK_FILENAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        ModelDirLock(str(tmp_path)).acquire()  # this process's own lock: shared
        before = os.path.getmtime(tmp_path / LOCK_FILENAME)
        os.utime(tmp_path / LOCK_FILENAME, (before - 100, before - 100))
        lock.heartbeat_every = 0
        lock.heartbeat()
        assert os.path.getmtime(tmp_path / LOCK_FILENAME) > before - 100
    assert not (tmp_path / LOCK_FILENAME).exists()


def test_stale_locks_are_taken_over_with_a_warning(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    _write_lock(tmp_path, pid=int(dead))
    with ModelDirLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_FILENAME).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock {tmp_path}/{LOCK_FILENAME} of pid {dead}" in (
        capsys.readouterr().err)
    # A live process id that now belongs to another process (its start time differs).
    _write_lock(tmp_path, pid=os.getpid(), process_start="1")
    ModelDirLock(str(tmp_path)).acquire().release()
    # An unreadable lock (its writer killed mid-write).
    (tmp_path / LOCK_FILENAME).write_text("")
    ModelDirLock(str(tmp_path)).acquire().release()


def test_another_hosts_lock_counts_until_its_heartbeat_is_older_than_the_timeout(tmp_path):
    _write_lock(tmp_path, host="other-machine", pid=1)
    with pytest.raises(ModelDirLockedError, match="pid 1 on other-machine"):
        ModelDirLock(str(tmp_path), timeout=60).acquire()
    old = time.time() - 120
    os.utime(tmp_path / LOCK_FILENAME, (old, old))
    ModelDirLock(str(tmp_path), timeout=60).acquire().release()


def _train(records_dir, model_dir, *extra):
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, "run_train.py"), "--data_dir", records_dir,
         "--model_dir", model_dir, *TINY_FLAGS, "--noprogress", "--val_max_examples=0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def test_a_second_trainer_on_one_model_dir_refuses_and_the_first_goes_on(records_dir,
                                                                         tmp_path):
    model_dir = str(tmp_path / "m")
    first = _train(records_dir, model_dir, "--max_steps=1000000", "--save_every_steps=50")
    lock = os.path.join(model_dir, LOCK_FILENAME)
    deadline = time.time() + 120
    while not os.path.exists(lock):
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.2)
    second = _train(records_dir, model_dir, "--max_steps=1000000")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"error: {model_dir} is in use by another trainer (pid {first.pid} on ")
    assert first.poll() is None  # the first one trains on, undisturbed
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    stopped = int(re.search(r"at step (\d+)", out).group(1))
    assert not os.path.exists(lock)  # released on the signal
    again = _train(records_dir, model_dir, f"--max_steps={stopped + 2}")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"at step {stopped}" in out and f"step={stopped + 2}/{stopped + 2}" in out
    assert len(os.listdir(os.path.join(model_dir, "train"))) == 2  # the first run's, the third's
