import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.serving.convert import _check, run_onnx, run_tflite
from tf_pix2pix.serving.export import ExportConfig, export, read_export_info
from tf_pix2pix.runtime.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Largest |difference| to the SavedModel's translate accepted for each file (outputs in [-1, 1]).
TOLERANCE = {"generator.tflite": 1e-4, "generator_float16.tflite": 5e-3,
             "generator_dynamic.tflite": 0.15, "generator.onnx": 1e-4}


def _train(kind, data_dir, out):
    common = {"data_dir": data_dir, "model_dir": out, "max_steps": 3, "val_max_examples": 0}
    if kind == "pix2pix":  # U-Net with batch norm (running statistics used in eval mode)
        config = models.resolve(kind, netG="unet_32", ngf=8, ndf=8, load_size=36,
                                crop_size=32, **common)
    elif kind == "cycle_gan":  # ResNet with instance norm (tensorflow issues 59922 and 42927)
        config = models.resolve(kind, netG="resnet_6blocks", ngf=8, ndf=8, load_size=36,
                                crop_size=32, **common)
    elif kind == "pix2pix_hd":  # the global generator on one-hot label maps + boundaries
        config = models.resolve(kind, ngf=4, ndf=4, n_downsample_global=2, n_blocks_global=1,
                                no_vgg_loss=True, label_nc=4, preprocess="scale_width",
                                load_size=64, crop_size=32, **common)
    else:  # CUT's ResNet: blur downsampling (depthwise conv) and bilinear upsampling
        config = models.resolve(kind, netG="resnet_6blocks", ngf=8, ndf=8, netF_nc=8,
                                num_patches=16, load_size=36, crop_size=32, **common)
    train(config, progress=False)
    return out


# CycleGAN's ResNet (instance norm, reflection padding, transposed convolutions) is the union of
# what CUT's ResNet and pix2pix's U-Net convert; it is left out to keep the suite short (it took
# 200 s of conversions here).
@pytest.fixture(scope="module", params=["pix2pix", "cut", "pix2pix_hd"])
def exported(request, records_dir, unpaired_records_dir, label_records, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"convert_{request.param}")
    data = {"pix2pix": records_dir, "pix2pix_hd": label_records}.get(request.param,
                                                                      unpaired_records_dir)
    model_dir = _train(request.param, data, str(base / "model"))
    path = export(ExportConfig(model_dir=model_dir, export_dir=str(base / "export"),
                               formats=("saved_model", "tflite", "onnx"),
                               tflite_variants=("float32", "float16", "dynamic")))
    return path, tf.saved_model.load(path).signatures["translate"]


def _translate(translate, images):
    return translate(images=tf.constant(images))["images"].numpy()


def test_every_file_reproduces_the_saved_model_within_its_tolerance(exported):
    path, translate = exported
    info = read_export_info(path)
    channels = translate.structured_input_signature[1]["images"].shape[-1]
    assert sorted(f["file"] for f in info["files"]) == sorted(TOLERANCE)
    rng = np.random.default_rng(7)
    for item in info["files"]:
        with open(os.path.join(path, item["file"]), "rb") as f:
            model = f.read()
        assert len(model) == item["bytes"] and item["max_abs_error"] <= TOLERANCE[item["file"]]
        if item["format"] == "tflite":
            assert item["input_shape"] == [1, 32, 32, channels]
            images = rng.uniform(-1, 1, (1, 32, 32, channels)).astype(np.float32)
            got = run_tflite(model, images)
        else:  # dynamic batch, height and width (multiples of 32 for unet_32, 4 for the ResNet)
            images = rng.uniform(-1, 1, (3, 64, 96, channels)).astype(np.float32)
            got = run_onnx(model, images)
        assert np.all(np.isfinite(got)), item["file"]
        error = np.abs(got - _translate(translate, images)).max()
        assert error <= TOLERANCE[item["file"]], (item["file"], error)
    sizes = {f["file"]: f["bytes"] for f in info["files"]}
    assert (sizes["generator_dynamic.tflite"] < sizes["generator_float16.tflite"]
            < sizes["generator.tflite"])


def test_non_finite_outputs_are_refused():
    def broken(model, images):
        return np.full_like(images, np.nan)

    with pytest.raises(ConfigError, match="non-finite outputs; not written"):
        _check(lambda x, training: x, broken, b"", [(1, 4, 4, 3)], "TFLite float32")


def test_export_options_are_validated():
    with pytest.raises(ConfigError, match="--format=gif"):
        ExportConfig(model_dir="m", export_dir="e", formats=("gif",))
    with pytest.raises(ConfigError, match="--quantize=int4"):
        ExportConfig(model_dir="m", export_dir="e", tflite_variants=("int4",))
    with pytest.raises(ConfigError, match="exports only as a SavedModel"):
        ExportConfig(model_dir="m", export_dir="e", formats=("saved_model", "onnx"),
                     test_mode="paper")


def test_cli_writes_and_reports_the_files(records_dir, tmp_path):
    model_dir = _train("pix2pix", records_dir, str(tmp_path / "m"))

    def run(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, "run_export.py"),
                               "--model_dir", model_dir, *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO)

    result = run("--export_dir", str(tmp_path / "e"), "--format=tflite",
                 "--quantize=float32,float16", "--tflite_size=64", "--tflite_width=96")
    assert result.returncode == 0, result.stderr
    assert "generator.tflite:" in result.stdout and "generator_float16.tflite:" in result.stdout
    info = json.load(open(tmp_path / "e" / "1" / "assets" / "export_info.json"))
    # A 2:3 input (what 2:1 label maps need), verified by LiteRT at that shape.
    assert [f["input_shape"] for f in info["files"]] == [[1, 64, 96, 3]] * 2
    assert all(f["max_abs_error"] < 1e-4 for f in info["files"])
    result = run("--export_dir", str(tmp_path / "e"), "--format=tflite", "--tflite_size=48")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--tflite_size=48 must be a multiple of 32" in result.stderr.splitlines()[-1]
    assert sorted(os.listdir(tmp_path / "e")) == ["1"]  # nothing half-written


def test_an_onnx_conversion_failing_in_the_child_is_a_one_line_error(tmp_path, monkeypatch):
    """tf2onnx runs in a child process (pure-Python protobuf there, see onnx_model); what goes
    wrong there comes back as a ConfigError with the child's last line, and nothing is left."""
    import keras

    # A temporary folder of this test's own: another worker's conversions use the shared one.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    from tf_pix2pix.serving.convert import onnx_model

    inputs = keras.Input((8, 8, 3))
    # A Lambda layer is not loadable from a .keras file in safe mode: the child fails.
    broken = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(ConfigError, match="^ONNX conversion failed in tf2onnx: .*Lambda"):
        onnx_model(broken)
    assert not any(name.startswith("tf_pix2pix_onnx_")
                   for name in set(os.listdir(tempfile.gettempdir())) - before)
