"""The FCN-score's segmenter (``--model=segmenter``): its input pipeline (photo -> class
indices, Cityscapes' train ids), its loss and step against an independent computation, ignored
pixels, validation scores, its export and the command line."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Segmenter = models.get("segmenter")


def seg_config(data_dir="", model_dir="", label_nc=4, **options):
    options = {"summary_every_steps": 5, "image_every_steps": 5, "save_every_steps": 100,
               "val_max_examples": 2, "n_epochs": 100, "n_epochs_decay": 0, **options}
    return models.resolve("segmenter", data_dir=data_dir, label_nc=label_nc,
                          preprocess="resize_and_crop", load_size=32, crop_size=32,
                          batch_size=2, seed=1, netG="unet_32", ngf=4,
                          model_dir=str(model_dir), **options)


def test_the_pipeline_reads_photos_and_class_indices(label_records):
    from tf_pix2pix.data import build_label_dataset

    cfg = seg_config(label_records)
    photos, classes = next(iter(Segmenter.build_input(cfg, "val", training=False)))
    onehot, photo_hd = next(iter(build_label_dataset(cfg.data, "val", training=False)))
    np.testing.assert_array_equal(photos, photo_hd)
    np.testing.assert_array_equal(classes, np.argmax(onehot, -1))
    assert classes.dtype == tf.int32 and set(np.unique(classes)) <= {0, 1, 2, 3}
    # Read as Cityscapes label ids, the synthetic ids 0..3 are all classes Cityscapes ignores.
    cityscapes = seg_config(label_records, label_nc=35)
    assert Segmenter.num_classes(cityscapes) == 19
    _, classes = next(iter(Segmenter.build_input(cityscapes, "val", training=False)))
    assert set(np.unique(classes)) == {255}


def test_one_step_equals_an_independent_recomputation():
    cfg = seg_config()
    model = Segmenter(cfg, tf.distribute.get_strategy(), steps_per_epoch=10)
    G = model.generator
    assert G.output.shape[-1] == 4 and G.layers[-1].name == "logits"
    rng = np.random.default_rng(0)
    photos = tf.constant(rng.uniform(-1, 1, [2, 32, 32, 3]), tf.float32)
    classes = rng.integers(0, 4, [2, 32, 32])
    classes[0, :10] = 255
    classes = tf.constant(classes, tf.int32)
    before = [v.numpy() for v in G.trainable_variables]
    with tf.GradientTape() as tape:
        logits = tf.cast(G(photos, training=True), tf.float64)
        log_p = logits - tf.reduce_logsumexp(logits, -1, keepdims=True)
        valid = classes != 255
        picked = tf.gather(log_p, tf.where(valid, classes, 0), batch_dims=3)
        expected = -tf.reduce_sum(tf.where(valid, picked, 0.0)) / tf.reduce_sum(
            tf.cast(valid, tf.float64))
    grads = tape.gradient(expected, G.trainable_variables)
    losses = model.train_step((photos, classes))
    assert float(losses["CE"]) == pytest.approx(float(expected), rel=1e-5)
    # Adam's first step (``optim.FusedAdam``, PyTorch's): lr g / (|g| + eps).
    lr = cfg.train.lr
    for w0, v, g in zip(before, G.trainable_variables, grads):
        g = g.numpy()
        big = np.abs(g) > 1e-5
        np.testing.assert_allclose((v.numpy() - w0)[big],
                                   (-lr * g / (np.abs(g) + 1e-8))[big], rtol=2e-3)


def test_ignored_pixels_count_nowhere():
    logits = tf.constant(np.random.default_rng(1).normal(size=[1, 2, 3, 4]), tf.float32)
    classes = tf.constant([[[255, 255, 2], [255, 255, 255]]], tf.int32)
    total, count = Segmenter.cross_entropy(logits, classes)
    assert float(count) == 1.0
    one = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[2], logits=logits[:, 0, 2])
    assert float(total) == pytest.approx(float(one[0]), rel=1e-6)
    none_total, none_count = Segmenter.cross_entropy(logits, tf.fill([1, 2, 3], 255))
    assert float(none_total) == 0.0 and float(none_count) == 0.0


def test_defaults_and_configuration_errors():
    cfg = models.resolve("segmenter")
    assert cfg.data.label_nc == 35 and cfg.data.no_instance and cfg.model.netG == "unet_256"
    assert Segmenter.generator_slots(cfg)["AtoB"][1:] == (3, 19)
    # unet_256 from 3 photo channels to Cityscapes' 19 classes (the last transposed conv has
    # 128 * 19 * 16 + 19 weights instead of 128 * 3 * 16 + 3), no discriminator.
    assert Segmenter.dry_run(cfg) == f"generator_params={54_413_955 + 128 * 16 * 16 + 16}"
    with pytest.raises(ConfigError, match="the segmenter learns label maps: pass --label_nc"):
        models.resolve("segmenter", label_nc=0)


def test_learns_the_synthetic_classes_exports_and_serves_class_pngs(label_records, tmp_path):
    from tf_pix2pix.serving.export import ExportConfig, export
    from tf_pix2pix.runtime.training import build_trainer

    cfg = seg_config(label_records, tmp_path / "run", max_steps=100, lr=2e-3)
    trainer = build_trainer(cfg, progress=False)
    result = trainer.run()
    assert result.val_metrics["count"] == 2
    assert 0 < result.val_metrics["class_iou"] <= result.val_metrics["class_acc"] <= 1
    # It learns the training photos' classes: far better than the share of the most common
    # class (what a constant answer scores).
    train_set = Segmenter.build_input(cfg, "train", training=False)
    classes = np.concatenate([c.numpy().ravel() for _, c in train_set])
    share = np.bincount(classes).max() / classes.size
    scores = trainer.model.validate(train_set, 0, "eval")
    assert scores["count"] == 6 and scores["pixel_acc"] > share + 0.1
    path = export(ExportConfig(model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "e")))
    loaded = tf.saved_model.load(path)
    photo = open(os.path.join(os.path.dirname(label_records), "images", "val_img",
                              "00000.jpg"), "rb").read()
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([photo]))
    classes = tf.io.decode_png(served["image_bytes"][0]).numpy()
    x = Segmenter.encode_input(cfg, tf.constant(photo), 3)[tf.newaxis]
    scores = loaded.signatures["translate"](images=x)["images"]
    assert classes.shape == (32, 64, 1) and classes.dtype == np.uint8
    np.testing.assert_array_equal(classes[..., 0], np.argmax(scores[0], -1))

    # Prediction on a folder of photos: the gallery shows the classes in colour.
    from tf_pix2pix.serving.predict import iterate_examples, predict, translator_from_saved_model

    translator = translator_from_saved_model(path)
    folder = os.path.join(os.path.dirname(label_records), "images", "val_img")
    predict(translator, iterate_examples("images", folder, translator.config),
            str(tmp_path / "pred"), progress=False)
    shown = tf.io.decode_png(open(tmp_path / "pred" / "images" / "00000_output.png",
                                  "rb").read()).numpy()
    assert shown.shape == (32, 64, 3)
    palette = {tuple(c) for c in np.round((label_maps_colours(4) + 1) * 127.5).astype(int)}
    assert {tuple(p) for p in shown.reshape(-1, 3)} <= palette


def label_maps_colours(n):
    from tf_pix2pix import label_maps

    return np.asarray(label_maps.colorize_classes(tf.range(n), n))
