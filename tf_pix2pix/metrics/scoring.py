"""Image-quality metrics of translations: L1, PSNR and SSIM (``tf.image``).

Images are compared in [0, 1] after mapping the networks' [-1, 1] range. L1 is the mean absolute
error in that [0, 1] space; PSNR is capped at ``PSNR_CAP`` dB so that an exact reproduction gives a
finite, comparable number instead of ``inf``.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

PSNR_CAP = 100.0


def to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """Maps [-1, 1] to [0, 1] (clipped), float32."""
    return tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) / 2.0, 0.0, 1.0)


def image_metrics(outputs: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
    """Per-example ``l1``, ``psnr`` and ``ssim`` of ``[N, H, W, C]`` images in [-1, 1].

    SSIM uses tf.image's 11x11 Gaussian window, shrunk to the image for sides below 11 pixels.
    """
    out, tgt = to_unit_range(outputs), to_unit_range(targets)
    l1 = tf.reduce_mean(tf.abs(out - tgt), axis=[1, 2, 3])
    psnr = tf.minimum(tf.image.psnr(out, tgt, max_val=1.0), PSNR_CAP)
    sides = [d for d in out.shape[1:3] if d is not None]
    ssim = tf.image.ssim(out, tgt, max_val=1.0, filter_size=min([11] + sides))
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


IMAGE_METRICS = ("l1", "psnr", "ssim")


class Scorer:
    """Scores a set of translations against their targets, batch by batch: the one scoring
    function of training-time validation, ``run_predict.py`` and the experiment runner.

    Per image: L1, PSNR and SSIM (:func:`image_metrics`); over the whole set: their means and,
    given Inception ``features`` (``inception_metrics.InceptionFeatures``), FID and KID.
    """

    def __init__(self, metrics: tuple[str, ...] = IMAGE_METRICS, features=None):
        self.metrics = tuple(metrics)
        self.features = features
        self.rows: list[dict[str, float]] = []
        self._feats: dict[str, list[np.ndarray]] = {"output": [], "target": []}

    def add(self, outputs, targets, limit: int = 0) -> list[dict[str, float]]:
        """Scores one batch (``[N, H, W, C]`` in [-1, 1]); with ``limit``, only as many of its
        images as keep the total at most ``limit``. Returns the new per-image rows."""
        n = int(outputs.shape[0])
        if limit:
            n = max(0, min(n, limit - len(self.rows)))
        outputs, targets = outputs[:n], targets[:n]
        if not n:
            return []
        values = {k: v.numpy() for k, v in image_metrics(outputs, targets).items()}
        rows = [{k: float(values[k][i]) for k in IMAGE_METRICS} for i in range(n)]
        self.rows += rows
        if self.features is not None and {"fid", "kid"} & set(self.metrics):
            self._feats["output"].append(self.features(np.asarray(outputs)))
            self._feats["target"].append(self.features(np.asarray(targets)))
        return rows

    @property
    def count(self) -> int:
        return len(self.rows)

    def summary(self) -> dict[str, float]:
        """``count``, the means of the asked image metrics and, with features, ``fid``,
        ``kid``, ``kid_std`` (and ``fid_warning`` for small sets)."""
        result: dict = {"count": self.count}
        if not self.rows:
            return result
        for key in IMAGE_METRICS:
            if key in self.metrics:
                result[key] = float(np.mean([r[key] for r in self.rows]))
        if self._feats["output"]:
            from tf_pix2pix.metrics.inception import scores

            fid_kid = scores(np.concatenate(self._feats["output"]),
                             np.concatenate(self._feats["target"]), self.metrics)
            result["inception_images"] = fid_kid.pop("count")
            result.update(fid_kid)
        return result


def evaluate(generate: Callable[[tf.Tensor], tf.Tensor],
             batches: Iterable[tuple[tf.Tensor, tf.Tensor]],
             max_examples: int = 0) -> dict[str, float]:
    """Mean L1, PSNR and SSIM of ``generate(input)`` against the targets.

    Args:
      generate: maps an input batch to the output batch (in the chosen test-time mode).
      batches: ``(input, target)`` batches in [-1, 1].
      max_examples: stop after this many examples; 0 evaluates everything.

    Returns:
      ``{"l1", "psnr", "ssim", "count"}``; an empty input gives ``count`` 0 and no metrics.
    """
    scorer = Scorer()
    for inputs, targets in batches:
        if max_examples and scorer.count >= max_examples:
            break
        scorer.add(generate(inputs), targets, limit=max_examples)
    return scorer.summary()
