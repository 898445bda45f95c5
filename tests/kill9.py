"""The kill -9 test: train, SIGKILL the trainer at random moments, restart, compare the result.

``run_kill9.py`` is its command line. Given the flags of a ``run_train.py`` command, it

1. trains once without interruption into ``WORK/reference`` (reused when already complete);
2. trains the same command into ``WORK/interrupted``, killing the process with SIGKILL ``kills``
   times and restarting it after each kill. A kill comes at one of three moments, chosen at
   random: during start-up or restore, at a random time between two checkpoints, or while a
   checkpoint is being written (the trainer's checkpoint folder is watched for TensorFlow's
   ``ckpt-N_temp`` files and ``checkpoint.tmp*`` state files, and the kill sent when one appears);
3. checks every restart: it resumed from exactly the newest checkpoint listed when the process
   died (no step lost beyond the last save), and printed no traceback;
4. checks that the final weights are bit-identical to the uninterrupted run's (``weights_sha256``
   printed by both).

Everything goes through the command line and files, as a user's crash would.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

from tf_pix2pix.runtime.checkpointing import is_partial_save

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOMENTS = ("startup", "between_saves", "during_save")


class Kill9Error(RuntimeError):
    """The trainer did not survive the kills as it must; the message says how."""


@dataclasses.dataclass(frozen=True)
class Kill9Config:
    """What to train and how to attack it.

    Attributes:
      train_args: ``run_train.py`` flags (everything but ``--model_dir``).
      work_dir: holds ``reference/``, ``interrupted/`` (recreated) and the logs.
      kills: SIGKILLs to deliver before letting the run finish.
      seed: seed of the moments and delays.
      timeout: seconds one trainer process may take before the test fails.
      train_script: the trainer to run (``run_train.py`` of this checkout by default).
    """

    train_args: tuple[str, ...]
    work_dir: str
    kills: int = 10
    seed: int = 0
    timeout: float = 1800.0
    train_script: str = os.path.join(REPO, "run_train.py")


@dataclasses.dataclass
class Kill:
    """One SIGKILL: when, after which complete checkpoint, and where the restart resumed."""

    moment: str
    seconds: float
    newest_step: int          # newest checkpoint listed in the state file after the kill
    saving: bool              # a checkpoint write was in progress when the signal was sent
    resumed_step: int | None = None


@dataclasses.dataclass
class Kill9Report:
    reference_sha256: str
    final_sha256: str
    kills: list[Kill]  # each followed by a restart

    @property
    def identical(self) -> bool:
        return self.reference_sha256 == self.final_sha256

    def summary(self) -> str:
        saving = sum(k.saving for k in self.kills)
        moments = ", ".join(f"{m} {sum(k.moment == m for k in self.kills)}" for m in MOMENTS)
        verdict = "bit-identical to" if self.identical else "DIFFER from"
        return (f"{len(self.kills)} kills ({moments}; {saving} while a checkpoint was being "
                f"written), {len(self.kills)} restarts, each resumed from the newest complete "
                f"checkpoint; final weights {verdict} the uninterrupted run (sha256 "
                f"{self.final_sha256[:16]}...)")


def _checkpoint_state(model_dir: str, since: float = 0.0) -> tuple[int, bool]:
    """(newest step listed in the state file or 0, whether a write started after ``since``).

    A write in progress shows as TensorFlow's ``ckpt-N_temp`` folder or a ``checkpoint.tmp*``
    state file; ones older than ``since`` are leftovers of an earlier kill.
    """
    folder = os.path.join(model_dir, "checkpoints")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0, False
    saving = False
    for name in names:
        if is_partial_save(name):
            try:
                saving |= os.stat(os.path.join(folder, name)).st_mtime >= since
            except FileNotFoundError:  # finished meanwhile
                saving = True
    return _listed_step(folder), saving


def _listed_step(folder: str) -> int:
    """The newest checkpoint step in ``folder``'s state file (0 without one)."""
    for _ in range(100):
        try:
            with open(os.path.join(folder, "checkpoint")) as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        found = re.match(r'model_checkpoint_path: "(?:.*[/\\])?ckpt-(\d+)"\n', text)
        if found and text.endswith("\n"):
            return int(found.group(1))
        time.sleep(0.01)  # read while being replaced: read again
    raise Kill9Error(f"{folder}/checkpoint stays unreadable")


def _start(config: Kill9Config, model_dir: str, log: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, config.train_script, *config.train_args, "--model_dir", model_dir,
             "--progress=false"],
            stdout=out, stderr=subprocess.STDOUT, cwd=os.path.dirname(config.train_script),
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def _finish(config: Kill9Config, model_dir: str, log: str) -> tuple[str, float]:
    """Runs the trainer to completion; returns its ``weights_sha256`` and the seconds it took
    to list its first new checkpoint (start-up, restore and the first steps)."""
    start_step = _listed_step(os.path.join(model_dir, "checkpoints"))
    proc = _start(config, model_dir, log)
    started = time.monotonic()
    first_save = None
    while proc.poll() is None:
        if time.monotonic() > started + config.timeout:
            proc.kill()
            raise Kill9Error(f"the trainer took more than {config.timeout:.0f} s; see {log}")
        if first_save is None and _listed_step(os.path.join(model_dir, "checkpoints")) > start_step:
            first_save = time.monotonic() - started
        time.sleep(0.01)
    text = open(log).read()
    found = re.search(r"weights_sha256=([0-9a-f]{64})", text)
    if proc.returncode != 0 or not found:
        raise Kill9Error(f"the trainer exited with code {proc.returncode}; see {log}")
    return found.group(1), first_save or time.monotonic() - started


def _kill_once(config: Kill9Config, model_dir: str, log: str, moment: str,
               rng: random.Random, startup: float, interval: float) -> Kill | None:
    """Starts the trainer and SIGKILLs it at ``moment``; ``None`` if it finished first.

    ``startup``: seconds a run takes to its first checkpoint (a start-up kill lands in its later
    half: TensorFlow's initialisation, the restore, the first steps); ``interval``: the range of
    a between-saves kill's delay after the first new checkpoint.
    """
    start_step, _ = _checkpoint_state(model_dir)
    since = time.time()
    proc = _start(config, model_dir, log)
    started = time.monotonic()
    target = (started + rng.uniform(startup / 2, startup)) if moment == "startup" else None
    while proc.poll() is None:
        now = time.monotonic()
        if now > started + config.timeout:
            proc.kill()
            raise Kill9Error(f"the trainer made no progress in {config.timeout:.0f} s; see {log}")
        step, saving = _checkpoint_state(model_dir, since)
        if target is None and step > start_step:
            # Training is under way (it listed a new checkpoint): aim the kill.
            target = now + rng.uniform(0.0, interval) if moment == "between_saves" else math.inf
        if (target is not None and now >= target) or (
                moment == "during_save" and saving and step > start_step):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return Kill(moment, now - started, _checkpoint_state(model_dir)[0], saving)
        time.sleep(0.002)
    if proc.returncode != 0:
        raise Kill9Error(f"the trainer failed on its own (exit code {proc.returncode}); see {log}")
    return None


def _check_resume(log: str, kill: Kill, killed_at_startup: bool) -> None:
    """The restart after ``kill`` resumed from the newest checkpoint listed at that moment.

    A restart killed during its own start-up may not have got as far as restoring; it is checked
    when it did.
    """
    text = open(log).read()
    if "Traceback" in text:
        raise Kill9Error(f"a restart printed a traceback; see {log}")
    found = re.search(r"Resumed from \S+ckpt-(\d+) at step (\d+)", text)
    if found is None and killed_at_startup:
        return
    kill.resumed_step = int(found.group(2)) if found else 0
    if kill.resumed_step != kill.newest_step:
        raise Kill9Error(
            f"after a kill ({kill.moment}) the newest checkpoint was step {kill.newest_step} but "
            f"the restart resumed at step {kill.resumed_step}; see {log}")


def run(config: Kill9Config, log=print) -> Kill9Report:
    """The kill -9 test (see the module docstring); raises :class:`Kill9Error` on a failure."""
    os.makedirs(config.work_dir, exist_ok=True)
    logs = os.path.join(config.work_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    reference = os.path.join(config.work_dir, "reference")
    began = time.monotonic()
    reference_sha, startup = _finish(config, reference, os.path.join(logs, "reference.log"))
    duration = time.monotonic() - began
    log(f"uninterrupted run: {duration:.1f} s ({startup:.1f} s to its first checkpoint), "
        f"weights_sha256={reference_sha}")

    interrupted = os.path.join(config.work_dir, "interrupted")
    shutil.rmtree(interrupted, ignore_errors=True)
    rng = random.Random(config.seed)
    kills: list[Kill] = []
    # Between-saves delays are drawn within a tenth of the uninterrupted run, so that training
    # moves on between kills and the run does not finish before all of them are delivered.
    interval = max((duration - startup) / 10.0, 0.5)
    # Every moment equally often, in random order.
    moments = [MOMENTS[i % len(MOMENTS)] for i in range(config.kills)]
    rng.shuffle(moments)
    for attempt, moment in enumerate(moments, 1):
        attempt_log = os.path.join(logs, f"attempt{attempt:03d}.log")
        kill = _kill_once(config, interrupted, attempt_log, moment, rng, startup, interval)
        if kills:
            _check_resume(attempt_log, kills[-1], killed_at_startup=moment == "startup")
        if kill is None:
            raise Kill9Error(
                f"training finished after {len(kills)} of {config.kills} kills; train for more "
                "steps or save more often so that every kill lands in the run")
        kills.append(kill)
        log(f"kill {len(kills)}/{config.kills}: {kill.moment} after {kill.seconds:.1f} s, "
            f"newest checkpoint step {kill.newest_step}"
            + (" (a checkpoint was being written)" if kill.saving else ""))
    final_log = os.path.join(logs, "final.log")
    final_sha, _ = _finish(config, interrupted, final_log)
    _check_resume(final_log, kills[-1], killed_at_startup=False)
    leftovers = [n for n in os.listdir(os.path.join(interrupted, "checkpoints"))
                 if is_partial_save(n)]
    if leftovers:
        raise Kill9Error(f"partial checkpoint writes were left in {interrupted}: {leftovers}")
    report = Kill9Report(reference_sha, final_sha, kills)
    if not report.identical:
        raise Kill9Error(f"final weights differ from the uninterrupted run "
                         f"({final_sha} vs {reference_sha}); logs in {logs}")
    return report
