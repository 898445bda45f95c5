"""The one resolution of a configuration, and reading it back: defaults, modes, presets and
the caller's options merged in one order (see ``tf_pix2pix.models``), the combination checked
against the registered model, ``config.json`` read with the model's section.

It looks models up in the registry and imports none, so the model modules, checkpointing and
restoring can use it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tf_pix2pix import configuration as cfg
from tf_pix2pix.errors import ConfigError
from tf_pix2pix.models.registry import get, names

def for_config(config: cfg.ExperimentConfig) -> type:
    """The model class of a configuration."""
    return get(config.model.model)


def option_classes(model: str) -> tuple[type, ...]:
    """The config classes whose fields are ``model``'s options: the shared sections and the
    model's own section (the command line defines one flag per field of these)."""
    return (cfg.DataConfig, cfg.TrainConfig, cfg.RuntimeConfig, get(model).Config)


def _mode_and_preset(model_class: type, preset: str | None,
                     chosen: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if preset is not None and preset not in model_class.presets:
        raise ConfigError(f"preset={preset!r} is not valid for the {model_class.name} model; "
                          f"choose one of {', '.join(model_class.presets) or '(none)'}")
    preset_values = dict(model_class.presets.get(preset, {})) if preset else {}
    section_defaults = cfg.default_options(model_class.Config)
    mode_values: dict[str, Any] = {}
    for option, by_value in model_class.modes.items():
        value = chosen.get(option, preset_values.get(option, section_defaults.get(option)))
        if value not in by_value:
            raise ConfigError(f"{option}={value!r} is not valid; choose one of "
                              f"{', '.join(by_value)}")
        mode_values.update(by_value[value])
    return mode_values, preset_values


def resolved_options(model: str, preset: str | None = None,
                     chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{flag name: value}`` of every option of ``model`` before the caller's own: steps 1-4
    of the resolution (the defaults the command line's flags show)."""
    model_class = get(model)
    chosen = chosen or {}
    mode_values, preset_values = _mode_and_preset(model_class, preset, chosen)
    values: dict[str, Any] = {}
    for klass in option_classes(model):
        values.update(cfg.default_options(klass))
    values["model"] = model
    for layer in (model_class.reference_defaults, mode_values, preset_values):
        unknown = sorted(set(layer) - set(values))
        if unknown:
            raise ConfigError(f"the {model} model's defaults name unknown options: "
                              f"{', '.join(unknown)}")
        values.update(layer)
    return values


def _unknown_options(model: str, unknown: list[str]) -> str:
    owners = {}
    for other in names():
        if other != model:
            for name in cfg.default_options(get(other).Config):
                owners.setdefault(name, other)
    parts = [f"{name} (an option of {owners[name]})" if name in owners else name
             for name in unknown]
    return f"unknown options for the {model} model: {', '.join(parts)}"


def resolve(model: str = "pix2pix", preset: str | None = None,
            **options: Any) -> cfg.ExperimentConfig:
    """The experiment configuration of ``model`` with ``preset`` and the caller's ``options``
    (flag names, e.g. ``lambda_A=5.0``, ``no_antialias=True``), checked.

    >>> from tf_pix2pix import models
    >>> c = models.resolve("cycle_gan", crop_size=128, load_size=143)
    >>> c.model.netG, c.model.norm, c.model.gan_mode, c.model.lambda_A, c.data.crop_size
    ('resnet_9blocks', 'instance', 'lsgan', 10.0, 128)
    >>> models.resolve("cut", cut_mode="fastcut").model.lambda_NCE
    10.0

    Raises:
      ConfigError: an unknown model, preset or option, or an invalid value or combination.
    """
    if "model" in options and options.pop("model") != model:
        raise ConfigError("pass the model as resolve's first argument, not as an option")
    values = resolved_options(model, preset, options)
    unknown = sorted(set(options) - set(values))
    if unknown:
        raise ConfigError(_unknown_options(model, unknown))
    values.update(options)
    sections = {name: klass(**cfg.field_values(klass, values))
                for name, klass in cfg.SECTION_CLASSES.items()}
    config = cfg.ExperimentConfig(
        **sections, model=get(model).Config(**cfg.field_values(get(model).Config, values)))
    validate(config)
    return config


def validate(config: cfg.ExperimentConfig) -> type:
    """Checks what the sections cannot check alone: the section belongs to its model, the
    test mode, the data source and the model's own combinations (``check_config``); returns
    the model class.

    Raises:
      ConfigError: the first problem, naming the options and what to do.
    """
    model = for_config(config)
    if not isinstance(config.model, model.Config):
        raise ConfigError(
            f"model={config.model.model!r} takes its options as {model.Config.__name__}, not "
            f"{type(config.model).__name__}; build the configuration with "
            f"tf_pix2pix.models.resolve({config.model.model!r}, ...)")
    check_test_mode(config, config.train.test_mode)
    if config.data.tfds_name and not model.tfds_source:
        raise ConfigError(f"tfds_name: the {config.model.model} model reads TFRecords from "
                          "data_dir, not TensorFlow Datasets")
    model.check_config(config)
    return model


def check_test_mode(config: cfg.ExperimentConfig, test_mode: str) -> None:
    """Refuses an unknown test-time mode, and ``paper`` mode for a generator in which it would
    change nothing (no dropout and no batch norm)."""
    cfg.check_choice("test_mode", test_mode, cfg.TEST_MODES)
    if test_mode == "paper" and not for_config(config).has_test_time_noise(config):
        raise ConfigError(
            f"test_mode=paper: this {config.model.model} generator has no dropout and no batch "
            "norm, so paper and eval modes compute the same function; use test_mode=eval")


def config_from_dict(raw: dict[str, Any], where: str = "config") -> cfg.ExperimentConfig:
    """The checked configuration a ``config.json`` (or an export's copy of it) holds, in
    today's layout or the flat one before sections."""
    name = cfg.model_name(raw, where)
    config = cfg.ExperimentConfig.from_dict(raw, get(name).Config)
    validate(config)
    return config


def load_config(model_dir: str) -> cfg.ExperimentConfig | None:
    """Reads ``model_dir/config.json``; ``None`` when there is none."""
    raw = cfg.read_config_file(model_dir)
    if raw is None:
        return None
    return config_from_dict(raw, f"{model_dir}/{cfg.CONFIG_FILENAME}")


def architecture(config: cfg.ExperimentConfig) -> dict[str, Any]:
    """Fields that decide the shapes of the saved variables (must match on resume): every
    model's (``ExperimentConfig.architecture``) and the model's own (``saved_state_fields``)."""
    return {**config.architecture(), **for_config(config).saved_state_fields(config)}


def architecture_differences(saved: cfg.ExperimentConfig,
                             current: cfg.ExperimentConfig) -> list[str]:
    """Lists ``field: saved -> current`` for every architecture field that differs."""
    return cfg.differences(architecture(saved), architecture(current))


def with_model_dir(config: cfg.ExperimentConfig, model_dir: str) -> cfg.ExperimentConfig:
    """``config`` with its files in ``model_dir`` (a copied or moved training directory)."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                 model_dir=model_dir))
