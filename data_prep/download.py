"""Downloads the paper's datasets by name, extracts them and builds their TFRecords.

Usage:
  python -m data_prep.download --dataset facades --output_dir data/
  python -m data_prep.download --dataset horse2zebra --output_dir data/
  python -m data_prep.download --dataset cityscapes --cityscapes_dir ~/cityscapes --output_dir data/
  python -m data_prep.download --dataset cityscapes_hd --cityscapes_dir ~/cityscapes
  python -m data_prep.download --dataset facades --base_url file:///mirror/pix2pix --output_dir data/

Writes ``OUT/<dataset>/images/`` (the extracted archive: ``train/``, ``val/``, ``test/`` A|B
images for the pix2pix sets, ``trainA/``, ``trainB/``, ``testA/``, ``testB/`` for the CycleGAN
sets) and ``OUT/<dataset>/tfrecords/`` (``--nobuild`` skips it), whose ``manifest.json`` records the
URL and the SHA-256 of the archive. The archive is fetched with ``keras.utils.get_file`` into a
cache (``--cache_dir``, default ``~/.keras/datasets``), so a second run downloads nothing. The
URLs follow the reference's download scripts; ``--base_url`` points at a mirror (``http://``,
``https://`` or ``file://``) holding the same file names.

Cityscapes cannot be redistributed: ``--dataset cityscapes --cityscapes_dir DIR`` builds the
aligned photo|labels set from your own ``gtFine_trainvaltest.zip`` and
``leftImg8bit_trainvaltest.zip``, as the reference's ``prepare_cityscapes_dataset.py`` does
(each photo and its colour label map resized to 256x256, bicubic and nearest; A = photo,
B = labels, so labels -> photo is ``--direction BtoA``), saved as PNG rather than re-encoded JPEG.
``--dataset cityscapes_hd`` builds pix2pixHD's set from the same zips at the reference's training
resolution 1024x512: ``{split}_label`` (``*_gtFine_labelIds.png``), ``{split}_inst``
(``*_gtFine_instanceIds.png``, 16-bit) resized by nearest neighbours, ``{split}_img`` (photos,
bicubic), as ``--layout=labels`` TFRecords.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from typing import Any

from data_prep.atomic import atomic_output_dir, check_output_dir
from data_prep.build_tfrecords import sha256_of
from tf_pix2pix.cli import UserError, writable_dir, run_main

PIX2PIX_DATASETS = ("facades", "maps", "edges2shoes", "edges2handbags", "night2day")
CYCLEGAN_DATASETS = ("horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo",
                     "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "iphone2dslr_flower")
DATASETS = PIX2PIX_DATASETS + CYCLEGAN_DATASETS + ("cityscapes", "cityscapes_hd")
# The reference's datasets/download_pix2pix_dataset.sh and download_cyclegan_dataset.sh.
BASE_URLS = {"pix2pix": "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets",
             "cyclegan": "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"}
CITYSCAPES_ZIPS = ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip")
CITYSCAPES_SIZE = 256
CITYSCAPES_HD_SIZE = (512, 1024)  # pix2pixHD's training resolution, height x width


@dataclasses.dataclass(frozen=True)
class DownloadConfig:
    """What to fetch and where (see the module doc)."""

    dataset: str
    output_dir: str
    base_url: str = ""
    sha256: str = ""
    cache_dir: str = ""
    cityscapes_dir: str = ""
    build: bool = True
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise UserError(f"--dataset={self.dataset!r}: use one of {', '.join(DATASETS)}")
        if self.dataset.startswith("cityscapes") and not self.cityscapes_dir:
            raise UserError(f"--dataset={self.dataset} needs --cityscapes_dir: Cityscapes "
                            "cannot be redistributed; download gtFine_trainvaltest.zip and "
                            "leftImg8bit_trainvaltest.zip from cityscapes-dataset.com")
        if self.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise UserError(f"--sha256={self.sha256!r} is not a SHA-256 (64 hex digits)")

    @property
    def family(self) -> str:
        return "cyclegan" if self.dataset in CYCLEGAN_DATASETS else "pix2pix"

    @property
    def archive_name(self) -> str:
        return f"{self.dataset}.zip" if self.family == "cyclegan" else f"{self.dataset}.tar.gz"

    @property
    def url(self) -> str:
        base = (self.base_url or BASE_URLS[self.family]).rstrip("/")
        return f"{base}/{self.archive_name}"


def fetch(config: DownloadConfig) -> tuple[str, str]:
    """Downloads (or reuses the cached) archive; returns ``(path, sha256)``.

    A failed or corrupted download (checksum mismatch, an archive that cannot be opened) removes
    the cached file, so the next run starts clean.
    """
    import keras

    cache = writable_dir(config.cache_dir or "~/.keras", "--cache_dir")
    try:
        path = keras.utils.get_file(fname=config.archive_name, origin=config.url,
                                    cache_dir=cache, cache_subdir="datasets")
    except Exception as e:  # urllib/HTTP errors arrive as several exception types
        _remove(os.path.join(cache, "datasets", config.archive_name))
        raise UserError(f"cannot download {config.url}: {str(e).splitlines()[0]}; check the "
                        "network or --base_url") from e
    digest = sha256_of(path)
    if config.sha256 and digest != config.sha256.lower():
        _remove(path)
        raise UserError(f"{config.url}: SHA-256 {digest} differs from --sha256={config.sha256}; "
                        "the download is corrupted or the file changed (removed from the cache)")
    return path, digest


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def extract(archive: str, dest: str) -> str:
    """Extracts a .tar.gz or .zip into ``dest`` (no path may leave it); returns the data root.

    Raises:
      UserError: the archive is corrupt or holds paths outside ``dest``.
    """
    try:
        if archive.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if os.path.isabs(name) or ".." in name.split("/"):
                        raise UserError(f"{archive}: unsafe path {name!r} in the archive")
                z.extractall(dest)
        else:
            with tarfile.open(archive, "r:gz") as t:
                t.extractall(dest, filter="data")  # refuses links and paths outside dest
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise UserError(f"{archive} is not a readable archive ({e}); it was removed from the "
                        "cache, run again to download it anew") from e
    entries = [e for e in os.listdir(dest) if not e.startswith((".", "__MACOSX"))]
    # The published archives hold one folder named after the dataset.
    if len(entries) == 1 and os.path.isdir(os.path.join(dest, entries[0])):
        return os.path.join(dest, entries[0])
    return dest


def _write_png(path: str, pixels) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(pixels).numpy())


def _hd_example(labels: zipfile.ZipFile, photos: zipfile.ZipFile, photo_name: str,
                label_stem: str, dest: str, split: str, stem: str) -> None:
    """pix2pixHD's triplet of one Cityscapes image at 1024x512: label ids and instance ids
    resized by nearest neighbours (the ids stay ids), the photo bicubically."""
    import numpy as np
    import tensorflow as tf

    from tf_pix2pix.data import decode_ids

    size = list(CITYSCAPES_HD_SIZE)
    photo = tf.image.resize(tf.io.decode_png(photos.read(photo_name), channels=3), size,
                            "bicubic", antialias=True)
    _write_png(os.path.join(dest, f"{split}_img", f"{stem}_leftImg8bit.png"),
               np.clip(np.round(photo.numpy()), 0, 255).astype(np.uint8))
    for kind, folder, dtype in (("labelIds", "label", np.uint8), ("instanceIds", "inst",
                                                                  np.uint16)):
        ids = decode_ids(labels.read(f"{label_stem}_gtFine_{kind}.png"))
        ids = tf.image.resize(ids, size, "nearest").numpy().astype(dtype)
        _write_png(os.path.join(dest, f"{split}_{folder}", f"{stem}_gtFine_{kind}.png"), ids)


def prepare_cityscapes(cityscapes_dir: str, dest: str, hd: bool = False) -> dict[str, int]:
    """Builds ``dest/train`` and ``dest/val`` of 512x256 photo|labels PNGs from the two zips,
    or (``hd``) pix2pixHD's ``{split}_label``, ``{split}_inst`` and ``{split}_img`` at
    1024x512."""
    import numpy as np
    import tensorflow as tf

    zips = [os.path.join(cityscapes_dir, name) for name in CITYSCAPES_ZIPS]
    missing = [p for p in zips if not os.path.isfile(p)]
    if missing:
        raise UserError(f"{missing[0]} not found; --cityscapes_dir needs "
                        f"{' and '.join(CITYSCAPES_ZIPS)}")
    counts = {}
    try:
        with zipfile.ZipFile(zips[0]) as labels, zipfile.ZipFile(zips[1]) as photos:
            label_names = set(labels.namelist())
            wanted = ("labelIds", "instanceIds") if hd else ("color",)
            for split in ("train", "val"):
                pattern = re.compile(rf"^leftImg8bit/{split}/([^/]+)/(.+)_leftImg8bit\.png$")
                out = os.path.join(dest, split)
                if not hd:
                    os.makedirs(out, exist_ok=True)
                count = 0
                for name in sorted(photos.namelist()):
                    match = pattern.match(name)
                    if not match:
                        continue
                    city, stem = match.groups()
                    label_stem = f"gtFine/{split}/{city}/{stem}"
                    for kind in wanted:
                        if f"{label_stem}_gtFine_{kind}.png" not in label_names:
                            raise UserError(f"{zips[0]} has no {label_stem}_gtFine_{kind}.png "
                                            f"for {name}")
                    if hd:
                        _hd_example(labels, photos, name, label_stem, dest, split, stem)
                        count += 1
                        continue
                    label_name = f"{label_stem}_gtFine_color.png"
                    size = [CITYSCAPES_SIZE, CITYSCAPES_SIZE]
                    photo = tf.image.resize(tf.io.decode_png(photos.read(name), channels=3),
                                            size, "bicubic", antialias=True)
                    segmap = tf.image.resize(
                        tf.io.decode_png(labels.read(label_name), channels=3), size, "nearest")
                    pair = np.concatenate([np.clip(np.round(photo.numpy()), 0, 255),
                                           segmap.numpy()], axis=1).astype(np.uint8)
                    count += 1
                    with open(os.path.join(out, f"{count}.png"), "wb") as f:
                        f.write(tf.io.encode_png(pair).numpy())
                counts[split] = count
    except zipfile.BadZipFile as e:
        raise UserError(f"a Cityscapes zip in {cityscapes_dir} is corrupt ({e})") from e
    if not any(counts.values()):
        raise UserError(f"no leftImg8bit/train or val photos found in {zips[1]}")
    return counts


def download(config: DownloadConfig) -> dict[str, Any]:
    """Fetches, extracts and (``build``) converts one dataset; returns a summary.

    Everything is written to a temporary folder and renamed to ``OUT/<dataset>`` only on success,
    so a failure leaves nothing behind but the (verified) cache.
    """
    from data_prep.build_tfrecords import BuildConfig, build, write_manifest

    check = functools.partial(check_output_dir, os.path.join(config.output_dir, config.dataset),
                              config.overwrite, flag="--output_dir/<dataset>")
    final = check()
    source: dict[str, Any] = {"dataset": config.dataset}
    with atomic_output_dir(final, recheck=check, holder="download",
                           flag="--output_dir") as work:
        images = os.path.join(work, "images")
        if config.dataset.startswith("cityscapes"):
            source["cityscapes_dir"] = os.path.abspath(config.cityscapes_dir)
            source["counts"] = prepare_cityscapes(config.cityscapes_dir, images,
                                                  hd=config.dataset == "cityscapes_hd")
        else:
            archive, digest = fetch(config)
            source.update(url=config.url, sha256=digest, bytes=os.path.getsize(archive))
            scratch = tempfile.mkdtemp(dir=work)
            try:
                root = extract(archive, scratch)
            except UserError:
                _remove(archive)
                raise
            os.replace(root, images)
            shutil.rmtree(scratch, ignore_errors=True)
        summary = {"images": os.path.join(final, "images"), "source": source}
        if config.build:
            layout = ("unaligned" if config.family == "cyclegan" else
                      "labels" if config.dataset == "cityscapes_hd" else "aligned")
            records = os.path.join(work, "tfrecords")
            manifest = build(BuildConfig(input_dir=images, output_dir=records, layout=layout,
                                         on_bad_image="skip", progress=config.progress))
            manifest["source"] = source
            write_manifest(records, manifest)
            summary["tfrecords"] = os.path.join(final, "tfrecords")
            summary["manifest"] = manifest
    return summary


def main(argv: list[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    config = DownloadConfig(
        dataset=f.dataset, output_dir=f.output_dir, base_url=f.base_url or "",
        sha256=f.sha256 or "", cache_dir=f.cache_dir or "", cityscapes_dir=f.cityscapes_dir or "",
        build=f.build, overwrite=f.overwrite, progress=f.progress)
    summary = download(config)
    source = summary["source"]
    if "sha256" in source:
        print(f"{config.dataset}: {source['url']} ({source['bytes']} bytes, "
              f"sha256 {source['sha256']})")
    print(f"images: {summary['images']}")
    if "tfrecords" in summary:
        from data_prep.build_tfrecords import summary as build_summary

        print(build_summary(summary["manifest"], summary["tfrecords"]))
        model = ("--model=cycle_gan " if config.family == "cyclegan" else
                 "--model=pix2pix_hd " if config.dataset == "cityscapes_hd" else "")
        print(f"train: python run_train.py {model}--data_dir {summary['tfrecords']} "
              f"--model_dir runs/{config.dataset}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_enum("dataset", None, list(DATASETS), "Dataset to fetch.")
    flags.DEFINE_string("output_dir", "data", "Writes <output_dir>/<dataset>/{images,tfrecords}.")
    flags.DEFINE_string("base_url", None, "Mirror holding the same file names (http://, "
                        "https:// or file://); default: the reference's.")
    flags.DEFINE_string("sha256", None, "Expected SHA-256 of the archive; verified when given.")
    flags.DEFINE_string("cache_dir", None, "Download cache (default ~/.keras).")
    flags.DEFINE_string("cityscapes_dir", None, "Folder with gtFine_trainvaltest.zip and "
                        "leftImg8bit_trainvaltest.zip (--dataset=cityscapes).")
    flags.DEFINE_bool("build", True, "Build the TFRecords after extracting.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing <output_dir>/<dataset>.")
    flags.DEFINE_bool("progress", True, "Show progress.")
    flags.mark_flag_as_required("dataset")


def run() -> None:
    define_flags()
    run_main(main)


if __name__ == "__main__":
    run()
