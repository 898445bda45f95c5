"""Translating folders or TFRecord splits, with a gallery and metrics when targets exist.

Images are translated at their own size (the generator is padded and cropped as in the exported
SavedModel), from a training directory or from an exported SavedModel version.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import html
import json
import os
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from data_prep.atomic import atomic_output_dir, check_output_dir
from tf_pix2pix import data as data_lib
from tf_pix2pix import label_maps, models
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, MetricsConfig
from tf_pix2pix.metrics import fcn_score
from tf_pix2pix.metrics.scoring import PSNR_CAP, Scorer
from tf_pix2pix.serving.export import read_export_info
from tf_pix2pix.image_io import (BadImageError, declared_size, list_files, read_aligned_pair,
                                 read_image)
from tf_pix2pix.inference import mode_call, padded_translate
from tf_pix2pix.models import pad_multiple, restore_generator
from tf_pix2pix.runtime.progress import progress_bar
from tf_pix2pix.visualize import save_png, to_uint8

SOURCES = ("images", "aligned", "tfrecord")


@dataclasses.dataclass(frozen=True)
class Example:
    """One item to translate: input and optional target as [-1, 1] float ``[H, W, C]``."""

    name: str
    input: np.ndarray
    target: np.ndarray | None


@dataclasses.dataclass
class Translator:
    """A generator behind one callable: ``[1, H, W, input_nc]`` -> ``[1, H, W, output_nc]``."""

    fn: Callable[[tf.Tensor], tf.Tensor]
    config: ExperimentConfig
    test_mode: str
    origin: str
    direction: str = "AtoB"  # which generator: CycleGAN's G_A (AtoB) or G_B (BtoA)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.fn(images)


def translator_from_model_dir(model_dir: str, test_mode: str, checkpoint: str = "",
                              direction: str = "AtoB") -> Translator:
    """Restores a generator of a training directory (latest checkpoint unless given);
    ``direction`` picks CycleGAN's G_A (``AtoB``) or G_B (``BtoA``)."""
    generator, config, path = restore_generator(model_dir, checkpoint, direction)
    models.check_test_mode(config, test_mode)
    call, multiple = mode_call(generator, test_mode), pad_multiple(config)
    fn = tf.function(lambda x: padded_translate(call, x, multiple), reduce_retracing=True)
    return Translator(fn, config, test_mode, path, direction)


def translator_from_saved_model(saved_model_dir: str) -> Translator:
    """Loads an exported version folder (``export_dir/<version>``) and its ``translate``."""
    info = read_export_info(saved_model_dir)
    translate = tf.saved_model.load(saved_model_dir).signatures["translate"]
    config = models.config_from_dict(info["config"], f"{saved_model_dir} export_info.json")
    return Translator(lambda x: translate(images=x)["images"], config, info["test_mode"],
                      saved_model_dir, info.get("direction", "AtoB"))


def encode_file(config: ExperimentConfig, encoded: bytes | tf.Tensor, channels: int,
                path: str, instance: bytes | tf.Tensor | None = None,
                style: tf.Tensor | None = None) -> np.ndarray:
    """The model's ``encode_input`` of one user file, as ``serving_default`` computes it; a file
    the model cannot read as its input (a label map that is not a grayscale PNG, a class id
    beyond ``label_nc``) is a :class:`BadImageError` naming ``path``."""
    extra = {} if style is None else {"style": style}
    try:
        return models.for_config(config).encode_input(config, encoded, channels, instance,
                                                      **extra).numpy()
    except tf.errors.InvalidArgumentError as e:
        raise BadImageError(path, data_lib.assertion_reason(e)) from None


def _normalise(pixels: np.ndarray | tf.Tensor, channels: int) -> np.ndarray:
    return (data_lib.to_channels(pixels, channels) / 127.5 - 1.0).numpy()


def _stem(filename: tf.Tensor) -> str:
    """The output name of a record: its file name without the extension, as for folders."""
    return os.path.splitext(filename.numpy().decode())[0]


def iterate_examples(source: str, path: str, config: ExperimentConfig, split: str = "test",
                     on_bad_image: str = "fail", skipped: list[dict[str, str]] | None = None,
                     direction: str = "AtoB") -> Iterator[Example]:
    """Yields the examples of a folder of images, a folder of A|B images, or a TFRecord split.

    The data's ``direction`` and the channel counts come from the model's configuration;
    ``direction`` names the generator (CycleGAN's ``BtoA`` is G_B, which reads the other side).
    Unaligned TFRecords yield the input domain of that generator, without targets. Bad files
    raise :class:`BadImageError` or, with ``on_bad_image="skip"``, are appended to ``skipped``.
    """
    model = models.for_config(config)
    _, in_nc, out_nc = model.generator_slots(config)[direction]
    swap = (config.data.direction == "BtoA") != (direction == "BtoA")
    if source == "tfrecord":
        manifest = data_lib.read_manifest(path)
        layout = manifest.get("layout", "aligned")
        if layout == "labels":  # label maps and photos, encoded as the model reads them
            data = dataclasses.replace(config.data, data_dir=path, preprocess="none")
            try:
                for x, y, name in data_lib.build_label_dataset(data, split, training=False,
                                                               batch_size=1,
                                                               with_filenames=True):
                    yield Example(_stem(name[0]), x[0].numpy(), y[0].numpy())
            except tf.errors.DataLossError as e:
                raise data_lib.corruption_error(path, split, e, "the images before it were "
                                                                "translated") from None
            return
        domain = ("B" if swap else "A") if layout == "unaligned" else None
        records = tf.data.TFRecordDataset(data_lib.shard_paths(path, manifest, split, domain))
        try:
            for serialized in records:
                if domain:
                    ex = data_lib.decode_image_record(serialized)
                    yield Example(_stem(ex["filename"]), _normalise(ex["image"], in_nc), None)
                    continue
                ex = data_lib.decode_record(serialized, layout)
                a, b = (ex["B"], ex["A"]) if swap else (ex["A"], ex["B"])
                yield Example(_stem(ex["filename"]), _normalise(a, in_nc), _normalise(b, out_nc))
        except tf.errors.DataLossError as e:
            raise data_lib.corruption_error(path, split, e, "the images before it were "
                                                            "translated") from None
        return
    if source not in ("images", "aligned"):
        raise ConfigError(f"source={source!r}: use one of {', '.join(SOURCES)}")
    for file_path in input_files(path):
        name = os.path.basename(file_path)
        try:  # a file that cannot be read, or not as the model's input: one skip rule
            image = (read_aligned_pair if source == "aligned" else read_image)(file_path)
            encoded = (encode_file(config, image.encoded, in_nc, file_path)
                       if source == "images" else None)
        except BadImageError as e:
            if on_bad_image == "fail":
                raise
            if skipped is not None:
                skipped.append({"file": e.path, "reason": e.reason})
            continue
        stem = os.path.splitext(name)[0]
        if source == "images":
            yield Example(stem, encoded, None)
            continue
        half = image.width // 2
        a, b = image.pixels[:, :half], image.pixels[:, half:2 * half]
        if swap:
            a, b = b, a
        yield Example(stem, _normalise(a, in_nc), _normalise(b, out_nc))


def input_files(path: str) -> list[str]:
    """The files ``--input_dir`` names: the files of a folder, one file, or those a pattern
    (``'shots/*.jpg'``) matches, sorted; every one gives an output of its own stem.

    Raises:
      ConfigError: nothing to read, or two files of one stem (their outputs would collide).
    """
    if glob.has_magic(path):
        files = sorted(p for p in glob.glob(os.path.expanduser(path)) if os.path.isfile(p))
        if not files:
            raise ConfigError(f"--input_dir {path} matches no file")
    elif os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = [os.path.join(path, name) for name in list_files(path)]
        if not files:
            raise ConfigError(f"--input_dir {path} has no files")
    else:
        raise ConfigError(f"--input_dir {path} is not a file, a folder or a pattern that "
                          "matches files")
    stems: dict[str, str] = {}
    for file in files:
        stem = os.path.splitext(os.path.basename(file))[0]
        if stem in stems:
            raise ConfigError(f"--input_dir {path}: {stems[stem]} and {file} have one name "
                              f"({stem}); their outputs would overwrite each other")
        stems[stem] = file
    return files


def looks_aligned(files: list[str]) -> bool:
    """Whether every one of ``files`` is twice as wide as high, as A|B pairs are (read from the
    headers; a file whose size cannot be read counts against it)."""
    for file in files:
        with open(file, "rb") as f:
            height, width = (int(v) for v in declared_size(tf.constant(f.read())).numpy())
        if not height or width != 2 * height:
            return False
    return bool(files)


def example_count(source: str, path: str, config: ExperimentConfig, split: str = "test",
                  direction: str = "AtoB") -> int:
    """How many examples :func:`iterate_examples` reads (skipped files included)."""
    if source != "tfrecord":
        return len(input_files(path))
    manifest = data_lib.read_manifest(path)
    info = manifest["splits"].get(split, {})
    if manifest.get("layout") == "unaligned":
        swap = (config.data.direction == "BtoA") != (direction == "BtoA")
        info = info.get("B" if swap else "A", {})
    return int(info.get("num_examples", 0))


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(to_uint8(image)).numpy()


def write_gallery(output_dir: str, rows: list[dict[str, str]], title: str) -> str:
    """Writes ``index.html``: one row per image, columns input | output | target (if any)."""
    has_target = any(r.get("target") for r in rows)
    head = "<tr><th>name</th><th>input</th><th>output</th>" + (
        "<th>target</th>" if has_target else "") + "</tr>"
    body = []
    for r in rows:
        cells = [f"<td>{html.escape(r['name'])}</td>"]
        for key in ("input", "output") + (("target",) if has_target else ()):
            src = html.escape(r[key]) if r.get(key) else ""
            cells.append(f'<td><img src="{src}" style="width:256px"></td>' if src else "<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1><table border='1'>{head}"
            + "\n".join(body) + "</table></body></html>\n")
    path = os.path.join(output_dir, "index.html")
    with open(path, "w") as f:
        f.write(page)
    return path


METRICS = ("l1", "psnr", "ssim", "fid", "kid", "fcn")
PROTOCOLS = ("native", "reference")
REFERENCE_SIZE = 256


def fcn_scorer(metrics: MetricsConfig) -> tuple[Any, Any]:
    """The FCN-score's scorer and label source :func:`predict` takes, from the options of
    ``metrics`` (``(None, None)`` without a ``segmenter``)."""
    if not metrics.segmenter:
        return None, None
    try:
        fcn = fcn_score.FCNScorer(fcn_score.load_segmenter(metrics.segmenter), metrics.fcn_classes,
                                  fcn_score.parse_input_size(metrics.segmenter_input_size))
    except ValueError as e:
        raise ConfigError(f"--fcn_classes: {e}") from None
    return fcn, fcn_score.label_source(metrics.fcn_labels, metrics.fcn_classes)


def reference_resize(image: np.ndarray, size: int = REFERENCE_SIZE) -> np.ndarray:
    """The reference test.py's input: the image resized to ``size`` x ``size`` (bicubic)."""
    resized = tf.image.resize(image[np.newaxis], [size, size], "bicubic", antialias=True)[0]
    return tf.clip_by_value(resized, -1.0, 1.0).numpy()


_OWN = ("images", "index.html", "metrics.json", "metrics.csv", "losses.png")


def written_by_predict(name: str) -> bool:
    """Whether an entry of an output folder is one :func:`predict` (or ``--plot_losses``)
    writes: ``overwrite`` replaces only folders that hold nothing else."""
    return name in _OWN


def predict(translator: Translator, examples: Iterator[Example], output_dir: str,
            progress: bool = True, skipped: list[dict[str, str]] | None = None,
            metrics: tuple[str, ...] = ("l1", "psnr", "ssim"), protocol: str = "native",
            inception_weights: str = "", fcn=None, fcn_labels=None,
            overwrite: bool = False, total: int | None = None) -> dict:
    """Translates ``examples`` into ``output_dir``: images, gallery, and metrics with targets.

    Writes ``images/<name>_{input,output,target}.png``, ``index.html``, and when targets exist
    ``metrics.json`` (means of L1, PSNR, SSIM; FID and KID over the whole set when asked) and
    ``metrics.csv`` (one row per image). The folder is new or empty, or (``overwrite``) holds
    only an earlier prediction, which is replaced as a whole: a gallery, and a perceptual study
    reading it, never mixes two models' outputs. It is written beside and renamed at the end,
    so a failed run leaves no half of one.

    Args:
      protocol: ``native`` translates every image at its own size; ``reference`` resizes inputs
        (and targets) to 256x256 first, as the reference's ``test.py`` does.
      metrics: any of ``METRICS``; FID/KID need Inception weights (``inception_weights``);
        ``fcn`` needs ``fcn`` (a ``fcn_score.FCNScorer``) and label maps: ``fcn_labels`` (a
        ``fcn_score.label_source``), or inputs that are label maps (``label_nc`` > 0).

    Returns:
      The summary written to ``metrics.json`` (``count`` etc. even without targets).
    """
    bad = [m for m in metrics if m not in METRICS]
    if bad or protocol not in PROTOCOLS:
        raise ConfigError(f"--metrics={','.join(metrics)} --protocol={protocol}: metrics are "
                          f"{', '.join(METRICS)}; protocols {', '.join(PROTOCOLS)}")
    label_nc = translator.config.data.label_nc
    if "fcn" in metrics:
        if fcn is None:
            raise ConfigError("--metrics=fcn needs --segmenter (a segmentation SavedModel or "
                              "Keras file)")
        if fcn_labels is None and not label_nc:
            raise ConfigError("--metrics=fcn needs label maps: pass --fcn_labels DIR of label-id "
                              "PNGs (e.g. Cityscapes' gtFine/val), or translate label maps "
                              "(pix2pixHD)")
    elif fcn is not None:
        raise ConfigError("--segmenter is used by --metrics=fcn; add fcn to --metrics")
    features = None
    if {"fid", "kid"} & set(metrics):
        from tf_pix2pix.metrics.inception import InceptionFeatures

        features = InceptionFeatures(inception_weights)
    check = functools.partial(check_output_dir, output_dir, overwrite, owned=written_by_predict)
    final = check()
    with atomic_output_dir(final, recheck=check, holder="run_predict") as workdir:
        return _predict_into(workdir, translator, examples, progress, skipped, metrics, protocol,
                             features, fcn, fcn_labels, label_nc, total)


def _predict_into(output_dir: str, translator: Translator, examples: Iterator[Example],
                  progress: bool, skipped: list[dict[str, str]] | None,
                  metrics: tuple[str, ...], protocol: str, features: Any, fcn: Any,
                  fcn_labels: Any, label_nc: int, total: int | None) -> dict:
    image_dir = os.path.join(output_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    scorer = Scorer(metrics, features)
    rows, per_image = [], []
    bar = progress_bar(total or None, "image") if progress else None
    model_class = models.for_config(translator.config)
    for i, ex in enumerate(examples):
        original_input = ex.input
        if protocol == "reference":
            ex = Example(ex.name, reference_resize(ex.input),
                         None if ex.target is None else reference_resize(ex.target))
        output = translator(tf.constant(ex.input[np.newaxis]))[0].numpy()
        row = {"name": ex.name}
        shown = model_class.show_input(translator.config, tf.constant(ex.input[np.newaxis]))
        output_shown = model_class.show_output(translator.config, output[np.newaxis])[0]
        for key, image in (("input", np.asarray(shown[0])), ("output", np.asarray(output_shown)),
                           ("target", ex.target)):
            if image is not None:
                rel = os.path.join("images", f"{ex.name}_{key}.png")
                save_png(os.path.join(output_dir, rel), _png(image))
                row[key] = rel
        if ex.target is not None:
            scores = scorer.add(output[np.newaxis], ex.target[np.newaxis])[0]
            per_image.append({"name": ex.name, **scores})
        if fcn is not None:
            ids = (fcn_labels(ex.name, original_input) if fcn_labels is not None
                   else label_maps.class_ids(original_input, label_nc).numpy())
            fcn.add(ids, output, ex.target)
        rows.append(row)
        if bar is not None:
            bar.update(i + 1)
    if bar is not None and rows:
        bar.update(len(rows), finalize=True)  # skipped files make it end short of its total
    if not rows:
        raise ConfigError("nothing to translate: every input was skipped or the source is empty")
    model = translator.config.model.model
    slots = model_class.generator_slots(translator.config)
    if len(slots) > 1:  # name the generator of a model with several
        model += f" {slots[translator.direction].root}"
    write_gallery(output_dir, rows, f"{model} ({translator.test_mode} mode) — "
                                    f"{translator.origin}")
    summary = {"count": len(rows), "test_mode": translator.test_mode, "protocol": protocol,
               "model": translator.origin, "skipped": skipped or [],
               "num_skipped": len(skipped or [])}
    if per_image:
        scored = scorer.summary()
        summary["scored"] = scored.pop("count")
        summary.update(scored)
        summary["psnr_cap_db"] = PSNR_CAP
        with open(os.path.join(output_dir, "metrics.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["name", "l1", "psnr", "ssim"])
            writer.writeheader()
            writer.writerows(per_image)
    if fcn is not None:
        summary.update(fcn.summary())
    if per_image or fcn is not None:
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def read_scalars(event_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalar summaries of the event files in ``event_dir``: tag -> [(step, value)]."""
    if not os.path.isdir(event_dir):
        raise ConfigError(f"{event_dir} not found; pass the --model_dir of a training run")
    series: dict[str, list[tuple[int, float]]] = {}
    files = sorted(f for f in os.listdir(event_dir) if "tfevents" in f)
    for name in files:
        for raw in tf.data.TFRecordDataset(os.path.join(event_dir, name)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and not value.tensor.string_val:
                    series.setdefault(value.tag, []).append(
                        (event.step, float(tf.make_ndarray(value.tensor))))
    return {tag: sorted(dict(points).items()) for tag, points in series.items()}


def plot_losses(model_dir: str, output_path: str) -> str:
    """Renders the training losses of ``model_dir`` as a PNG with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {tag: points for tag, points in read_scalars(os.path.join(model_dir, "train"))
              .items() if tag.startswith("loss/")}
    if not series:
        raise ConfigError(f"no loss summaries in {model_dir}/train yet")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for tag, points in sorted(series.items()):
        steps, values = zip(*points)
        name = tag.split("/", 1)[1]
        ax = axes[0] if name == "G_L1" or name.startswith(("cycle_", "idt_")) else axes[1]
        ax.plot(steps, values, label=tag.split("/", 1)[1])
    axes[0].set_title("reconstruction terms (weighted: G_L1, cycle_*, idt_*)")
    axes[1].set_title("GAN losses")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    fig.savefig(output_path, dpi=100)
    plt.close(fig)
    return output_path
