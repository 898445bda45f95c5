"""pix2pixHD's ``LocalEnhancer`` (NVIDIA/pix2pixHD ``networks.py``): a global generator run on
the input downsampled, refined at full size by a local branch."""

from __future__ import annotations

import keras

from tf_pix2pix.networks.layers import (ReflectionPad2D, TorchUpConv, conv, conv_init,
                                        norm_layer, output_head, use_bias)
from tf_pix2pix.networks.multiscale import AvgPoolExclusive
from tf_pix2pix.networks.resnet import resnet_block, resnet_generator

GLOBAL = "global"


def global_part(input_nc: int, output_nc: int, ngf: int, n_downsampling: int, n_blocks: int,
                norm: str, gain: float, init_type: str) -> keras.Model:
    """The reference's ``GlobalGenerator(...).model`` without its last three modules
    (reflection pad, 7x7 conv, tanh): a :func:`resnet_generator` of the same layer names up to
    its last upsampling's ReLU (``ngf`` channels at the input's size)."""
    full = resnet_generator(input_nc, output_nc, n_blocks, ngf, norm, use_dropout=False,
                            gain=gain, init_type=init_type, n_downsampling=n_downsampling,
                            name=GLOBAL)
    return keras.Model(full.input, full.get_layer(f"up{n_downsampling - 1}_relu").output,
                       name=GLOBAL)


def local_enhancer(input_nc: int = 36, output_nc: int = 3, ngf: int = 32,
                   n_downsample_global: int = 4, n_blocks_global: int = 9,
                   n_local_enhancers: int = 1, n_blocks_local: int = 3,
                   norm: str = "instance", gain: float = 0.02, init_type: str = "normal",
                   name: str = "generator", head: str = "tanh") -> keras.Model:
    """pix2pixHD's ``LocalEnhancer`` (``--netG local``).

    The input is average-pooled (``AvgPool2d(3, 2, 1, count_include_pad=False)``) once per
    enhancer; the global part (:func:`global_part` with ``ngf * 2**n_local_enhancers`` filters,
    the nested model ``global``, whose layers are named as a ``--netG global`` generator's so that
    a trained one loads into it) runs on the coarsest input. Each enhancer ``n`` (``local{n}_``
    layers, ``f = ngf * 2**(n_local_enhancers - n)`` filters) encodes its level of the pyramid
    (reflection pad 3, 7x7 conv to ``f``, norm, ReLU, 3x3 stride-2 conv to ``2f``, norm, ReLU),
    **adds** the coarser output, and runs ``n_blocks_local`` ResNet blocks, a transposed conv
    (PyTorch's ``padding=1, output_padding=1``) to ``f``, norm and ReLU; the last one ends in
    reflection pad 3, a 7x7 conv to ``output_nc`` and tanh. For 36 -> 3 channels with the
    reference's defaults (ngf 32, 4 downsamplings, 9 + 3 blocks, one enhancer) 182,857,059
    parameters.

    Returns:
      A functional ``keras.Model``; H and W must be multiples of
      ``2 ** (n_downsample_global + n_local_enhancers)``.
    """
    bias = use_bias(norm)
    inputs = keras.Input(shape=(None, None, input_nc), name="input")
    pyramid = [inputs]
    for i in range(n_local_enhancers):
        pyramid.append(AvgPoolExclusive(name=f"input_down{i + 1}")(pyramid[-1]))
    x = global_part(input_nc, output_nc, ngf * 2 ** n_local_enhancers, n_downsample_global,
                    n_blocks_global, norm, gain, init_type)(pyramid[-1])
    for n in range(1, n_local_enhancers + 1):
        f, p = ngf * 2 ** (n_local_enhancers - n), f"local{n}_"
        y = ReflectionPad2D(3, name=p + "stem_pad")(pyramid[n_local_enhancers - n])
        y = conv(f, 7, 1, bias, gain, p + "stem_conv", init_type=init_type)(y)
        y = norm_layer(norm, gain, name=p + "stem_norm")(y)
        y = keras.layers.ReLU(name=p + "stem_relu")(y)
        y = keras.layers.ZeroPadding2D(1, name=p + "down_pad")(y)
        y = conv(2 * f, 3, 2, bias, gain, p + "down_conv", init_type=init_type)(y)
        y = norm_layer(norm, gain, name=p + "down_norm")(y)
        y = keras.layers.ReLU(name=p + "down_relu")(y)
        x = keras.layers.Add(name=p + "sum")([y, x])
        for b in range(n_blocks_local):
            x = resnet_block(x, 2 * f, f"{p}block{b}", bias, gain, norm, init_type=init_type)
        x = TorchUpConv(f, 3, use_bias=bias, kernel_initializer=conv_init(gain, init_type),
                        name=p + "up_deconv")(x)
        x = norm_layer(norm, gain, name=p + "up_norm")(x)
        x = keras.layers.ReLU(name=p + "up_relu")(x)
    x = ReflectionPad2D(3, name="head_pad")(x)
    x = conv(output_nc, 7, 1, True, gain, "head_conv", init_type=init_type)(x)
    return keras.Model(inputs, output_head(head)(x), name=name)


def finest_enhancer_variables(model: keras.Model, n_local_enhancers: int) -> list:
    """The trainable weights of the finest enhancer (``local{n}_`` layers and the head): what
    the reference trains alone for ``niter_fix_global`` epochs (its parameters whose names start
    with ``model{n_local_enhancers}``)."""
    prefix = f"local{n_local_enhancers}_"
    return [v for layer in model.layers if layer.name.startswith(prefix)
            or layer.name == "head_conv" for v in layer.trainable_weights]
