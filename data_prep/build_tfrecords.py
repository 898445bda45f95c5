"""Builds sharded TFRecords and a manifest from a folder of paired images.

Usage:
  python -m data_prep.build_tfrecords --input_dir IN --output_dir OUT [--layout aligned]

Layouts of IN:
  aligned (default): A|B images (A left, B right, width = 2 x height), either in split subfolders
    ``IN/train``, ``IN/val``, ``IN/test`` or directly in IN (then all of them are ``train``).
  paired_folders: ``IN/A/...`` and ``IN/B/...`` holding same-named images of equal size, with or
    without split subfolders (``IN/A/train``, ``IN/B/train``, ...).
  unaligned (CycleGAN, the reference's layout): ``IN/trainA``, ``IN/trainB``, ``IN/testA``,
    ``IN/testB`` (and ``valA``/``valB``) of unrelated images, counts and sizes; written as
    per-domain shards ``trainA-*``, ``trainB-*``.
  labels (pix2pixHD's layout): ``IN/train_label`` (maps of class ids: 8- or 16-bit grayscale
    PNGs, or RGB images for ``--label_nc=0``), ``IN/train_img`` (the photos) and optionally
    ``IN/train_inst`` (maps of instance ids), likewise ``test_*`` and ``val_*``. Files are
    matched by name, Cityscapes' suffixes (``_gtFine_labelIds``, ``_gtFine_instanceIds``,
    ``_leftImg8bit``) ignored. Id maps are stored as 16-bit PNGs of the same ids (lossless, one
    way to decode them); the manifest records each split's largest class id and its file, so
    that training checks ``--label_nc`` before it starts.

Images that are not RGB (grayscale, gray+alpha, RGBA, palette, CMYK) are kept as they are and
converted when read (gray replicated, alpha dropped); the manifest counts them per split.

The original encoded bytes are stored (no re-encoding); every image is decoded once here so a bad
file is caught now rather than in the middle of training. Output is written to a temporary folder
beside OUT and renamed into place only when everything succeeded.
"""

from __future__ import annotations

import collections
import hashlib
import dataclasses
import functools
import json
import math
import os
import re
import time
from typing import Any, Iterator

from absl import flags

from data_prep.atomic import atomic_output_dir, check_output_dir
from tf_pix2pix.cli import UserError, define_flags, from_flags, run_main
from tf_pix2pix.configuration import option
from tf_pix2pix.runtime.progress import progress_bar
from tf_pix2pix.data import (MANIFEST, SCHEMA_VERSION, SPLITS, error_text, make_example,
                             make_label_example, manifest_checksum)
from tf_pix2pix.image_io import (BadImageError, ImageFile, encode_ids, list_files,
                                 read_aligned_pair, read_id_map, read_image)
from tf_pix2pix.label_maps import label_key

ON_BAD_IMAGE = ("fail", "skip")
LAYOUTS = ("aligned", "paired_folders", "unaligned", "labels")
DOMAINS = ("A", "B")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Options of a TFRecord build (see the module doc for the layouts)."""

    input_dir: str = option(dataclasses.MISSING, "Folder of A|B images (or A/ and B/ folders).")
    output_dir: str = option(dataclasses.MISSING, "Folder to write shards and manifest.json "
                                                  "into.")
    layout: str = option("aligned", "aligned: A|B images; paired_folders: IN/A and IN/B with "
                                    "same names; unaligned: CycleGAN's IN/trainA, IN/trainB, "
                                    "IN/testA, IN/testB; labels: pix2pixHD's IN/train_label, "
                                    "IN/train_img, IN/train_inst.", LAYOUTS)
    num_shards: int = option(0, "Shards per split; 0 = from --shard_size_mb.")
    shard_size_mb: float = option(64.0, "Target shard size when --num_shards is 0.")
    on_bad_image: str = option("fail", "fail: stop at the first bad file; skip: skip, count and "
                                       "list it.", ON_BAD_IMAGE)
    overwrite: bool = option(False, "Replace a non-empty --output_dir that holds only this "
                                    "tool's shards and manifest.")
    progress: bool = option(True, "Show a progress bar.")

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise UserError(f"--layout={self.layout!r}: use one of {', '.join(LAYOUTS)}")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise UserError(f"--on_bad_image={self.on_bad_image!r}: use fail or skip")
        if self.num_shards < 0 or self.shard_size_mb <= 0:
            raise UserError("--num_shards must be >= 0 and --shard_size_mb > 0")


@dataclasses.dataclass(frozen=True)
class Item:
    """One example to write: a single A|B file, or an A file and a B file."""

    name: str
    paths: tuple[str, ...]


def _split_folders(root: str) -> dict[str, str]:
    """Maps split name to folder: split subfolders when present, else the root as ``train``."""
    found = {s: os.path.join(root, s) for s in SPLITS if os.path.isdir(os.path.join(root, s))}
    return found or {"train": root}


def _collect_items(config: BuildConfig) -> tuple[dict[str, list[Item]], list[dict[str, str]]]:
    """Lists the examples of each split and the names that cannot be paired."""
    root = config.input_dir
    if not os.path.isdir(root):
        raise UserError(f"--input_dir {root} is not a directory")
    if config.layout == "aligned":
        return {split: [Item(n, (os.path.join(folder, n),)) for n in list_files(folder)]
                for split, folder in _split_folders(root).items()}, []
    if config.layout == "unaligned":
        return _domain_folders(root), []
    if config.layout == "labels":
        return label_folders(root)
    return pair_folders(os.path.join(root, "A"), os.path.join(root, "B"))


def _domain_folders(root: str) -> dict[str, dict[str, list[Item]]]:
    """The reference's unaligned layout: ``{split: {"A": items, "B": items}}``."""
    found: dict[str, dict[str, list[Item]]] = {}
    for split in SPLITS:
        folders = {d: os.path.join(root, f"{split}{d}") for d in DOMAINS}
        present = [d for d, f in folders.items() if os.path.isdir(f)]
        if not present:
            continue
        if len(present) == 1:
            missing = folders["B" if present == ["A"] else "A"]
            raise UserError(f"{folders[present[0]]} exists but {missing} does not; a split needs "
                            "both domains")
        found[split] = {d: [Item(n, (os.path.join(f, n),)) for n in list_files(f)]
                        for d, f in folders.items()}
    if not found:
        raise UserError(f"--input_dir {root} has no trainA/trainB (or testA/testB) folders; "
                        "--layout=unaligned reads the reference's CycleGAN layout")
    return found


def label_folders(root: str) -> tuple[dict[str, list[Item]], list[dict[str, str]]]:
    """pix2pixHD's layout: ``{split: [Item(key, (label, photo[, instance]))]}`` and the files
    without a partner (a label without a photo, a photo without a label, or — when the split
    has an instance folder — either without an instance map)."""
    items: dict[str, list[Item]] = {}
    unmatched: list[dict[str, str]] = []
    for split in SPLITS:
        folders = {kind: os.path.join(root, f"{split}_{kind}") for kind in ("label", "img", "inst")}
        present = {k for k, f in folders.items() if os.path.isdir(f)}
        if not present:
            continue
        for kind in ("label", "img"):
            if kind not in present:
                raise UserError(f"{folders[kind]} does not exist; a split of --layout=labels "
                                f"needs {split}_label and {split}_img folders")
        files = {k: {label_key(n): os.path.join(folders[k], n) for n in list_files(folders[k])}
                 for k in present}
        keys = set(files["label"]) & set(files["img"])
        if "inst" in files:
            keys &= set(files["inst"])
        for kind, named in files.items():
            for key in sorted(set(named) - keys):
                others = ", ".join(f"{split}_{k}" for k in sorted(files) if key not in files[k])
                unmatched.append({"file": named[key],
                                  "reason": f"no file of the same name in {others}"})
        items[split] = [Item(key, (files["label"][key], files["img"][key])
                             + ((files["inst"][key],) if "inst" in files else ()))
                        for key in sorted(keys)]
    if not items:
        raise UserError(f"--input_dir {root} has no train_label/train_img (or test_*) folders; "
                        "--layout=labels reads pix2pixHD's layout")
    return items, unmatched


def pair_folders(dir_a: str, dir_b: str) -> tuple[dict[str, list[Item]], list[dict[str, str]]]:
    """Pairs same-named files of ``dir_a`` and ``dir_b`` (split subfolders mirrored).

    Returns:
      The pairs of each split, and ``{"file", "reason"}`` for every name found on one side only.
    """
    for d in (dir_a, dir_b):
        if not os.path.isdir(d):
            raise UserError(f"{d} is not a directory; A and B folders are both needed")
    unmatched: list[dict[str, str]] = []
    items: dict[str, list[Item]] = {}
    splits_a, splits_b = _split_folders(dir_a), _split_folders(dir_b)
    for split in sorted(set(splits_a) | set(splits_b)):
        if split not in splits_a or split not in splits_b:
            raise UserError(f"split {split!r} exists in only one of {dir_a} and {dir_b}")
        names_a = set(list_files(splits_a[split]))
        names_b = set(list_files(splits_b[split]))
        for side, only, folder in (("B", names_a - names_b, splits_a[split]),
                                   ("A", names_b - names_a, splits_b[split])):
            for name in sorted(only):
                unmatched.append({"file": os.path.join(folder, name),
                                  "reason": f"no file of the same name in the {side} folder"})
        items[split] = [Item(n, (os.path.join(splits_a[split], n),
                                 os.path.join(splits_b[split], n)))
                        for n in sorted(names_a & names_b)]
    return items, unmatched


def read_pair(item: Item) -> tuple[ImageFile, ImageFile]:
    """Reads the A and B files of a paired item and checks that their sizes match."""
    a, b = read_image(item.paths[0]), read_image(item.paths[1])
    if (a.height, a.width) != (b.height, b.width):
        raise BadImageError(item.paths[1], f"size {b.width}x{b.height} differs from its A image "
                            f"{item.paths[0]} ({a.width}x{a.height})")
    return a, b


def _serialize_labels(item: Item) -> tuple[bytes, str, list[str], dict[str, Any]]:
    """One record of the ``labels`` layout, and what the manifest counts of it."""
    ids, label = read_id_map(item.paths[0], allow_color=True)
    photo = read_image(item.paths[1])
    files = [label, photo]
    instance = b""
    if len(item.paths) > 2:
        inst_ids, inst = read_id_map(item.paths[2])
        files.append(inst)
        instance = encode_ids(inst_ids)
    for other in files[1:]:
        if (other.height, other.width) != (label.height, label.width):
            raise BadImageError(other.path, f"size {other.width}x{other.height} differs from "
                                f"its label map {label.path} ({label.width}x{label.height})")
    stats = {"max_label": int(ids.max()) if ids is not None else None,
             "rgb_label": ids is None, "instance": bool(instance), "file": label.path}
    record = make_label_example(item.name, label.height, label.width,
                                label.encoded if ids is None else encode_ids(ids),
                                3 if ids is None else 1, photo.encoded, instance)
    return record, f"{label.width}x{label.height}", [photo.mode], stats


def _serialize(item: Item, layout: str) -> tuple[bytes, str, list[str], dict[str, Any]]:
    """Reads, checks and serialises one item.

    Returns:
      The record, the ``WxH`` of an image (of a half, for A|B pairs), the colour modes of the
      files read (``ImageFile.mode``) and, for the ``labels`` layout, its label statistics.
    """
    if layout == "labels":
        return _serialize_labels(item)
    if layout == "unaligned":
        image = read_image(item.paths[0])
        record = make_example(item.name, image.height, image.width, encoded=image.encoded)
        return record, f"{image.width}x{image.height}", [image.mode], {}
    if len(item.paths) == 1:
        image = read_aligned_pair(item.paths[0])
        half = image.width // 2
        record = make_example(item.name, image.height, half, encoded=image.encoded)
        return record, f"{half}x{image.height}", [image.mode], {}
    a, b = read_pair(item)
    record = make_example(item.name, a.height, a.width, encoded_a=a.encoded, encoded_b=b.encoded)
    return record, f"{a.width}x{a.height}", [a.mode, b.mode], {}


def _shard_count(config: BuildConfig, items: list[Item]) -> int:
    # Never more shards than examples: an empty shard only slows reading down.
    if config.num_shards:
        return max(1, min(config.num_shards, len(items)))
    total = sum(os.path.getsize(p) for item in items for p in item.paths)
    return max(1, min(len(items), math.ceil(total / (config.shard_size_mb * 1024 * 1024))))


def progress(total: int, enabled: bool) -> Iterator[None]:
    bar = progress_bar(total, "image") if enabled and total else None
    for i in range(total):
        yield
        if bar is not None:
            bar.update(i + 1, finalize=i + 1 == total)


def sha256_of(path: str) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_split(config: BuildConfig, split: str, items: list[Item], workdir: str,
                 skipped: list[dict[str, str]]) -> dict[str, Any]:
    """Writes the shards ``<split>-NNNNN-of-NNNNN.tfrecord``; returns the split's manifest entry.

    ``split`` is a split name, or split + domain (``trainA``) for the unaligned layout.
    """
    import tensorflow as tf

    shards = _shard_count(config, items)
    names = [f"{split}-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(workdir, n)) for n in names]
    sizes: collections.Counter[str] = collections.Counter()
    converted: collections.Counter[str] = collections.Counter()
    written = 0
    labels: dict[str, Any] = {"max_label": -1, "max_label_file": None, "rgb_label_file": None,
                              "num_instances": 0}
    if config.progress:
        print(f"{split}: {len(items)} files -> {shards} shard(s)")
    try:
        for item, _ in zip(items, progress(len(items), config.progress)):
            try:
                record, size, modes, stats = _serialize(item, config.layout)
            except BadImageError as e:
                if config.on_bad_image == "fail":
                    raise
                skipped.append({"file": e.path, "reason": e.reason})
                continue
            writers[written % shards].write(record)
            sizes[size] += 1
            converted.update(m for m in modes if m != "rgb")
            written += 1
            if stats:
                if stats["rgb_label"] and labels["rgb_label_file"] is None:
                    labels["rgb_label_file"] = stats["file"]
                if stats["max_label"] is not None and stats["max_label"] > labels["max_label"]:
                    labels.update(max_label=stats["max_label"], max_label_file=stats["file"])
                labels["num_instances"] += stats["instance"]
    finally:
        for w in writers:
            w.close()
    paths = [os.path.join(workdir, n) for n in names]
    # Sizes (checked at every training start) and checksums (data_prep.verify) of the shards.
    entry = {"num_examples": written, "shards": names,
             "shard_bytes": [os.path.getsize(p) for p in paths],
             "shard_sha256": [sha256_of(p) for p in paths],
             "image_sizes": dict(sorted(sizes.items())),
             "converted_to_rgb": dict(sorted(converted.items()))}
    if config.layout == "labels":
        entry.update(labels)
    return entry


_SHARD = re.compile(r"^[A-Za-z]+-\d{5}-of-\d{5}\.tfrecord$")


def written_by_build(name: str) -> bool:
    """Whether a file name in an output folder is one :func:`build` writes (a shard or the
    manifest): ``--overwrite`` replaces only folders that hold nothing else."""
    return name == MANIFEST or bool(_SHARD.match(name))


def build(config: BuildConfig) -> dict[str, Any]:
    """Builds the TFRecords and manifest; returns the manifest.

    Raises:
      UserError: bad paths, or an existing non-empty output without ``overwrite``.
      BadImageError: a bad file when ``on_bad_image == "fail"``; nothing is left behind.
    """
    check = functools.partial(check_output_dir, config.output_dir, config.overwrite,
                              sources={"--input_dir": config.input_dir}, owned=written_by_build)
    out = check()
    items, unmatched = _collect_items(config)
    if not any(items.values()):
        raise UserError(f"no files found in --input_dir {config.input_dir}")
    if unmatched and config.on_bad_image == "fail":
        first = unmatched[0]
        raise BadImageError(first["file"], first["reason"] +
                            f" ({len(unmatched)} unmatched; --on_bad_image=skip skips them)")

    skipped = list(unmatched)
    import tensorflow as tf

    try:
        return _write(config, out, check, items, skipped)
    except (OSError, tf.errors.OpError) as e:
        filename = getattr(e, "filename", None)
        if isinstance(e, OSError) and filename and not os.path.abspath(filename).startswith(
                os.path.dirname(out) + os.sep):
            raise  # not the output's (an input file: its own error)
        reason = (e.strerror or str(e)) if isinstance(e, OSError) else error_text(e)
        if os.sep in reason.split("; ", 1)[0]:  # TensorFlow's "PATH; No space left on device"
            reason = reason.split("; ", 1)[-1]
        raise UserError(f"--output_dir {out}: cannot write the TFRecords ({reason}); nothing "
                        "was written: free space there or choose another --output_dir") from None


def _write(config: BuildConfig, out: str, check: Any, items: dict[str, Any],
           skipped: list[dict[str, str]]) -> dict[str, Any]:
    """Writes the shards and the manifest of ``items`` into ``out`` (all or nothing)."""
    with atomic_output_dir(out, recheck=check, holder="build_tfrecords") as workdir:
        splits = {}
        for split, split_items in items.items():
            if config.layout != "unaligned":
                splits[split] = _write_split(config, split, split_items, workdir, skipped)
                continue
            info = {d: _write_split(config, f"{split}{d}", split_items[d], workdir, skipped)
                    for d in DOMAINS}
            # The reference's epoch length for unpaired data.
            splits[split] = {"num_examples": max(i["num_examples"] for i in info.values()),
                             **info}
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "layout": {"aligned": "aligned", "paired_folders": "paired",
                       "unaligned": "unaligned", "labels": "labels"}[config.layout],
            "source_dir": os.path.abspath(config.input_dir),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "image_sizes_are": "width x height of each of A and B",
            "splits": splits,
            "num_skipped": len(skipped),
            "skipped": skipped,
        }
        write_manifest(workdir, manifest)
    return manifest


def write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    """Writes ``folder/manifest.json`` with the checksum of its content (a hand edit is
    detected: ``data.read_manifest`` refuses it)."""
    manifest["checksum"] = manifest_checksum(manifest)
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)


def summary(manifest: dict[str, Any], output_dir: str) -> str:
    """One line per split plus the skipped files, for the command line."""
    def line(name: str, info: dict[str, Any]) -> str:
        converted = info.get("converted_to_rgb")
        return (f"{name}: {info['num_examples']} examples in {len(info['shards'])} shard(s), "
                f"sizes {info['image_sizes']}" + (f", converted to RGB {converted}"
                                                  if converted else ""))

    lines = []
    for split, info in manifest["splits"].items():
        if "shards" in info:
            lines.append(line(split, info))
        else:
            lines += [line(f"{split}{d}", info[d]) for d in DOMAINS]
    lines.append(f"skipped: {manifest['num_skipped']}")
    lines += [f"  skipped {s['file']}: {s['reason']}" for s in manifest["skipped"]]
    lines.append(f"wrote {os.path.join(output_dir, MANIFEST)}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    print(summary(build(from_flags(BuildConfig)), flags.FLAGS.output_dir))


def run() -> None:
    define_flags(BuildConfig)  # one flag per field, with its default and help
    run_main(main)


if __name__ == "__main__":
    run()
