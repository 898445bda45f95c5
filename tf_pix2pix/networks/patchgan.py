"""The PatchGAN discriminators (``basic``/``n_layers`` and ``pixel``), conditional or not.

pix2pix's discriminators are conditional: they judge the (input, output) pair stacked on channels
and take two inputs. CycleGAN's are unconditional: they judge one image of ``output_nc`` channels.
"""

from __future__ import annotations

import keras

from tf_pix2pix.networks.layers import BlurDownsample, conv, norm_layer, use_bias


def discriminator_layers(netD: str, n_layers_D: int) -> int:
    """Stride-2 layers of the PatchGAN ``netD`` (``basic`` is the 3-layer one)."""
    return 3 if netD == "basic" else n_layers_D


def receptive_field(netD: str, n_layers_D: int, antialias: bool = False) -> int:
    """Side of the input patch each output of the PatchGAN ``netD`` sees (1, 16, 70, 286...)."""
    if netD == "pixel":
        return 1
    # (kernel, stride) from the output back: two stride-1 4x4 convs, then n_layers stride-2
    # 4x4 convs, each antialiased one a stride-1 4x4 conv and a 3x3 stride-2 blur.
    down = [(3, 2), (4, 1)] if antialias else [(4, 2)]
    field = 1
    for kernel, stride in [(4, 1), (4, 1)] + down * discriminator_layers(netD, n_layers_D):
        field = field * stride + (kernel - stride)
    return field


def output_side(netD: str, n_layers_D: int, side: int) -> int:
    """Logits per side of the PatchGAN ``netD`` for an input ``side`` pixels wide (4x4 convs,
    padding 1); 0 or less when the input is too small to give any."""
    if netD == "pixel":
        return side
    for _ in range(discriminator_layers(netD, n_layers_D)):
        side = (side - 2) // 2 + 1
    return side - 2


def _inputs(input_nc: int, output_nc: int, conditional: bool):
    image = keras.Input(shape=(None, None, output_nc), name="image")
    if not conditional:
        return image, image
    cond = keras.Input(shape=(None, None, input_nc), name="condition")
    # Conditional GAN: D judges the (input, output) pair stacked on channels.
    x = keras.layers.Concatenate(name="pair")([cond, image])
    return [cond, image], x


def nlayer_discriminator(input_nc: int = 3, output_nc: int = 3, ndf: int = 64, n_layers: int = 3,
                         norm: str = "batch", gain: float = 0.02, sync_bn: bool = False,
                         conditional: bool = True, antialias: bool = False,
                         init_type: str = "normal",
                         name: str = "discriminator") -> keras.Model:
    """PatchGAN with ``n_layers`` stride-2 4x4 convs; ``n_layers=3`` is the 70x70 ``basic`` D.

    All convs use 4x4 kernels with 1 pixel of zero padding (as the reference), so a 256x256 input
    gives 30x30 logits for ``n_layers=3``. The output is logits (no sigmoid), float32. A
    conditional D is called as ``D([condition, image])``, an unconditional one as ``D(image)``.
    ``antialias`` is CUT's: each stride-2 conv becomes a stride-1 conv whose activation is then
    downsampled by ``layers.BlurDownsample`` (a 256x256 input gives 30x30 logits too).
    """
    bias = use_bias(norm)
    inputs, x = _inputs(input_nc, output_nc, conditional)
    x = keras.layers.ZeroPadding2D(1, name="conv0_pad")(x)
    x = conv(ndf, 4, 1 if antialias else 2, True, gain, "conv0", init_type=init_type)(x)
    x = keras.layers.LeakyReLU(0.2, name="conv0_lrelu")(x)
    if antialias:
        x = BlurDownsample(name="conv0_blur")(x)
    for n in range(1, n_layers + 1):
        stride = 2 if n < n_layers and not antialias else 1
        x = keras.layers.ZeroPadding2D(1, name=f"conv{n}_pad")(x)
        x = conv(ndf * min(2 ** n, 8), 4, stride, bias, gain, f"conv{n}", init_type=init_type)(x)
        x = norm_layer(norm, gain, sync_bn, name=f"conv{n}_norm")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"conv{n}_lrelu")(x)
        if antialias and n < n_layers:
            x = BlurDownsample(name=f"conv{n}_blur")(x)
    x = keras.layers.ZeroPadding2D(1, name="logits_pad")(x)
    x = conv(1, 4, 1, True, gain, "logits", init_type=init_type)(x)
    outputs = keras.layers.Activation("linear", name="logits_f32", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def pixel_discriminator(input_nc: int = 3, output_nc: int = 3, ndf: int = 64,
                        norm: str = "batch", gain: float = 0.02, sync_bn: bool = False,
                        conditional: bool = True, init_type: str = "normal",
                        name: str = "discriminator") -> keras.Model:
    """1x1 PixelGAN: classifies every pixel; output has the input's height and width."""
    inputs, x = _inputs(input_nc, output_nc, conditional)
    x = conv(ndf, 1, 1, True, gain, "conv0", init_type=init_type)(x)
    x = keras.layers.LeakyReLU(0.2, name="conv0_lrelu")(x)
    x = conv(ndf * 2, 1, 1, use_bias(norm), gain, "conv1", init_type=init_type)(x)
    x = norm_layer(norm, gain, sync_bn, name="conv1_norm")(x)
    x = keras.layers.LeakyReLU(0.2, name="conv1_lrelu")(x)
    x = conv(1, 1, 1, use_bias(norm), gain, "logits", init_type=init_type)(x)
    outputs = keras.layers.Activation("linear", name="logits_f32", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
