"""A third model that lives outside tf_pix2pix: a one-layer generator trained on L1 alone.

tests/test_models.py installs it as an entry-point plugin (group ``tf_pix2pix.models``) and runs
it through the real command-line tools, which must need no change to train, resume, export and
predict with it.
"""

import dataclasses

import keras
import tensorflow as tf

from tf_pix2pix.configuration import ModelConfig, option, option_of
from tf_pix2pix.metrics.scoring import evaluate
from tf_pix2pix.inference import generator_fn
from tf_pix2pix.models.base import (TranslationModel, current_lr, distributed_step,
                                    make_optimizer, register)


@dataclasses.dataclass(frozen=True)
class ToyConfig(ModelConfig):
    """The toy's options: the shared ones, and one of its own."""

    model: str = option_of(ModelConfig, "model", "toy")
    kernel_size: int = option(3, "Side of the toy's one convolution.", bound="positive")


@register
class Toy(TranslationModel):
    name = "toy"
    Config = ToyConfig
    has_discriminator = False
    loss_names = ("L1",)
    presets = {"demo": {"model_dir": "runs/toy", "crop_size": 32, "load_size": 36,
                        "max_steps": 20}}

    @classmethod
    def build_generator(cls, config, direction="AtoB", sync_bn=False):
        slot = cls.generator_slots(config)[direction]
        x = keras.Input((None, None, slot.input_nc))
        k = config.model.kernel_size
        y = keras.layers.Conv2D(slot.output_nc, k, padding="same", activation="tanh",
                                name="conv")(x)
        return keras.Model(x, y, name=slot.root)

    @classmethod
    def pad_multiple(cls, config):
        return 1

    def __init__(self, config, strategy, steps_per_epoch):
        self.config, self.strategy = config, strategy
        self.generator = self.build_generator(config)
        self.optimizer = make_optimizer(config, steps_per_epoch)
        self.optimizer.build(self.generator.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._step_fn = None

    def networks(self):
        return {"generator": self.generator}

    def _replica_step(self, inputs, targets):
        with tf.GradientTape() as tape:
            l1 = tf.reduce_mean(tf.abs(self.generator(inputs, training=True) - targets),
                                axis=[1, 2, 3])
            loss = tf.nn.compute_average_loss(l1, global_batch_size=self.config.data.batch_size)
        variables = self.generator.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"L1": loss}

    def train_step(self, batch):
        if self._step_fn is None:
            self._step_fn = distributed_step(self.strategy, self._replica_step, self.step)
        return self._step_fn(batch)

    def checkpoint_objects(self):
        return {"generator": self.generator, "optimizer": self.optimizer}

    def current_lr(self):
        return current_lr(self.optimizer)

    def sample_grids(self, batch, mode):
        return {"input_output_target": [batch[0], generator_fn(self.generator, mode)(batch[0]),
                                        batch[1]]}

    def validate(self, dataset, max_examples, mode):
        return evaluate(generator_fn(self.generator, mode), dataset, max_examples)
