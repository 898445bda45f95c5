"""Network builders: pure functions of the model config returning ``keras.Model``s."""

from __future__ import annotations

from typing import NamedTuple

import keras

from tf_pix2pix.configuration import ModelConfig
from tf_pix2pix.networks.multiscale import multiscale_discriminator, scale_outputs
from tf_pix2pix.networks.patchgan import (discriminator_layers, nlayer_discriminator,
                                          pixel_discriminator, receptive_field)
from tf_pix2pix.networks.resnet import resnet_generator, resnet_module_names
from tf_pix2pix.networks.unet import unet_generator

__all__ = ["GeneratorLayout", "generator_layout", "build_generator", "build_discriminator", "count_params", "num_downs", "n_blocks",
           "unet_generator", "resnet_generator", "resnet_module_names", "nlayer_discriminator",
           "pixel_discriminator", "multiscale_discriminator", "scale_outputs", "receptive_field",
           "discriminator_layers"]

# Stride-2 downsamplings of the generators of ``config.GENERATORS`` (image sides must divide
# 2**num_downs).
_NUM_DOWNS = {"unet_256": 8, "unet_128": 7, "unet_64": 6, "unet_32": 5, "resnet_9blocks": 2,
              "resnet_6blocks": 2, "encoder_decoder_256": 8, "encoder_decoder_128": 7}


def num_downs(netG: str) -> int:
    """Stride-2 downsamplings of the generator ``netG`` (sizes must divide 2**num_downs)."""
    return _NUM_DOWNS[netG]


def n_blocks(netG: str) -> int:
    """ResNet blocks of a ``resnet_*`` generator."""
    return 9 if netG == "resnet_9blocks" else 6


class GeneratorLayout(NamedTuple):
    """The module tree a generator's weights follow in the references (how ``import_torch``
    names them): ``family`` ``unet`` (nested skip blocks) or ``resnet`` (stem, downsamplings,
    blocks, upsamplings, head); a ``local_enhancers`` > 0 ResNet is pix2pixHD's LocalEnhancer
    around its global part."""

    family: str
    downsamplings: int
    blocks: int = 0
    local_enhancers: int = 0
    local_blocks: int = 0


def generator_layout(config: ModelConfig) -> GeneratorLayout:
    """The layout of the generator ``config.netG`` (one of ``config.GENERATORS``)."""
    if config.netG.startswith(("unet", "encoder_decoder")):
        return GeneratorLayout("unet", num_downs(config.netG))
    return GeneratorLayout("resnet", num_downs(config.netG), n_blocks(config.netG))


def build_generator(config: ModelConfig, input_nc: int, output_nc: int,
                    sync_bn: bool = False, name: str = "generator", head: str = "tanh",
                    antialias: bool = False, antialias_up: bool = False) -> keras.Model:
    """Builds the generator named by ``config.netG`` (a U-Net, an encoder-decoder or a ResNet
    generator); ``head`` ``logits`` leaves out the final tanh (a segmenter's class scores);
    ``antialias``/``antialias_up``: a ResNet generator's blurred sampling (CUT's)."""
    common = dict(input_nc=input_nc, output_nc=output_nc, ngf=config.ngf, norm=config.norm,
                  use_dropout=not config.no_dropout, gain=config.init_gain, sync_bn=sync_bn,
                  upsample_mode=config.upsample, init_type=config.init_type, name=name,
                  head=head)
    if config.netG.startswith(("unet", "encoder_decoder")):
        return unet_generator(num_downs=num_downs(config.netG),
                              skips=config.netG.startswith("unet"), **common)
    return resnet_generator(n_blocks=n_blocks(config.netG), n_downsampling=num_downs(config.netG),
                            antialias=antialias, antialias_up=antialias_up, **common)


def build_discriminator(config: ModelConfig, input_nc: int, output_nc: int,
                        sync_bn: bool = False, conditional: bool = True,
                        name: str = "discriminator", antialias: bool = False) -> keras.Model:
    """Builds the discriminator named by ``config.netD`` (``basic`` = 3-layer PatchGAN).

    Conditional (pix2pix): judges ``[input, output]`` pairs of ``input_nc + output_nc`` channels.
    Unconditional (CycleGAN): judges single images of ``output_nc`` channels.
    """
    common = dict(input_nc=input_nc, output_nc=output_nc, ndf=config.ndf, norm=config.norm,
                  gain=config.init_gain, sync_bn=sync_bn, conditional=conditional,
                  init_type=config.init_type, name=name)
    if config.netD == "pixel":
        return pixel_discriminator(**common)
    return nlayer_discriminator(n_layers=discriminator_layers(config.netD, config.n_layers_D),
                                antialias=antialias, **common)


def count_params(model: keras.Model) -> int:
    """Trainable parameters (what PyTorch counts; batch-norm running statistics excluded)."""
    return int(sum(v.numpy().size for v in model.trainable_variables))
