"""The configuration's shared sections and the machinery every section uses; no TensorFlow.

An experiment is ``data + train + runtime + model``: :class:`DataConfig` (where the TFRecords
are, how examples are prepared), :class:`TrainConfig` (optimisation, schedule, checkpoints and
logs), :class:`RuntimeConfig` (devices, precision, locking) and the chosen model's own section,
a subclass of :class:`ModelConfig` declared beside the model in ``tf_pix2pix.models.<model>``
(its options, its reference defaults as field defaults; ``models.resolve`` adds its modes and
presets). Every default is stated once, on its field, with its help text, choices and bounds in
the field's metadata (:func:`option`); the command-line tools generate their absl flags from
these fields (``cli.define_flags``) and library code only ever sees the objects. Each section
validates its own fields on construction (a bad value fails at start-up with a message naming
it); checks that need the model (its networks, its data layout) are ``models.validate``'s.

This module imports neither TensorFlow nor the model registry, so reading, writing and checking
a configuration is cheap and has no import cycle; ``models.load_config`` reads ``config.json``
with the registered model's section.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tf_pix2pix.errors import ConfigError

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
# unet_256/unet_128 and the ResNets are the reference's; unet_64/unet_32 extend the same recipe
# to small images (6 and 5 downsamplings); encoder_decoder_* are the U-Nets without skips (the
# paper's ablation). pix2pixHD's section adds its own generators.
GENERATORS = ("unet_256", "unet_128", "unet_64", "unet_32", "resnet_9blocks", "resnet_6blocks",
              "encoder_decoder_256", "encoder_decoder_128")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
LR_POLICIES = ("linear", "constant")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TEST_MODES = ("eval", "paper")
UPSAMPLE_MODES = ("transpose", "resize_conv")
INIT_TYPES = ("normal", "xavier")

CONFIG_FILENAME = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"
# config.json's layout: 2 = sections data/train/runtime/model, the model's own options in its
# section. Files without a version are the flat layout of before (every model's options in
# every file), which load_config maps onto the sections.
CONFIG_VERSION = 2
SHARED_SECTIONS = ("data", "train", "runtime")


def option(default: Any, help: str, choices: tuple[str, ...] | None = None,
           flag: str | None = None, inverted: bool = False, bound: str | None = None,
           architecture: bool = True) -> Any:
    """A dataclass field with its command-line description.

    Args:
      default: the one default of the field.
      help: the flag's help text.
      choices: allowed values of a string field (an enum flag).
      flag: the flag's name when it differs from the field's.
      inverted: a boolean flag that sets the field to ``not value`` (``--no_condition_D``).
      bound: ``positive`` (> 0) or ``non_negative`` (>= 0), checked on construction.
      architecture: for a model's option, whether it shapes the saved variables (a resume
        with another value is refused); ``False`` for the objective's weights and switches.
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "inverted": inverted,
                "bound": bound, "architecture": architecture}
    return dataclasses.field(default=default, metadata=metadata)


def option_name(field: dataclasses.Field) -> str:
    """The command-line name of a config field: its name, or the flag its metadata gives."""
    return field.metadata.get("flag") or field.name


_UNSET = object()


def option_of(klass: type, name: str, default: Any = _UNSET, **changes: Any) -> Any:
    """A field with the metadata of ``klass``'s field ``name``: a tool's config that repeats an
    option states it once, there; a model's section gives a shared option its own ``default``
    (and ``help``, ``choices``) without restating the rest."""
    field = klass.__dataclass_fields__[name]
    metadata = {**field.metadata, **changes}
    return dataclasses.field(default=field.default if default is _UNSET else default,
                             metadata=metadata)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(choices)}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} is not valid; it must be {bound}")


def check_fields(section: Any) -> None:
    """Checks every field of a config dataclass against its metadata's choices and bound."""
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if field.metadata.get("choices"):
            check_choice(field.name, value, field.metadata["choices"])
        bound = field.metadata.get("bound")
        if bound:
            check_positive(field.name, value, allow_zero=bound == "non_negative")


def option_fields(*sections: type) -> dict[str, tuple[type, dataclasses.Field]]:
    """``{option name: (section class, field)}`` of config classes (the first one wins)."""
    found: dict[str, tuple[type, dataclasses.Field]] = {}
    for klass in sections:
        for field in dataclasses.fields(klass):
            found.setdefault(option_name(field), (klass, field))
    return found


def field_values(klass: type, options: dict[str, Any]) -> dict[str, Any]:
    """The field values of ``klass`` that command-line ``options`` (``{flag name: value}``)
    give, inverted flags turned into their fields' values."""
    values = {}
    for field in dataclasses.fields(klass):
        name = option_name(field)
        if name in options:
            value = options[name]
            values[field.name] = not value if field.metadata.get("inverted") else value
    return values


def default_options(klass: type) -> dict[str, Any]:
    """``{flag name: default}`` of a config class, as its flags show them."""
    out = {}
    for field in dataclasses.fields(klass):
        if field.default is not dataclasses.MISSING:
            out[option_name(field)] = (not field.default if field.metadata.get("inverted")
                                       else field.default)
    return out


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the TFRecords are and how examples are prepared (the reference's option names)."""

    data_dir: str = option("", "Folder made by data_prep.build_tfrecords (holds manifest.json).")
    direction: str = option("AtoB", "AtoB: left half -> right half; BtoA the reverse.",
                            DIRECTIONS)
    preprocess: str = option("resize_and_crop", "Jitter and resizing, as in the reference.",
                             PREPROCESS_MODES)
    load_size: int = option(286, "Scale images to this size before cropping.", bound="positive")
    crop_size: int = option(256, "Crop size (the network's input size).", bound="positive")
    input_nc: int = option(3, "Input channels (1 or 3).")
    output_nc: int = option(3, "Output channels (1 or 3).")
    no_flip: bool = option(False, "Disable the random horizontal mirror.")
    batch_size: int = option(1, "Global batch size (split across replicas).", bound="positive")
    shuffle_buffer: int = option(0, "Shuffle buffer; 0 = the whole split (<= 10,000).",
                                 bound="non_negative")
    seed: int = option(0, "Seed of the run: weights, dropout, image pools and the data "
                          "pipeline.")
    tfds_name: str = option("", "A TensorFlow Datasets name such as cycle_gan/horse2zebra, "
                                "instead of --data_dir (TFDS downloads it once), for models "
                                "that read TFDS.")
    tfds_data_dir: str = option("", "TFDS's data folder (default: TFDS's own).")
    label_nc: int = option(0, "Classes of label-map inputs (35 for Cityscapes; pix2pixHD, the "
                              "segmenter); the input is their one-hot encoding. 0 = the input "
                              "is an RGB image.", bound="non_negative")
    no_instance: bool = option(False, "Label-map data without instance maps: do not add the "
                                      "instances' boundaries to the input.")
    on_corrupt_record: str = option("fail", "A corrupted record in a TFRecord shard: fail (stop "
                                            "with a checkpoint and a line naming the shard) or "
                                            "skip (train on the shard's good records, count the "
                                            "bad ones).", ("fail", "skip"))

    def __post_init__(self) -> None:
        check_fields(self)
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
    """The options every model shares (the reference's names); a model's own section subclasses
    it in its module, adds its options and gives shared ones its reference defaults.

    ``model`` names the registered model (``tf_pix2pix.models``) the section belongs to.
    ``upsample`` is ``transpose`` (the reference's transposed convs) or ``resize_conv`` (nearest
    x2 + 3x3 conv, against checkerboard artifacts); ``encoder_decoder_*`` generators are the
    U-Nets without their skip connections (the paper's ablation).
    """

    model: str = option("pix2pix", "The model to train (see tf_pix2pix.models: pix2pix for "
                                   "paired data, cycle_gan for unpaired, or a plugin); the "
                                   "other flags and their defaults follow the model, as the "
                                   "reference's modify_commandline_options sets them.")
    netG: str = option("unet_256", "Generator architecture.", GENERATORS)
    ngf: int = option(64, "Generator filters in the first conv.", bound="positive")
    netD: str = option("basic", "Discriminator architecture.", DISCRIMINATORS)
    ndf: int = option(64, "Discriminator filters in the first conv.", bound="positive")
    n_layers_D: int = option(3, "Layers of the n_layers discriminator.", bound="positive")
    norm: str = option("batch", "Normalisation layers.", NORMS)
    no_dropout: bool = option(False, "No dropout in the generator.")
    init_type: str = option("normal", "Weight init of convs and linear layers: normal "
                                      "(N(0, init_gain)) or xavier (xavier_normal with gain "
                                      "init_gain, CUT's).", INIT_TYPES)
    init_gain: float = option(0.02, "Std of the N(0, gain) weight init.", bound="positive",
                              architecture=False)
    upsample: str = option("transpose", "Generator upsampling: transpose (the reference's "
                                        "transposed convs) or resize_conv (nearest x2 + 3x3 "
                                        "conv; avoids checkerboard artifacts).", UPSAMPLE_MODES)
    gan_mode: str = option("vanilla", "GAN objective.", GAN_MODES, architecture=False)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, checkpointing and logging of a training run."""

    model_dir: str = option("", "Checkpoints, config.json, TensorBoard events, samples.")
    lr: float = option(2e-4, "Adam learning rate.", bound="positive")
    beta1: float = option(0.5, "Adam beta1.")
    beta2: float = option(0.999, "Adam beta2.")
    lr_policy: str = option("linear", "Learning-rate policy.", LR_POLICIES)
    n_epochs: int = option(100, "Epochs at the initial learning rate.", bound="non_negative")
    n_epochs_decay: int = option(100, "Epochs of linear decay to zero.", bound="non_negative")
    max_steps: int = option(0, "Stop after this many steps; 0 = all epochs.",
                            bound="non_negative")
    save_every_steps: int = option(1000, "Checkpoint interval (also every epoch end).",
                                   bound="positive")
    summary_every_steps: int = option(100, "Scalar summary interval.", bound="positive")
    image_every_steps: int = option(500, "Image summary interval.", bound="positive")
    keep_checkpoints: int = option(3, "Checkpoints to keep.", bound="positive")
    val_max_examples: int = option(100, "Val examples scored after each epoch; 0 = none.",
                                   bound="non_negative")
    test_mode: str = option("eval", "How G runs for samples and val: eval (dropout off, running "
                                    "BN statistics) or paper (dropout on, batch statistics, as "
                                    "the paper's test time).", TEST_MODES)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.n_epochs + self.n_epochs_decay == 0 and self.max_steps == 0:
            raise ConfigError("n_epochs + n_epochs_decay is 0 and max_steps is 0; nothing to train")
        if not 0.0 <= self.beta1 < 1.0 or not 0.0 <= self.beta2 < 1.0:
            raise ConfigError(f"beta1={self.beta1}, beta2={self.beta2}: both must be in [0, 1)")
        if self.lr > 1.0:  # Adam's step is about lr per weight: above 1 the GAN only diverges
            raise ConfigError(f"lr={self.lr:g}: Adam learning rates above 1 make every step "
                              "larger than the weights (the reference trains with 0.0002); "
                              "use a rate in (0, 1]")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the run executes: devices, precision, the model_dir lock."""

    strategy: str = option("default", "tf.distribute strategy; multi_worker reads TF_CONFIG.",
                           STRATEGIES)
    precision: str = option("float32", "Keras mixed-precision policy.", PRECISIONS)
    lock_timeout: int = option(600, "Seconds after which the model_dir lock of a trainer on "
                                    "another host that stopped refreshing it counts as stale "
                                    "(a lock of a dead process on this host is stale at once).")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """The scores of translations beside L1/PSNR/SSIM: FID/KID and the paper's FCN-score
    (``run_predict.py`` and the experiment runner take these options)."""

    inception_weights: str = option("", "FID/KID: Keras's InceptionV3 notop .h5, or imagenet "
                                        "(Keras downloads it once); empty: no FID/KID.")
    segmenter: str = option("", "FCN-score: a segmenter taking images in [-1, 1] and returning "
                                "class scores: a version folder exported from "
                                "--model=segmenter, another SavedModel, or a .keras file.")
    segmenter_input_size: str = option("", "FCN-score: HEIGHT,WIDTH the segmenter runs at "
                                           "(photos resized bilinearly); empty = each photo's "
                                           "own size.")
    fcn_labels: str = option("", "FCN-score: folder of label-id PNGs named as the inputs (or "
                                 "Cityscapes' *_gtFine_labelIds.png), or input_colours (the "
                                 "inputs are colour-coded label maps, as pix2pix's Cityscapes "
                                 "set); not needed for label-map inputs.")
    fcn_classes: str = option("cityscapes", "FCN-score: cityscapes (label ids to the 19 train "
                                            "ids, others ignored) or N (label ids 0..N-1 are "
                                            "the classes).")


SECTION_CLASSES = {"data": DataConfig, "train": TrainConfig, "runtime": RuntimeConfig}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs; saved as ``config.json`` in the model directory.

    ``model`` is the chosen model's own section (a :class:`ModelConfig` subclass); build whole
    experiments with ``models.resolve`` (or ``tf_pix2pix.config(...)``), which applies the
    model's defaults, modes and presets and checks the combination.
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def options(self) -> dict[str, Any]:
        """``{flag name: value}`` of every section, as the command line would give them."""
        out = {}
        for section in (self.data, self.train, self.runtime, self.model):
            for field in dataclasses.fields(section):
                value = getattr(section, field.name)
                out[option_name(field)] = (not value if field.metadata.get("inverted")
                                           else value)
        return out

    def replace(self, **options: Any) -> "ExperimentConfig":
        """A copy with some options changed, by flag name, in whichever section holds them."""
        sections = {"data": self.data, "train": self.train, "runtime": self.runtime,
                    "model": self.model}
        left = dict(options)
        for name, section in sections.items():
            values = field_values(type(section), left)
            for field in dataclasses.fields(section):
                left.pop(option_name(field), None)
            if values:
                sections[name] = dataclasses.replace(section, **values)
        if left:
            raise ConfigError(f"unknown options: {', '.join(sorted(left))}")
        return ExperimentConfig(**sections)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], section: type[ModelConfig]) -> "ExperimentConfig":
        """The configuration a ``config.json`` holds, with ``section`` the model's section
        class (``models.config_from_dict`` looks it up). A file of the flat layout before
        sections (no ``version``) is mapped onto them: each field goes to the section that now
        holds it, other models' options (which had no effect on this model) are dropped."""
        if "version" not in raw:
            raw = _sections_from_flat(raw, section)
        elif raw["version"] != CONFIG_VERSION:
            raise ConfigError(f"config version {raw['version']} is not known to this "
                              f"tf_pix2pix (it reads {CONFIG_VERSION}); upgrade tf_pix2pix")
        parts = {}
        for name, klass in (*SECTION_CLASSES.items(), ("model", section)):
            values = dict(raw.get(name, {}))
            known = {f.name for f in dataclasses.fields(klass)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"unknown {name} config fields: {', '.join(unknown)}")
            parts[name] = klass(**values)
        return cls(**parts)

    def architecture(self) -> dict[str, Any]:
        """The fields of every model that decide the shapes of the saved variables (must match
        on resume); ``models.architecture`` adds the model's own."""
        arch = {f"model.{f.name}": getattr(self.model, f.name)
                for f in dataclasses.fields(self.model) if f.metadata.get("architecture", True)}
        arch["data.input_nc"] = self.data.input_nc
        arch["data.output_nc"] = self.data.output_nc
        return arch

    def input_pipeline(self) -> dict[str, Any]:
        """Fields that shape the saved input-iterator state (must match to resume it)."""
        names = ("direction", "preprocess", "load_size", "crop_size", "no_flip", "batch_size",
                 "shuffle_buffer", "seed")
        return {f"data.{n}": getattr(self.data, n) for n in names}


def _sections_from_flat(raw: dict[str, Any], section: type[ModelConfig]) -> dict[str, Any]:
    """Maps a config.json of the flat layout (``data``, ``model``, ``train`` holding every
    model's options) onto today's sections by field name."""
    flat: dict[str, Any] = {}
    for name in ("data", "model", "train"):
        for key, value in raw.get(name, {}).items():
            flat.setdefault(key, value)  # data.seed and train.seed were one option
    out: dict[str, dict[str, Any]] = {}
    for name, klass in (*SECTION_CLASSES.items(), ("model", section)):
        known = {f.name for f in dataclasses.fields(klass)}
        out[name] = {k: v for k, v in flat.items() if k in known}
    return out


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Lists ``field: a -> b`` for every key of ``a`` whose value differs in ``b``."""
    return [f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in sorted(a) if a[k] != b.get(k)]


def input_pipeline_differences(saved: ExperimentConfig,
                               current: ExperimentConfig) -> list[str]:
    """Lists ``field: saved -> current`` for every input-pipeline field that differs."""
    return differences(saved.input_pipeline(), current.input_pipeline())


def write_atomic(path: str, data: str | bytes, sync: bool = False) -> None:
    """Writes ``data`` to ``path`` through a temporary file beside it, so that a reader (or a
    crash) never sees half a file; ``sync`` also flushes it to the disk before the rename."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)  # a full disk or a refused rename leaves no .tmp behind
        except OSError:
            pass
        raise


def save_config(config: ExperimentConfig, model_dir: str) -> str:
    """Writes ``config.json`` into ``model_dir`` atomically and returns its path."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, CONFIG_FILENAME)
    write_atomic(path, config.to_json() + "\n")
    return path


def checkpoint_dir(model_dir: str) -> str:
    """The checkpoint folder of a model directory (beside its ``config.json``)."""
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def read_config_file(model_dir: str) -> dict[str, Any] | None:
    """The raw contents of ``model_dir/config.json``; ``None`` when there is none."""
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ConfigError(f"--model_dir {model_dir} is a file, not a folder; pass a training "
                          "directory (or a new folder to create one)")
    path = os.path.join(model_dir, CONFIG_FILENAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return raw
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not a valid config file ({e}); delete it or fix it") from e


def model_name(raw: dict[str, Any], where: str) -> str:
    """The model a raw configuration (``config.json``, an export's copy) names."""
    try:
        return raw["model"]["model"]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: no model.model field; is it a config.json of "
                          "tf_pix2pix?") from None

