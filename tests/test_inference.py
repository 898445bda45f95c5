"""The one implementation of running a trained generator: test-mode checks, the paper mode's
batch statistics without any update of the stored ones, restoring, any-size translation."""

import threading

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError, ModelConfig
from tf_pix2pix.inference import check_test_mode, generator_fn, mode_call, padded_translate
from tf_pix2pix.networks import build_generator


def _generator():
    return build_generator(ModelConfig(netG="unet_32", ngf=8), 3, 3)


def test_check_test_mode_refuses_unknown_modes_and_paper_mode_without_noise():
    check_test_mode("eval")
    check_test_mode("paper")
    with pytest.raises(ConfigError, match="test_mode='train' is not valid; choose one of "
                                          "eval, paper"):
        check_test_mode("train")
    # Against a model: paper mode where it changes nothing is refused.
    models.check_test_mode(models.resolve("pix2pix"), "paper")
    quiet = models.resolve("cycle_gan", netG="resnet_6blocks")
    with pytest.raises(ConfigError, match="cycle_gan generator has no dropout and no batch "
                                          "norm"):
        models.check_test_mode(quiet, "paper")
    models.check_test_mode(quiet, "eval")
    with pytest.raises(ConfigError, match="test_mode='train' is not valid"):
        models.check_test_mode(quiet, "train")


def test_paper_mode_normalises_by_the_batch_and_never_updates_the_stored_statistics():
    g = _generator()
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
    stats = [v.numpy() for v in g.non_trainable_variables if "moving" in v.path]
    paper = tf.function(mode_call(g, "paper"))

    def assigns(fn):
        graph = tf.function(fn).get_concrete_function(tf.TensorSpec([2, 32, 32, 3])).graph
        graph_def = graph.as_graph_def()
        types = [n.op for n in graph_def.node] + [n.op for f in graph_def.library.function
                                                   for n in f.node_def]
        return types.count("AssignVariableOp")

    # Training mode updates two running statistics per batch norm; paper mode traces none of
    # those updates (only dropout's seed may advance).
    norms = sum(1 for layer in g.layers if "moving_mean" in [w.name for w in layer.weights])
    assert norms > 0
    assert assigns(mode_call(g, "paper")) == assigns(lambda x: g(x, training=True)) - 2 * norms
    out = paper(x).numpy()
    # The batch's own statistics: what training mode computes (its update then undone).
    saved = [v.numpy() for v in g.non_trainable_variables]
    expected = g(x, training=True).numpy()
    for v, value in zip(g.non_trainable_variables, saved):
        v.assign(value)
    # Dropout masks differ between calls; compare without dropout's noise: the mean is close,
    # and eval mode (running statistics, freshly initialised: 0 and 1) is far.
    assert np.abs(out - expected).mean() < np.abs(out - g(x, training=False).numpy()).mean()
    for before, v in zip(stats, [v for v in g.non_trainable_variables if "moving" in v.path]):
        np.testing.assert_array_equal(before, v.numpy())


def test_paper_mode_from_several_threads_leaves_the_statistics_alone():
    g = _generator()
    stats = [v.numpy() for v in g.non_trainable_variables if "moving" in v.path]
    fn = generator_fn(g, "paper")
    x = tf.random.uniform([1, 32, 32, 3], -1, 1, seed=1)
    fn(x)
    errors = []

    def serve():
        try:
            for _ in range(5):
                fn(x)
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for before, v in zip(stats, [v for v in g.non_trainable_variables if "moving" in v.path]):
        np.testing.assert_array_equal(before, v.numpy())


def test_eval_mode_is_deterministic_and_padded_translation_keeps_any_size():
    g = _generator()
    call = mode_call(g, "eval")
    x = tf.random.uniform([1, 37, 50, 3], -1, 1, seed=2)
    a, b = padded_translate(call, x, 32).numpy(), padded_translate(call, x, 32).numpy()
    assert a.shape == (1, 37, 50, 3)
    np.testing.assert_array_equal(a, b)
