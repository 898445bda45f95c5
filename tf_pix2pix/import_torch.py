"""Imports the authors' published PyTorch generators into a model directory of this project.

Usage:
  python -m tf_pix2pix.import_torch --pth latest_net_G.pth --model_dir runs/facades_pretrained
  python -m tf_pix2pix.import_torch --url horse2zebra --model cycle_gan --model_dir runs/h2z
  python run_export.py --model_dir runs/h2z --export_dir exported/horse2zebra

The ``.pth`` is read without PyTorch (``pth_format``: a restricted unpickler, both file formats).
Every tensor of the reference's generator is mapped to its Keras variable by the reference's
module structure (``UnetGenerator``'s nested ``model.model.1.model.3...`` blocks,
``ResnetGenerator``'s flat ``model.N`` list), names and shapes checked one by one; convolution weights go from
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

from tf_pix2pix.cli import UserError, run_main
from tf_pix2pix.config import (DataConfig, ExperimentConfig, ModelConfig, TrainConfig,
                               load_config, save_config)
from tf_pix2pix.networks import build_generator
from tf_pix2pix.pth_format import PthError, load_state_dict

# The reference's scripts/download_pix2pix_model.sh and download_cyclegan_model.sh.
MODEL_URLS = {"pix2pix": "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth",
              "cycle_gan": "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/"
                           "{name}.pth"}
PIX2PIX_MODELS = ("facades_label2photo", "sat2map", "map2sat", "edges2shoes", "day2night")
CYCLEGAN_MODELS = ("apple2orange", "orange2apple", "summer2winter_yosemite",
                   "winter2summer_yosemite", "horse2zebra", "zebra2horse", "monet2photo",
                   "style_monet", "style_cezanne", "style_ukiyoe", "style_vangogh", "sat2map",
                   "map2sat", "cityscapes_photo2label", "cityscapes_label2photo",
                   "facades_photo2label", "facades_label2photo", "iphone2dslr_flower")
_INSTANCE_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """What to import and into which model directory (architecture flags as the reference's)."""

    model_dir: str
    pth: str = ""
    url: str = ""
    model: str = "pix2pix"
    netG: str = ""
    norm: str = ""
    ngf: int = 64
    input_nc: int = 3
    output_nc: int = 3
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if bool(self.pth) == bool(self.url):
            raise UserError("pass exactly one of --pth and --url")
        if self.model not in MODEL_URLS:
            raise UserError(f"--model={self.model!r}: use pix2pix or cycle_gan")


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # [out, in, kh, kw] -> [kh, kw, in, out]


def _deconv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # [in, out, kh, kw] -> [kh, kw, out, in]


def _unet_prefix(level: int) -> str:
    """The reference's key prefix of the UnetSkipConnectionBlock at ``level`` (0 = outermost)."""
    return "model.model." + "".join("1.model." if i == 0 else "3.model." for i in range(level))


def reference_names(model: keras.Model, config: ModelConfig, dropout_blocks: bool = False
                    ) -> dict[str, tuple[str, str, str]]:
    """``{reference key: (keras layer, keras weight, kind)}`` for a generator built from
    ``config``; kind is ``conv``, ``deconv`` or ``plain``.

    Args:
      model: the Keras generator (its layers decide which biases and norms exist).
      config: its architecture.
      dropout_blocks: ResNet blocks with dropout (second conv at ``conv_block.6``).
    """
    layers = {layer.name: layer for layer in model.layers}
    names: dict[str, tuple[str, str, str]] = {}

    def add(key: str, layer: str, kind: str) -> None:
        target = layers[layer]
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

    if config.netG.startswith("unet"):
        n = config.num_downs
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

    n_blocks = 9 if config.netG == "resnet_9blocks" else 6
    add("model.1", "stem_conv", "conv")
    add("model.2", "stem_norm", "norm")
    for i in range(2):
        add(f"model.{4 + 3 * i}", f"down{i}_conv", "conv")
        add(f"model.{5 + 3 * i}", f"down{i}_norm", "norm")
    second = 6 if dropout_blocks else 5
    for b in range(n_blocks):
        add(f"model.{10 + b}.conv_block.1", f"block{b}_conv1", "conv")
        add(f"model.{10 + b}.conv_block.2", f"block{b}_norm1", "norm")
        add(f"model.{10 + b}.conv_block.{second}", f"block{b}_conv2", "conv")
        add(f"model.{10 + b}.conv_block.{second + 1}", f"block{b}_norm2", "norm")
    for i in range(2):
        add(f"model.{10 + n_blocks + 3 * i}", f"up{i}_deconv", "deconv")
        add(f"model.{11 + n_blocks + 3 * i}", f"up{i}_norm", "norm")
    add(f"model.{17 + n_blocks}", "head_conv", "conv")  # after ReflectionPad2d(3) at 16 + n
    return names


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


def assign_state_dict(model: keras.Model, config: ModelConfig,
                      state: dict[str, np.ndarray]) -> dict[str, object]:
    """Copies a reference state dict into ``model``; every key and shape must match.

    Returns:
      ``{"tensors": n, "dropout_blocks": bool}`` (whether ResNet blocks were saved with dropout).

    Raises:
      UserError: the first key that is missing, unexpected or of another shape.
    """
    dropout_blocks = any(re.search(r"\.conv_block\.6\.weight$", k) for k in state)
    names = reference_names(model, config, dropout_blocks)
    state = _drop_instance_norm_stats(state, names)
    arch = f"netG={config.netG} ngf={config.ngf} norm={config.norm}"
    for key in sorted(state):
        if key not in names:
            raise UserError(f"the file has {key} {tuple(state[key].shape)}, which a {arch} "
                            "generator does not have; pass the file's --netG/--norm/--ngf")
    for key in names:
        if key not in state:
            raise UserError(f"the file lacks {key}, which a {arch} generator needs; pass the "
                            "file's --netG/--norm/--ngf")
    layers = {layer.name: layer for layer in model.layers}
    for key, (layer_name, attr, kind) in names.items():
        value = state[key]
        if kind == "conv":
            value = _conv(value)
        elif kind == "deconv":
            value = _deconv(value)
        variable = getattr(layers[layer_name], attr)
        if tuple(variable.shape) != value.shape:
            raise UserError(f"{key}: shape {tuple(state[key].shape)} does not fit {layer_name}."
                            f"{attr} {tuple(variable.shape)} of a {arch} generator; pass the "
                            "file's --netG/--norm/--ngf/--input_nc/--output_nc")
        variable.assign(value.astype(np.float32))
    return {"tensors": len(names), "dropout_blocks": dropout_blocks}


def export_state_dict(model: keras.Model, config: ModelConfig,
                      dropout_blocks: bool = False) -> dict[str, np.ndarray]:
    """The inverse of :func:`assign_state_dict`: the generator's weights under the reference's
    names and layouts (for tests, and to move a model back to PyTorch)."""
    layers = {layer.name: layer for layer in model.layers}
    state = {}
    for key, (layer_name, attr, kind) in reference_names(model, config, dropout_blocks).items():
        value = keras.ops.convert_to_numpy(getattr(layers[layer_name], attr))
        state[key] = np.transpose(value, (3, 2, 0, 1)) if kind in ("conv", "deconv") else value
    return state


def _model_config(config: ImportConfig, dropout: bool) -> ModelConfig:
    cycle = config.model == "cycle_gan"
    return ModelConfig(model=config.model,
                       netG=config.netG or ("resnet_9blocks" if cycle else "unet_256"),
                       norm=config.norm or ("instance" if cycle else "batch"), ngf=config.ngf,
                       no_dropout=not dropout)


def _fetch(config: ImportConfig) -> str:
    if config.pth:
        return config.pth
    names = CYCLEGAN_MODELS if config.model == "cycle_gan" else PIX2PIX_MODELS
    if config.url not in names:
        raise UserError(f"--url={config.url}: published {config.model} models are "
                        f"{', '.join(names)}")
    url = MODEL_URLS[config.model].format(name=config.url)
    cache = os.path.abspath(os.path.expanduser(config.cache_dir or "~/.keras"))
    try:
        return keras.utils.get_file(f"{config.model}_{config.url}.pth", url, cache_dir=cache,
                                    cache_subdir="models")
    except Exception as e:
        raise UserError(f"cannot download {url}: {str(e).splitlines()[0]}") from e


def import_generator(config: ImportConfig) -> dict[str, object]:
    """Reads the ``.pth``, builds the generator, copies the weights, writes the model directory.

    Returns:
      A summary: the checkpoint, the configuration, tensors copied, dropout detection.
    """
    from tf_pix2pix.model_base import generator_slots

    if load_config(config.model_dir) is not None:
        raise UserError(f"--model_dir {config.model_dir} already holds a model; use a new one")
    try:
        state = load_state_dict(_fetch(config))
    except PthError as e:
        raise UserError(str(e)) from e
    resnet_dropout = any(re.search(r"\.conv_block\.6\.weight$", k) for k in state)
    # pix2pix's U-Net has dropout by default (no weights show it); a ResNet's shows in its keys.
    dropout = resnet_dropout or (config.model == "pix2pix" and not
                                 (config.netG or "unet").startswith("resnet"))
    model_config = _model_config(config, dropout)
    experiment = ExperimentConfig(
        data=DataConfig(input_nc=config.input_nc, output_nc=config.output_nc),
        model=model_config,
        train=TrainConfig(model_dir=config.model_dir,
                          gan_mode="lsgan" if config.model == "cycle_gan" else "vanilla",
                          lambda_identity=0.5 if config.input_nc == config.output_nc else 0.0))
    root = generator_slots(experiment)["AtoB"][0]
    generator = build_generator(model_config, config.input_nc, config.output_nc, name=root)
    copied = assign_state_dict(generator, model_config, state)
    save_config(experiment, config.model_dir)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**{root: generator}),
                                         os.path.join(config.model_dir, "checkpoints"), 1)
    path = manager.save(checkpoint_number=0)
    return {"checkpoint": path, "config": experiment, "generator": root, **copied}


def main(argv: list[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    result = import_generator(ImportConfig(
        model_dir=f.model_dir, pth=f.pth or "", url=f.url or "", model=f.model,
        netG=f.netG or "", norm=f.norm or "", ngf=f.ngf, input_nc=f.input_nc,
        output_nc=f.output_nc, cache_dir=f.cache_dir or ""))
    m = result["config"].model
    print(f"imported {result['tensors']} tensors into {result['checkpoint']} as "
          f"{result['generator']} (netG={m.netG} norm={m.norm} ngf={m.ngf}"
          f"{', ResNet blocks saved with dropout' if result['dropout_blocks'] else ''})")
    print(f"export: python run_export.py --model_dir {f.model_dir} --export_dir "
          f"exported/{os.path.basename(os.path.normpath(f.model_dir))}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("pth", None, "A PyTorch state dict of the reference's generator.")
    flags.DEFINE_string("url", None, "A published model by name (e.g. facades_label2photo, "
                        "horse2zebra), downloaded with keras.utils.get_file.")
    flags.DEFINE_string("model_dir", None, "New model directory to write.")
    flags.DEFINE_enum("model", "pix2pix", ["pix2pix", "cycle_gan"], "Which reference model.")
    flags.DEFINE_string("netG", None, "Generator (default: unet_256 / resnet_9blocks).")
    flags.DEFINE_string("norm", None, "batch, instance or none (default: batch / instance).")
    flags.DEFINE_integer("ngf", 64, "Generator filters of the file.")
    flags.DEFINE_integer("input_nc", 3, "Input channels of the file's generator.")
    flags.DEFINE_integer("output_nc", 3, "Output channels of the file's generator.")
    flags.DEFINE_string("cache_dir", None, "Download cache for --url (default ~/.keras).")
    flags.mark_flag_as_required("model_dir")


def run() -> None:
    define_flags()
    run_main(main)


if __name__ == "__main__":
    run()
