"""The interactive editor: the export's editor entry, drawings to inputs, uploads, the page."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("gradio")

from data_prep.make_synthetic import PALETTE  # noqa: E402
from tf_pix2pix import models  # noqa: E402
from tf_pix2pix.errors import ConfigError, UserError  # noqa: E402
from tf_pix2pix.runtime.training import train  # noqa: E402
from tf_pix2pix.serving.export import ExportConfig, export  # noqa: E402
from tf_pix2pix.tools import editor  # noqa: E402

from conftest import png_header_only  # noqa: E402


@pytest.fixture(scope="module")
def pix2pix_export(records_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("editor")
    cfg = models.resolve("pix2pix", data_dir=records_dir, load_size=36, crop_size=32,
                         batch_size=2, netG="unet_32", ngf=8, ndf=8,
                         model_dir=str(root / "model"), max_steps=2, val_max_examples=0)
    train(cfg, progress=False)
    return export(ExportConfig(model_dir=str(root / "model"), export_dir=str(root / "out")))


@pytest.fixture(scope="module")
def hd_export(label_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("editor_hd")
    cfg = models.resolve("pix2pix_hd", data_dir=label_records, label_nc=4, load_size=64,
                         crop_size=32, ngf=4, ndf=4, n_downsample_global=2,
                         n_blocks_global=1, num_D=1, no_vgg_loss=True,
                         model_dir=str(root / "model"), max_steps=1, val_max_examples=0)
    train(cfg, progress=False)
    return export(ExportConfig(model_dir=str(root / "model"), export_dir=str(root / "out")))


def test_export_records_the_label_colours_of_label_like_inputs(pix2pix_export):
    info = json.load(open(os.path.join(pix2pix_export, "assets", "export_info.json")))["editor"]
    assert info["input"] == "rgb_labels" and info["output"] == "image"
    assert info["size"] == [32, 32]
    found = np.array(info["palette"], np.int32)
    # The synthetic label maps' four colours, within the JPEG noise of the A|B files.
    assert len(found) == 4
    for colour in PALETTE.astype(np.int32):
        assert np.abs(found - colour).max(axis=1).min() <= 8


def test_label_map_exports_ask_for_class_ids_and_instances(hd_export):
    info = json.load(open(os.path.join(hd_export, "assets", "export_info.json")))["editor"]
    assert info["input"] == "label_ids" and info["instances"] is True
    assert info["names"] == ["class 0", "class 1", "class 2", "class 3"]
    assert info["palette"][1] == [128, 0, 0] and info["size"] == [32, 64]


def test_frequent_colours_tell_label_maps_from_photos():
    from tf_pix2pix import label_maps

    labels = np.zeros((2, 40, 40, 3), np.uint8)
    labels[:, :20] = (200, 10, 10)
    labels[:, 20:, :10] = (10, 10, 200)
    found = label_maps.frequent_colours(labels)
    assert sorted(map(tuple, found.tolist())) == [(0, 0, 0), (10, 10, 200), (200, 10, 10)]
    photo = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    assert label_maps.frequent_colours(photo) is None
    near = label_maps.nearest_colour(np.array([[[190, 20, 0], [0, 0, 250]]]), found)
    assert found[near].tolist() == [[[200, 10, 10], [10, 10, 200]]]


def test_drawings_become_the_inputs_the_export_takes():
    palette = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [0, 128, 0]], np.uint8)
    canvas = np.zeros((4, 6, 3), np.uint8)
    canvas[0, :3] = (120, 5, 5)        # a soft stroke edge: class 1
    canvas[2:, 3:] = (0, 128, 0)       # classes 2 and 3 share a colour: the first, 2
    rgb = editor.drawing_input({"input": "rgb_labels", "palette": palette.tolist()}, canvas)
    assert editor.decode_png(rgb.image)[0, 0].tolist() == [128, 0, 0] and rgb.instances is None
    layer = np.zeros((4, 6, 4), np.uint8)
    layer[2:, 5, 3] = 255               # painted on layer 1: instances 2001
    ids = editor.drawing_input({"input": "label_ids", "palette": palette.tolist(),
                                "instances": True}, canvas, [layer])
    expected = np.zeros((4, 6), np.int32)
    expected[0, :3] = 1
    expected[2:, 3:] = 2
    np.testing.assert_array_equal(editor.decode_png(ids.image)[..., 0], expected)
    inst = expected.copy()
    inst[2:, 5] = 2001
    np.testing.assert_array_equal(editor.decode_png(ids.instances)[..., 0], inst)
    photo = editor.drawing_input({"input": "image"}, canvas)
    np.testing.assert_array_equal(editor.decode_png(photo.image), canvas)
    classes = editor.output_image({"output": "class_ids", "output_palette": [[1, 2, 3],
                                                                              [4, 5, 6]]},
                                  editor.encode_png(np.array([[0, 1]], np.uint8)))
    assert classes.tolist() == [[[1, 2, 3], [4, 5, 6]]]


def test_uploads_are_checked_as_serving_checks_images(pix2pix_export):
    gen = editor.ExportedGenerator(pix2pix_export)
    with pytest.raises(UserError, match="not an image"):
        editor.checked_upload(b"hello, not an image" * 10, gen, 2**20)
    with pytest.raises(UserError, match="max_pixels"):
        editor.checked_upload(png_header_only(60000, 60000), gen, 2**20)
    with pytest.raises(UserError, match="max_upload_mb"):
        editor.checked_upload(b"x" * 2048, gen, 1024)
    odd = tf.io.encode_png(np.full((17, 45, 3), 200, np.uint8)).numpy()
    assert editor.checked_upload(odd, gen, 2**20).shape == (32, 32, 3)


def test_exports_are_found_by_direction_and_old_ones_refused(pix2pix_export, tmp_path):
    found = editor.find_exports(os.path.dirname(pix2pix_export))
    assert list(found) == ["AtoB"] and found["AtoB"].path == pix2pix_export
    with pytest.raises(UserError, match="holds no export"):
        editor.find_exports(str(tmp_path))
    old = tmp_path / "old"
    import shutil

    shutil.copytree(pix2pix_export, old)
    info_path = old / "assets" / "export_info.json"
    info = json.load(open(info_path))
    del info["editor"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="export it again"):
        editor.ExportedGenerator(str(old))
