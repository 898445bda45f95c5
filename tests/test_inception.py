import numpy as np
import pytest

from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.metrics.inception import (InceptionFeatures, fid_from_features, fid_kid,
                                          frechet_distance, kid_from_features)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    # Commuting (diagonal) covariances: |dmu|^2 + sum (s1 - s2)^2 over standard deviations.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # A general covariance against itself, rotated mean: only the mean term remains.
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    assert frechet_distance(np.zeros(5), sigma, np.ones(5), sigma) == pytest.approx(5.0,
                                                                                    abs=1e-8)
    # Symmetric, and zero for identical sets.
    b = rng.normal(size=(5, 5))
    sigma2 = b @ b.T
    assert frechet_distance(mu1[:3], sigma[:3, :3], mu2, sigma2[:3, :3]) == pytest.approx(
        frechet_distance(mu2, sigma2[:3, :3], mu1[:3], sigma[:3, :3]))
    feats = rng.normal(size=(200, 4))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_samples_approaches_the_gaussians_value():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=(100_000, 2))
    b = rng.normal([1.0, 0.0], [2.0, 1.0], size=(100_000, 2))
    assert fid_from_features(a, b) == pytest.approx(1.0 + 1.0, abs=0.03)


def _cubic_kernel_mean(m1, v1, m2, v2):
    """E[(x y + 1)^3] for independent x ~ N(m1, v1), y ~ N(m2, v2) in one dimension."""
    e1 = (m1, m1 ** 2 + v1, m1 ** 3 + 3 * m1 * v1)
    e2 = (m2, m2 ** 2 + v2, m2 ** 3 + 3 * m2 * v2)
    return e1[2] * e2[2] + 3 * e1[1] * e2[1] + 3 * e1[0] * e2[0] + 1


def test_kid_estimates_the_closed_form_mmd_of_two_gaussians():
    rng = np.random.default_rng(2)
    m1, v1, m2, v2 = 0.0, 1.0, 0.5, 0.49
    expected = (_cubic_kernel_mean(m1, v1, m1, v1) + _cubic_kernel_mean(m2, v2, m2, v2)
                - 2 * _cubic_kernel_mean(m1, v1, m2, v2))
    a = rng.normal(m1, np.sqrt(v1), size=(20_000, 1))
    b = rng.normal(m2, np.sqrt(v2), size=(20_000, 1))
    kid, std = kid_from_features(a, b, subsets=50, subset_size=2000)
    assert expected > 1.0 and kid == pytest.approx(expected, rel=0.05)
    same, _ = kid_from_features(a, a.copy(), subsets=20, subset_size=500)
    assert abs(same) < 0.05 * expected  # unbiased: ~0 for one distribution
    # Symmetric: one subset each (the whole sets), either order.
    ab, _ = kid_from_features(a[:300], b[:300], subsets=1, subset_size=300)
    ba, _ = kid_from_features(b[:300], a[:300], subsets=1, subset_size=300)
    assert ab == pytest.approx(ba)


def test_the_whole_pipeline_with_random_weights():
    rng = np.random.default_rng(3)
    features = InceptionFeatures("random")
    images = rng.uniform(-1, 1, (6, 40, 48, 3)).astype(np.float32)
    result = fid_kid(images, images, features=features)
    assert result["count"] == 6 and "fid_warning" in result
    assert result["fid"] == pytest.approx(0.0, abs=1e-3) and abs(result["kid"]) < 1e-6
    gray = rng.uniform(-1, 1, (6, 40, 48, 1)).astype(np.float32)
    other = fid_kid(images, np.clip(images + 0.5, -1, 1), features=features)
    assert other["fid"] > 0 and features(gray).shape == (6, 2048)


def test_bad_weights_are_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--inception_weights=weights.bin"):
        InceptionFeatures("weights.bin")
    with pytest.raises(ConfigError, match="FID/KID need Inception-v3 weights: pass "
                                          "--inception_weights PATH"):
        InceptionFeatures("")
    missing = str(tmp_path / "missing.h5")
    with pytest.raises(ConfigError, match="cannot load the InceptionV3 weights"):
        InceptionFeatures(missing)
