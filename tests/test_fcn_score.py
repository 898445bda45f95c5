"""The FCN-score: the confusion matrix and its three scores against hand-computed cases, the
reference's conventions (ignore label, absent classes, Cityscapes train ids), the scorer's
resizing, segmenter loading and label-folder matching."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import label_maps
from tf_pix2pix.metrics import fcn_score
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.image_io import encode_ids

IGNORE = label_maps.IGNORE


def test_confusion_matrix_and_scores_equal_a_hand_computed_case():
    m = fcn_score.ConfusionMatrix(3)
    m.add(np.array([[0, 0, 1], [1, 2, IGNORE]]), np.array([[0, 1, 1], [2, 2, 0]]))
    np.testing.assert_array_equal(m.hist, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    s = m.scores(("a", "b", "c"))
    assert s["pixels"] == 5  # the ignored pixel is not counted
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["class_acc"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    # IoU = diag / (row + column - diag): 1/2, 1/3, 1/2.
    assert s["class_iou"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert s["per_class"]["b"] == {"acc": pytest.approx(0.5), "iou": pytest.approx(1 / 3)}


def test_absent_classes_count_as_the_reference_counts_them():
    m = fcn_score.ConfusionMatrix(3)
    m.add(np.zeros([2, 2]), np.array([[0, 0], [0, 1]]))
    s = m.scores()
    # Class 1 is never in the labels but predicted: IoU 0 counts, its accuracy (0/0) does not;
    # class 2 is in neither: left out of both means.
    assert s["class_acc"] == pytest.approx(3 / 4)
    assert s["class_iou"] == pytest.approx((3 / 4 + 0) / 2)
    assert s["per_class"]["class 2"] == {"acc": None, "iou": None}
    empty = fcn_score.ConfusionMatrix(2).scores()
    assert empty["pixel_acc"] is None and empty["class_iou"] is None and empty["pixels"] == 0


def test_perfect_and_constant_segmenters_score_what_the_formulas_say():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=[3, 20, 30])
    labels[:, :2] = IGNORE  # ignored pixels never count, whatever is predicted there
    perfect, constant = fcn_score.ConfusionMatrix(4), fcn_score.ConfusionMatrix(4)
    for lab in labels:
        perfect.add(lab, np.where(lab == IGNORE, 3, lab))
        constant.add(lab, np.full_like(lab, 2))
    p = perfect.scores()
    assert p["pixel_acc"] == p["class_acc"] == p["class_iou"] == 1.0
    c = constant.scores()
    labelled = labels[labels != IGNORE]
    share = np.mean(labelled == 2)
    assert c["pixels"] == labelled.size
    assert c["pixel_acc"] == pytest.approx(share)
    assert c["class_acc"] == pytest.approx(1 / 4)  # class 2 all right, the others all wrong
    assert c["class_iou"] == pytest.approx(share / 4)


def test_cityscapes_label_ids_map_to_the_19_train_ids():
    lut, names = label_maps.segmentation_classes("cityscapes")
    assert len(names) == 19 and names[0] == "road" and names[-1] == "bicycle"
    assert lut[7] == 0 and lut[8] == 1 and lut[11] == 2 and lut[23] == 10 and lut[26] == 13
    assert lut[33] == 18 and lut[31] == 16
    for ignored in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255, 26001):
        assert lut[ignored] == IGNORE
    assert sorted(set(lut[:34]) - {IGNORE}) == list(range(19))
    lut4, names4 = label_maps.segmentation_classes(4)
    assert list(lut4[:6]) == [0, 1, 2, 3, IGNORE, IGNORE] and len(names4) == 4
    with pytest.raises(ValueError, match="cityscapes or a number"):
        label_maps.segmentation_classes("0")


def _nearest_colour_segmenter(colours):
    """A 1x1 conv whose scores 2 x.c - |c|^2 pick the nearest of ``colours`` (in [-1, 1])."""
    c = np.asarray(colours, np.float32)
    inputs = keras.Input([None, None, 3])
    layer = keras.layers.Conv2D(len(c), 1)
    outputs = layer(inputs)
    layer.set_weights([2 * c.T[np.newaxis, np.newaxis], -np.sum(c ** 2, axis=1)])
    return keras.Model(inputs, outputs)


COLOURS = [[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]


def test_scorer_resizes_to_the_input_size_and_back_to_the_labels():
    labels = np.zeros([8, 12], np.int32)
    labels[:, 6:] = 1
    image = np.asarray(COLOURS, np.float32)[labels]
    seen = []

    def segmenter(x):
        seen.append(tuple(x.shape))
        return _nearest_colour_segmenter(COLOURS)(x)

    scorer = fcn_score.FCNScorer(segmenter, 4, input_size=(4, 6))
    scorer.add(labels, image, image)
    assert seen == [(1, 4, 6, 3), (1, 4, 6, 3)]
    s = scorer.summary()
    assert s["fcn"]["pixel_acc"] == 1.0 and s["fcn_real"]["pixel_acc"] == 1.0
    assert s["fcn"]["pixels"] == 96
    with pytest.raises(ConfigError, match="returns 2 class scores"):
        fcn_score.FCNScorer(lambda x: tf.zeros([1, 8, 12, 2]), 4).add(labels, image)
    assert fcn_score.parse_input_size("256") == (256, 256)
    assert fcn_score.parse_input_size("512,1024") == (512, 1024)
    assert fcn_score.parse_input_size("") is None
    for bad in ("0,4", "a,b", "1,2,3"):
        with pytest.raises(ConfigError, match="--segmenter_input_size"):
            fcn_score.parse_input_size(bad)


def test_segmenters_load_from_keras_files_and_saved_models(tmp_path):
    model = _nearest_colour_segmenter(COLOURS)
    x = tf.constant(np.asarray(COLOURS, np.float32)[np.newaxis, np.newaxis])
    expected = model(x).numpy()
    model.save(str(tmp_path / "seg.keras"))
    np.testing.assert_allclose(fcn_score.load_segmenter(str(tmp_path / "seg.keras"))(x),
                               expected, rtol=1e-6)

    module = tf.Module()
    module.model = model
    module.f = tf.function(lambda images: {"scores": model(images)},
                           input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "sm"),
                        signatures={"serving_default": module.f.get_concrete_function()})
    np.testing.assert_allclose(fcn_score.load_segmenter(str(tmp_path / "sm"))(x), expected,
                               rtol=1e-6)
    with pytest.raises(ConfigError, match="not found"):
        fcn_score.load_segmenter(str(tmp_path / "nope.keras"))
    with pytest.raises(ConfigError, match="without saved_model.pb"):
        fcn_score.load_segmenter(str(tmp_path))


def test_label_folders_match_plain_and_cityscapes_names(tmp_path):
    city = tmp_path / "gtFine" / "val" / "frankfurt"
    city.mkdir(parents=True)
    ids = np.array([[7, 26], [0, 33]], np.int32)
    (city / "frankfurt_000000_000294_gtFine_labelIds.png").write_bytes(encode_ids(ids))
    (city / "frankfurt_000000_000294_gtFine_instanceIds.png").write_bytes(
        encode_ids(ids * 1000))
    (tmp_path / "gtFine" / "plain.png").write_bytes(encode_ids(ids + 1))
    folder = fcn_score.LabelFolder(str(tmp_path / "gtFine"))
    np.testing.assert_array_equal(folder("frankfurt_000000_000294_leftImg8bit"), ids)
    np.testing.assert_array_equal(folder("plain"), ids + 1)
    with pytest.raises(ConfigError, match="no label map for 'other'"):
        folder("other")
    with pytest.raises(ConfigError, match="is not a directory"):
        fcn_score.LabelFolder(str(tmp_path / "missing"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ConfigError, match="has no PNG label maps"):
        fcn_score.LabelFolder(str(tmp_path / "empty"))


def test_colour_coded_label_images_decode_to_label_ids():
    colours = label_maps.palette(35).astype(np.float32) / 127.5 - 1
    road, car, pole, polegroup, plate = 7, 26, 17, 18, 34
    image = colours[[[road, car], [polegroup, plate]]] + 0.02  # JPEG-like noise
    ids = fcn_score.InputColours("cityscapes")("x", image)
    # polegroup shares pole's colour, id 34 car's: the scored id wins.
    np.testing.assert_array_equal(ids, [[road, car], [pole, car]])
    lut, _ = label_maps.segmentation_classes("cityscapes")
    np.testing.assert_array_equal(lut[ids], [[0, 13], [5, 13]])
    four = label_maps.palette(4).astype(np.float32) / 127.5 - 1
    np.testing.assert_array_equal(fcn_score.InputColours(4)("x", four[[[3, 1]]]), [[3, 1]])
    assert isinstance(fcn_score.label_source("input_colours"), fcn_score.InputColours)
    assert fcn_score.label_source("") is None


def test_the_table_has_the_papers_columns():
    m = fcn_score.ConfusionMatrix(2)
    m.add(np.array([0, 1]), np.array([0, 0]))
    text = fcn_score.table({"fcn": m.scores(), "fcn_real": m.scores()})
    lines = text.splitlines()
    assert lines[0] == "| photos | Per-pixel acc. | Per-class acc. | Class IOU |"
    assert lines[2] == "| generated | 0.500 | 0.500 | 0.250 |"
    assert lines[3].startswith("| real (ground truth) |")
