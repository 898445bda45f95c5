"""pix2pixHD (tf_pix2pix/models/pix2pix_hd.py with networks/multiscale.py and networks/vgg.py):
the reference's parameter counts, the global generator and the multi-scale discriminator against
float64 numpy computations of the reference's layers, one training step against an independent
recomputation of the losses and gradients, the configuration errors, and training, export and
prediction on label maps through the common tools."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.models.pix2pix_hd import Pix2PixHD, Pix2PixHDConfig, feature_encoder
from tf_pix2pix.networks import count_params, multiscale_discriminator
from tf_pix2pix.networks.vgg import FEATURE_WEIGHTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def vgg_weights(tmp_path_factory):
    """A VGG19 "notop" weights file of random weights, loaded as a user's ImageNet file is."""
    keras.utils.set_random_seed(5)
    path = str(tmp_path_factory.mktemp("vgg") / "vgg19_random.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
    return path


def tiny_config(data_dir="", model_dir="", vgg_weights="", **options):
    """A small pix2pixHD global generator (its reference defaults: instance norm, no dropout,
    LSGAN) on 4-class label maps."""
    options = {"no_vgg_loss": not vgg_weights, "vgg_weights": vgg_weights,
               "summary_every_steps": 2, "image_every_steps": 4, "save_every_steps": 100,
               "val_max_examples": 2, "n_epochs": 1, "n_epochs_decay": 1, "ngf": 4, **options}
    return models.resolve("pix2pix_hd", data_dir=data_dir, label_nc=4,
                          preprocess="scale_width", load_size=64, crop_size=32, batch_size=2,
                          seed=3, ndf=4, n_downsample_global=2, n_blocks_global=1, num_D=2,
                          model_dir=str(model_dir), **options)


def _generator(**options):
    """A generator as the model builds it (36 input channels: 35 classes and the instance
    boundaries, unless ``label_nc`` says otherwise)."""
    config = models.resolve("pix2pix_hd", no_vgg_loss=True, **options)
    return Pix2PixHD.build_generator(config), config


def test_local_enhancer_counts():
    g, config = _generator(netG="local", ngf=32)
    assert count_params(g) == 182_857_059
    assert count_params(g.get_layer("global")) == 182_537_344
    assert Pix2PixHD.pad_multiple(config) == 32  # 5 downsamplings


def test_reference_counts_through_the_dry_run():
    out = subprocess.run([sys.executable, "run_train.py", "--model=pix2pix_hd", "--dry_run",
                          "--no_vgg_loss", "--data_dir=unused"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "generator_params=182546755 discriminator_params=5603202" in out
    assert "receptive_field=70,141" in out
    d3 = multiscale_discriminator(36, 3, num_D=3)
    assert count_params(d3) == 8_404_803
    assert count_params(d3.get_layer("scale0")) == 2_801_601


# -- float64 numpy computations of the reference's layers -----------------------------------

def np_conv(x, w, b, stride=1, pad=0, mode="constant"):
    """``nn.Conv2d`` of one ``[H, W, C]`` image, kernel ``[k, k, in, out]``."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode=mode)
    k = w.shape[0]
    h, wd = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = np.zeros((h, wd, w.shape[3]))
    for i in range(k):
        for j in range(k):
            out += x[i:i + stride * h:stride, j:j + stride * wd:stride] @ w[i, j]
    return out + (0 if b is None else b)


def np_conv_transpose(x, w, b):
    """``nn.ConvTranspose2d(3, stride=2, padding=1, output_padding=1)``, Keras kernel
    ``[3, 3, out, in]``: the full transposed convolution, rows and columns 1 .. 2n kept."""
    h, wd = x.shape[:2]
    full = np.zeros((2 * h + 1, 2 * wd + 1, w.shape[2]))
    for a in range(3):
        for c in range(3):
            full[a:a + 2 * h:2, c:c + 2 * wd:2] += x @ w[a, c].T
    return full[1:2 * h + 1, 1:2 * wd + 1] + b


def np_instance_norm(x):
    return (x - x.mean((0, 1))) / np.sqrt(x.var((0, 1)) + 1e-5)


def np_avg_pool_exclusive(x):
    """``AvgPool2d(3, 2, padding=1, count_include_pad=False)``."""
    h, w = x.shape[:2]
    out = np.zeros(((h - 1) // 2 + 1, (w - 1) // 2 + 1, x.shape[2]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            window = x[max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
            out[i, j] = window.mean((0, 1))
    return out


def _weights(model, name):
    layer = model.get_layer(name)
    return (layer.kernel.numpy().astype(np.float64),
            None if layer.bias is None else layer.bias.numpy().astype(np.float64))


def test_global_generator_is_the_references_function():
    """4 downsamplings (zero pad 1, stride 2), blocks, 4 transposed convs (output_padding 1),
    biases before instance norm: NVIDIA's GlobalGenerator, here with ngf 2 on a 32x48 input."""
    g, _ = _generator(ngf=2, n_blocks_global=2, label_nc=4)
    for v in g.trainable_variables:  # non-zero biases, so that each one is checked
        v.assign(tf.random.stateless_normal(v.shape, [1, len(v.path)], stddev=0.3))
    x = np.random.default_rng(0).uniform(-1, 1, (32, 48, 5))
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    y = relu(np_instance_norm(np_conv(x, *_weights(g, "stem_conv"), pad=3, mode="reflect")))
    for i in range(4):
        y = relu(np_instance_norm(np_conv(y, *_weights(g, f"down{i}_conv"), 2, 1)))
    for b in range(2):
        r = relu(np_instance_norm(np_conv(y, *_weights(g, f"block{b}_conv1"), pad=1,
                                          mode="reflect")))
        y = y + np_instance_norm(np_conv(r, *_weights(g, f"block{b}_conv2"), pad=1,
                                         mode="reflect"))
    for i in range(4):
        y = relu(np_instance_norm(np_conv_transpose(y, *_weights(g, f"up{i}_deconv"))))
    y = np.tanh(np_conv(y, *_weights(g, "head_conv"), pad=3, mode="reflect"))
    out = g(x[np.newaxis].astype(np.float32)).numpy()[0]
    np.testing.assert_allclose(out, y, atol=2e-5)


def test_local_enhancer_is_the_references_function():
    """NVIDIA's LocalEnhancer: the global part (2 downsamplings, ngf 4 = 2 x 2) on the
    exclusively average-pooled input, the full-size branch added to its output, a ResNet block,
    a transposed conv and the tanh head; 16x24 input, random non-zero biases."""
    g, _ = _generator(netG="local", ngf=2, n_downsample_global=2, n_blocks_global=1,
                      n_blocks_local=1, label_nc=4)
    for v in g.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, [2, len(v.path)], stddev=0.3))
    gp = g.get_layer("global")
    x = np.random.default_rng(1).uniform(-1, 1, (16, 24, 5))
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    norm = np_instance_norm

    def block(y, model, prefix):
        r = relu(norm(np_conv(y, *_weights(model, f"{prefix}_conv1"), pad=1, mode="reflect")))
        return y + norm(np_conv(r, *_weights(model, f"{prefix}_conv2"), pad=1, mode="reflect"))

    y = np_avg_pool_exclusive(x)
    y = relu(norm(np_conv(y, *_weights(gp, "stem_conv"), pad=3, mode="reflect")))
    for i in range(2):
        y = relu(norm(np_conv(y, *_weights(gp, f"down{i}_conv"), 2, 1)))
    y = block(y, gp, "block0")
    for i in range(2):
        y = relu(norm(np_conv_transpose(y, *_weights(gp, f"up{i}_deconv"))))
    assert y.shape == (8, 12, 4)
    z = relu(norm(np_conv(x, *_weights(g, "local1_stem_conv"), pad=3, mode="reflect")))
    z = relu(norm(np_conv(z, *_weights(g, "local1_down_conv"), 2, 1))) + y
    z = block(z, g, "local1_block0")
    z = relu(norm(np_conv_transpose(z, *_weights(g, "local1_up_deconv"))))
    z = np.tanh(np_conv(z, *_weights(g, "head_conv"), pad=3, mode="reflect"))
    out = g(x[np.newaxis].astype(np.float32)).numpy()[0]
    np.testing.assert_allclose(out, z, atol=2e-5)


@pytest.mark.parametrize("size", [(20, 18), (17, 23)])
def test_multiscale_discriminator_is_the_references_function(size):
    """Zero padding 2, biases everywhere, norm from the second layer, every layer's output, the
    second scale on the exclusively average-pooled pair."""
    d = multiscale_discriminator(5, 3, ndf=4, n_layers=3, num_D=2)
    for v in d.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, [2, len(v.path)], stddev=0.2))
    rng = np.random.default_rng(1)
    cond, image = rng.uniform(-1, 1, (*size, 5)), rng.uniform(-1, 1, (*size, 3))
    outputs = d([cond[np.newaxis].astype(np.float32), image[np.newaxis].astype(np.float32)])
    x = np.concatenate([cond, image], axis=-1)
    lrelu = lambda v: np.where(v > 0, v, 0.2 * v)  # noqa: E731
    for s in range(2):
        if s:
            x = np_avg_pool_exclusive(x)
        scale, y, expected = d.get_layer(f"scale{s}"), x, []
        for n in range(4):
            y = np_conv(y, *_weights(scale, f"conv{n}"), 2 if n < 3 else 1, 2)
            y = lrelu(np_instance_norm(y) if n else y)
            expected.append(y)
        expected.append(np_conv(y, *_weights(scale, "logits"), 1, 2))
        assert len(outputs[s]) == 5
        for ours, ref in zip(outputs[s], expected):
            np.testing.assert_allclose(ours.numpy()[0], ref, atol=2e-5)


# -- one step --------------------------------------------------------------------------------

def _batch(n=2, h=32, w=64, label_nc=4):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, label_nc, (n, h, w))
    one_hot = np.eye(label_nc)[labels]
    edge = (rng.uniform(size=(n, h, w, 1)) < 0.2)
    inputs = np.concatenate([one_hot, edge], axis=-1).astype(np.float32)
    return tf.constant(inputs), tf.constant(rng.uniform(-1, 1, (n, h, w, 3)), tf.float32)


def _reference_gradients(model, inputs, targets, lambda_feat=10.0):
    """pix2pixHD's losses written out: LSGAN summed over the scales, feature matching
    ``(1/num_D) (4/(n_layers+1)) lambda_feat L1`` over the hidden layers with the real features
    detached, the VGG loss ``lambda_feat sum w_k L1``; D on ``0.5 (fake + real)``."""
    G, D, vgg = model.generator, model.discriminator, model.vgg
    with tf.GradientTape() as tape:
        fake = G(inputs, training=True)
        pred_fake, pred_real = D([inputs, fake]), D([inputs, targets])
        g_gan = sum(tf.reduce_mean((p[-1] - 1.0) ** 2) for p in pred_fake)
        feat = sum(0.5 * (4.0 / 4.0) * lambda_feat
                   * tf.reduce_mean(tf.abs(f - tf.stop_gradient(r)))
                   for pf, pr in zip(pred_fake, pred_real) for f, r in zip(pf[:-1], pr[:-1]))
        fv, rv = vgg(fake), vgg(targets)
        g_vgg = lambda_feat * sum(w * tf.reduce_mean(tf.abs(f - tf.stop_gradient(r)))
                                  for w, f, r in zip(FEATURE_WEIGHTS, fv, rv))
        g_loss = g_gan + feat + g_vgg
    g_grads = tape.gradient(g_loss, G.trainable_variables)
    with tf.GradientTape() as tape:
        pred_fake = D([inputs, tf.stop_gradient(fake)])
        pred_real = D([inputs, targets])
        d_fake = sum(tf.reduce_mean(p[-1] ** 2) for p in pred_fake)
        d_real = sum(tf.reduce_mean((p[-1] - 1.0) ** 2) for p in pred_real)
        d_loss = 0.5 * (d_fake + d_real)
    d_grads = tape.gradient(d_loss, D.trainable_variables)
    losses = {"G_GAN": g_gan, "G_GAN_Feat": feat, "G_VGG": g_vgg, "D_fake": d_fake,
              "D_real": d_real}
    return g_grads, d_grads, {k: float(v) for k, v in losses.items()}


def _assert_updates(net, before, grads):
    """Plain gradient steps of rate 1: weights moved by minus the reference's gradients, to
    1e-3 of the network's largest gradient."""
    scale = max(float(np.abs(g.numpy()).max()) for g in grads)
    assert scale > 0
    for v, start, g in zip(net.trainable_variables, before, grads):
        np.testing.assert_allclose(v.numpy() - start, -g.numpy(), atol=1e-3 * scale,
                                   err_msg=f"{net.name} {v.path}")


def test_one_step_equals_an_independent_recomputation(vgg_weights):
    model = Pix2PixHD(tiny_config(vgg_weights=vgg_weights), tf.distribute.get_strategy(), 10)
    # Plain gradient steps (rate 1), so that the test compares gradients, not Adam's signs.
    model.g_optimizer, model.d_optimizer = keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0)
    inputs, targets = _batch()
    before = {n: [v.numpy() for v in net.trainable_variables]
              for n, net in model.networks().items()}
    g_grads, d_grads, expected = _reference_gradients(model, inputs, targets)
    values = model.train_step((inputs, targets))
    assert set(values) == set(expected) == set(model.loss_names)
    for name, value in expected.items():
        assert float(values[name]) == pytest.approx(value, rel=1e-5), name
    assert expected["G_VGG"] > 0 and expected["G_GAN_Feat"] > 0
    _assert_updates(model.generator, before["generator"], g_grads)
    _assert_updates(model.discriminator, before["discriminator"], d_grads)


def test_switches_and_configuration_errors(vgg_weights):
    model = Pix2PixHD(tiny_config(no_ganFeat_loss=True), tf.distribute.get_strategy(), 10)
    assert model.loss_names == ("G_GAN", "D_real", "D_fake") and model.vgg is None
    with pytest.raises(ConfigError, match="--vgg_weights"):
        Pix2PixHD(tiny_config(no_vgg_loss=False), tf.distribute.get_strategy(), 10)
    with pytest.raises(ConfigError, match="--vgg_weights=.*cannot load"):
        Pix2PixHD(tiny_config(vgg_weights=os.path.join(ROOT, "README.md")),
                  tf.distribute.get_strategy(), 10)
    # The reference's schedule: constant for n_epochs, then down by lr / n_epochs_decay per
    # epoch (epoch n_epochs still at lr; the last at lr / n_epochs_decay).
    model = Pix2PixHD(tiny_config(n_epochs=2, n_epochs_decay=4), tf.distribute.get_strategy(),
                      steps_per_epoch=10)
    rates = []
    for epoch in range(6):
        model.g_optimizer.iterations.assign(10 * epoch)
        rates.append(model.current_lr() / 2e-4)
    np.testing.assert_allclose(rates, [1, 1, 1, 0.75, 0.5, 0.25], atol=1e-6)


# -- through the tools -----------------------------------------------------------------------

def test_two_replicas_equal_one_device_on_the_same_global_batch(vgg_weights):
    """Every loss is a per-image mean averaged over the global batch: two replicas of one
    image each make one device's step on two images."""
    cfg = tiny_config(vgg_weights=vgg_weights)
    batch = _batch()
    single = Pix2PixHD(cfg, tf.distribute.get_strategy(), 10)
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        mirrored = Pix2PixHD(cfg, strategy, 10)
    for model in (single, mirrored):
        model.g_optimizer, model.d_optimizer = (keras.optimizers.SGD(1.0),
                                                keras.optimizers.SGD(1.0))
    for name, net in mirrored.networks().items():
        net.set_weights(single.networks()[name].get_weights())
    before = {n: [v.numpy() for v in net.trainable_variables]
              for n, net in single.networks().items()}
    out_single = single.train_step(batch)
    dist = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).unbatch().batch(2))))
    out_mirrored = mirrored.train_step(dist)
    for k in out_single:
        assert float(out_mirrored[k]) == pytest.approx(float(out_single[k]), rel=1e-4), k
    for name, net in single.networks().items():  # the same updates, to float noise
        steps = [start - v.numpy() for v, start in zip(net.trainable_variables, before[name])]
        _assert_updates(mirrored.networks()[name], before[name],
                        [tf.constant(step) for step in steps])


def test_training_resumes_exactly(label_records, tmp_path):
    from tf_pix2pix.runtime.training import build_trainer, train

    straight = train(tiny_config(label_records, tmp_path / "a", max_steps=4), progress=False)
    train(tiny_config(label_records, tmp_path / "b", max_steps=2), progress=False)
    resumed = build_trainer(tiny_config(label_records, tmp_path / "b", max_steps=4),
                            progress=False)
    assert resumed.restore() == 2
    assert resumed.run().weights_sha256 == straight.weights_sha256


def test_trains_exports_and_predicts_label_maps(label_records, tmp_path):
    from tf_pix2pix.serving.export import ExportConfig, export
    from tf_pix2pix.serving.predict import iterate_examples, predict, translator_from_saved_model
    from tf_pix2pix.runtime.training import build_trainer

    from conftest import event_tags

    cfg = tiny_config(label_records, tmp_path / "run", max_steps=4)
    result = build_trainer(cfg, progress=False).run()
    assert set(result.losses) == {"G_GAN", "G_GAN_Feat", "D_real", "D_fake"}
    assert event_tags(tmp_path / "run" / "train") >= {"loss/G_GAN_Feat",
                                                      "train/label_output_target"}
    assert 0 < result.val_metrics["l1"] < 2

    path = export(ExportConfig(model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "ex")))
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "translate", "serve_with_instances"}
    images = os.path.join(os.path.dirname(label_records), "images")
    label = open(os.path.join(images, "test_label", "00000.png"), "rb").read()
    inst = open(os.path.join(images, "test_inst", "00000.png"), "rb").read()
    out = loaded.signatures["serve_with_instances"](image_bytes=tf.constant([label]),
                                                    instance_bytes=tf.constant([inst]))
    served = tf.io.decode_png(out["image_bytes"][0]).numpy()
    # The same input through the TFRecord pipeline and ``translate``: the same photo.
    example = next(iterate_examples("tfrecord", label_records, cfg, split="test"))
    assert example.input.shape == (32, 64, 5)
    direct = loaded.signatures["translate"](images=tf.constant(example.input[np.newaxis]))
    expected = np.round((np.clip(direct["images"][0].numpy(), -1, 1) + 1) * 127.5)
    assert served.shape == (32, 64, 3)
    assert np.abs(served.astype(float) - expected).max() <= 1
    # Issue 33, fault 10: an id >= label_nc or an RGB image returned garbage; now refused.
    label_nc = cfg.data.label_nc
    for bad, match in ((np.full((32, 64, 1), label_nc, np.uint8), f"holds class id.*{label_nc}"
                        f".*label_nc={label_nc}"),
                       (np.zeros((32, 64, 3), np.uint8), "not a grayscale PNG of ids")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            loaded.signatures["serving_default"](image_bytes=tf.stack([tf.io.encode_png(bad)]))
    summary = predict(translator_from_saved_model(path),
                      iterate_examples("tfrecord", label_records, cfg, split="test"),
                      str(tmp_path / "pred"), progress=False)
    assert summary["count"] == 2 and "l1" in summary
    shown = tf.io.decode_png(open(tmp_path / "pred" / "images" / "00000_input.png",
                                  "rb").read()).numpy()
    assert shown.shape == (32, 64, 3)  # the label map in colours, not 5 channels
    with open(tmp_path / "pred" / "metrics.json") as f:
        assert json.load(f)["count"] == 2


def local_config(data_dir="", model_dir="", **options):
    """The tiny configuration with a local enhancer (ngf 2: its global part has tiny_config's
    ngf 4) and one epoch (3 steps) of coarse-to-fine unless told otherwise."""
    return tiny_config(data_dir, model_dir, **{"netG": "local", "ngf": 2, "n_blocks_local": 1,
                                               "niter_fix_global": 1, "n_epochs": 5,
                                               **options})


def _global_weights(trainer):
    return [v.numpy() for v in trainer.model.generator.get_layer("global").trainable_weights]


def test_coarse_to_fine_fixes_the_global_generator_for_niter_fix_global_epochs(label_records,
                                                                              tmp_path):
    """The paper's schedule (the reference's train.py keeps the first optimizer after the
    switch, NVIDIA/pix2pixHD b129d49): 3 steps (one epoch) change only the local enhancer; after
    the switch the whole generator trains, with a fresh Adam, and a restart across the switch
    gives the same weights as a straight run."""
    from tf_pix2pix.runtime.checkpointing import weights_sha256
    from tf_pix2pix.runtime.training import build_trainer

    fresh = build_trainer(local_config(label_records, tmp_path / "fresh"), progress=False)
    init = _global_weights(fresh)
    model = fresh.model
    n_local = sum(v.numpy().size for v in model.local_variables)
    assert 0 < n_local < sum(v.numpy().size for v in model.generator.trainable_variables)
    assert model.global_fixed() and model.fix_global_steps == 3

    phase1 = build_trainer(local_config(label_records, tmp_path / "a", max_steps=3),
                           progress=False)
    local_before = [v.numpy() for v in phase1.model.local_variables]
    phase1.run()
    assert not phase1.model.global_fixed()
    for a, b in zip(init, _global_weights(phase1)):
        np.testing.assert_array_equal(a, b)
    assert all(np.any(a != v.numpy()) for a, v in zip(local_before,
                                                       phase1.model.local_variables))
    assert int(phase1.model.g_local_optimizer.iterations.numpy()) == 3
    assert int(phase1.model.g_optimizer.iterations.numpy()) == 0

    resumed = build_trainer(local_config(label_records, tmp_path / "a", max_steps=5),
                            progress=False)
    assert resumed.restore() == 3
    result = resumed.run()
    assert int(resumed.model.g_optimizer.iterations.numpy()) == 2
    assert any(np.any(a != b) for a, b in zip(init, _global_weights(resumed)))
    straight = build_trainer(local_config(label_records, tmp_path / "b", max_steps=5),
                             progress=False).run()
    assert result.weights_sha256 == straight.weights_sha256
    assert weights_sha256(resumed.model.trainable_variables()) == straight.weights_sha256

    # The fresh Adam after the switch follows the run's epochs (its schedule is offset by the
    # steps before it): at step 5 (epoch 1) the rate is still lr.
    from tf_pix2pix.models.base import LinearDecay

    assert resumed.model.current_lr() == pytest.approx(resumed.config.train.lr)
    run_schedule = LinearDecay(1.0, 3, 5, 1, shift=0)
    after_switch = LinearDecay(1.0, 3, 5, 1, shift=0, offset=3)
    for step in (3, 14, 15, 17):
        assert float(after_switch(step - 3)) == float(run_schedule(step))
    assert float(run_schedule(15)) == 1.0 and float(run_schedule(18)) == 0.0


def test_load_pretrain_starts_the_global_part_from_a_trained_global_generator(label_records,
                                                                               tmp_path):
    from tf_pix2pix.runtime.training import build_trainer, train

    train(tiny_config(label_records, tmp_path / "global", max_steps=1), progress=False)
    from tf_pix2pix.models import restore_generator

    pretrained, _, _ = restore_generator(str(tmp_path / "global"))
    trainer = build_trainer(local_config(label_records, tmp_path / "local",
                                         load_pretrain=str(tmp_path / "global")),
                            progress=False)
    part = trainer.model.generator.get_layer("global")
    copied = 0
    for layer in part.layers:
        for w, source in zip(layer.weights, pretrained.get_layer(layer.name).weights):
            np.testing.assert_array_equal(w.numpy(), source.numpy())
            copied += 1
    assert copied == len(part.weights) > 0
    wide = local_config(label_records, tmp_path / "wide", load_pretrain=str(tmp_path / "global"),
                        ngf=4)
    with pytest.raises(ConfigError, match="does not fit this local enhancer's global part"):
        build_trainer(wide, progress=False)
    with pytest.raises(ConfigError, match="pass --netG local"):
        tiny_config(label_records, tmp_path / "x", niter_fix_global=2)


# -- instance-wise features ---------------------------------------------------------------------

def test_feature_encoder_and_instance_wise_average_pooling():
    from tf_pix2pix import label_maps
    encoder = feature_encoder(Pix2PixHDConfig(), 3)
    assert count_params(encoder) == 788_803
    # NVIDIA's Encoder: no ResNet blocks between its downsamplings and upsamplings (nef 2, 3
    # downsamplings on a 16x24 photo, random non-zero biases), against float64 numpy.
    small = feature_encoder(Pix2PixHDConfig(nef=2, n_downsample_E=3), 3)
    for v in small.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, [3, len(v.path)], stddev=0.3))
    photo = np.random.default_rng(2).uniform(-1, 1, (16, 24, 3))
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    y = relu(np_instance_norm(np_conv(photo, *_weights(small, "stem_conv"), pad=3,
                                      mode="reflect")))
    for i in range(3):
        y = relu(np_instance_norm(np_conv(y, *_weights(small, f"down{i}_conv"), 2, 1)))
    for i in range(3):
        y = relu(np_instance_norm(np_conv_transpose(y, *_weights(small, f"up{i}_deconv"))))
    y = np.tanh(np_conv(y, *_weights(small, "head_conv"), pad=3, mode="reflect"))
    np.testing.assert_allclose(small(photo[np.newaxis].astype(np.float32)).numpy()[0], y,
                               atol=2e-5)
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(2, 5, 6, 3)), tf.float32)
    ids = rng.choice([0, 7, 26001, 26002], size=(2, 5, 6, 1))
    ids[1, 0, 0, 0] = 99  # an id in one image only
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = label_maps.instance_mean(features, tf.constant(ids))
        loss = tf.reduce_sum(pooled[0, 0, 0])
    expected = np.zeros((2, 5, 6, 3))
    for n in range(2):  # per image: the mean over the pixels of each id
        for i in np.unique(ids[n]):
            mask = ids[n, ..., 0] == i
            expected[n][mask] = features.numpy()[n][mask].mean(axis=0)
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    grad = tape.gradient(loss, features).numpy()
    first = ids[0, ..., 0] == ids[0, 0, 0, 0]
    np.testing.assert_allclose(grad[0][first], 1.0 / first.sum(), rtol=1e-5)
    assert not grad[1].any() and not grad[0][~first].any()
    np.testing.assert_array_equal(label_maps.instance_class(tf.constant([7, 26001, 999, 1000])),
                                  [7, 26, 999, 1])


def feature_config(data_dir="", model_dir="", **options):
    return tiny_config(data_dir, model_dir, instance_feat=True, nef=4, n_downsample_E=2,
                       **options)


def test_instance_features_train_cluster_and_serve_a_chosen_style(label_records, tmp_path):
    """The encoder trains with G (no loss of its own), its instance-averaged features are G's
    extra input; encode_features clusters them per class from the command line; the export
    takes a style per image and gives each instance its class's cluster centre."""
    from tf_pix2pix import label_maps
    from tf_pix2pix.tools.encode_features import EncodeConfig, encode_features
    from tf_pix2pix.serving.export import ExportConfig, export
    from tf_pix2pix.runtime.training import build_trainer

    cfg = feature_config(label_records, tmp_path / "run", max_steps=3)
    trainer = build_trainer(cfg, progress=False)
    model = trainer.model
    assert model.generator.inputs[0].shape[-1] == 5 + 3
    assert model.discriminator.inputs[0].shape[-1] == 5  # D sees the labels, not the features
    before = [v.numpy() for v in model.encoder.trainable_variables]
    result = trainer.run()
    assert all(np.isfinite(list(result.losses.values())))
    assert all(np.any(a != v.numpy()) for a, v in zip(before, model.encoder.trainable_variables))

    with pytest.raises(ConfigError, match="run python -m tf_pix2pix.tools.encode_features"):
        export(ExportConfig(model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "e0")))
    cli = subprocess.run([sys.executable, "-m", "tf_pix2pix.tools.encode_features", "--model_dir",
                          str(tmp_path / "run"), "--n_clusters", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "wrote" in cli.stdout and "feature_clusters.json" in cli.stdout
    clusters = json.load(open(tmp_path / "run" / "feature_clusters.json"))
    assert clusters["images"] == 6 and clusters["feat_num"] == 3
    assert all(1 <= len(c) <= 2 and len(c[0]) == 3 for c in clusters["classes"].values())
    # The same centres from the library call (random_state 0; float32 rounding apart).
    again = encode_features(EncodeConfig(model_dir=str(tmp_path / "run"), n_clusters=2))
    assert again["classes"].keys() == clusters["classes"].keys()
    for k, centres in clusters["classes"].items():
        np.testing.assert_allclose(again["classes"][k], centres, atol=1e-5)

    path = export(ExportConfig(model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "e")))
    loaded = tf.saved_model.load(path)
    assert "serve_with_style" in loaded.signatures
    images = os.path.join(os.path.dirname(label_records), "images")
    label = open(os.path.join(images, "test_label", "00000.png"), "rb").read()
    inst = open(os.path.join(images, "test_inst", "00000.png"), "rb").read()
    ids = tf.io.decode_png(label, dtype=tf.uint8).numpy()[None].astype(np.int32)
    inst_ids = tf.io.decode_png(inst, dtype=tf.uint16).numpy()[None].astype(np.int32)
    decode = lambda out: tf.io.decode_png(out["image_bytes"][0]).numpy()  # noqa: E731
    outputs = {}
    for style in (0, 1):
        outputs[style] = decode(loaded.signatures["serve_with_style"](
            image_bytes=tf.constant([label]), instance_bytes=tf.constant([inst]),
            style=tf.constant([style])))
        # Each instance gets its class's centre number ``style`` (modulo the class's count).
        x = label_maps.encode(tf.constant(ids), tf.constant(inst_ids), 4)[0].numpy()
        feats = np.zeros(x.shape[:2] + (3,), np.float32)
        classes = np.where(inst_ids[0, ..., 0] < 1000, inst_ids[0, ..., 0],
                           inst_ids[0, ..., 0] // 1000)
        for c in np.unique(classes):
            centres = clusters["classes"].get(str(c), [])
            if centres:
                feats[classes == c] = centres[style % len(centres)]
        direct = loaded.signatures["translate"](images=tf.constant(
            np.concatenate([x, feats], -1)[None]))["images"][0].numpy()
        expected = np.round((np.clip(direct, -1, 1) + 1) * 127.5)
        assert np.abs(outputs[style].astype(float) - expected).max() <= 1
    assert np.any(outputs[0] != outputs[1])
    default = decode(loaded.signatures["serve_with_instances"](
        image_bytes=tf.constant([label]), instance_bytes=tf.constant([inst])))
    np.testing.assert_array_equal(default, outputs[0])

    with pytest.raises(ConfigError, match="needs label maps .* with instance maps"):
        feature_config(label_records, tmp_path / "x", no_instance=True)
    from tf_pix2pix.cli import UserError
    from tf_pix2pix.configuration import save_config

    save_config(tiny_config(label_records, tmp_path / "plain"), str(tmp_path / "plain"))
    with pytest.raises(UserError, match="trained without --instance_feat"):
        encode_features(EncodeConfig(model_dir=str(tmp_path / "plain")))


def test_one_discriminator_scale_trains(label_records, tmp_path):
    """Issue 33, part of fault 13: ``--num_D 1`` crashed at the first step (Keras returns a
    one-element output list unwrapped, so the loss took the layers for scales)."""
    from tf_pix2pix.networks import multiscale_discriminator, scale_outputs
    from tf_pix2pix.runtime.training import train

    D = multiscale_discriminator(5, 3, ndf=4, n_layers=2, num_D=1)
    outputs = scale_outputs(D([tf.zeros([1, 32, 32, 5]), tf.zeros([1, 32, 32, 3])]))
    assert len(outputs) == 1 and len(outputs[0]) == 4  # one scale, n_layers + 2 outputs
    two = multiscale_discriminator(5, 3, ndf=4, n_layers=2, num_D=2)
    assert [len(s) for s in scale_outputs(two([tf.zeros([1, 32, 32, 5]),
                                               tf.zeros([1, 32, 32, 3])]))] == [4, 4]
    result = train(tiny_config(label_records, tmp_path / "m", max_steps=2).replace(num_D=1),
                   progress=False)
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())


def test_load_pretrain_errors_name_the_flag_and_a_random_global_part_is_warned(
        label_records, tmp_path, capsys):
    """Issue 33, fault 12 and part of 13: ``--load_pretrain nosuch`` named --model_dir;
    ``--niter_fix_global`` without ``--load_pretrain`` trained around a random frozen global
    generator without a word."""
    from tf_pix2pix.runtime.training import build_trainer

    with pytest.raises(ConfigError, match=r"nosuch/config.json not found; is --load_pretrain a "
                                          "training directory"):
        build_trainer(local_config(label_records, tmp_path / "a",
                                   load_pretrain=str(tmp_path / "nosuch")), progress=False)
    build_trainer(local_config(label_records, tmp_path / "b"), progress=False)
    assert ("warning: --niter_fix_global 1 without --load_pretrain: for those epochs the local "
            "enhancer trains around an untrained, frozen global generator") in \
        capsys.readouterr().err
