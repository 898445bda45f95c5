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


def patch_nce_loss(q: tf.Tensor, k: tf.Tensor, temperature: float) -> tf.Tensor:
    """CUT's ``PatchNCELoss`` of one layer, per image: ``[N]``.

    For image ``n`` and patch ``i`` the logits are ``<q_i, k_i>`` (the positive) and
    ``<q_i, k_j>`` for every patch ``j`` of the same image, with ``j = i`` replaced by -10 (the
    reference's masked diagonal; it stays a negative of weight ``exp(-10 / T)``), all divided
    by ``temperature``; the loss is their cross-entropy with the positive as the class, averaged
    over the patches. Negatives come only from the same image
    (``nce_includes_all_negatives_from_minibatch`` off), so replicas need not exchange features.

    Args:
      q: ``[N, P, D]`` projected features of the output (gradients flow).
      k: ``[N, P, D]`` projected features of the input (detached here, as the reference).
      temperature: ``nce_T``.
    """
    q = tf.cast(q, tf.float32)
    k = tf.stop_gradient(tf.cast(k, tf.float32))
    positive = tf.reduce_sum(q * k, axis=-1, keepdims=True)          # [N, P, 1]
    negatives = tf.matmul(q, k, transpose_b=True)                     # [N, P, P]
    diagonal = tf.eye(tf.shape(q)[1], dtype=tf.bool)[tf.newaxis]
    negatives = tf.where(diagonal, tf.constant(-10.0), negatives)
    logits = tf.concat([positive, negatives], axis=-1) / temperature
    per_patch = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.zeros(tf.shape(logits)[:2], tf.int32), logits=logits)
    return tf.reduce_mean(per_patch, axis=1)


def multiscale_gan_loss(outputs: list[list[tf.Tensor]], target_is_real: bool,
                        gan_mode: str) -> tf.Tensor:
    """pix2pixHD's ``GANLoss`` of a multi-scale discriminator: :func:`gan_loss` of each scale's
    logits (the last output of each scale), summed over the scales, ``[batch]``."""
    return tf.add_n([gan_loss(scale[-1], target_is_real, gan_mode) for scale in outputs])


def feature_matching_loss(fake_outputs: list[list[tf.Tensor]],
                          real_outputs: list[list[tf.Tensor]], weight: float) -> tf.Tensor:
    """pix2pixHD's ``G_GAN_Feat``, ``[batch]``: over the scales ``i`` and the hidden layers ``j``
    of the discriminator (all outputs but the logits), ``(1 / num_D) * (4 / (n_layers + 1)) *
    weight * L1(D_ij(fake), D_ij(real))``, the real features detached."""
    num_d = len(fake_outputs)
    terms = []
    for fake, real in zip(fake_outputs, real_outputs):
        n_layers = len(fake) - 2
        scale = (1.0 / num_d) * (4.0 / (n_layers + 1)) * weight
        terms += [scale * l1_loss(f, tf.stop_gradient(r)) for f, r in zip(fake[:-1], real[:-1])]
    return tf.add_n(terms)


def vgg_loss(fake_features: list[tf.Tensor], real_features: list[tf.Tensor],
             layer_weights: tuple[float, ...], weight: float) -> tf.Tensor:
    """pix2pixHD's ``VGGLoss`` times ``weight`` (``lambda_feat``), ``[batch]``:
    ``weight * sum_k layer_weights[k] * L1(fake_k, real_k)``, the real features detached."""
    return weight * tf.add_n([w * l1_loss(f, tf.stop_gradient(r)) for w, f, r in
                              zip(layer_weights, fake_features, real_features)])
