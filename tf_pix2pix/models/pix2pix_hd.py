"""pix2pixHD (Wang, Liu, Zhu, Tao, Kautz, Catanzaro, CVPR 2018): high-resolution translation of
label maps, registered as ``--model=pix2pix_hd``.

The reference is NVIDIA/pix2pixHD (``pix2pixHD_model.py``, ``networks.py``, ``train.py``):

* Input: the one-hot encoding of a map of ``label_nc`` class ids plus the boundaries of the
  instance map (``label_maps.encode``; ``label_nc`` 0 reads an RGB image instead).
* G: the ``global`` generator (``resnet_generator`` with ``n_downsample_global`` downsamplings,
  instance norm, biases, no dropout; 182,546,755 parameters for 36 -> 3 channels). D:
  ``num_D`` PatchGANs of the (input, image) pair at 1, 1/2, ... of the size, every layer's
  activation returned (``networks.multiscale``).
* One forward pass, then G's Adam step on ``G_GAN + G_GAN_Feat + G_VGG`` (LSGAN summed over the
  scales; discriminator feature matching and VGG19 perceptual distances, each times
  ``lambda_feat``), then D's on ``0.5 * (D_fake + D_real)``; both losses use D's weights from
  before either step, as the reference's one ``forward`` does. The rate decays by ``lr /
  n_epochs_decay`` after each epoch past ``n_epochs`` (``LinearDecay`` shift 0).

``--netG local`` is the ``LocalEnhancer`` (``networks.enhancer``), trained coarse to fine as the
paper describes: ``--load_pretrain`` starts its global part from a trained ``--netG global``
generator, and for ``--niter_fix_global`` epochs only the finest enhancer trains (its own Adam),
then all of G with a fresh Adam on the run's schedule (the reference's ``train.py`` never
switches since commit b129d49). ``--instance_feat`` adds the feature encoder: its output on the
photo, averaged over each instance (``label_maps.instance_mean``), joins G's input; it trains
with G; ``tf_pix2pix.tools.encode_features`` clusters the features per class into styles that
export and prediction read (``feature_clusters.json``).

The reference runs D three times per step (the fake detached for D's loss, the fake again for
G's, the real); the detached and the attached fake give equal values, so here D judges the fake
once: D's gradient comes from that pass through D's tape, G's through G's tape. No image pool
(the reference's default ``pool_size`` 0).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import data as data_lib
from tf_pix2pix import label_maps, losses
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, ModelConfig, option, option_of
from tf_pix2pix.metrics.scoring import evaluate
from tf_pix2pix.models.base import (GeneratorSlot, TranslationModel, current_lr, distributed_step,
                                    dtype_policy, editor_size, make_optimizer, register,
                                    restore_generator, scaled, training_inputs)
from tf_pix2pix.networks import (GeneratorLayout, multiscale_discriminator, receptive_field,
                                 scale_outputs,
                                 resnet_generator)
from tf_pix2pix.networks.enhancer import GLOBAL, finest_enhancer_variables, local_enhancer
from tf_pix2pix.networks.vgg import FEATURE_WEIGHTS, WEIGHTS_FILE, vgg19_features

# global is NVIDIA's GlobalGenerator (a ResNet generator of n_downsample_global
# downsamplings), local its LocalEnhancer (a global generator on the downsampled input, refined
# at full size).
GENERATORS = ("global", "local")


@dataclasses.dataclass(frozen=True)
class Pix2PixHDConfig(ModelConfig):
    """pix2pixHD's options: the shared ones with NVIDIA's defaults (the global generator,
    instance norm, no dropout, LSGAN), the generators' and discriminators' sizes, the
    instance-wise features, the losses and coarse-to-fine training."""

    model: str = option_of(ModelConfig, "model", "pix2pix_hd")
    netG: str = option_of(ModelConfig, "netG", "global", choices=GENERATORS,
                          help="Generator: global (GlobalGenerator) or local (LocalEnhancer).")
    norm: str = option_of(ModelConfig, "norm", "instance")
    no_dropout: bool = option_of(ModelConfig, "no_dropout", True)
    gan_mode: str = option_of(ModelConfig, "gan_mode", "lsgan")
    n_downsample_global: int = option(4, "Stride-2 downsamplings of the global generator.",
                                      bound="positive")
    n_blocks_global: int = option(9, "ResNet blocks of the global generator.",
                                  bound="positive")
    n_local_enhancers: int = option(1, "netG=local: local enhancers, each doubling the global "
                                       "generator's resolution.", bound="positive")
    n_blocks_local: int = option(3, "netG=local: ResNet blocks of each local enhancer.",
                                 bound="positive")
    num_D: int = option(2, "Discriminators at 1, 1/2, 1/4, ... of the image size.",
                        bound="positive")
    instance_feat: bool = option(False, "Instance-wise features: an encoder of the photo, "
                                        "averaged over each instance, adds feat_num channels to "
                                        "G's input (a style per object; "
                                        "tf_pix2pix.tools.encode_features clusters them).")
    feat_num: int = option(3, "instance_feat: feature channels.", bound="positive")
    nef: int = option(16, "instance_feat: filters of the encoder's first conv.",
                      bound="positive")
    n_downsample_E: int = option(4, "instance_feat: the encoder's downsamplings.",
                                 bound="positive")
    lambda_feat: float = option(10.0, "Weight of the feature-matching and VGG losses.",
                                bound="non_negative", architecture=False)
    gan_feat_loss: bool = option(True, "No discriminator feature-matching loss.",
                                 flag="no_ganFeat_loss", inverted=True, architecture=False)
    vgg_loss: bool = option(True, "No VGG19 perceptual loss.", flag="no_vgg_loss",
                            inverted=True, architecture=False)
    vgg_weights: str = option("", "ImageNet VGG19 weights for the VGG loss: Keras's "
                                  "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (as "
                                  "keras.applications.VGG19(include_top=False) downloads it).",
                              architecture=False)
    niter_fix_global: int = option(0, "netG=local: epochs in which only the (finest) local "
                                      "enhancer trains, the global generator fixed; then all "
                                      "of G, with a fresh Adam.", bound="non_negative",
                                   architecture=False)
    load_pretrain: str = option("", "netG=local: a model_dir of a trained netG=global "
                                    "generator (ngf twice this one's, per enhancer) whose "
                                    "weights start the global part.", architecture=False)


def num_downs(model: Pix2PixHDConfig) -> int:
    """Stride-2 downsamplings of the generator (sizes must divide 2**num_downs)."""
    if model.netG == "local":
        return model.n_downsample_global + model.n_local_enhancers
    return model.n_downsample_global


def feature_encoder(model: Pix2PixHDConfig, image_nc: int, name: str = "encoder") -> keras.Model:
    """pix2pixHD's ``Encoder`` (``--instance_feat``): a ResNet generator without blocks —
    reflection pad 3, 7x7 conv to ``nef``, ``n_downsample_E`` stride-2 convs and as many
    transposed convs, 7x7 conv to ``feat_num``, tanh; 788,803 parameters for 3 -> 3 with the
    reference's nef 16 and 4 downsamplings. Its instance-wise average pooling is
    ``label_maps.instance_mean``."""
    return resnet_generator(image_nc, model.feat_num, n_blocks=0, ngf=model.nef,
                            norm=model.norm, use_dropout=False, gain=model.init_gain,
                            init_type=model.init_type, n_downsampling=model.n_downsample_E,
                            name=name)


def label_channels(config: ExperimentConfig) -> int:
    """The encoded label map's channels (what D sees beside the image): ``label_nc`` one-hot
    (or ``input_nc`` for RGB inputs), plus one for the instance boundaries."""
    data = config.data
    return (data.label_nc or data.input_nc) + int(uses_instances(config))


def input_channels(config: ExperimentConfig) -> int:
    """The generator's input channels: the encoded label map, then ``feat_num`` instance-wise
    features with ``instance_feat``."""
    m = config.model
    return label_channels(config) + (m.feat_num if m.instance_feat else 0)


FEATURE_CLUSTERS = "feature_clusters.json"


@tf.autograph.experimental.do_not_convert
def feature_table(config: ExperimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """The clustered instance features of ``config.train.model_dir``
    (``tf_pix2pix.tools.encode_features``) as ``[label_nc, K, feat_num]`` centres and ``[label_nc]``
    counts (0: the class had no instance to cluster; its features are 0).

    Raises:
      ConfigError: the clusters were not computed yet.
    """
    path = os.path.join(config.train.model_dir, FEATURE_CLUSTERS)
    if not os.path.isfile(path):
        raise ConfigError(f"{path} not found: this generator reads instance-wise features; run "
                          f"python -m tf_pix2pix.tools.encode_features --model_dir "
                          f"{config.train.model_dir} first")
    with open(path) as f:
        clusters = {int(k): np.asarray(v, np.float32) for k, v in json.load(f)["classes"].items()}
    m, label_nc = config.model, config.data.label_nc
    k = max([len(v) for v in clusters.values()] + [1])
    table = np.zeros([label_nc, k, m.feat_num], np.float32)
    counts = np.zeros([label_nc], np.int32)
    for label, centres in clusters.items():
        if 0 <= label < label_nc and len(centres):
            table[label, :len(centres)] = centres
            counts[label] = len(centres)
    return table, counts


def uses_instances(config: ExperimentConfig) -> bool:
    """Instance maps are read for label maps (``label_nc`` > 0) unless ``no_instance``; RGB
    inputs never ask for them (the reference's #111)."""
    return bool(config.data.label_nc) and not config.data.no_instance


def load_pretrained_global(generator: keras.Model, model_dir: str) -> None:
    """Copies the generator of ``model_dir`` (a trained ``--netG global``) into the global part
    of a local enhancer, layer by layer (the reference's ``--load_pretrain``).

    Raises:
      ConfigError: not a global generator, or one whose layers do not fit.
    """
    pretrained, config, path = restore_generator(model_dir, flag="--load_pretrain")
    if config.model.netG != "global":
        raise ConfigError(f"--load_pretrain {model_dir}: its generator is netG="
                          f"{config.model.netG}; the local enhancer starts from a netG=global "
                          "one")
    sources = {x.name: x for x in pretrained.layers}
    for layer in generator.get_layer(GLOBAL).layers:
        if not layer.weights:
            continue
        source = sources.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if source is None or [tuple(w.shape) for w in source.weights] != shapes:
            raise ConfigError(
                f"--load_pretrain {model_dir}: its global generator (ngf {config.model.ngf}, "
                f"{config.model.n_downsample_global} downsamplings, "
                f"{config.model.n_blocks_global} blocks, {pretrained.input.shape[-1]} input "
                f"channels) does not fit this local enhancer's global part at {layer.name}; "
                "train the local enhancer with the same options and half its --ngf per enhancer")
        layer.set_weights(source.get_weights())
    print(f"loaded the global generator of {path} into the local enhancer")


@register
class Pix2PixHD(TranslationModel):
    """The global generator, the multi-scale discriminator, a VGG19 for the perceptual loss,
    two Adams and the reference's step."""

    name = "pix2pix_hd"
    Config = Pix2PixHDConfig
    data_layout = "labels"
    sample_columns = "label | output | target"
    # NVIDIA's base options for Cityscapes' 2048x1024 label maps.
    reference_defaults = {"label_nc": 35, "preprocess": "scale_width", "load_size": 1024,
                          "crop_size": 512}
    presets = {
        "reference": {},
        # A reduced model (ngf 16, 3 blocks) on the synthetic label/instance/photo triplets at
        # 256x128, a few minutes on 2 CPU cores. The reference's 4 downsamplings: with 2 the
        # generator sees too little of the map to tell sky from ground far from the shapes and
        # paints an average of the training scenes there (ghosts; val SSIM 0.23, now 0.56).
        # No VGG loss: its ImageNet weights are a download the demo does not make.
        "demo": {
            "model_dir": "runs/demo_pix2pix_hd", "label_nc": 4, "load_size": 256,
            "crop_size": 128, "ngf": 16, "ndf": 16, "n_downsample_global": 4,
            "n_blocks_global": 3, "num_D": 2, "no_vgg_loss": True, "batch_size": 2,
            "n_epochs": 6, "n_epochs_decay": 4, "summary_every_steps": 20,
            "image_every_steps": 100, "save_every_steps": 500, "val_max_examples": 20,
        },
    }
    demo_data = {"folder": "data/demo_pix2pix_hd", "size": 128, "labels": True, "width": 256}

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        super().check_config(config)
        m = config.model
        if config.data.tfds_name:
            raise ConfigError("tfds_name: pix2pix_hd reads label maps from data_dir")
        if config.model.instance_feat and not uses_instances(config):
            raise ConfigError("--instance_feat averages features over instance maps: it needs "
                              "label maps (--label_nc > 0) with instance maps (no "
                              "--no_instance)")
        if (m.niter_fix_global or m.load_pretrain) and config.model.netG != "local":
            raise ConfigError("--niter_fix_global and --load_pretrain train a local enhancer: "
                              "pass --netG local")

    @classmethod
    def saved_state_fields(cls, config: ExperimentConfig) -> dict[str, Any]:
        return {"data.label_nc": config.data.label_nc,
                "instances": uses_instances(config),
                "features": (config.model.feat_num, config.model.nef,
                             config.model.n_downsample_E) if config.model.instance_feat else None,
                "coarse_to_fine": bool(config.model.niter_fix_global)}

    @classmethod
    def build_generator(cls, config: ExperimentConfig, direction: str = "AtoB",
                        sync_bn: bool = False) -> keras.Model:
        """The ``global`` generator (a ResNet generator of ``n_downsample_global``
        downsamplings and ``n_blocks_global`` blocks) or the ``local`` enhancer
        (``networks.enhancer``)."""
        m, slot = config.model, cls.generator_slots(config)[direction]
        if m.netG == "local":
            return local_enhancer(slot.input_nc, slot.output_nc, ngf=m.ngf,
                                  n_downsample_global=m.n_downsample_global,
                                  n_blocks_global=m.n_blocks_global,
                                  n_local_enhancers=m.n_local_enhancers,
                                  n_blocks_local=m.n_blocks_local, norm=m.norm,
                                  gain=m.init_gain, init_type=m.init_type, name=slot.root)
        return resnet_generator(slot.input_nc, slot.output_nc, n_blocks=m.n_blocks_global,
                                ngf=m.ngf, norm=m.norm, use_dropout=not m.no_dropout,
                                gain=m.init_gain, sync_bn=sync_bn, upsample_mode=m.upsample,
                                init_type=m.init_type, name=slot.root,
                                n_downsampling=m.n_downsample_global)

    @classmethod
    def pad_multiple(cls, config: ExperimentConfig) -> int:
        return 2 ** num_downs(config.model)

    @classmethod
    def generator_layout(cls, config: ExperimentConfig) -> GeneratorLayout:
        """NVIDIA's GlobalGenerator (a ResNet generator), or the LocalEnhancer around one."""
        m = config.model
        local = m.netG == "local"
        return GeneratorLayout("resnet", m.n_downsample_global, m.n_blocks_global,
                               m.n_local_enhancers if local else 0,
                               m.n_blocks_local if local else 0)

    @classmethod
    def receptive_field(cls, config: ExperimentConfig) -> str:
        # Each coarser scale sees the pair through one more 3x3 stride-2 average pooling.
        fields = [receptive_field(config.model.netD, config.model.n_layers_D)]
        for _ in range(config.model.num_D - 1):
            fields.append(2 * fields[-1] + 1)
        return ",".join(map(str, fields))

    @classmethod
    def generator_slots(cls, config: ExperimentConfig) -> dict[str, GeneratorSlot]:
        return {"AtoB": GeneratorSlot("generator", input_channels(config),
                                      config.data.output_nc)}

    @classmethod
    def build_input(cls, config: ExperimentConfig, split: str, training: bool,
                    skip_examples: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
        return data_lib.build_label_dataset(config.data, split, training,
                                            skip_examples=skip_examples, batch_size=batch_size,
                                            with_instances=config.model.instance_feat)

    @classmethod
    def show_input(cls, config: ExperimentConfig, inputs: tf.Tensor) -> tf.Tensor:
        """Label maps in their palette colours (Cityscapes' for 35 classes), instance
        boundaries white; RGB inputs as they are."""
        label_nc = config.data.label_nc
        if label_nc:
            return label_maps.colorize(inputs, label_nc)
        return inputs[..., :config.data.input_nc]

    @classmethod
    def reads_instances(cls, config: ExperimentConfig) -> bool:
        return uses_instances(config)

    @classmethod
    def check_inference(cls, config: ExperimentConfig) -> None:
        if config.model.instance_feat:
            feature_table(config)  # the clusters exist

    @classmethod
    def takes_style(cls, config: ExperimentConfig) -> bool:
        return config.model.instance_feat

    @classmethod
    def editor_info(cls, config: ExperimentConfig, direction: str = "AtoB") -> dict[str, Any]:
        """Label maps of ``label_nc`` ids in their :func:`label_maps.palette` colours, with
        instance maps where the generator reads them and, for ``instance_feat``, the number of
        styles (the most clusters any class has)."""
        label_nc = config.data.label_nc
        if not label_nc:
            return super().editor_info(config, direction)
        styles = int(feature_table(config)[1].max()) if config.model.instance_feat else 0
        images = training_inputs(cls, config, direction, count=1)
        return {"input": "label_ids", "output": "image", "size": editor_size(config, images),
                "palette": label_maps.palette(label_nc).tolist(),
                "names": list(label_maps.label_names(label_nc)),
                "instances": uses_instances(config), "styles": styles}

    @classmethod
    def encode_input(cls, config: ExperimentConfig, encoded: tf.Tensor, channels: int,
                     instance: tf.Tensor | None = None,
                     style: tf.Tensor | None = None) -> tf.Tensor:
        """A label PNG (class ids; an RGB image for ``label_nc`` 0) and optionally an instance
        PNG to the generator's ``[H, W, C]`` input. Without an instance map the label map's
        own boundaries are used (what Cityscapes' instance maps hold for classes without
        instances). With ``instance_feat`` every instance gets the features of cluster
        ``style`` (0 when not given: the largest cluster) of its class, from
        ``feature_clusters.json`` (``tf_pix2pix.tools.encode_features``); the reference samples a
        cluster at random instead."""
        label_nc = config.data.label_nc
        if not label_nc:
            return super().encode_input(config, encoded, config.data.input_nc)
        ids = data_lib.decode_checked_ids(encoded, label_nc)[tf.newaxis]
        instances = None
        if uses_instances(config):
            instances = ids if instance is None else data_lib.decode_checked_ids(
                instance, what="instance map")[tf.newaxis]
        x = label_maps.encode(ids, instances, label_nc)[0]
        if not config.model.instance_feat:
            return x
        table, counts = feature_table(config)
        classes = tf.clip_by_value(label_maps.instance_class(instances[0, ..., 0]), 0,
                                   label_nc - 1)
        count = tf.gather(tf.maximum(tf.constant(counts), 1), classes)
        choice = tf.math.floormod(tf.cast(0 if style is None else style, tf.int32), count)
        feats = tf.gather_nd(tf.constant(table), tf.stack([classes, choice], axis=-1))
        return tf.concat([x, feats], axis=-1)

    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        self.config = config
        self.strategy = strategy
        m, data = config.model, config.data
        in_nc = label_channels(config)
        # Checked when training is set up (not in check_config): an imported or exported
        # generator's configuration needs no VGG.
        if m.vgg_loss and not m.vgg_weights:
            raise ConfigError(f"the VGG loss needs ImageNet VGG19 weights: pass --vgg_weights "
                              f"PATH of Keras's {WEIGHTS_FILE} (downloaded once on a machine "
                              "with internet), or --no_vgg_loss")
        with dtype_policy(config.runtime.precision):
            self.generator = self.build_generator(config, "AtoB")
            # num_D discriminators of n_layers_D layers on [condition, image].
            self.discriminator = multiscale_discriminator(
                in_nc, data.output_nc, ndf=m.ndf, n_layers=m.n_layers_D, num_D=m.num_D,
                norm=m.norm, gain=m.init_gain, init_type=m.init_type, name="discriminator")
            self.vgg = vgg19_features(m.vgg_weights) if m.vgg_loss else None
            self.encoder = (feature_encoder(config.model, data.output_nc)
                            if config.model.instance_feat else None)
        # The encoder trains with G, in both coarse-to-fine phases (no loss of its own).
        encoder_variables = self.encoder.trainable_variables if self.encoder else []
        if m.load_pretrain:
            load_pretrained_global(self.generator, m.load_pretrain)
        elif m.niter_fix_global:
            # The reference trains so; the paper's schedule starts from a trained global G.
            print(f"warning: --niter_fix_global {m.niter_fix_global} without --load_pretrain: "
                  "for those epochs the local enhancer trains around an untrained, frozen "
                  "global generator; pass --load_pretrain DIR of a trained --netG global run",
                  file=sys.stderr)
        # pix2pixHD's schedule: the rate falls by lr / niter_decay after each epoch past niter.
        # Coarse to fine (the paper's Sec. 3.2): for niter_fix_global epochs only the finest
        # local enhancer trains, with an Adam of its own; then all of G, with a fresh Adam that
        # follows the run's schedule.
        self.fix_global_steps = m.niter_fix_global * steps_per_epoch
        offset = 0
        if self.fix_global_steps:
            self.local_variables = finest_enhancer_variables(
                self.generator, config.model.n_local_enhancers) + encoder_variables
            self.g_local_optimizer = make_optimizer(config, steps_per_epoch, decay_shift=0)
            self.g_local_optimizer.build(self.local_variables)
            offset = self.fix_global_steps
        self.g_optimizer = make_optimizer(config, steps_per_epoch, decay_shift=0, offset=offset)
        self.g_variables = self.generator.trainable_variables + encoder_variables
        self.g_optimizer.build(self.g_variables)
        self.d_optimizer = make_optimizer(config, steps_per_epoch, decay_shift=0)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.loss_names = tuple(n for n, on in (("G_GAN", True), ("G_GAN_Feat", m.gan_feat_loss),
                                                ("G_VGG", m.vgg_loss), ("D_real", True),
                                                ("D_fake", True)) if on)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    def networks(self) -> dict[str, keras.Model]:
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        if self.encoder is not None:
            nets["encoder"] = self.encoder
        return nets

    def checkpoint_objects(self) -> dict[str, Any]:
        # The VGG is fixed (loaded from --vgg_weights), so checkpoints do not carry it.
        objects = {**self.networks(), "g_optimizer": self.g_optimizer,
                   "d_optimizer": self.d_optimizer}
        if self.fix_global_steps:
            objects["g_local_optimizer"] = self.g_local_optimizer
        return objects

    def global_fixed(self) -> bool:
        """Whether the next step trains the local enhancer alone (coarse-to-fine phase 1)."""
        return bool(self.fix_global_steps) and int(self.step.numpy()) < self.fix_global_steps

    def current_lr(self) -> float:
        return current_lr(self.g_local_optimizer if self.global_fixed() else self.g_optimizer)

    def losses(self, inputs: tf.Tensor, targets: tf.Tensor,
               fake: tf.Tensor) -> dict[str, tf.Tensor]:
        """The per-example losses of one step given G's output ``fake``."""
        m = self.config.model
        D = self.discriminator
        pred_fake = scale_outputs(D([inputs, fake], training=True))
        pred_real = scale_outputs(D([inputs, targets], training=True))
        out = {"G_GAN": losses.multiscale_gan_loss(pred_fake, True, m.gan_mode),
               "D_real": losses.multiscale_gan_loss(pred_real, True, m.gan_mode),
               "D_fake": losses.multiscale_gan_loss(pred_fake, False, m.gan_mode)}
        if m.gan_feat_loss:
            out["G_GAN_Feat"] = losses.feature_matching_loss(pred_fake, pred_real, m.lambda_feat)
        if m.vgg_loss:
            features = self.vgg(tf.concat([fake, tf.cast(targets, fake.dtype)], axis=0))
            n = tf.shape(fake)[0]
            out["G_VGG"] = losses.vgg_loss([f[:n] for f in features], [f[n:] for f in features],
                                           FEATURE_WEIGHTS, m.lambda_feat)
        return out

    def train_step(self, batch) -> dict[str, tf.Tensor]:
        """One step; with ``niter_fix_global``, the phase's step (each traced once)."""
        if not self.fix_global_steps:
            return super().train_step(batch)
        fixed = self.global_fixed()
        steps = self.__dict__.setdefault("_phase_steps", {})
        if fixed not in steps:
            steps[fixed] = distributed_step(
                self.strategy, functools.partial(self._replica_step, fixed_global=fixed),
                self.step)
        self._step_fn = steps[fixed]
        return self._step_fn(batch)

    def generator_input(self, inputs: tf.Tensor, targets: tf.Tensor,
                        instances: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        """G's input: the encoded labels, and with ``instance_feat`` the encoder's features of
        the photos averaged over each instance (the reference's ``netE(real_image, inst)``)."""
        if self.encoder is None:
            return inputs
        features = label_maps.instance_mean(self.encoder(targets, training=training), instances)
        return tf.concat([inputs, tf.cast(features, inputs.dtype)], axis=-1)

    def _replica_step(self, inputs: tf.Tensor, targets: tf.Tensor,
                      instances: tf.Tensor | None = None,
                      fixed_global: bool = False) -> dict[str, tf.Tensor]:
        batch = self.config.data.batch_size
        avg = lambda x: tf.nn.compute_average_loss(x, global_batch_size=batch)  # noqa: E731
        G, D = self.generator, self.discriminator
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = G(self.generator_input(inputs, targets, instances, training=True),
                     training=True)
            per_example = self.losses(inputs, targets, fake)
            g_terms = [per_example[n] for n in ("G_GAN", "G_GAN_Feat", "G_VGG")
                       if n in per_example]
            g_optimizer, g_variables = ((self.g_local_optimizer, self.local_variables)
                                        if fixed_global else
                                        (self.g_optimizer, self.g_variables))
            g_loss = scaled(g_optimizer, avg(tf.add_n(g_terms)))
            d_loss = scaled(self.d_optimizer,
                            0.5 * avg(per_example["D_fake"] + per_example["D_real"]))
        g_grads = g_tape.gradient(g_loss, g_variables)
        d_grads = d_tape.gradient(d_loss, D.trainable_variables)
        g_optimizer.apply_gradients(zip(g_grads, g_variables))
        self.d_optimizer.apply_gradients(zip(d_grads, D.trainable_variables))
        return {name: avg(per_example[name]) for name in self.loss_names}

    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        inputs, targets = batch[0], batch[1]
        fake = self.generate(self.generator_input(*batch[:3]), mode)
        return {"label_output_target": [self.show_input(self.config, inputs), fake, targets]}

    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """L1, PSNR and SSIM of the translations against the photos (with ``instance_feat``,
        from the features of the photos themselves: the reference's ``use_encoded_image``)."""
        pairs = ((self.generator_input(*batch[:3]), batch[1]) for batch in dataset)
        return evaluate(lambda x: self.generate(x, mode), pairs, max_examples)
