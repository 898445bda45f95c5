"""Running a generator: the two test-time modes and any-size translation.

Training-time validation and sample grids, export, prediction and the experiment runner all run
generators through this module (restoring one from a training directory is ``restore``'s):

* :func:`check_test_mode` refuses an unknown mode (``models.check_test_mode`` also one that
  changes nothing for a model);
* :func:`mode_call` / :func:`generator_fn` are the one implementation of the modes: ``eval``
  (dropout off, batch-norm running statistics) and ``paper`` (the paper's test time: dropout on,
  each batch normalised by its own statistics, the stored statistics left unchanged);
* :func:`padded_translate` runs a generator on images of any size.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from tf_pix2pix.configuration import TEST_MODES, check_choice
from tf_pix2pix.networks.layers import frozen_statistics


def check_test_mode(test_mode: str) -> None:
    """Refuses an unknown test-time mode (``models.check_test_mode`` also refuses one that
    changes nothing for a model)."""
    check_choice("test_mode", test_mode, TEST_MODES)


def mode_call(generator: keras.Model, mode: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """``generator`` as a function of its input in the test-time mode ``mode``.

    ``eval``: dropout off, batch-norm running statistics (the usual inference).
    ``paper``: as in the paper's test time, dropout on and batch statistics of the batch itself;
    the stored statistics are left unchanged (``networks.layers.frozen_statistics``: traced
    functions hold no update), while dropout's seed advances so that successive calls draw new
    masks, as the paper's test-time noise intends.
    """
    check_test_mode(mode)
    if mode == "eval":
        return lambda x: generator(x, training=False)

    def paper(x):
        with frozen_statistics():
            return generator(x, training=True)

    return paper


def generator_fn(generator: keras.Model, mode: str):
    """:func:`mode_call` as a ``tf.function`` (retraced only for new input shapes)."""
    return tf.function(mode_call(generator, mode), reduce_retracing=True)


def _reflect_pad_to(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Reflect-pads bottom/right up to (height, width); repeats when the pad exceeds the size."""

    def cond(x):
        return tf.logical_or(tf.shape(x)[1] < height, tf.shape(x)[2] < width)

    def body(x):
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        # REFLECT needs pad < size; a 1-pixel side can only be repeated (SYMMETRIC).
        ph = tf.minimum(height - h, tf.maximum(h - 1, 0))
        pw = tf.minimum(width - w, tf.maximum(w - 1, 0))
        paddings = [[0, 0], [0, ph], [0, pw], [0, 0]]
        return [tf.cond(tf.logical_and(h > 1, w > 1),
                       lambda: tf.pad(x, paddings, mode="REFLECT"),
                       lambda: tf.pad(x, [[0, 0], [0, tf.minimum(height - h, h)],
                                          [0, tf.minimum(width - w, w)], [0, 0]],
                                      mode="SYMMETRIC"))]

    shape = images.shape
    return tf.while_loop(cond, body, [images],
                         shape_invariants=[tf.TensorShape([shape[0], None, None, shape[3]])])[0]


def padded_translate(call: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor,
                     multiple: int) -> tf.Tensor:
    """Runs ``call`` (a generator in a test mode, :func:`mode_call`) on images of any size by
    reflect-padding them to multiples of ``multiple`` and cropping the output back."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    target_h = (h + multiple - 1) // multiple * multiple
    target_w = (w + multiple - 1) // multiple * multiple
    padded = _reflect_pad_to(images, target_h, target_w)
    return call(padded)[:, :h, :w, :]


