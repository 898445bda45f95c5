"""Combines same-named images of two folders into A|B images (A left, B right).

Usage:
  python -m data_prep.combine_a_and_b --fold_A A --fold_B B --fold_AB OUT

Split subfolders (``A/train``, ``B/train``, ...) are mirrored into ``OUT/train``; without them all
pairs go to OUT directly. Names present on one side only and pairs whose sizes differ are reported;
with ``--on_bad_image=fail`` (default) the first one stops the run and nothing is written, with
``skip`` they are listed and counted. Images are written as PNG (lossless) unless
``--output_format=jpeg``.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from data_prep.atomic import atomic_output_dir, check_output_dir
from data_prep.build_tfrecords import ON_BAD_IMAGE, pair_folders, progress, read_pair
from tf_pix2pix.cli import UserError, run_main
from tf_pix2pix.image_io import BadImageError


def combine(fold_a: str, fold_b: str, fold_ab: str, on_bad_image: str = "fail",
            output_format: str = "png", overwrite: bool = False,
            show_progress: bool = True) -> tuple[dict[str, int], list[dict[str, str]]]:
    """Writes the A|B images; returns the count per split and the skipped files with reasons."""
    import tensorflow as tf

    if on_bad_image not in ON_BAD_IMAGE:
        raise UserError(f"--on_bad_image={on_bad_image!r}: use fail or skip")
    if output_format not in ("png", "jpeg"):
        raise UserError(f"--output_format={output_format!r}: use png or jpeg")
    check = functools.partial(check_output_dir, fold_ab, overwrite, flag="--fold_AB",
                              sources={"--fold_A": fold_a, "--fold_B": fold_b})
    out = check()
    items, skipped = pair_folders(fold_a, fold_b)
    if skipped and on_bad_image == "fail":
        raise BadImageError(skipped[0]["file"], skipped[0]["reason"])
    flat = list(items) == ["train"] and not os.path.isdir(os.path.join(fold_a, "train"))
    counts = {}
    with atomic_output_dir(out, recheck=check, holder="combine_a_and_b",
                           flag="--fold_AB") as workdir:
        for split, pairs in items.items():
            folder = workdir if flat else os.path.join(workdir, split)
            os.makedirs(folder, exist_ok=True)
            counts[split] = 0
            for item, _ in zip(pairs, progress(len(pairs), show_progress)):
                try:
                    a, b = read_pair(item)
                except BadImageError as e:
                    if on_bad_image == "fail":
                        raise
                    skipped.append({"file": e.path, "reason": e.reason})
                    continue
                joined = np.concatenate([a.pixels, b.pixels], axis=1)
                stem = os.path.splitext(item.name)[0]
                if output_format == "png":
                    data, ext = tf.io.encode_png(joined).numpy(), ".png"
                else:
                    data, ext = tf.io.encode_jpeg(joined, quality=95).numpy(), ".jpg"
                with open(os.path.join(folder, stem + ext), "wb") as f:
                    f.write(data)
                counts[split] += 1
    return counts, skipped


def main(argv: list[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    counts, skipped = combine(f.fold_A, f.fold_B, f.fold_AB, f.on_bad_image, f.output_format,
                              f.overwrite, f.progress)
    for split, n in counts.items():
        print(f"{split}: {n} A|B images")
    print(f"skipped: {len(skipped)}")
    for s in skipped:
        print(f"  skipped {s['file']}: {s['reason']}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("fold_A", None, "Folder of A images (optionally with split subfolders).")
    flags.DEFINE_string("fold_B", None, "Folder of B images with the same names.")
    flags.DEFINE_string("fold_AB", None, "Output folder of A|B images.")
    flags.DEFINE_enum("on_bad_image", "fail", list(ON_BAD_IMAGE),
                      "fail: stop at the first unmatched or bad pair; skip: list and count it.")
    flags.DEFINE_enum("output_format", "png", ["png", "jpeg"], "Encoding of the A|B images.")
    flags.DEFINE_bool("overwrite", False, "Replace a non-empty --fold_AB.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.mark_flags_as_required(["fold_A", "fold_B", "fold_AB"])


def run() -> None:
    define_flags()
    run_main(main)


if __name__ == "__main__":
    run()
