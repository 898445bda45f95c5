"""The shared sections: defaults, validation from field metadata, JSON, options by flag name,
the flat layout of before mapped onto sections; and the module imports no TensorFlow."""

import ast
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tf_pix2pix.configuration import (ConfigError, DataConfig, ExperimentConfig, ModelConfig,
                               RuntimeConfig, TrainConfig, input_pipeline_differences, option,
                               option_of, read_config_file, save_config, write_atomic)
from tf_pix2pix.models.cycle_gan import CycleGANConfig
from tf_pix2pix.models.pix2pix import Pix2PixConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_the_papers():
    cfg = ExperimentConfig(model=Pix2PixConfig())
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
    assert (cfg.model.netG, cfg.model.ngf, cfg.model.netD, cfg.model.ndf) == (
        "unet_256", 64, "basic", 64)
    assert (cfg.train.lr, cfg.train.beta1, cfg.model.lambda_l1) == (2e-4, 0.5, 100.0)
    assert (cfg.train.n_epochs, cfg.train.n_epochs_decay) == (100, 100)
    assert (cfg.runtime.strategy, cfg.runtime.precision) == ("default", "float32")


@pytest.mark.parametrize("factory, message", [
    (lambda: DataConfig(direction="AB"), "direction='AB'"),
    (lambda: DataConfig(load_size=100, crop_size=128), "crop_size=128 is larger"),
    (lambda: DataConfig(input_nc=2), "input_nc=2"),
    (lambda: DataConfig(batch_size=0), "batch_size=0 is not valid; it must be > 0"),
    (lambda: ModelConfig(netG="unet_16"), "netG='unet_16'"),
    (lambda: ModelConfig(norm="layer"), "norm='layer'"),
    (lambda: ModelConfig(gan_mode="wgan"), "gan_mode='wgan'"),
    (lambda: ModelConfig(ngf=0), "ngf=0 is not valid; it must be > 0"),
    (lambda: CycleGANConfig(lambda_A=-1.0), "lambda_A=-1.0 is not valid; it must be >= 0"),
    (lambda: TrainConfig(beta1=1.5), "beta1=1.5"),
    (lambda: TrainConfig(n_epochs=0, n_epochs_decay=0), "nothing to train"),
    # Issue 33, fault 12: a rate of 1e6 trained to losses of ~6e13 and exited 0.
    (lambda: TrainConfig(lr=1e6), "lr=1e[+]06: Adam learning rates above 1"),
    (lambda: RuntimeConfig(precision="int8"), "precision='int8'"),
])
def test_invalid_values_name_the_field(factory, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        factory()


def test_a_section_overrides_a_shared_options_default_and_keeps_its_help():
    shared, own = (ModelConfig.__dataclass_fields__["norm"],
                   CycleGANConfig.__dataclass_fields__["norm"])
    assert (shared.default, own.default) == ("batch", "instance")
    assert own.metadata["help"] == shared.metadata["help"]
    assert CycleGANConfig().model == "cycle_gan"

    @dataclasses.dataclass(frozen=True)
    class Tool:
        ngf: int = option_of(ModelConfig, "ngf", 8, help="Another help.")
        mode: str = option("a", "Which.", ("a", "b"))

    assert Tool().ngf == 8 and Tool.__dataclass_fields__["ngf"].metadata["bound"] == "positive"


def test_json_round_trip_with_the_models_section(tmp_path):
    cfg = ExperimentConfig(data=DataConfig(data_dir="/d", direction="BtoA"),
                           model=CycleGANConfig(netG="resnet_6blocks", lambda_A=5.0),
                           train=TrainConfig(model_dir=str(tmp_path), max_steps=7))
    save_config(cfg, str(tmp_path))
    raw = read_config_file(str(tmp_path))
    assert raw["version"] == 2 and set(raw) == {"version", "data", "model", "train", "runtime"}
    assert "lambda_l1" not in raw["model"] and raw["model"]["lambda_A"] == 5.0
    assert ExperimentConfig.from_dict(raw, CycleGANConfig) == cfg
    assert read_config_file(str(tmp_path / "absent")) is None


def test_a_flat_file_of_before_maps_onto_the_sections():
    raw = json.load(open(os.path.join(REPO, "tests", "fixtures", "legacy_model_dirs",
                                      "cycle_gan", "config.json")))
    assert "version" not in raw and "lambda_A" in raw["train"] and "num_D" in raw["model"]
    cfg = ExperimentConfig.from_dict(raw, CycleGANConfig)
    assert isinstance(cfg.model, CycleGANConfig)
    assert (cfg.model.lambda_A, cfg.model.pool_size, cfg.model.gan_mode) == (5.0, 2, "lsgan")
    assert (cfg.model.netG, cfg.model.ngf, cfg.data.seed) == ("resnet_6blocks", 4, 3)
    assert cfg.runtime == RuntimeConfig()  # strategy, precision, lock_timeout moved here
    assert not hasattr(cfg.model, "num_D")  # another model's option: dropped


def test_unknown_fields_and_versions_are_refused():
    with pytest.raises(ConfigError, match="unknown model config fields: depth"):
        ExperimentConfig.from_dict({"version": 2, "model": {"depth": 3}}, ModelConfig)
    with pytest.raises(ConfigError, match="config version 3 is not known"):
        ExperimentConfig.from_dict({"version": 3}, ModelConfig)


def test_a_corrupt_config_file_is_a_config_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json is not a valid config file"):
        read_config_file(str(tmp_path))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a valid config file"):
        read_config_file(str(tmp_path))
    # A --model_dir that is a file (run_train, run_export, import_torch all read it first).
    with pytest.raises(ConfigError, match="--model_dir .*config.json is a file, not a folder"):
        read_config_file(str(tmp_path / "config.json"))


def test_options_and_replace_speak_flag_names():
    cfg = ExperimentConfig(model=Pix2PixConfig())
    options = cfg.options()
    assert options["no_condition_D"] is False and options["lambda_l1"] == 100.0
    assert options["precision"] == "float32" and options["crop_size"] == 256
    changed = cfg.replace(no_condition_D=True, crop_size=128, load_size=143,
                          precision="mixed_bfloat16")
    assert not changed.model.condition_D and changed.data.crop_size == 128
    assert changed.runtime.precision == "mixed_bfloat16" and changed.train == cfg.train
    with pytest.raises(ConfigError, match="unknown options: bogus"):
        cfg.replace(bogus=1)


def test_architecture_leaves_out_the_objectives_weights():
    a = ExperimentConfig(model=CycleGANConfig())
    arch = a.architecture()
    assert arch["model.netG"] == "resnet_9blocks" and arch["data.output_nc"] == 3
    assert not {"model.lambda_A", "model.pool_size", "model.gan_mode",
                "model.init_gain"} & set(arch)


def test_input_pipeline_differences_name_fields():
    a = ExperimentConfig()
    b = ExperimentConfig(data=DataConfig(batch_size=4, data_dir="/elsewhere"))
    assert input_pipeline_differences(a, b) == ["data.batch_size: 1 -> 4"]


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "f.json")
    write_atomic(path, "old\n")
    write_atomic(path, '{"new": 1}\n', sync=True)
    assert open(path).read() == '{"new": 1}\n'
    write_atomic(path, b"\x89PNG")
    assert open(path, "rb").read() == b"\x89PNG" and os.listdir(tmp_path) == ["f.json"]
    # A write that fails (a full disk) leaves the file as it was and no temporary beside it.
    with pytest.raises(TypeError):
        write_atomic(path, 12345)
    assert open(path, "rb").read() == b"\x89PNG" and os.listdir(tmp_path) == ["f.json"]


def test_the_configuration_and_error_layers_import_no_tensorflow():
    # A finder that refuses TensorFlow (and Keras) outright: importing them fails loudly. The
    # registry is loaded from its file: importing it by name runs the models package, which
    # imports the built-in models (TensorFlow) on purpose.
    code = """
import importlib.util, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import tf_pix2pix.errors, tf_pix2pix.configuration, tf_pix2pix.cli
spec = importlib.util.spec_from_file_location("registry", "tf_pix2pix/models/registry.py")
registry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(registry)
registry.register(type("M", (), {"name": "m"}))
assert registry.get("m").name == "m"
from tf_pix2pix.configuration import ExperimentConfig, DataConfig
ExperimentConfig(data=DataConfig(crop_size=64, load_size=72)).to_json()
try:
    import tf_pix2pix.models
except ImportError as e:
    print("models need", e)
print("ok", sorted(m for m in sys.modules if m.startswith(("tensorflow", "keras"))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "models need blocked:" in result.stdout  # the block is real
    assert result.stdout.strip().splitlines()[-1] == "ok []"


def _project_imports(path: str) -> set[str]:
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith(("tf_pix2pix", "data_prep"))}


def test_the_ground_floor_modules_import_only_what_they_may():
    assert _project_imports("tf_pix2pix/errors.py") == set()
    assert _project_imports("tf_pix2pix/configuration.py") == {"tf_pix2pix.errors"}
    assert _project_imports("tf_pix2pix/models/registry.py") == {"tf_pix2pix.errors"}
    # The resolution looks models up in the registry and imports none of them.
    assert _project_imports("tf_pix2pix/models/resolution.py") == {
        "tf_pix2pix", "tf_pix2pix.errors", "tf_pix2pix.models.registry"}
