"""Exports a trained generator as a TF Serving SavedModel: flags -> ExportConfig -> export.

Examples:
  python run_export.py --model_dir runs/demo --export_dir exported/demo
  python run_export.py --model_dir runs/facades --export_dir /models/facades --test_mode=paper
  python run_export.py --model_dir runs/h2z --export_dir /models/zebra2horse --direction=BtoA
  # Also TFLite (float32 and float16 weights) and ONNX files, verified by their runtimes
  python run_export.py --model_dir runs/demo --export_dir exported/demo --format=tflite,onnx \
      --quantize=float32,float16
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
flags.DEFINE_list("format", ["saved_model"],
                  "Formats: saved_model (always written), tflite, onnx; files go into the same "
                  "version folder and are checked against the generator with their runtimes.")
flags.DEFINE_integer("tflite_size", 0, "TFLite input height and width; 0 = the crop size.")
flags.DEFINE_list("quantize", ["float32"], "TFLite variants: float32, float16 (float16 "
                  "weights), dynamic (int8 weights, float activations).")
flags.DEFINE_integer("max_pixels", 4096 * 4096, "serving_default refuses images whose header "
                     "declares more pixels (decompression bombs), before decoding; 0 = no limit.")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tf_pix2pix.export_lib import ExportConfig, export

    from tf_pix2pix.export_lib import read_export_info

    formats = tuple(dict.fromkeys(["saved_model", *FLAGS.format]))
    path = export(ExportConfig(model_dir=FLAGS.model_dir, export_dir=FLAGS.export_dir,
                               checkpoint=FLAGS.checkpoint, version=FLAGS.version,
                               test_mode=FLAGS.test_mode, direction=FLAGS.direction,
                               formats=formats, tflite_size=FLAGS.tflite_size,
                               tflite_variants=tuple(FLAGS.quantize),
                               max_pixels=FLAGS.max_pixels))
    print(f"exported {path} (signatures: serving_default, translate; test_mode="
          f"{FLAGS.test_mode}; direction={FLAGS.direction})")
    for item in read_export_info(path)["files"]:
        print(f"  {item['file']}: {item['bytes'] / 2**20:.2f} MiB, input {item['input_shape']}, "
              f"max |difference| to the generator {item['max_abs_error']:.2e}")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
