"""GAN and reconstruction losses, per example so that distribution strategies can average them.

Each function returns a ``[batch]`` float32 vector: the mean over the patch (or pixel) axes of one
example. The training step divides the sum by the global batch size
(``tf.nn.compute_average_loss``), which equals the reference's plain mean on one device.
"""

from __future__ import annotations

import tensorflow as tf


def _per_example_mean(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gan_loss(logits: tf.Tensor, target_is_real: bool, gan_mode: str) -> tf.Tensor:
    """The reference's ``GANLoss`` against a constant label of 1 (real) or 0 (fake).

    Args:
      logits: discriminator output (no sigmoid applied).
      target_is_real: compare with 1 when True, with 0 when False.
      gan_mode: ``vanilla`` (sigmoid cross-entropy on logits) or ``lsgan`` (mean squared error).

    Returns:
      ``[batch]`` loss of each example.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.ones_like(logits) if target_is_real else tf.zeros_like(logits)
    if gan_mode == "vanilla":
        per_patch = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    elif gan_mode == "lsgan":
        per_patch = tf.square(logits - labels)
    else:
        raise ValueError(f"unknown gan_mode {gan_mode!r}")
    return _per_example_mean(per_patch)


def l1_loss(output: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean absolute error of each example, ``[batch]``."""
    return _per_example_mean(tf.abs(tf.cast(output, tf.float32) - tf.cast(target, tf.float32)))


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor,
                       gan_mode: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-example ``(D_real, D_fake)``; D minimises ``0.5 * (D_real + D_fake)``."""
    return gan_loss(real_logits, True, gan_mode), gan_loss(fake_logits, False, gan_mode)


def generator_loss(fake_logits: tf.Tensor, output: tf.Tensor, target: tf.Tensor, gan_mode: str,
                   lambda_l1: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-example ``(G_GAN, G_L1)``; G minimises ``G_GAN + lambda_l1 * G_L1`` (non-saturating)."""
    return gan_loss(fake_logits, True, gan_mode), l1_loss(output, target)
