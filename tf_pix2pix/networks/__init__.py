"""Network builders: pure functions of the model config returning ``keras.Model``s."""

from __future__ import annotations

import keras

from tf_pix2pix.config import ModelConfig
from tf_pix2pix.networks.multiscale import multiscale_discriminator
from tf_pix2pix.networks.patchgan import nlayer_discriminator, pixel_discriminator
from tf_pix2pix.networks.resnet import resnet_generator, resnet_module_names
from tf_pix2pix.networks.unet import unet_generator

__all__ = ["build_generator", "build_feature_encoder", "build_discriminator", "count_params",
           "unet_generator", "resnet_generator", "resnet_module_names", "nlayer_discriminator",
           "pixel_discriminator", "multiscale_discriminator", "build_multiscale_discriminator"]


def build_generator(config: ModelConfig, input_nc: int, output_nc: int,
                    sync_bn: bool = False, name: str = "generator",
                    head: str = "tanh") -> keras.Model:
    """Builds the generator named by ``config.netG`` (``global``: pix2pixHD's, a ResNet
    generator of ``n_downsample_global`` downsamplings and ``n_blocks_global`` blocks;
    ``local``: its ``LocalEnhancer``, ``networks.enhancer``);
    ``head`` ``logits`` leaves out the final tanh (a segmenter's class scores)."""
    common = dict(input_nc=input_nc, output_nc=output_nc, ngf=config.ngf, norm=config.norm,
                  use_dropout=not config.no_dropout, gain=config.init_gain, sync_bn=sync_bn,
                  upsample_mode=config.upsample, init_type=config.init_type, name=name,
                  head=head)
    if config.netG == "local":
        from tf_pix2pix.networks.enhancer import local_enhancer

        return local_enhancer(input_nc, output_nc, ngf=config.ngf,
                              n_downsample_global=config.n_downsample_global,
                              n_blocks_global=config.n_blocks_global,
                              n_local_enhancers=config.n_local_enhancers,
                              n_blocks_local=config.n_blocks_local, norm=config.norm,
                              gain=config.init_gain, init_type=config.init_type, name=name,
                              head=head)
    if config.netG.startswith(("unet", "encoder_decoder")):
        return unet_generator(num_downs=config.num_downs,
                              skips=config.netG.startswith("unet"), **common)
    return resnet_generator(n_blocks=config.n_blocks, n_downsampling=config.num_downs,
                            antialias=config.antialias,
                            antialias_up=config.antialias_up, **common)


def build_feature_encoder(config: ModelConfig, image_nc: int,
                          name: str = "encoder") -> keras.Model:
    """pix2pixHD's ``Encoder`` (``--instance_feat``): a ResNet generator without blocks —
    reflection pad 3, 7x7 conv to ``nef``, ``n_downsample_E`` stride-2 convs and as many
    transposed convs, 7x7 conv to ``feat_num``, tanh; 788,803 parameters for 3 -> 3 with the
    reference's nef 16 and 4 downsamplings. Its instance-wise average pooling is
    ``label_maps.instance_mean``."""
    return resnet_generator(image_nc, config.feat_num, n_blocks=0, ngf=config.nef,
                            norm=config.norm, use_dropout=False, gain=config.init_gain,
                            init_type=config.init_type, n_downsampling=config.n_downsample_E,
                            name=name)


def build_discriminator(config: ModelConfig, input_nc: int, output_nc: int,
                        sync_bn: bool = False, conditional: bool = True,
                        name: str = "discriminator") -> keras.Model:
    """Builds the discriminator named by ``config.netD`` (``basic`` = 3-layer PatchGAN).

    Conditional (pix2pix): judges ``[input, output]`` pairs of ``input_nc + output_nc`` channels.
    Unconditional (CycleGAN): judges single images of ``output_nc`` channels.
    """
    common = dict(input_nc=input_nc, output_nc=output_nc, ndf=config.ndf, norm=config.norm,
                  gain=config.init_gain, sync_bn=sync_bn, conditional=conditional,
                  init_type=config.init_type, name=name)
    if config.netD == "pixel":
        return pixel_discriminator(**common)
    n_layers = 3 if config.netD == "basic" else config.n_layers_D
    return nlayer_discriminator(n_layers=n_layers, antialias=config.antialias, **common)


def build_multiscale_discriminator(config: ModelConfig, input_nc: int, output_nc: int,
                                   name: str = "discriminator") -> keras.Model:
    """pix2pixHD's ``num_D`` discriminators of ``n_layers_D`` layers on ``[condition, image]``."""
    return multiscale_discriminator(input_nc, output_nc, ndf=config.ndf,
                                    n_layers=config.n_layers_D, num_D=config.num_D,
                                    norm=config.norm, gain=config.init_gain,
                                    init_type=config.init_type, name=name)


def count_params(model: keras.Model) -> int:
    """Trainable parameters (what PyTorch counts; batch-norm running statistics excluded)."""
    return int(sum(v.numpy().size for v in model.trainable_variables))
