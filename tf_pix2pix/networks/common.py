"""Normalisation, initialisation and padding helpers shared by the network builders."""

from __future__ import annotations

import keras


def conv_init(gain: float = 0.02) -> keras.initializers.Initializer:
    """The reference's ``normal`` init: conv weights drawn from N(0, gain)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=gain)


def use_bias(norm: str) -> bool:
    """Convs feeding batch norm have no bias (its beta shifts); instance norm has no affine."""
    return norm != "batch"


def norm_layer(norm: str, gain: float = 0.02, synchronized: bool = False,
               name: str | None = None) -> keras.layers.Layer:
    """Batch norm (PyTorch momentum/epsilon), affine-free instance norm, or identity.

    Args:
      norm: ``batch``, ``instance`` or ``none``.
      gain: standard deviation of batch norm's gamma init around 1, as in the reference.
      synchronized: use cross-replica batch statistics (for more than one replica).
      name: layer name.
    """
    if norm == "batch":
        return keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, synchronized=synchronized,
            gamma_initializer=keras.initializers.RandomNormal(1.0, gain),
            beta_initializer="zeros", name=name)
    if norm == "instance":
        # PyTorch's InstanceNorm2d default: no affine parameters, no running statistics.
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False,
                                               scale=False, name=name)
    if norm == "none":
        return keras.layers.Identity(name=name)
    raise ValueError(f"unknown norm {norm!r}")


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class ReflectionPad2D(keras.layers.Layer):
    """Pads height and width by ``padding`` pixels, mirroring without repeating the edge."""

    def __init__(self, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def conv(filters: int, kernel: int, stride: int, bias: bool, gain: float, name: str,
         padding: str = "valid") -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                               kernel_initializer=conv_init(gain), bias_initializer="zeros",
                               name=name)
