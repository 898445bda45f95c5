"""CPU speed kernels: ``Conv`` and ``UpConv`` with matmul, im2col and patch-matmul paths that
compute the same function as Keras's ``Conv2D`` / ``Conv2DTranspose`` (tested) where oneDNN's CPU
convolutions are slow, and the switches that choose them.

Each fast layer takes ``patch_matmul`` (None: by CPU class; True/False: forced) and ``portable``
(plain ops only, for the TFLite/ONNX converters) as constructor arguments, kept in its
``get_config``; :func:`layer_switches` sets their defaults for the layers built inside it (the
benchmarks' A/B), ``layers.make_portable`` copies a model with every switch set to portable. The
layers the reference defines (norms, padding, PyTorch's transposed convolution) are ``layers``'.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import hardware


# The defaults layer_switches() sets for the layers built inside it.
_SWITCHES = contextvars.ContextVar("tf_pix2pix_layer_switches",
                                   default={"portable": (), "patch_matmul": None,
                                            "winograd": None})


class _Switched:
    """The switches of a fast layer, constructor arguments kept in its ``get_config``:
    ``patch_matmul`` (None: the patch-matmul paths by CPU class, ``patch_matmul_enabled``;
    True/False: forced), ``winograd`` (the same for :func:`winograd_conv3x3`,
    ``winograd_enabled``) and ``portable`` (plain ops only, for the TFLite/ONNX converters,
    ``make_portable``). Not given, they take :func:`layer_switches`' values."""

    def __init__(self, *args, patch_matmul: bool | None = None, portable: bool | None = None,
                 winograd: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.patch_matmul = switch("patch_matmul", self, patch_matmul)
        self.winograd = switch("winograd", self, winograd)
        self.portable = switch("portable", self, portable)

    def get_config(self):
        return {**super().get_config(), "patch_matmul": self.patch_matmul,
                "winograd": self.winograd, "portable": self.portable}


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class Conv(_Switched, keras.layers.Conv2D):
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
    * In training, 3x3 stride-1 "valid" convolutions (the ResNet blocks' after their reflection
      padding) with at least ``WINOGRAD_MIN_CHANNELS`` channels in and out and
      ``WINOGRAD_MIN_TILES`` output tiles, in float32: Winograd's F(4x4, 3x3)
      (:func:`winograd_conv3x3`, ``winograd_enabled``). Its rounding error, about twice the
      direct convolution's over a whole generator, is noise to training (GPU libraries pick
      Winograd kernels for the reference too) but would take the generator's function beyond
      the 2e-5 of the reference it keeps, so inference (``training`` not true: prediction,
      export, validation) computes the direct convolution.

    All compute the same function with the same weights (tested). They need static spatial
    sizes, as training has; with unknown sizes (serving) the ordinary convolution runs.
    """

    IM2COL_MAX_PIXELS = 16
    TAPS_MAX_COLUMNS = 64
    PATCH_MATMUL_KERNELS = ((4, 4),)

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

    def call(self, inputs, training=None):
        if training and self._winograd_applies(inputs):
            outputs = winograd_conv3x3(inputs, self.kernel)
            if self.use_bias:
                outputs = outputs + self.bias
            return self.activation(outputs)
        return super().call(inputs)

    def _winograd_applies(self, inputs) -> bool:
        return (not self.portable and None not in inputs.shape[1:3]
                and self.data_format == "channels_last" and self.groups == 1
                and self.dilation_rate == (1, 1) and self.kernel_size == (3, 3)
                and self.strides == (1, 1) and self.padding == "valid"
                and winograd_enabled(self.winograd, inputs.shape[-1], self.filters,
                                     inputs.dtype, winograd_tiles(inputs.shape)))

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


# Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast algorithms for convolutional
# neural networks", 2016), interpolation points 0, 1, -1, 2, -2 and infinity: a 6x6 input tile d
# and a 3x3 kernel g give the 4x4 output tile A^T [(G g G^T) * (B^T d B)] A.
WINOGRAD_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                       np.float64)
WINOGRAD_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                       [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
WINOGRAD_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                        [0, 1, -1, 8, -8, 1]], np.float64)
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MIN_TILES = 64


def winograd_tiles(input_shape) -> int:
    """4x4 output tiles of a valid 3x3 convolution of a ``[N, H, W, C]`` input (N unknown: 1)."""
    return (input_shape[0] or 1) * -(-(input_shape[1] - 2) // 4) * -(-(input_shape[2] - 2) // 4)


def winograd_enabled(forced: bool | None, channels_in: int, channels_out: int,
                     dtype, tiles: int) -> bool:
    """Whether a 3x3 stride-1 convolution runs :func:`winograd_conv3x3`: ``forced`` if given,
    else for float32 with at least ``WINOGRAD_MIN_CHANNELS`` channels in and out and at least
    ``WINOGRAD_MIN_TILES`` output tiles per call (:func:`winograd_tiles`), on CPUs.

    The thresholds come from per-layer and whole-step measurements (BENCHMARKS.md,
    "Winograd"): below them oneDNN's convolution is faster. The tiles: the kernel's transforms
    (36 x C_in x C_out values, forward and backward) cost the same however few tiles share them,
    while the bulk they save grows with the tiles. bfloat16 keeps oneDNN's convolution: with
    the bulk in bfloat16 the error is far above the direct bfloat16 convolution's, and with the
    bulk in float32 it is slower than that convolution. Not measured on GPUs: off there.
    """
    if forced is not None:
        return forced
    return (tf.as_dtype(dtype) == tf.float32 and not hardware.has_gpu()
            and min(channels_in, channels_out) >= WINOGRAD_MIN_CHANNELS
            and tiles >= WINOGRAD_MIN_TILES)


def _winograd_tiles(x: tf.Tensor, tiles_h: int, tiles_w: int,
                    channels_first: bool = False) -> tf.Tensor:
    """The 6x6 input tiles of ``x`` [N, H, W, C] (4 apart, overlapping by 2; the bottom and right
    zero-padded to whole tiles) as ``[36, N*tiles_h*tiles_w*C]``, tile positions first, then
    tiles and channels (``channels_first``: channels, then tiles)."""
    c = x.shape[-1]
    blocks_h, blocks_w = tiles_h + 1, tiles_w + 1
    x = tf.pad(x, [[0, 0], [0, 4 * blocks_h - x.shape[1]], [0, 4 * blocks_w - x.shape[2]],
                   [0, 0]])
    x = tf.reshape(x, [-1, blocks_h, 4, blocks_w, 4, c])
    # Rows 4t..4t+5 of tile t: block t's four rows and block t+1's first two; then columns.
    rows = tf.concat([x[:, :tiles_h], x[:, 1:, :2]], axis=2)
    tiles = tf.concat([rows[:, :, :, :tiles_w], rows[:, :, :, 1:, :2]], axis=4)
    order = [2, 4, 5, 0, 1, 3] if channels_first else [2, 4, 0, 1, 3, 5]
    return tf.reshape(tf.transpose(tiles, order), [36, -1])


def _winograd_forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    _, h, w, c = x.shape
    f = kernel.shape[-1]
    ho, wo = h - 2, w - 2
    tiles_h, tiles_w = -(-ho // 4), -(-wo // 4)
    dtype = x.dtype
    # The transforms as matmuls with Kronecker products: [36, 36] @ tiles, [36, 9] @ kernel.
    v = tf.matmul(tf.constant(np.kron(WINOGRAD_BT, WINOGRAD_BT), dtype),
                  _winograd_tiles(x, tiles_h, tiles_w))
    u = tf.matmul(tf.constant(np.kron(WINOGRAD_G, WINOGRAD_G), dtype), tf.reshape(kernel, [9, -1]))
    # The bulk: 36 independent [tiles, C] @ [C, F] products.
    m = tf.matmul(tf.reshape(v, [36, -1, c]), tf.reshape(u, [36, c, f]))
    y = tf.matmul(tf.constant(np.kron(WINOGRAD_AT, WINOGRAD_AT), dtype), tf.reshape(m, [36, -1]))
    y = tf.transpose(tf.reshape(y, [4, 4, -1, tiles_h, tiles_w, f]), [2, 3, 0, 4, 1, 5])
    return tf.reshape(y, [-1, 4 * tiles_h, 4 * tiles_w, f])[:, :ho, :wo]


def winograd_conv3x3(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """``conv2d(x, kernel, 1, "VALID")`` for a 3x3 kernel by Winograd's F(4x4, 3x3), with both
    gradients in the same form: 36 multiplications per 4x4 output tile instead of 144.

    oneDNN (as TensorFlow and PyTorch call it) computes 3x3 convolutions directly, at about its
    matmul rate: the ResNet generators' residual blocks run at that floor. Here each 6x6 input
    tile and the kernel are transformed (matmuls with fixed 36x36 and 36x9 matrices), multiplied
    as 36 independent ``[tiles, C_in] @ [C_in, C_out]`` products, and transformed back: 4x fewer
    multiplications in the bulk. The input gradient is the same algorithm on the zero-padded
    output gradient with the kernel rotated by 180 degrees and its channels swapped (the adjoint
    of a valid correlation); the kernel gradient pairs the transformed input tiles (recomputed
    from ``x``, so the memory kept is the plain convolution's) with the output gradient
    transformed by ``A``, tile position by tile position, and transforms back with ``G``.

    Float32 rounding: the transforms' coefficients (up to 8 and 1/24) make the result's error
    about 10x the direct convolution's (~1e-5 of the output's largest value, tested against an
    error bound); bfloat16 does not take this path. Needs static spatial sizes.
    """
    _, h, w, c = x.shape
    f = kernel.shape[-1]
    ho, wo = h - 2, w - 2
    tiles_h, tiles_w = -(-ho // 4), -(-wo // 4)

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            # Nothing of the backward pass before dy exists: else the executor computes the
            # parts that need only x and the kernel (their transforms) during the forward pass
            # and keeps them until here (measured: +420 MB over a ResNet generator's 18 block
            # convolutions).
            with tf.control_dependencies([dy]):
                x_, kernel_ = tf.identity(x), tf.identity(kernel)
            rotated = tf.transpose(kernel_[::-1, ::-1], [0, 1, 3, 2])
            dx = _winograd_forward(tf.pad(dy, [[0, 0], [2, 2], [2, 2], [0, 0]]), rotated)
            dtype = x.dtype
            # The input tiles again, channels first: [36, C, tiles]. (Computed as in the forward
            # pass, Grappler would merge the two and keep the forward's tiles alive until here.)
            v = tf.matmul(tf.constant(np.kron(WINOGRAD_BT, WINOGRAD_BT), dtype),
                          _winograd_tiles(x_, tiles_h, tiles_w, channels_first=True))
            # dy in 4x4 output tiles, [16, tiles * F], through A: [36, tiles, F].
            padded = tf.pad(dy, [[0, 0], [0, 4 * tiles_h - ho], [0, 4 * tiles_w - wo], [0, 0]])
            dy_tiles = tf.transpose(tf.reshape(padded, [-1, tiles_h, 4, tiles_w, 4, f]),
                                    [2, 4, 0, 1, 3, 5])
            dm = tf.matmul(tf.constant(np.kron(WINOGRAD_AT, WINOGRAD_AT), dtype),
                           tf.reshape(dy_tiles, [16, -1]), transpose_a=True)
            du = tf.matmul(tf.reshape(v, [36, c, -1]), tf.reshape(dm, [36, -1, f]))
            dkernel = tf.matmul(tf.constant(np.kron(WINOGRAD_G, WINOGRAD_G), dtype),
                                tf.reshape(du, [36, -1]), transpose_a=True)
            return dx, tf.reshape(dkernel, kernel.shape)

        # The kernel's transform only once x exists: it depends on the kernel alone, so the
        # executor would otherwise compute every layer's at the start of the step and keep them
        # all until their layer runs (measured: +2.2 GiB peak for pix2pixHD's 18 convolutions
        # of 1,024 channels, 151 MB each, at 512x256).
        with tf.control_dependencies([x]):
            kernel = tf.identity(kernel)
        return _winograd_forward(x, kernel), grad

    # A tensor, not the layer's variable: the gradient then reaches the variable through its read.
    return conv(x, tf.convert_to_tensor(kernel))

@contextlib.contextmanager
def layer_switches(portable: tuple[str, ...] = (), patch_matmul: bool | None = None,
                   winograd: bool | None = None) -> Iterator[None]:
    """Default switches of the fast layers built inside this scope (for A/B measurements).

    Args:
      portable: class names (``Conv``, ``UpConv``, ``InstanceNorm``) whose layers take their
        plain path.
      patch_matmul: forces the patch-matmul paths on or off (None: by CPU class).
      winograd: forces the Winograd path of 3x3 convolutions on or off (None: by measurement,
        ``winograd_enabled``).

    Layers keep the value they were built with (it is in their ``get_config``); a switch passed
    to a layer's constructor wins over the scope.
    """
    token = _SWITCHES.set({"portable": tuple(portable), "patch_matmul": patch_matmul,
                           "winograd": winograd})
    try:
        yield
    finally:
        _SWITCHES.reset(token)


def switch(name: str, layer: keras.layers.Layer, value):
    """The value of the switch ``name`` for ``layer``: ``value`` if given, else the scope's
    (:func:`layer_switches`)."""
    if value is not None:
        return value
    scope = _SWITCHES.get()
    if name == "portable":
        return type(layer).__name__ in scope["portable"]
    return scope[name]


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class UpConv(_Switched, keras.layers.Conv2DTranspose):
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
