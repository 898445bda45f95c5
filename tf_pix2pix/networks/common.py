"""Normalisation, initialisation and padding helpers shared by the network builders."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_pix2pix import hardware
from tf_pix2pix.config import UPSAMPLE_MODES


def conv_init(gain: float = 0.02) -> keras.initializers.Initializer:
    """The reference's ``normal`` init: conv weights drawn from N(0, gain)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=gain)


def use_bias(norm: str) -> bool:
    """The reference's rule: convs followed by a norm layer have a bias only under instance norm.

    The reference computes ``use_bias`` as "the norm layer is InstanceNorm2d", so under ``--norm
    none`` these convs have no bias either (README, faithfulness notes: we keep its function).
    Convs the reference builds with an explicit bias (the first and last discriminator convs, the
    outermost generator layers) pass ``True`` themselves.
    """
    return norm == "instance"


def norm_layer(norm: str, gain: float = 0.02, synchronized: bool = False,
               name: str | None = None) -> keras.layers.Layer:
    """Batch norm (PyTorch momentum/epsilon), affine-free instance norm, or identity.

    Args:
      norm: ``batch``, ``instance`` or ``none``.
      gain: standard deviation of batch norm's gamma init around 1, as in the reference.
      synchronized: use cross-replica batch statistics (for more than one replica).
      name: layer name.
    """
    if norm == "batch":
        return BatchNorm(
            momentum=0.9, epsilon=1e-5, synchronized=synchronized,
            gamma_initializer=keras.initializers.RandomNormal(1.0, gain),
            beta_initializer="zeros", name=name)
    if norm == "instance":
        # PyTorch's InstanceNorm2d default: no affine parameters, no running statistics.
        return InstanceNorm(epsilon=1e-5, name=name)
    if norm == "none":
        return keras.layers.Identity(name=name)
    raise ValueError(f"unknown norm {norm!r}")


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class BatchNorm(keras.layers.BatchNormalization):
    """``BatchNormalization`` with PyTorch's running variance and TensorFlow's fused kernel.

    PyTorch's ``BatchNorm2d`` (the reference) normalises with the biased batch variance but
    updates ``running_var`` with the unbiased one (Bessel's correction, ``n / (n - 1)``); Keras
    updates it with the biased one, which makes eval-mode outputs drift from the reference where
    ``n`` is small (the U-Net's 2x2 and 4x4 levels at batch size 1). Here the running variance is
    the reference's. On 4-D channels-last inputs the batch statistics, normalisation and gradient
    come from ``FusedBatchNormV3`` in the input's own dtype (about twice as fast on CPU as the
    Keras composite, with no float32 round trip under mixed precision); the synchronized
    (multi-replica) version uses Keras's cross-replica moments with the same correction.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (mask is None and not self.renorm and len(inputs.shape) == 4
                   and self.axis in (-1, 3) and self.scale and self.center)
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                is_training=False)
            return tf.cast(outputs, self.compute_dtype)
        if self.synchronized:
            x = tf.cast(inputs, tf.float32)
            mean, variance = self._moments(x, None)
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            context = tf.distribute.get_replica_context()
            if context is not None:
                count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
            outputs = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        else:
            # Training mode returns the batch mean and the unbiased batch variance.
            outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(
            self.moving_variance * m + tf.stop_gradient(unbiased) * (1.0 - m))
        return tf.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class InstanceNorm(keras.layers.Layer):
    """Affine-free instance normalisation (PyTorch's ``InstanceNorm2d`` default) on NHWC inputs.

    Each (image, channel) plane is normalised by its own mean and biased variance, in training
    and inference alike. It computes ``GroupNormalization(groups=-1, center=False, scale=False)``
    (tested) through TensorFlow's fused batch-norm kernel: the images of a batch are laid side by
    side as channels of one image, so the kernel's per-channel batch statistics are per-instance
    statistics. About twice as fast on CPU, forward and backward, as the Keras composite
    (BENCHMARKS.md), and it stays in the activation's dtype under mixed precision.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.portable = False  # set by make_portable(): plain ops for TFLite/ONNX converters

    def call(self, inputs):
        if self.portable:
            x = tf.cast(inputs, tf.float32)
            mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
            out = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
            return tf.cast(out, self.compute_dtype)
        single = inputs.shape[0] == 1  # training's usual batch of 1: no transpose needed
        if single:
            x = inputs
        else:
            shape = tf.shape(inputs)
            n, h, w, c = shape[0], shape[1], shape[2], shape[3]
            x = tf.reshape(tf.transpose(inputs, [1, 2, 0, 3]), [1, h, w, n * c])
        ones = tf.ones([tf.shape(x)[3]], tf.float32)
        out, _, _ = tf.compat.v1.nn.fused_batch_norm(x, ones, tf.zeros_like(ones),
                                                     epsilon=self.epsilon, is_training=True)
        if not single:
            out = tf.transpose(tf.reshape(out, [h, w, n, c]), [2, 0, 1, 3])
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class Dropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` whose masks differ between the replicas of a strategy.

    Keras's layer draws every mask's seed from one seed-generator state, which is the same on
    every replica, so under ``mirrored``/``multi_worker`` all replicas would drop the same units
    of their shares of the batch — correlated noise that one device never draws. Here the
    replica's id is folded into the seed (``stateless_fold_in``). Replica 0 (and so one device)
    keeps Keras's seed: the layer is then exactly Keras's (tested), and single-device runs are
    unchanged.
    """

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        replica = tf.cast(replica, tf.int32)
        seed = tf.where(replica == 0, seed,
                        tf.random.experimental.stateless_fold_in(seed, replica))
        return tf.nn.experimental.stateless_dropout(inputs, rate=self.rate, seed=seed,
                                                    noise_shape=self.noise_shape)


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class ReflectionPad2D(keras.layers.Layer):
    """Pads height and width by ``padding`` pixels, mirroring without repeating the edge."""

    def __init__(self, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class Conv(keras.layers.Conv2D):
    """``Conv2D`` with matmul paths for the shapes oneDNN's CPU convolutions run slowly.

    * Tiny inputs (at most ``IM2COL_MAX_PIXELS`` pixels, e.g. the U-Net's 4x4 and 2x2 encoder
      levels): the 4-33 MB kernel dominates, and oneDNN copies it into its blocked layout on every
      forward and backward call. Here the patches are gathered (im2col) and multiplied with the
      kernel as it is. (Leaving out the taps that only read padding, 12 of 16 at 2x2 -> 1x1, is
      slower: the gradient of the kernel slice costs more than the zeros it saves.)
    * Few output channels at stride 1 (``filters * kh * kw <= 64``, e.g. the PatchGAN's 1-channel
      logits conv, 30x30 from 512 channels at ~5 GFLOP/s in oneDNN): one matmul to every tap's
      contribution, ``[N*H*W, Cin] @ [Cin, kh*kw*filters]``, then a sum of the shifted taps.
    * On the AVX2 class, the other 4x4 convolutions (the U-Net's and the PatchGAN's:
      ``patch_matmul_conv``, patches @ kernel forward, the kernel's gradient a matmul of the same
      patches), where oneDNN's forward convolution is a GEMM fallback and its weight gradient slow
      (``patch_matmul_enabled``). Not the ResNet generator's 3x3 and 7x7 convolutions: their kept
      patches (9 and 49 times the input) tripled CycleGAN's peak memory (3.0 -> 9.1 GiB) for a
      step about 20 % faster, and recomputing them in the backward pass (4.7 GiB) lost the gain.

    All compute the same function with the same weights (tested). They need static spatial
    sizes, as training has; with unknown sizes (serving) the ordinary convolution runs.
    """

    IM2COL_MAX_PIXELS = 16
    TAPS_MAX_COLUMNS = 64
    PATCH_MATMUL_KERNELS = ((4, 4),)

    portable = False  # set by make_portable(): the plain convolution for TFLite/ONNX

    def convolution_op(self, inputs, kernel):
        h, w = inputs.shape[1], inputs.shape[2]
        kh, kw = self.kernel_size
        plain = (self.data_format != "channels_last" or self.dilation_rate != (1, 1)
                 or self.groups != 1 or h is None or w is None or self.portable)
        if not plain and h * w <= self.IM2COL_MAX_PIXELS:
            return self._im2col(inputs, kernel)
        if (not plain and self.strides == (1, 1) and self.padding == "valid"
                and self.filters * kh * kw <= self.TAPS_MAX_COLUMNS and kh * kw > 1):
            return self._taps(inputs, kernel)
        if (not plain and self.kernel_size in self.PATCH_MATMUL_KERNELS
                and patch_matmul_enabled(self.patch_matmul)):
            return patch_matmul_conv(inputs, kernel, self.strides, self.padding)
        return super().convolution_op(inputs, kernel)

    patch_matmul = None  # None: by CPU class (patch_matmul_enabled); True/False: forced

    def _im2col(self, inputs, kernel):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        pads = conv_pads(inputs.shape[1:3], self.kernel_size, self.strides, self.padding)
        ho, wo = [(size + sum(pad) - k) // stride + 1 for size, pad, k, stride in
                  zip(inputs.shape[1:3], pads, self.kernel_size, self.strides)]
        padded = tf.pad(inputs, [[0, 0], pads[0], pads[1], [0, 0]])
        # Patch channels in (i, j, c) order, the order of the kernel's reshape to [-1, filters].
        patches = tf.concat(
            [padded[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
             for i in range(kh) for j in range(kw)], axis=-1)
        out = tf.matmul(tf.reshape(patches, [-1, patches.shape[-1]]),
                        tf.reshape(kernel, [-1, self.filters]))
        return tf.reshape(out, [-1, ho, wo, self.filters])

    def _taps(self, inputs, kernel):
        kh, kw = self.kernel_size
        _, h, w, cin = inputs.shape
        ho, wo = h - kh + 1, w - kw + 1
        # [Cin, kh*kw*filters]: column block (i, j) holds tap (i, j) of every filter.
        per_tap = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [cin, -1])
        taps = tf.reshape(tf.matmul(tf.reshape(inputs, [-1, cin]), per_tap),
                          [-1, h, w, kh, kw, self.filters])
        return tf.add_n([taps[:, i:i + ho, j:j + wo, i, j, :]
                         for i in range(kh) for j in range(kw)])


def _patches(x, ksize, strides, pads):
    """im2col: [N, Ho, Wo, kh*kw*C] patches of the zero-padded ``x``, channels in (i, j, c) order
    (the order of a [kh, kw, C, F] kernel reshaped to [kh*kw*C, F])."""
    padded = tf.pad(x, [[0, 0], pads[0], pads[1], [0, 0]])
    return tf.image.extract_patches(padded, [1, *ksize, 1], [1, *strides, 1], [1, 1, 1, 1],
                                    "VALID")


def conv_pads(sizes, kernel_size, strides, padding):
    """[[top, bottom], [left, right]]: the zeros TensorFlow's ``padding`` ("same" or "valid")
    adds around inputs of these spatial sizes."""
    pads = []
    for size, k, stride in zip(sizes, kernel_size, strides):
        total = max((-(-size // stride) - 1) * stride + k - size, 0) if padding == "same" else 0
        pads.append([total // 2, total - total // 2])
    return pads


def patch_matmul_conv(x, kernel, strides, padding):
    """``conv2d(x, kernel, strides, padding)`` ("same" or "valid") as patches @ kernel.

    oneDNN's CPU convolutions with 4x4 kernels run well below its matmul rate, most of all on AVX2
    (its forward is a GEMM-based fallback there and its weight gradient a slow kernel). Here the
    forward is im2col (``extract_patches``) and one matmul, the kernel's gradient is the matmul of
    the same (kept) patches with the output gradient, and the input gradient is TensorFlow's
    ``Conv2DBackpropInput``. Same function and gradients as ``tf.nn.conv2d`` (tested).
    """
    kh, kw, cin, cout = kernel.shape
    pads = conv_pads(x.shape[1:3], (kh, kw), strides, padding)

    @tf.custom_gradient
    def conv(x, kernel):
        patches = _patches(x, (kh, kw), strides, pads)
        ho, wo = patches.shape[1], patches.shape[2]
        cols = tf.reshape(patches, [-1, kh * kw * cin])
        y = tf.reshape(tf.matmul(cols, tf.reshape(kernel, [-1, cout])), [-1, ho, wo, cout])

        def grad(dy):
            flat = tf.reshape(dy, [-1, cout])
            dkernel = tf.reshape(tf.matmul(cols, flat, transpose_a=True), kernel.shape)
            # The padding by name: TensorFlow's oneDNN kernel does not take explicit paddings
            # (with them the gradient runs TensorFlow's own kernel, several times slower).
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), strides, padding.upper())
            return dx, dkernel

        return y, grad

    # A tensor, not the layer's variable: the gradient then reaches the variable through its read.
    return conv(x, tf.convert_to_tensor(kernel))


def patch_matmul_conv_transpose(x, kernel, strides, padding):
    """``conv2d_transpose`` of ``x`` ("same": output size x stride; "valid": (size - 1) x stride +
    kernel size) with TensorFlow's kernel layout [kh, kw, Cout, Cin] and both gradients as
    matmuls.

    The forward is TensorFlow's ``Conv2DBackpropInput``. Its gradients are those of a convolution
    of the output gradient: the input gradient is ``conv2d(dy, kernel)`` and the kernel gradient
    pairs the same patches of ``dy`` with ``x``, so one im2col of ``dy`` serves two matmuls
    instead of oneDNN's forward and backward-weights convolutions (slow on the AVX2 class). Same
    function and gradients as ``Conv2DTranspose`` (tested).
    """
    kh, kw, cout, cin = kernel.shape
    sizes = [size * stride if padding == "same" else (size - 1) * stride + k
             for size, stride, k in zip(x.shape[1:3], strides, (kh, kw))]
    pads = conv_pads(sizes, (kh, kw), strides, padding)

    @tf.custom_gradient
    def conv_transpose(x, kernel):
        shape = tf.shape(x)
        out_shape = tf.stack([shape[0], *sizes, cout])
        # The padding by name: oneDNN's kernel does not take explicit paddings (see above).
        y = tf.nn.conv2d_transpose(x, kernel, out_shape, strides, padding.upper())

        def grad(dy):
            cols = tf.reshape(_patches(dy, (kh, kw), strides, pads), [-1, kh * kw * cout])
            dx = tf.reshape(tf.matmul(cols, tf.reshape(kernel, [-1, cin])), shape)
            dkernel = tf.matmul(cols, tf.reshape(x, [-1, cin]), transpose_a=True)
            return dx, tf.reshape(dkernel, kernel.shape)

        return y, grad

    return conv_transpose(x, tf.convert_to_tensor(kernel))


def patch_matmul_enabled(forced: bool | None = None) -> bool:
    """Whether convolutions take the patch-matmul paths (``patch_matmul_conv`` and
    ``patch_matmul_conv_transpose``): ``forced`` if given, else on the AVX2 class only.

    Measured per CPU class (BENCHMARKS.md, "CPU classes"): on AVX2, where oneDNN's forward
    convolution is a GEMM fallback and its weight gradient a slow kernel, they make the pix2pix
    step about 10 % faster; on AVX-512 oneDNN's own kernels are as fast for pix2pix (and faster
    for CycleGAN's 3x3 convolutions). Not measured on GPUs: off there.
    """
    if forced is not None:
        return forced
    return not hardware.has_gpu() and hardware.this_cpu_class() == "AVX2"


def make_portable(model: keras.Model, portable: bool = True) -> keras.Model:
    """Switches the model's fast layers to plain TensorFlow ops (in place) and returns it;
    ``portable=False`` switches them back.

    The matmul paths of ``Conv``/``UpConv`` (and ``UpConv``'s size branch) and ``InstanceNorm``'s
    fused kernel compute the same function with ops that converters handle badly: TFLite has no
    training-mode ``FusedBatchNormV3`` and tf2onnx cannot convert a transposed conv inside a
    ``tf.cond``. Exports to TFLite and ONNX use this; training and the SavedModel keep the fast
    paths.
    """
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (Conv, UpConv, InstanceNorm)):
            layer.portable = portable
    return model


def conv(filters: int, kernel: int, stride: int, bias: bool, gain: float, name: str,
         padding: str = "valid") -> keras.layers.Conv2D:
    return Conv(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                kernel_initializer=conv_init(gain), bias_initializer="zeros", name=name)


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class UpConv(keras.layers.Conv2DTranspose):
    """A 4x4 stride-2 "same" ``Conv2DTranspose`` with a faster path for tiny inputs.

    At the U-Net's bottleneck (inputs of 1x1 to 8x8 with 512-1024 channels) the oneDNN transposed
    convolution is several times slower than the same arithmetic written as one matmul,
    ``[N*H*W, Cin] @ [Cin, 16*Cout]``, followed by the overlap-add of the 16 kernel taps. Larger
    inputs run TensorFlow's transposed convolution, on the AVX2 class with both gradients as
    matmuls (``patch_matmul_conv_transpose``, ``patch_matmul_enabled``). The paths compute
    the same function with the same weights (tested); which one runs is decided per call from the
    input size, so any image size still works.
    """

    MATMUL_MAX_PIXELS = 64
    portable = False  # set by make_portable(): the plain transposed conv, no branch

    def call(self, inputs):
        h, w = inputs.shape[1], inputs.shape[2]
        if self.portable:
            out = self._conv_path(inputs)
        elif h is not None and w is not None:  # static sizes (training): no branch in the graph
            out = self._matmul_path(inputs) if h * w <= self.MATMUL_MAX_PIXELS else (
                self._conv_path(inputs))
        else:
            shape = tf.shape(inputs)
            out = tf.cond(shape[1] * shape[2] <= self.MATMUL_MAX_PIXELS,
                          lambda: self._matmul_path(inputs), lambda: self._conv_path(inputs))
        return out + self.bias if self.use_bias else out

    def _conv_path(self, inputs):
        if self.portable or not patch_matmul_enabled(self.patch_matmul) or (
                None in inputs.shape[1:3]):
            return keras.ops.conv_transpose(
                inputs, self.kernel, strides=self.strides, padding=self.padding,
                output_padding=self.output_padding, data_format=self.data_format,
                dilation_rate=self.dilation_rate)
        return patch_matmul_conv_transpose(inputs, self.kernel, self.strides, self.padding)

    patch_matmul = None  # None: by CPU class (patch_matmul_enabled); True/False: forced

    def _matmul_path(self, inputs):
        kh, kw, cout, cin = self.kernel.shape
        shape = tf.shape(inputs)
        n, h, w = shape[0], shape[1], shape[2]
        # (kh, kw, Cout, Cin) reshaped to [kh*kw*Cout, Cin] is used as it is, with no copy of
        # the (up to 33 MB) kernel: cols^T = K @ x^T. (x @ K^T, the kernel transposed inside the
        # matmul, runs 2-4x slower in oneDNN for 16-64 input pixels.)
        kernel = tf.reshape(self.kernel, [kh * kw * cout, cin])
        cols = tf.transpose(tf.matmul(kernel, tf.reshape(inputs, [-1, cin]), transpose_b=True))
        # Output row 2m + b receives tap ky = 2a + b from input row m - a (a, b in {0, 1}).
        # Unstacking the 16 taps makes the gradient one stack, not 16 zero-filled slice
        # gradients (an 8-D transpose to the same end is slow in bfloat16).
        taps = tf.unstack(tf.reshape(cols, [n, h, w, kh * kw, cout]), axis=3)
        phases = []
        for by in range(2):
            row = []
            for bx in range(2):
                row.append(tf.add_n([
                    tf.pad(taps[(2 * ay + by) * kw + 2 * ax + bx],
                           [[0, 0], [ay, 1 - ay], [ax, 1 - ax], [0, 0]])
                    for ay in range(2) for ax in range(2)]))
            phases.append(tf.stack(row, axis=3))
        full = tf.reshape(tf.stack(phases, axis=2), [n, 2 * h + 2, 2 * w + 2, cout])
        # "same" padding of a 4x4 stride-2 transposed conv crops one pixel on each side.
        return full[:, 1:2 * h + 1, 1:2 * w + 1, :]


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class TorchUpConv(keras.layers.Conv2DTranspose):
    """A stride-2 ``Conv2DTranspose`` equal to PyTorch's ``ConvTranspose2d(padding=p,
    output_padding=1)`` with ``kernel_size = 2p + 1`` (the ResNet generator's 3x3, p = 1).

    PyTorch's output rows are rows ``[p, p + 2n)`` of the full (``valid``) transposed convolution
    of an ``n``-row input; Keras's ``same`` padding keeps rows ``[0, 2n)`` instead, which shifts the
    image by one pixel per layer. Here the full result is computed and the reference's rows kept.
    (``patch_matmul_conv_transpose``'s gradients were measured here too, on the AVX2 class: no
    gain, so this layer keeps oneDNN's.)
    """

    def __init__(self, filters, kernel_size=3, **kwargs):
        kwargs.update(strides=2, padding="valid")
        super().__init__(filters, kernel_size, **kwargs)

    def call(self, inputs):
        p = (self.kernel_size[0] - 1) // 2
        shape = tf.shape(inputs)
        return super().call(inputs)[:, p:p + 2 * shape[1], p:p + 2 * shape[2], :]

    def compute_output_shape(self, shape):
        double = lambda d: None if d is None else 2 * d  # noqa: E731
        return (shape[0], double(shape[1]), double(shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        for key in ("strides", "padding"):
            config.pop(key, None)
        return config


def upsample(x, filters: int, mode: str, transpose: keras.layers.Layer, bias: bool, gain: float,
             name: str):
    """Upsamples the tensor ``x`` by 2: ``transpose`` (the reference's) or ``resize_conv``.

    ``resize_conv`` is nearest-neighbour x2 then a reflection-padded 3x3 conv (Odena et al., 2016),
    the fix proposed for the checkerboard artifacts of stride-2 transposed convolutions (reference
    issues #190, #518): every output pixel of a constant input then sees the same weights.

    Args:
      x: the input tensor.
      filters: output channels.
      mode: ``transpose`` applies ``transpose``; ``resize_conv`` builds the alternative.
      transpose: the reference's transposed-conv layer for this position.
      bias: whether the resize-conv's conv has a bias.
      gain: std of the N(0, gain) init.
      name: name of the conv (the resize and padding layers get ``name`` + a suffix).
    """
    if mode == "transpose":
        return transpose(x)
    if mode != "resize_conv":
        raise ValueError(f"unknown upsample mode {mode!r}; use one of {', '.join(UPSAMPLE_MODES)}")
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_resize")(x)
    x = ReflectionPad2D(1, name=f"{name}_pad")(x)
    return conv(filters, 3, 1, bias, gain, name)(x)
