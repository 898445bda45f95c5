"""The training loop: one loop for every registered model.

``train(config)`` is everything ``run_train.py`` does after parsing flags: it looks the model up
in the registry (``tf_pix2pix.models``), builds it under the strategy, and runs steps with
summaries, sample grids, validation, checkpoints and progress. A model directory holds::

    config.json            the resolved configuration (architecture checked on resume)
    checkpoints/ckpt-N.*   the model's networks, optimizers and state, the step, the dropout RNG
                           state and the input-iterator position (``checkpointing``)
    train/  val/           TensorBoard event files
    samples/*.png          the model's sample grids

Processes, signals and multi-worker agreement are ``workers``'; checkpoints and resume are
``checkpointing``'s.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import data as data_lib
from tf_pix2pix import hardware, models, visualize
from tf_pix2pix.runtime import locking
from tf_pix2pix.runtime import checkpointing as ckpt
from tf_pix2pix.runtime import workers
from tf_pix2pix.runtime.progress import progress_bar
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, save_config
from tf_pix2pix.errors import TrainingDivergedError  # noqa: F401

SAMPLES_SUBDIR = "samples"


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


class _Trainer:
    """State of one training run; see :func:`train`."""

    def __init__(self, config: ExperimentConfig, progress: bool):
        self.lock = None
        try:
            self._setup(config, progress)
        except BaseException:  # a start that fails frees the model_dir at once
            if self.lock is not None:
                self.lock.release()
            raise

    def _setup(self, config: ExperimentConfig, progress: bool) -> None:
        self.config = config
        self.progress = progress
        t, runtime = config.train, config.runtime
        self.model_dir = t.model_dir
        self.model_class = models.for_config(config)
        self.strategy = workers.make_strategy(runtime.strategy)
        self.workers = workers.num_workers(self.strategy)
        # One trainer per model_dir (the chief's lock), taken before anything is written there;
        # released when the run ends, or when this trainer is dropped without running.
        self.lock = None
        if self.strategy.extended.should_checkpoint:
            self.lock = locking.ModelDirLock(self.model_dir, runtime.lock_timeout).acquire()
            self._release_lock = weakref.finalize(self, self.lock.release)
        replicas = self.strategy.num_replicas_in_sync
        if config.data.batch_size % replicas:
            raise ConfigError(f"batch_size={config.data.batch_size} is not divisible by the "
                              f"{replicas} replicas of --strategy={runtime.strategy}")
        if config.data.data_dir:
            data_lib.check_layout(config.data.data_dir, self.model_class.data_layout,
                                  self.model_class.name)
        n_train = self.model_class.split_size(config, "train")
        if not n_train:
            source = config.data.tfds_name or config.data.data_dir
            raise data_lib.DataError(f"{source} has no training examples")
        self.steps_per_epoch = math.ceil(n_train / config.data.batch_size)
        self.total_steps = t.max_steps or (t.n_epochs + t.n_epochs_decay) * self.steps_per_epoch

        warning = hardware.precision_warning(runtime.precision)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        keras.utils.set_random_seed(config.data.seed)
        with self.strategy.scope():
            self.model = self.model_class(config, self.strategy, self.steps_per_epoch)
        # Skipped records: the stream is repositioned by skipping on resume (below), so that a
        # run that switches to skipping resumes exactly on the shards' good records.
        self.skipped_records = self._report_skipped_records()
        if replicas == 1 and not config.data.tfds_name and (
                config.data.on_corrupt_record == "fail"):
            # The iterator itself is checkpointed (exact position, shuffle buffer included).
            self.iterator = iter(self.model_class.build_input(config, "train", training=True))
            checkpointed_iterator = {"iterator": self.iterator}
            self._skipped_to = 0
        else:
            # Distributed iterators (and TFDS's, in general) cannot be checkpointed; the pipeline
            # is deterministic, so it is repositioned by skipping the examples already trained
            # on (exact for any number of workers: see _reposition).
            self._reposition(ckpt.saved_step(ckpt.checkpoint_dir(self.model_dir)))
            checkpointed_iterator = {}
        self.iterator_checkpointed = bool(checkpointed_iterator)
        val_split, val_size = self.model_class.validation_split(config)
        # Eval mode treats every image alone, so validation batches can be larger than training
        # ones (4 rows in the sample grids); paper mode's batch statistics keep the batch size.
        val_batch = max(config.data.batch_size, 4) if t.test_mode == "eval" else None
        self.val_dataset = (
            self.model_class.build_input(config, val_split, training=False,
                                         batch_size=val_batch)
            if val_size and t.val_max_examples else None)

        # Only the chief writes into model_dir. Every worker must take part in a save (the
        # pattern TensorFlow documents for MultiWorkerMirroredStrategy), so the others save into
        # a private temporary folder, removed when the run ends.
        self.is_chief = self.strategy.extended.should_checkpoint
        if self.is_chief:
            save_dir, keep = ckpt.checkpoint_dir(self.model_dir), t.keep_checkpoints
            self.train_writer = tf.summary.create_file_writer(
                os.path.join(self.model_dir, "train"))
            self.val_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "val"))
            os.makedirs(os.path.join(self.model_dir, SAMPLES_SUBDIR), exist_ok=True)
        else:
            save_dir, keep = workers.scratch_dir(self.strategy, self.model_dir), 1
            self.train_writer = self.val_writer = tf.summary.create_noop_writer()
        self.remove_scratch = (lambda: None) if self.is_chief else weakref.finalize(
            self, shutil.rmtree, save_dir, True)
        self._save_dir, self._keep = save_dir, keep
        self._track(checkpointed_iterator)
        self._agree = None
        self._room_checked = False
        self._warned: set[str] = set()

    # -- checkpoints -------------------------------------------------------------------------

    def _track(self, iterator: dict) -> None:
        """The checkpoint (the model's objects, the step and ``iterator``, if given) and its
        manager."""
        self.checkpoint = tf.train.Checkpoint(step=self.model.step,
                                              **self.model.checkpoint_objects(), **iterator)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._save_dir,
                                                  max_to_keep=self._keep,
                                                  step_counter=self.model.step)

    def _stop_checkpointing_iterator(self) -> None:
        """From now on, checkpoints hold no input-iterator state and resuming repositions the
        deterministic pipeline by skipping (exact, as with several replicas): after a data
        error the iterator's state holds the error, and a checkpoint of it would replay it."""
        self.iterator_checkpointed = False
        self._skipped_to = None
        self._track({})

    def restore(self) -> int:
        """Restores the newest readable checkpoint; returns its step (0 without one).

        A torn newest checkpoint (a truncated or missing data or index file, e.g. after a
        ``kill -9`` or a full disk during a save) is skipped with a one-line warning naming it and
        the older checkpoint resumed from instead.
        """
        folder = ckpt.checkpoint_dir(self.model_dir)
        if self.is_chief:
            removed = ckpt.remove_partial_saves(folder)
            if removed:
                print(f"Removed {len(removed)} partial checkpoint write(s) of an interrupted "
                      f"save: {', '.join(removed)}")
        newest = tf.train.latest_checkpoint(folder)
        if self.iterator_checkpointed and newest and not ckpt.has_iterator(newest):
            self._stop_checkpointing_iterator()  # written when a data error stopped training
        path = ckpt.restore_newest_readable(self.checkpoint, folder)
        step = int(self.model.step.numpy())
        if path is not None:
            if not self.iterator_checkpointed and step != self._skipped_to:
                self._reposition(step)
            print(f"Resumed from {path} at step {step}")
        return step

    def _reposition(self, step: int) -> None:
        """Rebuilds a non-checkpointed input pipeline to start after ``step`` steps.

        Every worker builds the same global stream and keeps its own part of each global batch
        (``AutoShardPolicy.DATA``), so the job trains on exactly the batches one process would,
        for any number of workers and shard files, and skipping ``step`` global batches
        repositions every worker exactly.
        """
        dataset = self.model_class.build_input(self.config, "train", training=True,
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
        return tf.train.latest_checkpoint(ckpt.checkpoint_dir(self.model_dir))

    def save(self) -> str:
        m = self.model
        step = int(m.step.numpy())
        if not ckpt.all_finite(m.trainable_variables()):
            raise TrainingDivergedError(
                f"weights are not finite at step {step}; not saving. Last good "
                f"checkpoint: {self.latest_checkpoint()}")
        try:
            self.manager.save(checkpoint_number=m.step)
        except (OSError, tf.errors.OpError) as e:
            raise self._save_failed(step, e) from None
        self._last_save = step
        if self.is_chief and not self._room_checked:
            self._room_checked = True
            warning = ckpt.room_warning(self.manager.directory, self._path_for(step))
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
        return self._path_for(self._last_save)

    def _checkpoint_size(self) -> int:
        """Bytes of a checkpoint: the newest one's, or before the first, the weights and Adam's
        two moments of each."""
        latest = self.latest_checkpoint()
        if latest:
            return ckpt.checkpoint_bytes(latest)
        # Keras 3 variables name their dtype as a string: tf.as_dtype reads both kinds.
        return 3 * sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size
                       for v in self.model.trainable_variables())

    def _save_failed(self, step: int, error: Exception) -> ckpt.CheckpointWriteError:
        """The one-line error of a checkpoint that could not be written (full disk, quota,
        read-only folder), after removing what the failed write left."""
        folder = self.manager.directory
        if self.is_chief:
            ckpt.remove_partial_saves(folder)
        reason = (workers.error_reason(error) if isinstance(error, tf.errors.OpError)
                  else f"{type(error).__name__}: {error}")
        return ckpt.CheckpointWriteError(
            f"could not write checkpoint {self._path_for(step)} ({reason}; "
            f"{ckpt.space_report(folder, self._checkpoint_size())}); the newest complete "
            f"checkpoint is {self.latest_checkpoint() or 'none yet'}: make room or fix the folder "
            "and rerun the same command to resume from it")

    def stop_requested(self, local: bool) -> bool:
        """Whether any worker received SIGTERM/SIGINT (every worker must ask at the same step).

        One process decides alone; several agree through one all-reduce of a flag per step, so
        that all of them save the same step and stop together.
        """
        if self.workers == 1:
            return local
        if self._agree is None:
            self._agree = workers.stop_agreement(self.strategy)
        return self._agree(local)

    # -- summaries ---------------------------------------------------------------------------

    def write_images(self, step: int, batch, writer, name: str) -> None:
        if not self.is_chief:
            return
        grids = self.model.sample_grids(tuple(t[:4] for t in batch), self.config.train.test_mode)
        captions = visualize.column_captions(self.model_class.sample_columns)
        blocks = []
        with writer.as_default(step=step):
            for i, (tag, columns) in enumerate(grids.items()):
                grid = visualize.comparison_grid(*columns)
                tf.summary.image(f"{name}/{tag}", grid, max_outputs=4)
                shown = [c for c in columns if c is not None]
                names = captions[i] if i < len(captions) else None
                blocks.append((grid, names if names and len(names) == len(shown) else None))
        png = visualize.captioned_png(blocks)
        samples = os.path.join(self.model_dir, SAMPLES_SUBDIR)
        try:
            visualize.save_png(os.path.join(samples, f"{name}_step{step:07d}.png"), png)
            visualize.save_png(os.path.join(samples, f"{name}_latest.png"), png)
        except OSError as e:  # a full disk: say so once, keep training (checkpoints decide)
            self._warn_once("samples", f"could not write the sample grids to {samples} ({e}); "
                                       "training goes on")

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
            raise workers.WorkerLostError(
                f"lost another worker of the {self.workers}-worker job at step "
                f"{int(self.model.step.numpy())} ({workers.error_reason(e)}); restart "
                "every worker with the same command: training resumes from "
                f"{self.latest_checkpoint() or 'the start (no checkpoint yet)'}") from None
        finally:
            self.remove_scratch()
            if self.lock is not None:
                self.lock.release()

    def _run(self) -> TrainResult:
        t = self.config.train
        step = self.restore()
        if step >= self.total_steps:
            print(f"Already trained {step} of {self.total_steps} steps; nothing to do")
            return TrainResult(step, self.total_steps, {}, self.latest_checkpoint(), {},
                               weights_sha256=self.weights_sha256())
        self._last_save = step
        bar = progress_bar(self.total_steps, "step", self.progress,
                           stateful_metrics=list(self.model.loss_names) + ["lr"])
        bar.update(step)
        if self.config.data.on_corrupt_record == "skip":
            with self.train_writer.as_default(step=step):
                tf.summary.scalar("data/skipped_records", self.skipped_records)
        values: dict[str, float] = {}
        val_metrics: dict[str, float] = {}
        epoch_end = stopped = False
        last_time, last_step = time.perf_counter(), step
        with workers.SignalCatcher() as signals:
            while step < self.total_steps:
                try:
                    batch = next(self.iterator)
                except tf.errors.DataLossError as e:
                    raise self._corrupt_data(step, e) from None
                lr = self.model.current_lr()  # the rate this step trains with
                values = {k: float(v) for k, v in self.model.train_step(batch).items()}
                step += 1
                if not all(np.isfinite(list(values.values()))):
                    raise TrainingDivergedError(
                        f"non-finite loss at step {step} ({values}); stopped without saving. "
                        f"Last good checkpoint: {self.latest_checkpoint()}. Lower --lr or "
                        "check the data")
                bar.update(step, [(k, v) for k, v in values.items()] + [("lr", lr)])
                if self.lock is not None:
                    self.lock.heartbeat()
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
        for writer in (self.train_writer, self.val_writer):
            try:
                writer.flush()
            except (OSError, tf.errors.OpError) as e:
                self._warn_once("events", f"could not write TensorBoard events to "
                                          f"{self.model_dir} ({e})")
        return TrainResult(step, self.total_steps, values, self._path_for(self._last_save),
                           val_metrics, stopped_by_signal=stopped,
                           weights_sha256=self.weights_sha256())

    def _corrupt_data(self, step: int, error: tf.errors.DataLossError) -> data_lib.DataError:
        """Saves the last completed step, then names the corrupt shard and the remedies.

        The save holds no input-iterator state (:meth:`_stop_checkpointing_iterator`), even when
        this step was just saved: the prefetched error may be part of that state.
        """
        if step and (self.iterator_checkpointed or self._last_save != step):
            if self.iterator_checkpointed:
                self._stop_checkpointing_iterator()
            self.save()
        during = (f"training stopped at step {step}, saved in {self._path_for(step)}"
                  if step else "training stopped before its first step")
        if self.config.data.tfds_name:
            return data_lib.CorruptDataError(
                f"TensorFlow Datasets {self.config.data.tfds_name} has a corrupt record "
                f"({data_lib.error_text(error)}); {during}. Delete its prepared files and let "
                "TFDS prepare them again")
        return data_lib.corruption_error(self.config.data.data_dir, "train", error, during,
                                         skip_flag=True)

    def _report_skipped_records(self) -> int:
        """Under ``on_corrupt_record=skip``: one warning per damaged training shard; returns the
        records skipped in all (written to TensorBoard as ``data/skipped_records``)."""
        data = self.config.data
        if data.on_corrupt_record != "skip" or data.tfds_name:
            return 0
        _, dropped = data_lib.readable_shards(data_lib.split_shards(data.data_dir, "train"),
                                              "skip")
        for path, (count, fault) in dropped.items():
            print(f"warning: skipping {count} corrupt record(s) of {path} ({fault}); check the "
                  f"data with `python -m data_prep.verify --data_dir {data.data_dir}`",
                  file=sys.stderr)
        return sum(count for count, _ in dropped.values())

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            print(f"warning: {message}", file=sys.stderr)

    def weights_sha256(self) -> str:
        return ckpt.weights_sha256(self.model.trainable_variables())

    def _path_for(self, step: int) -> str:
        """The chief's checkpoint of ``step`` in ``model_dir``."""
        return os.path.join(ckpt.checkpoint_dir(self.model_dir), f"ckpt-{step}")


def build_trainer(config: ExperimentConfig, progress: bool = True) -> _Trainer:
    """Checks ``config`` (``models.validate``) and the model directory against it and builds
    everything for training."""
    models.validate(config)
    if not config.train.model_dir:
        raise ConfigError("model_dir is empty; pass --model_dir")
    if not config.data.data_dir and not config.data.tfds_name:
        raise ConfigError("data_dir is empty; pass --data_dir (a folder made by "
                          "data_prep.build_tfrecords)" + (
                              " or --tfds_name" if models.for_config(config).tfds_source
                              else ""))
    if config.data.data_dir and config.data.tfds_name:
        raise ConfigError("pass one of --data_dir and --tfds_name, not both")
    ckpt.check_resume_config(config)
    model_dir = config.train.model_dir
    created = not os.path.exists(model_dir)
    try:
        trainer = _Trainer(config, progress)
    except BaseException as e:
        # A start that fails (bad data, a layout the model does not read) leaves no model_dir
        # behind that this call created; one that existed before, or that another trainer
        # holds (it may have created it meanwhile), is never removed.
        if created and not isinstance(e, locking.ModelDirLockedError) and os.path.isdir(
                model_dir) and not tf.train.latest_checkpoint(
                ckpt.checkpoint_dir(model_dir)):
            shutil.rmtree(model_dir, ignore_errors=True)
        raise
    if trainer.is_chief:
        save_config(config, config.train.model_dir)
    return trainer


def train(config: ExperimentConfig, progress: bool = True) -> TrainResult:
    """Trains (or resumes training of) the model ``config.model.model`` names.

    Restarting with the same ``model_dir`` resumes from the latest checkpoint: step, weights,
    optimizer moments, dropout RNG state and input position, so an interrupted run continues as
    if it had not stopped. SIGTERM and SIGINT (to any worker) save a checkpoint before returning.

    Raises:
      ConfigError: invalid or mismatched configuration (e.g. another architecture in model_dir).
      DataError: missing or empty data.
      TrainingDivergedError: a loss became NaN/Inf; the latest checkpoint stays the last good one.
      workers.WorkerLostError: another worker of a multi-worker job died or became unreachable.
    """
    return build_trainer(config, progress).run()
