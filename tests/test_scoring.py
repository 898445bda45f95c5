import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix.metrics.scoring import PSNR_CAP, evaluate, image_metrics, to_unit_range


def _images(seed, n=2, size=16):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)),
                       tf.float32)


def test_identity_gives_zero_l1_capped_psnr_and_unit_ssim():
    x = _images(0)
    m = image_metrics(x, x)
    np.testing.assert_allclose(m["l1"].numpy(), 0.0)
    np.testing.assert_allclose(m["psnr"].numpy(), PSNR_CAP)
    np.testing.assert_allclose(m["ssim"].numpy(), 1.0, atol=1e-6)


def test_known_values():
    out = tf.fill([1, 16, 16, 3], 0.0)   # 0.5 in [0, 1]
    tgt = tf.fill([1, 16, 16, 3], -1.0)  # 0.0 in [0, 1]
    m = image_metrics(out, tgt)
    assert m["l1"].numpy() == pytest.approx([0.5])
    assert m["psnr"].numpy() == pytest.approx([10 * np.log10(1 / 0.25)], rel=1e-5)


def test_evaluate_averages_and_limits():
    batches = [(_images(1), _images(2)), (_images(3), _images(4))]
    everything = evaluate(lambda x: x, batches)
    assert everything["count"] == 4
    per = np.concatenate([image_metrics(a, b)["l1"].numpy() for a, b in batches])
    assert everything["l1"] == pytest.approx(per.mean(), rel=1e-6)
    first3 = evaluate(lambda x: x, batches, max_examples=3)
    assert first3["count"] == 3 and first3["l1"] == pytest.approx(per[:3].mean(), rel=1e-6)
    assert evaluate(lambda x: x, []) == {"count": 0}


def test_to_unit_range_clips():
    np.testing.assert_allclose(to_unit_range(tf.constant([-2.0, -1.0, 0.0, 1.0, 3.0])).numpy(),
                               [0, 0, 0.5, 1, 1])


def test_small_images_get_a_smaller_ssim_window():
    x = _images(5, size=6)
    m = image_metrics(x, x)
    np.testing.assert_allclose(m["ssim"].numpy(), 1.0, atol=1e-6)
