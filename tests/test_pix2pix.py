import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.models.base import LinearDecay, dtype_policy
from tf_pix2pix.models.pix2pix import LOSS_NAMES, Pix2Pix


def _config(batch_size=2, **options):
    options = {"netG": "unet_32", "ngf": 8, "ndf": 8, "n_epochs": 2, "n_epochs_decay": 3,
               **options}
    return models.resolve("pix2pix", batch_size=batch_size, load_size=32, crop_size=32,
                          **options)


def _batch(n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)
    return tf.constant(x), tf.constant(np.tanh(x[..., ::-1] * 2))


def test_linear_decay_follows_the_reference_per_epoch():
    sched = LinearDecay(1.0, steps_per_epoch=10, n_epochs=2, n_epochs_decay=3)
    rates = [float(sched(step)) for step in (0, 9, 10, 19, 20, 29, 30, 40, 49)]
    # epochs 0, 1: 1; epoch 2: 1 - 1/4; epoch 3: 1 - 2/4; epoch 4 (last): 1 - 3/4.
    assert rates == pytest.approx([1, 1, 1, 1, 0.75, 0.75, 0.5, 0.25, 0.25])
    assert float(sched(1000)) == 0.0


def test_constant_policy():
    cfg = models.resolve("pix2pix", lr_policy="constant", lr=1e-3)
    model = Pix2Pix(_config(), tf.distribute.get_strategy(), 5)
    assert model.current_lr() == pytest.approx(2e-4)
    from tf_pix2pix.models.base import learning_rate
    assert learning_rate(cfg, 5) == 1e-3


def test_train_step_updates_both_networks_and_the_step():
    keras.utils.set_random_seed(0)
    model = Pix2Pix(_config(), tf.distribute.get_strategy(), steps_per_epoch=10)
    g0 = [v.numpy().copy() for v in model.generator.trainable_variables]
    d0 = [v.numpy().copy() for v in model.discriminator.trainable_variables]
    out = model.train_step(_batch())
    assert set(out) == set(LOSS_NAMES) and all(np.isfinite(float(v)) for v in out.values())
    assert int(model.step.numpy()) == 1
    assert int(model.g_optimizer.iterations.numpy()) == 1
    assert any(not np.allclose(a, b.numpy()) for a, b in
               zip(g0, model.generator.trainable_variables))
    assert any(not np.allclose(a, b.numpy()) for a, b in
               zip(d0, model.discriminator.trainable_variables))
    # At init D outputs ~0 logits, so its losses start near log 2 and G_L1 is lambda * L1.
    assert float(out["D_real"]) == pytest.approx(np.log(2), abs=0.3)
    assert 10 < float(out["G_L1"]) < 100


def test_paper_mode_leaves_statistics_alone_and_differs_from_eval():
    keras.utils.set_random_seed(1)
    # unet_32 has no dropout blocks (num_downs - 5 = 0); the ResNet has dropout in every block.
    model = Pix2Pix(_config(netG="resnet_6blocks"), tf.distribute.get_strategy(), 10)
    model.train_step(_batch())
    stats = [v.numpy().copy() for v in model.generator.non_trainable_variables
             if "seed_generator" not in v.path]
    x, _ = _batch(seed=3)
    eval_a, eval_b = model.generate(x, "eval").numpy(), model.generate(x, "eval").numpy()
    paper_a, paper_b = model.generate(x, "paper").numpy(), model.generate(x, "paper").numpy()
    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(eval_a, paper_a)
    assert not np.allclose(paper_a, paper_b)  # fresh dropout masks on each call
    after = [v.numpy() for v in model.generator.non_trainable_variables
             if "seed_generator" not in v.path]
    for a, b in zip(stats, after):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="test_mode=.train. is not valid"):
        model.generate(x, "train")


def test_mirrored_step_matches_single_device_on_the_same_global_batch():
    cfg = _config(batch_size=4, no_dropout=True)
    single = Pix2Pix(cfg, tf.distribute.get_strategy(), 10)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = Pix2Pix(cfg, strategy, 10)
    assert mirrored.generator.get_layer("down1_norm").synchronized
    mirrored.generator.set_weights(single.generator.get_weights())
    mirrored.discriminator.set_weights(single.discriminator.get_weights())
    batch = _batch(4, seed=5)
    dist = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch))))
    for _ in range(2):
        out_single = single.train_step(batch)
        out_mirrored = mirrored.train_step(dist)
    for k in LOSS_NAMES:
        assert float(out_mirrored[k]) == pytest.approx(float(out_single[k]), rel=1e-3, abs=1e-4)
    for a, b in zip(single.generator.weights, mirrored.generator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=2e-5)


def test_float16_step_with_loss_scaling_runs_and_learns():
    keras.utils.set_random_seed(4)
    cfg = _config(n_epochs=100, n_epochs_decay=100, precision="mixed_float16")
    model = Pix2Pix(cfg, tf.distribute.get_strategy(), 10)
    assert isinstance(model.g_optimizer, keras.mixed_precision.LossScaleOptimizer)
    before = [v.numpy().copy() for v in model.generator.trainable_variables]
    out = model.train_step(_batch())
    assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in out.values())
    assert any(not np.allclose(a, b.numpy()) for a, b in
               zip(before, model.generator.trainable_variables))


def test_dtype_policy_is_restored_and_bfloat16_step_runs():
    before = keras.mixed_precision.global_policy().name
    with dtype_policy("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before
    cfg = _config(n_epochs=100, n_epochs_decay=100, precision="mixed_bfloat16")
    model = Pix2Pix(cfg, tf.distribute.get_strategy(), 10)
    assert model.generator.get_layer("down1_conv").compute_dtype == "bfloat16"
    assert model.generator.get_layer("down1_conv").kernel.dtype == "float32"
    out = model.train_step(_batch())
    assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in out.values())
    assert model.generate(_batch()[0]).dtype == tf.float32


# --- the paper's ablations ----------------------------------------------------------------------

def _ablation(**options):
    cfg = _config(n_epochs=100, n_epochs_decay=100, **options)
    return Pix2Pix(cfg, tf.distribute.get_strategy(), 5)


def test_lambda_gan_zero_is_the_l1_row_without_a_discriminator():
    model = _ablation(lambda_gan=0.0)
    assert model.discriminator is None and model.loss_names == ("G_L1",)
    assert "discriminator" not in model.checkpoint_objects()
    assert model.trainable_variables() == model.generator.trainable_variables
    inputs, targets = _batch()
    # The step is plain L1 regression: it equals one Adam step on lambda * L1 alone.
    reference = keras.models.clone_model(model.generator)
    reference.set_weights(model.generator.get_weights())
    with tf.GradientTape() as tape:
        loss = 100.0 * tf.reduce_mean(tf.abs(reference(inputs, training=True) - targets))
    grads = tape.gradient(loss, reference.trainable_variables)
    # PyTorch's Adam at step 1 is Keras's with epsilon * sqrt(1 - b2) (optim.py's docstring).
    keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999,
                          epsilon=1e-8 * np.sqrt(1 - 0.999)).apply_gradients(
        zip(grads, reference.trainable_variables))
    values = model.train_step((inputs, targets))
    assert set(values) == {"G_L1"}
    np.testing.assert_allclose(float(values["G_L1"]), float(loss), rtol=1e-5)
    for a, b in zip(model.generator.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)


def test_lambda_l1_zero_is_the_cgan_row():
    model = _ablation(lambda_l1=0.0)
    values = model.train_step(_batch())
    assert float(values["G_L1"]) == 0.0 and float(values["G_GAN"]) > 0


def test_unconditional_discriminator_sees_only_the_output():
    model = _ablation(no_condition_D=True)
    assert [tuple(t.shape) for t in model.discriminator.inputs] == [(None, None, None, 3)]
    assert model.discriminator.get_layer("conv0").kernel.shape == (4, 4, 3, 8)
    values = model.train_step(_batch())
    assert set(values) == set(LOSS_NAMES) and all(np.isfinite(list(values.values())))


def test_both_weights_zero_is_refused():
    from tf_pix2pix.configuration import ConfigError

    with pytest.raises(ConfigError, match="no objective"):
        models.resolve("pix2pix", lambda_gan=0.0, lambda_l1=0.0)
