"""FusedAdam computes torch.optim.Adam's update (the references' optimizer), epsilon included."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from tf_pix2pix.optim import FusedAdam

LR, BETAS, EPS, STEPS = 2e-4, (0.5, 0.999), 1e-8, 20


def _gradients(shapes, steps=STEPS, seed=0):
    """Gradients of magnitudes 1e-9 ... 1e-1 (log-uniform, random signs), per step."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        out.append([(rng.choice([-1.0, 1.0], size=s) * 10.0 ** rng.uniform(-9, -1, size=s))
                    .astype(np.float32) for s in shapes])
    return out


def _initial(shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.02, size=s).astype(np.float32) for s in shapes]


def _keras(optimizer, initial, gradients, dtype="float32"):
    variables = [keras.Variable(w.astype(dtype)) for w in initial]
    optimizer.build(variables)

    @tf.function
    def apply(grads):
        optimizer.apply_gradients(zip(grads, variables))

    for grads in gradients:
        apply([tf.constant(g.astype(dtype)) for g in grads])
    return [v.numpy().astype(np.float64) for v in variables]


def _torch(initial, gradients, amsgrad=False):
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in initial]
    opt = torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, amsgrad=amsgrad)
    for grads in gradients:
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    return [p.detach().numpy().astype(np.float64) for p in params]


def _assert_updates_equal(ours, theirs, initial):
    """Total updates equal to float32 rounding (of the weights and of the update itself)."""
    for a, b, w in zip(ours, theirs, initial):
        update = b - w
        tolerance = 4 * np.spacing(np.abs(w).astype(np.float32)) * STEPS + 1e-5 * np.abs(update)
        assert np.all(np.abs(a - b) <= tolerance), np.abs(a - b).max()


SHAPES = [(64, 32), (257,)]


def test_fused_adam_equals_torch_adam_on_tiny_and_large_gradients():
    initial, gradients = _initial(SHAPES), _gradients(SHAPES)
    ours = _keras(FusedAdam(LR, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS), initial,
                  gradients)
    _assert_updates_equal(ours, _torch(initial, gradients), initial)


def test_tensorflow_epsilon_placement_differs_from_torch():
    """The comparison above can fail: Keras's own Adam (epsilon added to the uncorrected root)
    moves the weights with gradients near epsilon differently from PyTorch."""
    initial, gradients = _initial(SHAPES), _gradients(SHAPES)
    keras_adam = _keras(keras.optimizers.Adam(LR, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS),
                        initial, gradients)
    with pytest.raises(AssertionError):
        _assert_updates_equal(keras_adam, _torch(initial, gradients), initial)


def test_plain_op_path_equals_torch_amsgrad_and_float64():
    initial, gradients = _initial(SHAPES), _gradients(SHAPES)
    ours = _keras(FusedAdam(LR, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS, amsgrad=True),
                  initial, gradients)
    _assert_updates_equal(ours, _torch(initial, gradients, amsgrad=True), initial)
    # float64 variables take the plain ops: the same function as the fused float32 kernel.
    fused = _keras(FusedAdam(LR, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS), initial,
                   gradients)
    plain = _keras(FusedAdam(LR, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS), initial,
                   gradients, dtype="float64")
    _assert_updates_equal(fused, plain, initial)


def test_fused_adam_first_step_is_torch_closed_form():
    """Step 1 by hand: m = (1-b1) g, v = (1-b2) g^2, update = lr g / (|g| + eps)."""
    w = np.zeros((3,), np.float32)
    g = np.array([1e-8, -1e-3, 0.5], np.float32)
    (out,) = _keras(FusedAdam(LR, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPS), [w], [[g]])
    expected = -LR * g.astype(np.float64) / (np.abs(g.astype(np.float64)) + EPS)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert abs(out[0] + LR * 0.5) < 1e-6 * LR   # g = eps: half a step, not ~0.97 of one
