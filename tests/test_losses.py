import math

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import losses


def _bce(logit, label):
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_vanilla_gan_loss_is_bce_on_logits():
    logits = tf.constant([[[[0.0], [2.0]], [[-1.0], [3.0]]]])  # [1, 2, 2, 1]
    real = losses.gan_loss(logits, True, "vanilla").numpy()
    fake = losses.gan_loss(logits, False, "vanilla").numpy()
    values = [0.0, 2.0, -1.0, 3.0]
    assert real == pytest.approx([np.mean([_bce(v, 1) for v in values])], rel=1e-6)
    assert fake == pytest.approx([np.mean([_bce(v, 0) for v in values])], rel=1e-6)
    assert losses.gan_loss(tf.zeros([1, 3, 3, 1]), True, "vanilla").numpy() == pytest.approx(
        [math.log(2)])


def test_lsgan_loss_is_mse():
    logits = tf.constant([[[[0.5]], [[2.0]]]])
    assert losses.gan_loss(logits, True, "lsgan").numpy() == pytest.approx([(0.25 + 1) / 2])
    assert losses.gan_loss(logits, False, "lsgan").numpy() == pytest.approx([(0.25 + 4) / 2])


def test_losses_are_per_example():
    logits = tf.stack([tf.fill([2, 2, 1], 5.0), tf.fill([2, 2, 1], -5.0)])
    real = losses.gan_loss(logits, True, "vanilla").numpy()
    assert real.shape == (2,) and real[0] == pytest.approx(_bce(5, 1), rel=1e-5)
    assert real[1] == pytest.approx(_bce(-5, 1), rel=1e-5)


def test_l1_loss():
    out = tf.constant(np.full((2, 2, 2, 3), 0.5, np.float32))
    tgt = tf.constant(np.stack([np.full((2, 2, 3), -0.5), np.full((2, 2, 3), 0.5)]), tf.float32)
    assert losses.l1_loss(out, tgt).numpy() == pytest.approx([1.0, 0.0])


def test_discriminator_and_generator_losses():
    real_logits = tf.fill([1, 2, 2, 1], 1.0)
    fake_logits = tf.fill([1, 2, 2, 1], -1.0)
    d_real, d_fake = losses.discriminator_loss(real_logits, fake_logits, "vanilla")
    assert d_real.numpy() == pytest.approx([_bce(1.0, 1)]) and d_fake.numpy() == pytest.approx(
        [_bce(-1.0, 0)])
    out, tgt = tf.zeros([1, 4, 4, 3]), tf.fill([1, 4, 4, 3], 0.25)
    g_gan, g_l1 = losses.generator_loss(fake_logits, out, tgt, "vanilla", 100.0)
    # Non-saturating: G is scored against the "real" label.
    assert g_gan.numpy() == pytest.approx([_bce(-1.0, 1)]) and g_l1.numpy() == pytest.approx(
        [0.25])


def test_unknown_gan_mode():
    with pytest.raises(ValueError, match="wgan"):
        losses.gan_loss(tf.zeros([1, 1, 1, 1]), True, "wgan")


def test_bfloat16_logits_give_float32_loss():
    loss = losses.gan_loss(tf.zeros([1, 2, 2, 1], tf.bfloat16), True, "vanilla")
    assert loss.dtype == tf.float32


def test_patch_nce_loss_on_a_hand_computed_case():
    """Two patches, orthonormal features, T = 1: for each patch the logits are the positive 1,
    the masked diagonal -10 and the other patch 0."""
    from tf_pix2pix.losses import patch_nce_loss

    q = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
    expected = np.log(np.e + np.exp(-10.0) + 1.0) - 1.0
    np.testing.assert_allclose(patch_nce_loss(q, q, 1.0).numpy(), [expected], rtol=1e-6)
    # The temperature divides every logit; images do not see each other's patches.
    both = tf.concat([q, tf.constant([[[1.0, 0.0], [0.6, 0.8]]])], 0)  # <q0, q1> = 0.6
    t = 0.5
    logsumexp = lambda *v: np.log(np.sum(np.exp(np.array(v) / t)))  # noqa: E731
    np.testing.assert_allclose(patch_nce_loss(both, both, t).numpy(),
                               [logsumexp(1, -10, 0) - 1 / t, logsumexp(1, -10, 0.6) - 1 / t],
                               rtol=1e-6)
    # k is detached: the gradient reaches q only.
    k = tf.Variable(q)
    with tf.GradientTape(persistent=True) as tape:
        qv = tf.identity(q)
        tape.watch(qv)
        loss = tf.reduce_sum(patch_nce_loss(qv, k, 0.5))
    assert tape.gradient(loss, k) is None and tape.gradient(loss, qv) is not None


def test_pix2pixhd_losses_are_the_references_sums():
    from tf_pix2pix.losses import feature_matching_loss, multiscale_gan_loss, vgg_loss

    # Two scales of a one-layer D: outputs [hidden0, hidden1, logits] per scale.
    fake = [[tf.fill([1, 2, 2, 1], 1.0), tf.fill([1, 2, 2, 1], 2.0), tf.fill([1, 1, 1, 1], 0.5)],
            [tf.fill([1, 1, 1, 1], 0.0), tf.fill([1, 1, 1, 1], 4.0), tf.fill([1, 1, 1, 1], 1.0)]]
    real = [[tf.fill([1, 2, 2, 1], 0.0), tf.fill([1, 2, 2, 1], 2.5), tf.fill([1, 1, 1, 1], 0.0)],
            [tf.fill([1, 1, 1, 1], 1.0), tf.fill([1, 1, 1, 1], 1.0), tf.fill([1, 1, 1, 1], 0.0)]]
    # LSGAN against 1 summed over the scales: (0.5 - 1)^2 + (1 - 1)^2.
    assert float(multiscale_gan_loss(fake, True, "lsgan")[0]) == pytest.approx(0.25)
    # (1/num_D) (4/(n_layers+1)) w L1 over the hidden layers: n_layers 1, num_D 2, w 10.
    expected = 0.5 * 2.0 * 10 * ((1.0 + 0.5) + (1.0 + 3.0))
    assert float(feature_matching_loss(fake, real, 10.0)[0]) == pytest.approx(expected)
    assert float(vgg_loss([tf.ones([1, 2]), tf.zeros([1, 2])], [tf.zeros([1, 2]),
                                                               tf.fill([1, 2], 2.0)],
                          (0.5, 0.25), 10.0)[0]) == pytest.approx(10 * (0.5 * 1 + 0.25 * 2))
    # The real features are constants of G's loss.
    with tf.GradientTape() as tape:
        tape.watch(real[0][0])
        loss = feature_matching_loss(fake, real, 10.0)
    assert tape.gradient(loss, real[0][0]) is None
