import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep.build_tfrecords import BuildConfig, build
from tf_pix2pix.cli import UserError
from tf_pix2pix.configuration import DataConfig
from tf_pix2pix.data import build_dataset
from tf_pix2pix.image_io import BadImageError

from conftest import encode_special, png_header_only, random_image, write_image


def _good_folder(root, n=3, split=None):
    folder = os.path.join(root, split) if split else root
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        write_image(os.path.join(folder, f"good{i}.png"), random_image(16, 32, seed=i))
    return folder


def _bad_file(folder, kind):
    path = os.path.join(folder, {"gif": "bad.gif", "text": "notes.txt"}.get(kind, f"bad_{kind}.png"))
    if kind == "empty":
        open(path, "wb").close()
    elif kind == "truncated":
        data = tf.io.encode_png(random_image(16, 32)).numpy()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    elif kind == "truncated_jpeg":
        path = path.replace(".png", ".jpg")
        data = tf.io.encode_jpeg(random_image(16, 32)).numpy()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    elif kind == "text":
        with open(path, "w") as f:
            f.write("not an image\n")
    elif kind == "not_a_pair":
        write_image(path, random_image(16, 16))
    elif kind == "bomb":  # declares 120,000 x 60,000 pixels (21.6 GB decoded) in 33 bytes
        with open(path, "wb") as f:
            f.write(png_header_only(120000, 60000))
    elif kind == "gif":
        from PIL import Image
        Image.fromarray(random_image(16, 32)).save(path, format="GIF")
    return path


BAD_KINDS = {
    "empty": "empty file",
    "truncated": "corrupt or truncated png",
    "truncated_jpeg": "corrupt or truncated jpeg",
    "text": "not an image",
    "not_a_pair": "not an A|B pair",
    "gif": "unsupported format gif",
    "bomb": "header declares 120000x60000 pixels",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_file_fails_and_leaves_nothing(tmp_path, kind):
    folder = _good_folder(str(tmp_path / "in"))
    bad = _bad_file(folder, kind)
    out = tmp_path / "out"
    with pytest.raises(BadImageError) as err:
        build(BuildConfig(input_dir=folder, output_dir=str(out), progress=False))
    assert err.value.path == bad and BAD_KINDS[kind] in err.value.reason
    assert not out.exists()
    assert os.listdir(tmp_path) == ["in"]  # no temporary folder left either


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_file_is_skipped_and_counted(tmp_path, kind):
    folder = _good_folder(str(tmp_path / "in"))
    bad = _bad_file(folder, kind)
    manifest = build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"),
                                 on_bad_image="skip", progress=False))
    assert manifest["splits"]["train"]["num_examples"] == 3
    assert manifest["num_skipped"] == 1
    assert manifest["skipped"][0]["file"] == bad
    assert BAD_KINDS[kind] in manifest["skipped"][0]["reason"]
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["skipped"] == manifest["skipped"]


def test_failure_keeps_an_existing_output_untouched(tmp_path):
    folder = _good_folder(str(tmp_path / "in"))
    out = tmp_path / "out"
    build(BuildConfig(input_dir=folder, output_dir=str(out), progress=False))
    before = sorted(os.listdir(out))
    _bad_file(folder, "empty")
    with pytest.raises(BadImageError):
        build(BuildConfig(input_dir=folder, output_dir=str(out), overwrite=True, progress=False))
    assert sorted(os.listdir(out)) == before


def test_non_empty_output_needs_overwrite(tmp_path):
    folder = _good_folder(str(tmp_path / "in"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty; pass --overwrite"):
        build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"), progress=False))


def test_manifest_counts_splits_shards_and_sizes(tmp_path):
    root = str(tmp_path / "in")
    _good_folder(root, 5, "train")
    _good_folder(root, 2, "val")
    manifest = build(BuildConfig(input_dir=root, output_dir=str(tmp_path / "out"), num_shards=3,
                                 progress=False))
    train = manifest["splits"]["train"]
    assert train["num_examples"] == 5 and manifest["splits"]["val"]["num_examples"] == 2
    assert train["shards"] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert train["image_sizes"] == {"16x16": 5}
    assert manifest["layout"] == "aligned" and manifest["num_skipped"] == 0
    counted = sum(1 for s in train["shards"]
                  for _ in tf.data.TFRecordDataset(str(tmp_path / "out" / s)))
    assert counted == 5
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        ["manifest.json", "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
        + train["shards"])


def test_flat_folder_is_train_and_original_bytes_are_kept(tmp_path):
    folder = str(tmp_path / "in")
    os.makedirs(folder)
    original = write_image(os.path.join(folder, "x.jpg"), random_image(16, 32))
    build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"), progress=False))
    raw = next(iter(tf.data.TFRecordDataset(str(tmp_path / "out/train-00000-of-00001.tfrecord"))))
    example = tf.train.Example.FromString(raw.numpy())
    assert example.features.feature["image/encoded"].bytes_list.value[0] == original


def test_grayscale_rgba_and_16_bit_inputs_are_accepted(tmp_path):
    folder = str(tmp_path / "in")
    os.makedirs(folder)
    write_image(os.path.join(folder, "gray.png"), random_image(16, 32, c=1))
    write_image(os.path.join(folder, "rgba.png"), random_image(16, 32, c=4))
    write_image(os.path.join(folder, "deep.png"), random_image(16, 32, dtype=np.uint16))
    manifest = build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"),
                                 progress=False))
    assert manifest["splits"]["train"]["num_examples"] == 3
    cfg = DataConfig(data_dir=str(tmp_path / "out"), preprocess="none", load_size=16,
                     crop_size=16, batch_size=3)
    x, y = next(iter(build_dataset(cfg, "train", training=False)))
    assert x.shape == (3, 16, 16, 3) and y.shape == (3, 16, 16, 3)


def test_tiny_thin_palette_and_cmyk_pairs_are_accepted_and_train(tmp_path):
    folder = str(tmp_path / "in")
    os.makedirs(folder)
    write_image(os.path.join(folder, "one_pixel_halves.png"), random_image(1, 2))
    write_image(os.path.join(folder, "thin.png"), random_image(3, 6))
    for kind in ("palette", "cmyk", "png16"):
        with open(os.path.join(folder, f"{kind}.{'jpg' if kind == 'cmyk' else 'png'}"),
                  "wb") as f:
            f.write(encode_special(random_image(16, 32, seed=7), kind))
    manifest = build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"),
                                 progress=False))
    assert manifest["splits"]["train"]["num_examples"] == 5
    assert manifest["splits"]["train"]["converted_to_rgb"] == {"cmyk": 1, "palette": 1}
    cfg = DataConfig(data_dir=str(tmp_path / "out"), load_size=18, crop_size=16, batch_size=5)
    x, y = next(iter(build_dataset(cfg, "train", training=True)))
    assert x.shape == (5, 16, 16, 3) and y.shape == (5, 16, 16, 3)
    assert np.all(np.isfinite(x)) and np.all(np.abs(x) <= 1) and np.all(np.abs(y) <= 1)


def test_paired_folders_layout(tmp_path):
    root = tmp_path / "in"
    for side in "AB":
        (root / side / "train").mkdir(parents=True)
    a, b = random_image(16, 16, seed=1), random_image(16, 16, seed=2)
    write_image(str(root / "A/train/p.png"), a)
    write_image(str(root / "B/train/p.png"), b)
    write_image(str(root / "A/train/lonely.png"), a)
    with pytest.raises(BadImageError, match="no file of the same name in the B folder"):
        build(BuildConfig(input_dir=str(root), output_dir=str(tmp_path / "o1"),
                          layout="paired_folders", progress=False))
    manifest = build(BuildConfig(input_dir=str(root), output_dir=str(tmp_path / "o2"),
                                 layout="paired_folders", on_bad_image="skip", progress=False))
    assert manifest["layout"] == "paired" and manifest["num_skipped"] == 1
    cfg = DataConfig(data_dir=str(tmp_path / "o2"), preprocess="none", load_size=16, crop_size=16)
    x, y = next(iter(build_dataset(cfg, "train", training=False)))
    np.testing.assert_allclose(x[0].numpy(), a / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), b / 127.5 - 1, atol=1e-6)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "data_prep.build_tfrecords", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_file_is_one_line_and_exit_1(tmp_path):
    folder = _good_folder(str(tmp_path / "in"))
    bad = _bad_file(folder, "truncated")
    result = _cli("--input_dir", folder, "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {bad}: corrupt or truncated png data")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    ok = _cli("--input_dir", folder, "--output_dir", str(tmp_path / "out"), "--on_bad_image=skip",
              "--noprogress")
    assert ok.returncode == 0, ok.stderr
    assert "train: 3 examples in 1 shard(s)" in ok.stdout and "skipped: 1" in ok.stdout


def test_unaligned_layout_writes_per_domain_shards(unpaired_images_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(unpaired_images_dir, src)
    # Unequal counts, and a grayscale and an RGBA image inside the colour domain B.
    write_image(str(src / "trainB" / "gray.png"), random_image(20, 30, 1))
    write_image(str(src / "trainB" / "rgba.png"), random_image(20, 30, 4))
    manifest = build(BuildConfig(input_dir=str(src), output_dir=str(tmp_path / "out"),
                                 layout="unaligned", progress=False))
    assert manifest["layout"] == "unaligned"
    train = manifest["splits"]["train"]
    assert train["A"]["num_examples"] == 6 and train["B"]["num_examples"] == 8
    assert train["num_examples"] == 8  # the reference's epoch: max(|A|, |B|)
    assert train["A"]["shards"] == ["trainA-00000-of-00001.tfrecord"]
    assert train["B"]["converted_to_rgb"] == {"grayscale": 1, "rgba": 1}
    assert train["B"]["image_sizes"]["30x20"] == 2
    assert set(manifest["splits"]) == {"train", "val", "test"}
    for name in train["B"]["shards"]:
        assert (tmp_path / "out" / name).is_file()


def test_unaligned_layout_needs_both_domains(tmp_path):
    (tmp_path / "in" / "trainA").mkdir(parents=True)
    write_image(str(tmp_path / "in" / "trainA" / "x.png"), random_image(8, 8))
    with pytest.raises(UserError, match="trainB does not"):
        build(BuildConfig(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o"),
                          layout="unaligned", progress=False))
    with pytest.raises(UserError, match="no trainA/trainB"):
        build(BuildConfig(input_dir=str(tmp_path / "in" / "trainA"), output_dir=str(tmp_path / "o"),
                          layout="unaligned", progress=False))


def test_unaligned_bad_file_fails_or_is_skipped(unpaired_images_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(unpaired_images_dir, src)
    (src / "trainA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(BadImageError, match="broken.png"):
        build(BuildConfig(input_dir=str(src), output_dir=str(tmp_path / "o"),
                          layout="unaligned", progress=False))
    assert not (tmp_path / "o").exists()
    manifest = build(BuildConfig(input_dir=str(src), output_dir=str(tmp_path / "o"),
                                 layout="unaligned", on_bad_image="skip", progress=False))
    assert manifest["num_skipped"] == 1 and manifest["splits"]["train"]["A"]["num_examples"] == 6


def _label_folder(root, split="train", n=2, labels=None, colour=False, instances=True,
                  size=(12, 20)):
    """pix2pixHD's layout with Cityscapes-style names: 8-bit label ids, 16-bit instance ids."""
    rng = np.random.default_rng(0)
    for kind in ("label", "img") + (("inst",) if instances else ()):
        os.makedirs(os.path.join(root, f"{split}_{kind}"), exist_ok=True)
    for i in range(n):
        stem = f"city_{i:06d}"
        ids = labels if labels is not None else rng.integers(0, 34, size)
        label = (random_image(*size, seed=i) if colour
                 else np.asarray(ids, np.uint8)[..., None])
        write_image(os.path.join(root, f"{split}_label", f"{stem}_gtFine_labelIds.png"), label)
        write_image(os.path.join(root, f"{split}_img", f"{stem}_leftImg8bit.png"),
                    random_image(*size, seed=10 + i))
        if instances:
            inst = (np.asarray(ids, np.uint16) * 1000 + 1)[..., None]
            write_image(os.path.join(root, f"{split}_inst", f"{stem}_gtFine_instanceIds.png"),
                        inst)


def test_labels_layout_keeps_ids_and_records_the_largest(tmp_path):
    from tf_pix2pix.data import _LABEL_SPEC, decode_ids

    ids = np.arange(12 * 20).reshape(12, 20) % 31
    _label_folder(str(tmp_path / "in"), labels=ids)
    manifest = build(BuildConfig(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
                                 layout="labels", progress=False))
    assert manifest["layout"] == "labels"
    info = manifest["splits"]["train"]
    assert info["num_examples"] == 2 and info["num_instances"] == 2
    assert info["max_label"] == 30 and info["max_label_file"].endswith("_labelIds.png")
    assert info["rgb_label_file"] is None
    record = next(iter(tf.data.TFRecordDataset(
        os.path.join(str(tmp_path / "out"), info["shards"][0]))))
    ex = tf.io.parse_single_example(record, _LABEL_SPEC)
    np.testing.assert_array_equal(decode_ids(ex["label/encoded"])[..., 0], ids)
    np.testing.assert_array_equal(decode_ids(ex["instance/encoded"])[..., 0], ids * 1000 + 1)
    assert ex["image/filename"].numpy() == b"city_000000"


def test_labels_layout_refuses_non_id_maps_and_counts_unmatched_files(tmp_path):
    from PIL import Image

    _label_folder(str(tmp_path / "in"))
    os.remove(tmp_path / "in" / "train_inst" / "city_000001_gtFine_instanceIds.png")
    with pytest.raises(BadImageError, match="no file of the same name in train_inst"):
        build(BuildConfig(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o1"),
                          layout="labels", progress=False))
    manifest = build(BuildConfig(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o2"),
                                 layout="labels", progress=False, on_bad_image="skip"))
    assert manifest["splits"]["train"]["num_examples"] == 1 and manifest["num_skipped"] == 2
    palette = Image.fromarray(np.zeros((12, 20), np.uint8), mode="P")
    palette.save(tmp_path / "in" / "train_inst" / "city_000001_gtFine_instanceIds.png")
    with pytest.raises(BadImageError, match="palette PNG"):
        build(BuildConfig(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o3"),
                          layout="labels", progress=False))
    _label_folder(str(tmp_path / "colour"), colour=True, instances=False)
    manifest = build(BuildConfig(input_dir=str(tmp_path / "colour"),
                                 output_dir=str(tmp_path / "o4"), layout="labels",
                                 progress=False))
    assert manifest["splits"]["train"]["rgb_label_file"].endswith("city_000000_gtFine_labelIds.png")


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_output_overlapping_the_input_is_refused_and_the_images_survive(tmp_path, where):
    """``--output_dir`` equal to the input, above it, or inside it: refused even with
    ``--overwrite`` (which used to delete the source images and exit 0)."""
    folder = _good_folder(str(tmp_path / "p" / "images"))
    (tmp_path / "p" / "notes.txt").write_text("unrelated")
    out = {"same": folder, "parent": str(tmp_path / "p"),
           "inside": os.path.join(folder, "records")}[where]
    before = sorted(os.listdir(folder))
    relation = {"same": "is", "parent": "contains", "inside": "lies inside"}[where]
    with pytest.raises(UserError, match=f"{relation} --input_dir"):
        build(BuildConfig(input_dir=folder, output_dir=out, overwrite=True, progress=False))
    assert sorted(os.listdir(folder)) == before
    assert (tmp_path / "p" / "notes.txt").read_text() == "unrelated"


def test_overwrite_replaces_only_this_tools_output(tmp_path):
    folder = _good_folder(str(tmp_path / "in"))
    out = tmp_path / "out"
    build(BuildConfig(input_dir=folder, output_dir=str(out), progress=False))
    # Its own output is replaced ...
    build(BuildConfig(input_dir=folder, output_dir=str(out), overwrite=True, progress=False))
    assert json.load(open(out / "manifest.json"))["splits"]
    # ... a folder holding anything else is not.
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(UserError, match="'thesis.tex'.*did not write"):
        build(BuildConfig(input_dir=folder, output_dir=str(out), overwrite=True, progress=False))
    assert (out / "thesis.tex").read_text() == "mine"


def test_one_build_per_output_and_what_killed_runs_left_is_removed(tmp_path, capsys):
    """Issue 33, faults 2 and 3: two builds into one output both exited 0 and one result was
    silently lost; a killed build's ``.OUT.partial-PID`` was never removed."""
    import functools
    import socket

    from data_prep.atomic import atomic_output_dir, check_output_dir
    from tf_pix2pix.runtime.locking import ModelDirLockedError, _process_start

    folder = _good_folder(str(tmp_path / "in"))
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".out.lock").write_text(json.dumps({
            "host": socket.gethostname(), "pid": other.pid,
            "process_start": _process_start(other.pid), "started": "now"}))
        with pytest.raises(ModelDirLockedError, match=rf"{out} is in use by another "
                                                      rf"build_tfrecords \(pid {other.pid}"):
            build(BuildConfig(input_dir=folder, output_dir=str(out), progress=False))
        assert not out.exists()
    finally:
        other.kill()
        other.wait()
    # Its holder is gone: the lock is taken over; a dead build's partial folder is removed.
    (tmp_path / f".out.partial-{other.pid}").mkdir()
    (tmp_path / f".out.partial-{other.pid}" / "train-00000-of-00001.tfrecord").write_bytes(b"x")
    build(BuildConfig(input_dir=folder, output_dir=str(out), progress=False))
    err = capsys.readouterr().err
    assert "taking over the stale lock" in err and f".out.partial-{other.pid}, the partial " \
                                                   "output of a run that was killed" in err
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]  # no lock, no partial folder left
    # A second run that checked the output before the first one finished is refused under the
    # lock, not allowed to replace the first one's result.
    target = tmp_path / "second"
    check = functools.partial(check_output_dir, str(target), False)
    check()  # empty: fine now ...
    target.mkdir()
    (target / "manifest.json").write_text("{}")  # ... then another run finishes first
    with pytest.raises(UserError, match="is not empty; pass --overwrite"):
        with atomic_output_dir(str(target), recheck=check):
            pass
    assert (target / "manifest.json").read_text() == "{}"


def test_mount_point_and_full_disk_outputs_are_one_line(tmp_path, monkeypatch):
    """Issue 33, part of fault 13: an output that is a mount point, and a full disk, raised
    tracebacks."""
    folder = _good_folder(str(tmp_path / "in"))
    mount = "/dev/shm" if os.path.ismount("/dev/shm") else "/proc"
    with pytest.raises(UserError, match=f"--output_dir {mount} is a mount point"):
        build(BuildConfig(input_dir=folder, output_dir=mount, overwrite=True, progress=False))

    class FullDisk(tf.io.TFRecordWriter):
        def write(self, record):
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{tmp_path}/.out.partial-1/train-00000-of-00001.tfrecord; No space "
                            "left on device")

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDisk)
    with pytest.raises(UserError, match=r"--output_dir .*out: cannot write the TFRecords \(No "
                                        r"space left on device\); nothing was written"):
        build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"), progress=False))
    assert sorted(os.listdir(tmp_path)) == ["in"]
    monkeypatch.undo()
    real_dump = json.dump

    def dump_fails(value, f, **kw):
        if not str(f.name).endswith("manifest.json"):
            return real_dump(value, f, **kw)
        raise OSError(28, "No space left on device", f.name)

    monkeypatch.setattr(json, "dump", dump_fails)
    with pytest.raises(UserError, match=r"cannot write the TFRecords \(No space left on device"):
        build(BuildConfig(input_dir=folder, output_dir=str(tmp_path / "out"), progress=False))
    monkeypatch.setattr(json, "dump", real_dump)
    assert sorted(os.listdir(tmp_path)) == ["in"]
