"""Image grids (input | output | target) for TensorBoard and sample PNGs."""

from __future__ import annotations


import tensorflow as tf

from tf_pix2pix.configuration import write_atomic
from tf_pix2pix.metrics.scoring import to_unit_range


def _rgb(images: tf.Tensor) -> tf.Tensor:
    images = to_unit_range(images)
    return tf.image.grayscale_to_rgb(images) if images.shape[-1] == 1 else images


def comparison_grid(*columns: tf.Tensor | None) -> tf.Tensor:
    """Rows of ``column_1 | column_2 | ...`` (e.g. input | output | target) as one
    ``[N, H, kW, 3]`` float image in [0, 1]; ``None`` columns are left out.

    Columns may differ in channel count (1 or 3); they are shown as RGB.
    """
    return tf.concat([_rgb(c) for c in columns if c is not None], axis=2)


def rows_png(rows: tf.Tensor) -> bytes:
    """PNG bytes of ``[N, H, W, 3]`` rows in [0, 1] stacked vertically."""
    stacked = tf.reshape(rows, [-1, rows.shape[2], 3])
    return tf.io.encode_png(tf.cast(tf.round(stacked * 255.0), tf.uint8)).numpy()


def grid_png(*columns: tf.Tensor | None) -> bytes:
    """PNG bytes of the comparison rows of a batch stacked vertically."""
    return rows_png(comparison_grid(*columns))


def save_png(path: str, data: bytes) -> None:
    """Writes PNG bytes atomically (a reader never sees half a file)."""
    write_atomic(path, data)


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] images to uint8 pixels (clipped, rounded); usable eagerly and in graphs."""
    return tf.cast(tf.round(to_unit_range(images) * 255.0), tf.uint8)
