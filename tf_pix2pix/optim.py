"""Adam as PyTorch computes it, on TensorFlow's fused update kernel.

The references train with ``torch.optim.Adam``, which adds epsilon to the *bias-corrected*
root of the second moment::

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    var -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

TensorFlow's ``ResourceApplyAdam`` (and Keras's ``Adam``) add it to the uncorrected root,
``var -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. The two are equal when the
kernel is given ``eps_t = eps * sqrt(1 - b2^t)``, one scalar per step; that is what
:class:`FusedAdam` passes. Where gradients are of the order of eps (CUT's xavier init with gain
0.02 gives first discriminator gradients of ~1e-8) the TensorFlow placement moves the first
updates by percents (README, faithfulness notes).

The kernel is used because Keras 3's Adam updates each variable with a chain of element-wise ops,
each a full pass over the 54M generator weights, while ``ResourceApplyAdam`` does the arithmetic in
one multithreaded pass (the time it saves per step: BENCHMARKS.md).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _handle(variable):
    return variable.handle if hasattr(variable, "handle") else variable.value.handle


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` computing ``torch.optim.Adam``'s update (epsilon placement
    included), dense float32 updates through ``ResourceApplyAdam``.

    Slots, checkpoints, schedules and loss scaling are those of the Keras optimizer (a checkpoint
    of either restores into the other); only ``update_step`` differs. AMSGrad (PyTorch's: the
    running maximum of ``v`` in the denominator), other variable dtypes and sparse gradients take
    the same arithmetic as plain ops.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_1_power = tf.pow(beta_1, step)
        beta_2_power = tf.pow(beta_2, step)
        lr = tf.cast(learning_rate, dtype)
        # PyTorch's epsilon, moved under TensorFlow's sqrt(1 - b2^t) factor (module docstring).
        epsilon = tf.cast(self.epsilon, dtype) * tf.sqrt(1.0 - beta_2_power)
        gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        if not self.amsgrad and dtype == "float32":
            tf.raw_ops.ResourceApplyAdam(
                var=_handle(variable), m=_handle(m), v=_handle(v), beta1_power=beta_1_power,
                beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
                grad=gradient, use_locking=False)
            return
        self.assign_add(m, (gradient - m) * (1.0 - beta_1))
        self.assign_add(v, (tf.square(gradient) - v) * (1.0 - beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            self.assign(v_hat, tf.maximum(v_hat, v))
            v = v_hat
        alpha = lr * tf.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
        self.assign_sub(variable, alpha * m / (tf.sqrt(v) + epsilon))
