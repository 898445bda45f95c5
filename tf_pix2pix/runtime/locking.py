"""One trainer per model directory: a lock file naming its holder.

``model_dir/train.lock`` holds the host, process id, process start time and start date of the
trainer that writes the directory. It is created atomically (``O_EXCL``), refreshed while
training (its modification time is the heartbeat) and removed when the run ends, however it ends
short of ``kill -9``. A second trainer on the same directory refuses with one line naming the
holder. A lock is stale, and taken over with a warning, when its process is gone on this host
(or the process id now belongs to another process: the start times differ), or, for a holder on
another host (a shared file system), when it has not been refreshed for ``timeout`` seconds.
Trainers of one process share its lock (the Python API may build several on one directory).

The perceptual study's server locks its ``--output_dir`` the same way (``study.lock``), and the
data tools the output folder they build (``.NAME.lock`` beside it): the class takes the lock
file's name, what holds it, the flag that names the folder and the folder it guards.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time

from tf_pix2pix.configuration import ConfigError

LOCK_FILENAME = "train.lock"


class ModelDirLockedError(ConfigError):
    """Another trainer holds the model directory."""


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where /proc is
    missing; tells a live holder from a new process that got the same id."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces; fields after its ')' are fixed.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` of this host runs (and, given its ``start`` time, is the same
    process, not a new one that got the id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return start is None or _process_start(pid) in (None, start)


def holder_record() -> dict:
    """Who this process is (host, process id and start time, start date), as lock files and
    the exporter's version claims record it."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def holder_gone(record: dict) -> bool:
    """Whether the process a :func:`holder_record` names is known to be gone: on this host, not
    running (or its id now belongs to another process). Another host's: not known."""
    return record.get("host") == socket.gethostname() and not process_alive(
        int(record.get("pid", -1)), record.get("process_start"))


class ModelDirLock:
    """The lock of one model directory (see the module doc); a context manager.

    Args:
      model_dir: the directory to lock (created if needed).
      timeout: seconds without a heartbeat after which another host's lock is stale.
      heartbeat_every: least seconds between two refreshes by :meth:`heartbeat`.
    """

    def __init__(self, model_dir: str, timeout: float = 600.0, heartbeat_every: float = 30.0,
                 filename: str = LOCK_FILENAME, holder: str = "trainer",
                 flag: str = "--model_dir", locks: str | None = None):
        self.path = os.path.join(model_dir, filename)
        self.holder, self.flag = holder, flag
        self.locks = model_dir if locks is None else locks  # what the lock guards, in messages
        self.timeout = timeout
        self.heartbeat_every = heartbeat_every
        self._held = False
        self._last_beat = 0.0

    def _record(self) -> dict:
        return holder_record()

    def _read(self) -> dict | None:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable (a holder killed while writing it): stale

    def _stale_reason(self, holder: dict) -> str | None:
        """Why ``holder``'s lock no longer counts, or None when it does."""
        if not holder:
            return "it is unreadable"
        if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
            return "it is this process's own"  # a trainer of this process built before
        if holder.get("host") == socket.gethostname():
            if holder_gone(holder):
                return f"process {holder.get('pid')} is gone"
            return None
        try:
            age = time.time() - os.path.getmtime(self.path)
        except FileNotFoundError:
            return "it was just removed"
        if age > self.timeout:
            return (f"its heartbeat is {age:.0f} s old (more than --lock_timeout="
                    f"{self.timeout:.0f})")
        return None

    def acquire(self) -> "ModelDirLock":
        """Takes the lock, or a stale one over (warning on stderr).

        Raises:
          ModelDirLockedError: a live trainer holds it; the message names it.
        """
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile: try again
                reason = self._stale_reason(holder)
                if reason is None:
                    raise ModelDirLockedError(
                        f"{self.locks} is in use by another {self.holder} (pid "
                        f"{holder.get('pid')} on {holder.get('host')}, started "
                        f"{holder.get('started')}); wait for it or stop it, or use another "
                        f"{self.flag}. If that process is gone, delete {self.path}") from None
                if holder.get("pid") != os.getpid():
                    print(f"warning: taking over the stale lock {self.path} of pid "
                          f"{holder.get('pid')} on {holder.get('host')} ({reason})",
                          file=sys.stderr)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(self._record(), f)
            except BaseException:  # a full disk: leave no empty lock behind
                os.remove(self.path)
                raise
            self._held = True
            self._last_beat = time.monotonic()
            return self
        raise ModelDirLockedError(f"{self.path}: another {self.holder} keeps taking the lock; "
                                  f"use one {self.holder} per {self.flag}")

    def heartbeat(self) -> None:
        """Refreshes the lock's modification time (at most every ``heartbeat_every`` s)."""
        now = time.monotonic()
        if self._held and now - self._last_beat >= self.heartbeat_every:
            self._last_beat = now
            try:
                os.utime(self.path)
            except OSError:
                pass  # a full or read-only disk is reported by the next save

    def release(self) -> None:
        """Removes the lock if this process holds it."""
        if not self._held:
            return
        self._held = False
        holder = self._read()
        if holder and holder.get("pid") == os.getpid() and (
                holder.get("host") == socket.gethostname()):
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "ModelDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
