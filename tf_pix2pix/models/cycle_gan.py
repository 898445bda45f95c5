"""CycleGAN (Zhu et al., ICCV 2017): two generators, two discriminators, two image pools.

Registered as ``--model=cycle_gan``, behind the interface of ``models.base.TranslationModel``,
so the one training loop, checkpoint/resume path and summary writer serve it. The reference is
``cycle_gan_model.py`` of junyanz/pytorch-CycleGAN-and-pix2pix:

* G_A: A -> B and G_B: B -> A; D_A judges domain B (real_B vs G_A's fakes), D_B judges domain A.
  The discriminators are unconditional: they see one image.
* One iteration: both generators step first, under one Adam over their joint parameters, on
  ``G_A + G_B + cycle_A + cycle_B + idt_A + idt_B`` (the discriminators are not updated); then
  D_A and D_B step under one Adam, each on ``(GAN(D(real), 1) + GAN(D(pool fake), 0)) * 0.5``,
  with the fakes made by the generators before their update.
* Cycle losses ``L1(G_B(G_A(A)), A) * lambda_A`` and ``L1(G_A(G_B(B)), B) * lambda_B``; identity
  losses ``L1(G_A(B), B) * lambda_B * lambda_identity`` and ``L1(G_B(A), A) * lambda_A *
  lambda_identity`` (skipped, with their two generator passes, when ``lambda_identity`` is 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

import keras

from tf_pix2pix import losses
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, ModelConfig, option, option_of
from tf_pix2pix.metrics.scoring import evaluate
from tf_pix2pix.models.base import (GeneratorSlot, TranslationModel, current_lr,
                                    dtype_policy, make_optimizer, register,
                                    scaled, seed_states)
from tf_pix2pix.networks import build_discriminator

LOSS_NAMES = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")


@dataclasses.dataclass(frozen=True)
class CycleGANConfig(ModelConfig):
    """CycleGAN's options: the shared ones with the reference's defaults
    (``cycle_gan_model.py``'s ``modify_commandline_options`` and its scripts: resnet_9blocks,
    instance norm, no dropout, LSGAN), the cycle and identity weights and the image pools."""

    model: str = option_of(ModelConfig, "model", "cycle_gan")
    netG: str = option_of(ModelConfig, "netG", "resnet_9blocks")
    norm: str = option_of(ModelConfig, "norm", "instance")
    no_dropout: bool = option_of(ModelConfig, "no_dropout", True)
    gan_mode: str = option_of(ModelConfig, "gan_mode", "lsgan")
    lambda_A: float = option(10.0, "Weight of the cycle loss A -> B -> A.",
                             bound="non_negative", architecture=False)
    lambda_B: float = option(10.0, "Weight of the cycle loss B -> A -> B.",
                             bound="non_negative", architecture=False)
    lambda_identity: float = option(0.5, "Identity loss weight relative to lambda_A/B (0 "
                                         "disables it and its two generator passes); the "
                                         "reference's remedy for colour inversion.",
                                    bound="non_negative", architecture=False)
    pool_size: int = option(50, "Fakes kept per discriminator; 0 = no pool.",
                            bound="non_negative", architecture=False)


class ImagePool(tf.Module):
    """The reference's history of generated images (Shrivastava et al., 2017), in variables.

    ``query`` takes a batch of fakes and returns a batch for the discriminator, image by image:
    while the pool holds fewer than ``size`` images, the new image is stored and returned; once
    full, with probability 1/2 a random stored image is returned and replaced by the new one,
    otherwise the new image is returned. The images, the fill count and the random generator's
    state are variables, so a checkpoint holds the whole pool and a resumed run draws the same
    numbers as an uninterrupted one. ``size`` 0 returns the input unchanged.
    """

    def __init__(self, size: int, image_shape: tuple[int, int, int], seed: int,
                 name: str | None = None):
        super().__init__(name=name)
        self.size = size
        self.count = tf.Variable(0, dtype=tf.int32, trainable=False, name="count")
        self.images = tf.Variable(tf.zeros([max(size, 1), *image_shape], tf.float32),
                                  trainable=False, name="images")
        self.rng = tf.random.Generator.from_seed(seed)

    def _query_one(self, image: tf.Tensor) -> tf.Tensor:
        def store():
            self.images.scatter_nd_update([[self.count]], image[tf.newaxis])
            self.count.assign_add(1)
            return image

        def draw():
            p = self.rng.uniform([])
            index = self.rng.uniform([], 0, self.size, dtype=tf.int32)

            def swap():
                old = tf.identity(self.images[index])
                with tf.control_dependencies([old]):
                    self.images.scatter_nd_update([[index]], image[tf.newaxis])
                return old

            return tf.cond(p > 0.5, swap, lambda: image)

        return tf.cond(self.count < self.size, store, draw)

    def query(self, images: tf.Tensor) -> tf.Tensor:
        """Returns the batch the discriminator sees for the fakes ``images`` (static batch)."""
        if self.size == 0:
            return images
        images = tf.cast(images, tf.float32)
        return tf.stack([self._query_one(images[i]) for i in range(images.shape[0])])


def cycle_gan_losses(real_A, real_B, rec_A, rec_B, idt_A, idt_B, d_fake_B, d_fake_A,
                     lambda_A: float, lambda_B: float, lambda_identity: float,
                     gan_mode: str) -> dict[str, tf.Tensor]:
    """The generators' per-example losses, named as the reference logs them.

    Args:
      real_A, real_B: the real images.
      rec_A, rec_B: ``G_B(fake_B)``, ``G_A(fake_A)``.
      idt_A, idt_B: ``G_A(real_B)``, ``G_B(real_A)``; ``None`` when ``lambda_identity`` is 0.
      d_fake_B, d_fake_A: ``D_A(G_A(real_A))``, ``D_B(G_B(real_B))`` logits.
      lambda_A, lambda_B, lambda_identity, gan_mode: the objective's weights and GAN loss.

    Returns:
      ``{"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"}``, each ``[batch]``; the generators
      minimise their sum.
    """
    zero = tf.zeros([tf.shape(real_A)[0]], tf.float32)
    use_idt = lambda_identity > 0
    return {
        "G_A": losses.gan_loss(d_fake_B, True, gan_mode),
        "G_B": losses.gan_loss(d_fake_A, True, gan_mode),
        "cycle_A": losses.l1_loss(rec_A, real_A) * lambda_A,
        "cycle_B": losses.l1_loss(rec_B, real_B) * lambda_B,
        # idt_A = G_A(B) should be B itself: weighted by lambda_B, as in the reference.
        "idt_A": losses.l1_loss(idt_A, real_B) * lambda_B * lambda_identity if use_idt else zero,
        "idt_B": losses.l1_loss(idt_B, real_A) * lambda_A * lambda_identity if use_idt else zero,
    }


# The reference's scripts/download_cyclegan_model.sh.
_PUBLISHED = ("apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite",
              "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne",
              "style_ukiyoe", "style_vangogh", "sat2map", "map2sat", "cityscapes_photo2label",
              "cityscapes_label2photo", "facades_photo2label", "facades_label2photo",
              "iphone2dslr_flower")


@register
class CycleGAN(TranslationModel):
    """G_A, G_B, D_A, D_B, the two image pools, two Adam optimizers and the train step.

    Build it inside ``strategy.scope()``. See the module doc for the iteration.
    """

    name = "cycle_gan"
    loss_names = LOSS_NAMES
    Config = CycleGANConfig
    presets = {
        "reference": {},
        # A small ResNet pair on 64x64 crops of the unpaired synthetic set (label maps <->
        # renderings of other scenes), about 3 minutes on 2 CPU cores.
        "demo": {
            "model_dir": "runs/demo_cycle_gan", "netG": "resnet_6blocks", "ngf": 16,
            "ndf": 16, "load_size": 72, "crop_size": 64, "n_epochs": 3, "n_epochs_decay": 2,
            "summary_every_steps": 20, "image_every_steps": 100, "save_every_steps": 500,
            "val_max_examples": 20,
        },
    }
    demo_data = {"folder": "data/demo_cycle_gan", "size": 64, "unpaired": True}
    sample_columns = "real_A | fake_B | rec_A, then real_B | fake_A | rec_B"
    published_generators = {
        name: f"http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
        for name in _PUBLISHED}
    tfds_source = True
    data_layout = "unaligned"

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        super().check_config(config)
        if config.model.lambda_identity and config.data.input_nc != config.data.output_nc:
            # G_A(real_B) needs B images to fit G_A's input, as the reference asserts.
            raise ConfigError(
                f"lambda_identity={config.model.lambda_identity} needs input_nc == output_nc "
                f"(got {config.data.input_nc} and {config.data.output_nc}); set "
                "lambda_identity=0 or equal channel counts")
        fixed = ("resize_and_crop", "crop", "scale_width_and_crop")
        if config.model.pool_size and config.data.preprocess not in fixed:
            raise ConfigError(
                f"preprocess={config.data.preprocess} gives images of varying sizes, which "
                "CycleGAN's image pool cannot store; use one of "
                f"{', '.join(fixed)} (train on crops, translate full images later) or "
                "pool_size=0")

    @classmethod
    def saved_state_fields(cls, config: ExperimentConfig) -> dict[str, Any]:
        # The image pools are saved variables too.
        return {"model.pool_size": config.model.pool_size,
                "data.crop_size": config.data.crop_size}

    @classmethod
    def generator_slots(cls, config: ExperimentConfig) -> dict[str, GeneratorSlot]:
        i, o = config.data.input_nc, config.data.output_nc
        return {"AtoB": GeneratorSlot("G_A", i, o), "BtoA": GeneratorSlot("G_B", o, i)}

    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        self.config = config
        self.strategy = strategy
        model = config.model
        replicas = strategy.num_replicas_in_sync
        if replicas > 1 and model.pool_size:
            raise ConfigError(f"CycleGAN's image pools run on one replica; with {replicas} "
                              "replicas use --pool_size=0 or --strategy=default")
        sync_bn = replicas > 1
        nc_a, nc_b = config.data.input_nc, config.data.output_nc
        with dtype_policy(config.runtime.precision):
            self.G_A = self.build_generator(config, "AtoB", sync_bn)
            self.G_B = self.build_generator(config, "BtoA", sync_bn)
            # D_A judges domain B (G_A's outputs), D_B judges domain A.
            self.D_A = build_discriminator(model, nc_a, nc_b, sync_bn, conditional=False,
                                           name="D_A")
            self.D_B = build_discriminator(model, nc_b, nc_a, sync_bn, conditional=False,
                                           name="D_B")
        size = config.data.crop_size
        # Seeds of their own, derived from the run's seed: the pools draw independently.
        seed = config.data.seed
        self.fake_A_pool = ImagePool(model.pool_size, (size, size, nc_a), seed=2 * seed + 1,
                                     name="fake_A_pool")
        self.fake_B_pool = ImagePool(model.pool_size, (size, size, nc_b), seed=2 * seed + 2,
                                     name="fake_B_pool")
        self.g_variables = self.G_A.trainable_variables + self.G_B.trainable_variables
        self.d_variables = self.D_A.trainable_variables + self.D_B.trainable_variables
        self.g_optimizer = make_optimizer(config, steps_per_epoch)
        self.d_optimizer = make_optimizer(config, steps_per_epoch)
        self.g_optimizer.build(self.g_variables)
        self.d_optimizer.build(self.d_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    def networks(self) -> dict[str, keras.Model]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def checkpoint_objects(self) -> dict[str, Any]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer,
                "fake_A_pool": self.fake_A_pool, "fake_B_pool": self.fake_B_pool,
                "rng": seed_states(self.G_A, self.G_B)}

    def trainable_variables(self) -> list[tf.Variable]:
        return self.g_variables + self.d_variables

    def current_lr(self) -> float:
        return current_lr(self.g_optimizer)

    def _replica_step(self, real_A: tf.Tensor, real_B: tf.Tensor) -> dict[str, tf.Tensor]:
        m = self.config.model
        batch = self.config.data.batch_size
        avg = lambda x: tf.nn.compute_average_loss(x, global_batch_size=batch)  # noqa: E731
        G_A, G_B, D_A, D_B = self.G_A, self.G_B, self.D_A, self.D_B
        # 1. Generators, through the discriminators as they are before this step.
        with tf.GradientTape() as tape:
            fake_B = G_A(real_A, training=True)
            rec_A = G_B(fake_B, training=True)
            fake_A = G_B(real_B, training=True)
            rec_B = G_A(fake_A, training=True)
            idt_A = idt_B = None
            if m.lambda_identity > 0:
                idt_A = G_A(real_B, training=True)
                idt_B = G_B(real_A, training=True)
            g = cycle_gan_losses(real_A, real_B, rec_A, rec_B, idt_A, idt_B,
                                 D_A(fake_B, training=True), D_B(fake_A, training=True),
                                 m.lambda_A, m.lambda_B, m.lambda_identity, m.gan_mode)
            g_loss = scaled(self.g_optimizer, avg(tf.add_n(list(g.values()))))
        g_grads = tape.gradient(g_loss, self.g_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.g_variables))
        # 2. Discriminators, on the fakes of the generators before their update, via the pools.
        pooled_fake_B = self.fake_B_pool.query(tf.stop_gradient(fake_B))
        pooled_fake_A = self.fake_A_pool.query(tf.stop_gradient(fake_A))
        with tf.GradientTape() as tape:
            a_real, a_fake = losses.discriminator_loss(
                D_A(real_B, training=True), D_A(pooled_fake_B, training=True), m.gan_mode)
            b_real, b_fake = losses.discriminator_loss(
                D_B(real_A, training=True), D_B(pooled_fake_A, training=True), m.gan_mode)
            d = {"D_A": 0.5 * (a_real + a_fake), "D_B": 0.5 * (b_real + b_fake)}
            d_loss = scaled(self.d_optimizer, avg(d["D_A"] + d["D_B"]))
        d_grads = tape.gradient(d_loss, self.d_variables)
        self.d_optimizer.apply_gradients(zip(d_grads, self.d_variables))
        values = {**g, **d}
        return {name: avg(values[name]) for name in LOSS_NAMES}

    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        real_A, real_B = batch[0], batch[1]
        fake_B = self.generate(real_A, mode, "AtoB")
        fake_A = self.generate(real_B, mode, "BtoA")
        return {"real_A_fake_B_rec_A": [real_A, fake_B, self.generate(fake_B, mode, "BtoA")],
                "real_B_fake_A_rec_B": [real_B, fake_A, self.generate(fake_A, mode, "AtoB")]}

    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """Cycle reconstruction quality on held-out images (unpaired data has no targets):
        ``rec_A_{l1,psnr,ssim}`` of ``G_B(G_A(A))`` against ``A``, and ``rec_B_*`` likewise."""
        metrics: dict[str, float] = {}
        for name, index, first, second in (("rec_A", 0, "AtoB", "BtoA"),
                                           ("rec_B", 1, "BtoA", "AtoB")):
            result = evaluate(
                lambda x, f=first, s=second: self.generate(self.generate(x, mode, f), mode, s),
                ((batch[index], batch[index]) for batch in dataset), max_examples)
            metrics["count"] = result.pop("count")
            metrics.update({f"{name}_{k}": v for k, v in result.items()})
        return metrics
