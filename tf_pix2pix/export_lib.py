"""Restoring a trained generator and exporting it as a TF Serving SavedModel.

The SavedModel at ``export_dir/<version>/`` has two signatures:

* ``serving_default``: ``image_bytes`` — a ``[N]`` string batch of encoded JPEG/PNG/BMP images of
  any sizes (grayscale and RGBA included) — to ``image_bytes``, the PNG-encoded translations of
  the same sizes. Output names ending in ``_bytes`` make TF Serving's REST API answer with
  ``{"b64": ...}`` objects.
* ``translate``: ``images`` float32 ``[N, H, W, input_nc]`` in [-1, 1], any H and W, to ``images``
  ``[N, H, W, output_nc]``.

Sizes the generator cannot take directly (not multiples of ``2**num_downs``) are reflect-padded at
the bottom and right and cropped back. The test-time mode (``eval`` or ``paper``) is fixed at export
and recorded in ``assets/export_info.json`` with the configuration and checkpoint. A CycleGAN model
exports one of its generators: ``direction`` ``AtoB`` (G_A) or ``BtoA`` (G_B).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from tf_pix2pix.config import DIRECTIONS, TEST_MODES, ConfigError, ExperimentConfig, load_config
from tf_pix2pix.data import to_channels
from tf_pix2pix.image_io import declared_size, decode
from tf_pix2pix.model_base import generator_slots
from tf_pix2pix.networks import build_generator
from tf_pix2pix.train_lib import checkpoint_dir
from tf_pix2pix.visualize import to_uint8

EXPORT_INFO = "export_info.json"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and where.

    Attributes:
      model_dir: training directory (holds ``config.json`` and ``checkpoints/``).
      export_dir: base directory; the model goes to ``export_dir/<version>``.
      checkpoint: a specific checkpoint prefix; empty means the latest.
      version: integer version; 0 means the next free number.
      test_mode: ``eval`` or ``paper`` (see ``model_base.generate_fn``).
      direction: the generator to export: ``AtoB`` (pix2pix's only one, CycleGAN's G_A) or
        ``BtoA`` (CycleGAN's G_B).
      formats: ``saved_model`` (always written) plus any of ``tflite``, ``onnx``
        (``convert_lib``), written into the same version folder.
      tflite_size: TFLite input height and width; 0 means the training crop size.
      tflite_variants: ``float32``, ``float16``, ``dynamic`` (int8 weights).
      max_pixels: ``serving_default`` refuses images whose header declares more pixels than
        this, before decoding them (a small PNG can declare 60,000 x 60,000 pixels and exhaust
        the server's memory); 0 disables the check.
    """

    model_dir: str
    export_dir: str
    checkpoint: str = ""
    version: int = 0
    test_mode: str = "eval"
    direction: str = "AtoB"
    formats: tuple[str, ...] = ("saved_model",)
    tflite_size: int = 0
    tflite_variants: tuple[str, ...] = ("float32",)
    max_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        from tf_pix2pix.convert_lib import FORMATS, TFLITE_VARIANTS

        for name, values, allowed in (("format", self.formats, FORMATS),
                                      ("quantize", self.tflite_variants, TFLITE_VARIANTS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"--{name}={','.join(values)}: use one or more of "
                                  f"{', '.join(allowed)}")
        if self.test_mode == "paper" and set(self.formats) - {"saved_model"}:
            raise ConfigError("--test_mode=paper exports only as a SavedModel: TFLite and ONNX "
                              "files run the generator in eval mode")
        if self.max_pixels < 0:
            raise ConfigError(f"--max_pixels={self.max_pixels}: use a positive limit or 0")
        if self.tflite_size < 0:
            raise ConfigError(f"--tflite_size={self.tflite_size}: use a positive size or 0")
        if self.test_mode not in TEST_MODES:
            raise ConfigError(f"test_mode={self.test_mode!r}: use eval or paper")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction={self.direction!r}: use AtoB or BtoA")
        if self.version < 0:
            raise ConfigError(f"version={self.version}: use a positive integer or 0 for the next")


def pad_multiple(config: ExperimentConfig) -> int:
    """Height and width must be multiples of this for the generator to take them unpadded."""
    return 2 ** config.model.num_downs


def check_test_mode(config: ExperimentConfig, test_mode: str) -> None:
    """Refuses ``paper`` mode for generators in which it would change nothing."""
    if test_mode not in TEST_MODES:
        raise ConfigError(f"test_mode={test_mode!r}: use eval or paper")
    if test_mode == "paper" and not config.model.has_test_time_noise:
        raise ConfigError(
            f"--test_mode=paper: this {config.model.model} generator has no dropout and no batch "
            "norm, so paper and eval modes compute the same function; use --test_mode=eval")


def restore_generator(model_dir: str, checkpoint: str = "",
                      direction: str = "AtoB") -> tuple[keras.Model, ExperimentConfig, str]:
    """Builds a generator from ``model_dir/config.json`` and restores its weights.

    Args:
      model_dir: training directory.
      checkpoint: checkpoint prefix; empty for the latest.
      direction: ``AtoB`` (pix2pix's generator, CycleGAN's G_A) or ``BtoA`` (CycleGAN's G_B).

    Returns:
      ``(generator, config, checkpoint_path)``.

    Raises:
      ConfigError: no config or checkpoint, a checkpoint of another architecture, or a
        direction the model does not have.
    """
    config = load_config(model_dir)
    if config is None:
        raise ConfigError(f"{model_dir}/config.json not found; is --model_dir a training "
                          "directory of run_train.py?")
    path = checkpoint or tf.train.latest_checkpoint(checkpoint_dir(model_dir))
    if not path:
        raise ConfigError(f"no checkpoint in {checkpoint_dir(model_dir)}; train first")
    if not tf.io.gfile.exists(path + ".index"):
        raise ConfigError(f"checkpoint {path} not found (no {path}.index)")
    slots = generator_slots(config)
    if direction not in slots:
        raise ConfigError(
            f"--direction={direction}: the pix2pix model in {model_dir} has one generator "
            f"(trained {config.data.direction} on its data); --direction=BtoA selects "
            "CycleGAN's G_B")
    root, input_nc, output_nc = slots[direction]
    generator = build_generator(config.model, input_nc, output_nc, name=root)
    _check_shapes(generator, path, config, root)
    status = tf.train.Checkpoint(**{root: generator}).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    return generator, config, path


def checkpoint_variable_shapes(path: str, root: str) -> list[tuple[int, ...]]:
    """Shapes of every variable reachable from the checkpoint object ``root`` (e.g. generator).

    Walks the checkpoint's object graph rather than key names: a variable shared by two objects
    (a layer and the optimizer tracking it) is stored under only one of their names.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    shapes = reader.get_variable_to_shape_map()
    start = [c.node_id for c in graph.nodes[0].children if c.local_name == root]
    seen, stack, found = set(), list(start), []
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        found += [tuple(shapes[a.checkpoint_key]) for a in node.attributes
                  if a.name == "VARIABLE_VALUE" and a.checkpoint_key in shapes]
        stack += [c.node_id for c in node.children]
    return sorted(found)


def _check_shapes(generator: keras.Model, path: str, config: ExperimentConfig,
                  root: str) -> None:
    """Compares the checkpoint's generator variables with the model the config describes."""
    found = checkpoint_variable_shapes(path, root)
    expected = sorted(tuple(v.shape) for v in generator.variables
                      if "seed_generator" not in v.path)
    if expected != found:
        missing = [s for s in expected if s not in found][:3]
        extra = [s for s in found if s not in expected][:3]
        arch = (f"model={config.model.model} netG={config.model.netG} ngf={config.model.ngf} "
                f"norm={config.model.norm} input_nc={config.data.input_nc} "
                f"output_nc={config.data.output_nc}")
        raise ConfigError(
            f"checkpoint {path} does not match the architecture in config.json ({arch}): "
            f"{len(found)} generator variables saved, {len(expected)} expected; shapes only in "
            f"the model {missing}, only in the checkpoint {extra}")


def _reflect_pad_to(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Reflect-pads bottom/right up to (height, width); repeats when the pad exceeds the size."""

    def cond(x):
        return tf.logical_or(tf.shape(x)[1] < height, tf.shape(x)[2] < width)

    def body(x):
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        # REFLECT needs pad < size; a 1-pixel side can only be repeated (SYMMETRIC).
        ph = tf.minimum(height - h, tf.maximum(h - 1, 0))
        pw = tf.minimum(width - w, tf.maximum(w - 1, 0))
        paddings = [[0, 0], [0, ph], [0, pw], [0, 0]]
        return [tf.cond(tf.logical_and(h > 1, w > 1),
                       lambda: tf.pad(x, paddings, mode="REFLECT"),
                       lambda: tf.pad(x, [[0, 0], [0, tf.minimum(height - h, h)],
                                          [0, tf.minimum(width - w, w)], [0, 0]],
                                      mode="SYMMETRIC"))]

    shape = images.shape
    return tf.while_loop(cond, body, [images],
                         shape_invariants=[tf.TensorShape([shape[0], None, None, shape[3]])])[0]


def padded_translate(generator: keras.Model, images: tf.Tensor, multiple: int,
                     training: bool) -> tf.Tensor:
    """Runs ``generator`` on images of any size by padding to ``multiple`` and cropping back."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    target_h = (h + multiple - 1) // multiple * multiple
    target_w = (w + multiple - 1) // multiple * multiple
    padded = _reflect_pad_to(images, target_h, target_w)
    return generator(padded, training=training)[:, :h, :w, :]


def servable_generator(generator: keras.Model, test_mode: str) -> keras.Model:
    """Prepares a restored generator for inference in ``test_mode`` (in place).

    Paper mode runs the layers in training mode (dropout on, the batch's own statistics); a batch
    norm momentum of 1 keeps the stored running statistics unchanged by that traffic.
    """
    if test_mode == "paper":
        for layer in generator.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 1.0
    return generator


class Pix2PixServable(tf.Module):
    """The exported module: the generator plus the two serving functions."""

    def __init__(self, generator: keras.Model, config: ExperimentConfig, test_mode: str,
                 info_path: str, max_pixels: int = 4096 * 4096):
        super().__init__()
        # Track the underlying tf.Variables, not the Keras model: a SavedModel that tracks Keras 3
        # variable wrappers fails to restore in TF1-style loaders (TF Serving, saved_model_cli
        # run) with "Could not find variable". Bypass tf.Module's attribute tracking for G.
        self.__dict__["_generator"] = generator
        self.generator_variables = [v.value for v in generator.variables]
        self.info = tf.saved_model.Asset(info_path)
        self._multiple = pad_multiple(config)
        self._training = test_mode == "paper"
        self._input_nc = generator.inputs[0].shape[-1]
        self._max_pixels = max_pixels
        servable_generator(generator, test_mode)
        self.translate = tf.function(
            self._translate,
            input_signature=[tf.TensorSpec([None, None, None, self._input_nc], tf.float32,
                                           name="images")])
        self.serve_bytes = tf.function(
            self._serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])

    def _translate(self, images):
        out = padded_translate(self._generator, images, self._multiple, self._training)
        return {"images": tf.cast(out, tf.float32)}

    def _one(self, encoded):
        if self._max_pixels:
            size = declared_size(encoded)
            check = tf.debugging.assert_less_equal(
                size[0] * size[1], tf.constant(self._max_pixels, tf.int64),
                message=f"image larger than the export's max_pixels={self._max_pixels} (its "
                        "header's height x width); resize it, or export with a larger "
                        "--max_pixels")
            with tf.control_dependencies([check]):  # refuse before any decoding starts
                encoded = tf.identity(encoded)
        image = decode(encoded, 3)
        image = to_channels(image, self._input_nc)
        x = image[tf.newaxis] / 127.5 - 1.0
        y = self._translate(x)["images"][0]
        return tf.io.encode_png(to_uint8(y))

    def _serve_bytes(self, image_bytes):
        out = tf.map_fn(self._one, image_bytes, fn_output_signature=tf.string)
        return {"image_bytes": out}


def next_version(export_dir: str) -> int:
    """One more than the largest integer-named folder in ``export_dir`` (1 when none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if n.isdigit()]
    return max(versions, default=0) + 1


def export(config: ExportConfig) -> str:
    """Exports the generator of ``config.model_dir``; returns ``export_dir/<version>``.

    The SavedModel is written to a temporary folder and renamed into place, so TF Serving, which
    watches ``export_dir``, never loads a half-written version.
    """
    generator, exp_config, ckpt = restore_generator(config.model_dir, config.checkpoint,
                                                    config.direction)
    check_test_mode(exp_config, config.test_mode)
    version = config.version or next_version(config.export_dir)
    final = os.path.join(config.export_dir, str(version))
    if os.path.exists(final):
        raise ConfigError(f"{final} already exists; pick another --version or omit it")
    os.makedirs(config.export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=config.export_dir)
    try:
        converted = []
        if set(config.formats) - {"saved_model"}:
            from tf_pix2pix.convert_lib import convert

            converted = convert(generator, staging, config.formats,
                                config.tflite_size or exp_config.data.crop_size,
                                config.tflite_variants, pad_multiple(exp_config))
        info_dir = tempfile.mkdtemp()
        info_path = os.path.join(info_dir, EXPORT_INFO)
        with open(info_path, "w") as f:
            json.dump({"test_mode": config.test_mode, "checkpoint": os.path.abspath(ckpt),
                       "direction": config.direction,
                       "generator": generator_slots(exp_config)[config.direction][0],
                       "version": version, "pad_multiple": pad_multiple(exp_config),
                       "max_pixels": config.max_pixels,
                       "files": [c.to_dict() for c in converted],
                       "config": exp_config.to_dict()}, f, indent=2)
        module = Pix2PixServable(generator, exp_config, config.test_mode, info_path,
                                 config.max_pixels)
        tf.saved_model.save(module, staging, signatures={
            "serving_default": module.serve_bytes.get_concrete_function(),
            "translate": module.translate.get_concrete_function()})
        shutil.rmtree(info_dir, ignore_errors=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def read_export_info(saved_model_dir: str) -> dict:
    """The ``export_info.json`` asset of an exported version."""
    path = os.path.join(saved_model_dir, "assets", EXPORT_INFO)
    if not os.path.isfile(path):
        raise ConfigError(f"{path} not found; is {saved_model_dir} a version folder written by "
                          "run_export.py?")
    with open(path) as f:
        return json.load(f)
