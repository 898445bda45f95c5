"""The one resolution of a configuration (``models.resolve``): its order, the command line and
the flags showing each
model's own defaults, checks against the model, model directories written before the sections
resuming bit for bit, and the package free of import cycles."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import hardware, models
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, ModelConfig
from tf_pix2pix.models.cut import CUTConfig
from tf_pix2pix.models.cycle_gan import CycleGANConfig
from tf_pix2pix.models import restore_generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = os.path.join(REPO, "tests", "fixtures", "legacy_model_dirs")
CYCLES_TOOL = os.path.join(REPO, "..", "shared", "tools", "import_cycles.py")


def _cli(*args, check=True):
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_train.py"), *args],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    return result


def test_the_order_defaults_reference_mode_preset_options():
    cut = models.resolve("cut")
    # 1. the section's defaults are CUT's (the reference's for this model)
    assert (cut.model.netG, cut.model.norm, cut.model.init_type, cut.model.antialias) == (
        "resnet_9blocks", "instance", "xavier", True)
    # 3. the mode (cut: 200 + 200 epochs; fastcut its own)
    assert (cut.train.n_epochs, cut.train.n_epochs_decay, cut.model.nce_idt) == (200, 200, True)
    fast = models.resolve("cut", cut_mode="fastcut")
    assert (fast.model.lambda_NCE, fast.model.nce_idt, fast.model.flip_equivariance) == (
        10.0, False, True)
    assert (fast.train.n_epochs, fast.train.n_epochs_decay) == (150, 50)
    # 4. the preset over the mode, 5. the caller's options over the preset
    demo = models.resolve("cut", "demo", cut_mode="fastcut")
    assert (demo.train.n_epochs, demo.model.lambda_NCE, demo.train.model_dir) == (
        4, 10.0, "runs/demo_cut")
    assert models.resolve("cut", "demo", n_epochs=9, lambda_NCE=2.0).train.n_epochs == 9
    # 2. the reference's values of shared options for a model
    hd = models.resolve("pix2pix_hd", no_vgg_loss=True)
    assert (hd.data.label_nc, hd.data.load_size, hd.data.preprocess) == (35, 1024,
                                                                          "scale_width")


def test_direct_construction_gives_what_the_resolution_gives():
    for name in models.names():
        model = models.get(name)
        resolved = models.resolve(name, **({"no_vgg_loss": True} if "vgg_loss" in
                                           model.Config.__dataclass_fields__ else {}))
        direct = model.Config(**({"vgg_loss": False} if "vgg_loss" in
                                 model.Config.__dataclass_fields__ else {}))
        assert resolved.model == direct, name
    assert CycleGANConfig().netG == "resnet_9blocks" and CycleGANConfig().norm == "instance"


def test_helpfull_shows_the_chosen_models_own_defaults():
    # absl prints the usage and exits with 1
    text = _cli("--model=cycle_gan", "--helpfull", check=False).stdout
    for flag, default in (("netG", "resnet_9blocks"), ("norm", "instance"),
                          ("gan_mode", "lsgan"), ("lambda_A", "10.0")):
        block = text[text.index(f"  --{flag}:"):]
        assert block[:block.index("(default")+40].split("(default: '")[1].startswith(
            default), flag
    assert "--lambda_l1" not in text and "--num_D" not in text  # other models' options
    text = _cli("--model=cut", "--cut_mode=fastcut", "--helpfull", check=False).stdout
    for flag, default in (("lambda_NCE", "10.0"), ("n_epochs", "150"),
                          ("n_epochs_decay", "50")):
        block = text[text.index(f"  --{flag}:"):]
        assert block.split("(default: '")[1].startswith(default), flag
    block = text[text.index("  --[no]nce_idt:"):]
    assert block.split("(default: '")[1].startswith("false")


def test_unknown_options_models_and_presets_are_named():
    with pytest.raises(ConfigError, match=r"unknown options for the pix2pix model: lambda_A "
                                          r"\(an option of cycle_gan\)"):
        models.resolve("pix2pix", lambda_A=1.0)
    with pytest.raises(ConfigError, match="model='nope' is not valid"):
        models.resolve("nope")
    with pytest.raises(ConfigError, match="preset='big' is not valid for the cut model; "
                                          "choose one of reference, demo"):
        models.resolve("cut", "big")
    with pytest.raises(ConfigError, match="cut_mode='slow' is not valid; choose one of cut, "
                                          "fastcut"):
        models.resolve("cut", cut_mode="slow")
    result = _cli("--model=cycle_gan", "--lambda_l1=3", "--dry_run", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Unknown command line flag 'lambda_l1'" in result.stderr


def test_validate_checks_what_one_section_cannot():
    with pytest.raises(ConfigError, match="takes its options as CycleGANConfig, not "
                                          r"ModelConfig; build the configuration with "
                                          r"tf_pix2pix.models.resolve\('cycle_gan'"):
        models.validate(ExperimentConfig(model=ModelConfig(model="cycle_gan")))
    with pytest.raises(ConfigError, match="test_mode=paper: this cycle_gan generator has no "
                                          "dropout"):
        models.resolve("cycle_gan", test_mode="paper")
    with pytest.raises(ConfigError, match="crop_size=16 is too small for netD=basic"):
        models.resolve("pix2pix", crop_size=16, load_size=16)
    with pytest.raises(ConfigError, match="nce_layers"):
        CUTConfig(nce_layers="4,0")
    assert models.validate(models.resolve("cut")) is models.get("cut")


def _checkpoint_tensors(path: str) -> dict[tuple, list[np.ndarray]]:
    reader = tf.train.load_checkpoint(path)
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if dtype == tf.float32:
            value = reader.get_tensor(key)
            by_shape.setdefault(value.shape, []).append(value)
    return by_shape


@pytest.mark.parametrize("model, flags", [
    ("pix2pix", ["--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--load_size", "36",
                 "--crop_size", "32", "--batch_size", "2", "--seed", "3"]),
    ("cycle_gan", ["--model=cycle_gan", "--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4",
                   "--load_size", "36", "--crop_size", "32", "--seed", "3", "--pool_size", "2",
                   "--lambda_A", "5"]),
])
def test_a_model_dir_written_before_the_sections_resumes_bit_for_bit_and_exports(
        model, flags, records_dir, unpaired_records_dir, tmp_path):
    run = str(tmp_path / model)
    shutil.copytree(os.path.join(LEGACY, model), run)
    # Its generator restores from the old flat config.json, weights exactly as saved.
    generator, config, path = restore_generator(run, direction="AtoB")
    assert config.model.model == model and config.data.seed == 3
    saved = _checkpoint_tensors(path)
    variables = [v.numpy() for v in generator.variables if "seed_generator" not in v.path]
    assert len(variables) > 10 and any(v.std() > 0 for v in variables)
    for value in variables:  # each restored variable is one of the checkpoint's tensors
        assert any(np.array_equal(value, t) for t in saved[value.shape])

    data = unpaired_records_dir if model == "cycle_gan" else records_dir
    out = _cli(*flags, "--data_dir", data, "--model_dir", run, "--max_steps=4", "--noprogress",
               "--val_max_examples=0").stdout
    assert "at step 2" in out and "step=4/4" in out
    digest = out.split("weights_sha256=")[1].split()[0]
    expected = json.load(open(os.path.join(LEGACY, "expected.json")))
    if hardware.cpu_class() == expected["cpu_class"]:  # digests hold per CPU class
        assert digest == expected["weights_sha256_at_step_4"][model], digest
    saved = json.load(open(os.path.join(run, "config.json")))
    assert saved["version"] == 2 and saved["model"]["model"] == model

    export_dir = str(tmp_path / "export")
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_export.py"), "--model_dir",
                             run, "--export_dir", export_dir], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(os.path.join(export_dir, "1", "saved_model.pb"))


def test_the_package_has_no_import_cycle_counting_imports_inside_functions():
    if not os.path.isfile(CYCLES_TOOL):
        pytest.skip("the workplace's ../shared/tools/import_cycles.py is not beside this clone")
    result = subprocess.run([sys.executable, CYCLES_TOOL, REPO], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("0 import cycle(s)")


def test_every_module_imports_first_without_a_circular_import():
    """What the cycle check cannot see: importing a submodule runs its package's ``__init__``
    (``tf_pix2pix.models`` imports every built-in model). Each module is imported first, in a
    process where no other module of the project is loaded yet."""
    code = """
import importlib, pkgutil, sys
import tensorflow, keras  # loaded once; only the project's modules are dropped each time
import tf_pix2pix, data_prep
names = [m.name for p, pre in ((tf_pix2pix, "tf_pix2pix."), (data_prep, "data_prep."))
         for m in pkgutil.walk_packages(p.__path__, pre)]
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m.startswith(("tf_pix2pix.", "data_prep."))]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as e:
        failed.append(f"{name}: {e}")
print(len(names), "modules;", "\\n".join(failed) or "none failed")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("none failed") and int(last.split()[0]) > 40, result.stdout[-3000:]
