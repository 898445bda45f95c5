"""Trains a registered model (pix2pix, CycleGAN, ...): flags -> ExperimentConfig -> train_lib.train.

Examples:
  # The demo: generates the synthetic set and trains a small model on it (a few minutes on CPU).
  python run_train.py --preset=demo
  # CycleGAN's demo on a generated unpaired set (labels <-> renderings of unrelated scenes).
  python run_train.py --model=cycle_gan --preset=demo

  # CycleGAN with the reference's defaults on unaligned TFRecords, or on TensorFlow Datasets.
  python run_train.py --model=cycle_gan --data_dir data/horse2zebra --model_dir runs/h2z
  python run_train.py --model=cycle_gan --tfds_name=cycle_gan/horse2zebra --model_dir runs/h2z

  # The paper's facades setup on TFRecords built with data_prep.build_tfrecords.
  python run_train.py --data_dir /data/facades_tfr --direction BtoA --model_dir runs/facades

  # Print the parameter counts of the configured networks and exit.
  python run_train.py --dry_run

Restarting with the same --model_dir resumes from the latest checkpoint. --flagfile works. Every
flag is a field of tf_pix2pix.config (--helpfull lists them with their defaults); flags not given
take the model's reference defaults, then the preset's values.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from tf_pix2pix import config as cfg
from tf_pix2pix.cli import define_flags, from_flags, run_main

FLAGS = flags.FLAGS

# One flag per config field, with the field's default and help (tf_pix2pix.config).
define_flags(cfg.ModelConfig, cfg.DataConfig, cfg.TrainConfig)
# Run
flags.DEFINE_enum("preset", None, ["demo"],
                  "demo: small fast model on the generated synthetic set (unless --data_dir).")
flags.DEFINE_string("demo_data_dir", "data/demo", "Where --preset=demo generates its data.")
flags.DEFINE_bool("dry_run", False, "Build the networks, print their parameter counts, exit.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def apply_preset() -> type:
    """Gives the model's reference defaults, then the preset's values, to the flags the user did
    not pass; returns the model class."""
    from tf_pix2pix import models

    model = models.get(FLAGS.model)
    values = model.reference_options({name: FLAGS[name].value for name in FLAGS
                                      if FLAGS[name].present})
    if FLAGS.preset == "demo":
        values.update(model.demo_preset)
    for name, value in values.items():
        if not FLAGS[name].present:
            FLAGS[name].value = value
    return model


def build_config() -> cfg.ExperimentConfig:
    """The experiment configuration described by the flags."""
    return cfg.ExperimentConfig(data=from_flags(cfg.DataConfig), model=from_flags(cfg.ModelConfig),
                                train=from_flags(cfg.TrainConfig))


def main(argv: list[str]) -> None:
    model = apply_preset()
    if FLAGS.dry_run:
        print(model.dry_run(build_config()))
        return
    if FLAGS.preset == "demo" and not FLAGS.data_dir and not FLAGS.tfds_name:
        FLAGS.data_dir = model.prepare_demo_data(FLAGS.demo_data_dir)
    config = build_config()

    from tf_pix2pix.train_lib import train

    result = train(config, progress=FLAGS.progress)
    metrics = " ".join(f"val_{k}={v:.4f}" for k, v in result.val_metrics.items() if k != "count")
    print(f"step={result.step}/{result.total_steps} checkpoint={result.checkpoint} {metrics}")
    print(f"weights_sha256={result.weights_sha256}")
    samples = os.path.join(config.train.model_dir, "samples")
    print(f"Samples ({model.sample_columns}): {samples}/val_latest.png and train_latest.png; "
          f"TensorBoard: tensorboard --logdir {config.train.model_dir}")
    if result.stopped_by_signal:
        sys.exit(130)


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
