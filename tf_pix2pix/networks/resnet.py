"""The ResNet generator (``resnet_9blocks``, ``resnet_6blocks``) of the reference."""

from __future__ import annotations

import keras

from tf_pix2pix.networks.layers import (Dropout, ReflectionPad2D, TorchUpConv, conv, conv_init,
                                        norm_layer, upsample, use_bias)


def resnet_generator(input_nc: int = 3, output_nc: int = 3, n_blocks: int = 9, ngf: int = 64,
                     norm: str = "batch", use_dropout: bool = True, gain: float = 0.02,
                     sync_bn: bool = False, upsample_mode: str = "transpose",
                     name: str = "generator") -> keras.Model:
    """ResNet generator: 7x7 stem, two stride-2 downsamplings, ``n_blocks`` residual blocks with
    reflection padding, two stride-2 transposed convs and a 7x7 tanh head.

    The transposed convs are PyTorch's ``ConvTranspose2d(3, stride=2, padding=1,
    output_padding=1)`` (:class:`TorchUpConv`), so the function is the reference's, pixel for
    pixel; ``upsample_mode="resize_conv"`` replaces them (see ``layers.upsample``).

    Returns:
      A functional ``keras.Model``; H and W must be multiples of 4.
    """
    bias = use_bias(norm)
    inputs = keras.Input(shape=(None, None, input_nc), name="input")
    x = ReflectionPad2D(3, name="stem_pad")(inputs)
    x = conv(ngf, 7, 1, bias, gain, "stem_conv")(x)
    x = norm_layer(norm, gain, sync_bn, name="stem_norm")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i in range(2):
        # PyTorch pads 1 on every side for a 3x3 stride-2 conv; Keras "same" would pad 0/1.
        x = keras.layers.ZeroPadding2D(1, name=f"down{i}_pad")(x)
        x = conv(ngf * 2 ** (i + 1), 3, 2, bias, gain, f"down{i}_conv")(x)
        x = norm_layer(norm, gain, sync_bn, name=f"down{i}_norm")(x)
        x = keras.layers.ReLU(name=f"down{i}_relu")(x)
    dim = ngf * 4
    for b in range(n_blocks):
        y = ReflectionPad2D(1, name=f"block{b}_pad1")(x)
        y = conv(dim, 3, 1, bias, gain, f"block{b}_conv1")(y)
        y = norm_layer(norm, gain, sync_bn, name=f"block{b}_norm1")(y)
        y = keras.layers.ReLU(name=f"block{b}_relu")(y)
        if use_dropout:
            y = Dropout(0.5, name=f"block{b}_dropout")(y)
        y = ReflectionPad2D(1, name=f"block{b}_pad2")(y)
        y = conv(dim, 3, 1, bias, gain, f"block{b}_conv2")(y)
        y = norm_layer(norm, gain, sync_bn, name=f"block{b}_norm2")(y)
        x = keras.layers.Add(name=f"block{b}_add")([x, y])
    for i in range(2):
        filters = ngf * 2 ** (1 - i)
        deconv = TorchUpConv(filters, 3, use_bias=bias, kernel_initializer=conv_init(gain),
                             name=f"up{i}_deconv")
        x = upsample(x, filters, upsample_mode, deconv, bias, gain, f"up{i}_deconv")
        x = norm_layer(norm, gain, sync_bn, name=f"up{i}_norm")(x)
        x = keras.layers.ReLU(name=f"up{i}_relu")(x)
    x = ReflectionPad2D(3, name="head_pad")(x)
    x = conv(output_nc, 7, 1, True, gain, "head_conv")(x)
    outputs = keras.layers.Activation("tanh", name="tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
