"""The interactive editor: draw a label map or a sketch in the browser and watch it translate.

    pix2pix-editor --export_dir exported/demo            # then open http://127.0.0.1:7860/
    python -m tf_pix2pix.tools.editor --export_dir exported/demo_cycle_gan   # both directions

A local web app (Gradio, the ``editor`` extra) on any export of this project. It runs the
export's own serving signatures (``serving_default``, ``serve_with_instances``,
``serve_with_style``), so the editor and TF Serving compute the same graph; what it needs to know
about the model comes from the ``editor`` entry the model's ``editor_info`` hook wrote into
``export_info.json`` — never from the model's name:

* ``rgb_labels`` inputs (the demo's and facades' colour label maps): a brush in the export's
  label colours (the most frequent colours of the training inputs, or ``--palette``); every
  stroke is snapped to the nearest label colour before it is sent.
* ``label_ids`` inputs (pix2pixHD): a brush per class in the class's palette colour (Cityscapes'
  colours and names for ``--label_nc 35``); the page sends the map of class ids. Where the model
  reads instance maps, each layer of the canvas is one set of instances: what is painted on
  layer k is instance ``1000 * class + k`` of its class (Cityscapes' numbering), what is on the
  background its class alone. ``--instance_feat`` exports get a style picker.
* ``image`` inputs (edges→photo, CycleGAN, CUT, the segmenter): a free pen, or an upload.

Each stroke's end translates the drawing (Gradio's queue keeps only the newest request of a
page: a debounce), and the output shows beside the canvas with the input as it was sent. Uploads
and examples are checked as ``serving_default`` checks images (decodable, at most the export's
``max_pixels``) and resized to the canvas; a bad one gets a message and the app keeps running.
At most ``--concurrency`` translations run at once and ``--max_queue`` wait; the app binds
127.0.0.1 unless ``--host`` says otherwise. Nothing is fetched from the internet: Gradio's
analytics are off and the page uses the system's fonts.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import os
import sys
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio reads it

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402

from tf_pix2pix import label_maps  # noqa: E402
from tf_pix2pix.cli import define_flags, from_flags, run_main  # noqa: E402
from tf_pix2pix.configuration import option  # noqa: E402
from tf_pix2pix.errors import ConfigError, UserError  # noqa: E402
from tf_pix2pix.image_io import declared_size  # noqa: E402
from tf_pix2pix.serving.export import read_export_info  # noqa: E402

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Outputs larger than this show Gradio's progress while they translate.
PROGRESS_PIXELS = 512 * 512


@dataclasses.dataclass(frozen=True)
class EditorConfig:
    """The editor's options (each a flag of ``pix2pix-editor``)."""

    export_dir: str = option(dataclasses.MISSING, "An export of run_export.py: a version folder, "
                                                  "or its base folder (then the newest version "
                                                  "of each direction is offered).")
    host: str = option("127.0.0.1", "Address to bind; another than 127.0.0.1 opens the editor "
                                    "to the network (a warning is printed).")
    port: int = option(7860, "Port to listen on (0: a free one).")
    palette: str = option("", "A JSON file of the label colours to paint with, overriding the "
                              "export's: [[r, g, b], ...] or [{\"name\": ..., \"color\": "
                              "\"#rrggbb\"}, ...].")
    examples: tuple[str, ...] = option((), "Images to start a drawing from (files, folders or "
                                           "quoted patterns), offered in a list.")
    concurrency: int = option(1, "Translations running at once.", bound="positive")
    max_queue: int = option(16, "Requests waiting beyond those; more are refused with a "
                                "message.", bound="positive")
    max_upload_mb: float = option(20.0, "Largest upload accepted, in MiB.", bound="positive")


# -- the exports -------------------------------------------------------------------------------

class ExportedGenerator:
    """One exported generator and what the editor knows of it (``export_info.json``)."""

    def __init__(self, version_dir: str):
        self.path = version_dir
        info = read_export_info(version_dir)
        if "editor" not in info:
            raise ConfigError(f"{version_dir} was exported before the editor existed; export it "
                              "again with run_export.py")
        self.info = info
        self.editor: dict[str, Any] = info["editor"]
        self.direction: str = info.get("direction", "AtoB")
        self.max_pixels: int = info.get("max_pixels", 0)
        self.height, self.width = self.editor.get("size") or (256, 256)
        self._module = tf.saved_model.load(version_dir)
        self._signatures = self._module.signatures

    def translate(self, image_png: bytes, instance_png: bytes | None = None,
                  style: int | None = None) -> bytes:
        """The export's answer (PNG bytes) to one encoded input, through the signature TF
        Serving would use for it."""
        batch = {"image_bytes": tf.constant([image_png])}
        if style is not None and "serve_with_style" in self._signatures:
            name = "serve_with_style"
            batch.update(instance_bytes=tf.constant([instance_png or image_png]),
                         style=tf.constant([style], tf.int32))
        elif instance_png is not None and "serve_with_instances" in self._signatures:
            name = "serve_with_instances"
            batch["instance_bytes"] = tf.constant([instance_png])
        else:
            name = "serving_default"
        return self._signatures[name](**batch)["image_bytes"][0].numpy()


def find_exports(export_dir: str) -> dict[str, ExportedGenerator]:
    """The generators of ``export_dir`` by direction: a version folder's, or the newest
    version of each direction among a base folder's integer-named versions."""
    if not os.path.isdir(export_dir):
        raise UserError(f"--export_dir {export_dir} is not a folder; pass a run_export.py "
                        "output (its base folder or a version folder)")
    if os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        versions = [export_dir]
    else:
        numbered = sorted((int(n) for n in os.listdir(export_dir) if n.isdigit()
                           and os.path.isfile(os.path.join(export_dir, n, "saved_model.pb"))),
                          reverse=True)
        versions = [os.path.join(export_dir, str(n)) for n in numbered]
    if not versions:
        raise UserError(f"--export_dir {export_dir} holds no export; make one with python "
                        f"run_export.py --model_dir RUN --export_dir {export_dir}")
    found: dict[str, ExportedGenerator] = {}
    for path in versions:
        direction = read_export_info(path).get("direction", "AtoB")
        if direction not in found:
            found[direction] = ExportedGenerator(path)
    return dict(sorted(found.items()))


def read_palette(path: str) -> tuple[np.ndarray, list[str]]:
    """``--palette``: a JSON list of ``[r, g, b]`` or of ``{"name", "color": "#rrggbb"}``."""
    try:
        with open(path) as f:
            entries = json.load(f)
        colours, names = [], []
        for i, e in enumerate(entries):
            if isinstance(e, dict):
                value, name = e["color"], str(e.get("name", f"colour {i}"))
            else:
                value, name = e, f"colour {i}"
            if isinstance(value, str):
                value = [int(value.lstrip("#")[k:k + 2], 16) for k in (0, 2, 4)]
            if len(value) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in value):
                raise ValueError(f"entry {i} is not a colour")
            colours.append(value)
            names.append(name)
        if not colours:
            raise ValueError("no colours")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"--palette {path}: {e}; write a JSON list of [r, g, b] or of "
                        "{\"name\": ..., \"color\": \"#rrggbb\"}") from None
    return np.array(colours, np.uint8), names


# -- drawings to model inputs, outputs to images ---------------------------------------------

def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a ``[H, W]`` (8 or 16 bit by its dtype) or ``[H, W, 3]`` uint8 array."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return tf.io.encode_png(tf.constant(pixels)).numpy()


def decode_png(data: bytes) -> np.ndarray:
    return tf.io.decode_png(data, dtype=tf.uint16 if _is_16_bit(data) else tf.uint8).numpy()


def _is_16_bit(data: bytes) -> bool:
    return len(data) > 24 and data[24] == 16


@dataclasses.dataclass
class Drawing:
    """What one state of the canvas sends to the export."""

    image: bytes                  # the encoded input (label colours, class ids or an image)
    instances: bytes | None       # the instance map, for models that read one
    shown: np.ndarray             # the input as the page shows it (RGB)


def drawing_input(editor: dict[str, Any], composite: np.ndarray,
                  layers: list[np.ndarray] | None = None,
                  palette: np.ndarray | None = None) -> Drawing:
    """The export's input for a canvas: ``composite`` ``[H, W, 3|4]`` uint8, ``layers`` the
    canvas's RGBA layers (instances), ``palette`` the label colours painted with.

    ``rgb_labels``: each pixel becomes its nearest label colour (strokes' soft edges, JPEG'd
    uploads). ``label_ids``: each pixel becomes the first class id of its nearest colour (classes
    sharing a colour, as Cityscapes' ids 0-4, paint as the first), sent as a grayscale PNG;
    with ``instances``, a pixel whose topmost painted layer is layer k (1-based) gets instance
    ``1000 * class + k``, any other pixel its class id (16-bit PNG). ``image``: the RGB pixels.
    """
    rgb = np.asarray(composite, np.uint8)[..., :3]
    kind = editor["input"]
    if kind == "image":
        return Drawing(encode_png(rgb), None, rgb)
    colours = np.asarray(palette if palette is not None else editor["palette"], np.uint8)
    nearest = label_maps.nearest_colour(rgb, colours)
    shown = colours[nearest]
    if kind == "rgb_labels":
        return Drawing(encode_png(shown), None, shown)
    first = np.array([next(j for j in range(len(colours)) if (colours[j] == c).all())
                      for c in colours], np.int32)
    ids = first[nearest]
    instances = None
    if editor.get("instances"):
        inst = ids.copy()
        for k, layer in enumerate(layers or [], start=1):
            layer = np.asarray(layer)
            if layer.ndim == 3 and layer.shape[-1] == 4 and layer.shape[:2] == ids.shape:
                painted = layer[..., 3] > 0
                inst = np.where(painted, ids * 1000 + k, inst)
        instances = encode_png(inst.astype(np.uint16))
    return Drawing(encode_png(ids.astype(np.uint8 if len(colours) <= 256 else np.uint16)),
                   instances, shown)


def output_image(editor: dict[str, Any], png: bytes) -> np.ndarray:
    """The export's PNG answer as the page shows it: the image, or classes in their colours."""
    pixels = decode_png(png)
    if editor.get("output") == "class_ids":
        table = np.zeros([65536, 3], np.uint8)
        colours = np.asarray(editor["output_palette"], np.uint8)
        table[:len(colours)] = colours
        return table[pixels[..., 0].astype(np.int64)]
    return pixels[..., :3] if pixels.shape[-1] >= 3 else np.repeat(pixels, 3, axis=-1)


def checked_upload(data: bytes, generator: ExportedGenerator, max_bytes: int,
                   name: str = "the upload") -> np.ndarray:
    """An uploaded file as ``[H, W, 3]`` uint8 at the canvas's size, checked as the export's
    ``serving_default`` checks images (a decodable JPEG/PNG/BMP/GIF, a header declaring at most
    ``max_pixels``). Raises UserError naming the problem."""
    if len(data) > max_bytes:
        raise UserError(f"{name} is {len(data) / 2**20:.1f} MiB; the editor takes up to "
                        f"{max_bytes / 2**20:.0f} MiB (--max_upload_mb)")
    h, w = (int(v) for v in declared_size(tf.constant(data)).numpy())
    if generator.max_pixels and h * w > generator.max_pixels:
        raise UserError(f"{name} declares {w}x{h} pixels, more than the export's max_pixels="
                        f"{generator.max_pixels}; resize it first")
    try:
        pixels = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        raise UserError(f"{name} is not an image this editor reads (JPEG, PNG, BMP or GIF)") \
            from None
    method = "nearest" if generator.editor["input"] != "image" else "area"
    resized = tf.image.resize(pixels, [generator.height, generator.width], method=method)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def example_files(patterns: tuple[str, ...]) -> list[str]:
    """``--examples``: files, folders (their images) and patterns, sorted per entry."""
    files: list[str] = []
    for p in patterns:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, n) for n in os.listdir(p)
                           if n.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif")))
        else:
            found = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        missing = [f for f in found if not os.path.isfile(f)]
        if missing or not found:
            raise UserError(f"--examples {p}: no such image file; pass files, folders or a "
                            "quoted pattern")
        files.extend(found)
    return files


# -- the page ------------------------------------------------------------------------------------

def _theme() -> gr.themes.Base:
    # Gradio's default theme loads Google's fonts: the system's keep the page offline.
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def build_app(config: EditorConfig,
              generators: dict[str, ExportedGenerator] | None = None) -> gr.Blocks:
    """The editor's page for ``config`` (``generators``: already loaded exports)."""
    generators = generators or find_exports(config.export_dir)
    first = next(iter(generators.values()))
    editor = first.editor
    kind = editor["input"]
    if config.palette and kind in ("rgb_labels", "image"):
        colours, names = read_palette(config.palette)
        kind = "rgb_labels"
        editor = {**editor, "input": kind, "palette": colours.tolist(), "names": names}
    elif config.palette:
        colours, names = read_palette(config.palette)
        if len(colours) != len(editor["palette"]):
            raise UserError(f"--palette {config.palette} has {len(colours)} colours; the model "
                            f"has {len(editor['palette'])} classes")
        editor = {**editor, "palette": colours.tolist(), "names": names}
    palette = np.asarray(editor.get("palette", [[0, 0, 0], [255, 255, 255]]), np.uint8)
    names = editor.get("names", [])
    h, w = first.height, first.width
    max_bytes = int(config.max_upload_mb * 2**20)
    examples = example_files(config.examples)
    big = h * w > PROGRESS_PIXELS

    # Classes sharing a colour (Cityscapes' 0-4) are one brush, named by all of them.
    brushes: dict[str, list[str]] = {}
    for colour, name in zip(palette.tolist(), names or [""] * len(palette)):
        brushes.setdefault(hex_colour(colour), []).append(name)
    if kind == "image":
        brush = gr.Brush(default_size=4, colors=["#000000", "#ffffff", "#ff0000", "#00ff00",
                                                 "#0000ff"], color_mode="defaults")
        background = np.full((h, w, 3), 255, np.uint8)
    else:
        brush = gr.Brush(default_size=max(4, w // 32), colors=list(brushes),
                         color_mode="fixed")
        background = np.broadcast_to(palette[0], (h, w, 3)).copy()
    legend = " · ".join(
        f"<span style='display:inline-block;width:0.9em;height:0.9em;background:{c};"
        f"border:1px solid #888;vertical-align:middle'></span> {' / '.join(n)}"
        for c, n in brushes.items()) if kind != "image" else ""

    def blank():
        return {"background": background, "layers": [], "composite": background}

    def translate(value, direction, style):
        if value is None or value.get("composite") is None:
            return None, None
        gen = generators.get(direction, first)
        drawing = drawing_input(editor, value["composite"], value.get("layers"), palette)
        styles = editor.get("styles", 0)
        png = gen.translate(drawing.image, drawing.instances,
                            int(style) if styles else None)
        return output_image(gen.editor, png), drawing.shown

    def load_file(data: bytes, name: str):
        try:
            pixels = checked_upload(data, first, max_bytes, name)
        except UserError as e:
            gr.Warning(str(e))
            return gr.update(), f"**Not loaded:** {e}"
        if kind != "image":
            pixels = palette[label_maps.nearest_colour(pixels, palette)]
        return {"background": pixels, "layers": [], "composite": pixels}, ""

    def upload(path):
        if not path:
            return gr.update(), ""
        with open(path, "rb") as f:
            return load_file(f.read(), os.path.basename(path))

    def example(path):
        if not path:
            return gr.update(), ""
        with open(path, "rb") as f:
            return load_file(f.read(), os.path.basename(path))

    def fill(value, colour_name):
        colour = palette[[hex_colour(c) for c in palette.tolist()].index(colour_name)]
        filled = np.broadcast_to(colour, (h, w, 3)).copy()
        return {"background": filled, "layers": [], "composite": filled}

    title = f"tf_pix2pix editor — {os.path.abspath(first.path)}"
    with gr.Blocks(title="tf_pix2pix editor", analytics_enabled=False) as app:
        gr.Markdown(f"### {title}\n" + {
            "rgb_labels": "Paint with the label colours; each stroke's end translates.",
            "label_ids": "Paint classes; each stroke's end translates." + (
                " Each layer of the canvas holds separate instances (add one with the layer "
                "menu)." if editor.get("instances") else ""),
            "image": "Draw or upload an image; each stroke's end translates."}[kind])
        if legend:
            gr.HTML(f"<div id='legend'>{legend}</div>")
        with gr.Row():
            canvas = gr.ImageEditor(
                value=blank(), canvas_size=(w, h), fixed_canvas=True, image_mode="RGB",
                type="numpy", brush=brush, eraser=gr.Eraser(), format="png",
                layers=gr.LayerOptions(allow_additional_layers=True, layers=["instances 1"])
                if editor.get("instances") else False,
                transforms=(), sources=(), label="Drawing", elem_id="canvas")
            with gr.Column():
                output = gr.Image(label="Translation", format="png", type="numpy",
                                  interactive=False, elem_id="output", height=360,
                                  buttons=["download"])
                sent = gr.Image(label="Input as sent", format="png", type="numpy",
                                interactive=False, elem_id="sent", height=160)
        with gr.Row():
            direction = gr.Radio(list(generators), value=first.direction, label="Direction",
                                 visible=len(generators) > 1, elem_id="direction")
            style = gr.Slider(0, max(editor.get("styles", 1) - 1, 1), step=1, value=0,
                              label="Style", visible=editor.get("styles", 0) > 1,
                              elem_id="style")
            if kind != "image":
                fill_colour = gr.Dropdown([(" / ".join(n), c) for c, n in brushes.items()],
                                          value=next(iter(brushes)), label="Fill with",
                                          elem_id="fill_colour")
                fill_button = gr.Button("Fill the canvas", elem_id="fill")
        with gr.Row():
            upload_button = gr.UploadButton("Upload an image", type="filepath",
                                            elem_id="upload")
            chooser = gr.Dropdown([(os.path.basename(p), p) for p in examples], value=None,
                                  label="Start from an example", visible=bool(examples),
                                  elem_id="examples")
        status = gr.Markdown(elem_id="status")

        run = dict(fn=translate, inputs=[canvas, direction, style], outputs=[output, sent],
                   trigger_mode="always_last", show_progress="full" if big else "hidden",
                   concurrency_id="translate")
        canvas.input(**run)
        canvas.input(lambda: "", None, status, queue=False, show_progress="hidden")
        direction.change(**run)
        style.release(**run)
        upload_button.upload(upload, upload_button, [canvas, status]).then(**run)
        chooser.input(example, chooser, [canvas, status]).then(**run)
        if kind != "image":
            fill_button.click(fill, [canvas, fill_colour], canvas).then(**run)
        app.load(**run)
    app.queue(default_concurrency_limit=config.concurrency, max_size=config.max_queue)
    return app


def launch(config: EditorConfig, app: gr.Blocks | None = None, block: bool = True):
    """Starts the editor's server; returns ``(app, url)``."""
    app = app or build_app(config)
    if config.host not in LOCAL_HOSTS:
        print(f"warning: --host {config.host} opens the editor to every machine that reaches "
              "this one; it has no login", file=sys.stderr)
    try:
        _, url, _ = app.launch(server_name=config.host, server_port=config.port or None,
                               prevent_thread_lock=True, quiet=True, share=False,
                               footer_links=[], theme=_theme(),
                               max_file_size=int(config.max_upload_mb * 2**20),
                               show_error=True)
    except OSError as e:
        raise UserError(f"cannot listen on {config.host}:{config.port} ({e}); pass another "
                        "--port") from None
    if block:
        print(f"The editor of {config.export_dir}: open {url} — Ctrl-C stops it.", flush=True)
        try:
            app.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            app.close()
    return app, url


def main(argv: list[str]) -> None:
    launch(from_flags(EditorConfig))


def run() -> None:
    define_flags(EditorConfig)
    run_main(main)


if __name__ == "__main__":
    run()
