import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ModelConfig
from tf_pix2pix.networks import (build_discriminator, build_generator, count_params,
                                 generator_layout, n_blocks, nlayer_discriminator, num_downs,
                                 pixel_discriminator, receptive_field, resnet_generator,
                                 unet_generator)
from tf_pix2pix.tools.import_torch import export_state_dict

from torch_files import reference_generator_float64


def test_the_generators_downsamplings_blocks_and_layouts():
    assert [num_downs(g) for g in ("unet_256", "unet_128", "unet_64", "unet_32")] == [8, 7, 6, 5]
    assert num_downs("resnet_9blocks") == num_downs("resnet_6blocks") == 2
    assert (n_blocks("resnet_9blocks"), n_blocks("resnet_6blocks")) == (9, 6)
    assert generator_layout(ModelConfig(netG="encoder_decoder_128")) == ("unet", 7, 0, 0, 0)
    assert generator_layout(ModelConfig(netG="resnet_6blocks")) == ("resnet", 2, 6, 0, 0)


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

    from tf_pix2pix.networks.kernels import Conv

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


def _assert_same_function(reference, ours, x, k):
    """``ours(x, k)`` equals ``reference(x, k)`` in value and in both gradients of a random
    linear loss, to float32 rounding relative to each tensor's scale (sums in another order)."""
    import tensorflow as tf

    results = []
    for fn in (reference, ours):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = fn(x, k)
            weights = tf.constant(np.random.default_rng(0).normal(size=y.shape), tf.float32)
            loss = tf.reduce_sum(y * weights)
        results.append([y, *tape.gradient(loss, [x, k])])
    for a, b in zip(*results):
        assert a.shape == b.shape
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5 * np.abs(a.numpy()).max())


@pytest.mark.parametrize("kernel, stride, padding, size", [
    (4, 2, "same", 9), (4, 2, "same", 10), (4, 2, "valid", 9), (4, 1, "valid", 9),
    (3, 1, "same", 7), (3, 2, "same", 8), (7, 1, "valid", 9),
])
def test_patch_matmul_conv_matches_conv2d_values_and_gradients(kernel, stride, padding, size):
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import patch_matmul_conv

    rng = np.random.default_rng(kernel * size)
    x = tf.constant(rng.normal(size=(2, size, size + 1, 5)), tf.float32)
    k = tf.constant(rng.normal(size=(kernel, kernel, 5, 6)), tf.float32)
    _assert_same_function(lambda x, k: tf.nn.conv2d(x, k, stride, padding.upper()),
                          lambda x, k: patch_matmul_conv(x, k, (stride, stride), padding), x, k)


@pytest.mark.parametrize("kernel, padding, size", [(4, "same", 5), (3, "valid", 5),
                                                   (3, "same", 4), (4, "valid", 3)])
def test_patch_matmul_conv_transpose_matches_values_and_gradients(kernel, padding, size):
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import patch_matmul_conv_transpose

    rng = np.random.default_rng(kernel * size)
    x = tf.constant(rng.normal(size=(2, size, size + 1, 5)), tf.float32)
    k = tf.constant(rng.normal(size=(kernel, kernel, 6, 5)), tf.float32)  # [kh, kw, Cout, Cin]
    out = [(s * 2 if padding == "same" else (s - 1) * 2 + kernel) for s in (size, size + 1)]
    _assert_same_function(
        lambda x, k: tf.nn.conv2d_transpose(x, k, [2, *out, 6], 2, padding.upper()),
        lambda x, k: patch_matmul_conv_transpose(x, k, (2, 2), padding), x, k)


@pytest.mark.parametrize("cpu_class, gpu, forced, expected", [
    ("AVX2", False, None, True), ("AVX-512", False, None, False), ("other", False, None, False),
    ("AVX2", True, None, False), ("AVX-512", False, True, True), ("AVX2", False, False, False),
])
def test_the_patch_matmul_paths_are_chosen_by_cpu_class(monkeypatch, cpu_class, gpu, forced,
                                                        expected):
    import keras
    import tensorflow as tf

    from tf_pix2pix import hardware
    from tf_pix2pix.networks.kernels import Conv, UpConv

    monkeypatch.setattr(hardware, "this_cpu_class", lambda: cpu_class)
    monkeypatch.setattr(hardware, "has_gpu", lambda: gpu)
    layers = [Conv(8, 4, strides=2, padding="same"), Conv(8, 4, padding="valid"),
              UpConv(8, 4, strides=2, padding="same")]
    other_kernels = [Conv(8, 3, padding="same"), Conv(8, 7, padding="valid")]
    for layer in layers + other_kernels:
        want = expected and not any(layer is other for other in other_kernels)
        layer = type(layer).from_config({**layer.get_config(), "patch_matmul": forced})
        x = keras.Input((12, 12, 3), batch_size=1)
        layer(x)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x))
            return tape.gradient(loss, layer.trainable_variables)

        graph = step.get_concrete_function(tf.TensorSpec([1, 12, 12, 3])).graph
        ops = {op.type for op in graph.get_operations()}
        assert ("ExtractImagePatches" in ops) == want, (layer.kernel_size, ops)


def test_conv_runs_the_ordinary_convolution_for_unknown_sizes():
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import Conv

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

    from tf_pix2pix.networks.layers import BatchNorm

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

    from tf_pix2pix.networks.layers import BatchNorm

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


@pytest.mark.parametrize("size, patch_matmul", [(1, True), (2, True), (4, True), (5, True),
                                                 (8, True), (12, True), (12, False)])
def test_upconv_matches_conv2d_transpose_values_and_gradients(size, patch_matmul):
    import keras
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import UpConv

    x = tf.constant(np.random.default_rng(size).normal(size=(2, size, size + 1, 16)), tf.float32)
    ref = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same",
                                       bias_initializer="random_normal")
    ref(x)
    # Sizes over 8x8: the patch-matmul gradients or oneDNN's.
    fast = UpConv(8, 4, strides=2, padding="same", patch_matmul=patch_matmul)
    fast(x)
    fast.set_weights(ref.get_weights())

    for a, b in zip(_outputs_and_gradients(ref, x), _outputs_and_gradients(fast, x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


# --- The reference's ResNet generator, computed independently in numpy -----------------------
# PyTorch semantics, written from the definitions of its layers (keras weight layouts):
# Conv2d(k, stride, padding) cross-correlates a zero-padded input; ConvTranspose2d(k, stride,
# padding, output_padding) scatters x[i] * w[t] to output row i * stride + t - padding, with an
# output of (n - 1) * stride - 2 * padding + k + output_padding rows.

def _np_conv(x, kernel, bias=None, stride=1, pad=0):
    """x [H, W, Cin], kernel [kh, kw, Cin, Cout] -> [Ho, Wo, Cout]."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    ho, wo = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.zeros((ho, wo, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride] @ \
                kernel[i, j]
    return out + (0 if bias is None else bias)


def _np_conv_transpose(x, kernel, bias=None, stride=2, pad=1, output_padding=1):
    """x [H, W, Cin], kernel [kh, kw, Cout, Cin] (keras layout) -> PyTorch's output."""
    h, w, _ = x.shape
    kh, kw = kernel.shape[:2]
    full = np.zeros(((h - 1) * stride + kh + output_padding,
                     (w - 1) * stride + kw + output_padding, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
                "c,yxoc->yxo", x[i, j], kernel)
    ho = (h - 1) * stride - 2 * pad + kh + output_padding
    wo = (w - 1) * stride - 2 * pad + kw + output_padding
    return full[pad:pad + ho, pad:pad + wo] + (0 if bias is None else bias)


def _np_instance_norm(x):
    return (x - x.mean((0, 1))) / np.sqrt(x.var((0, 1)) + 1e-5)


def _reflect(x, p):
    return np.pad(x, ((p, p), (p, p), (0, 0)), mode="reflect")


def _np_depthwise(x, taps, stride):
    """Each channel of x [H, W, C] cross-correlated with the 2-D filter ``taps``."""
    eye = np.eye(x.shape[2])
    return _np_conv(x, taps[:, :, None, None] * eye[None, None], stride=stride)


def _np_blur_down(x):
    """CUT's Downsample(filt_size=3): ReflectionPad2d(1), then the [1, 2, 1]^T [1, 2, 1] / 16
    filter per channel (groups = channels), stride 2."""
    a = np.array([1.0, 2.0, 1.0])
    return _np_depthwise(_reflect(x, 1), np.outer(a, a) / 16, stride=2)


def _np_up(x):
    """CUT's Upsample(filt_size=4, stride=2) as written: ReplicationPad2d(1), then
    conv_transpose2d with the per-channel filter outer([1, 3, 3, 1])^2 / 64 * 4, stride 2,
    padding 1 + 1, then [1:, 1:] and (even filter) [:-1, :-1]."""
    a = np.array([1.0, 3.0, 3.0, 1.0])
    taps = np.outer(a, a) / 64 * 4
    eye = np.eye(x.shape[2])
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    out = _np_conv_transpose(padded, taps[:, :, None, None] * eye[None, None], stride=2, pad=2,
                             output_padding=0)
    return out[1:, 1:][:-1, :-1]


def _np_resnet_generator(g, x, n_blocks, antialias=False, antialias_up=False):
    """The reference's ResnetGenerator (instance norm, no dropout) with the weights of ``g``;
    ``antialias``/``antialias_up`` as CUT's ResnetGenerator builds it."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    w = lambda name: [np.asarray(v, np.float64) for v in g.get_layer(name).get_weights()]  # noqa
    x = relu(_np_instance_norm(_np_conv(_reflect(x, 3), *w("stem_conv"))))
    for i in range(2):
        if antialias:
            x = _np_blur_down(relu(_np_instance_norm(_np_conv(x, *w(f"down{i}_conv"), pad=1))))
        else:
            x = relu(_np_instance_norm(_np_conv(x, *w(f"down{i}_conv"), stride=2, pad=1)))
    for b in range(n_blocks):
        y = relu(_np_instance_norm(_np_conv(_reflect(x, 1), *w(f"block{b}_conv1"))))
        x = x + _np_instance_norm(_np_conv(_reflect(y, 1), *w(f"block{b}_conv2")))
    for i in range(2):
        if antialias_up:
            x = relu(_np_instance_norm(_np_conv(_np_up(x), *w(f"up{i}_deconv"), pad=1)))
        else:
            x = relu(_np_instance_norm(_np_conv_transpose(x, *w(f"up{i}_deconv"))))
    return np.tanh(_np_conv(_reflect(x, 3), *w("head_conv")))


@pytest.mark.parametrize("size, antialias", [((16, 16), False), ((12, 20), False),
                                            ((16, 16), True), ((12, 20), True)])
def test_resnet_generator_computes_the_reference_function(size, antialias):
    """Whole-network equality with an independent numpy computation of the reference's layers
    (CycleGAN's, and CUT's antialiased down- and upsampling)."""
    import keras

    g = resnet_generator(3, 3, n_blocks=2, ngf=4, norm="instance", use_dropout=False,
                         antialias=antialias, antialias_up=antialias)
    rng = np.random.default_rng(0)
    # Random biases too, so every term of the function is exercised (they start at zero).
    g.set_weights([rng.normal(0, 0.3, v.shape).astype(np.float32) for v in g.get_weights()])
    x = rng.uniform(-1, 1, (1, *size, 3)).astype(np.float32)
    expected = _np_resnet_generator(g, x[0].astype(np.float64), n_blocks=2, antialias=antialias,
                                    antialias_up=antialias)
    actual = keras.ops.convert_to_numpy(g(x))[0]
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(actual, expected, atol=2e-5)


def test_torch_upconv_impulse_lands_where_pytorch_puts_it():
    """An impulse at input (i, j) spreads to output rows/cols 2i-1..2i+1 (PyTorch padding=1)."""
    from tf_pix2pix.networks.layers import TorchUpConv

    layer = TorchUpConv(1, 3, use_bias=False)
    x = np.zeros((1, 4, 4, 1), np.float32)
    layer(x)
    taps = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1, 1)
    layer.set_weights([taps])
    x[0, 2, 1, 0] = 1.0
    y = np.asarray(layer(x))[0, ..., 0]
    assert y.shape == (8, 8)
    expected = np.zeros((8, 8), np.float32)
    expected[3:6, 1:4] = taps[..., 0, 0]  # rows 2*2-1 .. 2*2+1, cols 2*1-1 .. 2*1+1
    np.testing.assert_array_equal(y, expected)
    # An impulse at (0, 0) loses the tap row and column that PyTorch's padding crops away.
    x[:] = 0
    x[0, 0, 0, 0] = 1.0
    y = np.asarray(layer(x))[0, ..., 0]
    np.testing.assert_array_equal(y[:2, :2], taps[1:, 1:, 0, 0])
    assert not y[2:].any() and not y[:, 2:].any()


def test_torch_upconv_equals_numpy_conv_transpose_on_random_data():
    from tf_pix2pix.networks.layers import TorchUpConv

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 7, 3)).astype(np.float32)
    layer = TorchUpConv(4, 3, use_bias=True, bias_initializer="random_normal")
    assert layer(x).shape == (1, 10, 14, 4)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(np.asarray(layer(x))[0], _np_conv_transpose(x[0], kernel, bias),
                               atol=1e-5)


def test_norm_none_convs_have_no_bias_as_in_the_reference():
    """The reference's use_bias is "norm is InstanceNorm2d": false under --norm none too."""
    g = resnet_generator(3, 3, n_blocks=1, ngf=4, norm="none")
    for name in ("stem_conv", "down0_conv", "block0_conv1", "up0_deconv"):
        assert g.get_layer(name).bias is None, name
    assert g.get_layer("head_conv").bias is not None  # built with bias=True in the reference
    u = unet_generator(3, 3, num_downs=5, ngf=4, norm="none")
    assert u.get_layer("down1_conv").bias is None and u.get_layer("up1_deconv").bias is None
    assert u.get_layer("up0_deconv").bias is not None
    d = nlayer_discriminator(3, 3, ndf=4, norm="none")
    assert d.get_layer("conv1").bias is None
    assert d.get_layer("conv0").bias is not None and d.get_layer("logits").bias is not None
    p = pixel_discriminator(3, 3, ndf=4, norm="none")
    assert p.get_layer("conv1").bias is None and p.get_layer("logits").bias is None


def test_cycle_gan_networks_have_the_reference_parameter_counts():
    cfg = ModelConfig(model="cycle_gan", netG="resnet_9blocks", norm="instance", no_dropout=True)
    assert count_params(build_generator(cfg, 3, 3)) == 11_378_179
    d = build_discriminator(cfg, 3, 3, conditional=False)
    assert count_params(d) == 2_764_737
    assert [tuple(t.shape) for t in d.inputs] == [(None, None, None, 3)]
    assert d(np.zeros((1, 256, 256, 3), np.float32)).shape == (1, 30, 30, 1)


@pytest.mark.parametrize("netG, size", [("resnet_6blocks", 24), ("unet_32", 64)])
def test_resize_conv_upsampling_shapes(netG, size):
    cfg = ModelConfig(netG=netG, ngf=4, upsample="resize_conv", norm="instance")
    g = build_generator(cfg, 3, 1)
    assert g(np.zeros((2, size, size, 3), np.float32)).shape == (2, size, size, 1)
    assert g.get_layer("up0_deconv").kernel.shape[:2] == (3, 3)


def test_resize_conv_has_no_stride_two_pattern_on_a_constant_input():
    """Checkerboard check: a constant input stays constant through resize_conv; the transposed
    conv (same weights' count) shows the stride-2 pattern."""
    import keras

    from tf_pix2pix.networks.layers import TorchUpConv, upsample

    x = keras.Input((None, None, 8))
    models = {mode: keras.Model(x, upsample(x, 4, mode, TorchUpConv(4, 3), True, 0.02, "up"))
              for mode in ("transpose", "resize_conv")}
    constant = np.ones((1, 6, 6, 8), np.float32)
    resized = np.asarray(models["resize_conv"](constant))
    assert resized.shape == (1, 12, 12, 4)
    np.testing.assert_allclose(resized, np.broadcast_to(resized[:, :1, :1], resized.shape),
                               rtol=1e-6)
    transposed = np.asarray(models["transpose"](constant))[0, 2:-2, 2:-2]  # interior
    assert np.abs(transposed[0::2] - transposed[1::2]).max() > 1e-3


@pytest.mark.parametrize("shape", [(1, 9, 7, 5), (3, 6, 8, 4)])
def test_instance_norm_equals_keras_group_norm_values_and_gradients(shape):
    import keras
    import tensorflow as tf

    from tf_pix2pix.networks.layers import InstanceNorm

    x = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, shape), tf.float32)
    ref = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False)
    fast = InstanceNorm(epsilon=1e-5)
    for a, b in zip(_outputs_and_gradients(ref, x, power=3),
                    _outputs_and_gradients(fast, x, power=3)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    # Each (image, channel) plane is standardised on its own.
    y = fast(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1, rtol=1e-3)
    # Unknown batch (serving) works too, and bfloat16 stays bfloat16.
    fn = tf.function(fast, input_signature=[tf.TensorSpec([None, None, None, shape[3]])])
    np.testing.assert_allclose(fn(x).numpy(), y, atol=1e-6)
    with_bf16 = InstanceNorm(dtype="mixed_bfloat16")
    assert with_bf16(tf.cast(x, tf.bfloat16)).dtype == tf.bfloat16


def test_encoder_decoder_is_the_unet_without_skips():
    from keras import layers

    for netG, count in (("encoder_decoder_256", 39_075_459), ("encoder_decoder_128", 30_684_803)):
        g = build_generator(ModelConfig(netG=netG), 3, 3)
        assert count_params(g) == count
        assert not any(isinstance(layer, layers.Concatenate) for layer in g.layers)
    small = build_generator(ModelConfig(netG="encoder_decoder_128", ngf=4), 3, 3)
    x = np.zeros((1, 128, 128, 3), np.float32)
    assert small(x).shape == (1, 128, 128, 3)
    # Each decoder block sees only the block below: its transposed conv takes 8ngf, not 16ngf.
    assert small.get_layer("up5_deconv").kernel.shape == (4, 4, 32, 32)
    unet = build_generator(ModelConfig(netG="unet_128", ngf=4), 3, 3)
    assert unet.get_layer("up5_deconv").kernel.shape == (4, 4, 32, 64)


@pytest.mark.parametrize("netD, n_layers, field", [("pixel", 3, 1), ("n_layers", 1, 16),
                                                   ("basic", 3, 70), ("n_layers", 5, 286)])
def test_patchgan_receptive_fields_of_the_paper(netD, n_layers, field):
    """The formula, and the measured support of one output's gradient in the input."""
    import tensorflow as tf

    config = ModelConfig(netD=netD, n_layers_D=n_layers, ndf=2, norm="none")
    assert receptive_field(netD, n_layers) == field
    d = build_discriminator(config, 1, 1, conditional=False)
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 320, 320, 1)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = d(x)
        centre = logits[0, logits.shape[1] // 2, logits.shape[2] // 2, 0]
    rows = np.flatnonzero(np.abs(tape.gradient(centre, x).numpy()[0, :, :, 0]).sum(axis=1))
    assert rows.max() - rows.min() + 1 == field


def test_dropout_is_keras_dropout_on_one_device_and_differs_between_replicas():
    import keras
    import tensorflow as tf

    from tf_pix2pix.networks.layers import Dropout

    x = tf.ones([2, 6, 6, 4])
    ours, theirs = Dropout(0.5, seed=11), keras.layers.Dropout(0.5, seed=11)
    for _ in range(3):  # the seed advances identically call after call
        np.testing.assert_array_equal(ours(x, training=True), theirs(x, training=True))
    np.testing.assert_array_equal(ours(x, training=False), x)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layer = Dropout(0.5, seed=11)
    single = Dropout(0.5, seed=11)
    per_replica = strategy.experimental_local_results(
        strategy.run(tf.function(lambda: layer(x[:1], training=True))))
    first, second = (r.numpy() for r in per_replica)
    assert not np.array_equal(first, second)  # Keras's own layer gives two equal masks here
    np.testing.assert_array_equal(first, single(x[:1], training=True))
    for mask in (first, second):
        assert set(np.unique(mask)) == {0.0, 2.0} and 0.2 < (mask == 0).mean() < 0.8


def test_layer_switches_are_constructor_arguments_and_make_portable_copies():
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import Conv, UpConv, layer_switches
    from tf_pix2pix.networks.layers import InstanceNorm, make_portable

    config = ModelConfig(netG="resnet_6blocks", ngf=8, norm="instance", no_dropout=True)
    g = build_generator(config, 3, 3)
    fast = [layer for layer in g.layers if isinstance(layer, (Conv, UpConv, InstanceNorm))]
    assert fast and not any(layer.portable for layer in fast)
    portable = make_portable(g)
    copies = [layer for layer in portable.layers if isinstance(layer, (Conv, UpConv,
                                                                        InstanceNorm))]
    assert len(copies) == len(fast) and all(layer.portable for layer in copies)
    assert not any(layer.portable for layer in fast)  # the original keeps its fast paths
    x = tf.random.uniform([2, 16, 24, 3], -1, 1, seed=0)
    np.testing.assert_allclose(portable(x).numpy(), g(x).numpy(), atol=1e-5)
    # A scope sets the defaults of the layers built inside it; an argument wins over it.
    with layer_switches(portable=("InstanceNorm",), patch_matmul=True):
        scoped = build_generator(config, 3, 3)
        forced = Conv(4, 4, patch_matmul=False)
    norms = [layer for layer in scoped.layers if isinstance(layer, InstanceNorm)]
    convs = [layer for layer in scoped.layers if isinstance(layer, Conv)]
    assert norms and all(layer.portable for layer in norms)
    assert convs and all(layer.patch_matmul is True and not layer.portable for layer in convs)
    assert forced.patch_matmul is False
    assert Conv.from_config(convs[0].get_config()).patch_matmul is True
    assert Conv(4, 4).patch_matmul is None  # outside the scope: by CPU class


# --- CUT's antialiased sampling -----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 8, 8, 2), (2, 7, 10, 3)])
def test_blur_downsample_is_the_reference_downsample(shape):
    from tf_pix2pix.networks.layers import BlurDownsample

    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = np.asarray(BlurDownsample()(x))
    assert out.shape == (shape[0], (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1, shape[3])
    for n in range(shape[0]):
        np.testing.assert_allclose(out[n], _np_blur_down(x[n].astype(np.float64)), atol=1e-6)
    # A mutation: the kernel must be the normalised [1, 2, 1] outer product, not a box filter.
    assert np.abs(out[0] - _np_conv(_reflect(x[0], 1), np.full((3, 3, 1, 1), 1 / 9)
                                    * np.eye(shape[3])[None, None], stride=2)).max() > 1e-3


@pytest.mark.parametrize("shape", [(1, 4, 4, 1), (2, 5, 7, 3)])
def test_bilinear_upsample_is_the_reference_upsample(shape):
    """CUT's Upsample equals bilinear x2 with half-pixel centres within 2.4e-7 (the issue's
    measurement on PyTorch); here against its definition in float64."""
    from tf_pix2pix.networks.layers import bilinear_upsample

    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    out = np.asarray(bilinear_upsample("up")(x))
    assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], shape[3])
    for n in range(shape[0]):
        np.testing.assert_allclose(out[n], _np_up(x[n].astype(np.float64)), atol=1e-6)


def _np_patchgan(d, x, n_layers):
    """CUT's antialiased NLayerDiscriminator (instance norm) with the weights of ``d``."""
    lrelu = lambda v: np.where(v > 0, v, 0.2 * v)  # noqa: E731
    w = lambda name: [np.asarray(v, np.float64) for v in d.get_layer(name).get_weights()]  # noqa
    x = _np_blur_down(lrelu(_np_conv(x, *w("conv0"), pad=1)))
    for n in range(1, n_layers + 1):
        x = lrelu(_np_instance_norm(_np_conv(x, *w(f"conv{n}"), pad=1)))
        if n < n_layers:
            x = _np_blur_down(x)
    return _np_conv(x, *w("logits"), pad=1)


def test_antialiased_patchgan_computes_the_reference_function():
    import tensorflow as tf

    d = nlayer_discriminator(3, 3, ndf=4, n_layers=3, norm="instance", conditional=False,
                             antialias=True)
    rng = np.random.default_rng(2)
    d.set_weights([rng.normal(0, 0.3, v.shape).astype(np.float32) for v in d.get_weights()])
    x = rng.uniform(-1, 1, (1, 40, 36, 3)).astype(np.float32)
    expected = _np_patchgan(d, x[0].astype(np.float64), 3)
    actual = np.asarray(d(x))[0]
    assert actual.shape == expected.shape == (3, 2, 1)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    # The receptive field CUT's D has: measured support of the centre output's gradient.
    config = ModelConfig(ndf=2, norm="none", netG="resnet_9blocks")
    big = build_discriminator(config, 1, 1, conditional=False, antialias=True)
    image = tf.constant(rng.normal(size=(1, 200, 200, 1)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(image)
        logits = big(image)
        centre = logits[0, logits.shape[1] // 2, logits.shape[2] // 2, 0]
    rows = np.flatnonzero(np.abs(tape.gradient(centre, image).numpy()[0, :, :, 0]).sum(axis=1))
    assert rows.max() - rows.min() + 1 == receptive_field("basic", 3, antialias=True) == 84


def test_xavier_init_is_pytorchs_untruncated_xavier_normal():
    from tf_pix2pix.networks.layers import conv_init

    kernel = np.asarray(conv_init(0.02, "xavier")((3, 3, 256, 256)))
    fan_in = fan_out = 9 * 256
    assert abs(kernel.std() - 0.02 * np.sqrt(2 / (fan_in + fan_out))) < 2e-5
    # Untruncated: about 0.27% of a normal lies beyond 3 sigma (a truncated one has none).
    assert (np.abs(kernel) > 3 * kernel.std()).mean() > 0.001


# --- CUT's patch projector -------------------------------------------------------------------

def test_patch_sampling_and_projection():
    import tensorflow as tf

    from tf_pix2pix.networks.patch_sample import (l2_normalize, patch_ids, patch_projector,
                                                  sample_patches)

    seed = tf.constant([4, 5], tf.int64)
    ids = patch_ids(64, 16, seed).numpy()
    assert len(set(ids)) == 16 and ids.min() >= 0 and ids.max() < 64
    np.testing.assert_array_equal(ids, patch_ids(64, 16, seed))  # stateless
    assert sorted(patch_ids(9, 256, seed).numpy()) == list(range(9))  # min(P, H*W), a permutation
    features = np.random.default_rng(0).normal(size=(2, 8, 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(sample_patches(features, ids),
                                  features.reshape(2, 64, 5)[:, ids])
    x = tf.constant([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x), [[3 / (5 + 1e-7), 4 / (5 + 1e-7)], [0.0, 0.0]])
    # The reference's MLPs for the default layers' channels: 560,384 parameters.
    f = patch_projector([3, 128, 256, 256, 256], 256)
    assert count_params(f) == 560_384
    out = f([tf.ones([2, 7, c]) for c in (3, 128, 256, 256, 256)])
    assert [tuple(o.shape) for o in out] == [(2, 7, 256)] * 5
    # Unit rows up to the reference's + 1e-7 (small at init: the MLP's outputs are ~4e-3 long).
    np.testing.assert_allclose(tf.norm(out[1], axis=-1), 1.0, rtol=1e-4)


# --- Winograd F(4x4, 3x3) ----------------------------------------------------------------------

def _winograd_bound(x, kernel):
    """Elementwise float32 error bound of F(4x4, 3x3): the unit roundoff times the transforms'
    amplification (the product of the squared infinity norms of A^T, G and B^T: each tile passes
    through them on both sides) plus the direct sum's 9 * C_in terms, times the convolution of the
    magnitudes |x| * |g| (the bound of a sum of products' rounding)."""
    import tensorflow as tf

    from tf_pix2pix.networks import kernels

    norm = lambda m: np.abs(m).sum(axis=1).max()  # noqa: E731
    amplification = (norm(kernels.WINOGRAD_AT) * norm(kernels.WINOGRAD_G)
                     * norm(kernels.WINOGRAD_BT)) ** 2 + 9 * x.shape[-1]
    magnitude = tf.nn.conv2d(np.abs(x), np.abs(kernel), 1, "VALID").numpy()
    return 2.0 ** -24 * amplification * magnitude


@pytest.mark.parametrize("shape, filters", [((2, 10, 13, 5), 7), ((1, 18, 18, 16), 8),
                                            ((3, 7, 6, 3), 4)])
def test_winograd_conv_values_and_gradients(shape, filters):
    """Odd and even sizes, batches, channel counts that divide nothing; against float64."""
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import winograd_conv3x3

    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape)
    kernel = rng.normal(size=(3, 3, shape[-1], filters))
    cotangent = rng.normal(size=(shape[0], shape[1] - 2, shape[2] - 2, filters))

    def run(conv, dtype):
        xt, kt = tf.constant(x, dtype), tf.constant(kernel, dtype)
        with tf.GradientTape() as tape:
            tape.watch([xt, kt])
            y = conv(xt, kt)
            loss = tf.reduce_sum(y * tf.constant(cotangent, dtype))
        return [t.numpy() for t in (y, *tape.gradient(loss, [xt, kt]))]

    exact = run(lambda a, b: tf.nn.conv2d(a, b, 1, "VALID"), tf.float64)
    ours = run(winograd_conv3x3, tf.float32)
    assert ours[0].shape == exact[0].shape
    assert np.all(np.abs(ours[0] - exact[0]) <= _winograd_bound(x, kernel))
    # Both gradients are the same algorithm on transformed tensors: 1e-5 of their scale, the
    # order of the forward's relative error (measured 2e-6 to 2e-5).
    for got, want in zip(ours[1:], exact[1:]):
        np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_a_wrong_winograd_transform_fails(monkeypatch):
    import tensorflow as tf

    from tf_pix2pix.networks import kernels

    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=(1, 9, 9, 4)), rng.normal(size=(3, 3, 4, 2))
    wrong = kernels.WINOGRAD_G.copy()
    wrong[3, 1] = 1 / 13  # 1/12 in the algorithm
    monkeypatch.setattr(kernels, "WINOGRAD_G", wrong)
    out = kernels.winograd_conv3x3(tf.constant(x, tf.float32), tf.constant(kernel, tf.float32))
    exact = tf.nn.conv2d(x, kernel, 1, "VALID").numpy()
    # The bound the values test applies catches it.
    assert np.any(np.abs(out.numpy() - exact) > _winograd_bound(x, kernel))


def test_conv_takes_winograd_in_training_only():
    """Training's 3x3 convolutions of 128+ channels run Winograd; inference (prediction, export,
    the faithfulness tests) keeps the direct convolution, bit for bit."""
    import tensorflow as tf

    from tf_pix2pix.networks.kernels import Conv, winograd_enabled, winograd_tiles

    cycle_gan = winograd_tiles((1, 66, 66, 256))  # the ResNet blocks' padded 64x64 maps
    hd_512 = winograd_tiles((1, 18, 34, 1024))    # pix2pixHD's global generator at 512x256
    assert (cycle_gan, hd_512, winograd_tiles((None, 34, 66, 1024))) == (256, 32, 128)
    assert winograd_tiles((2, 18, 34, 1024)) == 64 and winograd_tiles((1, 7, 7, 8)) == 4
    assert winograd_enabled(None, 256, 256, tf.float32, cycle_gan)
    assert not winograd_enabled(None, 64, 256, tf.float32, cycle_gan)
    assert not winograd_enabled(None, 256, 256, tf.bfloat16, cycle_gan)
    assert not winograd_enabled(None, 1024, 1024, tf.float32, hd_512)  # too few tiles
    assert winograd_enabled(None, 1024, 1024, tf.float32, 2 * hd_512)  # two images
    assert winograd_enabled(True, 3, 3, tf.bfloat16, 1) and not winograd_enabled(
        False, 256, 256, tf.float32, cycle_gan)
    x = tf.constant(np.random.default_rng(1).normal(size=(1, 14, 14, 128)), tf.float32)
    on, off = Conv(128, 3, winograd=True), Conv(128, 3, winograd=False)
    auto = Conv(128, 3)
    assert not auto._winograd_applies(x) and auto._winograd_applies(tf.zeros((2, 34, 34, 128)))
    on.build(x.shape)
    off.build(x.shape)
    off.set_weights(on.get_weights())
    assert on.get_config()["winograd"] is True
    np.testing.assert_array_equal(on(x), off(x))
    trained, direct = on(x, training=True).numpy(), off(x, training=True).numpy()
    assert not np.array_equal(trained, direct)  # a different algorithm ran ...
    np.testing.assert_allclose(trained, direct, atol=1e-4 * np.abs(direct).max())  # ... the same


@pytest.mark.parametrize("size", [(6, 8), (7, 5)])
def test_avg_pool_exclusive_is_torch_count_include_pad_false(size):
    """pix2pixHD's downsampling between discriminator scales: window of output i = rows
    2i - 1 .. 2i + 1, divided by the pixels of the window inside the image."""
    from tf_pix2pix.networks.multiscale import AvgPoolExclusive

    x = np.random.default_rng(0).uniform(-1, 1, (1, *size, 2))
    out = AvgPoolExclusive()(tf.constant(x, tf.float32)).numpy()[0]
    h, w = (size[0] - 1) // 2 + 1, (size[1] - 1) // 2 + 1
    assert out.shape == (h, w, 2)
    for i in range(h):
        for j in range(w):
            window = x[0, max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
            np.testing.assert_allclose(out[i, j], window.mean((0, 1)), atol=1e-6)


def test_vgg_features_are_relu_k_1_and_frozen():
    import keras

    from tf_pix2pix.networks.vgg import vgg19_features

    model = vgg19_features(None)
    assert not model.trainable_variables
    x = tf.random.uniform([1, 32, 48, 3], -1, 1)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(1, 32, 48, 64), (1, 16, 24, 128), (1, 8, 12, 256),
                                             (1, 4, 6, 512), (1, 2, 3, 512)]
    # relu2_1 is block2_conv1's activation: ReLU(conv(maxpool(relu1_2))).
    inner = keras.Model(model.inputs, model.get_layer("block2_conv1").output)
    np.testing.assert_allclose(outs[1], inner(x), atol=1e-6)
    assert float(tf.reduce_min(outs[1])) >= 0


def _float64_reference_case(config, images, tmp_path, n_down, n_blocks, seed=0):
    """Our generator with random weights, and the reference's module computing in float64 with
    the same weights (PyTorch, in a subprocess)."""
    generator = models.for_config(config).build_generator(config)
    rng = np.random.default_rng(seed)
    generator.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                           for w in generator.get_weights()])
    state = export_state_dict(generator, config)
    expected = reference_generator_float64(state, images, tmp_path, images.shape[-1],
                                           config.model.ngf, n_down, n_blocks)
    out = tf.function(lambda x: generator(x, training=False))(tf.constant(images)).numpy()
    return out, expected


def test_pix2pix_hd_global_generator_at_512x1024_is_float64_faithful(tmp_path):
    """pix2pixHD's global generator (width 8, its 4 downsamplings, 9 blocks) on a one-hot label
    map at 512x1024: within 1e-4 of the reference's float64 function (the fused instance norm
    used before was percent-level away here)."""
    config = models.resolve("pix2pix_hd", netG="global", ngf=8, label_nc=8, no_instance=True)
    labels = np.zeros((512, 1024), np.int32)
    rng = np.random.default_rng(1)
    for k in range(1, 8):
        y0, x0 = rng.integers(0, 400), rng.integers(0, 900)
        labels[y0:y0 + rng.integers(30, 300), x0:x0 + rng.integers(30, 500)] = k
    images = np.eye(8, dtype=np.float32)[labels][None]
    out, expected = _float64_reference_case(config, images, tmp_path, n_down=4, n_blocks=9)
    assert np.abs(out - expected).max() < 1e-4
    assert np.abs(expected).std() > 0.05  # a real image, not a constant


def test_cycle_gan_resnet_generator_at_512x512_is_float64_faithful(tmp_path):
    config = models.resolve("cycle_gan", netG="resnet_9blocks", ngf=8)
    images = np.random.default_rng(2).uniform(-1, 1, (1, 512, 512, 3)).astype(np.float32)
    out, expected = _float64_reference_case(config, images, tmp_path, n_down=2, n_blocks=9)
    assert np.abs(out - expected).max() < 1e-4
    assert np.abs(expected).std() > 0.05
