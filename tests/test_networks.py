import numpy as np
import pytest

from tf_pix2pix.config import ModelConfig
from tf_pix2pix.networks import (build_discriminator, build_generator, count_params,
                                 nlayer_discriminator, pixel_discriminator, resnet_generator,
                                 unet_generator)


def test_paper_defaults_have_the_pinned_parameter_counts():
    cfg = ModelConfig()
    assert count_params(build_generator(cfg, 3, 3)) == 54_413_955
    assert count_params(build_discriminator(cfg, 3, 3)) == 2_768_705


@pytest.mark.parametrize("netG, norm, expected", [
    ("unet_128", "batch", 41_828_995),
    ("resnet_9blocks", "instance", 11_378_179),  # CycleGAN's well-known count
    ("resnet_9blocks", "batch", 11_383_427),
    ("resnet_6blocks", "batch", 7_841_411),
])
def test_other_generator_counts(netG, norm, expected):
    assert count_params(build_generator(ModelConfig(netG=netG, norm=norm), 3, 3)) == expected


@pytest.mark.parametrize("size", [256, 512])
def test_unet256_shapes(size):
    g = unet_generator(3, 3, num_downs=8, ngf=8)
    out = g(np.zeros((1, size, size, 3), np.float32), training=False)
    assert out.shape == (1, size, size, 3)


@pytest.mark.parametrize("num_downs, size", [(7, 128), (6, 64), (5, 32), (5, 96)])
def test_unet_shapes_and_channels(num_downs, size):
    g = unet_generator(1, 3, num_downs=num_downs, ngf=8)
    out = g(np.zeros((2, size, size // 2 * 2, 1), np.float32), training=False)
    assert out.shape == (2, size, size, 3)


def test_unet_structure_follows_the_reference():
    g = unet_generator(3, 3, num_downs=8, ngf=64)
    names = {layer.name for layer in g.layers}
    assert "down0_norm" not in names and "down7_norm" not in names  # outermost, innermost
    assert {f"down{i}_norm" for i in range(1, 7)} <= names
    assert {layer.name for layer in g.layers if "dropout" in layer.name} == {
        "up4_dropout", "up5_dropout", "up6_dropout"}
    # Dropout on the blocks whose outputs are 4x4, 8x8 and 16x16 for a 256 input.
    sizes = {n: g.get_layer(n).output.shape for n in ("up6_deconv", "up5_deconv", "up4_deconv")}
    assert [s[-1] for s in sizes.values()] == [512, 512, 512]
    # Convs followed by batch norm have no bias; the output deconv has one.
    assert g.get_layer("down0_conv").bias is None and g.get_layer("down7_conv").bias is None
    assert g.get_layer("up0_deconv").bias is not None
    assert g.get_layer("tanh").output.shape[-1] == 3


def test_unet_output_is_in_tanh_range():
    g = unet_generator(3, 3, num_downs=5, ngf=8)
    out = g(np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32) * 10)
    assert np.abs(np.asarray(out)).max() <= 1.0


def test_instance_norm_convs_have_bias():
    g = unet_generator(3, 3, num_downs=5, ngf=8, norm="instance")
    assert g.get_layer("down1_conv").bias is not None
    assert not any("norm" in layer.name and layer.weights for layer in g.layers)  # no affine


@pytest.mark.parametrize("n_blocks", [6, 9])
@pytest.mark.parametrize("size", [32, 64, 100])
def test_resnet_shapes(n_blocks, size):
    g = resnet_generator(3, 1, n_blocks=n_blocks, ngf=8)
    assert g(np.zeros((1, size, size, 3), np.float32)).shape == (1, size, size, 1)


@pytest.mark.parametrize("size, logits", [(256, 30), (128, 14), (64, 6)])
def test_patchgan_logit_sizes(size, logits):
    d = nlayer_discriminator(3, 3, ndf=8, n_layers=3)
    x = np.zeros((1, size, size, 3), np.float32)
    assert d([x, x]).shape == (1, logits, logits, 1)


def test_n_layers_and_pixel_discriminators():
    x = np.zeros((2, 64, 64, 3), np.float32)
    assert nlayer_discriminator(3, 3, ndf=8, n_layers=2)([x, x]).shape == (2, 14, 14, 1)
    assert pixel_discriminator(3, 3, ndf=8)([x, x]).shape == (2, 64, 64, 1)
    cfg = ModelConfig(netD="n_layers", n_layers_D=4, ndf=8)
    assert build_discriminator(cfg, 1, 3)([x[..., :1], x]).shape == (2, 2, 2, 1)


def test_discriminator_is_conditional_on_the_input():
    d = nlayer_discriminator(1, 3, ndf=8)
    assert [tuple(t.shape) for t in d.inputs] == [(None, None, None, 1), (None, None, None, 3)]
    assert d.get_layer("conv0").kernel.shape == (4, 4, 4, 8)


def test_init_statistics():
    g = unet_generator(3, 3, num_downs=8, ngf=64)
    kernel = g.get_layer("down3_conv").kernel.numpy()
    assert abs(kernel.mean()) < 1e-3 and abs(kernel.std() - 0.02) < 5e-4
    gamma = g.get_layer("down3_norm").gamma.numpy()
    assert abs(gamma.mean() - 1.0) < 0.01 and abs(gamma.std() - 0.02) < 0.005
    assert not g.get_layer("down3_norm").beta.numpy().any()
    assert not g.get_layer("up0_deconv").bias.numpy().any()
    d = nlayer_discriminator(3, 3, ndf=64)
    k = d.get_layer("conv3").kernel.numpy()
    assert abs(k.std() - 0.02) < 5e-4


def test_batch_norm_matches_pytorch_settings():
    bn = unet_generator(3, 3, num_downs=5, ngf=8).get_layer("down1_norm")
    assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)


def _outputs_and_gradients(layer, x, power=2, **call_kwargs):
    """The layer's output and the gradients of sum(output ** power) for x and its weights."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        loss = tf.reduce_sum(y ** power)
    return [y] + tape.gradient(loss, [x] + layer.trainable_variables)


@pytest.mark.parametrize("kernel, stride, padding, size, filters", [
    (4, 2, "same", 1, 8), (4, 2, "same", 2, 8), (4, 2, "same", 3, 8), (4, 2, "same", 4, 8),
    (3, 1, "same", 4, 8), (4, 1, "valid", 4, 8), (3, 1, "valid", 3, 8),  # im2col
    (4, 1, "valid", 9, 1), (3, 1, "valid", 9, 2), (1, 1, "valid", 9, 1),  # taps / plain
    (4, 2, "same", 9, 8),  # plain convolution
])
def test_conv_fast_paths_match_conv2d_values_and_gradients(kernel, stride, padding, size,
                                                            filters):
    import keras
    import tensorflow as tf

    from tf_pix2pix.networks.common import Conv

    x = tf.constant(np.random.default_rng(size).normal(size=(2, size, size + 1, 5)), tf.float32)
    ref = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding,
                              bias_initializer="random_normal")
    ours = Conv(filters, kernel, strides=stride, padding=padding)
    ref(x)
    ours(x)
    ours.set_weights(ref.get_weights())

    for a, b in zip(_outputs_and_gradients(ref, x), _outputs_and_gradients(ours, x)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_conv_runs_the_ordinary_convolution_for_unknown_sizes():
    import tensorflow as tf

    from tf_pix2pix.networks.common import Conv

    layer = Conv(1, 4, padding="valid")
    layer.build((None, None, None, 3))
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    ops = {op.type for op in fn.get_concrete_function().graph.get_operations()}
    assert "Conv2D" in ops and "MatMul" not in ops
    static = tf.function(layer).get_concrete_function(tf.TensorSpec([1, 8, 8, 3]))
    ops = {op.type for op in static.graph.get_operations()}
    assert "MatMul" in ops and "Conv2D" not in ops


def _bn_pair(synchronized=False, channels=3):
    import keras

    from tf_pix2pix.networks.common import BatchNorm

    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                          gamma_initializer="random_normal",
                                          beta_initializer="random_normal")
    ours = BatchNorm(momentum=0.9, epsilon=1e-5, synchronized=synchronized)
    for layer in (ref, ours):
        layer.build((None, 4, 5, channels))
    ours.set_weights(ref.get_weights())
    return ref, ours


@pytest.mark.parametrize("synchronized", [False, True])
def test_batch_norm_running_variance_is_pytorchs_unbiased_one(synchronized):
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(2, 4, 5, 3)).astype(np.float32)
    _, bn = _bn_pair(synchronized)
    bn(x, training=True)
    flat = x.reshape(-1, 3).astype(np.float64)
    # torch.nn.BatchNorm2d(momentum=0.1): running = 0.9 running + 0.1 batch, var with ddof=1.
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * flat.var(0, ddof=1),
                               rtol=1e-5)


@pytest.mark.parametrize("synchronized", [False, True])
def test_batch_norm_outputs_and_gradients_match_keras(synchronized):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).normal(size=(2, 4, 5, 3)), tf.float32)

    for training in (True, False):
        # Fresh layers each time: a training call leaves different running variances.
        ref, ours = _bn_pair(synchronized)
        for a, b in zip(_outputs_and_gradients(ref, x, 3, training=training),
                        _outputs_and_gradients(ours, x, 3, training=training)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_batch_norm_keeps_bfloat16_activations():
    import tensorflow as tf

    from tf_pix2pix.networks.common import BatchNorm

    bn = BatchNorm(dtype="mixed_bfloat16")
    x = tf.random.normal([1, 4, 4, 8])
    y = bn(tf.cast(x, tf.bfloat16), training=True)
    assert y.dtype == tf.bfloat16 and bn.moving_variance.dtype == tf.float32
    expected = (x - tf.reduce_mean(x, [0, 1, 2])) / tf.math.reduce_std(x, [0, 1, 2])
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), expected.numpy(), atol=0.05)
    # Inference with the running statistics also stays in bfloat16.
    bn.moving_mean.assign(tf.fill([8], 1.0))
    bn.moving_variance.assign(tf.fill([8], 4.0))
    y = bn(tf.cast(x, tf.bfloat16), training=False)
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), ((x - 1.0) / 2.0).numpy(),
                               atol=0.05)


@pytest.mark.parametrize("size", [1, 2, 4, 5, 8])
def test_upconv_matches_conv2d_transpose_values_and_gradients(size):
    import keras
    import tensorflow as tf

    from tf_pix2pix.networks.common import UpConv

    x = tf.constant(np.random.default_rng(size).normal(size=(2, size, size + 1, 16)), tf.float32)
    ref = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same",
                                       bias_initializer="random_normal")
    ref(x)
    fast = UpConv(8, 4, strides=2, padding="same")
    fast(x)
    fast.set_weights(ref.get_weights())

    for a, b in zip(_outputs_and_gradients(ref, x), _outputs_and_gradients(fast, x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
