"""Times the training step of run_train.py's code path (paper configuration by default).

Usage:
  python benchmarks/bench_train_step.py --precision=float32
  python benchmarks/bench_train_step.py --precision=mixed_bfloat16 --steps=30
  python benchmarks/bench_train_step.py --model=cycle_gan --steps=8 --warmup=2
  python benchmarks/bench_train_step.py --patch_matmul=off   # A/B of the patch-matmul paths

It builds the trainer exactly as ``run_train.py`` does (``train_lib.build_trainer``) on facades
TFRecords (or a synthetic 256x256 set when ../shared/data is absent; CycleGAN: a synthetic
unpaired 256x256 set, in the reference's configuration) and times
``model.train_step(next(iterator))`` including the host sync for the losses, as the loop does.
It also measures this machine's float32 and bfloat16 matmul rates and the step's FLOPs (from the
TensorFlow profiler on the traced step) to report the step's fraction of the float32 floor.
For CycleGAN it also times one generator's inference on a 256x256 image (what CPU serving costs).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras mixed-precision policy.")
flags.DEFINE_integer("steps", 20, "Timed steps (after warm-up).")
flags.DEFINE_integer("warmup", 5, "Untimed steps first (tracing, allocation).")
flags.DEFINE_integer("batch_size", 1, "Batch size.")
flags.DEFINE_integer("crop_size", 256, "Crop size (load_size = crop * 286 / 256).")
flags.DEFINE_enum("model", "pix2pix", ["pix2pix", "cycle_gan"], "Model.")
flags.DEFINE_string("netG", "", "Generator; default: the model's (unet_256, resnet_9blocks).")
flags.DEFINE_string("data_dir", "", "TFRecords; default: facades from ../shared/data.")
flags.DEFINE_list("plain_layers", [], "Fast layers to run as plain TensorFlow ops, for A/B "
                  "measurements per CPU class: any of Conv, UpConv, InstanceNorm.")
flags.DEFINE_enum("patch_matmul", "auto", ["auto", "on", "off"],
                  "The convolutions' patch-matmul paths (networks.common.patch_matmul_enabled): "
                  "by CPU class (auto) or forced, for A/B measurements per CPU class.")


def matmul_rate(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` (median of repeats)."""
    import tensorflow as tf

    from benchmarks.common import summary, time_calls

    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    fn = tf.function(lambda x: tf.matmul(x, x))
    times = time_calls(lambda: fn(a).numpy(), warmup=3, repeats=repeats)
    return 2 * n ** 3 / summary(times)["median_s"] / 1e9


def conv_macs(model, input_shapes) -> float:
    """Multiply-accumulates of the model's convolutions for one forward pass at these shapes."""
    import keras
    import numpy as np

    # UpConv subclasses Conv2DTranspose, so it is counted as one.
    layers = [layer for layer in model.layers
              if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = probe([np.zeros(s, np.float32) for s in input_shapes])
    total = 0.0
    for layer, out in zip(layers, outputs):
        kh, kw = layer.kernel_size
        if isinstance(layer, keras.layers.Conv2DTranspose):
            cout, cin = layer.kernel.shape[2], layer.kernel.shape[3]
            # Every input pixel meets every tap: H_in * W_in * kh * kw * Cin * Cout.
            pixels = out.shape[1] * out.shape[2] / (layer.strides[0] * layer.strides[1])
        else:
            cin, cout = layer.kernel.shape[2], layer.kernel.shape[3]
            pixels = out.shape[1] * out.shape[2]
        total += out.shape[0] * pixels * kh * kw * cin * cout
    return total


def cycle_gan_step_flops(model, batch_size: int, size: int, identity: bool) -> float:
    """Convolution FLOPs of one CycleGAN step (2 FLOPs per multiply-accumulate).

    Generators: 4 passes (6 with the identity terms), each forward + backward (3x forward). The
    G update runs D_A and D_B forward with input gradients (2x forward each); the D update runs
    each D on a real and a pooled fake batch with both gradients (3x forward each): 16 D forwards.
    """
    shape = (batch_size, size, size, 3)
    g = conv_macs(model.G_A, [shape])
    d = conv_macs(model.D_A, [shape])
    return 2.0 * (3 * (6 if identity else 4) * g + 16 * d)


def step_flops(model, batch_size: int, size: int) -> float:
    """Convolution FLOPs of one training step (2 FLOPs per multiply-accumulate).

    G runs forward once and backward once (input and weight gradients: 2x forward). D runs forward
    three times (real, fake for the D update, fake again for the G update); its D update takes
    input and weight gradients of both forwards (4x) and the G update only input gradients (1x):
    8 D forwards in all. Element-wise ops are not counted.
    """
    shape = (batch_size, size, size, 3)
    g = conv_macs(model.generator, [shape])
    d = conv_macs(model.discriminator, [shape, shape])
    return 2.0 * (3 * g + 8 * d)


def layers_of(model, classes: tuple) -> list:
    """Every layer of the model's networks that is an instance of ``classes``."""
    networks = [getattr(model, n) for n in ("generator", "discriminator", "G_A", "G_B", "D_A",
                                            "D_B") if getattr(model, n, None) is not None]
    return [layer for network in networks for layer in network._flatten_layers()
            if classes and isinstance(layer, classes)]


def set_patch_matmul(model, mode: str) -> None:
    """Forces the layers' ``patch_matmul`` on or off (``auto``: leaves them) before tracing."""
    from tf_pix2pix.networks import common

    if mode == "auto":
        return
    for layer in layers_of(model, (common.Conv, common.UpConv)):
        layer.patch_matmul = mode == "on"


def set_plain_layers(model, names) -> int:
    """Switches the model's fast layers of the classes ``names`` to their plain path (the one
    ``make_portable`` uses for converters) before the step is traced; returns how many."""
    from tf_pix2pix.networks import common

    layers = layers_of(model, tuple(getattr(common, name) for name in names))
    for layer in layers:
        layer.portable = True
    return len(layers)


def main(argv):
    del argv
    from benchmarks.common import (facades_records, machine, report, scratch_dir, summary,
                                   time_calls, unpaired_records)
    from tf_pix2pix.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from tf_pix2pix.hardware import cpu_class
    from tf_pix2pix.train_lib import build_trainer

    cycle_gan = FLAGS.model == "cycle_gan"
    data_dir = FLAGS.data_dir or (unpaired_records() if cycle_gan else facades_records())
    load = FLAGS.crop_size * 286 // 256
    netG = FLAGS.netG or ("resnet_9blocks" if cycle_gan else "unet_256")
    # CycleGAN: the reference's defaults (instance norm, no dropout, LSGAN, pool of 50).
    model_kw = dict(norm="instance", no_dropout=True) if cycle_gan else {}
    config = ExperimentConfig(
        data=DataConfig(data_dir=data_dir, direction="AtoB" if cycle_gan else "BtoA",
                        batch_size=FLAGS.batch_size, load_size=load, crop_size=FLAGS.crop_size),
        model=ModelConfig(model=FLAGS.model, netG=netG, **model_kw),
        train=TrainConfig(model_dir=scratch_dir("bench_step_"), precision=FLAGS.precision,
                          val_max_examples=0, gan_mode="lsgan" if cycle_gan else "vanilla"))
    trainer = build_trainer(config, progress=False)
    model, iterator = trainer.model, trainer.iterator
    plain = set_plain_layers(model, FLAGS.plain_layers)
    set_patch_matmul(model, FLAGS.patch_matmul)

    def one_step():
        values = model.train_step(next(iterator))
        return [float(v) for v in values.values()]

    times = time_calls(one_step, warmup=FLAGS.warmup, repeats=FLAGS.steps)
    stats = summary(times)
    extra, rows = {}, []
    if cycle_gan:
        import tensorflow as tf

        flops = cycle_gan_step_flops(model, FLAGS.batch_size, FLAGS.crop_size,
                                     config.train.lambda_identity > 0)
        image = tf.random.uniform([1, FLAGS.crop_size, FLAGS.crop_size, 3], -1, 1)
        infer = summary(time_calls(lambda: model.generate(image).numpy(), warmup=3, repeats=10))
        extra["generator_inference_s"] = infer["median_s"]
        rows.append(("G_A inference, 1 image", f"{infer['median_s']:.3f} s median of 10"))
    else:
        flops = step_flops(model, FLAGS.batch_size, FLAGS.crop_size)
    f32 = matmul_rate("float32")
    # Under an oneDNN ISA cap below AVX-512 (the AVX2 emulation) oneDNN has no bfloat16 matmul
    # and aborts the process rather than raising.
    capped = cpu_class() != cpu_class(isa_cap="")
    bf16 = float("nan") if capped else matmul_rate("bfloat16")
    floor = flops / (f32 * 1e9)
    result = {"benchmark": "train_step", "model": FLAGS.model, "precision": FLAGS.precision,
              "netG": netG, "plain_layers": sorted(FLAGS.plain_layers),
              "patch_matmul": FLAGS.patch_matmul, **extra,
              "batch_size": FLAGS.batch_size, "crop_size": FLAGS.crop_size, **stats,
              "step_gflop": flops / 1e9, "matmul_f32_gflops": f32, "matmul_bf16_gflops": bf16,
              "f32_floor_s": floor, "floor_fraction": floor / stats["median_s"],
              "images_per_s": FLAGS.batch_size / stats["median_s"], **machine()}
    report(result, [
        ("precision", FLAGS.precision),
        ("plain layers", f"{','.join(FLAGS.plain_layers)} ({plain} layers)" if plain else "none"),
        ("patch matmul", FLAGS.patch_matmul),
        ("step median / min / max", f"{stats['median_s']:.3f} / {stats['min_s']:.3f} / "
                                    f"{stats['max_s']:.3f} s ({FLAGS.steps} steps)"),
        ("step FLOPs", f"{flops / 1e9:.1f} GFLOP"),
        ("matmul f32 / bf16", f"{f32:.0f} / {bf16:.0f} GFLOP/s"),
        ("f32 floor", f"{floor:.3f} s ({100 * floor / stats['median_s']:.0f}% of the step)"),
        *rows,
    ])


if __name__ == "__main__":
    app.run(main)
