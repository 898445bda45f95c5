"""label_maps.py: pix2pixHD's one-hot encoding, instance boundaries and label colours, against
hand-made cases."""

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import label_maps


def _ids(rows):
    return tf.constant(np.array(rows, np.int32)[np.newaxis, :, :, np.newaxis])


def test_edges_mark_both_sides_of_every_boundary():
    inst = _ids([[1, 1, 2, 2],
                 [1, 1, 2, 2],
                 [3, 3, 3, 3]])
    expected = np.array([[0, 1, 1, 0],     # the 1|2 boundary, and both rows at the 3s
                         [1, 1, 1, 1],
                         [1, 1, 1, 1]])
    np.testing.assert_array_equal(label_maps.edges(inst)[0, ..., 0], expected)
    inst = _ids([[5, 5, 5, 5],
                 [5, 7, 5, 5],
                 [5, 5, 5, 5]])
    expected = np.array([[0, 1, 0, 0],     # the lone 7 and its four neighbours
                         [1, 1, 1, 0],
                         [0, 1, 0, 0]])
    np.testing.assert_array_equal(label_maps.edges(inst)[0, ..., 0], expected)
    assert float(tf.reduce_sum(label_maps.edges(_ids([[4, 4], [4, 4]])))) == 0


def test_encode_is_one_hot_then_the_edges():
    labels = _ids([[0, 2], [1, 2]])
    x = label_maps.encode(labels, labels, label_nc=3).numpy()[0]
    assert x.shape == (2, 2, 4)
    np.testing.assert_array_equal(x[..., :3].argmax(-1), [[0, 2], [1, 2]])
    np.testing.assert_array_equal(x[..., :3].sum(-1), 1)
    np.testing.assert_array_equal(x[..., 3], [[1, 1], [1, 1]])
    assert label_maps.encode(labels, None, 3).shape[-1] == 3
    rgb = tf.fill([1, 2, 2, 3], 0.5)  # label_nc 0: the image itself
    np.testing.assert_array_equal(label_maps.encode(rgb, None, 0), rgb)


def test_palettes_and_colorize():
    cityscapes = label_maps.palette(35)
    assert cityscapes.shape == (35, 3)
    assert tuple(cityscapes[7]) == (128, 64, 128)   # road
    assert tuple(cityscapes[26]) == (0, 0, 142)     # car
    voc = label_maps.palette(4)
    np.testing.assert_array_equal(voc, [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    labels = _ids([[1, 1], [1, 2]])
    shown = label_maps.colorize(label_maps.encode(labels, labels, 4), 4).numpy()[0]
    np.testing.assert_allclose(shown[0, 1], [1, 1, 1])       # a boundary pixel: white
    np.testing.assert_allclose(shown[0, 0], np.array([128, 0, 0]) / 127.5 - 1, atol=1e-6)
    labels = _ids([[3, 3], [3, 3]])
    shown = label_maps.colorize(label_maps.encode(labels, labels, 4), 4).numpy()[0]
    np.testing.assert_allclose(shown[1, 1], np.array([128, 128, 0]) / 127.5 - 1, atol=1e-6)


def test_instance_mean_of_a_large_instance_is_exact():
    """A 1024x2048 map whose one instance covers 90 % of it: its mean equals float64's (a
    float32 segment mean, added pixel after pixel, was 1e-5..1e-4 away); gradients flow."""
    rng = np.random.default_rng(0)
    features = (0.7 + 0.01 * rng.standard_normal((1, 1024, 2048, 3))).astype(np.float32)
    ids = np.full((1, 1024, 2048, 1), 7, np.int32)
    ids[:, :100] = 26001
    pooled = label_maps.instance_mean(tf.constant(features), tf.constant(ids)).numpy()
    big = features[0][ids[0, ..., 0] == 7].astype(np.float64).mean(0)
    small = features[0][ids[0, ..., 0] == 26001].astype(np.float64).mean(0)
    np.testing.assert_allclose(pooled[0, 500, 7], big, rtol=2e-7)
    np.testing.assert_allclose(pooled[0, 5, 7], small, rtol=2e-7)
    x = tf.constant(features[:, :8, :8])
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(label_maps.instance_mean(x, tf.constant(ids[:, :8, :8])))
    assert tape.gradient(total, x).numpy() == pytest.approx(np.ones((1, 8, 8, 3)))
