"""The pix2pix model pair, its optimizers, the learning-rate schedule and the train step."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
import tensorflow as tf

from tf_pix2pix import losses
from tf_pix2pix.config import ExperimentConfig
from tf_pix2pix.networks import build_discriminator, build_generator
from tf_pix2pix.optim import FusedAdam

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


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


class Pix2Pix:
    """Generator, discriminator, their Adam optimizers and the distributed train step.

    Build it inside ``strategy.scope()``. ``train_step`` runs one reference iteration: a generator
    forward pass, a discriminator update on the detached output (loss halved), then a generator
    update through the freshly updated discriminator.
    """

    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        self.config = config
        self.strategy = strategy
        data, model = config.data, config.model
        sync_bn = strategy.num_replicas_in_sync > 1
        t = config.train
        with dtype_policy(t.precision):
            self.generator = build_generator(model, data.input_nc, data.output_nc, sync_bn)
            self.discriminator = build_discriminator(model, data.input_nc, data.output_nc,
                                                     sync_bn)
        self.g_optimizer = self._optimizer(steps_per_epoch)
        self.d_optimizer = self._optimizer(steps_per_epoch)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self._step_fn = None
        self._generate_fns: dict[str, Any] = {}

    def _optimizer(self, steps_per_epoch: int) -> keras.optimizers.Optimizer:
        t = self.config.train
        opt = FusedAdam(learning_rate(self.config, steps_per_epoch), beta_1=t.beta1,
                        beta_2=t.beta2, epsilon=1e-8)
        # float16 gradients underflow without dynamic loss scaling; bfloat16 does not need it.
        if t.precision == "mixed_float16":
            opt = keras.mixed_precision.LossScaleOptimizer(opt)
        return opt

    def _scaled(self, optimizer, loss: tf.Tensor) -> tf.Tensor:
        if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
            return optimizer.scale_loss(loss)
        return loss

    @property
    def rng_state(self) -> dict[str, tf.Variable]:
        """Dropout seed-generator states, which Keras layers do not put in checkpoints."""
        seeds = [v for v in self.generator.non_trainable_variables
                 if "seed_generator" in v.path]
        return {f"seed_{i}": v for i, v in enumerate(seeds)}

    def current_lr(self) -> float:
        lr = self.g_optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def _replica_step(self, inputs: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        t = self.config.train
        batch = self.config.data.batch_size
        avg = lambda x: tf.nn.compute_average_loss(x, global_batch_size=batch)  # noqa: E731
        G, D = self.generator, self.discriminator
        with tf.GradientTape() as g_tape:
            fake = G(inputs, training=True)
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_logits = D([inputs, targets], training=True)
                    fake_logits = D([inputs, tf.stop_gradient(fake)], training=True)
                    d_real, d_fake = losses.discriminator_loss(real_logits, fake_logits,
                                                               t.gan_mode)
                    # Loss scaling (float16) must happen inside the tape to be differentiated.
                    d_loss = self._scaled(self.d_optimizer, 0.5 * avg(d_real + d_fake))
                d_grads = d_tape.gradient(d_loss, D.trainable_variables)
                self.d_optimizer.apply_gradients(zip(d_grads, D.trainable_variables))
            g_logits = D([inputs, fake], training=True)
            g_gan, g_l1 = losses.generator_loss(g_logits, fake, targets, t.gan_mode, t.lambda_l1)
            g_loss = self._scaled(self.g_optimizer, avg(g_gan + t.lambda_l1 * g_l1))
        g_grads = g_tape.gradient(g_loss, G.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, G.trainable_variables))
        # G_L1 is reported scaled by lambda, as the reference prints it.
        return {"G_GAN": avg(g_gan), "G_L1": avg(t.lambda_l1 * g_l1), "D_real": avg(d_real),
                "D_fake": avg(d_fake)}

    def train_step(self, batch) -> dict[str, tf.Tensor]:
        """One distributed training step on a (distributed) ``(input, target)`` batch."""
        if self._step_fn is None:
            @tf.function
            def step_fn(batch):
                per_replica = self.strategy.run(self._replica_step, args=batch)
                self.step.assign_add(1)
                return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                        for k, v in per_replica.items()}
            self._step_fn = step_fn
        return self._step_fn(batch)

    def generate(self, inputs: tf.Tensor, mode: str = "eval") -> tf.Tensor:
        """Runs the generator in a named test-time mode.

        ``eval``: dropout off, batch-norm running statistics (the usual inference).
        ``paper``: as in the paper's test time, dropout on and batch statistics of the batch
        itself; the model's stored statistics and RNG state are left unchanged.
        """
        if mode not in self._generate_fns:
            if mode == "eval":
                fn = lambda x: self.generator(x, training=False)  # noqa: E731
            elif mode == "paper":
                def fn(x):
                    with preserved_state(self.generator):
                        return self.generator(x, training=True)
            else:
                raise ValueError(f"unknown test-time mode {mode!r}; use eval or paper")
            self._generate_fns[mode] = tf.function(fn, reduce_retracing=True)
        return self._generate_fns[mode](inputs)
