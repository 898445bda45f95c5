"""Exports a trained generator as a TF Serving SavedModel: flags -> ExportConfig -> export.

Examples:
  python run_export.py --model_dir runs/demo --export_dir exported/demo
  python run_export.py --model_dir runs/facades --export_dir /models/facades --test_mode=paper
  python run_export.py --model_dir runs/h2z --export_dir /models/zebra2horse --direction=BtoA
  saved_model_cli show --all --dir exported/demo/1
"""

from __future__ import annotations

from absl import flags

from tf_pix2pix.cli import UserError, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training directory (config.json + checkpoints/).")
flags.DEFINE_string("export_dir", None, "Base directory; the model goes to <export_dir>/<version>.")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix to export; default: the latest.")
flags.DEFINE_integer("version", 0, "Version number; 0 = the next free one.")
flags.DEFINE_enum("test_mode", "eval", ["eval", "paper"],
                  "eval: dropout off, running BN statistics; paper: dropout on, batch statistics "
                  "(refused for generators without dropout and batch norm, e.g. CycleGAN's).")
flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"],
                  "CycleGAN: export G_A (AtoB) or G_B (BtoA). pix2pix has only AtoB.")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tf_pix2pix.export_lib import ExportConfig, export

    path = export(ExportConfig(model_dir=FLAGS.model_dir, export_dir=FLAGS.export_dir,
                               checkpoint=FLAGS.checkpoint, version=FLAGS.version,
                               test_mode=FLAGS.test_mode, direction=FLAGS.direction))
    print(f"exported {path} (signatures: serving_default, translate; test_mode="
          f"{FLAGS.test_mode}; direction={FLAGS.direction})")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
