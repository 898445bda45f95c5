"""Normalisation, initialisation and padding helpers shared by the network builders."""

from __future__ import annotations

import keras
import tensorflow as tf


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
        return BatchNorm(
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
class BatchNorm(keras.layers.BatchNormalization):
    """``BatchNormalization`` with PyTorch's running variance and TensorFlow's fused kernel.

    PyTorch's ``BatchNorm2d`` (the reference) normalises with the biased batch variance but
    updates ``running_var`` with the unbiased one (Bessel's correction, ``n / (n - 1)``); Keras
    updates it with the biased one, which makes eval-mode outputs drift from the reference where
    ``n`` is small (the U-Net's 2x2 and 4x4 levels at batch size 1). Here the running variance is
    the reference's. On 4-D channels-last inputs the batch statistics, normalisation and gradient
    come from ``FusedBatchNormV3`` in the input's own dtype (about twice as fast on CPU as the
    Keras composite, with no float32 round trip under mixed precision); the synchronized
    (multi-replica) version uses Keras's cross-replica moments with the same correction.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (mask is None and not self.renorm and len(inputs.shape) == 4
                   and self.axis in (-1, 3) and self.scale and self.center)
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                is_training=False)
            return tf.cast(outputs, self.compute_dtype)
        if self.synchronized:
            x = tf.cast(inputs, tf.float32)
            mean, variance = self._moments(x, None)
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            context = tf.distribute.get_replica_context()
            if context is not None:
                count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
            outputs = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        else:
            # Training mode returns the batch mean and the unbiased batch variance.
            outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(
            self.moving_variance * m + tf.stop_gradient(unbiased) * (1.0 - m))
        return tf.cast(outputs, self.compute_dtype)


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


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class UpConv(keras.layers.Conv2DTranspose):
    """A 4x4 stride-2 "same" ``Conv2DTranspose`` with a faster path for tiny inputs.

    At the U-Net's bottleneck (inputs of 1x1 to 8x8 with 512-1024 channels) the oneDNN transposed
    convolution is several times slower than the same arithmetic written as one matmul,
    ``[N*H*W, Cin] @ [Cin, 16*Cout]``, followed by the overlap-add of the 16 kernel taps. The two
    paths compute the same function with the same weights (tested); which one runs is decided per
    call from the input size, so any image size still works.
    """

    MATMUL_MAX_PIXELS = 64

    def call(self, inputs):
        h, w = inputs.shape[1], inputs.shape[2]
        if h is not None and w is not None:  # static sizes (training): no branch in the graph
            out = self._matmul_path(inputs) if h * w <= self.MATMUL_MAX_PIXELS else (
                self._conv_path(inputs))
        else:
            shape = tf.shape(inputs)
            out = tf.cond(shape[1] * shape[2] <= self.MATMUL_MAX_PIXELS,
                          lambda: self._matmul_path(inputs), lambda: self._conv_path(inputs))
        return out + self.bias if self.use_bias else out

    def _conv_path(self, inputs):
        return keras.ops.conv_transpose(
            inputs, self.kernel, strides=self.strides, padding=self.padding,
            output_padding=self.output_padding, data_format=self.data_format,
            dilation_rate=self.dilation_rate)

    def _matmul_path(self, inputs):
        kh, kw, cout, cin = self.kernel.shape
        shape = tf.shape(inputs)
        n, h, w = shape[0], shape[1], shape[2]
        # (kh, kw, Cout, Cin) reshaped to [kh*kw*Cout, Cin] and used transposed by the matmul
        # itself: no copy of the (up to 33 MB) kernel is made.
        kernel = tf.reshape(self.kernel, [kh * kw * cout, cin])
        cols = tf.reshape(tf.matmul(tf.reshape(inputs, [-1, cin]), kernel, transpose_b=True),
                          [n, h, w, kh, kw, cout])
        # Output row 2m + b receives tap ky = 2a + b from input row m - a (a, b in {0, 1}).
        phases = []
        for by in range(2):
            row = []
            for bx in range(2):
                total = 0.0
                for ay in range(2):
                    for ax in range(2):
                        tap = cols[:, :, :, 2 * ay + by, 2 * ax + bx, :]
                        total += tf.pad(tap, [[0, 0], [ay, 1 - ay], [ax, 1 - ax], [0, 0]])
                row.append(total)
            phases.append(tf.stack(row, axis=3))
        full = tf.reshape(tf.stack(phases, axis=2), [n, 2 * h + 2, 2 * w + 2, cout])
        # "same" padding of a 4x4 stride-2 transposed conv crops one pixel on each side.
        return full[:, 1:2 * h + 1, 1:2 * w + 1, :]
