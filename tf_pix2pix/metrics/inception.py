"""FID and KID: distances between sets of images in Inception-v3 feature space.

Features are the 2048-d average-pooled activations of ``keras.applications.InceptionV3
(include_top=False, pooling="avg")`` on images resized to 299x299 (bilinear), in the [-1, 1] range
that network's ImageNet weights expect. The weights come from ``inception_weights``: a path to
Keras's ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``, ``imagenet`` (Keras's own
download, needs internet once), or ``random`` (random initialisation: for testing the pipeline
only — the numbers mean nothing).

Comparability: these are Keras's InceptionV3 features, not those of the 2015 TensorFlow graph
(``pool_3``) that most published FIDs use; values are comparable between runs of this tool, not
with published tables. FID is biased upwards for small sets (under ~1,000 images per side it is
dominated by the bias); KID (the unbiased squared MMD with the cubic polynomial kernel, averaged
over random subsets) has no such bias and is the one to read for small test sets.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_pix2pix.configuration import ConfigError

FEATURE_SIZE = 299
FID_MIN_RELIABLE = 1000
WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    ``tr((S1 S2)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the
    symmetric ``S1^(1/2) S2 S1^(1/2)`` (same spectrum, and numerically stable for PSD inputs).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets ``[N, d]`` (sample means and covariances)."""
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                            np.cov(b, rowvar=False))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD with ``k(u, v) = (u.v / d + 1)^3`` (diagonals left out)."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kid_from_features(a: np.ndarray, b: np.ndarray, subsets: int = 100,
                      subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (mean and standard deviation over random subsets) of two feature sets ``[N, d]``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ConfigError("KID needs at least 2 images on each side")
    rng = np.random.default_rng(seed)
    values = [_polynomial_mmd2(a[rng.choice(len(a), size, replace=False)],
                               b[rng.choice(len(b), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


class InceptionFeatures:
    """Inception-v3 pool features of ``[N, H, W, C]`` images in [-1, 1] (C = 1 or 3)."""

    def __init__(self, weights: str):
        import keras

        if not weights:
            raise ConfigError(f"FID/KID need Inception-v3 weights: pass --inception_weights PATH "
                              f"of {WEIGHTS_FILE}, or --inception_weights=imagenet (Keras "
                              "downloads it once)")
        if weights == "random":
            source = None
        elif weights == "imagenet" or weights.endswith(".h5"):
            source = weights
        else:
            raise ConfigError(f"--inception_weights={weights}: pass the path of {WEIGHTS_FILE}, "
                              "imagenet (download) or random (pipeline tests only)")
        try:
            self.model = keras.applications.InceptionV3(
                include_top=False, pooling="avg", weights=source,
                input_shape=(FEATURE_SIZE, FEATURE_SIZE, 3))
        except (OSError, ValueError, Exception) as e:  # a failed download raises several types
            raise ConfigError(
                f"cannot load the InceptionV3 weights ({str(e).splitlines()[0]}); without "
                f"internet download {WEIGHTS_FILE} (Keras's InceptionV3 'notop' file) on another "
                "machine and pass --inception_weights=PATH") from e
        self._fn = tf.function(
            self._features,
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])

    def _features(self, images):
        resized = tf.image.resize(images, [FEATURE_SIZE, FEATURE_SIZE], "bilinear")
        return self.model(tf.clip_by_value(resized, -1.0, 1.0), training=False)

    def __call__(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.shape[-1] == 1:  # grayscale outputs are compared as RGB
            images = np.repeat(images, 3, axis=-1)
        return np.concatenate([self._fn(images[i:i + batch_size]).numpy()
                               for i in range(0, len(images), batch_size)])


def scores(a: np.ndarray, b: np.ndarray, metrics=("fid", "kid")) -> dict[str, float]:
    """FID and/or KID of two feature sets ``[N, d]``.

    Returns:
      ``fid`` (and, under ``FID_MIN_RELIABLE`` images, ``fid_warning``), ``kid``, ``kid_std``,
      ``count``, as asked by ``metrics``.
    """
    result: dict = {"count": len(a)}
    if "fid" in metrics:
        result["fid"] = fid_from_features(a, b)
        if len(a) < FID_MIN_RELIABLE:
            result["fid_warning"] = (f"FID of {len(a)} images is biased upwards (reliable from "
                                     f"~{FID_MIN_RELIABLE}); compare KID instead")
    if "kid" in metrics:
        result["kid"], result["kid_std"] = kid_from_features(
            a, b, subsets=100, subset_size=min(1000, len(a)))
    return result


def fid_kid(outputs: np.ndarray, targets: np.ndarray, weights: str = "",
            features: InceptionFeatures | None = None) -> dict[str, float]:
    """FID and KID between translated images and their targets (both ``[N, H, W, C]``);
    see :func:`scores`."""
    features = features or InceptionFeatures(weights)
    return scores(features(outputs), features(targets))
