"""Trains pix2pix or CycleGAN: flags -> ExperimentConfig -> tf_pix2pix.train_lib.train.

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

Restarting with the same --model_dir resumes from the latest checkpoint. --flagfile works.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from tf_pix2pix import config as cfg
from tf_pix2pix.cli import UserError, run_main

FLAGS = flags.FLAGS

flags.DEFINE_enum("model", "pix2pix", list(cfg.MODELS),
                  "pix2pix (paired data) or cycle_gan (unpaired); the defaults of netG, norm, "
                  "dropout and gan_mode follow the model, as in the reference.")
# Data
flags.DEFINE_string("data_dir", None, "Folder made by data_prep.build_tfrecords.")
flags.DEFINE_string("tfds_name", None, "CycleGAN: a TensorFlow Datasets name such as "
                    "cycle_gan/horse2zebra, instead of --data_dir (TFDS downloads it once).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS's data folder (default: TFDS's own).")
flags.DEFINE_enum("direction", "AtoB", list(cfg.DIRECTIONS), "AtoB: left half -> right half.")
flags.DEFINE_enum("preprocess", "resize_and_crop", list(cfg.PREPROCESS_MODES),
                  "Jitter and resizing, as in the reference.")
flags.DEFINE_integer("load_size", 286, "Scale images to this size before cropping.")
flags.DEFINE_integer("crop_size", 256, "Crop size (the network's input size).")
flags.DEFINE_integer("input_nc", 3, "Input channels (1 or 3).")
flags.DEFINE_integer("output_nc", 3, "Output channels (1 or 3).")
flags.DEFINE_bool("no_flip", False, "Disable the random horizontal mirror.")
flags.DEFINE_integer("batch_size", 1, "Global batch size.")
flags.DEFINE_integer("shuffle_buffer", 0, "Shuffle buffer; 0 = the whole split (<= 10,000).")
# Model
flags.DEFINE_enum("netG", "unet_256", list(cfg.GENERATORS), "Generator architecture.")
flags.DEFINE_integer("ngf", 64, "Generator filters in the first conv.")
flags.DEFINE_enum("netD", "basic", list(cfg.DISCRIMINATORS), "Discriminator architecture.")
flags.DEFINE_integer("ndf", 64, "Discriminator filters in the first conv.")
flags.DEFINE_integer("n_layers_D", 3, "Layers of the n_layers discriminator.")
flags.DEFINE_enum("norm", "batch", list(cfg.NORMS), "Normalisation layers.")
flags.DEFINE_bool("no_dropout", False, "No dropout in the generator.")
flags.DEFINE_float("init_gain", 0.02, "Std of the N(0, gain) weight init.")
flags.DEFINE_enum("upsample", "transpose", list(cfg.UPSAMPLE_MODES),
                  "Generator upsampling: transpose (the reference's transposed convs) or "
                  "resize_conv (nearest x2 + 3x3 conv; avoids checkerboard artifacts).")
# Training
flags.DEFINE_string("model_dir", None, "Checkpoints, config.json, TensorBoard events, samples.")
flags.DEFINE_enum("gan_mode", "vanilla", list(cfg.GAN_MODES), "GAN objective.")
flags.DEFINE_float("lambda_l1", 100.0, "pix2pix: weight of the L1 term (0: the paper's cGAN row).")
flags.DEFINE_float("lambda_gan", 1.0, "pix2pix: weight of the adversarial term; 0 builds and trains "
                   "no discriminator (the paper's L1 row).")
flags.DEFINE_bool("no_condition_D", False, "pix2pix: the discriminator sees only the output "
                  "image (the paper's L1 + GAN row).")
flags.DEFINE_float("lambda_A", 10.0, "CycleGAN: weight of the cycle loss A -> B -> A.")
flags.DEFINE_float("lambda_B", 10.0, "CycleGAN: weight of the cycle loss B -> A -> B.")
flags.DEFINE_float("lambda_identity", 0.5,
                   "CycleGAN: identity loss weight relative to lambda_A/B (0 disables it and its "
                   "two generator passes); the reference's remedy for colour inversion.")
flags.DEFINE_integer("pool_size", 50, "CycleGAN: fakes kept per discriminator; 0 = no pool.")
flags.DEFINE_float("lr", 2e-4, "Adam learning rate.")
flags.DEFINE_float("beta1", 0.5, "Adam beta1.")
flags.DEFINE_float("beta2", 0.999, "Adam beta2.")
flags.DEFINE_enum("lr_policy", "linear", list(cfg.LR_POLICIES), "Learning-rate policy.")
flags.DEFINE_integer("n_epochs", 100, "Epochs at the initial learning rate.")
flags.DEFINE_integer("n_epochs_decay", 100, "Epochs of linear decay to zero.")
flags.DEFINE_integer("max_steps", 0, "Stop after this many steps; 0 = all epochs.")
flags.DEFINE_integer("save_every_steps", 1000, "Checkpoint interval (also every epoch end).")
flags.DEFINE_integer("summary_every_steps", 100, "Scalar summary interval.")
flags.DEFINE_integer("image_every_steps", 500, "Image summary interval.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
flags.DEFINE_integer("val_max_examples", 100, "Val examples scored after each epoch; 0 = none.")
flags.DEFINE_enum("test_mode", "eval", list(cfg.TEST_MODES),
                  "How G runs for samples and val: eval (dropout off, running BN statistics) or "
                  "paper (dropout on, batch statistics, as the paper's test time).")
flags.DEFINE_enum("strategy", "default", list(cfg.STRATEGIES),
                  "tf.distribute strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_enum("precision", "float32", list(cfg.PRECISIONS), "Keras mixed-precision policy.")
flags.DEFINE_integer("seed", 0, "Seed of weights, dropout and the data pipeline.")
# Run
flags.DEFINE_enum("preset", None, ["demo"],
                  "demo: small fast model on the generated synthetic set (unless --data_dir).")
flags.DEFINE_string("demo_data_dir", "data/demo", "Where --preset=demo generates its data.")
flags.DEFINE_bool("dry_run", False, "Build the networks, print their parameter counts, exit.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")

# Defaults that follow --model, as the reference's modify_commandline_options sets them.
MODEL_DEFAULTS = {
    "pix2pix": {},
    "cycle_gan": {"netG": "resnet_9blocks", "norm": "instance", "no_dropout": True,
                  "gan_mode": "lsgan"},
}

# Values --preset=demo gives to flags the user did not set. pix2pix: a 128x128 U-Net that learns
# the synthetic translation in a few minutes on 2 CPU cores. CycleGAN: a small ResNet pair on
# 64x64 crops of the unpaired synthetic set (label maps <-> renderings of other scenes).
DEMO_PRESETS = {
    "pix2pix": {
        "model_dir": "runs/demo", "netG": "unet_128", "ngf": 32, "ndf": 32, "load_size": 142,
        "crop_size": 128, "batch_size": 4, "n_epochs": 10, "n_epochs_decay": 5,
        "summary_every_steps": 20, "image_every_steps": 100, "save_every_steps": 500,
        "val_max_examples": 50,
    },
    "cycle_gan": {
        "model_dir": "runs/demo_cycle_gan", "demo_data_dir": "data/demo_cycle_gan",
        "netG": "resnet_6blocks", "ngf": 16, "ndf": 16, "load_size": 72, "crop_size": 64,
        "n_epochs": 3, "n_epochs_decay": 2, "summary_every_steps": 20,
        "image_every_steps": 100, "save_every_steps": 500, "val_max_examples": 20,
    },
}


def apply_preset() -> None:
    """Gives the preset's values, then the model's defaults, to the flags the user did not pass."""
    values = dict(MODEL_DEFAULTS[FLAGS.model])
    if FLAGS.preset == "demo":
        values.update(DEMO_PRESETS[FLAGS.model])
    for name, value in values.items():
        if not FLAGS[name].present:
            FLAGS[name].value = value


def build_config() -> cfg.ExperimentConfig:
    """The experiment configuration described by the flags."""
    f = FLAGS
    data = cfg.DataConfig(
        data_dir=f.data_dir or "", direction=f.direction, preprocess=f.preprocess,
        load_size=f.load_size, crop_size=f.crop_size, input_nc=f.input_nc, output_nc=f.output_nc,
        no_flip=f.no_flip, batch_size=f.batch_size, shuffle_buffer=f.shuffle_buffer, seed=f.seed,
        tfds_name=f.tfds_name or "", tfds_data_dir=f.tfds_data_dir or "")
    model = cfg.ModelConfig(model=f.model, netG=f.netG, ngf=f.ngf, netD=f.netD, ndf=f.ndf,
                            n_layers_D=f.n_layers_D, norm=f.norm, no_dropout=f.no_dropout,
                            init_gain=f.init_gain, upsample=f.upsample,
                            condition_D=not f.no_condition_D)
    train = cfg.TrainConfig(
        model_dir=f.model_dir or "", gan_mode=f.gan_mode, lambda_gan=f.lambda_gan,
        lambda_l1=f.lambda_l1,
        lambda_A=f.lambda_A, lambda_B=f.lambda_B, lambda_identity=f.lambda_identity,
        pool_size=f.pool_size, lr=f.lr,
        beta1=f.beta1, beta2=f.beta2, lr_policy=f.lr_policy, n_epochs=f.n_epochs,
        n_epochs_decay=f.n_epochs_decay, max_steps=f.max_steps,
        save_every_steps=f.save_every_steps, summary_every_steps=f.summary_every_steps,
        image_every_steps=f.image_every_steps, keep_checkpoints=f.keep_checkpoints,
        val_max_examples=f.val_max_examples, test_mode=f.test_mode, strategy=f.strategy,
        precision=f.precision, seed=f.seed)
    return cfg.ExperimentConfig(data=data, model=model, train=train)


def prepare_demo_data(folder: str, unpaired: bool = False) -> str:
    """Generates the synthetic set and its TFRecords once; returns the TFRecord folder.

    ``unpaired``: CycleGAN's layout (trainA/trainB/...) of 64-pixel images, built unaligned.
    """
    from data_prep.build_tfrecords import BuildConfig, build
    from data_prep.make_synthetic import SyntheticConfig, make_synthetic

    images, records = os.path.join(folder, "images"), os.path.join(folder, "tfrecords")
    if not os.path.isfile(os.path.join(records, "manifest.json")):
        print(f"Generating the synthetic demo set in {images} ...")
        make_synthetic(SyntheticConfig(output_dir=images, size=64 if unpaired else 128,
                                       unpaired=unpaired))
        build(BuildConfig(input_dir=images, output_dir=records, overwrite=True, progress=False,
                          layout="unaligned" if unpaired else "aligned"))
    return records


def dry_run(config: cfg.ExperimentConfig) -> str:
    """The parameter counts of the configured networks, as one line."""
    from tf_pix2pix.cycle_gan import CycleGAN
    from tf_pix2pix.networks import build_discriminator, build_generator, count_params

    if config.model.model == "cycle_gan":
        import tensorflow as tf

        model = CycleGAN(config, tf.distribute.get_strategy(), steps_per_epoch=1)
        return " ".join(f"{name}_params={count_params(getattr(model, name))}"
                        for name in ("G_A", "G_B", "D_A", "D_B")) + (
            f" receptive_field={config.model.receptive_field}")
    g = build_generator(config.model, config.data.input_nc, config.data.output_nc)
    line = f"generator_params={count_params(g)}"
    if config.train.lambda_gan > 0:
        d = build_discriminator(config.model, config.data.input_nc, config.data.output_nc,
                                conditional=config.model.condition_D)
        line += (f" discriminator_params={count_params(d)} "
                 f"receptive_field={config.model.receptive_field}")
    return line


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    apply_preset()
    if FLAGS.dry_run:
        print(dry_run(build_config()))
        return
    if FLAGS.preset == "demo" and not FLAGS.data_dir and not FLAGS.tfds_name:
        FLAGS.data_dir = prepare_demo_data(FLAGS.demo_data_dir, FLAGS.model == "cycle_gan")
    config = build_config()

    from tf_pix2pix.train_lib import train

    result = train(config, progress=FLAGS.progress)
    metrics = " ".join(f"val_{k}={v:.4f}" for k, v in result.val_metrics.items() if k != "count")
    print(f"step={result.step}/{result.total_steps} checkpoint={result.checkpoint} {metrics}")
    print(f"weights_sha256={result.weights_sha256}")
    samples = os.path.join(config.train.model_dir, "samples")
    columns = ("real_A | fake_B | rec_A, then real_B | fake_A | rec_B"
               if config.model.model == "cycle_gan" else "input | output | target")
    print(f"Samples ({columns}): {samples}/val_latest.png and train_latest.png; "
          f"TensorBoard: tensorboard --logdir {config.train.model_dir}")
    if result.stopped_by_signal:
        sys.exit(130)


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
