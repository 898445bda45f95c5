"""Times the training step of run_train.py's code path (paper configuration by default).

Usage:
  python benchmarks/bench_train_step.py --precision=float32
  python benchmarks/bench_train_step.py --precision=mixed_bfloat16 --steps=30

It builds the trainer exactly as ``run_train.py`` does (``train_lib.build_trainer``) on facades
TFRecords (or a synthetic 256x256 set when ../shared/data is absent) and times
``model.train_step(next(iterator))`` including the host sync for the losses, as the loop does.
It also measures this machine's float32 and bfloat16 matmul rates and the step's FLOPs (from the
TensorFlow profiler on the traced step) to report the step's fraction of the float32 floor.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras mixed-precision policy.")
flags.DEFINE_integer("steps", 20, "Timed steps (after warm-up).")
flags.DEFINE_integer("warmup", 5, "Untimed steps first (tracing, allocation).")
flags.DEFINE_integer("batch_size", 1, "Batch size.")
flags.DEFINE_integer("crop_size", 256, "Crop size (load_size = crop * 286 / 256).")
flags.DEFINE_string("netG", "unet_256", "Generator.")
flags.DEFINE_string("data_dir", "", "TFRecords; default: facades from ../shared/data.")


def matmul_rate(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` (median of repeats)."""
    import tensorflow as tf

    from benchmarks.common import summary, time_calls

    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    fn = tf.function(lambda x: tf.matmul(x, x))
    times = time_calls(lambda: fn(a).numpy(), warmup=3, repeats=repeats)
    return 2 * n ** 3 / summary(times)["median_s"] / 1e9


def step_flops(trainer, batch) -> float:
    """FLOPs of one training step, counted by the TF profiler on the traced step graph.

    The profiler counts every op with a registered FLOP count (convolutions and their two
    gradients, matmuls, element-wise ops), so it is a little above a conv-only count.
    """
    import tensorflow as tf

    graph = trainer.model._step_fn.get_concrete_function(batch).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops)


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks.common import facades_records, machine, report, summary, time_calls
    from tf_pix2pix.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from tf_pix2pix.train_lib import build_trainer

    data_dir = FLAGS.data_dir or facades_records()
    load = FLAGS.crop_size * 286 // 256
    config = ExperimentConfig(
        data=DataConfig(data_dir=data_dir, direction="BtoA", batch_size=FLAGS.batch_size,
                        load_size=load, crop_size=FLAGS.crop_size),
        model=ModelConfig(netG=FLAGS.netG),
        train=TrainConfig(model_dir=tempfile.mkdtemp(prefix="bench_step_"),
                          precision=FLAGS.precision, val_max_examples=0))
    trainer = build_trainer(config, progress=False)
    model, iterator = trainer.model, trainer.iterator

    def one_step():
        values = model.train_step(next(iterator))
        return [float(v) for v in values.values()]

    times = time_calls(one_step, warmup=FLAGS.warmup, repeats=FLAGS.steps)
    stats = summary(times)
    flops = step_flops(trainer, next(iterator))
    f32, bf16 = matmul_rate("float32"), matmul_rate("bfloat16")
    floor = flops / (f32 * 1e9)
    result = {"benchmark": "train_step", "precision": FLAGS.precision, "netG": FLAGS.netG,
              "batch_size": FLAGS.batch_size, "crop_size": FLAGS.crop_size, **stats,
              "step_gflop": flops / 1e9, "matmul_f32_gflops": f32, "matmul_bf16_gflops": bf16,
              "f32_floor_s": floor, "floor_fraction": floor / stats["median_s"],
              "images_per_s": FLAGS.batch_size / stats["median_s"], **machine()}
    report(result, [
        ("precision", FLAGS.precision),
        ("step median / min / max", f"{stats['median_s']:.3f} / {stats['min_s']:.3f} / "
                                    f"{stats['max_s']:.3f} s ({FLAGS.steps} steps)"),
        ("step FLOPs", f"{flops / 1e9:.1f} GFLOP"),
        ("matmul f32 / bf16", f"{f32:.0f} / {bf16:.0f} GFLOP/s"),
        ("f32 floor", f"{floor:.3f} s ({100 * floor / stats['median_s']:.0f}% of the step)"),
    ])
    del tf


if __name__ == "__main__":
    app.run(main)
