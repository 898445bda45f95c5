"""The pix2pix U-Net generator (``unet_256``, ``unet_128``), as the reference builds it."""

from __future__ import annotations

import keras

from tf_pix2pix.networks.kernels import UpConv
from tf_pix2pix.networks.layers import (Dropout, conv, conv_init, norm_layer, output_head,
                                        upsample, use_bias)


def unet_generator(input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                   norm: str = "batch", use_dropout: bool = True, gain: float = 0.02,
                   sync_bn: bool = False, upsample_mode: str = "transpose",
                   skips: bool = True, init_type: str = "normal",
                   name: str = "generator", head: str = "tanh") -> keras.Model:
    """U-Net with ``num_downs`` 4x4 stride-2 downsamplings and mirrored skip connections.

    Encoder: conv (no norm) then ``LeakyReLU(0.2) -> conv -> norm`` blocks with ngf, 2ngf, 4ngf and
    then 8ngf channels; the innermost conv has no norm. Decoder: ``ReLU -> Conv2DTranspose ->
    norm`` with dropout 0.5 on the three blocks after the innermost one, ``ReLU -> transpose conv
    -> tanh`` at the top. Each skip concatenates the activated encoder features, which is what the
    reference's in-place LeakyReLU produces.

    Args:
      input_nc: input channels.
      output_nc: output channels.
      num_downs: 8 for 256x256 inputs (1x1 bottleneck), 7 for 128x128.
      ngf: filters of the first conv.
      norm: ``batch``, ``instance`` or ``none``.
      use_dropout: dropout 0.5 in the decoder (the pix2pix default).
      gain: standard deviation of the N(0, gain) weight init.
      sync_bn: synchronise batch statistics across replicas.
      upsample_mode: ``transpose`` (the reference's 4x4 transposed convs) or ``resize_conv``
        (nearest x2 + reflection-padded 3x3 conv, against checkerboard artifacts).
      skips: the U-Net's skip connections; False gives the paper's encoder-decoder ablation
        (the same layers, each decoder block seeing only the block below it).
      init_type: ``normal`` or ``xavier`` (``layers.conv_init``).
      name: model name.
      head: the output activation: ``tanh`` (images) or ``logits`` (none: class scores of a
        segmenter).

    Returns:
      A functional ``keras.Model`` mapping ``[N, H, W, input_nc]`` in [-1, 1] to
      ``[N, H, W, output_nc]`` in [-1, 1]; H and W must be multiples of ``2**num_downs``.
    """
    if num_downs < 5:
        raise ValueError(f"num_downs={num_downs}: the U-Net needs at least 5 downsamplings")
    bias = use_bias(norm)
    # Filters of each encoder level: ngf, 2ngf, 4ngf, 8ngf, ..., 8ngf.
    filters = [ngf * min(2 ** i, 8) for i in range(num_downs)]
    inputs = keras.Input(shape=(None, None, input_nc), name="input")

    x = conv(filters[0], 4, 2, bias, gain, "down0_conv", padding="same",
             init_type=init_type)(inputs)
    features = []
    for i in range(1, num_downs):
        x = keras.layers.LeakyReLU(0.2, name=f"down{i}_lrelu")(x)
        features.append(x)
        innermost = i == num_downs - 1
        # The innermost conv has no norm; like the reference it still has no bias under batch norm.
        x = conv(filters[i], 4, 2, bias, gain, f"down{i}_conv", padding="same",
                 init_type=init_type)(x)
        if not innermost:
            x = norm_layer(norm, gain, sync_bn, name=f"down{i}_norm")(x)

    for i in range(num_downs - 1, 0, -1):
        x = keras.layers.ReLU(name=f"up{i}_relu")(x)
        deconv = UpConv(filters[i - 1], 4, strides=2, padding="same", use_bias=bias,
                        kernel_initializer=conv_init(gain, init_type), name=f"up{i}_deconv")
        x = upsample(x, filters[i - 1], upsample_mode, deconv, bias, gain, f"up{i}_deconv",
                         init_type)
        x = norm_layer(norm, gain, sync_bn, name=f"up{i}_norm")(x)
        # Dropout sits on the num_downs - 5 blocks between the 8ngf level and the innermost one.
        if use_dropout and 4 <= i <= num_downs - 2:
            x = Dropout(0.5, name=f"up{i}_dropout")(x)
        if skips:
            x = keras.layers.Concatenate(name=f"up{i}_skip")([features[i - 1], x])

    x = keras.layers.ReLU(name="up0_relu")(x)
    deconv = keras.layers.Conv2DTranspose(output_nc, 4, strides=2, padding="same", use_bias=True,
                                          kernel_initializer=conv_init(gain, init_type),
                                          name="up0_deconv")
    x = upsample(x, output_nc, upsample_mode, deconv, True, gain, "up0_deconv", init_type)
    outputs = output_head(head)(x)
    return keras.Model(inputs, outputs, name=name)
