"""Imports the authors' published PyTorch generators into a model directory of this project.

Usage:
  python -m tf_pix2pix.tools.import_torch --pth latest_net_G.pth --model_dir runs/facades_pretrained
  # NVIDIA's label2city_1024p (pix2pixHD: local enhancer, 35 Cityscapes classes + instance edges)
  python -m tf_pix2pix.tools.import_torch --pth latest_net_G.pth --model pix2pix_hd --netG local \
      --ngf 32 --label_nc 35 --model_dir runs/label2city_1024p
  python -m tf_pix2pix.tools.import_torch --url horse2zebra --model cycle_gan --model_dir runs/h2z
  python run_export.py --model_dir runs/h2z --export_dir exported/horse2zebra

The ``.pth`` is read without PyTorch (``pth_format``: a restricted unpickler, both file formats).
Every tensor of the reference's generator is mapped to its Keras variable by the reference's
module structure (``UnetGenerator``'s nested ``model.model.1.model.3...`` blocks,
``ResnetGenerator``'s and pix2pixHD's ``GlobalGenerator``'s flat ``model.N`` list, the
``LocalEnhancer``'s ``model`` (its global part), ``model1_1`` and ``model1_2``), names and
shapes checked one by one; convolution weights go from
PyTorch's ``[out, in, kh, kw]`` to Keras's ``[kh, kw, in, out]`` and transposed-convolution
weights from ``[in, out, kh, kw]`` to ``[kh, kw, out, in]`` (the same taps, no flip). Batch-norm
running statistics are kept (``num_batches_tracked`` is not needed); the old-PyTorch instance-norm
keys (``running_mean``/``running_var``/``num_batches_tracked`` under an affine-free
``InstanceNorm2d``) are dropped, as the reference itself does when loading. ResNet files saved
with dropout have each block's second conv at ``conv_block.6`` instead of ``conv_block.5``: the
dropout is detected from the keys and reported.

The model directory gets ``config.json`` and ``checkpoints/ckpt-0`` holding the generator (as
``generator`` for pix2pix, as CycleGAN's ``G_A`` for cycle_gan), so ``run_export.py`` and
``run_predict.py`` use it as they use a trained one.
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.cli import UserError, define_flags, from_flags, run_main, writable_dir
from tf_pix2pix.configuration import (ConfigError, DataConfig, ExperimentConfig, ModelConfig, option,
                               option_of, save_config)
from tf_pix2pix.models.pix2pix_hd import Pix2PixHDConfig
from tf_pix2pix.networks import GeneratorLayout
from tf_pix2pix.networks.enhancer import GLOBAL
from tf_pix2pix.tools.pth_format import PthError, load_state_dict

_INSTANCE_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """What to import and into which model directory (architecture flags as the reference's;
    each field is a flag of ``python -m tf_pix2pix.tools.import_torch``)."""

    model_dir: str = option(dataclasses.MISSING, "New model directory to write.")
    pth: str = option("", "A PyTorch state dict of the reference's generator.")
    url: str = option("", "A published model by name (e.g. facades_label2photo, horse2zebra), "
                          "downloaded with keras.utils.get_file.")
    model: str = option_of(ModelConfig, "model")
    netG: str = option("", "Generator of the file (default: the model's reference netG).")
    norm: str = option("", "batch, instance or none (default: the model's reference norm).")
    ngf: int = option(64, "Generator filters of the file.")
    input_nc: int = option(3, "Input channels of the file's generator (images).")
    output_nc: int = option(3, "Output channels of the file's generator.")
    label_nc: int = option_of(DataConfig, "label_nc")
    no_instance: bool = option_of(DataConfig, "no_instance")
    # pix2pixHD's generator sizes (passed on to models that have them).
    n_downsample_global: int = option_of(Pix2PixHDConfig, "n_downsample_global")
    n_blocks_global: int = option_of(Pix2PixHDConfig, "n_blocks_global")
    n_local_enhancers: int = option_of(Pix2PixHDConfig, "n_local_enhancers")
    n_blocks_local: int = option_of(Pix2PixHDConfig, "n_blocks_local")
    cache_dir: str = option("", "Download cache for --url (default ~/.keras).")

    def __post_init__(self) -> None:
        if bool(self.pth) == bool(self.url):
            raise UserError("pass exactly one of --pth and --url")
        models.get(self.model)  # ConfigError naming the registered models


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # [out, in, kh, kw] -> [kh, kw, in, out]


def _deconv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # [in, out, kh, kw] -> [kh, kw, out, in]


def _unet_prefix(level: int) -> str:
    """The reference's key prefix of the UnetSkipConnectionBlock at ``level`` (0 = outermost)."""
    return "model.model." + "".join("1.model." if i == 0 else "3.model." for i in range(level))


def reference_names(model: keras.Model, layout: GeneratorLayout, dropout_blocks: bool = False
                    ) -> dict[str, tuple[str, str, str]]:
    """``{reference key: (keras layer, keras weight, kind)}`` for a generator of ``layout``
    (the model's ``generator_layout``); kind is ``conv``, ``deconv`` or ``plain``.

    Args:
      model: the Keras generator (its layers decide which biases and norms exist).
      layout: the reference module tree it follows.
      dropout_blocks: ResNet blocks with dropout (second conv at ``conv_block.6``).
    """
    names: dict[str, tuple[str, str, str]] = {}

    def add(key: str, layer: str, kind: str) -> None:
        target = _layer(model, layer)
        if kind == "norm":
            if not target.weights:  # affine-free instance norm or identity: nothing stored
                return
            for ref, ours in (("weight", "gamma"), ("bias", "beta"),
                              ("running_mean", "moving_mean"),
                              ("running_var", "moving_variance")):
                names[f"{key}.{ref}"] = (layer, ours, "plain")
            return
        names[f"{key}.weight"] = (layer, "kernel", kind)
        if target.bias is not None:
            names[f"{key}.bias"] = (layer, "bias", "plain")

    if layout.family == "unet":
        n = layout.downsamplings
        add(_unet_prefix(0) + "0", "down0_conv", "conv")
        add(_unet_prefix(0) + "3", "up0_deconv", "deconv")
        for level in range(1, n):
            p = _unet_prefix(level)
            add(p + "1", f"down{level}_conv", "conv")
            if level < n - 1:
                add(p + "2", f"down{level}_norm", "norm")
                add(p + "5", f"up{level}_deconv", "deconv")
                add(p + "6", f"up{level}_norm", "norm")
            else:  # innermost: downrelu, downconv, uprelu, upconv, upnorm
                add(p + "3", f"up{level}_deconv", "deconv")
                add(p + "4", f"up{level}_norm", "norm")
        return names

    second = 6 if dropout_blocks else 5

    def resnet_blocks(prefix: str, first: int, count: int, layer_prefix: str) -> None:
        for b in range(count):
            key, name = f"{prefix}.{first + b}.conv_block", f"{layer_prefix}block{b}"
            add(f"{key}.1", f"{name}_conv1", "conv")
            add(f"{key}.2", f"{name}_norm1", "norm")
            add(f"{key}.{second}", f"{name}_conv2", "conv")
            add(f"{key}.{second + 1}", f"{name}_norm2", "norm")

    # ResnetGenerator / GlobalGenerator: model.N of [pad, conv, norm, relu] + n x [conv, norm,
    # relu] + blocks + n x [deconv, norm, relu] + [pad, conv, tanh]. LocalEnhancer: the same
    # without the last three as ``model``, in the nested model "global".
    local = layout.local_enhancers > 0
    n_down, n_blocks = layout.downsamplings, layout.blocks
    inner = f"{GLOBAL}/" if local else ""
    add("model.1", inner + "stem_conv", "conv")
    add("model.2", inner + "stem_norm", "norm")
    for i in range(n_down):
        add(f"model.{4 + 3 * i}", f"{inner}down{i}_conv", "conv")
        add(f"model.{5 + 3 * i}", f"{inner}down{i}_norm", "norm")
    first = 4 + 3 * n_down
    resnet_blocks("model", first, n_blocks, inner)
    for i in range(n_down):
        add(f"model.{first + n_blocks + 3 * i}", f"{inner}up{i}_deconv", "deconv")
        add(f"model.{first + n_blocks + 3 * i + 1}", f"{inner}up{i}_norm", "norm")
    if not local:
        add(f"model.{first + n_blocks + 3 * n_down + 1}", "head_conv", "conv")  # after the pad
        return names
    # model{n}_1: [pad, conv, norm, relu, conv, norm, relu]; model{n}_2: blocks, [deconv, norm,
    # relu], and in the last enhancer [pad, conv, tanh].
    for n in range(1, layout.local_enhancers + 1):
        p, nb = f"local{n}_", layout.local_blocks
        add(f"model{n}_1.1", p + "stem_conv", "conv")
        add(f"model{n}_1.2", p + "stem_norm", "norm")
        add(f"model{n}_1.4", p + "down_conv", "conv")
        add(f"model{n}_1.5", p + "down_norm", "norm")
        resnet_blocks(f"model{n}_2", 0, nb, p)
        add(f"model{n}_2.{nb}", p + "up_deconv", "deconv")
        add(f"model{n}_2.{nb + 1}", p + "up_norm", "norm")
    add(f"model{layout.local_enhancers}_2.{layout.local_blocks + 4}", "head_conv", "conv")
    return names


def _layer(model: keras.Model, path: str) -> keras.layers.Layer:
    """A layer by its name, or ``outer/inner`` inside a nested model."""
    for name in path.split("/"):
        model = model.get_layer(name)
    return model


def _drop_instance_norm_stats(state: dict[str, np.ndarray],
                              names: dict[str, tuple[str, str, str]]) -> dict[str, np.ndarray]:
    """Drops old-PyTorch running-statistics keys of affine-free norms the model does not have."""
    kept = {}
    for key, value in state.items():
        module, _, attr = key.rpartition(".")
        if (attr in _INSTANCE_NORM_STATS and key not in names
                and f"{module}.weight" not in state):
            continue
        if attr == "num_batches_tracked":
            continue
        kept[key] = value
    return kept


def assign_state_dict(model: keras.Model, config: ExperimentConfig,
                      state: dict[str, np.ndarray]) -> dict[str, object]:
    """Copies a reference state dict into ``model`` (the generator of ``config``); every key
    and shape must match.

    Returns:
      ``{"tensors": n, "dropout_blocks": bool}`` (whether ResNet blocks were saved with dropout).

    Raises:
      UserError: the first key that is missing, unexpected, of another shape or holding NaN or
        inf (imported, they would be served as a NaN image without a word).
    """
    dropout_blocks = any(re.search(r"\.conv_block\.6\.weight$", k) for k in state)
    names = reference_names(model, models.for_config(config).generator_layout(config),
                            dropout_blocks)
    state = _drop_instance_norm_stats(state, names)
    m = config.model
    arch = f"netG={m.netG} ngf={m.ngf} norm={m.norm}"
    for key in sorted(state):
        if key not in names:
            raise UserError(f"the file has {key} {tuple(state[key].shape)}, which a {arch} "
                            "generator does not have; pass the file's --netG/--norm/--ngf")
    for key in names:
        if key not in state:
            raise UserError(f"the file lacks {key}, which a {arch} generator needs; pass the "
                            "file's --netG/--norm/--ngf")
    for key, (layer_name, attr, kind) in names.items():
        value = state[key]
        finite = np.isfinite(np.asarray(value, np.float64))
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            raise UserError(f"the file's {key} holds {bad} non-finite value(s) (NaN or inf): "
                            "the weights are damaged; export them again from a healthy run")
        if kind == "conv":
            value = _conv(value)
        elif kind == "deconv":
            value = _deconv(value)
        variable = getattr(_layer(model, layer_name), attr)
        if tuple(variable.shape) != value.shape:
            raise UserError(f"{key}: shape {tuple(state[key].shape)} does not fit {layer_name}."
                            f"{attr} {tuple(variable.shape)} of a {arch} generator; pass the "
                            "file's --netG/--norm/--ngf/--input_nc/--output_nc")
        variable.assign(value.astype(np.float32))
    return {"tensors": len(names), "dropout_blocks": dropout_blocks}


def export_state_dict(model: keras.Model, config: ExperimentConfig,
                      dropout_blocks: bool = False) -> dict[str, np.ndarray]:
    """The inverse of :func:`assign_state_dict`: the generator's weights under the reference's
    names and layouts (for tests, and to move a model back to PyTorch)."""
    state = {}
    layout = models.for_config(config).generator_layout(config)
    for key, (layer_name, attr, kind) in reference_names(model, layout, dropout_blocks).items():
        value = keras.ops.convert_to_numpy(getattr(_layer(model, layer_name), attr))
        state[key] = np.transpose(value, (3, 2, 0, 1)) if kind in ("conv", "deconv") else value
    return state


def experiment_config(config: ImportConfig, dropout: bool | None = None) -> ExperimentConfig:
    """The configuration of the imported generator: ``models.resolve`` of the model with the
    file's architecture (``dropout`` None: the model's default)."""
    options = {"ngf": config.ngf, "input_nc": config.input_nc, "output_nc": config.output_nc,
               "label_nc": config.label_nc, "no_instance": config.no_instance,
               "model_dir": config.model_dir}
    for name in ("netG", "norm"):
        if getattr(config, name):
            options[name] = getattr(config, name)
    if dropout is not None:
        options["no_dropout"] = not dropout
    known = models.resolved_options(config.model)
    for field in ("n_downsample_global", "n_blocks_global", "n_local_enhancers",
                  "n_blocks_local"):
        value = getattr(config, field)
        if field in known or value != ImportConfig.__dataclass_fields__[field].default:
            options[field] = value
    # An identity loss needs equal channels; an imported generator of other channels gets none.
    if "lambda_identity" in known and config.input_nc != config.output_nc:
        options["lambda_identity"] = 0.0
    try:
        return models.resolve(config.model, **options)
    except ConfigError as e:
        raise UserError(str(e)) from e


def _fetch(config: ImportConfig) -> str:
    if config.pth:
        return config.pth
    published = models.get(config.model).published_generators
    if config.url not in published:
        raise UserError(f"--url={config.url}: published {config.model} models are "
                        f"{', '.join(published) or 'none'}")
    url = published[config.url]
    cache = writable_dir(config.cache_dir or "~/.keras", "--cache_dir")
    try:
        return keras.utils.get_file(f"{config.model}_{config.url}.pth", url, cache_dir=cache,
                                    cache_subdir="models")
    except Exception as e:
        raise UserError(f"cannot download {url}: {str(e).splitlines()[0]}") from e


def import_generator(config: ImportConfig) -> dict[str, object]:
    """Reads the ``.pth``, builds the generator, copies the weights, writes the model directory.

    The model's configuration is its reference defaults (``models``) with the file's
    architecture; the generator is saved under the model's ``AtoB`` slot.

    Returns:
      A summary: the checkpoint, the configuration, tensors copied, dropout detection.
    """
    if models.load_config(config.model_dir) is not None:
        raise UserError(f"--model_dir {config.model_dir} already holds a model; use a new one")
    try:
        state = load_state_dict(_fetch(config))
    except PthError as e:
        raise UserError(str(e)) from e
    model_class = models.get(config.model)
    default = experiment_config(config)
    resnet_dropout = any(re.search(r"\.conv_block\.6\.weight$", k) for k in state)
    # A U-Net's dropout leaves no weights: it follows the model's reference default. A ResNet's
    # shows in its keys.
    unet = model_class.generator_layout(default).family == "unet"
    dropout = resnet_dropout or (unet and not default.model.no_dropout)
    experiment = experiment_config(config, dropout)
    root = model_class.generator_slots(experiment)["AtoB"].root
    generator = model_class.build_generator(experiment, "AtoB")
    copied = assign_state_dict(generator, experiment, state)
    save_config(experiment, config.model_dir)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**{root: generator}),
                                         os.path.join(config.model_dir, "checkpoints"), 1)
    path = manager.save(checkpoint_number=0)
    return {"checkpoint": path, "config": experiment, "generator": root, **copied}


def main(argv: list[str]) -> None:
    config = from_flags(ImportConfig)
    result = import_generator(config)
    m = result["config"].model
    print(f"imported {result['tensors']} tensors into {result['checkpoint']} as "
          f"{result['generator']} (netG={m.netG} norm={m.norm} ngf={m.ngf}"
          f"{', ResNet blocks saved with dropout' if result['dropout_blocks'] else ''})")
    print(f"export: python run_export.py --model_dir {config.model_dir} --export_dir "
          f"exported/{os.path.basename(os.path.normpath(config.model_dir))}")


def run() -> None:
    define_flags(ImportConfig)
    run_main(main)


if __name__ == "__main__":
    run()
