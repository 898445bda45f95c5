import os

import pytest

from tf_pix2pix.config import (ConfigError, DataConfig, ExperimentConfig, ModelConfig,
                               TrainConfig, architecture_differences,
                               input_pipeline_differences, load_config, save_config)


def test_defaults_are_the_papers():
    cfg = ExperimentConfig()
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
    assert (cfg.model.netG, cfg.model.ngf, cfg.model.netD, cfg.model.ndf) == (
        "unet_256", 64, "basic", 64)
    assert (cfg.train.lr, cfg.train.beta1, cfg.train.lambda_l1) == (2e-4, 0.5, 100.0)
    assert (cfg.train.n_epochs, cfg.train.n_epochs_decay) == (100, 100)
    assert cfg.model.num_downs == 8


@pytest.mark.parametrize("factory, message", [
    (lambda: DataConfig(direction="AB"), "direction='AB'"),
    (lambda: DataConfig(load_size=100, crop_size=128), "crop_size=128 is larger"),
    (lambda: DataConfig(input_nc=2), "input_nc=2"),
    (lambda: ModelConfig(netG="unet_16"), "netG='unet_16'"),
    (lambda: ModelConfig(norm="layer"), "norm='layer'"),
    (lambda: TrainConfig(gan_mode="wgan"), "gan_mode='wgan'"),
    (lambda: TrainConfig(beta1=1.5), "beta1=1.5"),
    (lambda: TrainConfig(n_epochs=0, n_epochs_decay=0), "nothing to train"),
])
def test_invalid_values_name_the_field(factory, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        factory()


def test_json_round_trip(tmp_path):
    cfg = ExperimentConfig(data=DataConfig(data_dir="/d", direction="BtoA"),
                           model=ModelConfig(netG="resnet_9blocks", norm="instance"),
                           train=TrainConfig(model_dir=str(tmp_path), max_steps=7))
    save_config(cfg, str(tmp_path))
    assert load_config(str(tmp_path)) == cfg
    assert load_config(str(tmp_path / "absent")) is None


def test_unknown_field_is_refused():
    with pytest.raises(ConfigError, match="unknown model config fields: depth"):
        ExperimentConfig.from_dict({"model": {"depth": 3}})


def test_architecture_differences_name_fields():
    a = ExperimentConfig()
    b = ExperimentConfig(model=ModelConfig(ngf=32), data=DataConfig(output_nc=1),
                         train=TrainConfig(lr=1e-3))
    assert architecture_differences(a, b) == ["data.output_nc: 3 -> 1", "model.ngf: 64 -> 32"]
    assert architecture_differences(a, a) == []


def test_input_pipeline_differences_name_fields():
    a = ExperimentConfig()
    b = ExperimentConfig(data=DataConfig(batch_size=4, data_dir="/elsewhere"))
    assert input_pipeline_differences(a, b) == ["data.batch_size: 1 -> 4"]


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    from tf_pix2pix.config import write_atomic

    path = str(tmp_path / "f.json")
    write_atomic(path, "old\n")
    write_atomic(path, '{"new": 1}\n', sync=True)
    assert open(path).read() == '{"new": 1}\n'
    write_atomic(path, b"\x89PNG")
    assert open(path, "rb").read() == b"\x89PNG" and os.listdir(tmp_path) == ["f.json"]
