"""Normalisation moments that do not drift with the image size.

PyTorch's CPU ``InstanceNorm2d`` and ``BatchNorm2d`` (the references') accumulate float32 inputs
in float64, so their statistics are exact to float32 rounding at every size. TensorFlow's
``FusedBatchNormV3`` (oneDNN on CPU) and ``tf.reduce_sum`` over the spatial axes of an NHWC tensor
accumulate in float32, one value after another: the error grows with the pixel count, and on the
piecewise-constant planes a one-hot label map makes it grow with mean^2 / variance too (a 16-plane
instance norm at 1024x2048 was 1.3e-3 away from float64 on random inputs and 5e-2 on label-like
ones; README, faithfulness notes).

Here every sum over space (and batch) is *blocked*: the axis is cut into blocks of at most
:data:`BLOCK` values, each block summed, then the block sums blocked again, so no float32
accumulator adds more than :data:`BLOCK` terms (a pairwise summation with a wide leaf; error
O(BLOCK * log_BLOCK(n) * eps) instead of O(n * eps)). Variances are two-pass (the mean, then the
mean of the centred squares), so there is no cancellation whatever the mean. The normalisations
have hand-written gradients whose sums are blocked the same way, so the backward pass is as exact
as the forward; both run in float32 whatever the activation dtype (as Keras's own normalisation
layers keep their statistics under mixed precision).

They are plain TensorFlow ops (no fused kernel), so the same code path serves training, SavedModel
exports, TFLite and ONNX. Their speed against the fused kernel: BENCHMARKS.md.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

BLOCK = 64


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) else None


def blocked_sum(x: tf.Tensor) -> tf.Tensor:
    """Sum of ``x`` of shape ``[outer, length, inner]`` over its middle axis, blocked.

    Returns ``[outer, inner]``. With a static length the levels are planned in Python (the
    largest block of 16..:data:`BLOCK` values that divides the length, else zero padding to a
    multiple of :data:`BLOCK`); with a dynamic one (exports with free image sizes) every level
    pads to a multiple of :data:`BLOCK` (zeros leave a sum unchanged), for up to four levels
    (``BLOCK**4`` = 16.7M values) and a last plain sum.
    """
    length = _static(x.shape[1])
    if length is None:
        for _ in range(4):
            shape = tf.shape(x)
            # (BLOCK - n % BLOCK) % BLOCK, not (-n) % BLOCK: a negative operand's modulo is
            # floored in TensorFlow but truncated by converters' Mod (ONNX), a negative pad.
            pad = (BLOCK - shape[1] % BLOCK) % BLOCK
            x = tf.pad(x, [[0, 0], [0, pad], [0, 0]])
            x = tf.reduce_sum(tf.reshape(x, [shape[0], -1, BLOCK, shape[2]]), axis=2)
        return tf.reduce_sum(x, axis=1)
    while length > BLOCK:
        block = next((b for b in range(BLOCK, 15, -1) if length % b == 0), None)
        if block is None:
            block, pad = BLOCK, (-length) % BLOCK
            x = tf.pad(x, [[0, 0], [0, pad], [0, 0]])
            length += pad
        outer = _static(x.shape[0])
        inner = _static(x.shape[2])
        shape = [outer if outer is not None else tf.shape(x)[0], length // block, block,
                 inner if inner is not None else tf.shape(x)[2]]
        x = tf.reduce_sum(tf.reshape(x, shape), axis=2)
        length //= block
    return tf.reduce_sum(x, axis=1)


def _as_3d(x: tf.Tensor, batch: bool) -> tf.Tensor:
    """NHWC as ``[N, H*W, C]`` (per image) or ``[1, N*H*W, C]`` (over the batch); no copy."""
    c = _static(x.shape[3])
    c = c if c is not None else tf.shape(x)[3]
    if batch:
        return tf.reshape(x, [1, -1, c])
    n = _static(x.shape[0])
    return tf.reshape(x, [n if n is not None else tf.shape(x)[0], -1, c])


def sum_nhwc(x: tf.Tensor, batch: bool = False) -> tf.Tensor:
    """Blocked sum of NHWC ``x`` over space (``[N, C]``) or over batch and space (``[C]``)."""
    total = blocked_sum(_as_3d(x, batch))
    return total[0] if batch else total


def _count(x: tf.Tensor, batch: bool) -> tf.Tensor:
    shape = tf.shape(x)
    count = shape[1] * shape[2] * (shape[0] if batch else 1)
    return tf.cast(count, tf.float32)


def _mean(x: tf.Tensor, batch: bool, count: tf.Tensor) -> tf.Tensor:
    """Blocked mean over space (and batch), shaped to broadcast against NHWC ``x``."""
    s = blocked_sum(_as_3d(x, batch)) / count
    return s[:, None, None]  # [N or 1, 1, 1, C]


def moments(x: tf.Tensor, batch: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and biased variance of NHWC ``x`` (in float32) over space, per image and channel, or
    over batch and space (``batch=True``, batch norm's statistics); shaped to broadcast."""
    x = tf.cast(x, tf.float32)
    count = _count(x, batch)
    mean = _mean(x, batch, count)
    centred = x - mean
    return mean, _mean(tf.square(centred), batch, count)


def normalize(x: tf.Tensor, epsilon: float, batch: bool = False,
              scale: tf.Tensor | None = None, offset: tf.Tensor | None = None,
              ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(x - mean) / sqrt(var + epsilon) * scale + offset`` with blocked moments and gradients.

    Args:
      x: NHWC activations (any float dtype; computed in float32, returned in ``x``'s dtype).
      epsilon: added to the biased variance, as PyTorch does.
      batch: statistics over batch and space (batch norm) instead of per image (instance norm).
      scale, offset: per-channel affine parameters (batch norm's gamma and beta), or None.

    Returns:
      The output and the (mean, biased variance) used, float32, shaped ``[C]`` for
      ``batch=True`` and ``[N, 1, 1, C]`` otherwise; the statistics carry no gradient.
    """
    dtype = x.dtype
    affine = scale is not None

    @tf.custom_gradient
    def forward(x, *params):
        x32 = tf.cast(x, tf.float32)
        count = _count(x32, batch)
        mean = _mean(x32, batch, count)
        centred = x32 - mean
        variance = _mean(tf.square(centred), batch, count)
        rstd = tf.math.rsqrt(variance + epsilon)
        normalised = centred * rstd
        if affine:
            gamma, beta = (tf.cast(p, tf.float32) for p in params)
            out = normalised * gamma + beta
        else:
            out = normalised

        def grad(upstream, *_):  # the statistics' upstream gradients are zero
            g = tf.cast(upstream, tf.float32)
            grads = []
            if affine:
                d_beta = blocked_sum(_as_3d(g, True))[0]
                d_gamma = blocked_sum(_as_3d(g * normalised, True))[0]
                g = g * gamma
            # d/dx of (x - mean) * rstd: rstd * (g - mean(g) - x_hat * mean(g * x_hat)).
            g_mean = _mean(g, batch, count)
            gx_mean = _mean(g * normalised, batch, count)
            dx = rstd * (g - g_mean - normalised * gx_mean)
            if affine:
                grads = [tf.cast(d_gamma, params[0].dtype), tf.cast(d_beta, params[1].dtype)]
            return [tf.cast(dx, dtype)] + grads

        return (tf.cast(out, dtype), tf.stop_gradient(mean), tf.stop_gradient(variance)), grad

    params: Sequence[tf.Tensor] = (scale, offset) if affine else ()
    out, mean, variance = forward(x, *params)
    if batch:
        mean, variance = tf.reshape(mean, [-1]), tf.reshape(variance, [-1])
    return out, mean, variance
