"""Frozen configuration objects for data, model and training.

Flags live only in the ``run_*.py`` scripts; they build these objects and pass them down. Every
object validates itself in ``__post_init__`` so a bad value fails at start-up with a message that
names the field, and the whole experiment round-trips through JSON (saved next to checkpoints).
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
GENERATORS = ("unet_256", "unet_128", "unet_64", "unet_32", "resnet_9blocks", "resnet_6blocks",
              "encoder_decoder_256", "encoder_decoder_128")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
LR_POLICIES = ("linear", "constant")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TEST_MODES = ("eval", "paper")
MODELS = ("pix2pix", "cycle_gan")
UPSAMPLE_MODES = ("transpose", "resize_conv")

CONFIG_FILENAME = "config.json"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to do."""


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(choices)}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} is not valid; it must be {bound}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the TFRecords are and how examples are prepared.

    Attributes:
      data_dir: directory written by ``data_prep.build_tfrecords`` (holds ``manifest.json``).
      direction: ``AtoB`` translates the left half into the right one, ``BtoA`` the reverse.
      preprocess: jitter/resize mode, as in the reference implementation.
      load_size: size images are scaled to before cropping (286 in the paper).
      crop_size: size of the random (training) or centre (evaluation) crop (256 in the paper).
      input_nc: channels of the network input (1 = grayscale, 3 = RGB).
      output_nc: channels of the network output.
      no_flip: disable the random horizontal mirror.
      batch_size: global batch size (split across replicas under a distribution strategy).
      shuffle_buffer: examples in the shuffle buffer; 0 means the whole split (capped at 10,000).
      seed: seed of every random draw of the pipeline.
      tfds_name: read CycleGAN data from TensorFlow Datasets instead of ``data_dir`` (e.g.
        ``cycle_gan/horse2zebra``).
      tfds_data_dir: TFDS's data folder (default: TFDS's own).
    """

    data_dir: str = ""
    direction: str = "AtoB"
    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    input_nc: int = 3
    output_nc: int = 3
    no_flip: bool = False
    batch_size: int = 1
    shuffle_buffer: int = 0
    seed: int = 0
    tfds_name: str = ""
    tfds_data_dir: str = ""

    def __post_init__(self) -> None:
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("preprocess", self.preprocess, PREPROCESS_MODES)
        _check_positive("load_size", self.load_size)
        _check_positive("crop_size", self.crop_size)
        _check_positive("batch_size", self.batch_size)
        _check_positive("shuffle_buffer", self.shuffle_buffer, allow_zero=True)
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
    """Architecture of the generator and the discriminator (the reference's option names).

    ``model`` is ``pix2pix`` (one generator, a conditional D) or ``cycle_gan`` (two generators
    G_A: A->B and G_B: B->A, two unconditional Ds). ``upsample`` is ``transpose`` (the reference's
    transposed convs) or ``resize_conv`` (nearest x2 + 3x3 conv, against checkerboard artifacts).
    ``encoder_decoder_*`` generators are the U-Nets without their skip connections and
    ``condition_D=False`` gives pix2pix an unconditional D: the paper's ablations.
    """

    model: str = "pix2pix"
    netG: str = "unet_256"
    ngf: int = 64
    netD: str = "basic"
    ndf: int = 64
    n_layers_D: int = 3
    norm: str = "batch"
    no_dropout: bool = False
    init_gain: float = 0.02
    upsample: str = "transpose"
    condition_D: bool = True

    def __post_init__(self) -> None:
        _check_choice("model", self.model, MODELS)
        _check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        _check_choice("netG", self.netG, GENERATORS)
        _check_choice("netD", self.netD, DISCRIMINATORS)
        _check_choice("norm", self.norm, NORMS)
        _check_positive("ngf", self.ngf)
        _check_positive("ndf", self.ndf)
        _check_positive("n_layers_D", self.n_layers_D)
        _check_positive("init_gain", self.init_gain)

    @property
    def has_test_time_noise(self) -> bool:
        """Whether ``paper`` test mode differs from ``eval``: dropout or batch statistics."""
        return not self.no_dropout or self.norm == "batch"

    @property
    def receptive_field(self) -> int:
        """Side of the input patch each discriminator output sees (1, 16, 70, 286, ...)."""
        if self.netD == "pixel":
            return 1
        n_layers = 3 if self.netD == "basic" else self.n_layers_D
        # 4x4 convs: n_layers with stride 2, then two with stride 1 (from the output back).
        field = 1
        for stride in [1, 1] + [2] * n_layers:
            field = field * stride + (4 - stride)
        return field

    @property
    def num_downs(self) -> int:
        """Number of stride-2 downsamplings of the generator (sizes must divide 2**num_downs)."""
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

    model_dir: str = ""
    gan_mode: str = "vanilla"
    lambda_gan: float = 1.0
    lambda_l1: float = 100.0
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: str = "linear"
    n_epochs: int = 100
    n_epochs_decay: int = 100
    max_steps: int = 0
    save_every_steps: int = 1000
    summary_every_steps: int = 100
    image_every_steps: int = 500
    keep_checkpoints: int = 3
    val_max_examples: int = 100
    test_mode: str = "eval"
    strategy: str = "default"
    precision: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("gan_mode", self.gan_mode, GAN_MODES)
        _check_choice("lr_policy", self.lr_policy, LR_POLICIES)
        _check_choice("test_mode", self.test_mode, TEST_MODES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_positive("lr", self.lr)
        for name in ("lambda_gan", "lambda_l1", "lambda_A", "lambda_B", "lambda_identity",
                     "pool_size"):
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
        if self.train.test_mode == "paper" and not self.model.has_test_time_noise:
            raise ConfigError(
                "test_mode=paper: this generator has no dropout and no batch norm, so paper and "
                "eval modes compute the same function; use test_mode=eval")
        if self.model.model == "cycle_gan":
            if self.train.lambda_identity and self.data.input_nc != self.data.output_nc:
                # G_A(real_B) needs B images to fit G_A's input, as the reference asserts.
                raise ConfigError(
                    f"lambda_identity={self.train.lambda_identity} needs input_nc == output_nc "
                    f"(got {self.data.input_nc} and {self.data.output_nc}); set "
                    "lambda_identity=0 or equal channel counts")
            fixed = ("resize_and_crop", "crop", "scale_width_and_crop")
            if self.train.pool_size and self.data.preprocess not in fixed:
                raise ConfigError(
                    f"preprocess={self.data.preprocess} gives images of varying sizes, which "
                    "CycleGAN's image pool cannot store; use one of "
                    f"{', '.join(fixed)} (train on crops, translate full images later) or "
                    "pool_size=0")
        elif self.train.lambda_gan == 0 and self.train.lambda_l1 == 0:
            raise ConfigError("lambda_gan and lambda_l1 are both 0: the generator would have no "
                              "objective")
        elif self.data.tfds_name:
            raise ConfigError("tfds_name is a CycleGAN source (cycle_gan/*); pix2pix reads "
                              "TFRecords of pairs from data_dir")

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
    def from_json(cls, text: str) -> "ExperimentConfig":
        return cls.from_dict(json.loads(text))

    def architecture(self) -> dict[str, Any]:
        """Fields that decide the shapes of the saved variables (must match on resume)."""
        arch = {f"model.{k}": v for k, v in dataclasses.asdict(self.model).items()
                if k != "init_gain"}
        if self.model.model == "pix2pix":  # lambda_gan 0 trains (and saves) no discriminator
            arch["train.lambda_gan>0"] = self.train.lambda_gan > 0
        arch["data.input_nc"] = self.data.input_nc
        arch["data.output_nc"] = self.data.output_nc
        if self.model.model == "cycle_gan":  # the image pools are saved variables too
            arch["train.pool_size"] = self.train.pool_size
            arch["data.crop_size"] = self.data.crop_size
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


def save_config(config: ExperimentConfig, model_dir: str) -> str:
    """Writes ``config.json`` into ``model_dir`` atomically and returns its path."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, CONFIG_FILENAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json() + "\n")
    os.replace(tmp, path)
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
