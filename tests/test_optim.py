import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix.optim import FusedAdam


def _run(optimizer_cls, steps=5):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=(3, 4)).astype(np.float32)),
                 keras.Variable(rng.normal(size=(5,)).astype(np.float32))]
    opt = optimizer_cls(learning_rate=0.01, beta_1=0.5, beta_2=0.999, epsilon=1e-8)
    opt.build(variables)

    @tf.function
    def apply(grads):
        opt.apply_gradients(zip(grads, variables))

    for i in range(steps):
        grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in variables]
        apply(grads)
    return [v.numpy() for v in variables], [s.numpy() for s in opt.variables[1:]]


def test_fused_adam_matches_keras_adam():
    fused_vars, fused_slots = _run(FusedAdam)
    keras_vars, keras_slots = _run(keras.optimizers.Adam)
    for a, b in zip(fused_vars + fused_slots, keras_vars + keras_slots):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_adam_falls_back_for_amsgrad():
    v = keras.Variable(np.ones((2,), np.float32))
    opt = FusedAdam(learning_rate=0.1, amsgrad=True)
    opt.apply_gradients([(tf.constant([1.0, -1.0]), v)])
    np.testing.assert_allclose(v.numpy(), [0.9, 1.1], atol=1e-5)
