"""TFRecord schema, parsing, paired jitter and the ``tf.data`` input pipeline.

Records hold the original encoded bytes (no lossy re-encoding). Two layouts exist:

* ``aligned``: one image per example, A on the left half and B on the right (``image/encoded``);
* ``paired``: A and B as separate images of equal size (``image_a/encoded``, ``image_b/encoded``);
* ``unaligned`` (CycleGAN): one image per record (``image/encoded``) in per-domain shards
  (``trainA-*``, ``trainB-*``), the two domains of a split of unrelated sizes and counts;
* ``labels`` (pix2pixHD): a map of class ids (``label/encoded``, a 16-bit grayscale PNG, or the
  original bytes of an RGB input image), optionally a map of instance ids (``instance/encoded``,
  16-bit PNG) and the photo (``image/encoded``), all of one size.

CycleGAN data can also come from TensorFlow Datasets (``DataConfig.tfds_name``, e.g.
``cycle_gan/horse2zebra``, splits ``trainA``/``trainB``/``testA``/``testB``), read as encoded bytes
so that both sources go through the same decoding and jitter.

Decoding always yields RGB uint8: grayscale is replicated to three channels, an alpha channel is
dropped (not composited) and 16-bit PNGs are scaled to 8 bits; a network side with 1 channel is
then converted to luminance. A and B are stacked on the channel axis before any random op, so the
resize, crop and mirror are one draw shared by both halves. CycleGAN's two domains get
independent draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

import tensorflow as tf

from tf_pix2pix import image_io
from tf_pix2pix.configuration import DataConfig
from tf_pix2pix.errors import DataError, CorruptDataError  # noqa: F401

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LAYOUTS = ("aligned", "paired", "unaligned", "labels")
DOMAINS = ("A", "B")
TFDS_SPLITS = ("train", "test")  # TFDS's cycle_gan/* configs: trainA, trainB, testA, testB
SPLITS = ("train", "val", "test")
_MAX_SHUFFLE_BUFFER = 10_000


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(filename: str, height: int, width: int, encoded: bytes | None = None,
                 encoded_a: bytes | None = None, encoded_b: bytes | None = None) -> bytes:
    """Serialises one record; ``width`` is that of each half (A and B have equal sizes).

    Pass ``encoded`` for the aligned layout or ``encoded_a`` and ``encoded_b`` for the paired one.
    """
    feature = {
        "image/filename": _bytes_feature(filename.encode("utf-8")),
        "image/height": _int_feature(height),
        "image/width": _int_feature(width),
    }
    if encoded is not None:
        feature["image/encoded"] = _bytes_feature(encoded)
    else:
        feature["image_a/encoded"] = _bytes_feature(encoded_a)
        feature["image_b/encoded"] = _bytes_feature(encoded_b)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def make_label_example(filename: str, height: int, width: int, label: bytes, label_channels: int,
                       image: bytes, instance: bytes = b"") -> bytes:
    """Serialises one record of the ``labels`` layout (``instance`` empty: no instance map)."""
    feature = {
        "image/filename": _bytes_feature(filename.encode("utf-8")),
        "image/height": _int_feature(height),
        "image/width": _int_feature(width),
        "label/encoded": _bytes_feature(label),
        "label/channels": _int_feature(label_channels),
        "instance/encoded": _bytes_feature(instance),
        "image/encoded": _bytes_feature(image),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_LABEL_SPEC = {
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "label/encoded": tf.io.FixedLenFeature([], tf.string),
    "instance/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
}


def decode_ids(encoded: tf.Tensor) -> tf.Tensor:
    """An 8- or 16-bit grayscale PNG of ids to ``[H, W, 1]`` int32, values unchanged.

    (``decode_png(dtype=uint16)`` would scale an 8-bit file's values by 257, so the bit depth
    in the header, byte 24, picks the decoder.)
    """
    sixteen = tf.equal(tf.strings.substr(encoded, 24, 1), b"\x10")
    return tf.cond(
        sixteen,
        lambda: tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint16), tf.int32),
        lambda: tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint8), tf.int32))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_checked_ids(encoded: tf.Tensor, label_nc: int = 0,
                       what: str = "label map") -> tf.Tensor:
    """:func:`decode_ids` of a map a user hands in (serving, prediction), checked first: a
    grayscale PNG (an RGB, palette or JPEG image would be read as its brightness, not its ids)
    and, with ``label_nc``, no class id outside 0..label_nc-1 (``tf.one_hot`` would make such
    pixels all-zero and the generator would return garbage). Raises InvalidArgumentError with
    the reason (:func:`assertion_reason` turns it into a line)."""
    encoded = tf.convert_to_tensor(encoded, tf.string)
    long_enough = tf.greater_equal(tf.strings.length(encoded), 26)
    header = tf.strings.substr(tf.strings.join([encoded, b"\x00" * 26]), 0, 26)
    grayscale_png = tf.logical_and(
        long_enough, tf.logical_and(tf.equal(tf.strings.substr(header, 0, 8), PNG_SIGNATURE),
                                    tf.equal(tf.strings.substr(header, 25, 1), b"\x00")))
    check = tf.debugging.Assert(grayscale_png, [
        f"the {what} is not a grayscale PNG of ids (8 or 16 bit); an RGB, palette or JPEG image "
        "would be read as its brightness, not as ids"])
    with tf.control_dependencies([check]):
        ids = decode_ids(encoded)
    if label_nc:
        largest = tf.reduce_max(ids)
        check = tf.debugging.Assert(tf.less(largest, label_nc), [
            f"the {what} holds class id", largest,
            f"but the model has label_nc={label_nc} classes (ids 0..{label_nc - 1})"])
        with tf.control_dependencies([check]):
            ids = tf.identity(ids)
    return ids


def assertion_reason(error: tf.errors.InvalidArgumentError) -> str:
    """The message of a failed :func:`decode_checked_ids` check, as one line."""
    message = error.message
    if "Summarized data:" in message:  # eager: the data one per line, strings as b'...'
        parts = message.split("Summarized data:", 1)[1].strip().splitlines()
        text = " ".join(re.sub(r"^b'(.*)'$", r"\1", part.strip()) for part in parts)
    else:  # in a graph: "assertion failed: [a] [b]" and the node
        text = message.split("assertion failed:", 1)[-1].split("\n", 1)[0]
        text = text.replace("[", " ").replace("]", " ")
    return " ".join(text.split())


def _feature_spec(layout: str) -> dict[str, tf.io.FixedLenFeature]:
    spec = {"image/filename": tf.io.FixedLenFeature([], tf.string)}
    if layout == "aligned":
        spec["image/encoded"] = tf.io.FixedLenFeature([], tf.string)
    else:
        spec["image_a/encoded"] = tf.io.FixedLenFeature([], tf.string)
        spec["image_b/encoded"] = tf.io.FixedLenFeature([], tf.string)
    return spec


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP bytes to an ``[H, W, 3]`` uint8 tensor (see module doc for rules)."""
    return image_io.decode(encoded, 3)


def split_pair(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits an A|B image into its left (A) and right (B) halves."""
    half = tf.shape(image)[1] // 2
    return image[:, :half], image[:, half:2 * half]


def decode_record(serialized: tf.Tensor, layout: str) -> dict[str, tf.Tensor]:
    """Parses a record into ``{"A", "B", "filename"}`` with A and B uint8 RGB images."""
    parsed = tf.io.parse_single_example(serialized, _feature_spec(layout))
    if layout == "aligned":
        a, b = split_pair(decode_rgb(parsed["image/encoded"]))
    else:
        a, b = decode_rgb(parsed["image_a/encoded"]), decode_rgb(parsed["image_b/encoded"])
    return {"A": a, "B": b, "filename": parsed["image/filename"]}


def decode_label_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses a record of the ``labels`` layout into ``{"label", "instance", "image",
    "filename"}``: the label map as ``[H, W, 1]`` int32 ids (an RGB label image, channels 3, as
    uint8 RGB), the instance ids (None when the record has none) and the photo (uint8 RGB)."""
    spec = {**_LABEL_SPEC, "label/channels": tf.io.FixedLenFeature([], tf.int64,
                                                                    default_value=1)}
    parsed = tf.io.parse_single_example(serialized, spec)
    ids = int(parsed["label/channels"]) == 1
    label = decode_ids(parsed["label/encoded"]) if ids else decode_rgb(parsed["label/encoded"])
    has_instance = int(tf.strings.length(parsed["instance/encoded"])) > 0
    return {"label": label,
            "instance": decode_ids(parsed["instance/encoded"]) if has_instance else None,
            "image": decode_rgb(parsed["image/encoded"]), "filename": parsed["image/filename"]}


def decode_image_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses a record of the ``unaligned`` layout into ``{"image", "filename"}`` (uint8 RGB)."""
    parsed = tf.io.parse_single_example(serialized, _feature_spec("aligned"))
    return {"image": decode_rgb(parsed["image/encoded"]), "filename": parsed["image/filename"]}


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """RGB uint8 (or integer-valued float) to ``channels`` channels, as float32 in [0, 255].

    One channel is PIL's ``convert("L")`` (the reference's ``transforms.Grayscale``), exactly:
    ``(299 R + 587 G + 114 B + 500) // 1000``. Training and prediction both use this function.
    """
    if channels == 3:
        return tf.cast(image, tf.float32)
    rgb = tf.cast(tf.round(tf.cast(image, tf.float32)), tf.int32)
    luma = (rgb[..., 0:1] * 299 + rgb[..., 1:2] * 587 + rgb[..., 2:3] * 114 + 500) // 1000
    return tf.cast(luma, tf.float32)


def _resize(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    # antialias=True matches PIL's bicubic, which widens its kernel when it downsamples.
    return tf.image.resize(image, tf.stack([height, width]), method="bicubic", antialias=True)


def _scale_width_size(shape: tf.Tensor, target_width: int, crop_size: int):
    # The reference keeps the aspect ratio but never goes below crop_size in height.
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    new_h = tf.maximum(tf.cast(target_width * h / w, tf.int32), crop_size)
    return new_h, tf.constant(target_width, tf.int32)


def _crop(image: tf.Tensor, size: int, seed: tf.Tensor | None) -> tf.Tensor:
    channels = tf.shape(image)[2]
    shape = tf.shape(image)
    tf.debugging.assert_greater_equal(
        tf.minimum(shape[0], shape[1]), size,
        message="image smaller than crop_size; lower crop_size or raise load_size")
    if seed is None:
        top = (shape[0] - size) // 2
        left = (shape[1] - size) // 2
        return image[top:top + size, left:left + size]
    return tf.image.stateless_random_crop(image, tf.stack([size, size, channels]), seed=seed)


def resize_and_random_crop(image: tf.Tensor, load_size: int, crop_size: int,
                           seed: tf.Tensor) -> tf.Tensor:
    """Bicubic resize to ``load_size`` square then a random ``crop_size`` crop, in one op.

    ``ScaleAndTranslate`` (the kernel behind ``tf.image.resize(..., antialias=True)``) evaluates
    only the output window, shifted by the crop offset; the result equals resizing the whole image
    and slicing it, at ~80% of the work and without the intermediate image.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    offset = tf.random.stateless_uniform([2], seed=seed, maxval=load_size - crop_size + 1,
                                         dtype=tf.int32)
    return tf.raw_ops.ScaleAndTranslate(
        images=image[tf.newaxis], size=tf.constant([crop_size, crop_size]),
        scale=float(load_size) / shape, translation=-tf.cast(offset, tf.float32),
        kernel_type="keyscubic", antialias=True)[0]


def _resize_mixed(x: tf.Tensor, height: tf.Tensor, width: tf.Tensor, nearest: int) -> tf.Tensor:
    """:func:`_resize` of ``x``'s channels after the first ``nearest``, which (label and
    instance ids) are resized with nearest neighbours, as the reference's ``Image.NEAREST``."""
    if not nearest:
        return _resize(x, height, width)
    ids = tf.image.resize(x[..., :nearest], tf.stack([height, width]), method="nearest")
    return tf.concat([ids, _resize(x[..., nearest:], height, width)], axis=-1)


def _geometry(x: tf.Tensor, config: DataConfig, training: bool, seed: tf.Tensor | None,
              nearest: int = 0) -> tf.Tensor:
    """The reference's resize/crop/mirror of one float ``[H, W, C]`` tensor. Channels stacked
    into ``x`` share one random draw; the first ``nearest`` are resized by nearest neighbours."""
    if training and seed is None:
        raise ValueError("training-time preprocessing needs a stateless seed")
    crop_seed = flip_seed = None
    if training:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
        crop_seed, flip_seed = seeds[0], seeds[1]
    resize = lambda image, h, w: _resize_mixed(image, h, w, nearest)  # noqa: E731

    mode = config.preprocess
    if mode == "resize_and_crop" and training and not nearest:
        # One fused op computes only the cropped window of the resized image.
        x = resize_and_random_crop(x, config.load_size, config.crop_size, crop_seed)
    elif mode == "resize_and_crop":
        x = _crop(resize(x, tf.constant(config.load_size), tf.constant(config.load_size)),
                  config.crop_size, crop_seed)
    elif mode in ("scale_width", "scale_width_and_crop"):
        shape = tf.shape(x)
        new_h, new_w = _scale_width_size(shape, config.load_size, config.crop_size)
        unchanged = tf.logical_and(tf.equal(shape[1], config.load_size),
                                   shape[0] >= config.crop_size)
        x = tf.cond(unchanged, lambda: x, lambda: resize(x, new_h, new_w))
    elif mode == "none":
        # The reference rounds each side to the nearest multiple of 4.
        shape = tf.shape(x)
        new_h = tf.maximum(tf.cast(tf.round(shape[0] / 4), tf.int32) * 4, 4)
        new_w = tf.maximum(tf.cast(tf.round(shape[1] / 4), tf.int32) * 4, 4)
        same = tf.logical_and(tf.equal(new_h, shape[0]), tf.equal(new_w, shape[1]))
        x = tf.cond(same, lambda: x, lambda: resize(x, new_h, new_w))

    if mode in ("crop", "scale_width_and_crop"):
        x = _crop(x, config.crop_size, crop_seed)
    if training and not config.no_flip:
        x = tf.image.stateless_random_flip_left_right(x, seed=flip_seed)
    return x


def _normalize(x: tf.Tensor) -> tf.Tensor:
    # [0, 255] -> [-1, 1], clipped as PIL's uint8 output is (bicubic overshoots at edges).
    return tf.clip_by_value(x / 127.5 - 1.0, -1.0, 1.0)


def _jitter(x: tf.Tensor, config: DataConfig, training: bool,
            seed: tf.Tensor | None) -> tf.Tensor:
    """:func:`_geometry` of a float ``[H, W, C]`` tensor in [0, 255], then scaling to [-1, 1]."""
    return _normalize(_geometry(x, config, training, seed))


def preprocess_pair(a: tf.Tensor, b: tf.Tensor, config: DataConfig, training: bool,
                    seed: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Applies the reference's transform to a pair with one shared random draw.

    Args:
      a: ``[H, W, C]`` image (uint8 or float in [0, 255]), the network input side.
      b: ``[H, W, C]`` image of the same height and width, the target side.
      config: preprocess mode, sizes, flip and channel counts.
      training: random crop and mirror when True; centre crop and no mirror otherwise.
      seed: ``[2]`` int32/int64 stateless seed; required when ``training``.

    Returns:
      ``(a, b)`` float32 tensors in [-1, 1] with ``input_nc`` and ``output_nc`` channels.
    """
    if config.input_nc == config.output_nc == 3 and a.dtype == b.dtype:
        pair = tf.cast(tf.concat([a, b], axis=-1), tf.float32)  # one cast of the stacked pair
    else:
        pair = tf.concat([to_channels(a, config.input_nc), to_channels(b, config.output_nc)],
                         axis=-1)
    pair = _jitter(pair, config, training, seed)
    return pair[..., :config.input_nc], pair[..., config.input_nc:]


def preprocess_image(image: tf.Tensor, channels: int, config: DataConfig, training: bool,
                     seed: tf.Tensor | None = None) -> tf.Tensor:
    """The same transform as :func:`preprocess_pair` for one image (CycleGAN's domains).

    Returns:
      A float32 ``[H, W, channels]`` tensor in [-1, 1].
    """
    return _jitter(to_channels(image, channels), config, training, seed)


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """The SHA-256 of a manifest's content (without its ``checksum`` field), as
    ``data_prep.build_tfrecords`` records it: a hand edit of the manifest is detected."""
    content = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def manifest_intact(manifest: dict[str, Any]) -> bool:
    """Whether the manifest is as written (one written before the checksum was kept: True)."""
    return "checksum" not in manifest or manifest["checksum"] == manifest_checksum(manifest)


def _holds_images(folder: str) -> bool:
    """Whether ``folder`` or one of its subfolders (train/, trainA/, train_label/, ...) holds
    image files."""
    if not os.path.isdir(folder):
        return False
    folders = [folder] + [os.path.join(folder, n) for n in sorted(os.listdir(folder))[:50]
                          if os.path.isdir(os.path.join(folder, n))]
    return any(name.lower().endswith(image_io.IMAGE_EXTENSIONS)
               for f in folders for name in image_io.list_files(f))


def read_manifest(data_dir: str, check: bool = True) -> dict[str, Any]:
    """Loads ``manifest.json`` of a TFRecord directory, with a clear error when it is missing,
    damaged or (``check``) changed after it was written: its counts and label statistics are
    what training trusts, so a hand edit is refused (``data_prep.verify`` reads it with
    ``check=False`` and reports what differs from the shards)."""
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        if _holds_images(data_dir):  # a folder of images given where TFRecords belong
            out = os.path.normpath(data_dir) + "_tfrecords"
            raise DataError(f"--data_dir {data_dir} holds images, not TFRecords: build them "
                            "into another folder with `python -m data_prep.build_tfrecords "
                            f"--input_dir {data_dir} --output_dir {out}` (see its --layout) "
                            f"and pass --data_dir {out}")
        raise DataError(f"{path} not found; build the data with "
                        "`python -m data_prep.build_tfrecords --input_dir IN --output_dir "
                        f"{data_dir}`")
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
    except (ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict) or not all(
            isinstance(v, dict) for v in manifest["splits"].values()):
        raise DataError(f"{path} is damaged (not a manifest of data_prep.build_tfrecords); "
                        "rebuild the data with data_prep.build_tfrecords")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{path} has schema_version {manifest.get('schema_version')!r}, expected "
                        f"{SCHEMA_VERSION}; rebuild it with data_prep.build_tfrecords")
    if check and not manifest_intact(manifest):
        raise DataError(f"{path} was changed after data_prep.build_tfrecords wrote it (its "
                        "counts and label statistics are what training trusts); rebuild the data, "
                        f"or run `python -m data_prep.verify --data_dir {data_dir}` to see how it "
                        "differs from the shards")
    return manifest


# The manifest layouts a model's ``data_layout`` reads, and how to build them.
READS_LAYOUTS = {"paired": ("aligned", "paired"), "unaligned": ("unaligned",),
                 "labels": ("labels",)}
BUILD_HINTS = {
    "paired": ("--layout=aligned", "from A|B images (or --layout=paired_folders from IN/A and "
                                   "IN/B)"),
    "unaligned": ("--layout=unaligned", "from IN/trainA and IN/trainB (and testA, testB), the "
                                        "two domains' images unpaired"),
    "labels": ("--layout=labels", "from IN/train_label, IN/train_inst and IN/train_img"),
}


def check_layout(data_dir: str, data_layout: str, model: str) -> None:
    """Refuses TFRecords of a layout that a model of ``data_layout`` does not read, naming both
    and how to build the right one (instead of "no training examples").

    Raises:
      DataError: the manifest's layout is not one ``data_layout`` reads.
    """
    layout = read_manifest(data_dir).get("layout", "aligned")
    if layout not in READS_LAYOUTS[data_layout]:
        raise DataError(f"--data_dir {data_dir} holds {layout} data, but {model} trains on "
                        f"{data_layout} data: build it with `python -m data_prep.build_tfrecords "
                        f"{BUILD_HINTS[data_layout][0]}` {BUILD_HINTS[data_layout][1]}")


def num_examples(data_dir: str, split: str) -> int:
    """Number of examples of ``split`` according to the manifest (0 when the split is absent).

    For the ``unaligned`` layout this is ``max(|A|, |B|)``, the reference's epoch length.
    """
    return read_manifest(data_dir)["splits"].get(split, {}).get("num_examples", 0)


def shard_paths(data_dir: str, manifest: dict[str, Any], split: str,
                domain: str | None = None) -> list[str]:
    """The shard files of ``split`` (of one ``domain``, ``A`` or ``B``, for ``unaligned`` data)."""
    info = manifest["splits"].get(split)
    if info and domain is not None:
        info = info.get(domain)
    if not info or not info.get("num_examples"):
        present = ", ".join(s for s, v in manifest["splits"].items() if v.get("num_examples"))
        what = f"split {split!r}" + (f" domain {domain}" if domain else "")
        raise DataError(f"{what} has no examples in {data_dir}; present splits: {present}")
    paths = [os.path.join(data_dir, name) for name in info["shards"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"shard {missing[0]} listed in the manifest is missing; rebuild the data")
    # A cheap check of every start: a shard of another size is truncated, cut or replaced.
    for path, expected in zip(paths, info.get("shard_bytes") or []):
        size = os.path.getsize(path)
        if size != expected:
            raise DataError(
                f"shard {path} is {size} bytes, the manifest says {expected} (an interrupted "
                f"copy or another file); check the folder with `python -m data_prep.verify "
                f"--data_dir {data_dir}` and rebuild or copy the shard again")
    return paths


def split_parts(manifest: dict[str, Any], split: str) -> list[tuple[str, dict[str, Any]]]:
    """The shard lists of ``split`` in a manifest as ``(name, entry)``: the split itself, or
    each domain of unaligned data (``trainA``, ``trainB``)."""
    info = manifest["splits"].get(split, {})
    if "shards" in info:
        return [(split, info)]
    return [(f"{split}{d}", info[d]) for d in DOMAINS if d in info]


def split_shards(data_dir: str, split: str) -> list[str]:
    """Every shard file of ``split`` (both domains of unaligned data)."""
    return [os.path.join(data_dir, name)
            for _, part in split_parts(read_manifest(data_dir), split)
            for name in part.get("shards", [])]


def corrupt_record(path: str) -> str | None:
    """The first record-level fault of one shard found by TensorFlow's framing and CRC checks
    (``corrupted record at 37460``, ``truncated record at 29335``), or None."""
    try:
        for _ in tf.data.TFRecordDataset(path):
            pass
    except tf.errors.DataLossError as e:
        return error_text(e)
    return None


def error_text(error: tf.errors.OpError) -> str:
    """A TensorFlow op error's own words, without the function and op names around them."""
    line = (error.message or str(error)).strip().splitlines()[0]
    return re.sub(r"\{\{[^}]*\}\}\s*", "", line).split(" [Op:")[0].strip() or type(error).__name__


def readable_shards(paths: list[str], policy: str
                    ) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """The shards to read under ``on_corrupt_record=policy``: ``paths`` as they are (``fail``),
    or with every damaged shard replaced by a copy of its good records (``skip``,
    ``tfrecord_repair.clean_copy``); and per damaged shard, the records dropped and its first
    fault (:func:`corrupt_record`)."""
    if policy != "skip":
        return paths, {}
    from tf_pix2pix import tfrecord_repair

    readable, dropped = [], {}
    for path in paths:
        fault = corrupt_record(path)
        if fault:
            copy, count = tfrecord_repair.clean_copy(path)
            readable.append(copy)
            dropped[path] = (count, fault)
        else:
            readable.append(path)
    return readable, dropped


def corruption_error(data_dir: str, split: str, error: tf.errors.DataLossError,
                     during: str, skip_flag: bool = False) -> CorruptDataError:
    """The one-line error for a corrupt record met ``during`` reading ``split``: the shard
    (found by checking the split's shards one by one), the byte offset, and the remedies
    (``skip_flag``: also ``--on_corrupt_record=skip``)."""
    bad = [(path, fault) for path in split_shards(data_dir, split)
           for fault in [corrupt_record(path)] if fault]
    where = (f"{bad[0][0]} has a {bad[0][1]}" + (f" ({len(bad) - 1} more bad shard(s))"
                                                  if len(bad) > 1 else "")) if bad else (
        f"a shard of split {split!r} of {data_dir} is corrupt ({error_text(error)[:120]})")
    return CorruptDataError(
        f"{where}; {during}. List every bad shard with `python -m data_prep.verify --data_dir "
        f"{data_dir}` and rebuild them with data_prep.build_tfrecords, then rerun the same "
        "command" + (", or rerun it with --on_corrupt_record=skip to train on the good records"
                     if skip_flag else ""))


def _read_shards(paths: list[str], seed: int, training: bool) -> tf.data.Dataset:
    """The serialized records of ``paths``, the shard order shuffled when training."""
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return files.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _stream(records: tf.data.Dataset, count: int, config: DataConfig, training: bool,
            repeat: bool, skip_examples: int, shuffle_seed: int) -> tf.data.Dataset:
    """Shuffles (training), repeats and enumerates ``records``; then skips ``skip_examples``.

    The running index makes every element's stateless seed unique and reproducible, and the
    skip happens before any decoding, so repositioning a resumed pipeline is cheap.
    """
    if training:
        buffer = config.shuffle_buffer or min(count, _MAX_SHUFFLE_BUFFER)
        records = records.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    records = records.enumerate()
    return records.skip(skip_examples) if skip_examples else records


def tfds_split(split: str, domain: str) -> str:
    """The TFDS ``cycle_gan`` split holding ``domain`` of ``split`` (``trainA``, ``testB``, ...)."""
    return f"{split}{domain}"


def _tfds_domain(config: DataConfig, split: str, domain: str) -> tuple[tf.data.Dataset, int]:
    """Encoded images of one domain from TensorFlow Datasets, and their count."""
    import tensorflow_datasets as tfds

    name = tfds_split(split, domain)
    try:
        ds = tfds.load(config.tfds_name, split=name, data_dir=config.tfds_data_dir or None,
                       shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    except (tfds.core.registered.DatasetNotFoundError, ValueError, KeyError) as e:
        raise DataError(f"--tfds_name={config.tfds_name} split {name}: "
                        f"{str(e).splitlines()[0]}") from e
    count = int(ds.cardinality())
    if count <= 0:
        raise DataError(f"--tfds_name={config.tfds_name} split {name} has no examples")
    return ds.map(lambda ex: ex["image"]), count


def _records_domain(config: DataConfig, manifest: dict[str, Any], split: str, domain: str,
                    training: bool) -> tuple[tf.data.Dataset, int]:
    """Encoded images of one domain of ``unaligned`` TFRecords, and their count."""
    paths, _ = readable_shards(shard_paths(config.data_dir, manifest, split, domain),
                               config.on_corrupt_record)
    spec = _feature_spec("aligned")  # one image per record, as the aligned layout
    seed = config.seed + 2 * DOMAINS.index(domain)
    records = _read_shards(paths, seed, training)
    encoded = records.map(lambda r: tf.io.parse_single_example(r, spec)["image/encoded"])
    return encoded, manifest["splits"][split][domain]["num_examples"]


def domain_sizes(config: DataConfig, split: str) -> dict[str, int]:
    """Examples of each domain of an unpaired ``split`` (0 for a missing split)."""
    if config.tfds_name:
        if split not in TFDS_SPLITS:
            return {d: 0 for d in DOMAINS}
        sizes = {}
        for domain in DOMAINS:
            try:
                sizes[domain] = _tfds_domain(config, split, domain)[1]
            except DataError:
                sizes[domain] = 0
        return sizes
    info = read_manifest(config.data_dir)["splits"].get(split, {})
    return {d: info.get(d, {}).get("num_examples", 0) for d in DOMAINS}


def build_unpaired_dataset(config: DataConfig, split: str, training: bool,
                           repeat: bool | None = None, batch_size: int | None = None,
                           skip_examples: int = 0,
                           unscaled_from: int | None = None) -> tf.data.Dataset:
    """CycleGAN's input pipeline: ``(real_A, real_B)`` batches from two unrelated domains.

    The reference's epoch is ``max(|A|, |B|)`` steps and draws a random B image for each A. Here
    each domain is an independently shuffled, repeated stream (a new permutation every pass), so
    each A is met by a random B, and every B image is seen once per pass through B; the two
    images get independent jitter (crop, mirror). ``direction=BtoA`` swaps the domains, as the
    reference does. Sources: ``unaligned`` TFRecords (``data_dir``) or TFDS (``tfds_name``).

    Args:
      config: data configuration.
      split: ``train``, ``val`` or ``test``.
      training: shuffle and jitter; evaluation applies neither and ends with the shorter domain.
      repeat: repeat forever; defaults to ``training``.
      batch_size: defaults to ``config.batch_size``.
      skip_examples: start this many elements into both streams (exact repositioning).
      unscaled_from: from this element of each stream on, ``load_size`` is ``crop_size`` (the
        images are resized to the crop, flips stay): CUT's jitter in its decay epochs.

    Returns:
      A dataset of ``(real_A, real_B)`` float32 batches in [-1, 1] with ``input_nc`` and
      ``output_nc`` channels. Deterministic for a given ``config.seed``.
    """
    repeat = training if repeat is None else repeat
    batch_size = batch_size or config.batch_size
    manifest = None
    if not config.tfds_name:
        manifest = read_manifest(config.data_dir)
        if manifest.get("layout") != "unaligned":
            raise DataError(
                f"{config.data_dir} holds {manifest.get('layout', 'aligned')} pairs; CycleGAN "
                "reads unaligned data: build it with `python -m data_prep.build_tfrecords "
                "--layout=unaligned` from trainA/ trainB/ folders, or use --tfds_name")
    domains = DOMAINS if config.direction == "AtoB" else DOMAINS[::-1]
    streams = []
    for i, (domain, channels) in enumerate(zip(domains, (config.input_nc, config.output_nc))):
        if config.tfds_name:
            encoded, count = _tfds_domain(config, split, domain)
        else:
            encoded, count = _records_domain(config, manifest, split, domain, training)
        stream = _stream(encoded, count, config, training, repeat, skip_examples,
                         shuffle_seed=config.seed + 1 + 2 * i)

        def prepare(index, data, i=i, channels=channels):
            seed = None
            if training:
                seed = tf.random.experimental.stateless_fold_in(
                    tf.stack([tf.constant(config.seed, tf.int64), index]), i)
            image = decode_rgb(data)
            jitter = lambda c: preprocess_image(image, channels, c, training, seed)  # noqa: E731
            if unscaled_from is None:
                return jitter(config)
            unscaled = dataclasses.replace(config, load_size=config.crop_size)
            return tf.cond(index >= unscaled_from, lambda: jitter(unscaled),
                           lambda: jitter(config))

        streams.append(stream.map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True))
    ds = tf.data.Dataset.zip(tuple(streams)).batch(batch_size, drop_remainder=repeat)
    return ds.prefetch(tf.data.AUTOTUNE)


def build_dataset(config: DataConfig, split: str, training: bool, repeat: bool | None = None,
                  batch_size: int | None = None, with_filenames: bool = False,
                  skip_examples: int = 0) -> tf.data.Dataset:
    """Builds the input pipeline of one split.

    Args:
      config: data configuration (``data_dir`` must hold a manifest).
      split: ``train``, ``val`` or ``test``.
      training: apply shuffling and the random jitter; evaluation applies none of them.
      repeat: repeat forever; defaults to ``training``.
      batch_size: defaults to ``config.batch_size``.
      with_filenames: yield ``(input, target, filename)`` instead of ``(input, target)``.
      skip_examples: start this many examples into the stream, exactly where an uninterrupted
        pipeline would be (records are skipped before decoding, so skipping is cheap).

    Returns:
      A dataset of ``(input, target)`` float32 batches in [-1, 1]; ``direction`` decides which
      half is the input. Deterministic for a given ``config.seed``.
    """
    manifest = read_manifest(config.data_dir)
    layout = manifest.get("layout", "aligned")
    if layout == "unaligned":
        raise DataError(f"{config.data_dir} holds unaligned (unpaired) data; pix2pix needs pairs "
                        "(use --model=cycle_gan, or build A|B pairs with --layout=aligned)")
    paths, _ = readable_shards(shard_paths(config.data_dir, manifest, split),
                               config.on_corrupt_record)
    repeat = training if repeat is None else repeat
    batch_size = batch_size or config.batch_size
    count = manifest["splits"][split]["num_examples"]
    records = _stream(_read_shards(paths, config.seed, training), count, config, training,
                      repeat, skip_examples, shuffle_seed=config.seed + 1)

    def _prepare(index, serialized):
        ex = decode_record(serialized, layout)
        a, b = (ex["A"], ex["B"]) if config.direction == "AtoB" else (ex["B"], ex["A"])
        seed = tf.stack([tf.constant(config.seed, tf.int64), index]) if training else None
        inp, tgt = preprocess_pair(a, b, config, training, seed)
        return (inp, tgt, ex["filename"]) if with_filenames else (inp, tgt)

    ds = records.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=repeat)
    return ds.prefetch(tf.data.AUTOTUNE)


def check_label_data(config: DataConfig, manifest: dict[str, Any], split: str) -> bool:
    """Checks that the label maps of ``split`` fit ``label_nc`` and returns whether instance
    maps are read (``label_nc`` > 0 and not ``no_instance``).

    Raises:
      DataError: not ``labels`` data; RGB label images with ``label_nc`` > 0; a class id >=
        ``label_nc`` (naming the file and the largest id, not the reference's device-side
        assert); instance maps wanted but missing.
    """
    if manifest.get("layout") != "labels":
        raise DataError(f"{config.data_dir} holds {manifest.get('layout', 'aligned')} data; "
                        "pix2pixHD reads label maps: build them with `python -m "
                        "data_prep.build_tfrecords --layout=labels` from IN/train_label, "
                        "IN/train_inst, IN/train_img")
    info = manifest["splits"].get(split, {})
    if config.label_nc:
        if info.get("rgb_label_file"):
            raise DataError(
                f"{info['rgb_label_file']} is an RGB image, but --label_nc={config.label_nc} "
                "reads maps of class ids (single-channel PNGs such as Cityscapes' "
                "*_labelIds.png, not the colour *_color.png); convert the colours to ids, or "
                "pass --label_nc=0 to translate RGB images")
        largest = info.get("max_label", 0)
        if largest >= config.label_nc:
            raise DataError(
                f"{info.get('max_label_file')} holds class id {largest}, but "
                f"--label_nc={config.label_nc} allows 0..{config.label_nc - 1}; pass "
                f"--label_nc={largest + 1} (or more), or fix the label map")
    use_instance = bool(config.label_nc) and not config.no_instance
    if use_instance and info.get("num_instances", 0) < info.get("num_examples", 0):
        missing = info.get("num_examples", 0) - info.get("num_instances", 0)
        raise DataError(f"{missing} of {info.get('num_examples')} examples of split {split!r} "
                        f"in {config.data_dir} have no instance map (IN/{split}_inst); pass "
                        "--no_instance to train on the label maps alone")
    return use_instance


def build_label_dataset(config: DataConfig, split: str, training: bool,
                        repeat: bool | None = None, batch_size: int | None = None,
                        with_filenames: bool = False, skip_examples: int = 0,
                        with_instances: bool = False) -> tf.data.Dataset:
    """pix2pixHD's input pipeline: ``(encoded input, photo)`` batches from ``labels`` records.

    The label (and instance) maps and the photo get one geometric jitter (``preprocess``,
    ``load_size``, ``crop_size``, mirror), the maps resized by nearest neighbours and the photo
    bicubically; the input is ``label_maps.encode`` of the maps (one-hot of ``label_nc`` classes
    plus the instance boundaries), or the RGB label image in [-1, 1] for ``label_nc`` 0. Same
    arguments and determinism as :func:`build_dataset`; ``with_instances`` adds the instance
    ids (``[N, H, W, 1]`` int32, after the jitter) after the photo, for pix2pixHD's feature
    encoder.

    Raises:
      DataError: see :func:`check_label_data`.
    """
    from tf_pix2pix import label_maps

    manifest = read_manifest(config.data_dir)
    paths, _ = readable_shards(shard_paths(config.data_dir, manifest, split),
                               config.on_corrupt_record)
    use_instance = check_label_data(config, manifest, split)
    repeat = training if repeat is None else repeat
    batch_size = batch_size or config.batch_size
    count = manifest["splits"][split]["num_examples"]
    records = _stream(_read_shards(paths, config.seed, training), count, config, training,
                      repeat, skip_examples, shuffle_seed=config.seed + 1)
    label_nc = config.label_nc

    def _prepare(index, serialized):
        ex = tf.io.parse_single_example(serialized, _LABEL_SPEC)
        image = to_channels(decode_rgb(ex["image/encoded"]), config.output_nc)
        ids, rgb = [], [image]
        if label_nc:
            ids.append(tf.cast(decode_ids(ex["label/encoded"]), tf.float32))
        else:
            rgb.insert(0, to_channels(decode_rgb(ex["label/encoded"]), config.input_nc))
        if use_instance:
            ids.append(tf.cast(decode_ids(ex["instance/encoded"]), tf.float32))
        seed = tf.stack([tf.constant(config.seed, tf.int64), index]) if training else None
        x = _geometry(tf.concat(ids + rgb, axis=-1), config, training, seed, nearest=len(ids))
        n = len(ids)
        target = _normalize(x[..., -config.output_nc:])
        if label_nc:
            labels = tf.cast(tf.round(x[..., :1]), tf.int32)
        else:
            labels = _normalize(x[..., n:n + config.input_nc])
        instances = tf.cast(tf.round(x[..., n - 1:n]), tf.int32) if use_instance else None
        inp = label_maps.encode(labels[tf.newaxis], None if instances is None
                                else instances[tf.newaxis], label_nc)[0]
        out = (inp, target) + ((instances,) if with_instances else ())
        return out + ((ex["image/filename"],) if with_filenames else ())

    ds = records.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=repeat)
    return ds.prefetch(tf.data.AUTOTUNE)
