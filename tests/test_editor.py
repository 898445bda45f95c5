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


# -- in a real browser -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def segmenter_export(label_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("editor_seg")
    cfg = models.resolve("segmenter", data_dir=label_records, label_nc=4,
                         preprocess="resize_and_crop", load_size=32, crop_size=32, batch_size=2,
                         netG="unet_32", ngf=4, model_dir=str(root / "model"), max_steps=1,
                         val_max_examples=0)
    train(cfg, progress=False)
    return export(ExportConfig(model_dir=str(root / "model"), export_dir=str(root / "out")))


@pytest.fixture
def serve_editor():
    """Starts an editor on an export (``serve_editor(path, **options)``, in this process, on a
    free port) and returns its URL; closes every one it started."""
    apps = []

    def start(export_dir, **options):
        config = editor.EditorConfig(export_dir=export_dir, port=0, **options)
        app, url = editor.launch(config, block=False)
        apps.append(app)
        return url

    yield start
    for app in apps:
        app.close()


class EditorPage:
    """The editor's page in headless Chromium, driven as a user drives it."""

    def __init__(self, url, size, network_log=False):
        from conftest import chromium_browser

        self.size = size  # the canvas's (width, height)
        self.browser = chromium_browser("1280,1000", network_log=network_log)
        self.browser.get(url)
        self.wait(lambda: self.canvas() is not None and self.image("sent") is not None,
                  "the page's first translation")

    def find(self, css):
        from selenium.webdriver.common.by import By

        return [e for e in self.browser.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]

    def canvas(self):
        found = self.find("#canvas canvas")
        return found[-1] if found else None

    def click(self, css):
        self.find(css)[0].click()

    def pick(self, rgb):
        """The brush colour ``rgb``: the Color tool, its swatch, then the Brush tool again
        (which closes the swatches, else the next stroke would start on them)."""
        self.click("#canvas button[aria-label='Color']")
        swatch = "#canvas button[style*='background-color: rgb({}, {}, {})']".format(*rgb)
        self.wait(lambda: self.find(swatch), f"the swatch of {rgb}")
        self.click(swatch)
        self.click("#canvas button[aria-label='Brush']")
        self.wait(lambda: not self.find(swatch), "the swatches closed")

    def upload(self, path):
        """Chooses ``path`` with the upload button (its hidden file input)."""
        self.browser.find_element(
            "css selector", "input[data-testid='Upload an image-upload-button']").send_keys(path)

    def stroke(self, fx0, fx1, fy):
        """A horizontal stroke across the canvas's image, at fractions of its size from the
        centre (-0.5 .. 0.5)."""
        from selenium.webdriver.common.action_chains import ActionChains

        canvas = self.canvas()
        side = self.image_extent()
        x0, x1, y = (int(f * s) for f, s in ((fx0, side[0]), (fx1, side[0]), (fy, side[1])))
        actions = ActionChains(self.browser).move_to_element_with_offset(canvas, x0, y)
        actions.click_and_hold()
        for k in range(1, 11):
            actions.move_to_element_with_offset(canvas, x0 + (x1 - x0) * k // 10, y)
        actions.release().perform()

    def image_extent(self):
        """The drawn image's size on the screen, ``(width, height)``: the canvas's size at
        the zoom the toolbar shows (the canvas element is larger than the image)."""
        import re

        zoom = re.search(r"(\d+)%", self.find("#canvas")[0].text)
        return tuple(int(s * int(zoom.group(1)) / 100) for s in self.size)

    def image(self, elem_id):
        """The image an output component shows, read back from the page's own URL."""
        import urllib.request

        found = self.find(f"#{elem_id} img")
        src = found[0].get_attribute("src") if found else None
        if not src:
            return None
        with urllib.request.urlopen(src, timeout=10) as r:
            return editor.decode_png(r.read())[..., :3]

    def text(self, elem_id):
        found = self.find(f"#{elem_id}")
        return found[0].text if found else ""

    def wait(self, predicate, what, timeout=60):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = predicate()
            except Exception:  # the page re-rendering under the query
                value = None
            if value is not None and value is not False and not (
                    isinstance(value, list) and not value):
                return value
            time.sleep(0.2)
        self.browser.save_screenshot(os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                  "editor_timeout.png"))
        raise AssertionError(f"the editor's page never showed {what} in {timeout} s")

    def close(self):
        self.browser.quit()


def colour_mask(image, rgb):
    return (np.asarray(image) == np.asarray(rgb, np.uint8)).all(axis=-1)


def test_strokes_of_two_label_colours_translate_as_the_export_does(pix2pix_export,
                                                                   serve_editor):
    gen = editor.ExportedGenerator(pix2pix_export)
    palette = np.array(gen.editor["palette"], np.uint8)
    page = EditorPage(serve_editor(pix2pix_export), (gen.width, gen.height))
    try:
        page.pick(palette[1])
        page.stroke(-0.4, 0.4, -0.25)
        page.wait(lambda: colour_mask(page.image("sent"), palette[1]).any(), "the first stroke")
        page.pick(palette[2])
        page.stroke(-0.4, 0.4, 0.25)
        sent = page.wait(lambda: (lambda s: s if colour_mask(s, palette[2]).any() else None)(
            page.image("sent")), "the second stroke")
        # What was sent: label colours only, the first stroke above the second.
        assert np.isin(sent.reshape(-1, 3).view([("", np.uint8)] * 3),
                       palette.view([("", np.uint8)] * 3)).all()
        rows_1 = np.nonzero(colour_mask(sent, palette[1]).any(axis=1))[0]
        rows_2 = np.nonzero(colour_mask(sent, palette[2]).any(axis=1))[0]
        assert rows_1.max() < gen.height // 2 <= rows_2.min()
        assert colour_mask(sent[gen.height // 4 - 2: gen.height // 4 + 2], palette[1]).mean() > .5
        expected = editor.output_image(gen.editor, gen.translate(editor.encode_png(sent)))
        shown = page.wait(lambda: (lambda o: o if o is not None and o.shape == expected.shape
                                   and (o == expected).all() else None)(page.image("output")),
                          "the export's translation of what was sent", timeout=20)
        assert shown.shape == (gen.height, gen.width, 3)
    finally:
        page.close()


def test_class_strokes_on_two_layers_send_ids_and_instances(hd_export, serve_editor):
    gen = editor.ExportedGenerator(hd_export)
    palette = np.array(gen.editor["palette"], np.uint8)
    page = EditorPage(serve_editor(hd_export), (gen.width, gen.height))
    try:
        # Layer 1: a stroke of class 1 at the top, one of class 2 in the middle; layer 2:
        # another instance of class 1 at the bottom.
        page.pick(palette[1])
        page.stroke(-0.4, 0.4, -0.3)
        page.pick(palette[2])
        page.stroke(-0.4, 0.4, 0.0)
        page.wait(lambda: colour_mask(page.image("sent"), palette[2]).any(), "layer 1's strokes")
        page.click("#canvas button[aria-label='Show Layers']")
        page.click("#canvas button[aria-label='Add Layer']")
        page.pick(palette[1])
        page.stroke(-0.4, 0.4, 0.3)
        low = gen.height * 2 // 3
        sent = page.wait(lambda: (lambda s: s if colour_mask(s[low:], palette[1]).any()
                                  else None)(page.image("sent")), "layer 2's stroke")
        ids = np.zeros(sent.shape[:2], np.int32)
        for k in (1, 2, 3):
            ids[colour_mask(sent, palette[k])] = k
        assert colour_mask(sent, palette[0]).sum() + (ids > 0).sum() == ids.size
        rows = np.arange(gen.height)[:, None]
        instances = np.where(ids == 2, 2001, np.where(ids == 1, np.where(rows < low, 1001, 1002),
                                                        ids))
        assert {1001, 1002, 2001} <= set(np.unique(instances).tolist())
        expected = editor.output_image(gen.editor, gen.translate(
            editor.encode_png(ids.astype(np.uint8)), editor.encode_png(
                instances.astype(np.uint16))))
        page.wait(lambda: (lambda o: o is not None and o.shape == expected.shape
                           and (o == expected).all())(page.image("output")),
                  "the export's translation of the ids and instances drawn", timeout=20)
    finally:
        page.close()


def test_an_uploaded_photo_is_segmented_as_the_export_does(segmenter_export, label_records,
                                                           serve_editor):
    gen = editor.ExportedGenerator(segmenter_export)
    assert gen.editor["input"] == "image" and gen.editor["output"] == "class_ids"
    photo = os.path.join(os.path.dirname(label_records), "images", "val_img", "00000.jpg")
    page = EditorPage(serve_editor(segmenter_export), (gen.width, gen.height))
    try:
        blank = page.image("sent")
        page.upload(photo)
        resized = editor.checked_upload(open(photo, "rb").read(), gen, 2**20)
        sent = page.wait(lambda: (lambda s: s if s is not None and s.shape == resized.shape
                                  and (s == resized).all() else None)(page.image("sent")),
                         "the uploaded photo at the canvas's size")
        assert not (sent == blank).all()
        expected = editor.output_image(gen.editor, gen.translate(editor.encode_png(sent)))
        colours = np.array(gen.editor["output_palette"], np.uint8)
        assert np.isin(expected.reshape(-1, 3) @ [65536, 256, 1], colours @ [65536, 256, 1]).all()
        page.wait(lambda: (lambda o: o is not None and o.shape == expected.shape
                           and (o == expected).all())(page.image("output")),
                  "the export's classes of the photo in their colours", timeout=20)
    finally:
        page.close()


def test_a_bad_upload_gets_a_message_while_a_second_browser_draws(pix2pix_export, serve_editor,
                                                                  tmp_path):
    import urllib.parse

    gen = editor.ExportedGenerator(pix2pix_export)
    palette = np.array(gen.editor["palette"], np.uint8)
    url = serve_editor(pix2pix_export)
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is no picture " * 50)
    first = EditorPage(url, (gen.width, gen.height), network_log=True)
    second = EditorPage(url, (gen.width, gen.height), network_log=True)
    try:
        first.upload(str(bad))
        second.pick(palette[3])
        second.stroke(-0.4, 0.4, 0.0)
        message = first.wait(lambda: first.text("status") or None, "the upload's message")
        assert "Not loaded" in message and "holiday.png is not an image" in message
        second.wait(lambda: colour_mask(second.image("sent"), palette[3]).any(),
                    "the second browser's translation")
        # The first one keeps working after its bad upload.
        first.pick(palette[1])
        first.stroke(-0.4, 0.4, 0.0)
        first.wait(lambda: colour_mask(first.image("sent"), palette[1]).any(),
                   "the first browser's translation after the bad upload")
        first.wait(lambda: not first.text("status"), "the message gone after a stroke")
        assert not colour_mask(second.image("sent"), palette[1]).any()
        # Nothing but the editor's own server was asked for anything.
        host = urllib.parse.urlsplit(url).netloc
        for page in (first, second):
            asked = {json.loads(e["message"])["message"]["params"]["request"]["url"]
                     for e in page.browser.get_log("performance")
                     if json.loads(e["message"])["message"]["method"] ==
                     "Network.requestWillBeSent"}
            foreign = {u for u in asked if urllib.parse.urlsplit(u).scheme in ("http", "https",
                                                                              "ws", "wss")
                       and urllib.parse.urlsplit(u).netloc != host}
            assert asked and not foreign
    finally:
        first.close()
        second.close()
