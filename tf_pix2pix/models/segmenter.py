"""A semantic segmenter of photos, registered as ``--model=segmenter``: the recipe for the FCN-score
(``tf_pix2pix.metrics.fcn_score``) without a download.

The pix2pix paper scores generated Cityscapes photos with an FCN-8s trained on real Cityscapes
photos; the reference ships only a Caffe model of it. This model trains such a segmenter with
this library's machinery on the same ``labels`` TFRecords pix2pixHD trains on (label maps and
photos, ``data_prep.build_tfrecords --layout=labels`` or ``data_prep.download --dataset
cityscapes_hd``), read the other way round: the photo is the input, its label map the target.

* Classes: for ``label_nc`` 35 (Cityscapes' label ids) the benchmark's 19 train ids, every other
  id ignored (255); otherwise the ``label_nc`` ids themselves (``label_maps.segmentation_classes``).
* Network: a generator of ``netG`` (default a U-Net, ``unet_256``, batch norm, no dropout) with
  one output channel per class and no tanh (``head="logits"``).
* Loss: the per-pixel softmax cross-entropy averaged over the batch's labelled pixels (ignored
  pixels count nowhere; over replicas, by the global count: PyTorch's ``CrossEntropyLoss(
  ignore_index=255)``), Adam with the configured schedule.
* Validation: per-pixel accuracy, mean class accuracy and mean class IoU of one confusion
  matrix over the val split (``fcn_score.ConfusionMatrix``) — the "ground truth" row of the
  paper's table for real photos.

Exported with ``run_export.py`` like a generator: ``translate`` returns the class scores (what
``run_predict.py --metrics=fcn --segmenter`` reads), ``serving_default`` a PNG of class indices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from tf_pix2pix import data as data_lib
from tf_pix2pix import label_maps, networks
from tf_pix2pix.configuration import ConfigError, ExperimentConfig, ModelConfig, option_of
from tf_pix2pix.metrics.fcn_score import ConfusionMatrix
from tf_pix2pix.models.base import (GeneratorSlot, TranslationModel, current_lr, dtype_policy,
                                    editor_size, make_optimizer, register, scaled,
                                    training_inputs)

CITYSCAPES_LABEL_NC = label_maps.CITYSCAPES_LABEL_NC


@dataclasses.dataclass(frozen=True)
class SegmenterConfig(ModelConfig):
    """The segmenter's options: the shared generator options (a U-Net 256 with batch norm and
    no dropout); the discriminator's and the GAN objective's do not apply."""

    model: str = option_of(ModelConfig, "model", "segmenter")
    no_dropout: bool = option_of(ModelConfig, "no_dropout", True)


def classes_of(config: ExperimentConfig) -> str | int:
    """The segmenter's classes (``label_maps.segmentation_classes``): ``cityscapes`` for 35
    label ids, else the ``label_nc`` ids."""
    label_nc = config.data.label_nc
    return "cityscapes" if label_nc == CITYSCAPES_LABEL_NC else label_nc


@register
class Segmenter(TranslationModel):
    """One network from photos to per-class scores, one Adam, the cross-entropy step."""

    name = "segmenter"
    Config = SegmenterConfig
    data_layout = "labels"
    sample_columns = "photo | predicted classes | labels"
    # Cityscapes' label ids, without instance maps.
    reference_defaults = {"label_nc": CITYSCAPES_LABEL_NC, "no_instance": True}
    presets = {
        "reference": {},
        # The pix2pixHD demo's synthetic label maps and photos (4 classes), 128x128 crops of
        # them squashed to 128x128; a small U-Net, about a minute on 2 CPU cores.
        "demo": {
            "model_dir": "runs/demo_segmenter", "label_nc": 4, "load_size": 128,
            "crop_size": 128, "netG": "unet_128", "ngf": 16, "batch_size": 4, "n_epochs": 2,
            "n_epochs_decay": 1, "lr": 1e-3, "summary_every_steps": 20,
            "image_every_steps": 100, "save_every_steps": 500, "val_max_examples": 20,
        },
    }
    demo_data = {"folder": "data/demo_pix2pix_hd", "size": 128, "labels": True, "width": 256}

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        # No discriminator: the base class's PatchGAN check does not apply.
        if not config.data.label_nc:
            raise ConfigError("the segmenter learns label maps: pass --label_nc N (35 for "
                              "Cityscapes' label ids)")
        if config.data.tfds_name:
            raise ConfigError("tfds_name: the segmenter reads label maps from data_dir")

    @classmethod
    def saved_state_fields(cls, config: ExperimentConfig) -> dict[str, Any]:
        return {"data.label_nc": config.data.label_nc}

    @classmethod
    def num_classes(cls, config: ExperimentConfig) -> int:
        return len(label_maps.segmentation_classes(classes_of(config))[1])

    @classmethod
    def generator_slots(cls, config: ExperimentConfig) -> dict[str, GeneratorSlot]:
        return {"AtoB": GeneratorSlot("generator", config.data.output_nc,
                                      cls.num_classes(config))}

    @classmethod
    def build_generator(cls, config: ExperimentConfig, direction: str = "AtoB",
                        sync_bn: bool = False) -> keras.Model:
        slot = cls.generator_slots(config)[direction]
        return networks.build_generator(config.model, slot.input_nc, slot.output_nc, sync_bn,
                                        name=slot.root, head="logits")

    @classmethod
    def build_input(cls, config: ExperimentConfig, split: str, training: bool,
                    skip_examples: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
        """``(photo, classes)`` batches: the photo in [-1, 1] and ``[N, H, W]`` int32 class
        indices (255 = ignored), from the label pipeline's one-hot maps."""
        label_nc = config.data.label_nc
        lut = tf.constant(label_maps.segmentation_classes(classes_of(config))[0], tf.int32)
        ds = data_lib.build_label_dataset(config.data, split, training,
                                          skip_examples=skip_examples, batch_size=batch_size)
        return ds.map(lambda x, photo: (photo, tf.gather(lut, label_maps.class_ids(x, label_nc))))

    @classmethod
    def show_output(cls, config: ExperimentConfig, outputs: tf.Tensor) -> tf.Tensor:
        """Class scores as the predicted classes' colours."""
        return label_maps.colorize_classes(tf.argmax(outputs, axis=-1), outputs.shape[-1])

    @classmethod
    def editor_info(cls, config: ExperimentConfig, direction: str = "AtoB") -> dict[str, Any]:
        """Photos in; the PNG of class indices out, shown in the classes' colours."""
        _, names = label_maps.segmentation_classes(classes_of(config))
        images = training_inputs(cls, config, direction, count=1)
        return {"input": "image", "output": "class_ids", "size": editor_size(config, images),
                "output_palette": label_maps.class_colours(len(names)).tolist(),
                "output_names": list(names)}

    @classmethod
    def encode_output(cls, config: ExperimentConfig, output: tf.Tensor) -> tf.Tensor:
        """The PNG of the predicted class indices (8-bit grayscale)."""
        classes = tf.argmax(output, axis=-1, output_type=tf.int32)
        return tf.io.encode_png(tf.cast(classes, tf.uint8)[..., tf.newaxis])

    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        self.config = config
        self.strategy = strategy
        with dtype_policy(config.runtime.precision):
            self.generator = self.build_generator(config)
        self.optimizer = make_optimizer(config, steps_per_epoch)
        self.optimizer.build(self.generator.trainable_variables)
        self.loss_names = ("CE",)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    @property
    def has_discriminator(self) -> bool:
        return False

    def networks(self) -> dict[str, keras.Model]:
        return {"generator": self.generator}

    def checkpoint_objects(self) -> dict[str, Any]:
        return {"generator": self.generator, "optimizer": self.optimizer}

    def current_lr(self) -> float:
        return current_lr(self.optimizer)

    @staticmethod
    def cross_entropy(logits: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The summed per-pixel cross-entropy of the labelled pixels and their count."""
        num_classes = logits.shape[-1]
        valid = tf.logical_and(classes >= 0, classes < num_classes)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.where(valid, classes, 0), logits=tf.cast(logits, tf.float32))
        mask = tf.cast(valid, tf.float32)
        return tf.reduce_sum(ce * mask), tf.reduce_sum(mask)

    def _replica_step(self, photos: tf.Tensor, classes: tf.Tensor) -> dict[str, tf.Tensor]:
        G = self.generator
        with tf.GradientTape() as tape:
            total, count = self.cross_entropy(G(photos, training=True), classes)
            # The mean over every replica's labelled pixels: each replica divides its sum by the
            # global count, and the optimizer sums the replicas' gradients.
            count = tf.distribute.get_replica_context().all_reduce("sum", count)
            loss = total / tf.maximum(count, 1.0)
            scaled_loss = scaled(self.optimizer, loss)
        grads = tape.gradient(scaled_loss, G.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, G.trainable_variables))
        return {"CE": loss}

    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        photos, classes = batch[0], batch[1]
        n = self.num_classes(self.config)
        return {"photo_prediction_labels": [
            photos, self.show_output(self.config, self.generate(photos, mode)),
            label_maps.colorize_classes(classes, n)]}

    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """Per-pixel accuracy, mean class accuracy and mean class IoU over ``dataset``."""
        matrix = ConfusionMatrix(self.num_classes(self.config))
        count = 0
        for photos, classes in dataset:
            if max_examples and count >= max_examples:
                break
            n = int(photos.shape[0])
            if max_examples:
                n = min(n, max_examples - count)
            pred = tf.argmax(self.generate(photos[:n], mode), axis=-1)
            matrix.add(classes[:n].numpy(), pred.numpy())
            count += n
        scores = matrix.scores()
        out = {k: scores[k] for k in ("pixel_acc", "class_acc", "class_iou")
               if scores[k] is not None}
        return {**out, "count": count}
