"""data_prep.download against archives the tests make and serve themselves (no internet)."""

import functools
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from data_prep.download import DownloadConfig, download, sha256_of
from tf_pix2pix.cli import UserError

from conftest import random_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(pixels):
    return tf.io.encode_png(pixels).numpy()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A folder laid out like the reference's servers: facades.tar.gz and horse2zebra.zip."""
    root = tmp_path_factory.mktemp("mirror")
    with tarfile.open(root / "facades.tar.gz", "w:gz") as tar:
        for split, count in (("train", 3), ("val", 1), ("test", 1)):
            for i in range(count):
                _add(tar, f"facades/{split}/{i + 1}.png", _png(random_image(16, 32, seed=i)))
    with zipfile.ZipFile(root / "horse2zebra.zip", "w") as z:
        for folder, count in (("trainA", 3), ("trainB", 2), ("testA", 1), ("testB", 1)):
            for i in range(count):
                z.writestr(f"horse2zebra/{folder}/n{i}.png", _png(random_image(24, 20, seed=i)))
        z.writestr("horse2zebra/trainB/gray.png", _png(random_image(24, 20, 1)))
    return root


@pytest.fixture(scope="module")
def server(mirror):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_pix2pix_set_over_http_builds_tfrecords_and_records_the_sha256(server, mirror,
                                                                        tmp_path):
    out = tmp_path / "data"
    summary = download(DownloadConfig(dataset="facades", output_dir=str(out), base_url=server,
                                      cache_dir=str(tmp_path / "cache"), progress=False))
    manifest = json.load(open(out / "facades" / "tfrecords" / "manifest.json"))
    assert manifest["layout"] == "aligned"
    assert {s: v["num_examples"] for s, v in manifest["splits"].items()} == {
        "train": 3, "val": 1, "test": 1}
    assert manifest["source"]["sha256"] == sha256_of(str(mirror / "facades.tar.gz"))
    assert manifest["source"]["url"] == f"{server}/facades.tar.gz"
    assert sorted(os.listdir(out / "facades" / "images")) == ["test", "train", "val"]
    assert summary["tfrecords"] == str(out / "facades" / "tfrecords")
    # The cache folder did not exist: it was created and used (not Keras's /tmp/.keras).
    assert (tmp_path / "cache" / "datasets" / "facades.tar.gz").is_file()
    # A second run reuses the cache: it works with the server's file gone.
    os.rename(mirror / "facades.tar.gz", mirror / "moved.tar.gz")
    try:
        download(DownloadConfig(dataset="facades", output_dir=str(tmp_path / "again"),
                                base_url=server, cache_dir=str(tmp_path / "cache"),
                                progress=False))
    finally:
        os.rename(mirror / "moved.tar.gz", mirror / "facades.tar.gz")
    assert (tmp_path / "again" / "facades" / "tfrecords" / "manifest.json").is_file()


def test_cyclegan_set_from_file_url_is_unaligned(mirror, tmp_path):
    download(DownloadConfig(dataset="horse2zebra", output_dir=str(tmp_path / "d"),
                            base_url=f"file://{mirror}", cache_dir=str(tmp_path / "c"),
                            progress=False))
    manifest = json.load(open(tmp_path / "d" / "horse2zebra" / "tfrecords" / "manifest.json"))
    train = manifest["splits"]["train"]
    assert manifest["layout"] == "unaligned"
    assert (train["A"]["num_examples"], train["B"]["num_examples"]) == (3, 3)
    assert train["B"]["converted_to_rgb"] == {"grayscale": 1}


def test_sha256_mismatch_and_corrupt_archive_leave_nothing_behind(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="differs from --sha256"):
        download(DownloadConfig(dataset="facades", output_dir=str(tmp_path / "d"),
                                base_url=server, cache_dir=str(cache), sha256="0" * 64,
                                progress=False))
    assert not (tmp_path / "d" / "facades").exists()
    assert not (cache / "datasets" / "facades.tar.gz").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "facades.tar.gz").write_bytes((mirror / "facades.tar.gz").read_bytes()[:200])
    with pytest.raises(UserError, match="not a readable archive"):
        download(DownloadConfig(dataset="facades", output_dir=str(tmp_path / "d"),
                                base_url=f"file://{broken}", cache_dir=str(cache),
                                progress=False))
    assert not (tmp_path / "d" / "facades").exists()
    assert not (cache / "datasets" / "facades.tar.gz").exists()
    # Not even the output folder the failed runs would have created is left.
    assert not (tmp_path / "d").exists()


def test_a_cache_dir_that_cannot_be_created_is_a_one_line_error(server, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=f"--cache_dir {blocker}/cache: cannot create it"):
        download(DownloadConfig(dataset="facades", output_dir=str(tmp_path / "d"),
                                base_url=server, cache_dir=str(blocker / "cache"),
                                progress=False))
    assert not (tmp_path / "d").exists()


def test_unreachable_server_and_cityscapes_without_files_are_one_line_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.download", "--dataset=maps",
         "--base_url=http://127.0.0.1:9", f"--output_dir={tmp_path}",
         f"--cache_dir={tmp_path / 'c'}"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot download http://127.0.0.1:9/maps.tar.gz" in result.stderr
    with pytest.raises(UserError, match="needs --cityscapes_dir"):
        DownloadConfig(dataset="cityscapes", output_dir=str(tmp_path))


def test_cityscapes_is_prepared_from_the_users_zips(tmp_path):
    src = tmp_path / "cs"
    src.mkdir()
    rng = np.random.default_rng(0)
    label_colours = np.array([[128, 64, 128], [70, 70, 70], [107, 142, 35]], np.uint8)
    with zipfile.ZipFile(src / "gtFine_trainvaltest.zip", "w") as labels, \
            zipfile.ZipFile(src / "leftImg8bit_trainvaltest.zip", "w") as photos:
        for split, city, count in (("train", "aachen", 2), ("val", "bonn", 1),
                                   ("test", "berlin", 1)):
            for i in range(count):
                stem = f"{city}_{i:06d}_000019"
                photos.writestr(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                                _png(random_image(64, 128, seed=i)))
                segmap = label_colours[rng.integers(0, 3, (64, 128))]
                labels.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_color.png", _png(segmap))
                labels.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
                                _png(segmap[..., :1]))
    download(DownloadConfig(dataset="cityscapes", cityscapes_dir=str(src),
                            output_dir=str(tmp_path / "d"), progress=False))
    images = tmp_path / "d" / "cityscapes" / "images"
    assert sorted(os.listdir(images)) == ["train", "val"]  # test has no public labels
    pair = tf.io.decode_png((images / "train" / "1.png").read_bytes()).numpy()
    assert pair.shape == (256, 512, 3)
    # B (right) is the label map resized with nearest neighbours: only label colours remain.
    assert {tuple(p) for p in pair[:, 256:].reshape(-1, 3)} <= {tuple(c) for c in label_colours}
    manifest = json.load(open(tmp_path / "d" / "cityscapes" / "tfrecords" / "manifest.json"))
    assert manifest["splits"]["train"]["num_examples"] == 2
    assert manifest["source"]["counts"] == {"train": 2, "val": 1}


def test_cityscapes_hd_keeps_label_and_instance_ids_at_1024x512(tmp_path):
    src = tmp_path / "cs"
    src.mkdir()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(src / "gtFine_trainvaltest.zip", "w") as labels, \
            zipfile.ZipFile(src / "leftImg8bit_trainvaltest.zip", "w") as photos:
        for split, city in (("train", "aachen"), ("val", "bonn")):
            stem = f"{city}_000000_000019"
            photos.writestr(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                            _png(random_image(64, 128, seed=1)))
            ids = rng.choice(np.array([7, 11, 26], np.uint8), (64, 128))
            inst = np.where(ids == 26, 26001, ids.astype(np.uint16))  # Cityscapes' numbering
            labels.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
                            _png(ids[..., None]))
            labels.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png",
                            _png(inst[..., None]))
    download(DownloadConfig(dataset="cityscapes_hd", cityscapes_dir=str(src),
                            output_dir=str(tmp_path / "d"), progress=False))
    images = tmp_path / "d" / "cityscapes_hd" / "images"
    assert sorted(os.listdir(images)) == ["train_img", "train_inst", "train_label", "val_img",
                                          "val_inst", "val_label"]
    from tf_pix2pix.data import decode_ids

    label = decode_ids((images / "train_label" / "aachen_000000_000019_gtFine_labelIds.png")
                       .read_bytes()).numpy()
    inst = decode_ids((images / "train_inst" / "aachen_000000_000019_gtFine_instanceIds.png")
                      .read_bytes()).numpy()
    assert label.shape == (512, 1024, 1)
    assert set(np.unique(label)) == {7, 11, 26} and set(np.unique(inst)) == {7, 11, 26001}
    np.testing.assert_array_equal(np.where(label == 26, 26001, label), inst)  # same resize
    manifest = json.load(open(tmp_path / "d" / "cityscapes_hd" / "tfrecords" / "manifest.json"))
    assert manifest["layout"] == "labels"
    assert manifest["splits"]["train"]["max_label"] == 26
    assert manifest["splits"]["train"]["num_instances"] == 1
