"""Checks a TFRecord folder against its manifest: every shard's size and SHA-256, every record's
CRC, every image's decoding.

Usage:
  python -m data_prep.verify --data_dir data/facades/tfrecords

Prints one line per problem (the shard, what is wrong, where) and a summary; exits 1 when
anything is wrong, so scripts can run it before a long training job. Shards written before the
manifest recorded sizes and checksums are read record by record all the same.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from data_prep.build_tfrecords import MANIFEST, sha256_of
from tf_pix2pix.cli import UserError, define_flags, from_flags, run_main
from tf_pix2pix.configuration import option


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """What to check (each field is a flag)."""

    data_dir: str = option(dataclasses.MISSING, "Folder made by data_prep.build_tfrecords.")
    decode: bool = option(True, "Decode every image too (slower; --nodecode checks only sizes, "
                                "checksums and record CRCs).")


def shard_entries(manifest: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(split name, shard file, {bytes, sha256})`` of every shard the manifest lists (the
    split name includes the domain of unaligned data: ``trainA``)."""
    from tf_pix2pix import data as data_lib

    entries = []
    for split in manifest["splits"]:
        for name, part in data_lib.split_parts(manifest, split):
            sizes = part.get("shard_bytes") or [None] * len(part["shards"])
            sums = part.get("shard_sha256") or [None] * len(part["shards"])
            for shard, size, digest in zip(part["shards"], sizes, sums):
                entries.append((name, shard, {"bytes": size, "sha256": digest}))
    return entries


@dataclasses.dataclass
class ShardCheck:
    """What one pass over a shard found: its problems, its record count and, for label maps,
    the largest class id, whether a map was RGB and how many records had instance maps."""

    problems: list[str] = dataclasses.field(default_factory=list)
    records: int = 0
    max_label: int = -1
    rgb_label: bool = False
    instances: int = 0
    complete: bool = True  # every record was read (False: missing, or cut by a bad record)


def _decode(serialized: Any, layout: str | None, check: ShardCheck) -> None:
    """Decodes one record of ``layout`` (None: an unaligned image record) into ``check``."""
    from tf_pix2pix import data as data_lib

    if layout is None:
        data_lib.decode_image_record(serialized)["image"].numpy()
    elif layout == "labels":
        example = data_lib.decode_label_record(serialized)
        label, image = example["label"].numpy(), example["image"].numpy()
        if label.shape[:2] != image.shape[:2]:
            raise ValueError(f"label map {label.shape[1]}x{label.shape[0]} but photo "
                             f"{image.shape[1]}x{image.shape[0]}")
        if label.shape[-1] == 1:
            check.max_label = max(check.max_label, int(label.max()))
        else:
            check.rgb_label = True
        if example["instance"] is not None:
            if example["instance"].shape[:2] != image.shape[:2]:
                raise ValueError("instance map and photo differ in size")
            check.instances += 1
    else:
        example = data_lib.decode_record(serialized, layout)
        example["A"].numpy()
        example["B"].numpy()


def verify_shard(data_dir: str, layout: str, shard: str, expected: dict[str, Any],
                 decode: bool = True) -> ShardCheck:
    """What is wrong with one shard (no problems: nothing): its size and SHA-256 against the
    manifest, then one pass over its records (TensorFlow's framing and CRC checks) decoding each
    with its layout's schema when ``decode``."""
    import tensorflow as tf

    from tf_pix2pix import data as data_lib

    check = ShardCheck()
    path = os.path.join(data_dir, shard)
    if not os.path.isfile(path):
        check.problems.append("missing")
        check.complete = False
        return check
    size = os.path.getsize(path)
    if expected.get("bytes") is not None and size != expected["bytes"]:
        check.problems.append(f"{size} bytes, the manifest says {expected['bytes']}")
    if expected.get("sha256") and sha256_of(path) != expected["sha256"]:
        check.problems.append("SHA-256 differs from the manifest's")
    undecodable = []
    record_layout = layout if layout != "unaligned" else None
    try:
        for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
            check.records += 1
            if not decode:
                continue
            try:
                _decode(serialized, record_layout, check)
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                reason = (getattr(e, "message", "") or str(e)).strip().splitlines()[0]
                undecodable.append(f"record {index} does not decode ({reason[:120]})")
    except tf.errors.DataLossError as e:
        check.problems.append(data_lib.error_text(e))
        check.complete = False
    check.problems += undecodable
    return check


def _manifest_problems(manifest: dict[str, Any], parts: dict[str, list[ShardCheck]],
                       decode: bool) -> list[str]:
    """Where the manifest's counts and label statistics differ from what the shards hold (and
    whether the manifest was edited after it was written)."""
    from tf_pix2pix import data as data_lib

    problems = []
    if not data_lib.manifest_intact(manifest):
        problems.append("changed after data_prep.build_tfrecords wrote it (its checksum "
                        "differs)")
    for split in manifest["splits"]:
        for name, part in data_lib.split_parts(manifest, split):
            checks = parts.get(name, [])
            if not all(c.complete for c in checks):
                continue  # a missing or cut shard is reported as such
            records = sum(c.records for c in checks)
            if part.get("num_examples") != records:
                problems.append(f"{name}: num_examples is {part.get('num_examples')}, the shards "
                                f"hold {records} records")
            if decode and manifest.get("layout") == "labels":
                largest = max((c.max_label for c in checks), default=-1)
                if part.get("max_label", -1) != largest:
                    problems.append(f"{name}: max_label is {part.get('max_label')}, the largest "
                                    f"class id in the shards is {largest}")
                if bool(part.get("rgb_label_file")) != any(c.rgb_label for c in checks):
                    problems.append(f"{name}: rgb_label_file does not match the shards")
                instances = sum(c.instances for c in checks)
                if part.get("num_instances", 0) != instances:
                    problems.append(f"{name}: num_instances is {part.get('num_instances')}, "
                                    f"the shards hold {instances}")
        info = manifest["splits"][split]
        if "shards" not in info and "A" in info and "B" in info:
            largest = max(info["A"].get("num_examples", 0), info["B"].get("num_examples", 0))
            if info.get("num_examples") != largest:
                problems.append(f"{split}: num_examples is {info.get('num_examples')}, the "
                                f"larger domain holds {largest}")
    return problems


def verify(config: VerifyConfig) -> dict[str, Any]:
    """Checks every shard of ``config.data_dir`` and the manifest's counts against them;
    returns ``{"shards", "problems"}`` where ``problems`` maps each bad shard (and
    ``manifest.json``, when its counts or label statistics differ from the shards) to what is
    wrong with it."""
    from tf_pix2pix import data as data_lib

    if not os.path.isdir(config.data_dir):
        raise UserError(f"--data_dir {config.data_dir} is not a directory")
    manifest = data_lib.read_manifest(config.data_dir, check=False)
    layout = manifest.get("layout", "aligned")
    entries = shard_entries(manifest)
    problems = {}
    parts: dict[str, list[ShardCheck]] = {}
    for name, shard, expected in entries:
        check = verify_shard(config.data_dir, layout, shard, expected, config.decode)
        parts.setdefault(name, []).append(check)
        if check.problems:
            problems[shard] = check.problems
    found = _manifest_problems(manifest, parts, config.decode)
    if found:
        problems[MANIFEST] = found
    return {"shards": len(entries), "problems": problems}


def main(argv: list[str]) -> int:
    config = from_flags(VerifyConfig)
    result = verify(config)
    for shard, found in result["problems"].items():
        for problem in found:
            print(f"{os.path.join(config.data_dir, shard)}: {problem}")
    bad = len([s for s in result["problems"] if s != MANIFEST])
    verdict = [f"{bad} bad; rebuild them with data_prep.build_tfrecords (or train with "
               "--on_corrupt_record=skip)"] if bad else []
    if MANIFEST in result["problems"]:
        verdict.append(f"{MANIFEST} does not match its shards; rebuild the data with "
                       "data_prep.build_tfrecords")
    print(f"checked {result['shards']} shard(s) of {config.data_dir}: "
          + ("; ".join(verdict) if verdict else "all good"))
    return 1 if result["problems"] else 0


def run() -> None:
    define_flags(VerifyConfig)
    run_main(main)


if __name__ == "__main__":
    run()
