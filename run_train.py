"""Trains a registered model (pix2pix, CycleGAN, ...): flags -> models.resolve -> train_lib.train.

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

  # Print the parameter counts of the configured networks, or the whole configuration, and exit.
  python run_train.py --dry_run
  python run_train.py --model=cut --cut_mode=fastcut --print_config

Restarting with the same --model_dir resumes from the latest checkpoint. --flagfile works. The
flags are the options of the chosen model: --model (and a mode such as --cut_mode) is read
first, then one flag is defined per field of the shared sections and of the model's own section,
each with the default models.resolve gives it (the model's reference defaults, its mode's, the
--preset's), so `--model=cycle_gan --helpfull` lists CycleGAN's own defaults. Flags given on
the command line or in a --flagfile win.
"""

from __future__ import annotations

import os
import sys

from absl import flags

# First: cli quiets TensorFlow's start-up banner before anything imports TensorFlow.
from tf_pix2pix.cli import define_flags, run_main  # noqa: I001
from data_prep.demo import truth_scores, with_demo_data
from tf_pix2pix import configuration as cfg
from tf_pix2pix import models
from tf_pix2pix.errors import ConfigError

FLAGS = flags.FLAGS


def _preparse(argv: list[str], names: list[str]) -> dict[str, str | None]:
    """The values of the string flags ``names`` in ``argv`` (flagfiles read), ignoring every
    other flag; ``None`` for those not given (the real parse reports any error)."""
    fv = flags.FlagValues()
    for name in names:
        flags.DEFINE_string(name, None, name, flag_values=fv)
    try:
        fv(argv[:1] + fv.read_flags_from_files(argv[1:]), known_only=True)
    except (flags.Error, OSError):
        return {name: None for name in names}
    return {name: fv[name].value for name in names}


def define_model_flags(argv: list[str]) -> tuple[str, ConfigError | None]:
    """Defines the flags of the model ``argv`` chooses, with its resolved defaults; returns the
    model and the error a bad --model, --preset or mode gave (raised when main runs)."""
    chosen = _preparse(argv, ["model", "preset"])
    model = chosen["model"] or cfg.ModelConfig.model
    error = None
    try:
        model_class = models.get(model)
    except ConfigError as e:
        model, model_class, error = cfg.ModelConfig.model, models.get(cfg.ModelConfig.model), e
    modes = {k: v for k, v in _preparse(argv, list(model_class.modes)).items() if v is not None}
    preset = chosen["preset"] if chosen["preset"] in model_class.presets else None
    try:
        defaults = models.resolved_options(model, preset, modes)
    except ConfigError:  # a bad mode value: the enum flag refuses it with the choices
        defaults = models.resolved_options(model, preset)
    define_flags(*models.option_classes(model), defaults=defaults)
    presets = list(model_class.presets)
    flags.DEFINE_enum("preset", None, presets or ["none"],
                      f"A named configuration of the {model} model, applied under the flags you "
                      "pass: " + "; ".join(presets) + " (demo: a small fast model on its "
                      "generated synthetic set, unless --data_dir).")
    return model, error


MODEL, MODEL_ERROR = define_model_flags(sys.argv)
flags.DEFINE_string("demo_data_dir", "", "Where --preset=demo generates its data (default: "
                                         f"{models.get(MODEL).demo_data['folder']}).")
flags.DEFINE_bool("dry_run", False, "Build the networks, print their parameter counts, exit.")
flags.DEFINE_bool("print_config", False, "Print the resolved configuration (config.json's "
                  "contents) and exit.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def build_config() -> cfg.ExperimentConfig:
    """The experiment configuration the flags describe: ``models.resolve`` of the model, the
    preset and the flags given (on the command line or in a flagfile)."""
    if MODEL_ERROR is not None:
        raise MODEL_ERROR
    given = {}
    for klass in models.option_classes(MODEL):
        for name in cfg.option_fields(klass):
            if FLAGS[name].present and name != "model":
                given[name] = FLAGS[name].value
    return models.resolve(MODEL, FLAGS.preset, **given)


def main(argv: list[str]) -> None:
    config = build_config()
    model = models.for_config(config)
    if FLAGS.print_config:
        print(config.to_json())
        return
    if FLAGS.dry_run:
        print(model.dry_run(config))
        return
    config = with_demo_data(config, FLAGS.preset, FLAGS.demo_data_dir)

    from tf_pix2pix.runtime.training import train

    result = train(config, progress=FLAGS.progress)
    metrics = " ".join(f"val_{k}={v:.4f}" for k, v in result.val_metrics.items() if k != "count")
    print(f"step={result.step}/{result.total_steps} checkpoint={result.checkpoint} {metrics}")
    print(f"weights_sha256={result.weights_sha256}")
    truth = truth_scores(config, FLAGS.demo_data_dir) if FLAGS.preset == "demo" else None
    if truth:  # an unpaired demo: the synthetic set knows what each translation should be
        print(f"val A->B against the true renderings ({truth['count']} label maps the unpaired "
              f"set leaves out): L1={truth['l1']:.4f} PSNR={truth['psnr']:.2f} "
              f"SSIM={truth['ssim']:.4f}")
    samples = os.path.join(config.train.model_dir, "samples")
    print(f"Samples ({model.sample_columns}): {samples}/val_latest.png and train_latest.png; "
          f"TensorBoard: tensorboard --logdir {config.train.model_dir}")
    if result.stopped_by_signal:
        sys.exit(130)


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
