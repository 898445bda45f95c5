"""The ResNet generator (``resnet_9blocks``, ``resnet_6blocks``) of the reference, and CUT's
antialiased variant of it."""

from __future__ import annotations

import keras

from tf_pix2pix.networks.layers import (BlurDownsample, Dropout, ReflectionPad2D, TorchUpConv,
                                        bilinear_upsample, conv, conv_init, norm_layer,
                                        output_head, upsample, use_bias)


def resnet_generator(input_nc: int = 3, output_nc: int = 3, n_blocks: int = 9, ngf: int = 64,
                     norm: str = "batch", use_dropout: bool = True, gain: float = 0.02,
                     sync_bn: bool = False, upsample_mode: str = "transpose",
                     antialias: bool = False, antialias_up: bool = False,
                     init_type: str = "normal", n_downsampling: int = 2,
                     name: str = "generator", head: str = "tanh") -> keras.Model:
    """ResNet generator: 7x7 stem, ``n_downsampling`` stride-2 downsamplings, ``n_blocks``
    residual blocks with reflection padding, as many stride-2 transposed convs and a 7x7 tanh head.

    With ``n_downsampling=4``, ``norm="instance"`` and no dropout it is pix2pixHD's
    ``GlobalGenerator`` (NVIDIA/pix2pixHD ``networks.py``): the same layers (every conv with a
    bias under instance norm), 64 -> 1,024 channels.

    The transposed convs are PyTorch's ``ConvTranspose2d(3, stride=2, padding=1,
    output_padding=1)`` (:class:`TorchUpConv`), so the function is the reference's, pixel for
    pixel; ``upsample_mode="resize_conv"`` replaces them (see ``layers.upsample``).

    CUT's generator (taesungp/contrastive-unpaired-translation) differs in two switches:
    ``antialias`` makes each downsampling a stride-1 3x3 conv, norm, ReLU and
    :class:`BlurDownsample`; ``antialias_up`` makes each upsampling a bilinear x2
    (``layers.bilinear_upsample``) followed by a zero-padded 3x3 conv. Neither adds weights.

    ``head`` is the output activation: ``tanh`` (images) or ``logits`` (class scores).

    Returns:
      A functional ``keras.Model``; H and W must be multiples of ``2 ** n_downsampling``. Its
      layers are named so that :func:`resnet_module_names` finds the outputs of the reference's
      module list.
    """
    bias = use_bias(norm)
    inputs = keras.Input(shape=(None, None, input_nc), name="input")
    x = ReflectionPad2D(3, name="stem_pad")(inputs)
    x = conv(ngf, 7, 1, bias, gain, "stem_conv", init_type=init_type)(x)
    x = norm_layer(norm, gain, sync_bn, name="stem_norm")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i in range(n_downsampling):
        # PyTorch pads 1 on every side for a 3x3 stride-2 conv; Keras "same" would pad 0/1.
        x = keras.layers.ZeroPadding2D(1, name=f"down{i}_pad")(x)
        x = conv(ngf * 2 ** (i + 1), 3, 1 if antialias else 2, bias, gain, f"down{i}_conv",
                 init_type=init_type)(x)
        x = norm_layer(norm, gain, sync_bn, name=f"down{i}_norm")(x)
        x = keras.layers.ReLU(name=f"down{i}_relu")(x)
        if antialias:
            x = BlurDownsample(name=f"down{i}_blur")(x)
    dim = ngf * 2 ** n_downsampling
    for b in range(n_blocks):
        x = resnet_block(x, dim, f"block{b}", bias, gain, norm, sync_bn, use_dropout, init_type)
    for i in range(n_downsampling):
        filters = ngf * 2 ** (n_downsampling - 1 - i)
        if antialias_up:
            x = bilinear_upsample(f"up{i}_upsample")(x)
            x = keras.layers.ZeroPadding2D(1, name=f"up{i}_pad")(x)
            x = conv(filters, 3, 1, bias, gain, f"up{i}_deconv", init_type=init_type)(x)
        else:
            deconv = TorchUpConv(filters, 3, use_bias=bias,
                                 kernel_initializer=conv_init(gain, init_type),
                                 name=f"up{i}_deconv")
            x = upsample(x, filters, upsample_mode, deconv, bias, gain, f"up{i}_deconv",
                         init_type)
        x = norm_layer(norm, gain, sync_bn, name=f"up{i}_norm")(x)
        x = keras.layers.ReLU(name=f"up{i}_relu")(x)
    x = ReflectionPad2D(3, name="head_pad")(x)
    x = conv(output_nc, 7, 1, True, gain, "head_conv", init_type=init_type)(x)
    outputs = output_head(head)(x)
    return keras.Model(inputs, outputs, name=name)


def resnet_block(x, dim: int, prefix: str, bias: bool, gain: float, norm: str,
                 sync_bn: bool = False, use_dropout: bool = False, init_type: str = "normal"):
    """The reference's ``ResnetBlock`` on ``x``: ``x + (reflection pad 1, 3x3 conv, norm, ReLU,
    [dropout 0.5], reflection pad 1, 3x3 conv, norm)(x)``, no activation after the sum; layers
    named ``{prefix}_conv1`` ... ``{prefix}_add``."""
    y = ReflectionPad2D(1, name=f"{prefix}_pad1")(x)
    y = conv(dim, 3, 1, bias, gain, f"{prefix}_conv1", init_type=init_type)(y)
    y = norm_layer(norm, gain, sync_bn, name=f"{prefix}_norm1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu")(y)
    if use_dropout:
        y = Dropout(0.5, name=f"{prefix}_dropout")(y)
    y = ReflectionPad2D(1, name=f"{prefix}_pad2")(y)
    y = conv(dim, 3, 1, bias, gain, f"{prefix}_conv2", init_type=init_type)(y)
    y = norm_layer(norm, gain, sync_bn, name=f"{prefix}_norm2")(y)
    return keras.layers.Add(name=f"{prefix}_add")([x, y])


def resnet_module_names(n_blocks: int, antialias: bool = False,
                        antialias_up: bool = False) -> list[str]:
    """The names of the layers of :func:`resnet_generator` whose outputs are the outputs of the
    reference's ``ResnetGenerator.model`` modules, by module index.

    CUT's ``--nce_layers`` count in that list (with antialiasing, 0 is the reflection-padded
    input, 4 and 8 the downsampling convs before their norms, 12 the first ResNet block, 16 the
    fifth). A zero-padded conv is one module in PyTorch, so its index maps to the conv.
    """
    names = ["stem_pad", "stem_conv", "stem_norm", "stem_relu"]
    for i in range(2):
        names += [f"down{i}_conv", f"down{i}_norm", f"down{i}_relu"]
        if antialias:
            names.append(f"down{i}_blur")
    names += [f"block{b}_add" for b in range(n_blocks)]
    for i in range(2):
        if antialias_up:
            names.append(f"up{i}_upsample")
        names += [f"up{i}_deconv", f"up{i}_norm", f"up{i}_relu"]
    return names + ["head_pad", "head_conv", "tanh"]
