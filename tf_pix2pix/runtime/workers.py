"""Processes and signals of a training job: the distribution strategy, the workers of a
multi-worker job, their agreement on stopping, and SIGTERM/SIGINT handling.

Under ``--strategy=multi_worker`` only the chief writes the model directory; the other workers
save their share of each checkpoint into a private temporary folder (:func:`scratch_dir`), stop
together with the chief on a signal to any of them (:func:`stop_agreement`), and end with
:class:`WorkerLostError` when another worker dies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import tempfile
import threading
from typing import Any

import tensorflow as tf

from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.errors import WorkerLostError  # noqa: F401


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local devices) or ``multi_worker``
    (from TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"strategy={name!r}: use default, mirrored or multi_worker")


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in ``strategy`` (``chief`` and ``worker`` tasks of TF_CONFIG)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("chief", [])) + len(spec.get("worker", [])))


def stop_agreement(strategy: tf.distribute.Strategy):
    """``agree(local_flag) -> bool``: whether any worker's flag is set, by one all-reduce.

    Every worker of the strategy must call it at the same point (once per step in the loop).
    """

    @tf.function
    def any_set(flag):
        flags = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None)

    return lambda local: bool(any_set(tf.constant(float(local))) > 0)


def scratch_dir(strategy: tf.distribute.Strategy, model_dir: str) -> str:
    """A non-chief worker's private checkpoint folder, emptied now and removed after the run.

    Its name depends only on ``model_dir`` and the task, so a restart also removes what a killed
    worker left behind.
    """
    resolver = strategy.cluster_resolver
    key = hashlib.sha1(os.path.abspath(model_dir).encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(),
                        f"tf_pix2pix_{key}_{resolver.task_type}{resolver.task_id}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def error_reason(error: tf.errors.OpError) -> str:
    """The line of a TensorFlow runtime error that says what happened (not where in the graph)."""
    for line in (error.message or "").splitlines():
        line = line.strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ",
                                         "[[", "Additional GRPC")):
            return f"{type(error).__name__}: {line[:200]}"
    return type(error).__name__


class SignalCatcher:
    """Turns SIGTERM/SIGINT into a flag so the loop can checkpoint and exit cleanly.

    A second Ctrl-C while the first is being handled interrupts at once.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
