"""The Python API: configure, train, load, translate, export, predict and import, as the command
line does.

Every function here is a thin layer over the library the command-line tools use, so a
configuration, a model directory or an export made from Python equals the one the command line
makes with the same options:

* [`config`][tf_pix2pix.api.config] is ``models.resolve`` (what ``run_train.py``'s flags resolve
  to);
* [`train`][tf_pix2pix.api.train] is ``run_train.py`` (including ``preset="demo"``'s generated data
  set);
* [`load`][tf_pix2pix.api.load] gives a [`Translator`][tf_pix2pix.api.Translator] for a training
  directory or an export;
* [`export`][tf_pix2pix.api.export], [`predict`][tf_pix2pix.api.predict] and
  [`import_pretrained`][tf_pix2pix.api.import_pretrained] are ``run_export.py``,
  ``run_predict.py`` and ``pix2pix-import-torch``.

Options are the flag names (``crop_size=128``, ``lambda_A=5.0``); an unknown one is a
[`ConfigError`][tf_pix2pix.errors.ConfigError] naming it (and the model it belongs to, if any).

Examples:
    >>> import tf_pix2pix
    >>> c = tf_pix2pix.config("cycle_gan", crop_size=128)
    >>> c.model.netG, c.model.norm, c.data.crop_size
    ('resnet_9blocks', 'instance', 128)
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from data_prep.demo import with_demo_data
from tf_pix2pix import models
from tf_pix2pix.configuration import ExperimentConfig, MetricsConfig
from tf_pix2pix.errors import ConfigError
from tf_pix2pix.image_io import read_image
from tf_pix2pix.runtime import training
from tf_pix2pix.serving import export as export_lib
from tf_pix2pix.serving import predict as predict_lib
from tf_pix2pix.tools import import_torch
from tf_pix2pix.visualize import to_uint8

__all__ = ["Translator", "config", "export", "import_pretrained", "load", "predict", "train"]

TrainResult = training.TrainResult


def config(model: str = "pix2pix", preset: str | None = None,
           **options: Any) -> ExperimentConfig:
    """The experiment configuration of ``model``: its reference defaults, then its mode
    (e.g. ``cut_mode``), then ``preset``, then ``options`` — the one resolution
    ``run_train.py`` uses, so ``config("cycle_gan", lambda_A=5.0)`` equals what
    ``run_train.py --model=cycle_gan --lambda_A=5.0`` trains with (``--print_config`` shows it).

    Args:
      model: a registered model: ``pix2pix``, ``cycle_gan``, ``cut``, ``pix2pix_hd``,
        ``segmenter`` (or a plugin's).
      preset: one of the model's presets (``reference``, ``demo``), or None.
      **options: flag names and values.

    Returns:
      The checked [`ExperimentConfig`][tf_pix2pix.configuration.ExperimentConfig]
      (``.to_json()`` is what ``config.json`` holds).

    Raises:
      ConfigError: an unknown model, preset or option, or an invalid value or combination.

    Examples:
        >>> import tf_pix2pix
        >>> tf_pix2pix.config("cut", cut_mode="fastcut").model.lambda_NCE
        10.0
        >>> tf_pix2pix.config("pix2pix", lambda_A=5.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tf_pix2pix.errors.ConfigError: unknown options for the pix2pix model: lambda_A (an ...
    """
    return models.resolve(model, preset, **options)


def train(model: str | ExperimentConfig = "pix2pix", preset: str | None = None, *,
          progress: bool = True, demo_data_dir: str = "", **options: Any) -> TrainResult:
    """Trains ``model`` (or resumes it: the same ``model_dir`` continues from its latest
    checkpoint), as ``run_train.py`` does.

    Args:
      model: a model name (resolved with ``preset`` and ``options`` by
        [`config`][tf_pix2pix.api.config]), or a configuration it made (``options`` then
        replace its fields).
      preset: ``demo`` trains a small model on the synthetic set it generates (in
        ``demo_data_dir``, default the model's own folder) unless ``data_dir`` is given.
      progress: show a progress bar.
      **options: flag names and values, e.g. ``data_dir``, ``model_dir``, ``n_epochs``.

    Returns:
      A [`TrainResult`][tf_pix2pix.runtime.training.TrainResult]: the step reached, the last
      losses, the checkpoint, the validation metrics and the weights' ``weights_sha256``.

    Raises:
      ConfigError: invalid options or a model directory of another architecture.
      DataError: missing or empty data.
      TrainingDivergedError: a loss became NaN or infinite.
    """
    if isinstance(model, ExperimentConfig):
        if preset is not None:
            raise ConfigError("train: pass preset to config(), not with a configuration")
        experiment = model.replace(**options) if options else model
        models.validate(experiment)
    else:
        experiment = config(model, preset, **options)
    return training.train(with_demo_data(experiment, preset, demo_data_dir), progress=progress)


def _version_folder(path: str) -> str | None:
    """``path`` if it is an exported version, else its newest version (``<path>/<N>``)."""
    if os.path.isfile(os.path.join(path, "assets", export_lib.EXPORT_INFO)):
        return path
    if not os.path.isdir(path):
        return None
    versions = [int(n) for n in os.listdir(path) if n.isdigit() and os.path.isfile(
        os.path.join(path, n, "assets", export_lib.EXPORT_INFO))]
    return os.path.join(path, str(max(versions))) if versions else None


def load(path: str, direction: str | None = None, test_mode: str | None = None,
         checkpoint: str = "") -> "Translator":
    """A [`Translator`][tf_pix2pix.api.Translator] for a training directory (its newest
    checkpoint, or ``checkpoint``) or an export (a version folder ``export_dir/<N>``, or
    ``export_dir`` for its newest version).

    Args:
      path: a folder written by [`train`][tf_pix2pix.api.train] / ``run_train.py``
        (``config.json`` and ``checkpoints/``), or by [`export`][tf_pix2pix.api.export] / ``run_export.py``.
      direction: the generator of a model with several (CycleGAN: ``AtoB`` is G_A, ``BtoA``
        G_B); default ``AtoB``, or the one an export holds.
      test_mode: ``eval`` (dropout off, running batch-norm statistics) or ``paper`` (as the
        reference's test.py); default ``eval``, or the mode an export was made with.
      checkpoint: a checkpoint prefix of a training directory, instead of the newest.

    Raises:
      ConfigError: ``path`` is neither, or asks an export for another direction or mode.
    """
    if os.path.isfile(os.path.join(path, "config.json")):
        inner = predict_lib.translator_from_model_dir(path, test_mode or "eval", checkpoint,
                                                      direction or "AtoB")
        return Translator(inner)
    version = _version_folder(path)
    if version is None:
        raise ConfigError(f"{path} is neither a training directory (config.json, "
                          "checkpoints/) nor an export (<export_dir>/<version>/assets/"
                          f"{export_lib.EXPORT_INFO})")
    if checkpoint:
        raise ConfigError(f"checkpoint={checkpoint!r}: {version} is an export; pass its "
                          "training directory to choose a checkpoint")
    inner = predict_lib.translator_from_saved_model(version)
    for name, asked, held in (("direction", direction, inner.direction),
                              ("test_mode", test_mode, inner.test_mode)):
        if asked is not None and asked != held:
            raise ConfigError(f"{name}={asked!r}: {version} was exported with {name} {held}; "
                              f"export again with --{name}={asked} or load the training "
                              "directory")
    return Translator(inner)


def _is_image(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike, bytes)) or _is_pil(value) or (
        isinstance(value, np.ndarray) and value.ndim in (2, 3))


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.")


def _encoded(value: Any, what: str) -> bytes:
    """One image as the encoded file the command line would read: a path's bytes (checked by
    ``image_io.read_image``), encoded bytes as given, pixels or ids encoded as a PNG."""
    if isinstance(value, (str, os.PathLike)):
        return read_image(os.fspath(value)).encoded
    if isinstance(value, bytes):
        return value
    array = np.asarray(value)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise ConfigError(f"{what}: an array of shape {array.shape}; pass [H, W] ids or "
                          "[H, W, 1|3|4] pixels (or a batch of them)")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ConfigError(f"{what}: float pixels must lie in [0, 1] (as "
                              "matplotlib.pyplot.imread gives); pass uint8 for 0..255")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype.kind in "iub":
        if array.min() < 0 or array.max() > 65535:
            raise ConfigError(f"{what}: values {array.min()}..{array.max()}; pixels and ids "
                              "lie in 0..65535")
        array = array.astype(np.uint8 if array.max() < 256 else np.uint16)
    else:
        raise ConfigError(f"{what}: an array of dtype {array.dtype}; pass uint8 pixels or "
                          "integer ids")
    return tf.io.encode_png(array).numpy()


class Translator:
    """A trained generator that translates images; made by [`load`][tf_pix2pix.api.load].

    Call it with one image — a file path, encoded bytes, a PIL image, or a numpy array
    (``[H, W, 3]`` uint8 pixels or floats in [0, 1]; ``[H, W]`` integer class ids for
    label-map models such as pix2pixHD with ``label_nc`` > 0) — and it returns the translation
    as ``[H, W, 3]`` uint8 pixels (the segmenter's: the predicted classes' colours). A list of
    images, or an ``[N, H, W, C]`` array, gives a list, or an array, of translations. Each
    image is read as the command line reads its file (``run_predict.py``, the export's
    ``serving_default``), at its own size.

    Examples:
        >>> import numpy as np, tf_pix2pix
        >>> translator = tf_pix2pix.load("runs/demo")  # doctest: +SKIP
        >>> translator("photo.png").shape  # doctest: +SKIP
        (256, 256, 3)
        >>> translator(np.zeros((2, 64, 64, 3), np.uint8)).shape  # doctest: +SKIP
        (2, 64, 64, 3)
    """

    def __init__(self, inner: predict_lib.Translator):
        self._inner = inner
        self._model = models.for_config(inner.config)
        self._in_nc = self._model.generator_slots(inner.config)[inner.direction][1]

    @property
    def config(self) -> ExperimentConfig:
        """The model's configuration."""
        return self._inner.config

    @property
    def direction(self) -> str:
        """The generator used (``AtoB``, or CycleGAN's ``BtoA``)."""
        return self._inner.direction

    @property
    def test_mode(self) -> str:
        """``eval`` or ``paper``."""
        return self._inner.test_mode

    @property
    def origin(self) -> str:
        """The checkpoint or export version the generator was read from."""
        return self._inner.origin

    def __repr__(self) -> str:
        return (f"Translator({self.config.model.model}, {self.direction}, {self.test_mode}, "
                f"{self.origin})")

    def input(self, image: Any, instance: Any = None, style: int | None = None) -> np.ndarray:
        """The generator's input for one image: ``[H, W, C]`` float32 (images in [-1, 1],
        label maps one-hot), as ``run_predict.py`` and ``serving_default`` compute it."""
        config = self.config
        if instance is not None and not self._model.reads_instances(config):
            raise ConfigError("instance: this model reads no instance maps")
        if style is not None and not self._model.takes_style(config):
            raise ConfigError("style: this model takes no style (pix2pixHD --instance_feat does)")
        where = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "image"
        encoded = tf.constant(_encoded(image, "image"))
        inst = None if instance is None else tf.constant(_encoded(instance, "instance"))
        return predict_lib.encode_file(config, encoded, self._in_nc, where, inst,
                                       None if style is None else tf.constant(style, tf.int32))

    def __call__(self, images: Any, instance: Any = None, style: int | None = None,
                 raw: bool = False) -> np.ndarray | list[np.ndarray]:
        """Translates one image or a batch (see the class).

        Args:
          images: one image, a list of them, or an ``[N, H, W, C]`` array.
          instance: an instance map (or a list, one per image) for models that read one.
          style: a style cluster for pix2pixHD's ``--instance_feat`` models.
          raw: return the generator's output itself (``[H, W, C]`` float32 in [-1, 1]; the
            segmenter's class scores) instead of uint8 pixels.
        """
        if _is_image(images):
            return self._one(images, instance, style, raw)
        batch: Sequence[Any] = list(images)
        instances = list(instance) if instance is not None else [None] * len(batch)
        if len(instances) != len(batch):
            raise ConfigError(f"instance: {len(instances)} maps for {len(batch)} images")
        outputs = [self._one(x, i, style, raw) for x, i in zip(batch, instances)]
        return np.stack(outputs) if isinstance(images, np.ndarray) else outputs

    def _one(self, image: Any, instance: Any, style: int | None, raw: bool) -> np.ndarray:
        x = self.input(image, instance, style)
        output = self._inner(tf.constant(x[np.newaxis]))
        if raw:
            return output[0].numpy()
        return to_uint8(self._model.show_output(self.config, output))[0].numpy()


def export(model_dir: str, export_dir: str, **options: Any) -> str:
    """Exports the generator of ``model_dir`` as ``run_export.py`` does: a SavedModel (TF
    Serving's ``serving_default`` on encoded images, ``translate`` on tensors) in a new version
    folder ``export_dir/<N>``, plus TFLite / ONNX files with ``formats=("tflite", "onnx")``.

    Args:
      **options: the fields of [`ExportConfig`][tf_pix2pix.serving.export.ExportConfig]
        (``version``, ``test_mode``, ``direction``, ``formats``, ``tflite_variants``,
        ``max_pixels``, ...).

    Returns:
      The version folder written.
    """
    fields = {f.name for f in dataclasses.fields(export_lib.ExportConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"unknown export options: {', '.join(unknown)}; use "
                          f"{', '.join(sorted(fields - {'model_dir', 'export_dir'}))}")
    for name in ("formats", "tflite_variants"):
        if isinstance(options.get(name), str):
            options[name] = (options[name],)
    return export_lib.export(export_lib.ExportConfig(model_dir=model_dir, export_dir=export_dir,
                                                     **options))


def predict(model: str | Translator, output_dir: str, input_dir: str = "",
            tfrecord_dir: str = "", source: str = "images", split: str = "test", *,
            direction: str | None = None, test_mode: str | None = None, checkpoint: str = "",
            on_bad_image: str = "fail", metrics: Sequence[str] = ("l1", "psnr", "ssim"),
            protocol: str = "native", progress: bool = True, overwrite: bool = False,
            **metric_options: Any) -> dict[str, Any]:
    """Translates images (``input_dir``: a folder, one file or a pattern such as
    ``"shots/*.jpg"``; plain images, or A|B pairs with ``source="aligned"``) or a TFRecord split
    (``tfrecord_dir``, ``split``) into ``output_dir`` as ``run_predict.py`` does: ``images/``,
    ``index.html``, and with targets ``metrics.json`` and ``metrics.csv``. A folder of images
    all twice as wide as high without ``source="aligned"`` is warned about (A|B pairs).

    Args:
      model: a training directory or export (read by [`load`][tf_pix2pix.api.load]), or a
        [`Translator`][tf_pix2pix.api.Translator].
      protocol: ``native`` (each image at its own size) or ``reference`` (resized to 256x256
        and paper test mode, as the reference's test.py).
      metrics: any of ``l1``, ``psnr``, ``ssim``, ``fid``, ``kid``, ``fcn``.
      on_bad_image: ``fail`` or ``skip`` (skipped files are counted and listed).
      overwrite: replace an ``output_dir`` that holds an earlier prediction (otherwise it must
        be new or empty; a folder holding anything else is never replaced).
      **metric_options: the fields of [`MetricsConfig`][tf_pix2pix.configuration.MetricsConfig]
        (``inception_weights``, ``segmenter``, ``fcn_labels``, ...).

    Returns:
      The summary (``count``, ``num_skipped``, ``skipped``, and the metrics' means).
    """
    if bool(input_dir) == bool(tfrecord_dir):
        raise ConfigError("pass exactly one of input_dir and tfrecord_dir")
    metric_config = MetricsConfig(**metric_options)
    if protocol == "reference":
        if test_mode not in (None, "paper"):
            raise ConfigError("protocol=reference runs the generator in paper mode; drop "
                              "test_mode or use protocol=native")
        test_mode = "paper"
    translator = model if isinstance(model, Translator) else load(model, direction, test_mode,
                                                                   checkpoint)
    if protocol == "reference" and translator.test_mode != "paper":
        raise ConfigError(f"protocol=reference needs paper mode, but {translator.origin} was "
                          "exported in eval mode; export with test_mode=paper or use the "
                          "training directory")
    skipped: list[dict[str, str]] = []
    inner = translator._inner
    where = (("tfrecord", tfrecord_dir) if tfrecord_dir else (source, input_dir))
    if tfrecord_dir:
        total = predict_lib.example_count(*where, inner.config, split, inner.direction)
    else:
        files = predict_lib.input_files(input_dir)
        total = len(files)
        if source == "images" and predict_lib.looks_aligned(files):
            print(f"warning: every image of {input_dir} is twice as wide as high, as A|B pairs "
                  "are; they are translated whole. Pass source=\"aligned\" (--source=aligned) "
                  "to translate the left half and score the output against the right",
                  file=sys.stderr)
    examples = predict_lib.iterate_examples(*where, inner.config, split, on_bad_image, skipped,
                                            inner.direction)
    fcn, fcn_labels = predict_lib.fcn_scorer(metric_config)
    return predict_lib.predict(inner, examples, output_dir, progress, skipped, tuple(metrics),
                               protocol, metric_config.inception_weights, fcn, fcn_labels,
                               overwrite=overwrite, total=total)


def import_pretrained(model_dir: str, name: str = "", pth: str = "",
                      **options: Any) -> dict[str, Any]:
    """Imports a published PyTorch generator (the authors' pix2pix/CycleGAN models by ``name``,
    e.g. ``facades_label2photo``, ``horse2zebra``; downloaded once) or a ``.pth`` file you have
    into a new training directory, as ``pix2pix-import-torch`` does;
    [`load`][tf_pix2pix.api.load] and [`export`][tf_pix2pix.api.export] then take ``model_dir``.

    Args:
      **options: the fields of [`ImportConfig`][tf_pix2pix.tools.import_torch.ImportConfig]
        (``model``, ``netG``, ``norm``, ``ngf``, ``label_nc``, ...), for files of other
        architectures.

    Returns:
      A summary: ``checkpoint``, ``config``, ``generator``, ``tensors`` copied.
    """
    return import_torch.import_generator(import_torch.ImportConfig(model_dir=model_dir, url=name,
                                                                   pth=pth, **options))
