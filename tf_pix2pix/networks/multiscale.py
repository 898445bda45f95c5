"""pix2pixHD's multi-scale discriminator (NVIDIA/pix2pixHD ``networks.py``,
``MultiscaleDiscriminator`` and its ``NLayerDiscriminator``).

``num_D`` PatchGANs judge the (condition, image) pair at full size, at half size, at a quarter
and so on; between scales the pair is average-pooled by :class:`AvgPoolExclusive`. Unlike the
pix2pix reference's PatchGAN, every conv pads 2 pixels (``ceil((4 - 1) / 2)``), every conv has a
bias, channels stop growing at 512, and every layer's activation is an output
(``getIntermFeat``): the last is the logits, the others are compared by the feature-matching
loss.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tf_pix2pix.networks.layers import conv, norm_layer


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class AvgPoolExclusive(keras.layers.Layer):
    """PyTorch's ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``: each output is
    the mean of the input pixels of its 3x3 window that lie inside the image (the window of
    output ``i`` covers rows ``2i - 1 .. 2i + 1``). TensorFlow's ``SAME`` pooling places its
    windows at ``2i .. 2i + 2`` for even sizes, so the padding is explicit here and the count is
    the pooled mask of real pixels. ``H -> (H - 1) // 2 + 1``."""

    def call(self, x):
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
        x = tf.cast(x, tf.float32)
        total = tf.nn.avg_pool2d(tf.pad(x, pad), 3, 2, "VALID")
        inside = tf.nn.avg_pool2d(tf.pad(tf.ones_like(x[..., :1]), pad), 3, 2, "VALID")
        return tf.cast(total / inside, self.compute_dtype)

    def compute_output_shape(self, shape):
        half = lambda d: None if d is None else (d - 1) // 2 + 1  # noqa: E731
        return (shape[0], half(shape[1]), half(shape[2]), shape[3])


def hd_patchgan(channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                gain: float = 0.02, init_type: str = "normal",
                name: str = "scale") -> keras.Model:
    """One scale: ``n_layers`` stride-2 and one stride-1 4x4 conv, each with norm (from the
    second) and LeakyReLU 0.2, then a 4x4 conv to one channel; all zero-padded by 2, all with a
    bias. Returns a model whose ``n_layers + 2`` outputs are every layer's activation (float32),
    the logits last. A 64x64 input gives 33, 17, 9, 10 and 11 pixels."""
    inputs = keras.Input(shape=(None, None, channels), name="pair")
    x, outputs, nf = inputs, [], ndf
    for n in range(n_layers + 1):
        nf = ndf if n == 0 else min(nf * 2, 512)
        x = keras.layers.ZeroPadding2D(2, name=f"conv{n}_pad")(x)
        x = conv(nf, 4, 2 if n < n_layers else 1, True, gain, f"conv{n}", init_type=init_type)(x)
        if n > 0:
            x = norm_layer(norm, gain, name=f"conv{n}_norm")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"conv{n}_lrelu")(x)
        outputs.append(keras.layers.Activation("linear", dtype="float32",
                                               name=f"feature{n}")(x))
    x = keras.layers.ZeroPadding2D(2, name="logits_pad")(x)
    x = conv(1, 4, 1, True, gain, "logits", init_type=init_type)(x)
    outputs.append(keras.layers.Activation("linear", dtype="float32", name="logits_f32")(x))
    return keras.Model(inputs, outputs, name=name)


def scale_outputs(outputs: Any) -> list[list[Any]]:
    """A :func:`multiscale_discriminator`'s outputs as one list per scale. Keras unwraps a model
    output list of one element, so with ``num_D`` 1 the call returns the scale's own list of
    layer outputs, which the losses would take for that many scales."""
    if outputs and not isinstance(outputs[0], (list, tuple)):
        return [list(outputs)]
    return [list(scale) for scale in outputs]


def multiscale_discriminator(input_nc: int, output_nc: int, ndf: int = 64, n_layers: int = 3,
                             num_D: int = 2, norm: str = "instance", gain: float = 0.02,
                             init_type: str = "normal",
                             name: str = "discriminator") -> keras.Model:
    """pix2pixHD's discriminator of ``[condition, image]`` pairs.

    Called as ``D([condition, image])``; returns a list of ``num_D`` lists (full size first),
    each the ``n_layers + 2`` outputs of :func:`hd_patchgan` (logits last). Parameters for a
    39-channel pair (35 labels + edge + RGB) and the defaults: 2,801,601 per scale.
    """
    cond = keras.Input(shape=(None, None, input_nc), name="condition")
    image = keras.Input(shape=(None, None, output_nc), name="image")
    x = keras.layers.Concatenate(name="pair")([cond, image])
    results = []
    for i in range(num_D):
        if i:
            x = AvgPoolExclusive(name=f"downsample{i}")(x)
        scale = hd_patchgan(input_nc + output_nc, ndf, n_layers, norm, gain, init_type,
                            name=f"scale{i}")
        results.append(list(scale(x)))
    return keras.Model([cond, image], results, name=name)
