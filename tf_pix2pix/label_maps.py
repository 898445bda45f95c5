"""Label and instance maps as pix2pixHD's generator reads them, and their colours.

pix2pixHD (NVIDIA/pix2pixHD ``pix2pixHD_model.py``, ``encode_input``) feeds its networks the
one-hot encoding of a map of class ids (``label_nc`` channels) followed by the boundary map of the
instance ids (``get_edges``: a pixel is 1 where its id differs from its left, right, upper or
lower neighbour, so both sides of a boundary are marked). The same encoding serves training
(``data.build_label_dataset``), export and prediction.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

# Cityscapes' colours of its label ids 0..33 (cityscapesScripts ``labels.py``), and of id 34 as
# pix2pixHD's ``util.labelcolormap(35)`` colours it.
CITYSCAPES_COLORS = (
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    (0, 0, 142))
CITYSCAPES_LABEL_NC = len(CITYSCAPES_COLORS)
# The names of those ids (cityscapesScripts ``labels.py``; id 34 is its license plate, -1 there).
CITYSCAPES_LABEL_NAMES = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic",
    "ground", "road", "sidewalk", "parking", "rail track", "building", "wall", "fence",
    "guard rail", "bridge", "tunnel", "pole", "polegroup", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "caravan",
    "trailer", "train", "motorcycle", "bicycle", "license plate")

# Suffixes of Cityscapes' file names, ignored when label, instance and photo files are matched.
LABEL_SUFFIXES = ("_gtFine_labelIds", "_gtFine_instanceIds", "_leftImg8bit")


def label_key(name: str) -> str:
    """The name that matches a label map, an instance map and a photo of one scene: the file
    name without its extension and Cityscapes' suffixes (``LABEL_SUFFIXES``)."""
    stem = os.path.splitext(os.path.basename(name))[0]
    for suffix in LABEL_SUFFIXES:
        if stem.endswith(suffix):
            return stem[:-len(suffix)]
    return stem


def palette(label_nc: int) -> np.ndarray:
    """``[label_nc, 3]`` uint8 colours: Cityscapes' for 35 classes, otherwise the PASCAL VOC
    colour map (ids' bits spread over the colour channels), as pix2pixHD's ``labelcolormap``."""
    if label_nc == len(CITYSCAPES_COLORS):
        return np.array(CITYSCAPES_COLORS, np.uint8)
    colors = np.zeros([label_nc, 3], np.uint8)
    for i in range(label_nc):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors[i] = (r, g, b)
    return colors


def label_names(label_nc: int) -> tuple[str, ...]:
    """The names of label ids ``0..label_nc-1``: Cityscapes' for 35, else ``class N``."""
    if label_nc == CITYSCAPES_LABEL_NC:
        return CITYSCAPES_LABEL_NAMES
    return tuple(f"class {i}" for i in range(label_nc))


def frequent_colours(images: np.ndarray, max_colours: int = 24, coverage: float = 0.75,
                     near: int = 32, min_share: float = 0.01) -> np.ndarray | None:
    """The label colours of label-like RGB images, or None when they are not label-like.

    ``images``: ``[..., 3]`` uint8. Colours are counted in bins of 8 levels per channel; bins
    holding at least ``min_share`` of the pixels are taken, each as its most frequent exact colour
    (a bin within ``near`` levels per channel of a colour already taken joins it). The images are
    label-like when the pixels within ``near`` levels of a taken colour make ``coverage`` of all
    (the rest: blends at the edges of resized or JPEG'd maps) with at most ``max_colours``
    colours; photos and shaded sketches are not: None.
    """
    pixels = np.asarray(images, np.uint8).reshape(-1, 3).astype(np.int64)
    if not len(pixels):
        return None
    bins = (pixels[:, 0] >> 3) * 1024 + (pixels[:, 1] >> 3) * 32 + (pixels[:, 2] >> 3)
    counts = np.bincount(bins, minlength=32768)
    exact = pixels[:, 0] * 65536 + pixels[:, 1] * 256 + pixels[:, 2]
    chosen: list[np.ndarray] = []
    covered = np.zeros(len(pixels), bool)
    for b in np.argsort(-counts, kind="stable"):
        if counts[b] < min_share * len(pixels):
            break
        values, n = np.unique(exact[bins == b], return_counts=True)
        v = int(values[np.argmax(n)])
        colour = np.array([v >> 16, (v >> 8) & 255, v & 255])
        if any(np.abs(colour - c).max() <= near for c in chosen):
            continue
        chosen.append(colour)
        if len(chosen) > max_colours:
            return None
        covered |= np.abs(pixels - colour).max(axis=1) <= near
    return np.array(chosen, np.uint8) if chosen and covered.mean() >= coverage else None


def nearest_colour(image: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``[H, W]`` int32: the index in ``colours`` (``[K, 3]``) of each ``[H, W, 3]`` pixel's
    nearest colour (squared distance; ties to the first)."""
    image = np.asarray(image, np.int32)[..., :3]
    d = ((image[..., None, :] - np.asarray(colours, np.int32)) ** 2).sum(-1)
    return np.argmin(d, axis=-1).astype(np.int32)


def one_hot(labels: tf.Tensor, label_nc: int) -> tf.Tensor:
    """``[..., H, W, 1]`` integer class ids to ``[..., H, W, label_nc]`` float32 one-hot."""
    return tf.one_hot(tf.cast(labels[..., 0], tf.int32), label_nc, dtype=tf.float32)


def edges(instances: tf.Tensor) -> tf.Tensor:
    """The reference's ``get_edges``: ``[N, H, W, 1]`` ids to a float32 map, 1 at every pixel
    whose id differs from one of its four neighbours (both sides of a boundary), else 0."""
    t = instances
    dx = tf.not_equal(t[:, :, 1:], t[:, :, :-1])
    dy = tf.not_equal(t[:, 1:], t[:, :-1])
    pad = lambda x, before, axis: tf.pad(  # noqa: E731
        x, [[0, 0]] + [[before, 1 - before] if a == axis else [0, 0] for a in (1, 2)] + [[0, 0]])
    edge = tf.reduce_any(tf.stack([pad(dx, 1, 2), pad(dx, 0, 2), pad(dy, 1, 1), pad(dy, 0, 1)]),
                         axis=0)
    return tf.cast(edge, tf.float32)


def encode(labels: tf.Tensor, instances: tf.Tensor | None, label_nc: int) -> tf.Tensor:
    """The generator's input: ``one_hot(labels)`` (or, for ``label_nc`` 0, ``labels`` as they
    are: an image in [-1, 1]), then ``edges(instances)`` when instances are given.

    Args:
      labels: ``[N, H, W, 1]`` class ids, or ``[N, H, W, C]`` floats when ``label_nc`` is 0.
      instances: ``[N, H, W, 1]`` instance ids, or None.
      label_nc: classes.
    """
    x = one_hot(labels, label_nc) if label_nc else tf.cast(labels, tf.float32)
    if instances is None:
        return x
    return tf.concat([x, edges(instances)], axis=-1)


def instance_mean(features: tf.Tensor, instances: tf.Tensor) -> tf.Tensor:
    """pix2pixHD's instance-wise average pooling (``Encoder.forward``): every pixel of
    ``features`` ``[N, H, W, C]`` replaced by the mean of its instance (same id in
    ``instances`` ``[N, H, W, 1]``, per image); differentiable, float32.

    The sums are taken in float64 (PyTorch's CPU accumulation for float32; a segment sum in
    float32 adds one pixel after another, and a road of 500k pixels would lose 1e-5..1e-4 of its
    mean): the encoder's features have only ``feat_num`` (3) channels, so the float64 copy is
    small."""
    features = tf.cast(features, tf.float64)
    shape = tf.shape(features)
    ids = tf.cast(instances[..., 0], tf.int64)
    image = tf.broadcast_to(tf.range(shape[0], dtype=tf.int64)[:, None, None], tf.shape(ids))
    keys, segments = tf.unique(tf.reshape(image * (2 ** 32) + ids, [-1]))
    flat = tf.reshape(features, [-1, shape[-1]])
    means = tf.math.unsorted_segment_mean(flat, segments, tf.size(keys))
    return tf.cast(tf.reshape(tf.gather(means, segments), shape), tf.float32)


def instance_class(instances: tf.Tensor) -> tf.Tensor:
    """The class of each instance id: ids below 1000 are classes, ``1000 * class + k`` the k-th
    instance of ``class`` (Cityscapes' numbering, as the reference reads it)."""
    return tf.where(instances < 1000, instances, instances // 1000)


def class_ids(encoded: tf.Tensor, label_nc: int) -> tf.Tensor:
    """The class ids ``[..., H, W]`` (int32) of an encoded input ``[..., H, W, label_nc (+ 1
    ...)]``: the inverse of :func:`one_hot` on its first ``label_nc`` channels."""
    return tf.argmax(encoded[..., :label_nc], axis=-1, output_type=tf.int32)


def colorize(encoded: tf.Tensor, label_nc: int) -> tf.Tensor:
    """An encoded input ``[N, H, W, label_nc (+ 1)]`` as colours in [-1, 1] for image grids:
    each pixel in its class's :func:`palette` colour, instance boundaries white."""
    ids = class_ids(encoded, label_nc)
    colors = tf.gather(tf.constant(palette(label_nc), tf.float32) / 127.5 - 1.0, ids)
    if encoded.shape[-1] > label_nc:
        colors = tf.where(encoded[..., label_nc:label_nc + 1] > 0.5, 1.0, colors)
    return colors


# Cityscapes' train ids of its label ids 0..33 (cityscapesScripts ``labels.py``): the 19 classes
# its benchmark (and the pix2pix paper's FCN-score) scores; 255 = ignored.
CITYSCAPES_TRAIN_IDS = (
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8,
    9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18)
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")
IGNORE = 255


def segmentation_classes(classes: str | int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The classes a segmenter predicts and how label ids map to them.

    Args:
      classes: ``"cityscapes"`` (the 19 train ids of Cityscapes' label ids) or a number ``N``
        (label ids ``0..N-1`` are the classes themselves).

    Returns:
      ``(lut, names)``: ``lut[label_id]`` is the class index or :data:`IGNORE` (a 65,536-entry
      uint8 table, so that any 16-bit id maps), and the class names.
    """
    lut = np.full([65536], IGNORE, np.uint8)
    if str(classes) == "cityscapes":
        lut[:len(CITYSCAPES_TRAIN_IDS)] = CITYSCAPES_TRAIN_IDS
        return lut, CITYSCAPES_CLASSES
    n = int(classes)
    if not 1 <= n < IGNORE:
        raise ValueError(f"classes={classes!r}: use cityscapes or a number from 1 to 254")
    lut[:n] = np.arange(n)
    return lut, tuple(f"class {i}" for i in range(n))


def class_colours(num_classes: int) -> np.ndarray:
    """``[num_classes, 3]`` uint8 colours of a segmenter's classes: Cityscapes' colours of its
    19 train ids, otherwise the :func:`palette` of ``num_classes``."""
    if num_classes == len(CITYSCAPES_CLASSES):
        label_ids = [CITYSCAPES_TRAIN_IDS.index(i) for i in range(num_classes)]
        return np.array([CITYSCAPES_COLORS[i] for i in label_ids], np.uint8)
    return palette(num_classes)


def colorize_classes(classes: tf.Tensor, num_classes: int) -> tf.Tensor:
    """``[..., H, W]`` class indices (:data:`IGNORE` black) as colours in [-1, 1]
    (:func:`class_colours`)."""
    colors = class_colours(num_classes)
    table = np.concatenate([colors, np.zeros([256 - num_classes, 3], np.uint8)])
    ids = tf.cast(classes, tf.int32)
    return tf.gather(tf.constant(table, tf.float32) / 127.5 - 1.0, tf.clip_by_value(ids, 0, 255))
