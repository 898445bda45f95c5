"""Times the training step of run_train.py's code path (paper configuration by default).

Usage:
  python benchmarks/bench_train_step.py --precision=float32
  python benchmarks/bench_train_step.py --precision=mixed_bfloat16 --steps=30
  python benchmarks/bench_train_step.py --model=cycle_gan --steps=8 --warmup=2
  python benchmarks/bench_train_step.py --model=cut --options=cut_mode=fastcut --steps=8
  python benchmarks/bench_train_step.py --patch_matmul=off   # A/B of the patch-matmul paths
  python benchmarks/bench_train_step.py --model=cycle_gan --winograd=off   # A/B of Winograd
  python benchmarks/bench_train_step.py --model=pix2pix_hd --crop_size=512 --steps=3 --warmup=2

It builds the trainer exactly as ``run_train.py`` does (``train_lib.build_trainer``) on facades
TFRecords (or a synthetic 256x256 set when ../shared/data is absent; CycleGAN: a synthetic
unpaired 256x256 set, in the reference's configuration; pix2pixHD: synthetic label maps
``2 * crop_size`` wide and ``crop_size`` high, 35 classes + instances, with the VGG loss on random
VGG19 weights) and times
``model.train_step(next(iterator))`` including the host sync for the losses, as the loop does.
It also measures this machine's float32 and bfloat16 matmul rates and the step's FLOPs (from the
TensorFlow profiler on the traced step) to report the step's fraction of the float32 floor, and
times the AtoB generator's inference on one image (what CPU serving costs). The data, defaults
and networks come from the model's registry entry, so any registered model can be timed.
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
flags.DEFINE_integer("crop_size", 256, "Crop size (load_size = crop * 286 / 256); for label "
                     "maps (pix2pixHD) the height of 2:1 images.")
flags.DEFINE_string("model", "pix2pix", "A registered model (tf_pix2pix.models).")
flags.DEFINE_string("netG", "", "Generator; default: the model's reference one.")
flags.DEFINE_string("data_dir", "", "TFRecords; default: facades from ../shared/data.")
flags.DEFINE_list("options", [], "Further run_train options as name=value (cut_mode=fastcut, "
                  "num_patches=64, ...); a mode option sets the model's defaults as in run_train.")
flags.DEFINE_list("plain_layers", [], "Fast layers to run as plain TensorFlow ops, for A/B "
                  "measurements per CPU class: any of Conv, UpConv, InstanceNorm.")
flags.DEFINE_list("inference_sizes", [], "Also time the generator's inference at these "
                  "HxW sizes (1024x2048, ...); default: the training size only.")
flags.DEFINE_enum("winograd", "auto", ["auto", "on", "off"],
                  "Winograd's F(4x4, 3x3) for training's 3x3 convolutions "
                  "(networks.kernels.winograd_enabled): by measurement (auto) or forced.")
flags.DEFINE_enum("patch_matmul", "auto", ["auto", "on", "off"],
                  "The convolutions' patch-matmul paths (networks.kernels.patch_matmul_enabled): "
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


def step_flops(model, batch) -> float:
    """FLOPs of one traced training step, from TensorFlow's profiler (every op with a registered
    FLOP count: convolutions and their gradients, matmuls, element-wise ops), for any model."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    graph = model._step_fn.get_concrete_function(batch).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks.common import (facades_records, label_records, machine, parse_options,
                                   random_vgg_weights, report, scratch_dir, summary, time_calls,
                                   unpaired_records)
    from tf_pix2pix import models
    from tf_pix2pix.hardware import cpu_class
    from tf_pix2pix.inference import generator_fn
    from tf_pix2pix.networks.kernels import layer_switches
    from tf_pix2pix.runtime.training import build_trainer

    model_class = models.get(FLAGS.model)
    unpaired = model_class.data_layout == "unaligned"
    labels = model_class.data_layout == "labels"
    data_dir = FLAGS.data_dir or (unpaired_records() if unpaired else
                                  label_records(FLAGS.crop_size) if labels else facades_records())
    chosen = parse_options(FLAGS.options)
    options = {"data_dir": data_dir,
               # facades: photo | labels, the paper translates labels -> photo
               "direction": "BtoA" if not (FLAGS.data_dir or unpaired or labels) else "AtoB",
               "batch_size": FLAGS.batch_size, "crop_size": FLAGS.crop_size,
               "load_size": 2 * FLAGS.crop_size if labels else FLAGS.crop_size * 286 // 256,
               "precision": FLAGS.precision,
               "model_dir": scratch_dir("bench_step_"), "val_max_examples": 0}
    if labels and "no_vgg_loss" not in chosen:
        options["vgg_weights"] = random_vgg_weights()
    if FLAGS.netG:
        options["netG"] = FLAGS.netG
    config = models.resolve(FLAGS.model, **{**options, **chosen})
    forced = {"auto": None, "on": True, "off": False}
    switches = layer_switches(portable=tuple(FLAGS.plain_layers),
                              patch_matmul=forced[FLAGS.patch_matmul],
                              winograd=forced[FLAGS.winograd])
    with switches:
        trainer = build_trainer(config, progress=False)
    model, iterator = trainer.model, trainer.iterator
    plain = sum(type(layer).__name__ in FLAGS.plain_layers
                for network in model.networks().values() for layer in network.layers)

    def one_step():
        values = model.train_step(next(iterator))
        return [float(v) for v in values.values()]

    times = time_calls(one_step, warmup=FLAGS.warmup, repeats=FLAGS.steps)
    stats = summary(times)
    import resource

    # This process's peak resident memory: the model, its optimizer state and the steps.
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    flops = step_flops(model, next(iterator))
    generate = generator_fn(model.checkpoint_objects()[
        model_class.generator_slots(config)["AtoB"].root], "eval")
    slot = model_class.generator_slots(config)["AtoB"]
    width = 2 * FLAGS.crop_size if labels else FLAGS.crop_size
    image = tf.random.uniform([1, FLAGS.crop_size, width, slot.input_nc], -1, 1)
    infer = summary(time_calls(lambda: generate(image).numpy(), warmup=3, repeats=10))
    extra = {"generator_inference_s": infer["median_s"]}
    rows = [("AtoB generator inference, 1 image", f"{infer['median_s']:.3f} s median of 10")]
    for size in FLAGS.inference_sizes:
        h, w = (int(v) for v in size.split("x"))
        big = tf.random.uniform([1, h, w, slot.input_nc], -1, 1)
        timed = summary(time_calls(lambda: generate(big).numpy(), warmup=1, repeats=3))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        extra[f"generator_inference_{size}_s"] = timed["median_s"]
        extra[f"peak_rss_after_inference_{size}_gib"] = rss
        rows.append((f"AtoB generator inference {size}",
                     f"{timed['median_s']:.3f} s median of 3; peak RSS since start {rss:.2f} GiB"))
    f32 = matmul_rate("float32")
    # Under an oneDNN ISA cap below AVX-512 (the AVX2 emulation) oneDNN has no bfloat16 matmul
    # and aborts the process rather than raising.
    capped = cpu_class() != cpu_class(isa_cap="")
    bf16 = float("nan") if capped else matmul_rate("bfloat16")
    floor = flops / (f32 * 1e9)
    result = {"benchmark": "train_step", "model": FLAGS.model, "options": chosen,
              "precision": FLAGS.precision,
              "netG": config.model.netG, "plain_layers": sorted(FLAGS.plain_layers),
              "patch_matmul": FLAGS.patch_matmul, "winograd": FLAGS.winograd, **extra,
              "batch_size": FLAGS.batch_size, "crop_size": FLAGS.crop_size, **stats,
              "step_gflop": flops / 1e9, "matmul_f32_gflops": f32, "matmul_bf16_gflops": bf16,
              "f32_floor_s": floor, "floor_fraction": floor / stats["median_s"],
              "images_per_s": FLAGS.batch_size / stats["median_s"],
              "peak_rss_gib": peak_rss_gib, **machine()}
    report(result, [
        ("precision", FLAGS.precision),
        ("plain layers", f"{','.join(FLAGS.plain_layers)} ({plain} layers)" if plain else "none"),
        ("patch matmul", FLAGS.patch_matmul),
        ("winograd", FLAGS.winograd),
        ("step median / min / max", f"{stats['median_s']:.3f} / {stats['min_s']:.3f} / "
                                    f"{stats['max_s']:.3f} s ({FLAGS.steps} steps)"),
        ("peak RSS after the timed steps", f"{peak_rss_gib:.2f} GiB"),
        ("step FLOPs (TensorFlow's profiler)", f"{flops / 1e9:.1f} GFLOP"),
        ("matmul f32 / bf16", f"{f32:.0f} / {bf16:.0f} GFLOP/s"),
        ("f32 floor", f"{floor:.3f} s ({100 * floor / stats['median_s']:.0f}% of the step)"),
        *rows,
    ])


if __name__ == "__main__":
    app.run(main)
