"""Times ResNet blocks forward and backward with the direct and the Winograd 3x3 convolution.

Usage:
  python benchmarks/bench_winograd.py                              # CycleGAN's blocks
  python benchmarks/bench_winograd.py --channels=1024 --height=32 --width=64   # pix2pixHD's
  ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_winograd.py      # the AVX2 class, emulated

A stack of ``--blocks`` ResNet blocks (reflection pad, 3x3 conv, instance norm, ReLU, reflection
pad, 3x3 conv, instance norm, residual add) of ``--channels`` channels on a ``--height`` x
``--width`` map, batch 1, as the ResNet generators have them (CycleGAN's: 9 blocks of 256 at
64x64 for 256x256 images; pix2pixHD's global generator: 9 blocks of 1,024 at 32x64 for 512x1024),
built twice from ``networks.resnet``'s layers with ``layer_switches(winograd=...)`` forced off and
on, timed alternately: one training pass (forward, then the gradients of the input and every
weight) and one inference pass. Per-layer timing is for choosing; whole steps decide
(``bench_train_step.py --winograd``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("channels", 256, "Channels of the blocks.")
flags.DEFINE_integer("height", 64, "Height of the feature map.")
flags.DEFINE_integer("width", 64, "Width of the feature map.")
flags.DEFINE_integer("blocks", 9, "ResNet blocks.")
flags.DEFINE_integer("repeats", 7, "Timed passes of each kind (after 2 warm-up passes).")


def blocks_model(channels: int, blocks: int):
    import keras

    from tf_pix2pix.networks.layers import ReflectionPad2D, conv, norm_layer

    inputs = keras.Input(shape=(None, None, channels))
    x = inputs
    for b in range(blocks):
        y = ReflectionPad2D(1)(x)
        y = conv(channels, 3, 1, True, 0.02, f"block{b}_conv1")(y)
        y = keras.layers.ReLU()(norm_layer("instance")(y))
        y = ReflectionPad2D(1)(y)
        y = norm_layer("instance")(conv(channels, 3, 1, True, 0.02, f"block{b}_conv2")(y))
        x = keras.layers.Add()([x, y])
    return keras.Model(inputs, x)


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks.common import machine, report, summary, time_calls
    from tf_pix2pix.networks.kernels import layer_switches

    x = tf.random.uniform([1, FLAGS.height, FLAGS.width, FLAGS.channels], -1, 1)
    fns = {}
    for name, winograd in (("direct", False), ("winograd", True)):
        with layer_switches(winograd=winograd):
            model = blocks_model(FLAGS.channels, FLAGS.blocks)

        @tf.function
        def train(x, model=model):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model(x, training=True)
                loss = tf.reduce_mean(y * y)
            return tape.gradient(loss, [x, *model.trainable_variables])

        infer = tf.function(lambda x, model=model: model(x, training=False))
        fns[name] = (train, infer)
    times = {f"{name}_{kind}": [] for name in fns for kind in ("train", "infer")}
    for _ in range(FLAGS.repeats):  # alternated
        for name, (train, infer) in fns.items():
            times[f"{name}_train"] += time_calls(lambda: [g.numpy() for g in train(x)],
                                                 warmup=2 if not times[f"{name}_train"] else 0,
                                                 repeats=1)
            times[f"{name}_infer"] += time_calls(lambda: infer(x).numpy(),
                                                 warmup=2 if not times[f"{name}_infer"] else 0,
                                                 repeats=1)
    medians = {k: summary(v)["median_s"] for k, v in times.items()}
    gflop = 2 * FLAGS.blocks * 2 * FLAGS.height * FLAGS.width * FLAGS.channels ** 2 * 9 / 1e9
    result = {"benchmark": "winograd_blocks", "channels": FLAGS.channels,
              "height": FLAGS.height, "width": FLAGS.width, "blocks": FLAGS.blocks,
              "conv_gflop_forward": gflop, **{f"{k}_s": v for k, v in medians.items()},
              "train_speedup": medians["direct_train"] / medians["winograd_train"],
              **machine()}
    report(result, [
        ("blocks", f"{FLAGS.blocks} x {FLAGS.channels} ch at {FLAGS.height}x{FLAGS.width}, "
                   f"{gflop:.1f} GFLOP of convolutions forward"),
        ("training pass direct / winograd", f"{medians['direct_train']:.3f} / "
                                            f"{medians['winograd_train']:.3f} s "
                                            f"({result['train_speedup']:.2f}x)"),
        ("inference pass (direct in both: inference keeps it)",
         f"{medians['direct_infer']:.3f} / {medians['winograd_infer']:.3f} s"),
    ])


if __name__ == "__main__":
    app.run(main)
