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

from tf_pix2pix.cli import define_flags, from_flags, run_main
from tf_pix2pix.serving.export import ExportConfig

FLAGS = flags.FLAGS
define_flags(ExportConfig)  # one flag per field, with its default and help


def main(argv: list[str]) -> None:
    from tf_pix2pix.serving.export import export, read_export_info

    config = from_flags(ExportConfig)
    path = export(config)
    import tensorflow as tf

    signatures = ", ".join(tf.saved_model.load(path).signatures)
    print(f"exported {path} (signatures: {signatures}; test_mode={config.test_mode}; "
          f"direction={config.direction})")
    for item in read_export_info(path)["files"]:
        print(f"  {item['file']}: {item['bytes'] / 2**20:.2f} MiB, input {item['input_shape']}, "
              f"max |difference| to the generator {item['max_abs_error']:.2e}")


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
