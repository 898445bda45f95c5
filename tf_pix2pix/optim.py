"""Adam with TensorFlow's fused update kernel.

Keras 3's Adam updates each variable with a chain of element-wise ops, each a full pass over the
54M generator weights; ``ResourceApplyAdam`` does the same arithmetic in one multithreaded pass
(the time it saves per step: BENCHMARKS.md). The update rule is Keras's (and TensorFlow's): ``m = b1 m + (1 - b1) g``,
``v = b2 v + (1 - b2) g^2``, ``var -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _handle(variable):
    return variable.handle if hasattr(variable, "handle") else variable.value.handle


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose dense float32 updates use ``ResourceApplyAdam``.

    Slots, checkpoints, schedules and loss scaling are those of the Keras optimizer; only the
    arithmetic of ``update_step`` is fused. AMSGrad and non-float32 variables fall back to Keras.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or variable.dtype != "float32" or isinstance(gradient,
                                                                     tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, tf.float32), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, tf.float32), step),
            lr=tf.cast(learning_rate, tf.float32), beta1=tf.cast(self.beta_1, tf.float32),
            beta2=tf.cast(self.beta_2, tf.float32), epsilon=tf.cast(self.epsilon, tf.float32),
            grad=tf.cast(gradient, tf.float32), use_locking=False)
