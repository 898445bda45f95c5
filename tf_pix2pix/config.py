"""Frozen configuration objects for data, model and training.

Every default is stated once, here, on its field, with the field's help text in its metadata
(:func:`option`); the command-line tools generate their absl flags from these fields
(``cli.define_flags``) and build these objects from them, and library code only ever sees the
objects. A model's own defaults (the reference's per-model options) come from its module in
``tf_pix2pix.models``. Every object validates itself in ``__post_init__`` so a bad value fails at
start-up with a message that names the field, and the whole experiment round-trips through JSON
(saved next to checkpoints).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
# unet_256/unet_128 and the ResNets are the reference's; unet_64/unet_32 extend the same recipe
# to small images (6 and 5 downsamplings).
# global is pix2pixHD's GlobalGenerator (a ResNet generator of n_downsample_global downsamplings),
# local its LocalEnhancer (a global generator on the downsampled input, refined at full size).
GENERATORS = ("unet_256", "unet_128", "unet_64", "unet_32", "resnet_9blocks", "resnet_6blocks",
              "encoder_decoder_256", "encoder_decoder_128", "global", "local")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
LR_POLICIES = ("linear", "constant")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TEST_MODES = ("eval", "paper")
UPSAMPLE_MODES = ("transpose", "resize_conv")
INIT_TYPES = ("normal", "xavier")
CUT_MODES = ("cut", "fastcut")

CONFIG_FILENAME = "config.json"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to do."""


def option(default: Any, help: str, choices: tuple[str, ...] | None = None,
           flag: str | None = None, inverted: bool = False) -> Any:
    """A dataclass field with its command-line description.

    Args:
      default: the one default of the field.
      help: the flag's help text.
      choices: allowed values of a string field (an enum flag).
      flag: the flag's name when it differs from the field's.
      inverted: a boolean flag that sets the field to ``not value`` (``--no_condition_D``).
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "inverted": inverted}
    return dataclasses.field(default=default, metadata=metadata)


def option_name(field: dataclasses.Field) -> str:
    """The command-line name of a config field: its name, or the flag its metadata gives."""
    return field.metadata.get("flag") or field.name


def option_of(klass: type, name: str) -> Any:
    """A field with the default and help of ``klass``'s field ``name`` (a tool's config that
    repeats a training option states it once, there)."""
    field = klass.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, metadata=field.metadata)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(choices)}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} is not valid; it must be {bound}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the TFRecords are and how examples are prepared (the reference's option names)."""

    data_dir: str = option("", "Folder made by data_prep.build_tfrecords (holds manifest.json).")
    direction: str = option("AtoB", "AtoB: left half -> right half; BtoA the reverse.",
                            DIRECTIONS)
    preprocess: str = option("resize_and_crop", "Jitter and resizing, as in the reference.",
                             PREPROCESS_MODES)
    load_size: int = option(286, "Scale images to this size before cropping.")
    crop_size: int = option(256, "Crop size (the network's input size).")
    input_nc: int = option(3, "Input channels (1 or 3).")
    output_nc: int = option(3, "Output channels (1 or 3).")
    no_flip: bool = option(False, "Disable the random horizontal mirror.")
    batch_size: int = option(1, "Global batch size (split across replicas).")
    shuffle_buffer: int = option(0, "Shuffle buffer; 0 = the whole split (<= 10,000).")
    seed: int = option(0, "Seed of weights, dropout and the data pipeline.")
    tfds_name: str = option("", "A TensorFlow Datasets name such as cycle_gan/horse2zebra, "
                                "instead of --data_dir (TFDS downloads it once), for models "
                                "that read TFDS.")
    tfds_data_dir: str = option("", "TFDS's data folder (default: TFDS's own).")
    label_nc: int = option(0, "pix2pixHD: classes of the label maps (35 for Cityscapes); the "
                              "input is their one-hot encoding. 0 = the input is an RGB "
                              "image.")
    no_instance: bool = option(False, "pix2pixHD: do not add the instance maps' boundaries "
                                      "to the input (data without instance maps).")
    on_corrupt_record: str = option("fail", "A corrupted record in a TFRecord shard: fail (stop "
                                            "with a checkpoint and a line naming the shard) or "
                                            "skip (train on the shard's good records, count the "
                                            "bad ones).", ("fail", "skip"))

    def __post_init__(self) -> None:
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("preprocess", self.preprocess, PREPROCESS_MODES)
        _check_positive("load_size", self.load_size)
        _check_positive("crop_size", self.crop_size)
        _check_positive("batch_size", self.batch_size)
        _check_positive("shuffle_buffer", self.shuffle_buffer, allow_zero=True)
        _check_positive("label_nc", self.label_nc, allow_zero=True)
        for name in ("input_nc", "output_nc"):
            if getattr(self, name) not in (1, 3):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not valid; use 1 or 3")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and (
            self.crop_size > self.load_size
        ):
            raise ConfigError(
                f"crop_size={self.crop_size} is larger than load_size={self.load_size}; "
                "set load_size >= crop_size"
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model (``tf_pix2pix.models``) and the architecture of its networks (the reference's
    option names).

    ``upsample`` is ``transpose`` (the reference's transposed convs) or ``resize_conv`` (nearest
    x2 + 3x3 conv, against checkerboard artifacts). ``encoder_decoder_*`` generators are the
    U-Nets without their skip connections and ``condition_D=False`` gives pix2pix an
    unconditional D: the paper's ablations.
    """

    model: str = option("pix2pix", "The model to train (see tf_pix2pix.models: pix2pix for "
                                   "paired data, cycle_gan for unpaired, or a plugin); the "
                                   "defaults of other flags follow the model, as the "
                                   "reference's modify_commandline_options sets them.")
    netG: str = option("unet_256", "Generator architecture.", GENERATORS)
    ngf: int = option(64, "Generator filters in the first conv.")
    netD: str = option("basic", "Discriminator architecture.", DISCRIMINATORS)
    ndf: int = option(64, "Discriminator filters in the first conv.")
    n_layers_D: int = option(3, "Layers of the n_layers discriminator.")
    norm: str = option("batch", "Normalisation layers.", NORMS)
    no_dropout: bool = option(False, "No dropout in the generator.")
    init_gain: float = option(0.02, "Std of the N(0, gain) weight init.")
    upsample: str = option("transpose", "Generator upsampling: transpose (the reference's "
                                        "transposed convs) or resize_conv (nearest x2 + 3x3 "
                                        "conv; avoids checkerboard artifacts).", UPSAMPLE_MODES)
    condition_D: bool = option(True, "pix2pix: the discriminator sees only the output image "
                                     "(the paper's L1 + GAN row).", flag="no_condition_D",
                               inverted=True)
    init_type: str = option("normal", "Weight init of convs and linear layers: normal "
                                      "(N(0, init_gain)) or xavier (xavier_normal with gain "
                                      "init_gain, CUT's).", INIT_TYPES)
    antialias: bool = option(False, "No antialiased downsampling: the ResNet generator and the "
                                    "PatchGAN downsample with stride-2 convs (pix2pix, "
                                    "CycleGAN) instead of stride-1 convs and a fixed blur "
                                    "with stride 2 (CUT's default).", flag="no_antialias",
                             inverted=True)
    antialias_up: bool = option(False, "No antialiased upsampling: the ResNet generator "
                                       "upsamples with transposed convs (pix2pix, CycleGAN) "
                                       "instead of bilinear x2 and a 3x3 conv (CUT's default).",
                                flag="no_antialias_up", inverted=True)
    nce_layers: str = option("0,4,8,12,16", "CUT: the generator's layers (indices of the "
                                            "reference's module list) that PatchNCE compares.")
    netF_nc: int = option(256, "CUT: channels of the patch projection MLPs.")
    n_downsample_global: int = option(4, "netG=global/local (pix2pixHD): stride-2 "
                                         "downsamplings of the global generator.")
    n_blocks_global: int = option(9, "netG=global/local (pix2pixHD): ResNet blocks of the "
                                     "global generator.")
    n_local_enhancers: int = option(1, "netG=local (pix2pixHD): local enhancers, each doubling "
                                       "the global generator's resolution.")
    n_blocks_local: int = option(3, "netG=local (pix2pixHD): ResNet blocks of each local "
                                    "enhancer.")
    num_D: int = option(2, "pix2pixHD: discriminators at 1, 1/2, 1/4, ... of the image size.")
    instance_feat: bool = option(False, "pix2pixHD: instance-wise features: an encoder of the "
                                        "photo, averaged over each instance, adds feat_num "
                                        "channels to G's input (a style per object; "
                                        "tf_pix2pix.encode_features clusters them).")
    feat_num: int = option(3, "pix2pixHD instance_feat: feature channels.")
    nef: int = option(16, "pix2pixHD instance_feat: filters of the encoder's first conv.")
    n_downsample_E: int = option(4, "pix2pixHD instance_feat: the encoder's downsamplings.")

    def __post_init__(self) -> None:
        from tf_pix2pix import models  # the registry imports this module

        models.get(self.model)  # raises ConfigError naming the registered models
        _check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        _check_choice("netG", self.netG, GENERATORS)
        _check_choice("netD", self.netD, DISCRIMINATORS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("init_type", self.init_type, INIT_TYPES)
        if (self.antialias or self.antialias_up) and not self.netG.startswith("resnet"):
            raise ConfigError(f"netG={self.netG}: antialiased sampling is built into the ResNet "
                              "generators only; pass --no_antialias --no_antialias_up or a "
                              "resnet netG")
        try:
            layers = list(self.nce_layer_ids)
        except ValueError:
            layers = []
        if not layers or layers != sorted(set(layers)) or layers[0] < 0:
            raise ConfigError(f"nce_layers={self.nce_layers!r} is not valid; give increasing "
                              "layer indices such as 0,4,8,12,16")
        _check_positive("netF_nc", self.netF_nc)
        for name in ("n_downsample_global", "n_blocks_global", "num_D", "n_local_enhancers",
                     "n_blocks_local", "feat_num", "nef", "n_downsample_E"):
            _check_positive(name, getattr(self, name))
        _check_positive("ngf", self.ngf)
        _check_positive("ndf", self.ndf)
        _check_positive("n_layers_D", self.n_layers_D)
        _check_positive("init_gain", self.init_gain)

    @property
    def has_test_time_noise(self) -> bool:
        """Whether ``paper`` test mode differs from ``eval``: dropout or batch statistics."""
        return not self.no_dropout or self.norm == "batch"

    @property
    def nce_layer_ids(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.nce_layers.split(","))

    @property
    def receptive_field(self) -> int:
        """Side of the input patch each discriminator output sees (1, 16, 70, 286, ...)."""
        if self.netD == "pixel":
            return 1
        n_layers = 3 if self.netD == "basic" else self.n_layers_D
        # (kernel, stride) from the output back: two stride-1 4x4 convs, then n_layers stride-2
        # 4x4 convs, each antialiased one a stride-1 4x4 conv and a 3x3 stride-2 blur.
        down = [(3, 2), (4, 1)] if self.antialias else [(4, 2)]
        field = 1
        for kernel, stride in [(4, 1), (4, 1)] + down * n_layers:
            field = field * stride + (kernel - stride)
        return field

    @property
    def n_blocks(self) -> int:
        """ResNet blocks of a ``resnet_*`` or ``global`` generator."""
        if self.netG in ("global", "local"):
            return self.n_blocks_global
        return 9 if self.netG == "resnet_9blocks" else 6

    @property
    def num_downs(self) -> int:
        """Number of stride-2 downsamplings of the generator (sizes must divide 2**num_downs)."""
        if self.netG == "global":
            return self.n_downsample_global
        if self.netG == "local":
            return self.n_downsample_global + self.n_local_enhancers
        return {"unet_256": 8, "unet_128": 7, "unet_64": 6, "unet_32": 5, "resnet_9blocks": 2,
                "encoder_decoder_256": 8, "encoder_decoder_128": 7,
                "resnet_6blocks": 2}[self.netG]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, checkpointing and logging of a training run.

    ``lambda_l1`` weighs pix2pix's L1 term; ``lambda_A``/``lambda_B`` (cycle losses),
    ``lambda_identity`` (identity loss, relative to them) and ``pool_size`` (image pool of each
    discriminator, 0 = none) are CycleGAN's.
    """

    model_dir: str = option("", "Checkpoints, config.json, TensorBoard events, samples.")
    gan_mode: str = option("vanilla", "GAN objective.", GAN_MODES)
    lambda_gan: float = option(1.0, "Weight of the adversarial term (pix2pix, CUT); for pix2pix "
                                    "0 builds and trains no discriminator (the paper's L1 row).")
    lambda_l1: float = option(100.0, "pix2pix: weight of the L1 term (0: the paper's cGAN row).")
    lambda_A: float = option(10.0, "CycleGAN: weight of the cycle loss A -> B -> A.")
    lambda_B: float = option(10.0, "CycleGAN: weight of the cycle loss B -> A -> B.")
    lambda_identity: float = option(0.5, "CycleGAN: identity loss weight relative to "
                                         "lambda_A/B (0 disables it and its two generator "
                                         "passes); the reference's remedy for colour inversion.")
    pool_size: int = option(50, "CycleGAN: fakes kept per discriminator; 0 = no pool.")
    cut_mode: str = option("cut", "CUT: cut (NCE identity loss, lambda_NCE 1, 200 + 200 "
                                  "epochs) or fastcut (no identity loss, lambda_NCE 10, flip "
                                  "equivariance, 150 + 50 epochs); sets those flags' defaults.",
                           CUT_MODES)
    lambda_NCE: float = option(1.0, "CUT: weight of the PatchNCE loss.")
    nce_idt: bool = option(False, "CUT: also the PatchNCE loss of G(B) against B (the identity "
                                  "term), averaged with the main one.")
    nce_T: float = option(0.07, "CUT: temperature of the PatchNCE loss.")
    num_patches: int = option(256, "CUT: patches sampled per layer and image.")
    flip_equivariance: bool = option(False, "CUT (FastCUT): flip the batch with probability 1/2 "
                                            "before G and flip G's features back before "
                                            "PatchNCE.")
    lambda_feat: float = option(10.0, "pix2pixHD: weight of the feature-matching and VGG "
                                      "losses.")
    gan_feat_loss: bool = option(True, "pix2pixHD: no discriminator feature-matching loss.",
                                 flag="no_ganFeat_loss", inverted=True)
    vgg_loss: bool = option(True, "pix2pixHD: no VGG19 perceptual loss.", flag="no_vgg_loss",
                            inverted=True)
    vgg_weights: str = option("", "pix2pixHD: ImageNet VGG19 weights for the VGG loss: Keras's "
                                  "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (as "
                                  "keras.applications.VGG19(include_top=False) downloads it).")
    niter_fix_global: int = option(0, "pix2pixHD netG=local: epochs in which only the (finest) "
                                      "local enhancer trains, the global generator fixed; then "
                                      "all of G, with a fresh Adam.")
    load_pretrain: str = option("", "pix2pixHD netG=local: a model_dir of a trained netG=global "
                                    "generator (ngf twice this one's, per enhancer) whose "
                                    "weights start the global part.")
    lr: float = option(2e-4, "Adam learning rate.")
    beta1: float = option(0.5, "Adam beta1.")
    beta2: float = option(0.999, "Adam beta2.")
    lr_policy: str = option("linear", "Learning-rate policy.", LR_POLICIES)
    n_epochs: int = option(100, "Epochs at the initial learning rate.")
    n_epochs_decay: int = option(100, "Epochs of linear decay to zero.")
    max_steps: int = option(0, "Stop after this many steps; 0 = all epochs.")
    save_every_steps: int = option(1000, "Checkpoint interval (also every epoch end).")
    summary_every_steps: int = option(100, "Scalar summary interval.")
    image_every_steps: int = option(500, "Image summary interval.")
    keep_checkpoints: int = option(3, "Checkpoints to keep.")
    val_max_examples: int = option(100, "Val examples scored after each epoch; 0 = none.")
    test_mode: str = option("eval", "How G runs for samples and val: eval (dropout off, running "
                                    "BN statistics) or paper (dropout on, batch statistics, as "
                                    "the paper's test time).", TEST_MODES)
    strategy: str = option("default", "tf.distribute strategy; multi_worker reads TF_CONFIG.",
                           STRATEGIES)
    precision: str = option("float32", "Keras mixed-precision policy.", PRECISIONS)
    seed: int = option(0, "Seed of weights, dropout and the data pipeline.")
    lock_timeout: int = option(600, "Seconds after which the model_dir lock of a trainer on "
                                    "another host that stopped refreshing it counts as stale "
                                    "(a lock of a dead process on this host is stale at once).")

    def __post_init__(self) -> None:
        _check_choice("gan_mode", self.gan_mode, GAN_MODES)
        _check_choice("lr_policy", self.lr_policy, LR_POLICIES)
        _check_choice("test_mode", self.test_mode, TEST_MODES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("cut_mode", self.cut_mode, CUT_MODES)
        _check_positive("nce_T", self.nce_T)
        _check_positive("num_patches", self.num_patches)
        _check_positive("lr", self.lr)
        for name in ("lambda_gan", "lambda_l1", "lambda_A", "lambda_B", "lambda_identity",
                     "pool_size", "lambda_NCE", "lambda_feat"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        _check_positive("n_epochs", self.n_epochs, allow_zero=True)
        _check_positive("n_epochs_decay", self.n_epochs_decay, allow_zero=True)
        if self.n_epochs + self.n_epochs_decay == 0 and self.max_steps == 0:
            raise ConfigError("n_epochs + n_epochs_decay is 0 and max_steps is 0; nothing to train")
        for name in ("max_steps", "val_max_examples"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("save_every_steps", "summary_every_steps", "image_every_steps",
                     "keep_checkpoints"):
            _check_positive(name, getattr(self, name))
        if not 0.0 <= self.beta1 < 1.0 or not 0.0 <= self.beta2 < 1.0:
            raise ConfigError(f"beta1={self.beta1}, beta2={self.beta2}: both must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs; saved as ``config.json`` in the model directory."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.preprocess != "scale_width" and self.model.netD != "pixel":
            # Smallest training image the PatchGAN still gives logits for (4x4 convs, pad 1).
            size = self.data.crop_size
            n_layers = 3 if self.model.netD == "basic" else self.model.n_layers_D
            for _ in range(n_layers):
                size = (size - 2) // 2 + 1
            if size - 2 < 1:
                raise ConfigError(
                    f"crop_size={self.data.crop_size} is too small for netD={self.model.netD}: "
                    "its output would be empty; raise crop_size or use fewer discriminator "
                    "layers")
        from tf_pix2pix import inference, models  # both import this module

        inference.check_test_mode(self.train.test_mode, self.model)
        model = models.for_config(self)
        if self.data.tfds_name and not model.tfds_source:
            raise ConfigError(f"tfds_name: the {self.model.model} model reads TFRecords from "
                              "data_dir, not TensorFlow Datasets")
        model.check_config(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExperimentConfig":
        parts = {}
        for name, klass in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            values = dict(raw.get(name, {}))
            known = {f.name for f in dataclasses.fields(klass)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"unknown {name} config fields: {', '.join(unknown)}")
            parts[name] = klass(**values)
        return cls(**parts)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "ExperimentConfig":
        """The configuration that the command-line options ``{flag name: value}`` describe
        (the fields not given keep their defaults); the inverse of the flags of ``run_train``."""
        sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
        used = set()
        for section, klass in (("data", DataConfig), ("model", ModelConfig),
                               ("train", TrainConfig)):
            for field in dataclasses.fields(klass):
                name = option_name(field)
                if name in options:
                    value = options[name]
                    sections[section][field.name] = (not value if field.metadata.get("inverted")
                                                     else value)
                    used.add(name)
        unknown = sorted(set(options) - used)
        if unknown:
            raise ConfigError(f"unknown options: {', '.join(unknown)}")
        return cls(data=DataConfig(**sections["data"]), model=ModelConfig(**sections["model"]),
                   train=TrainConfig(**sections["train"]))

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        return cls.from_dict(json.loads(text))

    def architecture(self) -> dict[str, Any]:
        """Fields that decide the shapes of the saved variables (must match on resume)."""
        from tf_pix2pix import models  # the registry imports this module

        arch = {f"model.{k}": v for k, v in dataclasses.asdict(self.model).items()
                if k != "init_gain"}
        arch["data.input_nc"] = self.data.input_nc
        arch["data.output_nc"] = self.data.output_nc
        arch.update(models.for_config(self).saved_state_fields(self))
        return arch

    def input_pipeline(self) -> dict[str, Any]:
        """Fields that shape the saved input-iterator state (must match to resume it)."""
        names = ("direction", "preprocess", "load_size", "crop_size", "no_flip", "batch_size",
                 "shuffle_buffer", "seed")
        return {f"data.{n}": getattr(self.data, n) for n in names}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a) if a[k] != b.get(k)]


def architecture_differences(saved: ExperimentConfig, current: ExperimentConfig) -> list[str]:
    """Lists ``field: saved -> current`` for every architecture field that differs."""
    return _differences(saved.architecture(), current.architecture())


def input_pipeline_differences(saved: ExperimentConfig,
                               current: ExperimentConfig) -> list[str]:
    """Lists ``field: saved -> current`` for every input-pipeline field that differs."""
    return _differences(saved.input_pipeline(), current.input_pipeline())


def write_atomic(path: str, data: str | bytes, sync: bool = False) -> None:
    """Writes ``data`` to ``path`` through a temporary file beside it, so that a reader (or a
    crash) never sees half a file; ``sync`` also flushes it to the disk before the rename."""
    tmp = path + ".tmp"
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def save_config(config: ExperimentConfig, model_dir: str) -> str:
    """Writes ``config.json`` into ``model_dir`` atomically and returns its path."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, CONFIG_FILENAME)
    write_atomic(path, config.to_json() + "\n")
    return path


def load_config(model_dir: str) -> ExperimentConfig | None:
    """Reads ``config.json`` from ``model_dir``; ``None`` when there is none."""
    path = os.path.join(model_dir, CONFIG_FILENAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return ExperimentConfig.from_json(f.read())
    except (json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"{path} is not a valid config file ({e}); delete it or fix it") from e
