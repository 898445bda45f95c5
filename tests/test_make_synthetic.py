import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.make_synthetic import PALETTE, SyntheticConfig, make_synthetic, render_pair
from tf_pix2pix.cli import UserError
from tf_pix2pix.image_io import read_image


def _digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(root, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_synthetic(SyntheticConfig(output_dir=str(tmp_path / name), num_train=3, num_val=1,
                                       num_test=1, size=32, seed=seed))
        runs[name] = _digest(tmp_path / name)
    assert runs["a"] == runs["b"] != runs["c"]


def test_layout_counts_and_sizes(tmp_path):
    counts = make_synthetic(SyntheticConfig(output_dir=str(tmp_path), num_train=4, num_val=2,
                                            num_test=0, size=48))
    assert counts == {"train": 4, "val": 2, "test": 0}
    assert sorted(os.listdir(tmp_path / "train")) == [f"{i:05d}.jpg" for i in range(4)]
    image = read_image(str(tmp_path / "val" / "00001.jpg"))
    assert (image.height, image.width) == (48, 96)


def test_label_map_uses_the_palette_and_the_photo_is_not_a_recolouring():
    labels, photo = render_pair(seed=0, split="train", index=0, size=64)
    colours = {tuple(c) for c in labels.reshape(-1, 3)}
    assert colours <= {tuple(c) for c in PALETTE.astype(np.uint8)} and len(colours) >= 3
    # Within one label the rendering varies (shading, texture): the task is more than a lookup.
    background = (labels == PALETTE[0].astype(np.uint8)).all(-1)
    assert photo[background].std(axis=0).mean() > 10


def test_an_image_depends_only_on_seed_split_and_index():
    a1, b1 = render_pair(1, "train", 5, 32)
    a2, b2 = render_pair(1, "train", 5, 32)
    assert (a1 == a2).all() and (b1 == b2).all()
    assert not (render_pair(1, "val", 5, 32)[1] == b1).all()


def test_invalid_size_is_refused():
    with pytest.raises(UserError, match="--size=8"):
        SyntheticConfig(output_dir="x", size=8)


def test_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "data_prep.make_synthetic", "--output_dir",
                             str(tmp_path), "--num_train=2", "--num_val=1", "--num_test=1",
                             "--size=32"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote {'train': 2, 'val': 1, 'test': 1}" in result.stdout
    assert len(os.listdir(tmp_path / "train")) == 2


def test_unpaired_layout_has_two_domains_and_no_pairs(tmp_path):
    make_synthetic(SyntheticConfig(output_dir=str(tmp_path), num_train=4, num_val=0, num_test=2,
                                   size=32, unpaired=True))
    assert sorted(os.listdir(tmp_path)) == ["testA", "testAB", "testB", "trainA", "trainB", "valA",
                                            "valB"]
    # testAB pairs each test label map with its true rendering (for scoring A -> B only).
    pair = read_image(str(tmp_path / "testAB" / "00001.png")).pixels
    assert (pair[:, :32] == read_image(str(tmp_path / "testA" / "00001.png")).pixels).all()
    np.testing.assert_array_equal(pair[:, 32:], render_pair(0, "test", 2, 32)[1])
    a = [read_image(str(tmp_path / "trainA" / n)) for n in sorted(os.listdir(tmp_path / "trainA"))]
    b = [read_image(str(tmp_path / "trainB" / n)) for n in sorted(os.listdir(tmp_path / "trainB"))]
    assert len(a) == len(b) == 4 and a[0].format == "png" and b[0].format == "jpeg"
    # Domain A is flat label colours only; B is rendered (many colours).
    assert {tuple(p) for p in a[0].pixels.reshape(-1, 3)} <= {tuple(c) for c in PALETTE.astype(int)}
    assert len({tuple(p) for p in b[0].pixels.reshape(-1, 3)}) > 50
    # No B image is the rendering of an A image's scene: the scenes differ.
    for i in range(4):
        labels_of_b_scene, _ = render_pair(0, "train", 2 * i + 1, 32)
        assert not np.array_equal(labels_of_b_scene, a[i].pixels)


def test_a_folder_with_files_is_refused_and_overwrite_replaces_only_its_own(tmp_path):
    """Issue 33, fault 2: into a non-empty folder it overwrote same-named files and left the
    others beside them (a mixed data set)."""
    out = tmp_path / "data"
    make_synthetic(SyntheticConfig(output_dir=str(out), num_train=3, num_val=1, num_test=1,
                                   size=32))
    before = _digest(out)
    with pytest.raises(UserError, match="is not empty; pass --overwrite"):
        make_synthetic(SyntheticConfig(output_dir=str(out), num_train=2, num_val=1, num_test=1,
                                       size=32, seed=5))
    assert _digest(out) == before
    # --overwrite replaces the whole set: no file of the first run is left beside the new ones.
    make_synthetic(SyntheticConfig(output_dir=str(out), num_train=2, num_val=1, num_test=1,
                                   size=32, overwrite=True))
    assert sorted(os.listdir(out / "train")) == ["00000.jpg", "00001.jpg"]
    # ... but never a folder holding something it did not write.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="'notes.txt'.*did not write"):
        make_synthetic(SyntheticConfig(output_dir=str(out), num_train=2, num_val=0, num_test=0,
                                       size=32, overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"
    result = subprocess.run([sys.executable, "-m", "data_prep.make_synthetic", "--output_dir",
                             str(out), "--num_train=2", "--size=32"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --output_dir {out}")
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no lock or partial folder left
