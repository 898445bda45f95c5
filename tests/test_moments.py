"""Blocked moments and normalisations against float64 computations, at the sizes users train."""

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix.networks import moments

EPS = 1e-5


def _reference(x, g=None, batch=False):
    """PyTorch's InstanceNorm2d / BatchNorm2d (training) in float64: output and input gradient."""
    x = x.astype(np.float64)
    axes = (0, 1, 2) if batch else (1, 2)
    mean = x.mean(axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + EPS)
    y = (x - mean) * rstd
    if g is None:
        return y, None
    g = g.astype(np.float64)
    dx = rstd * (g - g.mean(axes, keepdims=True) - y * (g * y).mean(axes, keepdims=True))
    return y, dx


def _label_like(h, w, c, seed=0):
    """What pix2pixHD's generator sees after its stem: a one-hot label map (8 classes in
    rectangles on a background) through a random 3x3 convolution with bias: planes constant
    per region, mean^2 / variance large."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.int32)
    for k in range(1, 8):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        labels[y0:y0 + rng.integers(h // 50, h // 3), x0:x0 + rng.integers(w // 50, w // 3)] = k
    one_hot = tf.one_hot(labels[None], 8)
    kernel = tf.constant(rng.normal(0, 0.02, (3, 3, 8, c)).astype(np.float32))
    bias = tf.constant(rng.normal(0, 0.05, (c,)).astype(np.float32))
    return (tf.nn.conv2d(one_hot, kernel, 1, "SAME") + bias).numpy()


def _random(h, w, c, seed=0):
    return (3.0 + 0.5 * np.random.default_rng(seed).standard_normal((1, h, w, c))).astype(
        np.float32)


def _fused(x):
    ones = tf.ones([x.shape[-1]])
    return tf.compat.v1.nn.fused_batch_norm(x, ones, 0 * ones, epsilon=EPS, is_training=True)[0]


@pytest.mark.parametrize("make", [_random, _label_like], ids=["random", "label_like"])
def test_instance_norm_at_2048x1024_is_within_1e5_of_float64(make):
    x = make(1024, 2048, 8)
    expected, _ = _reference(x)
    out = tf.function(lambda t: moments.normalize(t, EPS)[0])(tf.constant(x)).numpy()
    assert np.abs(out - expected).max() < 1e-5
    # The fused kernel used before is not (the comparison can fail).
    assert np.abs(_fused(tf.constant(x)).numpy() - expected).max() > 1e-4


@pytest.mark.parametrize("batch", [False, True], ids=["instance", "batch"])
def test_gradient_equals_float64_closed_form(batch):
    x = _label_like(256, 512, 4) if not batch else np.concatenate(
        [_random(128, 256, 4, seed=s) for s in (1, 2)])
    g = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    y_ref, dx_ref = _reference(x, g, batch=batch)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = moments.normalize(xt, EPS, batch=batch)[0]
    dx = tape.gradient(y, xt, output_gradients=tf.constant(g)).numpy()
    assert np.abs(y.numpy() - y_ref).max() < 1e-5
    assert np.abs(dx - dx_ref).max() < 1e-5 * np.abs(dx_ref).max()


def test_affine_gradients_equal_tensorflows_autodiff():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(1, 2, (2, 8, 12, 3)).astype(np.float32))
    gamma = tf.constant(rng.normal(1, 0.1, (3,)).astype(np.float32))
    beta = tf.constant(rng.normal(0, 0.1, (3,)).astype(np.float32))
    g = tf.constant(rng.standard_normal((2, 8, 12, 3)).astype(np.float32))

    def plain(x, gamma, beta):
        mean, var = tf.nn.moments(x, [0, 1, 2])
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, EPS)

    grads = []
    for fn in (lambda *a: moments.normalize(a[0], EPS, True, a[1], a[2])[0], plain):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y = fn(x, gamma, beta)
        grads.append(tape.gradient(y, [x, gamma, beta], output_gradients=g))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("length", [1, 7, 64, 1021, 81796, 2 ** 21])
def test_blocked_sum_static_and_dynamic_lengths(length):
    rng = np.random.default_rng(length)
    x = (2.0 + rng.standard_normal((2, length, 3))).astype(np.float32)
    expected = x.astype(np.float64).sum(1)
    static = moments.blocked_sum(tf.constant(x)).numpy()
    dynamic = tf.function(moments.blocked_sum, input_signature=[
        tf.TensorSpec([None, None, None], tf.float32)])(tf.constant(x)).numpy()
    for out in (static, dynamic):
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_batch_statistics_and_mixed_precision():
    x = np.concatenate([_label_like(64, 96, 5, seed=s) for s in (0, 1, 2)])
    mean, var = moments.moments(tf.constant(x), batch=True)
    np.testing.assert_allclose(mean.numpy().ravel(), x.astype(np.float64).mean((0, 1, 2)),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(var.numpy().ravel(), x.astype(np.float64).var((0, 1, 2)),
                               rtol=1e-5)
    # bfloat16 activations: float32 statistics, output in bfloat16 (rounded once).
    xb = tf.cast(tf.constant(x), tf.bfloat16)
    out, m, v = moments.normalize(xb, EPS)
    assert out.dtype == tf.bfloat16 and m.dtype == tf.float32 and v.dtype == tf.float32
    expected, _ = _reference(tf.cast(xb, tf.float32).numpy())
    assert np.abs(tf.cast(out, tf.float32).numpy() - expected).max() <= (
        2 ** -8 * np.abs(expected).max())
