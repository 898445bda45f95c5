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
  float activations). The converter gets the concrete function alone and freezes its variables
  itself (TensorFlow 2.21 warns that this path is deprecated; the tests would catch its
  removal): given the Keras model as well, it lowers through a SavedModel whose variables stay
  live, and the outputs are all NaN (the symptom of tensorflow issue 42927); freezing them
  beforehand (``convert_variables_to_constants_v2``) and passing the model works, but costs
  nearly twice the memory (measured: 6.0 instead of 3.5 GiB peak for a 46M-parameter
  generator; 20.9 GiB for pix2pixHD's 183M local enhancer, against 13.5 GiB for its whole
  export now).
* ONNX (tf2onnx, opset 17): dynamic batch, height and width; height and width must be multiples of
  ``2 ** num_downs`` (the SavedModel pads for you, these files do not). Converted in a child
  process (:func:`onnx_model`).

The generator runs in ``eval`` mode, with its fast layers switched to plain ops
(``networks.layers.make_portable``) for the converters.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import hardware
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.networks.layers import make_portable

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
    if variant not in TFLITE_VARIANTS:
        raise ConfigError(f"TFLite variant {variant!r}: use one of {', '.join(TFLITE_VARIANTS)}")
    input_nc = generator.inputs[0].shape[-1]
    spec = tf.TensorSpec([1, size, width or size, input_nc], tf.float32, name="images")
    # No trackable object: the converter then freezes the function's variables itself (see
    # the module's docstring).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [_eval_function(generator, spec)])
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    finally:
        del converter
        release_memory()


def release_memory() -> None:
    """Hands the heap a converter has freed back to the operating system.

    The converters' temporary copies of the weights (10-20x the weights for a 183M-parameter
    generator) stay in glibc's heap after they are freed; the runtimes that verify the file next
    allocate their large buffers with ``mmap``, outside that heap, so both would count towards
    the process's peak. ``malloc_trim`` (glibc only; a no-op elsewhere) returns the free pages.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def tflite_runner(model: bytes):
    """A callable ``images -> outputs`` running a TFLite model in the LiteRT interpreter, on
    every core this process may use (the interpreter's default is one thread; BENCHMARKS.md
    has the difference)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ConfigError("verifying TFLite files needs the LiteRT interpreter: "
                          "pip install 'tf_pix2pix[tflite]' (ai-edge-litert)") from e
    interpreter = Interpreter(model_content=model,
                              num_threads=hardware.usable_cores())
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
    """The generator as an ONNX model with dynamic batch, height and width (tf2onnx), converted
    in a child process.

    tf2onnx keeps the weights in protobuf messages; with protobuf's default (upb) backend, the
    copies each of its optimizer passes makes stay allocated in the graph's arena until the
    conversion ends: 7 GiB for a 46M-parameter generator, well over 24 GiB for pix2pixHD's 183M
    local enhancer (measured). The pure-Python protobuf backend frees them (3.7 GiB for the
    46M one, no slower), but it must be chosen before protobuf is first imported, so the
    conversion runs in a child process: the generator goes there as a ``.keras`` file (its
    ``portable`` layers included) and comes back as ONNX bytes. The child also keeps the
    conversion's memory out of the exporting process.
    """
    try:
        import tf2onnx  # noqa: F401  (a clear error here rather than in the child)
    except ImportError as e:
        raise ConfigError("ONNX export needs tf2onnx: pip install 'tf_pix2pix[onnx]'") from e
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python",
           "PYTHONPATH": os.pathsep.join(
               filter(None, [package_root, os.environ.get("PYTHONPATH", "")]))}
    with tempfile.TemporaryDirectory(prefix="tf_pix2pix_onnx_") as scratch:
        source = os.path.join(scratch, "generator.keras")
        target = os.path.join(scratch, "generator.onnx")
        generator.save(source)
        result = subprocess.run([sys.executable, "-m", "tf_pix2pix.serving.convert", source, target],
                                env=env, capture_output=True, text=True)
        if result.returncode or not os.path.exists(target):
            lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
            raise ConfigError(f"ONNX conversion failed in tf2onnx: {lines[-1]}")
        with open(target, "rb") as f:
            return f.read()


def _convert_onnx_file(source: str, target: str) -> None:
    """The child process of :func:`onnx_model`: ``.keras`` generator -> ONNX file."""
    import tf2onnx

    import tf_pix2pix.models  # noqa: F401  (registers the project's layers)

    generator = keras.models.load_model(source, compile=False)
    input_nc = generator.inputs[0].shape[-1]
    spec = (tf.TensorSpec([None, None, None, input_nc], tf.float32, name="images"),)
    fn = tf.function(lambda images: tf.cast(generator(images, training=False), tf.float32))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=ONNX_OPSET)
    with open(target, "wb") as f:
        f.write(proto.SerializeToString())


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


if __name__ == "__main__":  # the child process of onnx_model
    _convert_onnx_file(*sys.argv[1:3])
