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

from data_prep.build_tfrecords import sha256_of
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


def verify_shard(data_dir: str, layout: str, shard: str, expected: dict[str, Any],
                 decode: bool = True) -> list[str]:
    """What is wrong with one shard (empty: nothing): its size and SHA-256 against the
    manifest, then one pass over its records (TensorFlow's framing and CRC checks) decoding each
    image when ``decode``."""
    import tensorflow as tf

    from tf_pix2pix import data as data_lib

    path = os.path.join(data_dir, shard)
    if not os.path.isfile(path):
        return ["missing"]
    problems = []
    size = os.path.getsize(path)
    if expected.get("bytes") is not None and size != expected["bytes"]:
        problems.append(f"{size} bytes, the manifest says {expected['bytes']}")
    if expected.get("sha256") and sha256_of(path) != expected["sha256"]:
        problems.append("SHA-256 differs from the manifest's")
    undecodable = []
    record_layout = layout if layout != "unaligned" else None
    try:
        for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
            if not decode:
                continue
            try:
                if record_layout is None:
                    data_lib.decode_image_record(serialized)["image"].numpy()
                else:
                    example = data_lib.decode_record(serialized, record_layout)
                    example["A"].numpy()
                    example["B"].numpy()
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                reason = (getattr(e, "message", "") or str(e)).strip().splitlines()[0]
                undecodable.append(f"record {index} does not decode ({reason[:120]})")
    except tf.errors.DataLossError as e:
        problems.append(data_lib.error_text(e))
    return problems + undecodable


def verify(config: VerifyConfig) -> dict[str, Any]:
    """Checks every shard of ``config.data_dir``; returns ``{"shards", "problems"}`` where
    ``problems`` maps each bad shard to what is wrong with it."""
    from tf_pix2pix import data as data_lib

    if not os.path.isdir(config.data_dir):
        raise UserError(f"--data_dir {config.data_dir} is not a directory")
    manifest = data_lib.read_manifest(config.data_dir)
    layout = manifest.get("layout", "aligned")
    entries = shard_entries(manifest)
    problems = {}
    for _, shard, expected in entries:
        found = verify_shard(config.data_dir, layout, shard, expected, config.decode)
        if found:
            problems[shard] = found
    return {"shards": len(entries), "problems": problems}


def main(argv: list[str]) -> int:
    config = from_flags(VerifyConfig)
    result = verify(config)
    for shard, found in result["problems"].items():
        for problem in found:
            print(f"{os.path.join(config.data_dir, shard)}: {problem}")
    bad = len(result["problems"])
    print(f"checked {result['shards']} shard(s) of {config.data_dir}: "
          + ("all good" if not bad else f"{bad} bad; rebuild them with data_prep.build_tfrecords "
                                        "(or train with --on_corrupt_record=skip)"))
    return 1 if bad else 0


def run() -> None:
    define_flags(VerifyConfig)
    run_main(main)


if __name__ == "__main__":
    run()
