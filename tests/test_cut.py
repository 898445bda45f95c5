"""CUT / FastCUT (tf_pix2pix/models/cut.py): the reference's counts and defaults, the NCE taps,
one training step against an independent recomputation (D, then G + F through the updated D),
exactness across replicas and across a restart, and training through the common loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.models.cut import CUT, CUTConfig, mean_pairwise_l1
from tf_pix2pix.networks import n_blocks, resnet_module_names
from tf_pix2pix.networks.patch_sample import patch_ids

from conftest import event_tags


def tiny_config(data_dir="", model_dir="", mode="cut", **options):
    """A small CUT in ``mode`` (its reference defaults: antialiased sampling, xavier init)."""
    options = {"num_patches": 16, "summary_every_steps": 2, "image_every_steps": 4,
               "save_every_steps": 4, "val_max_examples": 2, "n_epochs": 1, "n_epochs_decay": 1,
               "seed": 3, **options}
    return models.resolve("cut", cut_mode=mode, data_dir=data_dir, load_size=36, crop_size=32,
                          batch_size=2, ngf=4, ndf=4, netF_nc=8, netG="resnet_6blocks",
                          model_dir=str(model_dir), **options)


def _batch(seed=0, n=1, size=32):
    rng = np.random.default_rng(seed)
    return tuple(tf.constant(rng.uniform(-1, 1, (n, size, size, 3)), tf.float32)
                 for _ in range(2))


def test_reference_counts_and_mode_defaults():
    cut = models.get("cut")
    config = models.resolve("cut")
    assert cut.dry_run(config) == ("G_params=11378179 D_params=2764737 F_params=560384 "
                                   "receptive_field=84")
    assert config.model.antialias and config.model.antialias_up
    assert config.model.init_type == "xavier" and config.model.nce_idt
    assert (config.train.n_epochs, config.train.n_epochs_decay) == (200, 200)
    fast = models.resolve("cut", cut_mode="fastcut")
    m, t = fast.model, fast.train
    assert (m.nce_idt, m.lambda_NCE, m.flip_equivariance, t.n_epochs, t.n_epochs_decay) == (
        False, 10.0, True, 150, 50)


def test_configurations_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="nce_layers index the ResNet"):
        models.resolve("cut", netG="unet_256", no_antialias=True, no_antialias_up=True)
    with pytest.raises(ConfigError, match="encoder of resnet_6blocks ends at layer 17"):
        models.resolve("cut", netG="resnet_6blocks", nce_layers="0,4,18")
    with pytest.raises(ConfigError, match="nce_idt needs input_nc == output_nc"):
        models.resolve("cut", output_nc=1, nce_idt=True)
    with pytest.raises(ConfigError, match="nce_layers='4,0' is not valid"):
        CUTConfig(nce_layers="4,0")
    # One channel on both sides (grayscale domains, the reference's most reported crash).
    gray = tiny_config(input_nc=1, output_nc=1)
    model = CUT(gray, tf.distribute.get_strategy(), 1)
    values = model.train_step(tuple(x[..., :1] for x in _batch(n=2)))
    assert np.isfinite(list(values.values())).all()


def _tap_reference(model, x):
    """The antialiased reference modules 0..4 computed with plain ops and G's weights: reflection
    pad 3; conv 7x7; instance norm; ReLU; zero pad 1 and conv 3x3 stride 1."""
    def conv(x, name, pad_mode):
        layer = model.G.get_layer(name)
        k, b = (w.numpy() for w in layer.weights)
        p = k.shape[0] // 2 if pad_mode == "zero" else 0
        x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        return tf.nn.conv2d(x, k, 1, "VALID") + b

    tap0 = tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    y = conv(tap0, "stem_conv", "none")
    mean, var = tf.nn.moments(y, [1, 2], keepdims=True)
    y = tf.nn.relu((y - mean) / tf.sqrt(var + 1e-5))
    return tap0, conv(y, "down0_conv", "zero")


def test_nce_taps_are_the_reference_modules():
    model = CUT(tiny_config(), tf.distribute.get_strategy(), 1)
    x = _batch()[0]
    taps = model.encoder(x)
    tap0, tap4 = _tap_reference(model, x)
    np.testing.assert_allclose(taps[0], tap0, atol=1e-6)
    np.testing.assert_allclose(taps[1], tap4, atol=1e-4)
    # 8: second downsampling conv at half size; 12 and 16: ResNet blocks 1 and 5, quarter size.
    assert [tuple(t.shape) for t in taps[2:]] == [(1, 16, 16, 16), (1, 8, 8, 16), (1, 8, 8, 16)]
    block5 = keras.Model(model.G.input, model.G.get_layer("block4_add").output)
    np.testing.assert_allclose(taps[4], block5(x), atol=1e-6)


def _nce(q_feats, k_feats, temperature):
    """PatchNCE of one layer by its definition, image by image and patch by patch:
    -log(exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_j exp(l_ij / T))) with l_ii = -10."""
    out = []
    for q, k in zip(q_feats, k_feats):
        rows = []
        for i in range(len(q)):
            logits = [q[i] @ k[i]] + [-10.0 if j == i else q[i] @ k[j] for j in range(len(k))]
            logits = np.array(logits) / temperature
            rows.append(np.log(np.exp(logits).sum()) - logits[0])
        out.append(np.mean(rows))
    return np.array(out)


def _sample(feature, ids):
    f = feature.numpy()
    return f.reshape(f.shape[0], -1, f.shape[-1])[:, ids.numpy()]


def _reference_step(model, cfg, real_A, real_B, flipped):
    """The reference's iteration with copies of G, D and F and plain ops; each update is a plain
    gradient step (``w -= g``), so that the weights after it show the gradients themselves (an
    Adam first step would show only their signs)."""
    t = cfg.model  # CUT's options
    copies = {}
    for name in ("G", "D", "F"):
        net = getattr(model, name)
        copy = keras.models.clone_model(net)
        copy.set_weights(net.get_weights())
        copies[name] = copy
    G, D, F = copies["G"], copies["D"], copies["F"]
    m = cfg.model
    names = resnet_module_names(n_blocks(m.netG), m.antialias, m.antialias_up)
    enc = keras.Model(G.input, [G.get_layer(names[i]).output for i in m.nce_layer_ids])
    mse = lambda x, v: tf.reduce_mean(tf.square(x - v))  # noqa: E731
    n = real_A.shape[0]
    real = tf.concat([real_A, real_B], 0) if t.nce_idt else real_A
    if flipped:
        real = real[:, :, ::-1]
    fake = G(real)
    fake_B = fake[:n]
    with tf.GradientTape() as tape:
        d_loss = 0.5 * (mse(D(fake_B), 0.0) + mse(D(real_B), 1.0))
    grads = tape.gradient(d_loss, D.trainable_variables)
    for v, g in zip(D.trainable_variables, grads):
        v.assign_sub(g)

    def nce(src, tgt, salt):
        q_maps = enc(tgt)
        if flipped:
            q_maps = [q[:, :, ::-1] for q in q_maps]
        k_maps = enc(src)
        qs, ks = [], []
        for layer, (q, k) in enumerate(zip(q_maps, k_maps)):
            ids = patch_ids(k.shape[1] * k.shape[2], t.num_patches, model._seed(salt, layer))
            assert len(set(ids.numpy())) == min(t.num_patches, k.shape[1] * k.shape[2])
            qs.append(tf.gather(tf.reshape(q, [q.shape[0], -1, q.shape[-1]]), ids, axis=1))
            ks.append(tf.constant(_sample(k, ids)))
        return list(zip(F(qs), F(ks)))

    g_vars = G.trainable_variables + F.trainable_variables
    with tf.GradientTape() as tape:
        fake = G(real)
        fake_B = fake[:n]
        total = mse(D(fake_B), 1.0) * t.lambda_gan
        terms = [(real_A, fake_B, 0)] + ([(real_B, fake[n:], 1)] if t.nce_idt else [])
        nce_values = []
        for src, tgt, salt in terms:
            pairs = nce(src, tgt, salt)
            # The loss by its definition (logsumexp form), recomputed in numpy for the value.
            per_layer = []
            for qp, kp in pairs:
                kp = tf.stop_gradient(kp)
                pos = tf.reduce_sum(qp * kp, -1, keepdims=True)
                neg = tf.einsum("npd,nqd->npq", qp, kp)
                eye = np.eye(qp.shape[1], dtype=bool)[None]
                neg = tf.where(eye, -10.0, neg)
                logits = tf.concat([pos, neg], -1) / t.nce_T
                per_layer.append(tf.reduce_mean(tf.reduce_logsumexp(logits, -1) - logits[..., 0]))
                np.testing.assert_allclose(
                    per_layer[-1].numpy(),
                    np.mean(_nce(qp.numpy(), kp.numpy(), t.nce_T)), rtol=1e-5)
            nce_values.append(tf.add_n(per_layer) * t.lambda_NCE / len(per_layer))
        total += nce_values[0] if len(nce_values) == 1 else 0.5 * tf.add_n(nce_values)
    grads = tape.gradient(total, g_vars)
    for v, g in zip(g_vars, grads):
        v.assign_sub(g)
    return copies, float(d_loss), float(total)


def _flip_seed(want: bool) -> int:
    """A seed whose first FastCUT step flips (``want``) or not."""
    for seed in range(20):
        draw = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 0], tf.int64), 2))
        if bool(draw < 0.5) == want:
            return seed
    raise AssertionError


@pytest.mark.parametrize("mode, flipped", [("cut", False), ("fastcut", True)])
def test_one_step_equals_an_independent_recomputation(mode, flipped):
    seed = _flip_seed(flipped) if mode == "fastcut" else 3
    cfg = tiny_config(mode=mode, seed=seed)
    model = _plain_steps(CUT(cfg, tf.distribute.get_strategy(), 10))
    before = {name: [v.numpy() for v in getattr(model, name).trainable_variables]
              for name in ("G", "D", "F")}
    real_A, real_B = _batch(n=2)
    copies, d_loss, g_loss = _reference_step(model, cfg, real_A, real_B, flipped)
    values = model.train_step((real_A, real_B))
    assert set(values) == set(model.loss_names)
    assert ("NCE_Y" in values) == (mode == "cut")
    np.testing.assert_allclose(float(values["D_real"] + values["D_fake"]) / 2, d_loss, rtol=1e-5)
    np.testing.assert_allclose(float(values["G"]), g_loss, rtol=1e-5)
    for name in ("G", "D", "F"):
        _assert_same_update(getattr(model, name), copies[name], before[name])


def _plain_steps(model):
    """Gives ``model`` plain gradient steps (SGD, rate 1) instead of its Adams, before its step
    function is built: its weights after a step then differ from before by the gradients."""
    model.g_optimizer = keras.optimizers.SGD(1.0)
    model.d_optimizer = keras.optimizers.SGD(1.0)
    return model


def _assert_same_update(net, ref, before):
    """The updates (weights minus ``before``) of ``net`` and ``ref`` are equal, to 1e-3 relative
    to each tensor's largest update. Not compared: the bias of a conv followed by instance norm,
    whose gradient is zero in exact arithmetic (the norm subtracts it again) and float noise in
    practice."""
    names = {layer.name for layer in net.layers}
    for mine, theirs, start in zip(net.trainable_variables, ref.trainable_variables, before):
        layer = mine.path.split("/")[-2]
        normed = {layer.replace("deconv", "norm").replace("conv", "norm"), f"{layer}_norm"}
        if mine.path.endswith("bias") and normed & names:
            continue
        ours, refs = mine.numpy() - start, theirs.numpy() - start
        scale = np.abs(refs).max()
        assert scale > 0, mine.path
        np.testing.assert_allclose(ours, refs, rtol=1e-3, atol=1e-3 * scale,
                                   err_msg=f"{net.name} {mine.path}")


def test_two_replicas_equal_one_device_on_the_same_global_batch():
    """The patch draw and the flip are the same on every replica and the negatives stay within
    an image, so two replicas of one image each compute one device's step on two images."""
    cfg = tiny_config(mode="fastcut", seed=_flip_seed(True))
    batch = _batch(n=2)
    single = _plain_steps(CUT(cfg, tf.distribute.get_strategy(), 10))
    # Reduction through one device, not collective ops: a second strategy's collectives in this
    # process would reuse the instance keys of this one's with other shapes (other tests').
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        mirrored = _plain_steps(CUT(cfg, strategy, 10))
    for name in ("G", "D", "F"):
        getattr(mirrored, name).set_weights(getattr(single, name).get_weights())
    before = {name: [v.numpy() for v in getattr(single, name).trainable_variables]
              for name in ("G", "D", "F")}
    out_single = single.train_step(batch)
    dist = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).unbatch().batch(2))))
    out_mirrored = mirrored.train_step(dist)
    for k in out_single:
        assert float(out_mirrored[k]) == pytest.approx(float(out_single[k]), rel=1e-4, abs=1e-5)
    for name in ("G", "D", "F"):
        _assert_same_update(getattr(mirrored, name), getattr(single, name), before[name])


def test_mean_pairwise_l1():
    images = tf.constant([[[[-1.0]]], [[[1.0]]], [[[0.0]]]])  # 0, 1 and 0.5 in [0, 1] units
    assert mean_pairwise_l1(images) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert mean_pairwise_l1(tf.zeros([4, 2, 2, 3])) == 0.0


def test_training_resumes_exactly_and_writes_its_summaries(unpaired_records_dir, tmp_path):
    from tf_pix2pix.runtime.training import build_trainer, train

    def cfg(folder, steps):
        return tiny_config(unpaired_records_dir, tmp_path / folder, mode="fastcut", max_steps=steps,
                           save_every_steps=100)

    straight = build_trainer(cfg("a", 6), progress=False)
    result = straight.run()
    assert set(result.losses) == {"G_GAN", "D_real", "D_fake", "G", "NCE"}
    assert event_tags(tmp_path / "a" / "train") >= {"loss/NCE", "loss/G_GAN",
                                                    "train/real_A_fake_B", "train/real_B_idt_B"}
    assert event_tags(tmp_path / "a" / "val") >= {"metrics/idt_B_l1", "metrics/fake_B_diversity",
                                                  "metrics/real_A_diversity"}
    assert result.val_metrics["real_A_diversity"] > 0
    train(cfg("b", 3), progress=False)
    resumed = build_trainer(cfg("b", 6), progress=False)
    assert resumed.restore() == 3
    resumed.run()
    for name in ("G", "D", "F"):
        for x, y in zip(getattr(straight.model, name).weights,
                        getattr(resumed.model, name).weights):
            np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=f"{name} {x.path}")
