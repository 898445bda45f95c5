"""CUT's ``PatchSampleF`` (``--netF mlp_sample``): patches of the generator's feature maps,
projected by one small MLP per layer and L2-normalised (taesungp/contrastive-unpaired-translation,
``models/networks.py``).

The reference builds the MLPs on the first batch, when it first sees the features' channels;
here the channels are known from the configuration, so :func:`patch_projector` builds them with
the generator and a checkpoint holds them from step 0.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_pix2pix.networks.layers import conv_init


def patch_projector(channels: list[int], nc: int = 256, gain: float = 0.02,
                    init_type: str = "xavier", name: str = "F") -> keras.Model:
    """One ``Linear(C, nc) -> ReLU -> Linear(nc, nc)`` per feature layer.

    Args:
      channels: the channels of each tapped layer.
      nc: the MLPs' width (``--netF_nc``).
      gain, init_type: the weight init (``layers.conv_init``; biases 0).
      name: model name.

    Returns:
      A ``keras.Model`` taking a list of ``[N, P, C_l]`` patch features and returning a list of
      ``[N, P, nc]`` float32 projections, each row L2-normalised (:func:`l2_normalize`).
    """
    inputs, outputs = [], []
    for i, c in enumerate(channels):
        x = keras.Input(shape=(None, c), name=f"patches_{i}")
        inputs.append(x)
        y = keras.layers.Dense(nc, kernel_initializer=conv_init(gain, init_type),
                               name=f"mlp_{i}_0")(x)
        y = keras.layers.ReLU(name=f"mlp_{i}_relu")(y)
        y = keras.layers.Dense(nc, kernel_initializer=conv_init(gain, init_type),
                               name=f"mlp_{i}_2")(y)
        outputs.append(L2Normalize(dtype="float32", name=f"l2norm_{i}")(y))
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class L2Normalize(keras.layers.Layer):
    """:func:`l2_normalize` as a layer."""

    def call(self, x):
        return l2_normalize(x)


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """The reference's ``Normalize(2)``: ``x / (||x|| + 1e-7)`` over the last axis, float32.
    (``tf.math.l2_normalize`` divides by ``max(||x||, eps)`` instead.)"""
    x = tf.cast(x, tf.float32)
    return x / (tf.norm(x, axis=-1, keepdims=True) + 1e-7)


def patch_ids(height_times_width: tf.Tensor, num_patches: int, seed: tf.Tensor) -> tf.Tensor:
    """``min(num_patches, H*W)`` distinct flat positions, drawn without replacement (the first
    entries of a random permutation, as ``torch.randperm(H*W)[:num_patches]``), from the
    stateless ``seed``."""
    keys = tf.random.stateless_uniform([height_times_width], seed=seed)
    return tf.argsort(keys)[:num_patches]


def sample_patches(features: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """The feature vectors of ``[N, H, W, C]`` at the flat positions ``ids`` (one draw shared by
    the batch, as the reference): ``[N, P, C]``."""
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    return tf.gather(flat, ids, axis=1)
