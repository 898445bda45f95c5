"""The pix2pix paper's FCN-score: how well a semantic segmenter, trained on real photos, labels
generated photos (Isola et al., Tables 1-3 and 5).

The reference ships it as a Caffe script (junyanz/pytorch-CycleGAN-and-pix2pix
``scripts/eval_cityscapes``: ``evaluate.py``, ``util.py``); this module computes the same
numbers with any segmenter the user supplies:

* the label maps' ids are mapped to the segmenter's classes (Cityscapes: label ids to its 19
  train ids, everything else to the ignore label 255, ``label_maps.segmentation_classes``);
* each photo is resized (bilinear) to the segmenter's input size, segmented, and the predicted
  classes resized (nearest) to the label map's size — with the input size equal to the label
  map's, this is the reference's ``imresize`` to the label's size;
* one confusion matrix over the whole split, pixels whose label is not a class (255) never
  counted (``fast_hist``); per-pixel accuracy ``diag.sum() / hist.sum()``, mean per-class
  accuracy ``nanmean(diag / hist.sum(1))`` and mean class IoU ``nanmean(diag / (hist.sum(1) +
  hist.sum(0) - diag))`` (``get_scores``): a class absent from the labels does not count
  towards the class accuracy, and towards the IoU only if the segmenter predicted it (IoU 0).

A segmenter is any model that takes this library's images (float32 ``[N, H, W, 3]`` in [-1, 1])
and returns per-class scores ``[N, H, W, K]`` (``K`` at least the number of classes; the
arg-max is the prediction): a version folder exported by ``run_export.py`` from
``--model=segmenter`` (its ``translate`` signature), another SavedModel with one such signature,
or a Keras ``.keras`` / ``.h5`` file.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf

from tf_pix2pix import label_maps
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.image_io import list_files, read_id_map


class ConfusionMatrix:
    """Counts of (label, predicted class) pixels over a split; ``hist[label, prediction]``."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.hist = np.zeros([num_classes, num_classes], np.int64)

    def add(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        """Adds one map of class indices (labels outside ``0..num_classes-1`` are ignored)."""
        labels = np.asarray(labels, np.int64).ravel()
        predictions = np.asarray(predictions, np.int64).ravel()
        if labels.shape != predictions.shape:
            raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
        n = self.num_classes
        keep = (labels >= 0) & (labels < n)
        self.hist += np.bincount(n * labels[keep] + predictions[keep],
                                 minlength=n * n).reshape(n, n)

    def scores(self, names: tuple[str, ...] = ()) -> dict:
        """``pixel_acc``, ``class_acc``, ``class_iou`` (means as the reference's ``get_scores``),
        ``per_class`` ``{name: {"acc", "iou"}}`` (None where undefined) and ``pixels``."""
        hist = self.hist.astype(np.float64)
        diag = np.diag(hist)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = diag / hist.sum(1)
            iou = diag / (hist.sum(1) + hist.sum(0) - diag)
            total = hist.sum()
            result = {"pixel_acc": float(diag.sum() / total) if total else None,
                      "class_acc": _nanmean(acc), "class_iou": _nanmean(iou),
                      "pixels": int(total)}
        names = names or tuple(f"class {i}" for i in range(self.num_classes))
        result["per_class"] = {
            name: {"acc": None if np.isnan(a) else float(a),
                   "iou": None if np.isnan(u) else float(u)}
            for name, a, u in zip(names, acc, iou)}
        return result


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else None


def load_segmenter(path: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """A segmenter as a function of ``[N, H, W, 3]`` images in [-1, 1] to class scores.

    Raises:
      ConfigError: ``path`` is neither a SavedModel folder nor a Keras file, or the SavedModel
        has no signature of one float input.
    """
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ConfigError(f"--segmenter {path} is a folder without saved_model.pb; pass an "
                              "exported version folder (export_dir/<version>) or a .keras file")
        loaded = tf.saved_model.load(path)
        signatures = dict(loaded.signatures)
        for name in ("translate", "serving_default", *signatures):
            sig = signatures.get(name)
            if sig is None:
                continue
            inputs = sig.structured_input_signature[1]
            if len(inputs) == 1 and next(iter(inputs.values())).dtype == tf.float32:
                key = next(iter(inputs))

                def call(images, sig=sig, key=key, keep=loaded):
                    return next(iter(sig(**{key: images}).values()))

                return call
        raise ConfigError(f"--segmenter {path}: no signature takes one float32 image batch "
                          f"(it has {', '.join(signatures) or 'none'})")
    if os.path.isfile(path) and path.endswith((".keras", ".h5")):
        import keras

        model = keras.models.load_model(path, compile=False)
        return lambda images: model(images, training=False)
    raise ConfigError(f"--segmenter {path} not found; pass an exported SavedModel version "
                      "folder or a .keras/.h5 file")


class LabelFolder:
    """Label-id PNGs under a folder (searched recursively), found by the stem of the image they
    label: ``<stem>.png`` or Cityscapes' ``<city>_<seq>_<frame>_gtFine_labelIds.png`` for
    ``<city>_<seq>_<frame>_leftImg8bit`` (``label_maps.label_key``)."""

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise ConfigError(f"--fcn_labels {root} is not a directory")
        self.root = root
        self.paths: dict[str, str] = {}
        for folder, _, _ in os.walk(root):
            for name in list_files(folder):
                if name.endswith("_gtFine_instanceIds.png") or not name.endswith(".png"):
                    continue
                self.paths.setdefault(label_maps.label_key(name), os.path.join(folder, name))
        if not self.paths:
            raise ConfigError(f"--fcn_labels {root} has no PNG label maps")

    def __call__(self, stem: str, image: np.ndarray | None = None) -> np.ndarray:
        """``[H, W]`` label ids of the image named ``stem`` (``image``, the input, unused).

        Raises:
          ConfigError: no label map of that name; BadImageError: not a grayscale id PNG.
        """
        path = self.paths.get(label_maps.label_key(stem))
        if path is None:
            raise ConfigError(f"--fcn_labels {self.root} has no label map for {stem!r} (looked "
                              f"for {label_maps.label_key(stem)}.png or "
                              f"{label_maps.label_key(stem)}_gtFine_labelIds.png)")
        ids, _ = read_id_map(path)
        return ids


class InputColours:
    """Label ids read from colour-coded label images, as the inputs of the reference's
    pix2pix Cityscapes set (``datasets/prepare_cityscapes_dataset.py`` pastes each
    ``*_gtFine_color.png``, resized to 256x256, as a JPEG): each pixel takes the label id of the
    nearest colour of ``label_maps.palette`` (Cityscapes' for ``cityscapes``; where label ids
    share a colour, the one with a train id). Resampling and JPEG blend the colours at class
    boundaries, so this approximates the label ids the reference scores against (Cityscapes'
    ``*_labelIds.png`` at full size: ``LabelFolder``)."""

    def __init__(self, classes: str | int = "cityscapes"):
        lut, names = label_maps.segmentation_classes(classes)
        colours = label_maps.palette(label_maps.CITYSCAPES_LABEL_NC if str(classes) ==
                                     "cityscapes" else len(names)).astype(np.float32)
        ids = np.arange(len(colours))
        # Of label ids sharing a colour keep the first scored one (pole, not polegroup).
        keep, seen = [], {}
        for i in sorted(ids, key=lambda i: (lut[i] == label_maps.IGNORE, i)):
            key = tuple(colours[i])
            if key not in seen:
                seen[key] = i
                keep.append(i)
        self.ids = np.array(sorted(keep))
        self.colours = colours[self.ids] / 127.5 - 1.0

    def __call__(self, stem: str, image: np.ndarray) -> np.ndarray:
        """``[H, W]`` label ids of an ``[H, W, 3]`` colour-coded label image in [-1, 1]."""
        rgb = np.asarray(image, np.float32)[..., :3]
        dist = ((rgb[..., np.newaxis, :] - self.colours) ** 2).sum(-1)
        return self.ids[np.argmin(dist, axis=-1)]


def label_source(spec: str, classes: str | int = "cityscapes"):
    """What ``--fcn_labels`` names: ``input_colours`` (:class:`InputColours`), a folder of
    label-id PNGs (:class:`LabelFolder`), or nothing (None: the inputs are label maps)."""
    if not spec:
        return None
    if spec == "input_colours":
        return InputColours(classes)
    return LabelFolder(spec)


class FCNScorer:
    """Accumulates the FCN-score of generated photos and, beside it, of the real photos
    (the paper's "ground truth" row) through one segmenter.

    Args:
      segmenter: images in [-1, 1] to class scores (:func:`load_segmenter`).
      classes: ``cityscapes`` or a number of classes (``label_maps.segmentation_classes``).
      input_size: ``(height, width)`` the segmenter runs at; None = each photo's own size.
    """

    def __init__(self, segmenter: Callable[[tf.Tensor], tf.Tensor], classes: str | int =
                 "cityscapes", input_size: tuple[int, int] | None = None):
        self.segmenter = segmenter
        self.lut, self.names = label_maps.segmentation_classes(classes)
        self.input_size = input_size
        self.generated = ConfusionMatrix(len(self.names))
        self.real = ConfusionMatrix(len(self.names))

    def segment(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Predicted classes ``[H, W]`` (``size``) of one ``[h, w, 3]`` image in [-1, 1]."""
        x = tf.convert_to_tensor(image[np.newaxis], tf.float32)
        if self.input_size and tuple(x.shape[1:3]) != tuple(self.input_size):
            x = tf.image.resize(x, self.input_size, "bilinear")
        scores = self.segmenter(x)
        if scores.shape[-1] < len(self.names):
            raise ConfigError(f"the segmenter returns {scores.shape[-1]} class scores per pixel; "
                              f"--fcn_classes needs {len(self.names)}")
        pred = tf.argmax(scores[..., :len(self.names)], axis=-1, output_type=tf.int32)
        if tuple(pred.shape[1:3]) != tuple(size):
            pred = tf.image.resize(pred[..., tf.newaxis], size, "nearest")[..., 0]
        return pred[0].numpy()

    def add(self, label_ids: np.ndarray, generated: np.ndarray,
            real: np.ndarray | None = None) -> None:
        """Scores one example: its ``[H, W]`` label ids, the generated photo and the real one."""
        classes = self.lut[np.clip(np.asarray(label_ids), 0, len(self.lut) - 1)]
        size = classes.shape[:2]
        self.generated.add(classes, self.segment(generated, size))
        if real is not None:
            self.real.add(classes, self.segment(real, size))

    def summary(self) -> dict:
        """``{"fcn": scores of the generated photos, "fcn_real": of the real ones}`` (the
        latter only when real photos were given)."""
        out = {"fcn": self.generated.scores(self.names)}
        if self.real.hist.any():
            out["fcn_real"] = self.real.scores(self.names)
        return out


def parse_input_size(text: str) -> tuple[int, int] | None:
    """``"H,W"`` (or one number for a square) to ``(H, W)``; ``""`` to None.

    Raises:
      ConfigError: anything else.
    """
    if not text:
        return None
    try:
        sides = tuple(int(s) for s in text.split(","))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or min(sides) < 1:
        raise ConfigError(f"--segmenter_input_size={text}: use HEIGHT,WIDTH (e.g. 256,256), one "
                          "number for a square, or nothing for each image's own size")
    return sides


def table(summary: dict) -> str:
    """The scores of ``summary`` (``fcn`` and ``fcn_real``) as the paper's table in Markdown."""
    rows = ["| photos | Per-pixel acc. | Per-class acc. | Class IOU |", "|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for key, what in (("fcn", "generated"), ("fcn_real", "real (ground truth)")):
        if key in summary:
            s = summary[key]
            rows.append(f"| {what} | {fmt(s['pixel_acc'])} | {fmt(s['class_acc'])} | "
                        f"{fmt(s['class_iou'])} |")
    return "\n".join(rows)
