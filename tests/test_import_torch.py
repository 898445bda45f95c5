import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.cli import UserError
from tf_pix2pix.tools.import_torch import (ImportConfig, assign_state_dict, export_state_dict,
                                     import_generator)
from tf_pix2pix.models import restore_generator

from torch_files import save_pth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNET = models.resolve("pix2pix", netG="unet_256", ngf=8, norm="batch")
RESNET = models.resolve("cycle_gan", netG="resnet_9blocks", ngf=8)


def build_generator(config):
    """The generator of ``config`` as its model builds it."""
    return models.for_config(config).build_generator(config)


def _random_generator(config, seed=0):
    g = build_generator(config)
    rng = np.random.default_rng(seed)
    g.set_weights([(np.abs(rng.normal(1, 0.3, w.shape)) if "variance" in v.path
                    else rng.normal(0, 0.1, w.shape)).astype(np.float32)
                   for v, w in zip(g.weights, g.get_weights())])
    return g


def test_reference_key_names_of_both_generator_families():
    unet = export_state_dict(_random_generator(UNET), UNET)
    innermost = "model.model.1.model." + "3.model." * 6
    assert {"model.model.0.weight", "model.model.3.weight", "model.model.3.bias",
            "model.model.1.model.1.weight", "model.model.1.model.2.running_var",
            innermost + "1.weight", innermost + "3.weight", innermost + "4.weight"} <= set(unet)
    assert "model.model.0.bias" not in unet  # no bias before batch norm
    assert unet["model.model.0.weight"].shape == (8, 3, 4, 4)  # [out, in, kh, kw]
    assert unet["model.model.3.weight"].shape == (16, 3, 4, 4)  # transposed: [in, out, kh, kw]
    # 16 conv weights, the outermost upconv bias, 13 batch norms (6 down, 7 up) x 4 tensors
    assert len(unet) == 16 + 1 + 13 * 4
    resnet = export_state_dict(_random_generator(RESNET), RESNET)
    assert {"model.1.weight", "model.1.bias", "model.4.weight", "model.10.conv_block.1.weight",
            "model.18.conv_block.5.bias", "model.19.weight", "model.22.weight",
            "model.26.weight", "model.26.bias"} <= set(resnet)
    assert resnet["model.26.weight"].shape == (3, 8, 7, 7)
    # Every parameter of CycleGAN's generator is a reference tensor (its well-known count).
    full = models.resolve("cycle_gan")
    full_state = export_state_dict(build_generator(full), full)
    assert sum(v.size for v in full_state.values()) == 11_378_179


@pytest.mark.parametrize("config", [UNET, RESNET], ids=["unet_256", "resnet_9blocks"])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_round_trip_through_a_pth_gives_identical_outputs(tmp_path, config, fmt):
    source = _random_generator(config)
    state = export_state_dict(source, config)
    if config.model.norm == "instance":  # old PyTorch saved these under InstanceNorm2d; dropped
        state["model.2.running_mean"] = np.zeros(8, np.float32)
        state["model.2.running_var"] = np.ones(8, np.float32)
        state["model.2.num_batches_tracked"] = np.array(3, np.int64)
    else:
        state["model.model.1.model.2.num_batches_tracked"] = np.array(3, np.int64)
    pth = save_pth(state, tmp_path / "latest_net_G.pth", fmt)
    kind = config.model.model
    result = import_generator(ImportConfig(model_dir=str(tmp_path / "m"), pth=pth, model=kind,
                                           netG=config.model.netG, norm=config.model.norm,
                                           ngf=8))
    assert result["generator"] == ("G_A" if kind == "cycle_gan" else "generator")
    imported, saved_config, _ = restore_generator(str(tmp_path / "m"))
    assert saved_config.model.netG == config.model.netG
    x = np.random.default_rng(1).uniform(-1, 1, (1, 256, 256, 3)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(imported(x, training=False)),
                                  keras.ops.convert_to_numpy(source(x, training=False)))


def test_a_single_kernel_tap_lands_where_the_reference_layout_puts_it():
    g = build_generator(UNET)
    state = export_state_dict(g, UNET)
    state = {k: np.zeros_like(v) for k, v in state.items()}
    state["model.model.0.weight"][5, 1, 0, 3] = 1.0  # out 5, in 1, row 0, column 3
    state["model.model.3.weight"][2, 0, 3, 1] = 2.0  # transposed: in 2, out 0, row 3, col 1
    assign_state_dict(g, UNET, state)
    down = g.get_layer("down0_conv").kernel.numpy()
    up = g.get_layer("up0_deconv").kernel.numpy()
    assert down[0, 3, 1, 5] == 1.0 and np.count_nonzero(down) == 1  # [kh, kw, in, out]
    assert up[3, 1, 0, 2] == 2.0 and np.count_nonzero(up) == 1  # [kh, kw, out, in]
    # The impulse response of the first conv: input pixel (r, c) of channel 1 reaches output
    # (r', c') = ((r - 0 + 1) / 2, (c - 3 + 1) / 2) with PyTorch's padding 1, stride 2.
    x = np.zeros((1, 256, 256, 3), np.float32)
    x[0, 9, 12, 1] = 1.0
    probe = keras.Model(g.inputs, g.get_layer("down0_conv").output)
    y = keras.ops.convert_to_numpy(probe(x))[0]
    assert y[5, 5, 5] == 1.0 and np.count_nonzero(y) == 1


def test_resnet_files_saved_with_dropout_are_detected(tmp_path):
    with_dropout = models.resolve("cycle_gan", netG="resnet_6blocks", ngf=8, no_dropout=False)
    source = _random_generator(with_dropout)
    state = export_state_dict(source, with_dropout, dropout_blocks=True)
    assert "model.10.conv_block.6.weight" in state and "model.10.conv_block.5.weight" not in state
    pth = save_pth(state, tmp_path / "g.pth")
    result = import_generator(ImportConfig(model_dir=str(tmp_path / "m"), pth=pth,
                                           model="cycle_gan", netG="resnet_6blocks", ngf=8))
    assert result["dropout_blocks"] and not result["config"].model.no_dropout
    imported, _, _ = restore_generator(str(tmp_path / "m"))
    x = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(imported(x, training=False)),
                                  keras.ops.convert_to_numpy(source(x, training=False)))


def test_mismatched_and_hostile_files_are_one_line_errors(tmp_path):
    resnet_pth = save_pth(export_state_dict(_random_generator(RESNET), RESNET),
                          tmp_path / "resnet.pth")
    with pytest.raises(UserError, match="the file has model.1.bias"):
        import_generator(ImportConfig(model_dir=str(tmp_path / "a"), pth=resnet_pth,
                                      model="pix2pix", ngf=8))
    with pytest.raises(UserError, match=r"shape \(8, 3, 7, 7\) does not fit stem_conv"):
        import_generator(ImportConfig(model_dir=str(tmp_path / "b"), pth=resnet_pth,
                                      model="cycle_gan", ngf=8, input_nc=1))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "tf_pix2pix.tools.import_torch", *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO)

    result = cli("--pth", resnet_pth, "--model_dir", str(tmp_path / "c"), "--ngf=8")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pass the file's --netG/--norm/--ngf" in result.stderr.splitlines()[-1]
    assert not os.path.exists(tmp_path / "c" / "config.json")
    # Issue 33, part of fault 13: a --model_dir that is a file raised a traceback.
    with pytest.raises(UserError, match="--model_dir .*resnet.pth is a file, not a folder"):
        import_generator(ImportConfig(model_dir=resnet_pth, pth=resnet_pth, model="cycle_gan",
                                      ngf=8))
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"x": Payload()}, f)
    result = cli("--pth", str(tmp_path / "evil.pth"), "--model_dir", str(tmp_path / "d"))
    assert result.returncode == 1 and "refusing to unpickle" in result.stderr
    result = cli("--pth", resnet_pth, "--model_dir", str(tmp_path / "e"), "--model=cycle_gan",
                 "--ngf=8")
    assert result.returncode == 0, result.stderr
    # 24 convs (stem, 2 down, 18 in blocks, 2 up, head), each with weight and bias
    assert "imported 48 tensors" in result.stdout and "as G_A" in result.stdout


def test_imported_model_exports_for_serving(tmp_path):
    from tf_pix2pix.serving.export import ExportConfig, export

    pth = save_pth(export_state_dict(_random_generator(RESNET), RESNET), tmp_path / "g.pth")
    import_generator(ImportConfig(model_dir=str(tmp_path / "m"), pth=pth, model="cycle_gan",
                                  ngf=8))
    path = export(ExportConfig(model_dir=str(tmp_path / "m"), export_dir=str(tmp_path / "e")))
    served = tf.saved_model.load(path).signatures["serving_default"]
    png = tf.io.encode_png(tf.zeros([10, 14, 3], tf.uint8))
    out = served(image_bytes=tf.stack([png]))["image_bytes"][0]
    assert tf.io.decode_png(out).shape == (10, 14, 3)


def test_nvidia_pix2pix_hd_key_names_at_full_size():
    """NVIDIA's label2city generators: GlobalGenerator 56 tensors (model.1 ... model.38, blocks
    model.16 - model.24), LocalEnhancer 74 (model.*, model1_1.*, model1_2.*), every parameter
    a reference tensor."""
    glob = models.resolve("pix2pix_hd", no_vgg_loss=True)  # 35 classes + boundaries: 36 in
    state = export_state_dict(build_generator(glob), glob)
    assert len(state) == 56 and sum(v.size for v in state.values()) == 182_546_755
    assert {"model.1.weight", "model.16.conv_block.1.weight", "model.24.conv_block.5.bias",
            "model.25.weight", "model.38.weight", "model.38.bias"} <= set(state)
    local = models.resolve("pix2pix_hd", netG="local", ngf=32, no_vgg_loss=True)
    state = export_state_dict(build_generator(local), local)
    assert len(state) == 74 and sum(v.size for v in state.values()) == 182_857_059
    assert {"model.1.weight", "model.34.bias", "model1_1.1.weight", "model1_1.4.bias",
            "model1_2.0.conv_block.1.weight", "model1_2.2.conv_block.5.bias",
            "model1_2.3.weight", "model1_2.7.weight", "model1_2.7.bias"} <= set(state)
    assert "model.38.weight" not in state and state["model1_2.3.weight"].shape == (64, 32, 3, 3)


@pytest.mark.parametrize("kind,fmt", [("global", "legacy"), ("local", "zip")])
def test_nvidia_pix2pix_hd_generators_compute_what_pytorch_computes(tmp_path, kind, fmt):
    """A GlobalGenerator / LocalEnhancer of NVIDIA's module structure built in PyTorch with
    random weights: imported, ours computes PyTorch's outputs within 1e-4."""
    from torch_files import pix2pix_hd_reference

    x = np.random.default_rng(3).uniform(-1, 1, (1, 16, 24, 5)).astype(np.float32)
    ngf = 4 if kind == "global" else 2
    pth, expected = pix2pix_hd_reference(kind, x, tmp_path, input_nc=5, ngf=ngf, n_down=2,
                                         n_blocks=2, n_blocks_local=1, fmt=fmt)
    result = import_generator(ImportConfig(
        model_dir=str(tmp_path / "m"), pth=pth, model="pix2pix_hd", netG=kind, ngf=ngf,
        label_nc=4, n_downsample_global=2, n_blocks_global=2, n_blocks_local=1))
    assert result["tensors"] == (20 if kind == "global" else 30)
    imported, config, _ = restore_generator(str(tmp_path / "m"))
    assert config.model.netG == kind and config.data.label_nc == 4
    out = keras.ops.convert_to_numpy(imported(x, training=False))
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert np.abs(out).max() > 0.1  # a real image, not a constant


def test_a_local_enhancer_goes_from_pth_to_a_served_savedmodel(tmp_path):
    """The README's three commands (import, export, serve) on a small LocalEnhancer file: a
    label PNG in, the PyTorch network's photo out."""
    from torch_files import pix2pix_hd_reference

    from tf_pix2pix import label_maps

    ids = np.random.default_rng(4).integers(0, 4, (16, 24))
    encoded = label_maps.encode(tf.constant(ids[None, :, :, None]),
                                tf.constant(ids[None, :, :, None]), 4).numpy()
    pth, expected = pix2pix_hd_reference("local", encoded, tmp_path, input_nc=5, ngf=2,
                                         n_down=2, n_blocks=1, n_blocks_local=1)
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=REPO, capture_output=True,  # noqa: E731
                                    text=True, timeout=300)
    imported = run("-m", "tf_pix2pix.tools.import_torch", "--pth", pth, "--model", "pix2pix_hd",
                   "--netG", "local", "--ngf", "2", "--label_nc", "4", "--n_downsample_global",
                   "2", "--n_blocks_global", "1", "--n_blocks_local", "1", "--model_dir",
                   str(tmp_path / "m"))
    assert imported.returncode == 0, imported.stderr
    assert "imported 26 tensors" in imported.stdout and "netG=local" in imported.stdout
    exported = run(os.path.join(REPO, "run_export.py"), "--model_dir", str(tmp_path / "m"),
                   "--export_dir", str(tmp_path / "e"))
    assert exported.returncode == 0, exported.stderr
    served = tf.saved_model.load(str(tmp_path / "e" / "1")).signatures["serving_default"]
    png = tf.io.encode_png(tf.constant(ids[:, :, None], tf.uint8))
    out = tf.io.decode_png(served(image_bytes=tf.stack([png]))["image_bytes"][0]).numpy()
    photo = np.round((np.clip(expected[0], -1, 1) + 1) * 127.5)
    assert out.shape == (16, 24, 3) and np.abs(out - photo).max() <= 1


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    """A file with a NaN or inf weight used to import and export silently (serving then
    returned NaN images): refused, naming the tensor, and no model directory is written."""
    state = export_state_dict(_random_generator(RESNET), RESNET)
    state["model.10.conv_block.1.weight"] = state["model.10.conv_block.1.weight"].copy()
    state["model.10.conv_block.1.weight"][0, 0, 1, 1] = np.nan
    state["model.26.bias"] = np.full_like(state["model.26.bias"], np.inf)
    pth = save_pth(state, tmp_path / "nan.pth")
    with pytest.raises(UserError, match=r"model\.10\.conv_block\.1\.weight holds 1 non-finite"):
        import_generator(ImportConfig(model_dir=str(tmp_path / "m"), pth=pth, model="cycle_gan",
                                      ngf=8))
    assert not os.path.exists(tmp_path / "m" / "config.json")
