import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.models.cycle_gan import LOSS_NAMES, CycleGAN, ImagePool, cycle_gan_losses

from conftest import event_tags


def tiny_config(data_dir="", model_dir="", **options):
    """A small CycleGAN (its reference defaults: instance norm, no dropout, LSGAN)."""
    options = {"summary_every_steps": 2, "image_every_steps": 4, "save_every_steps": 4,
               "val_max_examples": 2, "n_epochs": 1, "n_epochs_decay": 1, **options}
    return models.resolve("cycle_gan", data_dir=data_dir, load_size=36, crop_size=32, seed=3,
                          netG="resnet_6blocks", ngf=4, ndf=4, model_dir=str(model_dir),
                          **options)


# --- the image pool ---------------------------------------------------------------------------

def _image(value):
    return tf.fill([1, 2, 2, 1], float(value))


def test_pool_stores_while_filling_then_swaps_half_the_time():
    pool = ImagePool(3, (2, 2, 1), seed=0)
    for i in range(3):  # filling: store and return the new image
        np.testing.assert_array_equal(pool.query(_image(i)), _image(i))
    assert int(pool.count.numpy()) == 3
    stored = sorted(float(v) for v in pool.images.numpy()[:, 0, 0, 0])
    assert stored == [0, 1, 2]
    swaps = 0
    for i in range(3, 303):
        before = pool.images.numpy().copy()
        out = float(pool.query(_image(i)).numpy()[0, 0, 0, 0])
        after = pool.images.numpy()
        if out == i:  # the new image itself; the pool is unchanged
            np.testing.assert_array_equal(before, after)
        else:  # a stored image, replaced in its slot by the new one
            slot = int(np.flatnonzero(before[:, 0, 0, 0] == out)[0])
            assert after[slot, 0, 0, 0] == i
            np.testing.assert_array_equal(np.delete(before, slot, 0), np.delete(after, slot, 0))
            swaps += 1
    assert int(pool.count.numpy()) == 3
    assert 120 <= swaps <= 180  # probability 1/2 over 300 draws


def test_pool_handles_each_image_of_a_batch_and_size_zero_is_identity():
    pool = ImagePool(2, (2, 2, 1), seed=0)
    batch = tf.concat([_image(7), _image(8), _image(9)], 0)
    out = pool.query(batch).numpy()[:, 0, 0, 0]
    assert out[0] == 7 and out[1] == 8 and out[2] in (7, 8, 9)  # the third meets a full pool
    assert int(pool.count.numpy()) == 2
    np.testing.assert_array_equal(ImagePool(0, (2, 2, 1), seed=0).query(batch), batch)


def test_pool_state_round_trips_through_a_checkpoint(tmp_path):
    pool = ImagePool(2, (2, 2, 1), seed=5)
    query = tf.function(pool.query)
    for i in range(4):
        query(_image(i))
    path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / "p"))
    expected = [float(query(_image(10 + i))[0, 0, 0, 0]) for i in range(20)]
    fresh = ImagePool(2, (2, 2, 1), seed=99)
    tf.train.Checkpoint(pool=fresh).restore(path).assert_consumed()
    got = [float(tf.function(fresh.query)(_image(10 + i))[0, 0, 0, 0]) for i in range(20)]
    assert got == expected and len(set(got)) > 2


# --- losses -----------------------------------------------------------------------------------

def test_losses_on_known_tensors():
    ones = tf.ones([2, 4, 4, 3])
    zeros = tf.zeros([2, 4, 4, 3])
    logits = tf.fill([2, 3, 3, 1], 0.5)
    out = cycle_gan_losses(real_A=zeros, real_B=ones, rec_A=0.5 * ones, rec_B=0.75 * ones,
                           idt_A=0.9 * ones, idt_B=0.2 * ones, d_fake_B=logits,
                           d_fake_A=2.0 * logits, lambda_A=10.0, lambda_B=4.0, lambda_identity=0.5, gan_mode="lsgan")
    expected = {"G_A": 0.25,                 # (0.5 - 1)^2
                "G_B": 0.0,                  # (1 - 1)^2
                "cycle_A": 0.5 * 10.0,       # |0.5 - 0| * lambda_A
                "cycle_B": 0.25 * 4.0,       # |0.75 - 1| * lambda_B
                "idt_A": 0.1 * 4.0 * 0.5,    # |G_A(B) - B| * lambda_B * lambda_identity
                "idt_B": 0.2 * 10.0 * 0.5}   # |G_B(A) - A| * lambda_A * lambda_identity
    for name, value in expected.items():
        np.testing.assert_allclose(out[name].numpy(), [value, value], rtol=1e-6, err_msg=name)
    off = cycle_gan_losses(zeros, ones, zeros, ones, None, None, logits, logits,
                           10.0, 10.0, 0.0, "lsgan")
    assert not off["idt_A"].numpy().any() and not off["idt_B"].numpy().any()


# --- the train step ---------------------------------------------------------------------------

def _batch(seed=0, size=32):
    rng = np.random.default_rng(seed)
    return tuple(tf.constant(rng.uniform(-1, 1, (1, size, size, 3)), tf.float32)
                 for _ in range(2))


def _model(**train_kw):
    cfg = tiny_config(**train_kw)
    return CycleGAN(cfg, tf.distribute.get_strategy(), steps_per_epoch=10), cfg


def test_counts_names_and_unconditional_discriminators():
    model, _ = _model()
    assert [len(d.inputs) for d in (model.D_A, model.D_B)] == [1, 1]
    big = CycleGAN(models.resolve("cycle_gan"), tf.distribute.get_strategy(), steps_per_epoch=1)
    from tf_pix2pix.networks import count_params

    assert [count_params(m) for m in (big.G_A, big.G_B, big.D_A, big.D_B)] == [
        11_378_179, 11_378_179, 2_764_737, 2_764_737]
    assert set(model.checkpoint_objects()) >= {"G_A", "G_B", "D_A", "D_B", "g_optimizer",
                                               "d_optimizer", "fake_A_pool", "fake_B_pool"}


def test_one_step_equals_the_reference_update_order():
    """G_A and G_B step first (one Adam, through the D's as they were); then D_A and D_B step
    (one Adam) on the fakes of the generators before their update. Recomputed independently
    with copies of the networks and Keras's Adam."""
    model, cfg = _model(lambda_identity=0.5, pool_size=4)
    t = cfg.train
    real_A, real_B = _batch()
    nets = {n: getattr(model, n) for n in ("G_A", "G_B", "D_A", "D_B")}
    copies = {}
    for name, net in nets.items():
        copy = keras.models.clone_model(net)
        copy.set_weights(net.get_weights())
        copies[name] = copy
    G_A, G_B, D_A, D_B = (copies[n] for n in ("G_A", "G_B", "D_A", "D_B"))
    mse = lambda x, v: tf.reduce_mean(tf.square(x - v))  # noqa: E731
    l1 = lambda x, y: tf.reduce_mean(tf.abs(x - y))  # noqa: E731

    g_vars = G_A.trainable_variables + G_B.trainable_variables
    with tf.GradientTape() as tape:
        fake_B, fake_A = G_A(real_A), G_B(real_B)
        g_loss = (mse(D_A(fake_B), 1.0) + mse(D_B(fake_A), 1.0)
                  + 10.0 * l1(G_B(fake_B), real_A) + 10.0 * l1(G_A(fake_A), real_B)
                  + 10.0 * 0.5 * l1(G_A(real_B), real_B) + 10.0 * 0.5 * l1(G_B(real_A), real_A))
    g_grads = tape.gradient(g_loss, g_vars)
    d_vars = D_A.trainable_variables + D_B.trainable_variables
    with tf.GradientTape() as tape:
        # The pools are filling: they return the new fakes.
        d_loss = (0.5 * (mse(D_A(real_B), 1.0) + mse(D_A(fake_B), 0.0))
                  + 0.5 * (mse(D_B(real_A), 1.0) + mse(D_B(fake_A), 0.0)))
    d_grads = tape.gradient(d_loss, d_vars)
    for grads, variables in ((g_grads, g_vars), (d_grads, d_vars)):
        # PyTorch's Adam at step 1 is Keras's with epsilon * sqrt(1 - b2) (optim.py's docstring).
        opt = keras.optimizers.Adam(t.lr, beta_1=t.beta1, beta_2=t.beta2,
                                    epsilon=1e-8 * np.sqrt(1 - t.beta2))
        opt.apply_gradients(zip(grads, variables))
    # A conv bias followed by instance norm has a gradient of exactly zero in exact arithmetic
    # (the norm subtracts it again); its float rounding noise, which Adam's first step scales to
    # +-lr, says nothing about the update order. Those variables are compared separately.
    unnormed = ("head_conv/bias", "conv0/bias", "logits/bias")
    noise = {id(v) for v in g_vars + d_vars
             if v.path.endswith("bias") and not v.path.endswith(unnormed)}
    assert len(noise) == 2 * (1 + 2 + 2 * 6 + 2) + 2 * 3  # G: stem, downs, blocks, ups; D: 3

    values = model.train_step((real_A, real_B))
    assert set(values) == set(LOSS_NAMES) and all(np.isfinite(list(values.values())))
    np.testing.assert_allclose(float(values["D_A"] + values["D_B"]), float(d_loss), rtol=1e-5)
    for name in ("G_A", "G_B", "D_A", "D_B"):
        for mine, ref in zip(nets[name].trainable_variables, copies[name].trainable_variables):
            if id(ref) in noise:  # moved by at most lr from the same start
                assert np.abs(mine.numpy() - ref.numpy()).max() <= 2.01 * t.lr
                continue
            np.testing.assert_allclose(mine.numpy(), ref.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} {mine.path}")


@pytest.mark.parametrize("lambda_identity, passes", [(0.5, 6), (0.0, 4)])
def test_identity_term_adds_two_generator_passes(lambda_identity, passes):
    model, _ = _model(lambda_identity=lambda_identity)
    calls = []
    for name in ("G_A", "G_B"):
        net = getattr(model, name)
        original = net.call
        net.call = lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k)
    values = model.train_step(_batch())
    assert len(calls) == passes and calls.count("G_A") == calls.count("G_B")
    assert (float(values["idt_A"]) > 0) == (lambda_identity > 0)
    assert (float(values["idt_B"]) > 0) == (lambda_identity > 0)


def test_configurations_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="crop_size=16 is too small for netD=basic"):
        models.resolve("cycle_gan", load_size=16, crop_size=16)
    models.resolve("cycle_gan", load_size=24, crop_size=24)  # 1x1 logits
    with pytest.raises(ConfigError, match="needs input_nc == output_nc"):
        models.resolve("cycle_gan", output_nc=1)
    with pytest.raises(ConfigError, match="paper and eval modes compute the same"):
        tiny_config(test_mode="paper")
    with pytest.raises(ConfigError, match="image pool"):
        models.resolve("cycle_gan", preprocess="scale_width", pool_size=50)
    models.resolve("cycle_gan", preprocess="scale_width", pool_size=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope(), pytest.raises(ConfigError, match="one replica"):
        CycleGAN(tiny_config(), strategy, steps_per_epoch=1)


# --- training through the common loop ---------------------------------------------------------

def test_training_writes_the_cycle_gan_summaries_and_samples(unpaired_records_dir, tmp_path):
    from tf_pix2pix.runtime.training import train

    cfg = tiny_config(unpaired_records_dir, tmp_path / "m", max_steps=6)
    result = train(cfg, progress=False)
    assert result.step == 6 and set(result.losses) == set(LOSS_NAMES)
    assert event_tags(tmp_path / "m" / "train") >= {
        *(f"loss/{n}" for n in LOSS_NAMES), "learning_rate",
        "train/real_A_fake_B_rec_A", "train/real_B_fake_A_rec_B"}
    assert event_tags(tmp_path / "m" / "val") >= {
        "metrics/rec_A_l1", "metrics/rec_B_ssim", "val/real_A_fake_B_rec_A"}
    png = tf.io.decode_png(open(tmp_path / "m" / "samples" / "val_latest.png", "rb").read())
    # Validation batches hold up to 4 images in eval mode: 2 val images x two grids, 3 columns,
    # each grid under its captions (real_A | fake_B | rec_A, real_B | fake_A | rec_B), the 32-px
    # tiles enlarged to 128.
    assert png.shape == (2 * (16 + 2 * 128), 3 * 128, 3)
    assert result.val_metrics["count"] == 2


def test_two_n_steps_equal_n_plus_restart_plus_n_pool_included(unpaired_records_dir, tmp_path):
    from tf_pix2pix.runtime.training import build_trainer, train

    kw = dict(pool_size=2, save_every_steps=100)
    straight = build_trainer(tiny_config(unpaired_records_dir, tmp_path / "a", max_steps=8, **kw),
                             progress=False)
    straight.run()
    train(tiny_config(unpaired_records_dir, tmp_path / "b", max_steps=4, **kw), progress=False)
    resumed = build_trainer(tiny_config(unpaired_records_dir, tmp_path / "b", max_steps=8, **kw),
                            progress=False)
    assert resumed.restore() == 4
    resumed.run()
    a, b = straight.model, resumed.model
    for name in ("G_A", "G_B", "D_A", "D_B"):
        for x, y in zip(getattr(a, name).weights, getattr(b, name).weights):
            np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=f"{name} {x.path}")
    for pool in ("fake_A_pool", "fake_B_pool"):
        np.testing.assert_array_equal(getattr(a, pool).images.numpy(),
                                      getattr(b, pool).images.numpy())
        assert int(getattr(a, pool).count.numpy()) == 2


def test_training_from_tfds_resumes_by_repositioning(tmp_path):
    """TFDS source (mock data, no download): trains, and a restart continues at the step."""
    import tensorflow_datasets as tfds

    from tf_pix2pix.runtime.training import build_trainer

    def cfg(steps):
        return tiny_config("", tmp_path / "m", max_steps=steps, val_max_examples=0,
                           tfds_name="cycle_gan/horse2zebra", tfds_data_dir=str(tmp_path))

    with tfds.testing.mock_data(num_examples=3):
        first = build_trainer(cfg(3), progress=False)
        assert first.steps_per_epoch == 3 and "iterator" not in first.checkpoint._trackable_children()
        assert first.run().step == 3
        again = build_trainer(cfg(5), progress=False)
        assert again.restore() == 3
        assert again.run().step == 5
