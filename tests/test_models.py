"""The model registry and its interface: every registered model goes through the same dry run,
training step, checkpoint round trip and export; a model added from outside the package (an
entry-point plugin) trains, resumes, exports and predicts through the real CLIs; no code outside
tf_pix2pix/models/ compares a model's name."""

import json
import os
import re
import subprocess
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep.demo import demo_data
from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError, ModelConfig, save_config
from tf_pix2pix.models import pad_multiple, restore_generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(REPO, "tests", "plugins")


def test_the_registry_holds_the_built_in_models_and_names_them_in_errors():
    assert models.names()[:2] == ["pix2pix", "cycle_gan"]
    for name in models.names():
        model = models.get(name)
        assert model.name == name and issubclass(model, models.TranslationModel)
        # Each model owns its section; its defaults, modes and presets name real options (and
        # make valid configurations).
        assert issubclass(model.Config, ModelConfig) and model.Config().model == name
        assert "demo" in model.presets and "reference" in model.presets
        for preset in model.presets:
            extra = {"no_vgg_loss": True} if "vgg_loss" in model.Config.__dataclass_fields__ \
                else {}
            assert models.resolve(name, preset, **extra).model.model == name
    with pytest.raises(ConfigError, match="model='nope' is not valid; choose one of "
                                          "pix2pix, cycle_gan"):
        models.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        models.register(type("Other", (models.get("pix2pix"),), {"name": "cycle_gan"}))


def test_options_map_to_the_sections_that_hold_them():
    config = models.resolve("pix2pix", no_condition_D=True, seed=4, crop_size=64, load_size=72,
                            lr=1e-3, precision="mixed_bfloat16")
    assert not config.model.condition_D and config.data.seed == 4
    assert config.data.crop_size == 64 and config.train.lr == 1e-3
    assert config.runtime.precision == "mixed_bfloat16"
    with pytest.raises(ConfigError, match="unknown options for the pix2pix model: bogus"):
        models.resolve("pix2pix", bogus=1)


@pytest.mark.parametrize("name", models.names())
def test_every_model_dry_runs_trains_a_step_resumes_and_exports(name, tmp_path_factory):
    """The loop and the tools use nothing but the interface: each model's own demo data and
    preset, one step, a restore that gives back the same weights, a SavedModel that runs."""
    from tf_pix2pix.serving.export import ExportConfig, export
    from tf_pix2pix.runtime.training import build_trainer, train

    model = models.get(name)
    work = tmp_path_factory.mktemp(name)
    data_dir = demo_data(model.demo_data, str(work / "demo"))
    config = models.resolve(name, "demo", data_dir=data_dir, model_dir=str(work / "run"),
                            max_steps=1, val_max_examples=2)
    line = model.dry_run(config)
    assert re.fullmatch(r"(\w+_params=\d+ ?)+( receptive_field=[\d,]+)?", line), line

    result = train(config, progress=False)
    assert result.step == 1 and all(np.isfinite(list(result.losses.values())))
    assert os.path.isfile(work / "run" / "samples" / "val_latest.png")
    trainer = build_trainer(config, progress=False)
    assert set(result.losses) == set(trainer.model.loss_names)
    assert trainer.weights_sha256() != result.weights_sha256  # fresh initialisation differs
    assert trainer.restore() == 1
    assert trainer.weights_sha256() == result.weights_sha256

    for direction, slot in model.generator_slots(config).items():
        path = export(ExportConfig(model_dir=str(work / "run"),
                                   export_dir=str(work / "export"), direction=direction))
        translate = tf.saved_model.load(path).signatures["translate"]
        size = config.data.crop_size
        out = translate(images=tf.zeros([1, size + 3, size - 5, slot.input_nc]))["images"]
        assert out.shape == (1, size + 3, size - 5, slot.output_nc)


@pytest.fixture
def toy_plugin(tmp_path):
    """An installed distribution declaring the toy model as an entry point (no file of the
    project changed), as ``pip install`` of a plugin package would leave it."""
    dist = tmp_path / "toy_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tf_pix2pix.models]\ntoy = toy_model\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), PLUGINS, REPO]))
    return env


def _cli(script, *args, env):
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *args], env=env,
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return result.stdout


def test_a_plugin_model_trains_resumes_exports_and_predicts_through_the_clis(
        toy_plugin, records_dir, tmp_path):
    run = str(tmp_path / "run")
    common = ["--model=toy", "--data_dir", records_dir, "--model_dir", run, "--load_size=36",
              "--crop_size=32", "--batch_size=2", "--noprogress", "--val_max_examples=2"]
    dry = _cli("run_train.py", *common, "--dry_run", env=toy_plugin)
    assert dry.strip().splitlines()[-1] == "generator_params=84"  # 3*3*3*3 + 3
    # The plugin's own option: a flag with its default and help, and a field of config.json.
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_train.py"), "--model=toy",
                             "--helpfull"], env=toy_plugin, capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert "--kernel_size: Side of the toy's one convolution." in result.stdout
    common.append("--kernel_size=1")
    dry = _cli("run_train.py", *common, "--dry_run", env=toy_plugin)
    assert dry.strip().splitlines()[-1] == "generator_params=12"  # 1*1*3*3 + 3
    out = _cli("run_train.py", *common, "--max_steps=3", env=toy_plugin)
    assert "step=3/3" in out and "val_l1=" in out
    saved = json.load(open(os.path.join(run, "config.json")))["model"]
    assert saved["model"] == "toy" and saved["kernel_size"] == 1
    out = _cli("run_train.py", *common, "--max_steps=5", env=toy_plugin)
    assert "Resumed from" in out and "at step 3" in out and "step=5/5" in out

    export_dir = str(tmp_path / "export")
    out = _cli("run_export.py", "--model_dir", run, "--export_dir", export_dir, env=toy_plugin)
    assert f"exported {export_dir}/1" in out
    results = str(tmp_path / "pred")
    out = _cli("run_predict.py", "--saved_model", f"{export_dir}/1", "--tfrecord_dir",
               records_dir, "--split=test", "--output_dir", results, "--noprogress",
               env=toy_plugin)
    assert "translated 4 image(s)" in out and "L1=" in out
    metrics = json.load(open(os.path.join(results, "metrics.json")))
    assert metrics["count"] == 4 and 0 <= metrics["l1"] < 1
    out = _cli("run_predict.py", "--model_dir", run, "--tfrecord_dir", records_dir,
               "--split=test", "--output_dir", str(tmp_path / "pred2"), "--noprogress",
               env=toy_plugin)
    # The same generator restored from the checkpoint gives the same outputs.
    again = json.load(open(tmp_path / "pred2" / "metrics.json"))
    assert again["l1"] == pytest.approx(metrics["l1"], abs=1e-6)


def test_an_unknown_model_is_a_one_line_error():
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_train.py"), "--model=toy",
                             "--dry_run"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: model='toy' is not valid; choose one of pix2pix, cycle_gan, cut, pix2pix_hd, "
        "segmenter")


# A comparison of a quoted registered name: == "x", != 'x', in ("x", ...), "x" if/==/!=.
_COMPARISON = r"""(==|!=|\bin\b)\s*[(\[{]?\s*["'](NAMES)["']|["'](NAMES)["']\s*(==|!=|if\b)"""


def test_no_code_outside_the_models_package_compares_a_model_name():
    pattern = re.compile(_COMPARISON.replace("NAMES", "|".join(models.names())))
    offenders = []
    for folder in ("tf_pix2pix", "data_prep", "benchmarks", "."):
        root = os.path.join(REPO, folder)
        for dirpath, dirnames, filenames in os.walk(root):
            if folder == ".":
                dirnames.clear()  # only the top-level scripts
            if os.path.join("tf_pix2pix", "models") in dirpath:
                continue
            for filename in filenames:
                if filename.endswith(".py"):
                    path = os.path.join(dirpath, filename)
                    for number, line in enumerate(open(path), 1):
                        if pattern.search(line):
                            offenders.append(f"{os.path.relpath(path, REPO)}:{number}: "
                                             f"{line.strip()}")
    assert not offenders, "\n".join(offenders)
    # The check itself finds what it must.
    assert pattern.search('if config.model.model == "cycle_gan":')
    assert pattern.search('x = 1 if "pix2pix" != name else 2')


# -- restoring a trained generator (models.base.restore_generator) ------------------------------

def _model_dir(path, model="pix2pix", **options):
    """config.json and a checkpoint of a freshly built generator, as training leaves them."""
    config = models.resolve(model, model_dir=str(path), **options)
    save_config(config, str(path))
    model_class = models.get(model)
    slot = model_class.generator_slots(config)["AtoB"]
    generator = model_class.build_generator(config)
    for v in generator.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, [7, len(v.path)], stddev=0.1))
    tf.train.Checkpoint(**{slot.root: generator}).save(os.path.join(path, "checkpoints", "ckpt"))
    return generator, config


def test_restores_the_weights_with_the_models_own_section(tmp_path):
    saved, config = _model_dir(tmp_path / "run", "cycle_gan", netG="resnet_6blocks", ngf=4,
                               ndf=4)
    generator, restored_config, path = restore_generator(str(tmp_path / "run"))
    assert restored_config == config and path.endswith("ckpt-1")
    for a, b in zip(saved.weights, generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert pad_multiple(config) == 4  # a ResNet generator's two downsamplings
    # A moved training directory reads its files from where it is now.
    shutil.move(str(tmp_path / "run"), str(tmp_path / "moved"))
    _, moved, _ = restore_generator(str(tmp_path / "moved"))
    assert moved.train.model_dir == str(tmp_path / "moved")


def test_restore_generator_names_the_missing_pieces(tmp_path):
    with pytest.raises(ConfigError, match="config.json not found"):
        restore_generator(str(tmp_path))
    save_config(models.resolve("pix2pix", netG="unet_32", ngf=4), str(tmp_path))
    with pytest.raises(ConfigError, match="no checkpoint in .*; train first"):
        restore_generator(str(tmp_path))
    with pytest.raises(ConfigError, match="checkpoint .*nope not found"):
        restore_generator(str(tmp_path), checkpoint=str(tmp_path / "nope"))


def test_another_architecture_or_direction_is_refused(tmp_path):
    _model_dir(tmp_path, netG="unet_32", ngf=4, ndf=4)
    with pytest.raises(ConfigError, match="--direction=BtoA: the pix2pix model in .* has "
                                          "generators for AtoB only"):
        restore_generator(str(tmp_path), direction="BtoA")
    # config.json edited to another width: the checkpoint's shapes do not fit.
    save_config(models.resolve("pix2pix", netG="unet_32", ngf=8), str(tmp_path))
    with pytest.raises(ConfigError, match="does not match the architecture in config.json "
                                          r"\(model=pix2pix netG=unet_32 ngf=8"):
        restore_generator(str(tmp_path))
