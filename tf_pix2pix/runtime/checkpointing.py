"""Checkpoints of a model directory: where they live, resuming from the newest readable one,
what an interrupted save leaves behind, and the checks made before resuming or saving.

A model directory's checkpoints are ``model_dir/checkpoints/ckpt-N.*``, written by a
``tf.train.CheckpointManager`` numbered by the training step; ``config.json`` beside them is
compared with the current configuration before anything is restored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

import numpy as np
import tensorflow as tf

from tf_pix2pix.configuration import (CHECKPOINT_SUBDIR, ConfigError,  # noqa: F401 (re-exported)
                               ExperimentConfig, checkpoint_dir, input_pipeline_differences)
from tf_pix2pix.errors import CheckpointWriteError  # noqa: F401
from tf_pix2pix.models.resolution import architecture_differences, load_config

def check_resume_config(config: ExperimentConfig) -> None:
    """Refuses to resume ``config.train.model_dir`` with another architecture, or with other
    input-pipeline flags once a checkpoint (which holds the pipeline's position) exists."""
    saved = load_config(config.train.model_dir)
    if saved is None:
        return
    if saved.model.model != config.model.model:
        raise ConfigError(
            f"--model_dir {config.train.model_dir} holds a {saved.model.model} model, not "
            f"{config.model.model}; resume it with --model={saved.model.model}, or use a new "
            "--model_dir")
    diffs = architecture_differences(saved, config)
    if diffs:
        raise ConfigError(
            f"--model_dir {config.train.model_dir} holds a model of another architecture "
            f"({'; '.join(diffs)}); use a new --model_dir or the saved architecture flags")
    diffs = input_pipeline_differences(saved, config)
    has_checkpoint = tf.train.latest_checkpoint(checkpoint_dir(config.train.model_dir))
    if diffs and has_checkpoint:
        raise ConfigError(
            f"--model_dir {config.train.model_dir} saved its input-pipeline position for other "
            f"data flags ({'; '.join(diffs)}); resume with the saved values or use a new "
            "--model_dir")


def saved_step(directory: str) -> int:
    """The step counter stored in the latest checkpoint of ``directory`` (0 when none or torn;
    resuming from another checkpoint repositions the pipeline again)."""
    latest = tf.train.latest_checkpoint(directory)
    try:
        return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE")) if latest \
            else 0
    except (ValueError, IndexError, tf.errors.OpError):
        return 0


def has_iterator(path: str) -> bool:
    """Whether the checkpoint ``path`` holds an input-iterator state (False when unreadable)."""
    try:
        return any(name.startswith("iterator/") for name, _ in tf.train.list_variables(path))
    except (ValueError, tf.errors.OpError):
        return False


def is_partial_save(name: str) -> bool:
    """Whether ``name`` in a checkpoint folder is part of an unfinished save: TensorFlow writes a
    checkpoint into ``ckpt-N_temp/`` and the state file through ``checkpoint.tmp*`` before
    renaming them into place."""
    return name.endswith("_temp") or name.startswith("checkpoint.tmp")


def remove_partial_saves(folder: str) -> list[str]:
    """Deletes what interrupted checkpoint writes left in ``folder``; returns the names.

    A process killed during a save leaves its partial files (:func:`is_partial_save`: the
    ``ckpt-N_temp`` folder, the ``checkpoint.tmp*`` file; a partial copy of the weights each)
    behind, and a later save of the same step does not remove them.
    Call it only while no save is running (the chief, before restoring).
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    removed = []
    for name in sorted(names):
        path = os.path.join(folder, name)
        if name.endswith("_temp") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith("checkpoint.tmp") and os.path.isfile(path):
            os.remove(path)
        else:
            continue
        removed.append(name)
    return removed


def restore_newest_readable(checkpoint: tf.train.Checkpoint, directory: str) -> str | None:
    """Restores the newest checkpoint of ``directory`` that can be read into ``checkpoint``.

    A torn newest checkpoint (a truncated or missing data or index file, e.g. after a
    ``kill -9`` or a full disk during a save) is skipped with a one-line warning naming it and
    the older checkpoint restored instead.

    Returns:
      The restored checkpoint's path; ``None`` when ``directory`` holds none.

    Raises:
      ConfigError: there are checkpoints but none fits ``checkpoint``.
    """
    state = tf.train.get_checkpoint_state(directory)
    candidates = list(reversed(state.all_model_checkpoint_paths)) if state else []
    failures = []
    for path in candidates:
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except (ValueError, AssertionError, IndexError, tf.errors.OpError) as e:
            failures.append((path, str(e).strip().splitlines()[0] if str(e) else repr(e)))
            continue
        if failures:
            print(f"warning: checkpoint {failures[0][0]} is unreadable ({failures[0][1]}); "
                  f"resumed from the older {path} instead", file=sys.stderr)
        return path
    if failures:
        latest, reason = failures[0]
        raise ConfigError(
            f"checkpoint {latest} does not match this run or cannot be read ({reason}); "
            "the input-pipeline position is saved too, so resume with the same data "
            "flags (data_dir, batch_size, preprocess sizes, shuffle_buffer) or use a new "
            "--model_dir")
    return None


def weights_sha256(variables) -> str:
    """SHA-256 of the values of ``variables`` in order: equal digests mean bit-identical weights
    (the workers of one job print the same one; so do an interrupted and an uninterrupted run)."""
    digest = hashlib.sha256()
    for v in variables:
        digest.update(np.ascontiguousarray(v.numpy()).tobytes())
    return digest.hexdigest()


def all_finite(variables) -> bool:
    """Whether every value of ``variables`` is finite (checked before each save)."""
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))


def checkpoint_bytes(prefix: str) -> int:
    """Bytes of the files of the checkpoint ``prefix`` (its data shards and index)."""
    folder, name = os.path.split(prefix)
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
               if n.startswith(name + "."))


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def space_report(folder: str, need: int) -> str:
    """What a checkpoint of ``need`` bytes needs and what the file system of ``folder`` has
    free, as words for an error message."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"it needs about {_mib(need)}"
    return f"it needs about {_mib(need)}, {_mib(free)} free"


def room_warning(folder: str, prefix: str) -> str | None:
    """A warning when the file system of ``folder`` has no room for two more checkpoints of the
    size of ``prefix`` (checked once, after the first save)."""
    size = checkpoint_bytes(prefix)
    free = shutil.disk_usage(folder).free
    if free < 2 * size:
        return (f"{folder} has {_mib(free)} free, less than two checkpoints of "
                f"{_mib(size)}; training may stop at a later save. Free some space or lower "
                "--keep_checkpoints")
    return None
