"""Image grids (input | output | target) for TensorBoard and sample PNGs."""

from __future__ import annotations

import os

import tensorflow as tf

from tf_pix2pix.evaluate import to_unit_range


def _rgb(images: tf.Tensor) -> tf.Tensor:
    images = to_unit_range(images)
    return tf.image.grayscale_to_rgb(images) if images.shape[-1] == 1 else images


def comparison_grid(inputs: tf.Tensor, outputs: tf.Tensor,
                    targets: tf.Tensor | None = None) -> tf.Tensor:
    """Rows of ``input | output | target`` as one ``[N, H, 3W, 3]`` float image in [0, 1].

    Inputs and outputs may differ in channel count (1 or 3); they are shown as RGB.
    """
    parts = [_rgb(inputs), _rgb(outputs)] + ([_rgb(targets)] if targets is not None else [])
    return tf.concat(parts, axis=2)


def grid_png(inputs: tf.Tensor, outputs: tf.Tensor, targets: tf.Tensor | None = None) -> bytes:
    """PNG bytes of the comparison rows of a batch stacked vertically."""
    rows = comparison_grid(inputs, outputs, targets)
    stacked = tf.reshape(rows, [-1, rows.shape[2], 3])
    return tf.io.encode_png(tf.cast(tf.round(stacked * 255.0), tf.uint8)).numpy()


def save_png(path: str, data: bytes) -> None:
    """Writes PNG bytes atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] images to uint8 pixels (clipped, rounded); usable eagerly and in graphs."""
    return tf.cast(tf.round(to_unit_range(images) * 255.0), tf.uint8)
