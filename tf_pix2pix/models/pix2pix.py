"""pix2pix (Isola et al., CVPR 2017): a generator, a conditional PatchGAN, two Adam optimizers
and the reference's train step, registered as ``--model=pix2pix``."""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

import keras

from tf_pix2pix import losses
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, ModelConfig, option
from tf_pix2pix.metrics.scoring import evaluate
from tf_pix2pix.models.base import (TranslationModel, current_lr, dtype_policy,
                                    make_optimizer, register, scaled, seed_states)
from tf_pix2pix.networks import build_discriminator

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig(ModelConfig):
    """pix2pix's options: the shared ones with the reference's defaults (U-Net 256, batch norm,
    dropout, vanilla GAN), the objective's weights and the paper's ablations."""

    condition_D: bool = option(True, "The discriminator sees only the output image (the paper's "
                                     "L1 + GAN row).", flag="no_condition_D", inverted=True)
    lambda_gan: float = option(1.0, "Weight of the adversarial term; 0 builds and trains no "
                                    "discriminator (the paper's L1 row).", bound="non_negative",
                               architecture=False)
    lambda_l1: float = option(100.0, "Weight of the L1 term (0: the paper's cGAN row).",
                              bound="non_negative", architecture=False)


@register
class Pix2Pix(TranslationModel):
    """Generator, discriminator, their Adam optimizers and the distributed train step.

    Build it inside ``strategy.scope()``. ``train_step`` runs one reference iteration: a generator
    forward pass, a discriminator update on the detached output (loss halved), then a generator
    update through the freshly updated discriminator, on ``lambda_gan * G_GAN + lambda_l1 * L1``.

    The paper's ablations: ``lambda_gan=0`` is the "L1" row (no discriminator is built, trained
    or saved; the step is the generator's alone); ``lambda_l1=0`` the "cGAN" row;
    ``condition_D=False`` gives D only the output image (the "L1 + GAN" row).
    """

    name = "pix2pix"
    Config = Pix2PixConfig
    presets = {
        # The paper's setup: the defaults as they are.
        "reference": {},
        # A 128x128 U-Net that learns the synthetic translation in a few minutes on 2 CPU cores.
        "demo": {
            "model_dir": "runs/demo", "netG": "unet_128", "ngf": 32, "ndf": 32,
            "load_size": 142, "crop_size": 128, "batch_size": 4, "n_epochs": 10,
            "n_epochs_decay": 5, "summary_every_steps": 20, "image_every_steps": 100,
            "save_every_steps": 500, "val_max_examples": 50,
        },
    }
    demo_data = {"folder": "data/demo", "size": 128}
    # The reference's scripts/download_pix2pix_model.sh.
    published_generators = {
        name: f"http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"
        for name in ("facades_label2photo", "sat2map", "map2sat", "edges2shoes", "day2night")}

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        super().check_config(config)
        if config.model.lambda_gan == 0 and config.model.lambda_l1 == 0:
            raise ConfigError("lambda_gan and lambda_l1 are both 0: the generator would have no "
                              "objective")
        if config.data.tfds_name:
            raise ConfigError("tfds_name is a CycleGAN source (cycle_gan/*); pix2pix reads "
                              "TFRecords of pairs from data_dir")

    @classmethod
    def saved_state_fields(cls, config: ExperimentConfig) -> dict[str, Any]:
        # lambda_gan 0 trains (and saves) no discriminator.
        return {"model.lambda_gan>0": config.model.lambda_gan > 0}

    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        self.config = config
        self.strategy = strategy
        data, model = config.data, config.model
        sync_bn = strategy.num_replicas_in_sync > 1
        self.adversarial = model.lambda_gan > 0
        with dtype_policy(config.runtime.precision):
            self.generator = self.build_generator(config, "AtoB", sync_bn)
            self.discriminator = (build_discriminator(model, data.input_nc, data.output_nc,
                                                      sync_bn, conditional=model.condition_D)
                                  if self.adversarial else None)
        self.g_optimizer = make_optimizer(config, steps_per_epoch)
        self.g_optimizer.build(self.generator.trainable_variables)
        if self.adversarial:
            self.d_optimizer = make_optimizer(config, steps_per_epoch)
            self.d_optimizer.build(self.discriminator.trainable_variables)
        self.loss_names = LOSS_NAMES if self.adversarial else ("G_L1",)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    @property
    def rng_state(self) -> dict[str, tf.Variable]:
        """Dropout seed-generator states, which Keras layers do not put in checkpoints."""
        return seed_states(self.generator)

    @property
    def has_discriminator(self) -> bool:
        return self.adversarial

    def networks(self) -> dict[str, keras.Model]:
        nets = {"generator": self.generator}
        if self.adversarial:
            nets["discriminator"] = self.discriminator
        return nets

    def checkpoint_objects(self) -> dict[str, Any]:
        objects = {"generator": self.generator, "g_optimizer": self.g_optimizer,
                   "rng": self.rng_state}
        if self.adversarial:
            objects.update(discriminator=self.discriminator, d_optimizer=self.d_optimizer)
        return objects

    def current_lr(self) -> float:
        return current_lr(self.g_optimizer)

    def _replica_step(self, inputs: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        m = self.config.model
        batch = self.config.data.batch_size
        avg = lambda x: tf.nn.compute_average_loss(x, global_batch_size=batch)  # noqa: E731
        G, D = self.generator, self.discriminator
        if not self.adversarial:  # the paper's "L1" row: no discriminator at all
            with tf.GradientTape() as g_tape:
                g_l1 = losses.l1_loss(G(inputs, training=True), targets)
                g_loss = scaled(self.g_optimizer, avg(m.lambda_l1 * g_l1))
            g_grads = g_tape.gradient(g_loss, G.trainable_variables)
            self.g_optimizer.apply_gradients(zip(g_grads, G.trainable_variables))
            return {"G_L1": avg(m.lambda_l1 * g_l1)}

        def judge(images):  # conditional D sees (input, image); unconditional only the image
            return D([inputs, images] if self.config.model.condition_D else images,
                     training=True)

        with tf.GradientTape() as g_tape:
            fake = G(inputs, training=True)
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_logits = judge(targets)
                    fake_logits = judge(tf.stop_gradient(fake))
                    d_real, d_fake = losses.discriminator_loss(real_logits, fake_logits,
                                                               m.gan_mode)
                    # Loss scaling (float16) must happen inside the tape to be differentiated.
                    d_loss = scaled(self.d_optimizer, 0.5 * avg(d_real + d_fake))
                d_grads = d_tape.gradient(d_loss, D.trainable_variables)
                self.d_optimizer.apply_gradients(zip(d_grads, D.trainable_variables))
            g_gan, g_l1 = losses.generator_loss(judge(fake), fake, targets, m.gan_mode,
                                                m.lambda_l1)
            g_loss = scaled(self.g_optimizer, avg(m.lambda_gan * g_gan + m.lambda_l1 * g_l1))
        g_grads = g_tape.gradient(g_loss, G.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, G.trainable_variables))
        # G_L1 is reported scaled by lambda, as the reference prints it.
        return {"G_GAN": avg(g_gan), "G_L1": avg(m.lambda_l1 * g_l1), "D_real": avg(d_real),
                "D_fake": avg(d_fake)}

    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        inputs, targets = batch[0], batch[1]
        return {"input_output_target": [inputs, self.generate(inputs, mode), targets]}

    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """L1, PSNR and SSIM of the translations against the targets."""
        return evaluate(lambda x: self.generate(x, mode), dataset, max_examples)
