"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one-sided unpaired translation with a
patchwise contrastive loss instead of CycleGAN's cycle, registered as ``--model=cut``.

The reference is ``cut_model.py``, ``patchnce.py`` and ``networks.py`` of
taesungp/contrastive-unpaired-translation. One iteration:

* ``real = [real_A; real_B]`` with ``nce_idt`` (else ``real_A``), flipped left-right with
  probability 1/2 under ``flip_equivariance``; ``[fake_B; idt_B] = G(real)``.
* D steps first, on ``0.5 * (GAN(D(fake_B.detach()), 0) + GAN(D(real_B), 1))``.
* Then G and F (the patch projector) step on ``lambda_GAN * GAN(D(fake_B),
  1)`` through the freshly updated D, plus ``NCE(real_A, fake_B)`` (averaged with ``NCE(real_B,
  idt_B)`` under ``nce_idt``). ``NCE(src, tgt)`` taps G's encoder at ``nce_layers`` on ``tgt``
  (the queries; flipped back when the input was flipped) and on ``src`` (the keys), samples
  ``num_patches`` positions per layer (the keys' draw reused for the queries), projects them with
  F and averages :func:`losses.patch_nce_loss` over the layers, times ``lambda_NCE``.

The reference steps G and F with two Adams of the same settings; Adam is elementwise and both
count the same steps, so here one Adam over G's and F's weights makes the same updates from one
backward pass.

The keys' features are the reference's ``G(src)`` encoder pass; here they are taken from G's
forward pass on ``real``, which computed them already (same weights, same images: equal values),
except after a flip, when that pass saw the flipped images and the keys are computed again. This
saves the reference's second encoder pass over the inputs.

Random draws (patch positions, the flip) are stateless functions of the run's seed and the step,
so every replica draws the same ones, as one device draws them for its whole batch, and a resumed
run draws what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import data as data_lib
from tf_pix2pix import losses, networks
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, ModelConfig, option, option_of
from tf_pix2pix.metrics.scoring import IMAGE_METRICS, Scorer, to_unit_range
from tf_pix2pix.models.base import (GeneratorSlot, TranslationModel, current_lr, dtype_policy,
                                    make_optimizer, register, scaled)
from tf_pix2pix.networks import build_discriminator, resnet_module_names
from tf_pix2pix.networks.patch_sample import patch_ids, patch_projector, sample_patches

# The two modes of cut_model.py's modify_commandline_options (CUT's values are also the
# section's field defaults).
CUT_MODES = {
    "cut": {"nce_idt": True, "lambda_NCE": 1.0, "flip_equivariance": False, "n_epochs": 200,
            "n_epochs_decay": 200},
    "fastcut": {"nce_idt": False, "lambda_NCE": 10.0, "flip_equivariance": True,
                "n_epochs": 150, "n_epochs_decay": 50},
}


@dataclasses.dataclass(frozen=True)
class CUTConfig(ModelConfig):
    """CUT's options: the shared ones with the reference's defaults (resnet_9blocks, instance
    norm, no dropout, LSGAN, xavier init, antialiased sampling), PatchNCE's and the mode."""

    model: str = option_of(ModelConfig, "model", "cut")
    netG: str = option_of(ModelConfig, "netG", "resnet_9blocks")
    norm: str = option_of(ModelConfig, "norm", "instance")
    no_dropout: bool = option_of(ModelConfig, "no_dropout", True)
    init_type: str = option_of(ModelConfig, "init_type", "xavier")
    gan_mode: str = option_of(ModelConfig, "gan_mode", "lsgan")
    antialias: bool = option(True, "No antialiased downsampling: the ResNet generator and the "
                                   "PatchGAN downsample with stride-2 convs instead of "
                                   "stride-1 convs and a fixed blur with stride 2.",
                             flag="no_antialias", inverted=True)
    antialias_up: bool = option(True, "No antialiased upsampling: the ResNet generator "
                                      "upsamples with transposed convs instead of bilinear x2 "
                                      "and a 3x3 conv.", flag="no_antialias_up", inverted=True)
    nce_layers: str = option("0,4,8,12,16", "The generator's layers (indices of the "
                                            "reference's module list) that PatchNCE compares.")
    netF_nc: int = option(256, "Channels of the patch projection MLPs.", bound="positive")
    cut_mode: str = option("cut", "cut (NCE identity loss, lambda_NCE 1, 200 + 200 epochs) or "
                                  "fastcut (no identity loss, lambda_NCE 10, flip "
                                  "equivariance, 150 + 50 epochs); sets those options' "
                                  "defaults.", tuple(CUT_MODES), architecture=False)
    lambda_gan: float = option(1.0, "Weight of the adversarial term.", bound="non_negative",
                               architecture=False)
    lambda_NCE: float = option(1.0, "Weight of the PatchNCE loss.", bound="non_negative",
                               architecture=False)
    nce_idt: bool = option(True, "Also the PatchNCE loss of G(B) against B (the identity "
                                 "term), averaged with the main one.", architecture=False)
    nce_T: float = option(0.07, "Temperature of the PatchNCE loss.", bound="positive",
                          architecture=False)
    num_patches: int = option(256, "Patches sampled per layer and image.", bound="positive",
                              architecture=False)
    flip_equivariance: bool = option(False, "FastCUT: flip the batch with probability 1/2 "
                                            "before G and flip G's features back before "
                                            "PatchNCE.", architecture=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            layers = list(self.nce_layer_ids)
        except ValueError:
            layers = []
        if not layers or layers != sorted(set(layers)) or layers[0] < 0:
            raise ConfigError(f"nce_layers={self.nce_layers!r} is not valid; give increasing "
                              "layer indices such as 0,4,8,12,16")

    @property
    def nce_layer_ids(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.nce_layers.split(","))
# Images whose outputs' mean pairwise distance validation reports.
_DIVERSITY_IMAGES = 32


def mean_pairwise_l1(images: tf.Tensor) -> float:
    """Mean absolute difference, in [0, 1] units, over all pairs of ``[N, H, W, C]`` images in
    [-1, 1] (0 when the images are identical: the sign of a collapsed generator)."""
    x = to_unit_range(images).numpy().reshape(len(images), -1)
    if len(x) < 2:
        return 0.0
    total = sum(np.abs(x[i + 1:] - x[i]).mean(axis=1).sum() for i in range(len(x) - 1))
    return float(total / (len(x) * (len(x) - 1) / 2))


@register
class CUT(TranslationModel):
    """G, D, the patch projector F, their Adam optimizers and the train step (module doc)."""

    name = "cut"
    Config = CUTConfig
    modes = {"cut_mode": CUT_MODES}
    presets = {
        "reference": {},
        # A small ResNet on 64x64 crops of the unpaired synthetic set, a few minutes on 2 cores.
        "demo": {
            "model_dir": "runs/demo_cut", "netG": "resnet_6blocks", "ngf": 16, "ndf": 16,
            "load_size": 72, "crop_size": 64, "netF_nc": 64, "num_patches": 64, "n_epochs": 4,
            "n_epochs_decay": 2, "summary_every_steps": 20, "image_every_steps": 100,
            "save_every_steps": 500, "val_max_examples": 20,
        },
    }
    demo_data = {"folder": "data/demo_cycle_gan", "size": 64, "unpaired": True}
    sample_columns = "real_A | fake_B, then real_B | idt_B (G(B), which should stay B)"
    tfds_source = True
    data_layout = "unaligned"

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        super().check_config(config)
        m = config.model
        if not m.netG.startswith("resnet"):
            raise ConfigError(f"netG={m.netG}: CUT's nce_layers index the ResNet generator's "
                              "layers; use resnet_9blocks or resnet_6blocks")
        n_blocks = networks.n_blocks(m.netG)
        names = resnet_module_names(n_blocks, m.antialias, m.antialias_up)
        encoder = names.index(f"block{n_blocks - 1}_add")
        if m.nce_layer_ids[-1] > encoder:
            raise ConfigError(f"nce_layers={m.nce_layers}: the encoder of {m.netG} ends at "
                              f"layer {encoder}; use layers 0..{encoder}")
        if m.nce_idt and config.data.input_nc != config.data.output_nc:
            raise ConfigError(f"nce_idt needs input_nc == output_nc (G(real_B) must fit G's "
                              f"input; got {config.data.input_nc} and {config.data.output_nc}); "
                              "pass --nonce_idt or equal channel counts")
        if m.lambda_gan == 0 and m.lambda_NCE == 0:
            raise ConfigError("lambda_gan and lambda_NCE are both 0: the generator would have "
                              "no objective")

    @classmethod
    def generator_slots(cls, config: ExperimentConfig) -> dict[str, GeneratorSlot]:
        return {"AtoB": GeneratorSlot("G", config.data.input_nc, config.data.output_nc)}

    @classmethod
    def build_generator(cls, config: ExperimentConfig, direction: str = "AtoB",
                        sync_bn: bool = False) -> keras.Model:
        """The ResNet generator with CUT's antialiased sampling (unless turned off)."""
        slot = cls.generator_slots(config)[direction]
        return networks.build_generator(config.model, slot.input_nc, slot.output_nc, sync_bn,
                                        name=slot.root, antialias=config.model.antialias,
                                        antialias_up=config.model.antialias_up)

    @classmethod
    def receptive_field(cls, config: ExperimentConfig) -> str:
        m = config.model
        return str(networks.receptive_field(m.netD, m.n_layers_D, m.antialias))

    @classmethod
    def build_input(cls, config: ExperimentConfig, split: str, training: bool,
                    skip_examples: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
        """``(real_A, real_B)`` batches; in the decay epochs the training images are resized to
        the crop size instead of ``load_size`` (the reference's ``is_finetuning``)."""
        unscaled_from = None
        if training:
            steps = -(-cls.split_size(config, "train") // config.data.batch_size)
            unscaled_from = config.train.n_epochs * steps * config.data.batch_size
        return data_lib.build_unpaired_dataset(config.data, split, training,
                                               skip_examples=skip_examples,
                                               batch_size=batch_size,
                                               unscaled_from=unscaled_from)

    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        self.config = config
        self.strategy = strategy
        m = config.model
        self.nce_idt = m.nce_idt and m.lambda_NCE > 0
        self.loss_names = ("G_GAN", "D_real", "D_fake", "G", "NCE") + (
            ("NCE_Y",) if self.nce_idt else ())
        sync_bn = strategy.num_replicas_in_sync > 1
        with dtype_policy(config.runtime.precision):
            self.G = self.build_generator(config, "AtoB", sync_bn)
            self.D = build_discriminator(m, config.data.input_nc, config.data.output_nc, sync_bn,
                                         conditional=False, name="D", antialias=m.antialias)
            names = resnet_module_names(networks.n_blocks(m.netG), m.antialias, m.antialias_up)
            taps = [self.G.get_layer(names[i]).output for i in m.nce_layer_ids]
            # G's encoder up to the last tapped layer, and G with its taps (G's weights).
            self.encoder = keras.Model(self.G.input, taps, name="G_encoder")
            self.G_with_taps = keras.Model(self.G.input, [self.G.output, *taps],
                                           name="G_with_taps")
            self.F = patch_projector([tap.shape[-1] for tap in taps], m.netF_nc, m.init_gain,
                                     m.init_type)
        # F learns only from the NCE loss.
        self.g_variables = self.G.trainable_variables + (
            self.F.trainable_variables if m.lambda_NCE > 0 else [])
        self.g_optimizer = make_optimizer(config, steps_per_epoch)
        self.d_optimizer = make_optimizer(config, steps_per_epoch)
        self.g_optimizer.build(self.g_variables)
        self.d_optimizer.build(self.D.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    def networks(self) -> dict[str, keras.Model]:
        return {"G": self.G, "D": self.D, "F": self.F}

    def checkpoint_objects(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "F": self.F, "g_optimizer": self.g_optimizer,
                "d_optimizer": self.d_optimizer}

    def current_lr(self) -> float:
        return current_lr(self.g_optimizer)

    def _seed(self, *salt: int) -> tf.Tensor:
        """A stateless seed of the run's seed, the step and ``salt`` (same on every replica)."""
        seed = tf.stack([tf.constant(self.config.data.seed, tf.int64),
                         tf.convert_to_tensor(self.step)])
        for s in salt:
            seed = tf.random.experimental.stateless_fold_in(seed, s)
        return seed

    def nce_loss(self, keys: list[tf.Tensor], target: tf.Tensor,
                 flipped: tf.Tensor | None = None, salt: int = 0) -> tf.Tensor:
        """Per-image ``NCE(source, target)`` (module doc): ``[N]``.

        ``keys`` are the encoder's features of ``source`` at ``nce_layers``; ``target`` is G's
        output for ``source`` (flipped left-right when ``flipped``); ``salt`` separates the patch
        draws of the two NCE terms of a step.
        """
        m = self.config.model
        queries = self.encoder(target, training=True)
        if flipped is not None:
            queries = [tf.cond(flipped, lambda q=q: tf.reverse(q, [2]), lambda q=q: q)
                       for q in queries]
        ids = []
        for layer, key in enumerate(keys):
            shape = tf.shape(key)
            ids.append(patch_ids(shape[1] * shape[2], m.num_patches, self._seed(salt, layer)))
        k = self.F([sample_patches(key, i) for key, i in zip(keys, ids)], training=True)
        q = self.F([sample_patches(query, i) for query, i in zip(queries, ids)], training=True)
        per_layer = [losses.patch_nce_loss(qi, ki, m.nce_T) for qi, ki in zip(q, k)]
        return tf.add_n(per_layer) * (m.lambda_NCE / len(per_layer))

    def _replica_step(self, real_A: tf.Tensor, real_B: tf.Tensor) -> dict[str, tf.Tensor]:
        m = self.config.model
        avg = lambda x: tf.nn.compute_average_loss(  # noqa: E731
            x, global_batch_size=self.config.data.batch_size)
        n = tf.shape(real_A)[0]
        source = tf.concat([real_A, real_B], 0) if self.nce_idt else real_A
        real, flipped = source, None
        if m.flip_equivariance:
            flipped = tf.random.stateless_uniform([], self._seed(2)) < 0.5
            real = tf.cond(flipped, lambda: tf.reverse(source, [2]), lambda: source)
        zero = tf.zeros([n], tf.float32)
        with tf.GradientTape() as tape:
            fake, *taps = self.G_with_taps(real, training=True)
            fake_B = fake[:n]
            # The keys: G's encoder features of the unflipped inputs (module doc).
            keys = taps
            if flipped is not None:
                keys = tf.cond(flipped, lambda: self.encoder(source, training=True),
                               lambda: taps)
            # 1. D, on the detached output, before G's update.
            with tape.stop_recording(), tf.GradientTape() as d_tape:
                d_real, d_fake = losses.discriminator_loss(
                    self.D(real_B, training=True),
                    self.D(tf.stop_gradient(fake_B), training=True), m.gan_mode)
                d_loss = scaled(self.d_optimizer, avg(0.5 * (d_real + d_fake)))
            d_grads = d_tape.gradient(d_loss, self.D.trainable_variables)
            self.d_optimizer.apply_gradients(zip(d_grads, self.D.trainable_variables))
            # 2. G and F, through the updated D.
            g_gan = zero
            if m.lambda_gan > 0:
                g_gan = losses.gan_loss(self.D(fake_B, training=True), True,
                                        m.gan_mode) * m.lambda_gan
            nce = nce_y = zero
            if m.lambda_NCE > 0:
                nce = self.nce_loss([k[:n] for k in keys], fake_B, flipped, salt=0)
            if self.nce_idt:
                nce_y = self.nce_loss([k[n:] for k in keys], fake[n:], flipped, salt=1)
                nce_both = 0.5 * (nce + nce_y)
            else:
                nce_both = nce
            g_total = g_gan + nce_both
            g_loss = scaled(self.g_optimizer, avg(g_total))
        g_grads = tape.gradient(g_loss, self.g_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.g_variables))
        values = {"G_GAN": g_gan, "D_real": d_real, "D_fake": d_fake, "G": g_total,
                  "NCE": nce, "NCE_Y": nce_y}
        return {name: avg(values[name]) for name in self.loss_names}

    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        real_A, real_B = batch[0], batch[1]
        return {"real_A_fake_B": [real_A, self.generate(real_A, mode)],
                "real_B_idt_B": [real_B, self.generate(real_B, mode)]}

    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """On held-out images (unpaired data has no targets): ``idt_B_{l1,psnr,ssim}`` of
        ``G(B)`` against ``B`` (what the NCE identity term asks for), and the mean pairwise L1
        distance of the outputs ``fake_B_diversity`` beside the inputs' ``real_A_diversity``
        over up to 32 images: a generator collapsing to one output (the reference's #178)
        drives the first towards 0 while the second stays."""
        scorer = Scorer(IMAGE_METRICS)
        real, fake = [], []
        for real_A, real_B in dataset:
            if max_examples and scorer.count >= max_examples:
                break
            scorer.add(self.generate(real_B, mode), real_B, limit=max_examples)
            if sum(len(x) for x in fake) < _DIVERSITY_IMAGES:
                real.append(real_A)
                fake.append(self.generate(real_A, mode))
        metrics = {f"idt_B_{k}": v for k, v in scorer.summary().items() if k != "count"}
        metrics["count"] = scorer.count
        if fake:
            metrics["fake_B_diversity"] = mean_pairwise_l1(tf.concat(fake, 0)[:_DIVERSITY_IMAGES])
            metrics["real_A_diversity"] = mean_pairwise_l1(tf.concat(real, 0)[:_DIVERSITY_IMAGES])
        return metrics
