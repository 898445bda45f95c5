"""Exporting a trained generator as a TF Serving SavedModel (and TFLite/ONNX files).

The SavedModel at ``export_dir/<version>/`` has two signatures:

* ``serving_default``: ``image_bytes`` — a ``[N]`` string batch of encoded JPEG/PNG/BMP images of
  any sizes (grayscale and RGBA included) — to ``image_bytes``, the PNG-encoded translations of
  the same sizes. Output names ending in ``_bytes`` make TF Serving's REST API answer with
  ``{"b64": ...}`` objects.
* ``translate``: ``images`` float32 ``[N, H, W, input_nc]`` in [-1, 1], any H and W, to ``images``
  ``[N, H, W, output_nc]``.
* ``serve_with_instances`` (models that read instance maps, pix2pixHD): ``image_bytes`` (label
  PNGs) and ``instance_bytes`` (instance-id PNGs of the same sizes) to ``image_bytes``. There
  ``serving_default`` takes label PNGs alone and uses their own class boundaries.
* ``serve_with_style`` (models whose input has a style, pix2pixHD ``--instance_feat``): the same
  with ``style``, an int32 per image: every instance takes that cluster of its class's
  features (``serving_default`` and ``serve_with_instances`` take style 0).

What ``image_bytes`` hold is the model's to decode (``TranslationModel.encode_input``): images
for pix2pix and CycleGAN, PNG maps of class ids for pix2pixHD (``translate`` then takes their
one-hot encoding).

Sizes the generator cannot take directly (not multiples of ``2**num_downs``) are reflect-padded at
the bottom and right and cropped back. The test-time mode (``eval`` or ``paper``) is fixed at export
and recorded in ``assets/export_info.json`` with the configuration and checkpoint. A CycleGAN model
exports one of its generators: ``direction`` ``AtoB`` (G_A) or ``BtoA`` (G_B). Restoring and the
test-time modes are ``inference``'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid

import keras
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import DIRECTIONS, TEST_MODES, ConfigError, ExperimentConfig, option
from tf_pix2pix.image_io import declared_size
from tf_pix2pix.inference import check_test_mode, mode_call, padded_translate
from tf_pix2pix.models import pad_multiple, restore_generator
from tf_pix2pix.runtime import locking

EXPORT_INFO = "export_info.json"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and where (each field is a flag of ``run_export.py``).

    ``formats``: ``saved_model`` (always written) plus any of ``tflite``, ``onnx``
    (``convert_lib``), written into the same version folder. ``max_pixels``: a small PNG can
    declare 60,000 x 60,000 pixels and exhaust the server's memory, so ``serving_default`` refuses
    images whose header declares more, before decoding them.
    """

    model_dir: str = option(dataclasses.MISSING, "Training directory (config.json + "
                                                 "checkpoints/).")
    export_dir: str = option(dataclasses.MISSING, "Base directory; the model goes to "
                                                  "<export_dir>/<version>.")
    checkpoint: str = option("", "Checkpoint prefix to export; default: the latest.")
    version: int = option(0, "Version number; 0 = the next free one.")
    test_mode: str = option("eval", "eval: dropout off, running BN statistics; paper: dropout "
                                    "on, batch statistics (refused for generators without "
                                    "dropout and batch norm, e.g. CycleGAN's).", TEST_MODES)
    direction: str = option("AtoB", "The generator to export, for models with several (CycleGAN: "
                                    "G_A for AtoB, G_B for BtoA); pix2pix has only AtoB.",
                            DIRECTIONS)
    formats: tuple[str, ...] = option(("saved_model",), "Formats: saved_model (always "
                                      "written), tflite, onnx; files go into the same version "
                                      "folder and are checked against the generator with "
                                      "their runtimes.", flag="format")
    tflite_size: int = option(0, "TFLite input height (and width); 0 = the crop size.")
    tflite_width: int = option(0, "TFLite input width; 0 = --tflite_size (square). 2:1 label "
                                  "maps: e.g. --tflite_size 1024 --tflite_width 2048.")
    tflite_variants: tuple[str, ...] = option(("float32",), "TFLite variants: float32, float16 "
                                              "(float16 weights), dynamic (int8 weights, float "
                                              "activations).", flag="quantize")
    max_pixels: int = option(4096 * 4096, "serving_default refuses images whose header "
                                          "declares more pixels (decompression bombs), before "
                                          "decoding; 0 = no limit.")

    def __post_init__(self) -> None:
        from tf_pix2pix.serving.convert import FORMATS, TFLITE_VARIANTS

        for name, values, allowed in (("format", self.formats, FORMATS),
                                      ("quantize", self.tflite_variants, TFLITE_VARIANTS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"--{name}={','.join(values)}: use one or more of "
                                  f"{', '.join(allowed)}")
        # The SavedModel is always written, first.
        object.__setattr__(self, "formats", tuple(dict.fromkeys(("saved_model",
                                                                 *self.formats))))
        if self.test_mode == "paper" and set(self.formats) - {"saved_model"}:
            raise ConfigError("--test_mode=paper exports only as a SavedModel: TFLite and ONNX "
                              "files run the generator in eval mode")
        if self.max_pixels < 0:
            raise ConfigError(f"--max_pixels={self.max_pixels}: use a positive limit or 0")
        if self.tflite_size < 0 or self.tflite_width < 0:
            raise ConfigError(f"--tflite_size={self.tflite_size} --tflite_width="
                              f"{self.tflite_width}: use positive sizes or 0")
        check_test_mode(self.test_mode)
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction={self.direction!r}: use AtoB or BtoA")
        if self.version < 0:
            raise ConfigError(f"version={self.version}: use a positive integer or 0 for the next")


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
        self._model = models.for_config(config)
        self._config = config
        self._call = mode_call(generator, test_mode)
        self._input_nc = generator.inputs[0].shape[-1]
        self._max_pixels = max_pixels
        self.translate = tf.function(
            self._translate,
            input_signature=[tf.TensorSpec([None, None, None, self._input_nc], tf.float32,
                                           name="images")])
        self.serve_bytes = tf.function(
            self._serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        if self._model.reads_instances(config):
            self.serve_with_instances = tf.function(
                self._serve_with_instances,
                input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                 tf.TensorSpec([None], tf.string, name="instance_bytes")])
        if self._model.takes_style(config):
            self.serve_with_style = tf.function(
                self._serve_with_style,
                input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                 tf.TensorSpec([None], tf.string, name="instance_bytes"),
                                 tf.TensorSpec([None], tf.int32, name="style")])

    def _translate(self, images):
        out = padded_translate(self._call, images, self._multiple)
        return {"images": tf.cast(out, tf.float32)}

    def _checked(self, encoded):
        if not self._max_pixels:
            return encoded
        size = declared_size(encoded)
        check = tf.debugging.assert_less_equal(
            size[0] * size[1], tf.constant(self._max_pixels, tf.int64),
            message=f"image larger than the export's max_pixels={self._max_pixels} (its "
                    "header's height x width); resize it, or export with a larger "
                    "--max_pixels")
        with tf.control_dependencies([check]):  # refuse before any decoding starts
            return tf.identity(encoded)

    def _one(self, encoded, instance=None, style=None):
        encoded = self._checked(encoded)
        if instance is not None:
            instance = self._checked(instance)
        if style is None:
            x = self._model.encode_input(self._config, encoded, self._input_nc, instance)
        else:
            x = self._model.encode_input(self._config, encoded, self._input_nc, instance,
                                         style)
        y = self._translate(x[tf.newaxis])["images"][0]
        return self._model.encode_output(self._config, y)

    def _serve_bytes(self, image_bytes):
        out = tf.map_fn(self._one, image_bytes, fn_output_signature=tf.string)
        return {"image_bytes": out}

    def _serve_with_instances(self, image_bytes, instance_bytes):
        out = tf.map_fn(lambda pair: self._one(pair[0], pair[1]), (image_bytes, instance_bytes),
                        fn_output_signature=tf.string)
        return {"image_bytes": out}

    def _serve_with_style(self, image_bytes, instance_bytes, style):
        out = tf.map_fn(lambda t: self._one(t[0], t[1], t[2]),
                        (image_bytes, instance_bytes, style), fn_output_signature=tf.string)
        return {"image_bytes": out}


def next_version(export_dir: str) -> int:
    """One more than the largest integer-named folder, or version claimed by a running export
    (``.claim-<version>``), in ``export_dir`` (1 when none)."""
    if not os.path.isdir(export_dir):
        return 1
    names = [n[len(_CLAIM):] if n.startswith(_CLAIM) else n for n in os.listdir(export_dir)]
    return max((int(n) for n in names if n.isdigit()), default=0) + 1


_CLAIM = ".claim-"


_OWNER = "owner.json"  # in a claim: the exporting process (locking.holder_record)
_PARTIAL = re.compile(r"\.([0-9]+)\.partial-(?:([0-9]+)-)?[0-9a-f]{12}")
_UNNAMED_STALE_S = 3600.0  # a claim or partial folder of before (no owner): stale after an hour


def remove_leftovers(export_dir: str) -> list[str]:
    """Removes the version claims and partial SavedModels that exports killed before they could
    clean up (``kill -9``, a power cut) left in ``export_dir``: those whose process is gone on
    this host, or, written before claims named their process, older than an hour. Their
    claims would otherwise hold version numbers forever (the next export is 5 after 3).
    Returns the removed names."""
    removed = []
    for name in sorted(os.listdir(export_dir)):
        path = os.path.join(export_dir, name)
        partial = _PARTIAL.fullmatch(name)
        if name.startswith(_CLAIM) and name[len(_CLAIM):].isdigit():
            try:
                with open(os.path.join(path, _OWNER)) as f:
                    stale = locking.holder_gone(json.load(f))
            except (OSError, ValueError):  # being written, or a claim of before
                stale = _older_than(path, _UNNAMED_STALE_S)
        elif partial:
            stale = (not locking.process_alive(int(partial[2]), None) if partial[2]
                     else _older_than(path, _UNNAMED_STALE_S))
        else:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    if removed:
        print(f"note: removed {', '.join(removed)} from {export_dir}, left by exports that were "
              "killed", file=sys.stderr)
    return removed


def _older_than(path: str, seconds: float) -> bool:
    try:
        return time.time() - os.path.getmtime(path) > seconds
    except OSError:
        return False


def claim_version(export_dir: str, version: int = 0) -> int:
    """Claims a version number in ``export_dir`` atomically and returns it.

    The claim is the folder ``.claim-<version>`` (``mkdir`` is atomic), so exports started at the
    same moment into one folder get different versions (1 and 2, ...), as TF Serving's version
    watcher expects; it names its process (``owner.json``), so a claim of a killed export is
    removed by the next one (:func:`remove_leftovers`). ``version`` 0 takes the next free
    number; a given one must be free.
    """
    os.makedirs(export_dir, exist_ok=True)
    remove_leftovers(export_dir)
    while True:
        candidate = version or next_version(export_dir)
        final = os.path.join(export_dir, str(candidate))
        claim = os.path.join(export_dir, f"{_CLAIM}{candidate}")
        if not os.path.exists(final):
            try:
                os.mkdir(claim)
            except FileExistsError:
                if version:
                    raise ConfigError(f"version {version} of {export_dir} is being exported by "
                                      "another process; pick another --version or omit it"
                                      ) from None
                continue
            if not os.path.exists(final):
                with open(os.path.join(claim, _OWNER), "w") as f:
                    json.dump(locking.holder_record(), f)
                return candidate
            os.rmdir(claim)  # another export finished this version meanwhile
        if version:
            raise ConfigError(f"{final} already exists; pick another --version or omit it")


def export(config: ExportConfig) -> str:
    """Exports the generator of ``config.model_dir``; returns ``export_dir/<version>``.

    The version is claimed atomically (:func:`claim_version`: concurrent exports get different
    versions) and the SavedModel is written to a temporary folder and renamed into place, so TF
    Serving, which watches ``export_dir``, never loads a half-written version; a failed export
    leaves nothing behind. The version folder gets the permissions of any folder the user
    creates (umask), so a server running as another user can read it.
    """
    if os.path.exists(config.export_dir) and not os.path.isdir(config.export_dir):
        raise ConfigError(f"--export_dir {config.export_dir} is a file, not a folder; pass a "
                          "folder (versions go into <export_dir>/<version>)")
    generator, exp_config, ckpt = restore_generator(config.model_dir, config.checkpoint,
                                                    config.direction)
    models.check_test_mode(exp_config, config.test_mode)
    version = claim_version(config.export_dir, config.version)
    claim = os.path.join(config.export_dir, f"{_CLAIM}{version}")
    final = os.path.join(config.export_dir, str(version))
    # Not tempfile.mkdtemp: its folders are private (0700) whatever the umask.
    staging = os.path.join(config.export_dir,
                           f".{version}.partial-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    os.mkdir(staging)
    info_dir = tempfile.mkdtemp()
    try:
        converted = []
        if set(config.formats) - {"saved_model"}:
            from tf_pix2pix.serving.convert import convert

            converted = convert(generator, staging, config.formats,
                                config.tflite_size or exp_config.data.crop_size,
                                config.tflite_variants, pad_multiple(exp_config),
                                config.tflite_width)
        info_path = os.path.join(info_dir, EXPORT_INFO)
        with open(info_path, "w") as f:
            json.dump({"test_mode": config.test_mode, "checkpoint": os.path.abspath(ckpt),
                       "direction": config.direction,
                       "generator": models.for_config(exp_config).generator_slots(
                           exp_config)[config.direction].root,
                       "version": version, "pad_multiple": pad_multiple(exp_config),
                       "max_pixels": config.max_pixels,
                       "files": [c.to_dict() for c in converted],
                       "editor": models.for_config(exp_config).editor_info(exp_config,
                                                                           config.direction),
                       "config": exp_config.to_dict()}, f, indent=2)
        module = Pix2PixServable(generator, exp_config, config.test_mode, info_path,
                                 config.max_pixels)
        signatures = {"serving_default": module.serve_bytes.get_concrete_function(),
                      "translate": module.translate.get_concrete_function()}
        for name in ("serve_with_instances", "serve_with_style"):
            if hasattr(module, name):
                signatures[name] = getattr(module, name).get_concrete_function()
        tf.saved_model.save(module, staging, signatures=signatures)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(info_dir, ignore_errors=True)
        shutil.rmtree(claim, ignore_errors=True)
    return final


def read_export_info(saved_model_dir: str) -> dict:
    """The ``export_info.json`` asset of an exported version."""
    path = os.path.join(saved_model_dir, "assets", EXPORT_INFO)
    if not os.path.isfile(path):
        raise ConfigError(f"{path} not found; is {saved_model_dir} a version folder written by "
                          "run_export.py?")
    with open(path) as f:
        return json.load(f)
