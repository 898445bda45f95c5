"""The Python API (``tf_pix2pix.api``): the public names (``__all__``, loaded lazily), its
docstring examples, ``config`` equal to the command line for every model and mode, and train ->
load -> translate (paths, bytes, PIL images, arrays, batches, label-map ids) -> export -> load
-> predict -> import, against what the command line's library computes."""

import doctest
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf_pix2pix
from tf_pix2pix import api, label_maps, models
from tf_pix2pix.errors import BadImageError, ConfigError, UserError
from tf_pix2pix.serving import predict as predict_lib
from tf_pix2pix.tools.import_torch import export_state_dict
from tf_pix2pix.visualize import to_uint8

from conftest import random_image, write_image
from torch_files import save_pth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(load_size=36, crop_size=32, batch_size=2, netG="unet_32", ngf=8, ndf=8)


def test_the_public_names_are_listed_and_load_without_tensorflow_until_used():
    assert sorted(tf_pix2pix.__all__) == sorted(api.__all__) == [
        "Translator", "config", "export", "import_pretrained", "load", "predict", "train"]
    for name in tf_pix2pix.__all__:
        assert getattr(tf_pix2pix, name) is getattr(api, name) and getattr(api, name).__doc__
    code = ("import sys, tf_pix2pix, tf_pix2pix.configuration; "
            "print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras')))); "
            "print(callable(tf_pix2pix.config), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    # Importing the package (and the configuration module first) loads no TensorFlow; the
    # first public name does, and the configuration module does not shadow config().
    assert out.stdout.split("\n")[:2] == ["[]", "True True"]


def test_the_docstring_examples_run():
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 5


def _cases():
    """(model, flags, config() keywords) for every registered model, each value of each of its
    modes, and a preset with options."""
    cases = []
    for name in models.names():
        model = models.get(name)
        # pix2pixHD's VGG loss would need ImageNet weights to validate.
        extra = {"no_vgg_loss": True} if "vgg_loss" in model.Config.__dataclass_fields__ else {}
        flags = tuple(f"--{k}" for k in extra)
        if not model.modes:  # a model with modes: each value of each mode below
            cases.append((name, flags, extra))
        for option, by_value in model.modes.items():
            for value in by_value:
                cases.append((name, flags + (f"--{option}={value}",), {**extra, option: value}))
    cases.append(("cycle_gan", ("--preset=demo", "--lambda_A=3", "--nono_dropout"),
                  {"preset": "demo", "lambda_A": 3.0, "no_dropout": False}))
    return cases


@pytest.mark.parametrize("model, argv, options", _cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_the_command_line_and_config_resolve_alike(model, argv, options):
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_train.py"),
                             f"--model={model}", *argv, "--print_config"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    options = dict(options)
    preset = options.pop("preset", None)
    assert json.loads(result.stdout) == tf_pix2pix.config(model, preset, **options).to_dict()


def test_config_names_unknown_options_and_refuses_a_second_model():
    with pytest.raises(ConfigError, match=r"lambda_A \(an option of cycle_gan\)"):
        tf_pix2pix.config("pix2pix", lambda_A=1.0)
    with pytest.raises(ConfigError, match="model='nope' is not valid"):
        tf_pix2pix.config("nope")


@pytest.fixture(scope="module")
def trained(records_dir, synthetic_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    model_dir = str(base / "model")
    result = tf_pix2pix.train("pix2pix", data_dir=records_dir, model_dir=model_dir, max_steps=2,
                              val_max_examples=0, progress=False, **TINY)
    image = os.path.join(synthetic_dir, "test", sorted(os.listdir(
        os.path.join(synthetic_dir, "test")))[0])
    return model_dir, result, image, base


def test_train_writes_the_configuration_config_resolves(trained, records_dir):
    model_dir, result, _, _ = trained
    assert result.step == 2 and result.checkpoint and len(result.weights_sha256) == 64
    written = json.load(open(os.path.join(model_dir, "config.json")))
    expected = tf_pix2pix.config("pix2pix", data_dir=records_dir, model_dir=model_dir,
                                 max_steps=2, val_max_examples=0, **TINY)
    assert written == expected.to_dict()
    # A configuration can be passed as it is; options then replace its fields.
    with pytest.raises(ConfigError, match="pass preset to config"):
        tf_pix2pix.train(expected, "demo")


def test_a_translator_reads_paths_bytes_pil_images_arrays_and_batches(trained, tmp_path):
    from PIL import Image

    model_dir, _, aligned, _ = trained
    pixels = np.asarray(Image.open(aligned).convert("RGB"))[:, :64]  # the input half
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "input.png")
    Image.fromarray(pixels).save(path)
    translator = tf_pix2pix.load(model_dir)
    assert (translator.direction, translator.test_mode) == ("AtoB", "eval")
    assert "pix2pix" in repr(translator)
    out = translator(path)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # The generator's own computation, as run_predict's library runs it.
    inner = predict_lib.translator_from_model_dir(model_dir, "eval")
    x = tf.constant(pixels[np.newaxis] / 127.5 - 1.0, tf.float32)
    np.testing.assert_array_equal(out, to_uint8(inner(x))[0].numpy())
    for same in (open(path, "rb").read(), Image.open(path), pixels,
                 pixels.astype(np.float32) / 255.0):
        np.testing.assert_array_equal(translator(same), out)
    two = translator([path, pixels[:40, :48]])
    assert isinstance(two, list) and two[1].shape == (40, 48, 3)
    np.testing.assert_array_equal(two[0], out)
    batch = translator(np.stack([pixels, pixels[::-1]]))
    assert batch.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(batch[0], out)
    raw = translator(path, raw=True)
    assert raw.dtype == np.float32 and raw.shape == (64, 64, 3)
    # Outputs are what the command line writes for the same file.
    summary = tf_pix2pix.predict(model_dir, str(tmp_path / "out"), input_dir=str(tmp_path / "in"),
                                 progress=False)
    assert summary["count"] == 1 and (tmp_path / "out" / "index.html").exists()
    written = tf.io.decode_png((tmp_path / "out" / "images" / "input_output.png").read_bytes())
    np.testing.assert_array_equal(written.numpy(), out)


def test_bad_inputs_are_one_line_errors(trained, tmp_path):
    translator = tf_pix2pix.load(trained[0])
    for bad, match in ((np.zeros((8, 8, 2), np.uint8), r"shape \(8, 8, 2\)"),
                       (np.full((8, 8, 3), 1.5, np.float32), r"float pixels must lie in \[0, 1\]"),
                       (np.full((8, 8), -1), "values -1..-1"),
                       (np.zeros((8, 8, 3), complex), "dtype complex128")):
        with pytest.raises(ConfigError, match=match):
            translator(bad)
    with pytest.raises(BadImageError, match="missing.png"):
        translator(str(tmp_path / "missing.png"))
    with pytest.raises(ConfigError, match="reads no instance maps"):
        translator(np.zeros((8, 8, 3), np.uint8), instance=np.zeros((8, 8), np.uint8))
    with pytest.raises(ConfigError, match="neither a training directory"):
        tf_pix2pix.load(str(tmp_path))
    with pytest.raises(ConfigError, match="exactly one of input_dir and tfrecord_dir"):
        tf_pix2pix.predict(trained[0], str(tmp_path / "o"))


def test_export_then_load_the_export_and_its_newest_version(trained):
    model_dir, _, image, base = trained
    export_dir = str(base / "exported")
    first = tf_pix2pix.export(model_dir, export_dir)
    second = tf_pix2pix.export(model_dir, export_dir, formats="saved_model")
    assert (os.path.basename(first), os.path.basename(second)) == ("1", "2")
    pixels = np.asarray(tf.io.decode_image(open(image, "rb").read()))[:, :64]
    from_dir = tf_pix2pix.load(model_dir)(pixels)
    newest = tf_pix2pix.load(export_dir)
    assert newest.origin == second
    np.testing.assert_array_equal(newest(pixels), from_dir)
    np.testing.assert_array_equal(tf_pix2pix.load(first)(pixels), from_dir)
    with pytest.raises(ConfigError, match="was exported with test_mode eval"):
        tf_pix2pix.load(first, test_mode="paper")
    with pytest.raises(ConfigError, match="unknown export options: size"):
        tf_pix2pix.export(model_dir, export_dir, size=3)


def test_label_map_models_take_class_ids():
    cfg = models.resolve("pix2pix_hd", label_nc=4, no_vgg_loss=True)
    colours = np.array([[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float32)
    painter = predict_lib.Translator(lambda x: tf.einsum("nhwc,cd->nhwd", x[..., :4], colours),
                                     cfg, "eval", "painter")
    translator = api.Translator(painter)
    ids = np.array([[0, 1, 2, 3], [3, 3, 2, 1]], np.uint8).repeat(4, 0).repeat(4, 1)
    x = translator.input(ids)
    assert x.shape == (8, 16, 4 + 1)  # one-hot classes and the instance boundary channel
    np.testing.assert_array_equal(np.argmax(x[..., :4], -1), ids)
    out = translator(ids)
    np.testing.assert_array_equal(out, ((colours[ids] + 1) * 127.5).astype(np.uint8))
    # An instance map of its own (16-bit ids, as Cityscapes' instance PNGs): boundaries move.
    instance = (ids.astype(np.uint16) * 1000)
    instance[:, :2] = 4000
    with_inst = translator.input(ids, instance=instance)
    assert not np.array_equal(with_inst[..., 4], x[..., 4])
    assert label_maps.palette(4).shape == (4, 3)


def test_import_pretrained_then_load(tmp_path):
    config = models.resolve("cycle_gan", ngf=8)
    generator = models.for_config(config).build_generator(config, "AtoB")
    rng = np.random.default_rng(0)
    generator.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                           for w in generator.get_weights()])
    pth = save_pth(export_state_dict(generator, config), tmp_path / "latest_net_G.pth")
    summary = tf_pix2pix.import_pretrained(str(tmp_path / "m"), pth=pth, model="cycle_gan",
                                           ngf=8)
    assert summary["generator"] == "G_A"
    image = random_image(24, 32, seed=4)
    write_image(str(tmp_path / "x.png"), image)
    out = tf_pix2pix.load(str(tmp_path / "m"))(str(tmp_path / "x.png"), raw=True)
    expected = generator(tf.constant(image[np.newaxis] / 127.5 - 1.0, tf.float32),
                         training=False)
    np.testing.assert_allclose(out, np.asarray(expected)[0], atol=1e-5)
    with pytest.raises(UserError, match="exactly one of --pth and --url"):
        tf_pix2pix.import_pretrained(str(tmp_path / "n"))
