"""Generators for other runtimes: TFLite (LiteRT) and ONNX, each verified by its own runtime.

``run_export.py --format=tflite,onnx`` writes these files into the exported version folder, next to
the TF Serving SavedModel (TF Serving reads only ``saved_model.pb``, ``variables/`` and
``assets/``). Every file is run through its runtime on random inputs right after conversion and
compared with the Keras generator (which the SavedModel's ``translate`` equals); the largest
difference is recorded in ``export_info.json``, and a file whose outputs are not finite is never
written.

* TFLite: a fixed input size ``[1, size, width, input_nc]`` (float32 in [-1, 1]; square
  unless a width is given); variants
  ``float32``, ``float16`` (float16 weights, float computation) and ``dynamic`` (int8 weights,
  float activations). Variables are frozen into constants before conversion: converting a Keras 3
  generator with its variables live gives a model whose outputs are all NaN (the symptom of
  tensorflow issue 42927).
* ONNX (tf2onnx, opset 17): dynamic batch, height and width; height and width must be multiples of
  ``2 ** num_downs`` (the SavedModel pads for you, these files do not).

The generator runs in ``eval`` mode, with its fast layers switched to plain ops
(``networks.kernels.make_portable``) for the converters.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix.config import ConfigError
from tf_pix2pix.networks.kernels import make_portable

FORMATS = ("saved_model", "tflite", "onnx")
TFLITE_VARIANTS = ("float32", "float16", "dynamic")
ONNX_OPSET = 17


@dataclasses.dataclass(frozen=True)
class Converted:
    """One written file and how it compares with the Keras generator."""

    format: str
    variant: str
    file: str
    bytes: int
    max_abs_error: float
    input_shape: list

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _eval_function(generator: keras.Model, spec: tf.TensorSpec):
    return tf.function(lambda images: {"images": tf.cast(generator(images, training=False),
                                                         tf.float32)}).get_concrete_function(spec)


def tflite_model(generator: keras.Model, size: int, variant: str = "float32",
                 width: int = 0) -> bytes:
    """The generator as a TFLite flatbuffer for ``[1, size, width or size, input_nc]``
    inputs."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    if variant not in TFLITE_VARIANTS:
        raise ConfigError(f"TFLite variant {variant!r}: use one of {', '.join(TFLITE_VARIANTS)}")
    input_nc = generator.inputs[0].shape[-1]
    spec = tf.TensorSpec([1, size, width or size, input_nc], tf.float32, name="images")
    frozen = convert_variables_to_constants_v2(_eval_function(generator, spec))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], generator)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def tflite_runner(model: bytes):
    """A callable ``images -> outputs`` running a TFLite model in the LiteRT interpreter."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ConfigError("verifying TFLite files needs the LiteRT interpreter: "
                          "pip install 'tf_pix2pix[tflite]' (ai-edge-litert)") from e
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    index_in = interpreter.get_input_details()[0]["index"]
    index_out = interpreter.get_output_details()[0]["index"]

    def run(images: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(index_in, images)
        interpreter.invoke()
        return interpreter.get_tensor(index_out)

    return run


def run_tflite(model: bytes, images: np.ndarray) -> np.ndarray:
    """Runs a TFLite model once with the LiteRT interpreter (``ai-edge-litert``)."""
    return tflite_runner(model)(images)


def onnx_model(generator: keras.Model) -> bytes:
    """The generator as an ONNX model with dynamic batch, height and width (tf2onnx)."""
    try:
        import tf2onnx
    except ImportError as e:
        raise ConfigError("ONNX export needs tf2onnx: pip install 'tf_pix2pix[onnx]'") from e
    input_nc = generator.inputs[0].shape[-1]
    spec = (tf.TensorSpec([None, None, None, input_nc], tf.float32, name="images"),)
    fn = tf.function(lambda images: tf.cast(generator(images, training=False), tf.float32))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=ONNX_OPSET)
    return proto.SerializeToString()


def onnx_runner(model: bytes):
    """A callable ``images -> outputs`` running an ONNX model in ONNX Runtime on the CPU."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError("verifying ONNX files needs onnxruntime: "
                          "pip install 'tf_pix2pix[onnx]'") from e
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def run_onnx(model: bytes, images: np.ndarray) -> np.ndarray:
    """Runs an ONNX model once with ONNX Runtime on the CPU."""
    return onnx_runner(model)(images)


def _check(generator: keras.Model, run, model: bytes, shapes: list[tuple[int, ...]],
           what: str) -> float:
    """Largest difference to the Keras generator over random inputs of ``shapes``."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for shape in shapes:
        images = rng.uniform(-1, 1, shape).astype(np.float32)
        got = run(model, images)
        if not np.all(np.isfinite(got)):
            raise ConfigError(f"{what}: the converted model gives non-finite outputs; not "
                              "written (please report it with the model's config.json)")
        expected = keras.ops.convert_to_numpy(generator(images, training=False))
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def convert(generator: keras.Model, out_dir: str, formats: tuple[str, ...],
            tflite_size: int, tflite_variants: tuple[str, ...], multiple: int,
            tflite_width: int = 0) -> list[Converted]:
    """Writes the requested non-SavedModel formats into ``out_dir`` and verifies each.

    Args:
      generator: the restored generator (a copy with portable layers is converted).
      out_dir: folder to write ``generator*.tflite`` / ``generator.onnx`` into.
      formats: any of ``tflite``, ``onnx`` (``saved_model`` is the caller's).
      tflite_size: height (and, without ``tflite_width``, width) of the TFLite input.
      tflite_width: width of the TFLite input; 0 = ``tflite_size``.
      tflite_variants: TFLite variants to write.
      multiple: height and width must be multiples of this (``2 ** num_downs``).

    Returns:
      What was written, with the measured largest difference to the Keras generator.
    """
    tflite_width = tflite_width or tflite_size
    for flag, side in (("tflite_size", tflite_size), ("tflite_width", tflite_width)):
        if side % multiple:
            raise ConfigError(f"--{flag}={side} must be a multiple of {multiple} for this "
                              "generator")
    input_nc = generator.inputs[0].shape[-1]
    written = []
    portable = make_portable(generator)
    if "tflite" in formats:
        for variant in tflite_variants:
            name = "generator.tflite" if variant == "float32" else f"generator_{variant}.tflite"
            model = tflite_model(portable, tflite_size, variant, tflite_width)
            shape = (1, tflite_size, tflite_width, input_nc)
            error = _check(generator, run_tflite, model, [shape], f"TFLite {variant}")
            written.append(_write(out_dir, name, model, "tflite", variant, error, list(shape)))
    if "onnx" in formats:
        model = onnx_model(portable)
        side = multiple * max(1, 64 // multiple)  # non-square, two batch sizes
        shapes = [(1, side, 2 * side, input_nc), (2, 2 * side, side, input_nc)]
        error = _check(generator, run_onnx, model, shapes, "ONNX")
        written.append(_write(out_dir, "generator.onnx", model, "onnx", "float32", error,
                              [None, None, None, input_nc]))
    return written


def _write(out_dir: str, name: str, model: bytes, fmt: str, variant: str, error: float,
           shape: list) -> Converted:
    path = os.path.join(out_dir, name)
    with open(path, "wb") as f:
        f.write(model)
    return Converted(fmt, variant, name, len(model), error, shape)
