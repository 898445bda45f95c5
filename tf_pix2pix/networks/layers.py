"""The reference's layers in Keras: initialisation, batch norm with PyTorch's running
variance, affine-free instance norm, replica-aware dropout, reflection padding, PyTorch's
transposed convolution, the resize-conv upsampling, and the paper's test-time mode for batch
norm (:func:`frozen_statistics`).

The speed kernels these layers and the builders use (``Conv``, ``UpConv``) are ``kernels``'.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import keras
import tensorflow as tf

from tf_pix2pix.configuration import INIT_TYPES, UPSAMPLE_MODES
from tf_pix2pix.networks import kernels, moments
from tf_pix2pix.networks.kernels import Conv, UpConv


def conv_init(gain: float = 0.02, init_type: str = "normal") -> keras.initializers.Initializer:
    """The reference's weight inits for convs and linear layers.

    ``normal`` (pix2pix, CycleGAN): N(0, gain). ``xavier`` (CUT): PyTorch's ``xavier_normal_``
    with ``gain``, N(0, gain * sqrt(2 / (fan_in + fan_out))) untruncated (Keras's
    ``GlorotNormal`` truncates, so it is not used).
    """
    if init_type == "normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=gain)
    if init_type == "xavier":
        return keras.initializers.VarianceScaling(scale=gain ** 2, mode="fan_avg",
                                                  distribution="untruncated_normal")
    raise ValueError(f"unknown init_type {init_type!r}; use one of {', '.join(INIT_TYPES)}")


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


# Read by BatchNorm when it is traced or run; set only through frozen_statistics() (a context
# variable, so concurrent threads and nested scopes do not see each other's setting).
_FROZEN_STATISTICS = contextvars.ContextVar("tf_pix2pix_frozen_statistics", default=False)


@contextlib.contextmanager
def frozen_statistics() -> Iterator[None]:
    """Batch norm called with ``training=True`` inside this scope normalises with the batch's
    own statistics but leaves its running statistics alone: the paper's test-time mode.

    Functions traced inside the scope contain no update at all, so an exported paper-mode
    SavedModel serves concurrent requests without touching its variables.
    """
    token = _FROZEN_STATISTICS.set(True)
    try:
        yield
    finally:
        _FROZEN_STATISTICS.reset(token)


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class BatchNorm(keras.layers.BatchNormalization):
    """``BatchNormalization`` with PyTorch's running variance and statistics that do not drift.

    PyTorch's ``BatchNorm2d`` (the reference) normalises with the biased batch variance but
    updates ``running_var`` with the unbiased one (Bessel's correction, ``n / (n - 1)``); Keras
    updates it with the biased one, which makes eval-mode outputs drift from the reference where
    ``n`` is small (the U-Net's 2x2 and 4x4 levels at batch size 1). Here the running variance is
    the reference's. On 4-D channels-last inputs the training-mode statistics, normalisation and
    gradient are :func:`moments.normalize`'s (blocked float32 sums, two-pass variance: exact to
    float32 rounding at every size, as PyTorch's float64 accumulation is); the synchronized
    (multi-replica) version sums each replica's blocks, then all-reduces, with the same
    correction. Inference normalises with the running statistics through the fused kernel (no
    moments taken). Under :func:`frozen_statistics` training mode leaves the running statistics
    unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (mask is None and not self.renorm and len(inputs.shape) == 4
                   and self.axis in (-1, 3) and self.scale and self.center)
        if not fusable:
            if training and _FROZEN_STATISTICS.get():
                raise NotImplementedError("frozen_statistics needs 4-D channels-last inputs")
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                is_training=False)
            return tf.cast(outputs, self.compute_dtype)
        context = tf.distribute.get_replica_context() if self.synchronized else None
        if context is not None:
            outputs, mean, variance, count = _synchronized_batch_norm(
                inputs, gamma, beta, self.epsilon, context)
        else:
            outputs, mean, variance = moments.normalize(inputs, self.epsilon, batch=True,
                                                        scale=gamma, offset=beta)
            shape = tf.shape(inputs)
            count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        if _FROZEN_STATISTICS.get():
            return tf.cast(outputs, self.compute_dtype)
        unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(
            self.moving_variance * m + tf.stop_gradient(unbiased) * (1.0 - m))
        return tf.cast(outputs, self.compute_dtype)


def _synchronized_batch_norm(inputs, gamma, beta, epsilon, context):
    """Batch norm over all replicas' batches: blocked local sums, all-reduced; two-pass
    variance. Differentiated by TensorFlow (through the all-reduce). Returns the output, the
    mean, the biased variance and the global count."""
    x = tf.cast(inputs, tf.float32)
    shape = tf.shape(x)
    count = context.all_reduce(tf.distribute.ReduceOp.SUM,
                               tf.cast(shape[0] * shape[1] * shape[2], tf.float32))
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, moments.sum_nhwc(x, batch=True))
    mean = total / count
    squares = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                 moments.sum_nhwc(tf.square(x - mean), batch=True))
    variance = squares / count
    outputs = tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)
    return outputs, mean, variance, count


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class InstanceNorm(keras.layers.Layer):
    """Affine-free instance normalisation (PyTorch's ``InstanceNorm2d`` default) on NHWC inputs.

    Each (image, channel) plane is normalised by its own mean and biased variance, in training
    and inference alike: ``GroupNormalization(groups=-1, center=False, scale=False)`` (tested),
    computed by :func:`moments.normalize` with blocked float32 sums and a two-pass variance, so it
    stays within float32 rounding of a float64 computation at every image size (TensorFlow's
    fused batch-norm kernel, used before, drifted to 1e-3 at 1024x2048 on random planes and 5e-2
    on label-like ones). Statistics in float32 under mixed precision, the output in the
    activation's dtype. ``portable`` (TFLite/ONNX converters) computes the same forward without
    the hand-written gradient.
    """

    def __init__(self, epsilon: float = 1e-5, portable: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.portable = kernels.switch("portable", self, portable)

    def call(self, inputs):
        if self.portable:
            mean, variance = moments.moments(inputs)
            out = (tf.cast(inputs, tf.float32) - mean) * tf.math.rsqrt(variance + self.epsilon)
            return tf.cast(out, self.compute_dtype)
        out, _, _ = moments.normalize(inputs, self.epsilon)
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "portable": self.portable}


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


HEADS = ("tanh", "logits")


def output_head(head: str) -> keras.layers.Layer:
    """A generator's last activation, in float32 under mixed precision: ``tanh`` for images in
    [-1, 1] (named ``tanh``), ``logits`` for unbounded class scores (named ``logits``)."""
    if head not in HEADS:
        raise ValueError(f"head={head!r}: use one of {', '.join(HEADS)}")
    return keras.layers.Activation("tanh" if head == "tanh" else "linear", name=head,
                                   dtype="float32")


def conv(filters: int, kernel: int, stride: int, bias: bool, gain: float, name: str,
         padding: str = "valid", init_type: str = "normal") -> keras.layers.Conv2D:
    return Conv(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                kernel_initializer=conv_init(gain, init_type), bias_initializer="zeros",
                name=name)


def blur_kernel() -> tf.Tensor:
    """The antialiasing filter of CUT's ``Downsample``: ``[1, 2, 1]^T [1, 2, 1] / 16``."""
    taps = tf.constant([1.0, 2.0, 1.0])
    return tf.tensordot(taps, taps, axes=0) / 16.0


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class BlurDownsample(keras.layers.Layer):
    """CUT's ``Downsample`` (Zhang, "Making convolutional networks shift-invariant again",
    2019): reflection pad 1, then each channel blurred by the fixed :func:`blur_kernel` with
    stride 2. No weights; ``H -> (H - 1) // 2 + 1``."""

    def call(self, x):
        channels = x.shape[-1]
        kernel = tf.cast(tf.tile(blur_kernel()[:, :, None, None], [1, 1, channels, 1]), x.dtype)
        x = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        return tf.nn.depthwise_conv2d(x, kernel, strides=[1, 2, 2, 1], padding="VALID")

    def compute_output_shape(self, shape):
        half = lambda d: None if d is None else (d - 1) // 2 + 1  # noqa: E731
        return (shape[0], half(shape[1]), half(shape[2]), shape[3])


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class BilinearUpsample(keras.layers.Layer):
    """CUT's ``Upsample`` (replicate pad 1, the fixed ``[1, 3, 3, 1]`` transposed filter, crop):
    that is bilinear x2 with half-pixel centres (``align_corners=False``), tested equal to it, so
    ``tf.image.resize`` computes it. (Keras's ``UpSampling2D`` does too, but cannot be traced
    with unknown height and width, as the ONNX export traces it.)"""

    def call(self, x):
        shape = tf.shape(x)
        out = tf.image.resize(x, 2 * shape[1:3], method="bilinear")
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, shape):
        double = lambda d: None if d is None else 2 * d  # noqa: E731
        return (shape[0], double(shape[1]), double(shape[2]), shape[3])


def bilinear_upsample(name: str) -> keras.layers.Layer:
    """CUT's upsampling (:class:`BilinearUpsample`)."""
    return BilinearUpsample(name=name)


def upsample(x, filters: int, mode: str, transpose: keras.layers.Layer, bias: bool, gain: float,
             name: str, init_type: str = "normal"):
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
      init_type: the conv's init (:func:`conv_init`).
    """
    if mode == "transpose":
        return transpose(x)
    if mode != "resize_conv":
        raise ValueError(f"unknown upsample mode {mode!r}; use one of {', '.join(UPSAMPLE_MODES)}")
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_resize")(x)
    x = ReflectionPad2D(1, name=f"{name}_pad")(x)
    return conv(filters, 3, 1, bias, gain, name, init_type=init_type)(x)


def make_portable(model: keras.Model) -> keras.Model:
    """A copy of ``model`` (same weights) whose fast layers run plain TensorFlow ops.

    The matmul paths of ``Conv``/``UpConv`` (and ``UpConv``'s size branch) and ``InstanceNorm``'s
    fused kernel compute the same function with ops that converters handle badly: TFLite has no
    training-mode ``FusedBatchNormV3`` and tf2onnx cannot convert a transposed conv inside a
    ``tf.cond``. Exports to TFLite and ONNX convert this copy; training and the SavedModel keep
    the fast paths.
    """
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, (Conv, UpConv, InstanceNorm)):
            config["portable"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
