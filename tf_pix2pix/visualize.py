"""Image grids (input | output | target) for TensorBoard and sample PNGs."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

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


MIN_TILE = 128  # sample PNGs enlarge smaller tiles (nearest) so that they can be judged
CAPTION_HEIGHT = 16


def column_captions(description: str) -> list[list[str]]:
    """The column names of each grid in a model's ``sample_columns`` description:
    ``"real_A | fake_B, then real_B | idt_B (G(B), ...)"`` -> ``[["real_A", "fake_B"],
    ["real_B", "idt_B"]]``."""
    return [[re.sub(r"\s*\(.*", "", name).strip() for name in grid.split(" | ")]
            for grid in description.split(", then ")]


def captioned_png(grids: list[tuple[tf.Tensor, list[str] | None]],
                  min_tile: int = MIN_TILE) -> bytes:
    """PNG bytes of sample grids (``[N, H, W, 3]`` rows in [0, 1], as :func:`comparison_grid`
    makes them) stacked vertically, each under a strip naming its columns (``captions``: one
    name per column, or None for no strip). Tiles less than ``min_tile`` pixels high are
    enlarged by the smallest integer factor that reaches it (nearest neighbour: the pixels a
    model produced, only bigger)."""
    height = max(int(rows.shape[1]) for rows, _ in grids)
    factor = max(1, math.ceil(min_tile / height))
    font = ImageFont.load_default()
    blocks = []
    for rows, captions in grids:
        pixels = np.asarray(tf.cast(tf.round(rows * 255.0), tf.uint8))
        pixels = pixels.reshape(-1, pixels.shape[2], 3)
        pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
        columns = len(captions or [])
        if columns and pixels.shape[1] % columns == 0:
            strip = Image.new("RGB", (pixels.shape[1], CAPTION_HEIGHT), "white")
            draw = ImageDraw.Draw(strip)
            width = pixels.shape[1] // columns
            for i, name in enumerate(captions):
                left, _, right, _ = draw.textbbox((0, 0), name, font=font)
                draw.text((i * width + max(0, (width - (right - left)) // 2), 2), name,
                          fill="black", font=font)
            pixels = np.concatenate([np.asarray(strip), pixels], axis=0)
        blocks.append(pixels)
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, [(0, 0), (0, width - b.shape[1]), (0, 0)], constant_values=255)
              for b in blocks]
    out = io.BytesIO()
    Image.fromarray(np.concatenate(blocks, axis=0)).save(out, format="PNG")
    return out.getvalue()
