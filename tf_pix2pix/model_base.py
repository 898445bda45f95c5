"""What the two models share: the interface the training loop uses, the learning-rate schedule,
optimizers, dtype policies and test-time modes.

pix2pix (``pix2pix.Pix2Pix``) and CycleGAN (``cycle_gan.CycleGAN``) are siblings behind
:class:`TranslationModel`; ``train_lib`` runs one loop for both.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Protocol

import keras
import tensorflow as tf

from tf_pix2pix.config import ExperimentConfig
from tf_pix2pix.optim import FusedAdam


class TranslationModel(Protocol):
    """The small interface between a model and the training loop, export and prediction.

    Attributes:
      loss_names: names of the losses ``train_step`` returns (TensorBoard's ``loss/<name>``).
      step: int64 variable counting training steps.
    """

    loss_names: tuple[str, ...]
    step: tf.Variable

    def train_step(self, batch) -> dict[str, tf.Tensor]:
        """One (distributed) training step; returns the losses by name."""

    def checkpoint_objects(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the step and the input position."""

    def trainable_variables(self) -> list[tf.Variable]:
        """All trainable weights (checked for NaN/Inf before every save)."""

    def current_lr(self) -> float:
        """The learning rate the next step trains with."""

    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        """Image columns to show for a batch: ``{tag: [column, ...]}`` of ``[N, H, W, C]``."""

    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """Metrics on a held-out dataset (``count`` included)."""


def generator_slots(config: ExperimentConfig) -> dict[str, tuple[str, int, int]]:
    """The exportable generators: ``{direction: (checkpoint name, input_nc, output_nc)}``.

    pix2pix has one generator, trained for ``data.direction`` (exported as ``AtoB``: its input
    side to its output side); CycleGAN has G_A (A->B) and G_B (B->A).
    """
    i, o = config.data.input_nc, config.data.output_nc
    if config.model.model == "cycle_gan":
        return {"AtoB": ("G_A", i, o), "BtoA": ("G_B", o, i)}
    return {"AtoB": ("generator", i, o)}


def make_optimizer(config: ExperimentConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam with the configured schedule; dynamic loss scaling under ``mixed_float16``."""
    t = config.train
    opt = FusedAdam(learning_rate(config, steps_per_epoch), beta_1=t.beta1, beta_2=t.beta2,
                    epsilon=1e-8)
    # float16 gradients underflow without dynamic loss scaling; bfloat16 does not need it.
    if t.precision == "mixed_float16":
        opt = keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def scaled(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
    """The loss as ``optimizer`` must differentiate it (scaled under float16 loss scaling).

    Call it inside the tape: the scaling must be differentiated too.
    """
    if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def seed_states(*models: keras.Model) -> dict[str, tf.Variable]:
    """Dropout seed-generator states, which Keras layers do not put in checkpoints."""
    seeds = [v for m in models for v in m.non_trainable_variables if "seed_generator" in v.path]
    return {f"seed_{i}": v for i, v in enumerate(seeds)}


def distributed_step(strategy: tf.distribute.Strategy, replica_fn, step: tf.Variable):
    """A ``tf.function`` running ``replica_fn(*batch)`` on every replica, counting the step and
    summing the (already globally averaged) per-replica losses."""

    @tf.function
    def step_fn(batch):
        per_replica = strategy.run(replica_fn, args=batch)
        step.assign_add(1)
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return step_fn


def generate_fn(generator: keras.Model, mode: str):
    """A ``tf.function`` running ``generator`` in a named test-time mode.

    ``eval``: dropout off, batch-norm running statistics (the usual inference).
    ``paper``: as in the paper's test time, dropout on and batch statistics of the batch
    itself; the model's stored statistics are left unchanged.
    """
    if mode == "eval":
        fn = lambda x: generator(x, training=False)  # noqa: E731
    elif mode == "paper":
        def fn(x):
            with preserved_state(generator):
                return generator(x, training=True)
    else:
        raise ValueError(f"unknown test-time mode {mode!r}; use eval or paper")
    return tf.function(fn, reduce_retracing=True)


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The reference's ``linear`` policy, per epoch, from the optimizer's step count.

    During epoch ``e`` (0-based) the rate is ``lr * (1 - max(0, e + 1 - n_epochs) /
    (n_epochs_decay + 1))``: constant for ``n_epochs`` epochs, then falling linearly; like the
    reference, the last epoch trains at ``lr / (n_epochs_decay + 1)``, not at exactly zero.
    """

    def __init__(self, lr: float, steps_per_epoch: int, n_epochs: int, n_epochs_decay: int):
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.n_epochs = n_epochs
        self.n_epochs_decay = n_epochs_decay

    def __call__(self, step):
        epoch = tf.cast(step, tf.float32) // float(self.steps_per_epoch)
        decayed = tf.maximum(0.0, epoch + 1.0 - self.n_epochs) / float(self.n_epochs_decay + 1)
        return self.lr * tf.maximum(1.0 - decayed, 0.0)

    def get_config(self):
        return {"lr": self.lr, "steps_per_epoch": self.steps_per_epoch,
                "n_epochs": self.n_epochs, "n_epochs_decay": self.n_epochs_decay}


def learning_rate(config: ExperimentConfig, steps_per_epoch: int):
    """The schedule (or constant) named by ``train.lr_policy``."""
    t = config.train
    if t.lr_policy == "constant":
        return t.lr
    return LinearDecay(t.lr, steps_per_epoch, t.n_epochs, t.n_epochs_decay)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Builds layers under the Keras dtype policy ``name``, then restores the previous one.

    Layers keep the policy they were built with, so no global state outlives the build.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def preserved_state(model: keras.Model) -> Iterator[None]:
    """Restores the model's batch-norm running statistics on exit.

    Running the generator in ``paper`` mode uses training-mode layers, which would otherwise update
    the running statistics as a side effect. Dropout seeds do advance, so that successive
    paper-mode calls draw different dropout masks, as the paper's test-time noise intends.
    """
    saved = [(v, tf.identity(v.value)) for v in model.non_trainable_variables
             if "seed_generator" not in v.path]
    try:
        yield
    finally:
        for var, value in saved:
            var.assign(value)
