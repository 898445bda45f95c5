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
    values: dict[str, list[np.ndarray]] = {"l1": [], "psnr": [], "ssim": []}
    count = 0
    for inputs, targets in batches:
        if max_examples and count >= max_examples:
            break
        metrics = image_metrics(generate(inputs), targets)
        for key, value in metrics.items():
            values[key].append(value.numpy())
        count += int(inputs.shape[0])
    if not count:
        return {"count": 0}
    result = {k: float(np.concatenate(v)[:max_examples or None].mean()) for k, v in values.items()}
    result["count"] = min(count, max_examples) if max_examples else count
    return result
