"""The training loop: strategy, data, model, checkpoints and resume, summaries, progress.

``train(config)`` is everything ``run_train.py`` does after parsing flags. A model directory holds::

    config.json            the resolved configuration (architecture checked on resume)
    checkpoints/ckpt-N.*   G, D, both optimizers, step, dropout RNG state, input-iterator position
    train/  val/           TensorBoard event files
    samples/*.png          input | output | target grids

Under ``--strategy=multi_worker`` only the chief writes it; the other workers save their share of
each checkpoint into a private temporary folder, stop together with the chief on a signal to any
of them, and end with :class:`WorkerLostError` when another worker dies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import data as data_lib
from tf_pix2pix import hardware
from tf_pix2pix import visualize
from tf_pix2pix.config import (ConfigError, ExperimentConfig, architecture_differences,
                               input_pipeline_differences, load_config, save_config)
from tf_pix2pix.cycle_gan import CycleGAN
from tf_pix2pix.model_base import TranslationModel
from tf_pix2pix.pix2pix import Pix2Pix

CHECKPOINT_SUBDIR = "checkpoints"
SAMPLES_SUBDIR = "samples"


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or Inf; the message names the step and the last good checkpoint."""


class WorkerLostError(RuntimeError):
    """Another worker of a multi-worker job stopped answering (killed, crashed, unreachable)."""


@dataclasses.dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    step: int
    total_steps: int
    losses: dict[str, float]
    checkpoint: str | None
    val_metrics: dict[str, float]
    stopped_by_signal: bool = False
    weights_sha256: str = ""


def weights_sha256(variables) -> str:
    """SHA-256 of the values of ``variables`` in order: equal digests mean bit-identical weights
    (the workers of one job print the same one; so do an interrupted and an uninterrupted run)."""
    digest = hashlib.sha256()
    for v in variables:
        digest.update(np.ascontiguousarray(v.numpy()).tobytes())
    return digest.hexdigest()


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local devices) or ``multi_worker`` (TF_CONFIG)."""
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


def build_model(config: ExperimentConfig, strategy: tf.distribute.Strategy,
                steps_per_epoch: int) -> TranslationModel:
    """The model ``config.model.model`` names (build inside ``strategy.scope()``)."""
    kind = CycleGAN if config.model.model == "cycle_gan" else Pix2Pix
    return kind(config, strategy, steps_per_epoch)


def build_input(config: ExperimentConfig, split: str, training: bool,
                skip_examples: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
    """The model's input pipeline: ``(input, target)`` pairs or CycleGAN's ``(real_A, real_B)``."""
    if config.model.model == "cycle_gan":
        return data_lib.build_unpaired_dataset(config.data, split, training,
                                               skip_examples=skip_examples, batch_size=batch_size)
    return data_lib.build_dataset(config.data, split, training, skip_examples=skip_examples,
                                  batch_size=batch_size)


def _split_size(config: ExperimentConfig, split: str) -> int:
    """Examples of ``split`` (an unpaired epoch is ``max(|A|, |B|)``; val needs both domains)."""
    if config.model.model == "cycle_gan":
        sizes = data_lib.domain_sizes(config.data, split)
        return max(sizes.values()) if min(sizes.values()) else 0
    return data_lib.num_examples(config.data.data_dir, split)


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def _check_resume_config(config: ExperimentConfig) -> None:
    saved = load_config(config.train.model_dir)
    if saved is None:
        return
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


def _saved_step(directory: str) -> int:
    """The step counter stored in the latest checkpoint of ``directory`` (0 when none or torn;
    ``restore`` repositions the pipeline if it resumes from another checkpoint)."""
    latest = tf.train.latest_checkpoint(directory)
    try:
        return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE")) if latest \
            else 0
    except (ValueError, IndexError, tf.errors.OpError):
        return 0


def stop_agreement(strategy: tf.distribute.Strategy):
    """``agree(local_flag) -> bool``: whether any worker's flag is set, by one all-reduce.

    Every worker of the strategy must call it at the same point (once per step in the loop).
    """

    @tf.function
    def any_set(flag):
        flags = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None)

    return lambda local: bool(any_set(tf.constant(float(local))) > 0)


def _scratch_dir(strategy: tf.distribute.Strategy, model_dir: str) -> str:
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


def _error_reason(error: tf.errors.OpError) -> str:
    """The line of a TensorFlow runtime error that says what happened (not where in the graph)."""
    for line in (error.message or "").splitlines():
        line = line.strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ",
                                         "[[", "Additional GRPC")):
            return f"{type(error).__name__}: {line[:200]}"
    return type(error).__name__


def _all_finite(variables) -> bool:
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))


class _SignalCatcher:
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


class _Trainer:
    """State of one training run; see :func:`train`."""

    def __init__(self, config: ExperimentConfig, progress: bool):
        self.config = config
        self.progress = progress
        t = config.train
        self.model_dir = t.model_dir
        self.strategy = make_strategy(t.strategy)
        self.workers = num_workers(self.strategy)
        replicas = self.strategy.num_replicas_in_sync
        if config.data.batch_size % replicas:
            raise ConfigError(f"batch_size={config.data.batch_size} is not divisible by the "
                              f"{replicas} replicas of --strategy={t.strategy}")
        n_train = _split_size(config, "train")
        if not n_train:
            source = config.data.tfds_name or config.data.data_dir
            raise data_lib.DataError(f"{source} has no training examples")
        self.steps_per_epoch = math.ceil(n_train / config.data.batch_size)
        self.total_steps = t.max_steps or (t.n_epochs + t.n_epochs_decay) * self.steps_per_epoch

        warning = hardware.precision_warning(t.precision)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        keras.utils.set_random_seed(t.seed)
        # Grappler's remapper fails on the discriminator's conv+bias+LeakyReLU gradient pattern
        # and logs "remapper failed" at ERROR level on every run; the step is as fast without it
        # (0.576 vs 0.585 s float32, 0.368 vs 0.371 s bfloat16, BENCHMARKS.md machine).
        tf.config.optimizer.set_experimental_options({"remapping": False})
        with self.strategy.scope():
            self.model = build_model(config, self.strategy, self.steps_per_epoch)
        if replicas == 1 and not config.data.tfds_name:
            # The iterator itself is checkpointed (exact position, shuffle buffer included).
            self.iterator = iter(build_input(config, "train", training=True))
            checkpointed_iterator = {"iterator": self.iterator}
            self._skipped_to = 0
        else:
            # Distributed iterators (and TFDS's, in general) cannot be checkpointed; the pipeline
            # is deterministic, so it is repositioned by skipping the examples already trained
            # on (exact for any number of workers: see _reposition).
            self._reposition(_saved_step(checkpoint_dir(self.model_dir)))
            checkpointed_iterator = {}
        self.iterator_checkpointed = bool(checkpointed_iterator)
        # CycleGAN's held-out images: val, or the reference's test split when there is no val.
        val_split, val_size = "val", _split_size(config, "val")
        if config.model.model == "cycle_gan" and not val_size:
            val_split, val_size = "test", _split_size(config, "test")
        # Eval mode treats every image alone, so validation batches can be larger than training
        # ones (4 rows in the sample grids); paper mode's batch statistics keep the batch size.
        val_batch = max(config.data.batch_size, 4) if t.test_mode == "eval" else None
        self.val_dataset = (build_input(config, val_split, training=False, batch_size=val_batch)
                            if val_size and t.val_max_examples else None)

        self.checkpoint = tf.train.Checkpoint(step=self.model.step,
                                              **self.model.checkpoint_objects(),
                                              **checkpointed_iterator)
        # Only the chief writes into model_dir. Every worker must take part in a save (the
        # pattern TensorFlow documents for MultiWorkerMirroredStrategy), so the others save into
        # a private temporary folder, removed when the run ends.
        self.is_chief = self.strategy.extended.should_checkpoint
        if self.is_chief:
            save_dir, keep = checkpoint_dir(self.model_dir), t.keep_checkpoints
            self.train_writer = tf.summary.create_file_writer(
                os.path.join(self.model_dir, "train"))
            self.val_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "val"))
            os.makedirs(os.path.join(self.model_dir, SAMPLES_SUBDIR), exist_ok=True)
        else:
            save_dir, keep = _scratch_dir(self.strategy, self.model_dir), 1
            self.train_writer = self.val_writer = tf.summary.create_noop_writer()
        self.remove_scratch = (lambda: None) if self.is_chief else weakref.finalize(
            self, shutil.rmtree, save_dir, True)
        self.manager = tf.train.CheckpointManager(self.checkpoint, save_dir, max_to_keep=keep,
                                                  step_counter=self.model.step)
        self._agree = None

    # -- checkpoints -------------------------------------------------------------------------

    def restore(self) -> int:
        """Restores the newest readable checkpoint; returns its step (0 without one).

        A torn newest checkpoint (a truncated or missing data or index file, e.g. after a
        ``kill -9`` or a full disk during a save) is skipped with a one-line warning naming it and
        the older checkpoint resumed from instead.
        """
        if self.is_chief:
            removed = remove_partial_saves(checkpoint_dir(self.model_dir))
            if removed:
                print(f"Removed {len(removed)} partial checkpoint write(s) of an interrupted "
                      f"save: {', '.join(removed)}")
        state = tf.train.get_checkpoint_state(checkpoint_dir(self.model_dir))
        candidates = list(reversed(state.all_model_checkpoint_paths)) if state else []
        failures = []
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (ValueError, AssertionError, IndexError, tf.errors.OpError) as e:
                failures.append((path, str(e).strip().splitlines()[0] if str(e) else repr(e)))
                continue
            step = int(self.model.step.numpy())
            if failures:
                print(f"warning: checkpoint {failures[0][0]} is unreadable ({failures[0][1]}); "
                      f"resumed from the older {path} instead", file=sys.stderr)
            if not self.iterator_checkpointed and step != self._skipped_to:
                self._reposition(step)
            print(f"Resumed from {path} at step {step}")
            return step
        if failures:
            latest, reason = failures[0]
            raise ConfigError(
                f"checkpoint {latest} does not match this run or cannot be read ({reason}); "
                "the input-pipeline position is saved too, so resume with the same data "
                "flags (data_dir, batch_size, preprocess sizes, shuffle_buffer) or use a new "
                "--model_dir")
        return int(self.model.step.numpy())

    def _reposition(self, step: int) -> None:
        """Rebuilds a non-checkpointed input pipeline to start after ``step`` steps.

        Every worker builds the same global stream and keeps its own part of each global batch
        (``AutoShardPolicy.DATA``), so the job trains on exactly the batches one process would,
        for any number of workers and shard files, and skipping ``step`` global batches
        repositions every worker exactly.
        """
        dataset = build_input(self.config, "train", training=True,
                              skip_examples=step * self.config.data.batch_size)
        if self.strategy.num_replicas_in_sync > 1:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            dataset = self.strategy.experimental_distribute_dataset(
                dataset.with_options(options))
        self.iterator = iter(dataset)
        self._skipped_to = step

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint in ``model_dir`` (the chief's, on every worker)."""
        return tf.train.latest_checkpoint(checkpoint_dir(self.model_dir))

    def save(self) -> str:
        m = self.model
        if not _all_finite(m.trainable_variables()):
            raise TrainingDivergedError(
                f"weights are not finite at step {int(m.step.numpy())}; not saving. Last good "
                f"checkpoint: {self.latest_checkpoint()}")
        self.manager.save(checkpoint_number=m.step)
        self._last_save = int(m.step.numpy())
        return self._path_for(self._last_save)

    def stop_requested(self, local: bool) -> bool:
        """Whether any worker received SIGTERM/SIGINT (every worker must ask at the same step).

        One process decides alone; several agree through one all-reduce of a flag per step, so
        that all of them save the same step and stop together.
        """
        if self.workers == 1:
            return local
        if self._agree is None:
            self._agree = stop_agreement(self.strategy)
        return self._agree(local)

    # -- summaries ---------------------------------------------------------------------------

    def write_images(self, step: int, batch, writer, name: str) -> None:
        if not self.is_chief:
            return
        grids = self.model.sample_grids(tuple(t[:4] for t in batch), self.config.train.test_mode)
        rows = []
        with writer.as_default(step=step):
            for tag, columns in grids.items():
                grid = visualize.comparison_grid(*columns)
                tf.summary.image(f"{name}/{tag}", grid, max_outputs=4)
                rows.append(grid)
        png = visualize.rows_png(tf.concat(rows, axis=0))
        samples = os.path.join(self.model_dir, SAMPLES_SUBDIR)
        visualize.save_png(os.path.join(samples, f"{name}_step{step:07d}.png"), png)
        visualize.save_png(os.path.join(samples, f"{name}_latest.png"), png)

    def validate(self, step: int) -> dict[str, float]:
        """Scores the val split (on the chief only: the other workers have nothing to write)."""
        if self.val_dataset is None or not self.is_chief:
            return {}
        metrics = self.model.validate(self.val_dataset, self.config.train.val_max_examples,
                                      self.config.train.test_mode)
        with self.val_writer.as_default(step=step):
            for key, value in metrics.items():
                if key != "count":
                    tf.summary.scalar(f"metrics/{key}", value)
        self.write_images(step, next(iter(self.val_dataset)), self.val_writer, "val")
        return metrics

    # -- the loop ----------------------------------------------------------------------------

    def local_batch(self, batch):
        """A host copy of a (possibly distributed) batch, for images."""
        if self.strategy.num_replicas_in_sync == 1:
            return batch
        return tuple(tf.concat(self.strategy.experimental_local_results(t), 0) for t in batch)

    def run(self) -> TrainResult:
        try:
            return self._run()
        except tf.errors.OpError as e:
            if self.workers == 1:
                raise
            # A worker that died (kill -9, a lost machine) surfaces here as a failed collective
            # once TensorFlow's coordination service misses its heartbeats.
            raise WorkerLostError(
                f"lost another worker of the {self.workers}-worker job at step "
                f"{int(self.model.step.numpy())} ({_error_reason(e)}); restart "
                "every worker with the same command: training resumes from "
                f"{self.latest_checkpoint() or 'the start (no checkpoint yet)'}") from None
        finally:
            self.remove_scratch()

    def _run(self) -> TrainResult:
        t = self.config.train
        step = self.restore()
        if step >= self.total_steps:
            print(f"Already trained {step} of {self.total_steps} steps; nothing to do")
            return TrainResult(step, self.total_steps, {}, self.latest_checkpoint(), {},
                               weights_sha256=self.weights_sha256())
        self._last_save = step
        bar = keras.utils.Progbar(self.total_steps,
                                  stateful_metrics=list(self.model.loss_names) + ["lr"],
                                  verbose=1 if self.progress else 0, unit_name="step")
        bar.update(step)
        values: dict[str, float] = {}
        val_metrics: dict[str, float] = {}
        epoch_end = stopped = False
        last_time, last_step = time.perf_counter(), step
        with _SignalCatcher() as signals:
            while step < self.total_steps:
                batch = next(self.iterator)
                lr = self.model.current_lr()  # the rate this step trains with
                values = {k: float(v) for k, v in self.model.train_step(batch).items()}
                step += 1
                if not all(np.isfinite(list(values.values()))):
                    raise TrainingDivergedError(
                        f"non-finite loss at step {step} ({values}); stopped without saving. "
                        f"Last good checkpoint: {self.latest_checkpoint()}. Lower --lr or "
                        "check the data")
                bar.update(step, [(k, v) for k, v in values.items()] + [("lr", lr)])
                if step % t.summary_every_steps == 0:
                    now = time.perf_counter()
                    rate = (step - last_step) / max(now - last_time, 1e-9)
                    last_time, last_step = now, step
                    with self.train_writer.as_default(step=step):
                        for k, v in values.items():
                            tf.summary.scalar(f"loss/{k}", v)
                        tf.summary.scalar("learning_rate", lr)
                        tf.summary.scalar("steps_per_sec", rate)
                        tf.summary.scalar("images_per_sec", rate * self.config.data.batch_size)
                if step % t.image_every_steps == 0:
                    self.write_images(step, self.local_batch(batch), self.train_writer, "train")
                epoch_end = step % self.steps_per_epoch == 0
                if epoch_end:
                    val_metrics = self.validate(step) or val_metrics
                if epoch_end or step % t.save_every_steps == 0 or step == self.total_steps:
                    self.save()
                if self.stop_requested(signals.received is not None):
                    stopped = True
                    if self._last_save != step:
                        self.save()
                    where = (f"signal {signals.received}" if signals.received is not None
                             else "a signal to another worker")
                    print(f"\nStopped by {where} at step {step}; checkpoint "
                          f"{self._path_for(step)}")
                    break
        if step == self.total_steps and self.val_dataset is not None and not epoch_end:
            val_metrics = self.validate(step)
        self.train_writer.flush()
        self.val_writer.flush()
        return TrainResult(step, self.total_steps, values, self._path_for(self._last_save),
                           val_metrics, stopped_by_signal=stopped,
                           weights_sha256=self.weights_sha256())

    def weights_sha256(self) -> str:
        return weights_sha256(self.model.trainable_variables())

    def _path_for(self, step: int) -> str:
        """The chief's checkpoint of ``step`` in ``model_dir``."""
        return os.path.join(checkpoint_dir(self.model_dir), f"ckpt-{step}")


def build_trainer(config: ExperimentConfig, progress: bool = True) -> _Trainer:
    """Checks the model directory against ``config`` and builds everything for training."""
    if not config.train.model_dir:
        raise ConfigError("model_dir is empty; pass --model_dir")
    if not config.data.data_dir and not config.data.tfds_name:
        raise ConfigError("data_dir is empty; pass --data_dir (a folder made by "
                          "data_prep.build_tfrecords)" + (
                              " or --tfds_name" if config.model.model == "cycle_gan" else ""))
    if config.data.data_dir and config.data.tfds_name:
        raise ConfigError("pass one of --data_dir and --tfds_name, not both")
    _check_resume_config(config)
    trainer = _Trainer(config, progress)
    if trainer.is_chief:
        save_config(config, config.train.model_dir)
    return trainer


def train(config: ExperimentConfig, progress: bool = True) -> TrainResult:
    """Trains (or resumes training of) a pix2pix or CycleGAN model as ``config`` says.

    Restarting with the same ``model_dir`` resumes from the latest checkpoint: step, weights,
    optimizer moments, dropout RNG state and input position, so an interrupted run continues as
    if it had not stopped. SIGTERM and SIGINT (to any worker) save a checkpoint before returning.

    Raises:
      ConfigError: invalid or mismatched configuration (e.g. another architecture in model_dir).
      DataError: missing or empty data.
      TrainingDivergedError: a loss became NaN/Inf; the latest checkpoint stays the last good one.
      WorkerLostError: another worker of a multi-worker job died or became unreachable.
    """
    return build_trainer(config, progress).run()
