"""Generates the embedded demo data set: label maps of random shapes -> shaded, textured renderings.

Usage:
  python -m data_prep.make_synthetic --output_dir D [--num_train 400 --size 128 --seed 0]
  python -m data_prep.make_synthetic --output_dir D --unpaired   # CycleGAN's trainA/trainB/...
  python -m data_prep.make_synthetic --output_dir D --labels --size 128 --width 256  # pix2pixHD's

Each example is one A|B JPEG: A (left) is a flat-colour label map of overlapping rectangles,
discs and triangles on a background; B (right) renders the same scene with per-class materials
(brick courses, lit spheres, striped roofs), a sky-to-ground gradient, drop shadows and a little
sensor noise. The mapping is learnable (materials and shading follow from the labels and the
geometry) but not trivial (shading, texture and shadows are not in the labels). Every image depends
only on ``(seed, split, index)``, so the set is identical on every machine for a given seed.

``--unpaired`` writes the same two domains without pairs, in the reference's CycleGAN layout:
``{split}A/`` holds label maps (PNG) of the even-numbered scenes and ``{split}B/`` renderings
(JPEG) of the odd-numbered ones, so no image of one domain is the counterpart of an image of the
other. ``valAB/`` and ``testAB/`` pair each label map of ``valA/`` and ``testA/`` with its true
rendering (A|B PNGs, the same names), which the unpaired domains leave out: training never reads
them, but an A -> B translation can be scored against them (``run_train.py --preset=demo`` does
for the unpaired demos).

``--labels`` writes pix2pixHD's layout: ``{split}_label/`` (8-bit PNGs of the class ids 0..3),
``{split}_inst/`` (16-bit PNGs of instance ids, ``1000 * class + k``) and ``{split}_img/`` (JPEG
renderings), ``--size`` high and ``--width`` wide.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re

import numpy as np

from data_prep.atomic import atomic_output_dir, check_output_dir
from tf_pix2pix.cli import UserError, define_flags, from_flags, run_main
from tf_pix2pix.configuration import option

# Label colours of background, rectangle, disc and triangle.
PALETTE = np.array([[20, 30, 110], [230, 60, 40], [40, 200, 70], [250, 220, 50]], np.float32)
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """What to generate (each field is a flag of ``python -m data_prep.make_synthetic``)."""

    output_dir: str = option(dataclasses.MISSING, "Folder to write train/, val/, test/ into "
                                                  "(new or empty).")
    num_train: int = option(400, "Training pairs.")
    num_val: int = option(50, "Validation pairs.")
    num_test: int = option(50, "Test pairs.")
    size: int = option(128, "Height and width of each of A and B.")
    seed: int = option(0, "Seed; the same seed gives the same images.")
    unpaired: bool = option(False, "Write CycleGAN's {split}A/ and {split}B/ folders of "
                                   "unrelated label maps and renderings instead of A|B pairs.")
    labels: bool = option(False, "Write pix2pixHD's {split}_label/ (class ids), {split}_inst/ "
                                 "(instance ids) and {split}_img/ folders.")
    width: int = option(0, "With --labels: image width (0 = --size).")
    overwrite: bool = option(False, "Replace a non-empty --output_dir that holds only this "
                                    "tool's split folders.")

    def __post_init__(self) -> None:
        if self.size < 16 or (self.width and self.width < 16):
            raise UserError(f"--size={self.size} --width={self.width}: use at least 16")
        if self.unpaired and self.labels:
            raise UserError("--unpaired and --labels are two layouts; pass one")
        if self.width and not self.labels:
            raise UserError("--width is for --labels; the other layouts are square")
        if min(self.num_train, self.num_val, self.num_test) < 0 or self.num_train == 0:
            raise UserError("--num_train must be > 0 and --num_val/--num_test >= 0")


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator,
                height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the mask of one random shape and a local coordinate used for its material."""
    cy, cx = rng.uniform(0.1, 0.9, 2) * np.array([height, width])
    r = rng.uniform(0.08, 0.22) * min(height, width)
    if kind == 1:  # rectangle (a "building")
        h, w = r * rng.uniform(0.8, 1.8), r * rng.uniform(0.7, 1.4)
        mask = (np.abs(yy - cy) < h) & (np.abs(xx - cx) < w)
        local = (xx - (cx - w)) / (2 * w)
    elif kind == 2:  # disc (a "tree")
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2
        mask = d2 < 1.0
        # Sphere shading: normal . light, with the light from the upper left.
        nz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
        local = np.clip(0.35 * (-(xx - cx) / r) + 0.35 * (-(yy - cy) / r) + 0.7 * nz, 0, 1)
    else:  # triangle pointing up (a "roof")
        top, base = cy - r, cy + r * 0.8
        t = (yy - top) / (base - top)
        mask = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * r * 1.2)
        local = (xx - cx) / (2.4 * r) + 0.5
    return mask, local


def render_scene(seed: int, split: str, index: int, height: int,
                 width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders one scene: ``[height, width]`` int32 class ids (0 background, 1 rectangle, 2
    disc, 3 triangle) and instance ids (``1000 * class + k`` for the k-th shape drawn, 0 for
    the background, as Cityscapes numbers instances), and the ``[height, width, 3]`` uint8
    photo."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    labels = np.zeros((height, width), np.int32)
    instances = np.zeros((height, width), np.int32)
    side = min(height, width)
    v = yy[..., None] / (height - 1)
    photo = (1 - v) * np.array([150, 190, 240], np.float32) + v * np.array([90, 120, 70],
                                                                            np.float32)
    shadow = np.zeros((height, width), bool)
    off = max(1, side // 40)
    for k in range(int(rng.integers(3, 8))):
        kind = int(rng.integers(1, 4))
        mask, local = _shape_mask(kind, yy, xx, rng, height, width)
        shifted = np.zeros_like(mask)
        shifted[off:, off:] = mask[:-off, :-off]
        shadow |= shifted & ~mask
        shadow &= ~mask
        labels[mask] = kind
        instances[mask] = 1000 * kind + k
        if kind == 1:
            course = max(3, side // 24)
            mortar = (yy.astype(np.int32) % course) == 0
            light = 0.6 + 0.4 * local[..., None]
            colour = np.array([170, 70, 50], np.float32) * light
            colour = np.where(mortar[..., None], np.array([200, 190, 180], np.float32), colour)
        elif kind == 2:
            colour = np.array([40, 150, 50], np.float32) * (0.35 + 0.9 * local[..., None])
        else:
            stripe = ((xx + yy).astype(np.int32) // max(2, side // 32)) % 2 == 0
            colour = np.array([90, 100, 140], np.float32) * (0.7 + 0.5 * local[..., None])
            colour = colour * np.where(stripe[..., None], 1.0, 0.8)
        photo = np.where(mask[..., None], colour, photo)
    photo = np.where((shadow & (labels == 0))[..., None], photo * 0.55, photo)
    photo += rng.normal(0.0, 4.0, photo.shape)
    return labels, instances, np.clip(photo, 0, 255).round().astype(np.uint8)


def render_pair(seed: int, split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Renders one ``(label_map, photo)`` pair of ``[size, size, 3]`` uint8 images (the label
    map in the flat colours of ``PALETTE``)."""
    labels, _, photo = render_scene(seed, split, index, size, size)
    return np.clip(PALETTE[labels], 0, 255).astype(np.uint8), photo


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


_OWN = re.compile(r"(train|val|test)(|A|B|AB|_label|_inst|_img)")


def written_by_synthetic(name: str) -> bool:
    """Whether an entry of an output folder is one this tool writes (a split folder):
    ``--overwrite`` replaces only folders that hold nothing else."""
    return bool(_OWN.fullmatch(name))


def make_synthetic(config: SyntheticConfig) -> dict[str, int]:
    """Writes ``{split}/{index:05d}.jpg`` A|B images (or, ``unpaired``, ``{split}A/`` and
    ``{split}B/`` folders of unrelated scenes); returns the count of each split.

    The folder is written whole or not at all (beside it, then renamed): a folder that already
    holds files is refused (``overwrite`` replaces one of this tool's own), so a set is never
    mixed with files of another run.
    """
    check = functools.partial(check_output_dir, config.output_dir, config.overwrite,
                              owned=written_by_synthetic)
    out = check()
    with atomic_output_dir(out, recheck=check, holder="make_synthetic") as workdir:
        return _generate(dataclasses.replace(config, output_dir=workdir))


def _generate(config: SyntheticConfig) -> dict[str, int]:
    import tensorflow as tf

    counts = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
    for split, count in counts.items():
        if config.labels:
            folders = {k: os.path.join(config.output_dir, f"{split}_{k}")
                       for k in ("label", "inst", "img")}
            for folder in folders.values():
                os.makedirs(folder, exist_ok=True)
            for i in range(count):
                labels, instances, photo = render_scene(config.seed, split, i, config.size,
                                                        config.width or config.size)
                _write(os.path.join(folders["label"], f"{i:05d}.png"),
                       tf.io.encode_png(labels.astype(np.uint8)[..., None]).numpy())
                _write(os.path.join(folders["inst"], f"{i:05d}.png"),
                       tf.io.encode_png(instances.astype(np.uint16)[..., None]).numpy())
                _write(os.path.join(folders["img"], f"{i:05d}.jpg"),
                       tf.io.encode_jpeg(photo, quality=95).numpy())
            continue
        if config.unpaired:
            for domain in ("A", "B"):
                os.makedirs(os.path.join(config.output_dir, f"{split}{domain}"), exist_ok=True)
            truth = os.path.join(config.output_dir, f"{split}AB")
            if split != "train" and count:
                os.makedirs(truth, exist_ok=True)
            for i in range(count):
                labels, rendered = render_pair(config.seed, split, 2 * i, config.size)
                _, photo = render_pair(config.seed, split, 2 * i + 1, config.size)
                _write(os.path.join(config.output_dir, f"{split}A", f"{i:05d}.png"),
                       tf.io.encode_png(labels).numpy())
                _write(os.path.join(config.output_dir, f"{split}B", f"{i:05d}.jpg"),
                       tf.io.encode_jpeg(photo, quality=95).numpy())
                if split != "train":  # the label map and its true rendering, for scoring
                    _write(os.path.join(truth, f"{i:05d}.png"), tf.io.encode_png(
                        np.concatenate([labels, rendered], axis=1)).numpy())
            continue
        folder = os.path.join(config.output_dir, split)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            a, b = render_pair(config.seed, split, i, config.size)
            _write(os.path.join(folder, f"{i:05d}.jpg"),
                   tf.io.encode_jpeg(np.concatenate([a, b], axis=1), quality=95).numpy())
    return counts


def main(argv: list[str]) -> None:
    config = from_flags(SyntheticConfig)
    counts = make_synthetic(config)
    what = ("label/instance/photo triplets" if config.labels else
            "unpaired images per domain" if config.unpaired else "A|B images")
    print(f"wrote {counts} {what} of {config.width or config.size}x{config.size} to "
          f"{config.output_dir}")


def run() -> None:
    define_flags(SyntheticConfig)  # one flag per field, with its default and help
    run_main(main)


if __name__ == "__main__":
    run()
