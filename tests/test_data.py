import os

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix.configuration import PREPROCESS_MODES, DataConfig
from tf_pix2pix.data import (DataError, build_dataset, decode_record, decode_rgb, make_example,
                             num_examples, preprocess_pair, split_pair)

from conftest import random_image


def _pair(h=64, w=64, seed=0):
    img = tf.constant(random_image(h, w, seed=seed))
    return img, img


def _config(mode, **kw):
    sizes = dict(load_size=72, crop_size=64)
    sizes.update(kw)
    return DataConfig(preprocess=mode, **sizes)


@pytest.mark.parametrize("mode", PREPROCESS_MODES)
def test_equal_halves_stay_equal_under_jitter(mode):
    a, b = _pair(80, 96)
    for i in range(6):
        out_a, out_b = preprocess_pair(a, b, _config(mode), training=True, seed=[3, i])
        np.testing.assert_array_equal(out_a.numpy(), out_b.numpy())


def test_jitter_varies_with_the_seed_and_is_repeatable():
    a, _ = _pair(64, 64)
    b = tf.zeros_like(a)
    cfg = _config("resize_and_crop")
    outs = [preprocess_pair(a, b, cfg, True, seed=[0, i])[0].numpy() for i in range(8)]
    assert len({o.tobytes() for o in outs}) > 1
    again = preprocess_pair(a, b, cfg, True, seed=[0, 5])[0].numpy()
    np.testing.assert_array_equal(outs[5], again)


def test_flip_is_a_mirror_of_the_unflipped_crop():
    a, b = _pair(64, 64)
    cfg = DataConfig(preprocess="crop", load_size=64, crop_size=64)
    outs = [preprocess_pair(a, b, cfg, True, seed=[1, i])[0].numpy() for i in range(12)]
    plain = (a.numpy().astype(np.float32) / 127.5 - 1.0)
    flipped = plain[:, ::-1]
    kinds = set()
    for o in outs:
        if np.allclose(o, plain):
            kinds.add("plain")
        elif np.allclose(o, flipped):
            kinds.add("flipped")
        else:
            raise AssertionError("output is neither the image nor its mirror")
    assert kinds == {"plain", "flipped"}


@pytest.mark.parametrize("mode", PREPROCESS_MODES)
@pytest.mark.parametrize("training", [True, False])
def test_eager_and_dataset_map_agree(mode, training):
    a = tf.constant(random_image(70, 90, seed=1))
    b = tf.constant(random_image(70, 90, seed=2))
    cfg = _config(mode, load_size=80)
    seed = tf.constant([7, 11], tf.int64) if training else None
    eager = preprocess_pair(a, b, cfg, training, seed)
    ds = tf.data.Dataset.from_tensors((a, b)).map(
        lambda x, y: preprocess_pair(x, y, cfg, training, seed))
    mapped = next(iter(ds))
    for e, m in zip(eager, mapped):
        np.testing.assert_allclose(e.numpy(), m.numpy(), atol=1e-6)


@pytest.mark.parametrize("mode, expected_hw", [
    ("resize_and_crop", (64, 64)), ("crop", (64, 64)), ("scale_width", (64, 72)),
    ("scale_width_and_crop", (64, 64)), ("none", (72, 88)),  # Python's round-half-even, as the reference
])
@pytest.mark.parametrize("input_nc, output_nc", [(3, 3), (1, 3), (3, 1), (1, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_shapes_and_value_range(mode, expected_hw, input_nc, output_nc, training):
    a = tf.constant(random_image(70, 90, seed=3))
    b = tf.constant(random_image(70, 90, seed=4))
    cfg = _config(mode, input_nc=input_nc, output_nc=output_nc)
    out_a, out_b = preprocess_pair(a, b, cfg, training, seed=[0, 1] if training else None)
    assert out_a.shape == (*expected_hw, input_nc)
    assert out_b.shape == (*expected_hw, output_nc)
    for t in (out_a, out_b):
        assert t.dtype == tf.float32
        assert -1.0 <= float(tf.reduce_min(t)) and float(tf.reduce_max(t)) <= 1.0


def test_eval_mode_is_deterministic_and_centre_crops():
    a = tf.constant(random_image(64, 64, seed=5))
    cfg = DataConfig(preprocess="crop", load_size=64, crop_size=32)
    out, _ = preprocess_pair(a, a, cfg, training=False)
    np.testing.assert_allclose(out.numpy(), a.numpy()[16:48, 16:48] / 127.5 - 1.0, atol=1e-6)


def test_normalisation_maps_0_and_255_to_minus_one_and_one():
    black = tf.zeros([8, 8, 3], tf.uint8)
    white = tf.fill([8, 8, 3], tf.constant(255, tf.uint8))
    cfg = DataConfig(preprocess="none", load_size=8, crop_size=8)
    a, b = preprocess_pair(black, white, cfg, training=False)
    assert float(tf.reduce_max(tf.abs(a + 1))) == 0.0
    assert float(tf.reduce_max(tf.abs(b - 1))) == 0.0


def test_decode_conversions():
    gray = tf.constant(random_image(4, 6, c=1))
    rgba = tf.constant(random_image(4, 6, c=4))
    deep = tf.constant(random_image(4, 6, dtype=np.uint16))
    np.testing.assert_array_equal(decode_rgb(tf.io.encode_png(gray)).numpy(),
                                  np.repeat(gray.numpy(), 3, axis=-1))
    np.testing.assert_array_equal(decode_rgb(tf.io.encode_png(rgba)).numpy(), rgba.numpy()[..., :3])
    got = decode_rgb(tf.io.encode_png(deep)).numpy().astype(int)
    assert np.abs(got - deep.numpy().astype(int) / 257.0).max() <= 1.0


def test_split_pair_and_record_round_trip():
    left, right = random_image(8, 8, seed=1), random_image(8, 8, seed=2)
    encoded = tf.io.encode_png(np.concatenate([left, right], axis=1)).numpy()
    rec = decode_record(tf.constant(make_example("x.png", 8, 8, encoded=encoded)), "aligned")
    np.testing.assert_array_equal(rec["A"].numpy(), left)
    np.testing.assert_array_equal(rec["B"].numpy(), right)
    assert rec["filename"].numpy() == b"x.png"
    a, b = split_pair(tf.constant(np.concatenate([left, right], axis=1)))
    np.testing.assert_array_equal(b.numpy(), right)
    paired = make_example("y.png", 8, 8, encoded_a=tf.io.encode_png(left).numpy(),
                          encoded_b=tf.io.encode_png(right).numpy())
    rec = decode_record(tf.constant(paired), "paired")
    np.testing.assert_array_equal(rec["B"].numpy(), right)


def test_direction_swaps_the_pair(records_dir):
    common = dict(data_dir=records_dir, preprocess="none", load_size=64, crop_size=64)
    ab = next(iter(build_dataset(DataConfig(direction="AtoB", **common), "val", training=False)))
    ba = next(iter(build_dataset(DataConfig(direction="BtoA", **common), "val", training=False)))
    np.testing.assert_array_equal(ab[0].numpy(), ba[1].numpy())
    np.testing.assert_array_equal(ab[1].numpy(), ba[0].numpy())
    assert not np.array_equal(ab[0].numpy(), ab[1].numpy())


def test_training_pipeline_is_deterministic_for_a_seed(records_dir):
    def first_batches(seed):
        cfg = DataConfig(data_dir=records_dir, load_size=72, crop_size=64, batch_size=2, seed=seed)
        it = iter(build_dataset(cfg, "train", training=True))
        return np.concatenate([next(it)[0].numpy() for _ in range(8)])

    np.testing.assert_array_equal(first_batches(1), first_batches(1))
    assert not np.array_equal(first_batches(1), first_batches(2))


def test_training_pipeline_repeats_and_batches(records_dir):
    cfg = DataConfig(data_dir=records_dir, load_size=72, crop_size=64, batch_size=5)
    batches = list(build_dataset(cfg, "train", training=True).take(4))  # 20 > 12 examples
    assert all(x.shape == (5, 64, 64, 3) and y.shape == (5, 64, 64, 3) for x, y in batches)


def test_eval_pipeline_visits_each_example_once(records_dir):
    cfg = DataConfig(data_dir=records_dir, load_size=64, crop_size=64, batch_size=3)
    ds = build_dataset(cfg, "train", training=False, with_filenames=True)
    names = [n for _, _, batch in ds for n in batch.numpy()]
    assert sorted(names) == sorted(f"{i:05d}.jpg".encode() for i in range(12))
    assert num_examples(records_dir, "train") == 12


def test_missing_manifest_and_split_are_clear_errors(tmp_path, records_dir):
    with pytest.raises(DataError, match="manifest.json not found"):
        build_dataset(DataConfig(data_dir=str(tmp_path)), "train", training=True)
    with pytest.raises(DataError, match="split 'nope' has no examples"):
        build_dataset(DataConfig(data_dir=records_dir), "nope", training=False)


def test_fused_resize_and_crop_equals_resize_then_slice():
    from tf_pix2pix.data import resize_and_random_crop

    image = tf.constant(random_image(50, 70, c=6, seed=9).astype(np.float32))
    for i in range(5):
        seed = tf.constant([4, i], tf.int64)
        fused = resize_and_random_crop(image, 64, 48, seed).numpy()
        offset = tf.random.stateless_uniform([2], seed=seed, maxval=64 - 48 + 1,
                                             dtype=tf.int32).numpy()
        full = tf.image.resize(image, [64, 64], method="bicubic", antialias=True).numpy()
        expected = full[offset[0]:offset[0] + 48, offset[1]:offset[1] + 48]
        np.testing.assert_allclose(fused, expected, atol=1e-3)


def test_skip_examples_resumes_the_stream_exactly(records_dir):
    cfg = DataConfig(data_dir=records_dir, load_size=36, crop_size=32, batch_size=2, seed=5)
    straight = iter(build_dataset(cfg, "train", training=True))
    batches = [next(straight)[0].numpy() for _ in range(10)]
    later = iter(build_dataset(cfg, "train", training=True, skip_examples=14))  # 7 batches in
    for expected in batches[7:]:
        np.testing.assert_array_equal(next(later)[0].numpy(), expected)


# --- CycleGAN's unpaired pipeline ---------------------------------------------------------------

def _unpaired_config(data_dir, **kw):
    return DataConfig(data_dir=data_dir, load_size=36, crop_size=32, seed=5, **kw)


def _take(ds, n):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def test_unpaired_dataset_yields_both_domains(unpaired_records_dir):
    from tf_pix2pix.data import build_unpaired_dataset

    cfg = _unpaired_config(unpaired_records_dir, batch_size=2, output_nc=1)
    a, b = _take(build_unpaired_dataset(cfg, "train", training=True), 1)[0]
    assert a.shape == (2, 32, 32, 3) and b.shape == (2, 32, 32, 1)
    assert a.min() >= -1 and a.max() <= 1 and b.min() >= -1 and b.max() <= 1
    # Domain A holds flat label colours: few distinct values (resizing blends some edges).
    assert len(np.unique(a[0].reshape(-1, 3), axis=0)) < len(np.unique(b[0]).ravel()) * 50


def test_unpaired_direction_swaps_the_domains(unpaired_records_dir):
    from tf_pix2pix.data import build_unpaired_dataset

    cfg = _unpaired_config(unpaired_records_dir)
    ab = _take(build_unpaired_dataset(cfg, "test", training=False), 2)
    ba = _take(build_unpaired_dataset(
        _unpaired_config(unpaired_records_dir, direction="BtoA"), "test", training=False), 2)
    for (a1, b1), (b2, a2) in zip(ab, ba):
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(b1, b2)


def test_unpaired_jitter_is_independent_per_domain(unpaired_images_dir, tmp_path):
    """With the same images in both domains, pix2pix-style shared draws would give equal pairs;
    CycleGAN's independent draws (and independent shuffles) do not."""
    import shutil

    from data_prep.build_tfrecords import BuildConfig, build
    from tf_pix2pix.data import build_unpaired_dataset

    src = tmp_path / "src"
    shutil.copytree(os.path.join(unpaired_images_dir, "trainB"), src / "trainA")
    shutil.copytree(os.path.join(unpaired_images_dir, "trainB"), src / "trainB")
    build(BuildConfig(input_dir=str(src), output_dir=str(tmp_path / "r"), layout="unaligned",
                      progress=False))
    batches = _take(build_unpaired_dataset(_unpaired_config(str(tmp_path / "r")), "train",
                                           training=True), 12)
    assert sum(np.array_equal(a, b) for a, b in batches) <= 2


def test_unpaired_dataset_is_deterministic_and_skip_repositions_it(unpaired_records_dir):
    from tf_pix2pix.data import build_unpaired_dataset

    cfg = _unpaired_config(unpaired_records_dir)
    first = _take(build_unpaired_dataset(cfg, "train", training=True), 9)
    again = _take(build_unpaired_dataset(cfg, "train", training=True), 9)
    skipped = _take(build_unpaired_dataset(cfg, "train", training=True, skip_examples=4), 5)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    for x, y in zip(first[4:], skipped):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])


def test_models_refuse_the_other_layout(unpaired_records_dir, records_dir):
    from tf_pix2pix.data import build_unpaired_dataset

    with pytest.raises(DataError, match="unaligned"):
        build_dataset(_unpaired_config(unpaired_records_dir), "train", training=True)
    with pytest.raises(DataError, match="--layout=unaligned"):
        build_unpaired_dataset(_unpaired_config(records_dir), "train", training=True)
    assert num_examples(unpaired_records_dir, "train") == 6


def test_tfds_cycle_gan_source_with_mock_data():
    """TFDS as a source (tfds.testing.mock_data: nothing is downloaded)."""
    import tensorflow_datasets as tfds

    from tf_pix2pix.data import build_unpaired_dataset, domain_sizes

    cfg = DataConfig(tfds_name="cycle_gan/horse2zebra", load_size=36, crop_size=32,
                     batch_size=2, tfds_data_dir="/nonexistent/tfds")
    with tfds.testing.mock_data(num_examples=5):
        assert domain_sizes(cfg, "train") == {"A": 5, "B": 5}
        assert domain_sizes(cfg, "val") == {"A": 0, "B": 0}
        ds = build_unpaired_dataset(cfg, "train", training=True)
        batches = _take(ds, 3)  # mock images have random sizes: resized, cropped, batched
        ev = _take(build_unpaired_dataset(cfg, "test", training=False), 10)
    assert all(a.shape == (2, 32, 32, 3) and b.shape == (2, 32, 32, 3) for a, b in batches)
    assert len(ev) == 3  # 5 test images per domain, batches of 2 (last one partial)
    with pytest.raises(DataError, match="tfds_name=no_such_dataset"):
        build_unpaired_dataset(DataConfig(tfds_name="no_such_dataset"), "train", training=True)


def test_grayscale_is_pils_convert_l_in_training_and_prediction():
    from PIL import Image

    from tf_pix2pix.data import to_channels
    from tf_pix2pix.serving.predict import _normalise

    pixels = random_image(17, 23, seed=4)
    expected = np.asarray(Image.fromarray(pixels).convert("L"), np.float32)[..., None]
    np.testing.assert_array_equal(to_channels(tf.constant(pixels), 1).numpy(), expected)
    in_map = next(iter(tf.data.Dataset.from_tensors(pixels).map(lambda x: to_channels(x, 1))))
    np.testing.assert_array_equal(in_map.numpy(), expected)
    np.testing.assert_allclose(_normalise(pixels, 1), expected / 127.5 - 1.0, atol=1e-6)
    # The training pipeline's pair path gives the same gray values.
    cfg = DataConfig(preprocess="none", input_nc=1, output_nc=3, load_size=16, crop_size=16)
    a, _ = preprocess_pair(tf.constant(pixels[:16, :16]), tf.constant(pixels[:16, :16]), cfg,
                           training=False)
    np.testing.assert_allclose(a.numpy(), expected[:16, :16] / 127.5 - 1.0, atol=1e-6)


def test_unpaired_jitter_stops_resizing_from_the_given_element(unpaired_images_dir,
                                                                unpaired_records_dir):
    """CUT's decay epochs: from element ``unscaled_from`` on, images are resized to the crop
    size (32 px sources stay themselves) instead of to load_size and cropped."""
    from tf_pix2pix.data import build_unpaired_dataset

    folder = os.path.join(unpaired_images_dir, "trainA")
    sources = [tf.io.decode_image(open(os.path.join(folder, f), "rb").read()).numpy() / 127.5 - 1
               for f in sorted(os.listdir(folder))]
    cfg = _unpaired_config(unpaired_records_dir, no_flip=True)
    batches = _take(build_unpaired_dataset(cfg, "train", training=True, unscaled_from=6), 12)

    def closest(a):
        return min(np.abs(a[0] - s).max() for s in sources)

    assert min(closest(a) for a, _ in batches[:6]) > 0.05     # crops of the 36 px resize
    assert max(closest(a) for a, _ in batches[6:]) < 1e-3     # whole images again
    # Without it, the same stream keeps cropping.
    plain = _take(build_unpaired_dataset(cfg, "train", training=True), 12)
    np.testing.assert_array_equal(plain[0][0], batches[0][0])
    assert min(closest(a) for a, _ in plain[6:]) > 0.05


def _flat_label_records(tmp_path, size=(40, 40), label_nc_max=3, colour=False):
    """Labels layout whose photo is each class's flat colour: after any jitter, the photo at a
    pixel away from boundaries must still be its label's colour."""
    from data_prep.build_tfrecords import BuildConfig, build
    from data_prep.make_synthetic import PALETTE, render_scene

    from conftest import write_image

    root = tmp_path / "in"
    for kind in ("label", "inst", "img"):
        os.makedirs(root / f"train_{kind}", exist_ok=True)
    for i in range(3):
        labels, instances, _ = render_scene(0, "train", i, *size)
        photo = PALETTE[labels].astype(np.uint8)
        write_image(str(root / "train_label" / f"{i}.png"),
                    photo if colour else labels.astype(np.uint8)[..., None])
        write_image(str(root / "train_inst" / f"{i}.png"), instances.astype(np.uint16)[..., None])
        write_image(str(root / "train_img" / f"{i}.png"), photo)
    build(BuildConfig(input_dir=str(root), output_dir=str(tmp_path / "tfr"), layout="labels",
                      progress=False))
    return str(tmp_path / "tfr"), root


def test_label_dataset_encodes_ids_and_instances_as_stored(tmp_path):
    from tf_pix2pix import label_maps
    from tf_pix2pix.data import build_label_dataset, decode_ids

    data_dir, root = _flat_label_records(tmp_path)
    config = DataConfig(data_dir=data_dir, label_nc=4, preprocess="none", batch_size=1)
    x, y, name = next(iter(build_label_dataset(config, "train", training=False,
                                               with_filenames=True)))
    stem = name[0].numpy().decode()
    ids = decode_ids(open(root / "train_label" / f"{stem}.png", "rb").read()).numpy()
    inst = decode_ids(open(root / "train_inst" / f"{stem}.png", "rb").read()).numpy()
    assert x.shape == (1, 40, 40, 5)
    np.testing.assert_array_equal(x[0, ..., :4].numpy().argmax(-1), ids[..., 0])
    np.testing.assert_array_equal(x[0, ..., :4].numpy().sum(-1), 1)
    np.testing.assert_array_equal(x[0, ..., 4], label_maps.edges(inst[np.newaxis])[0, ..., 0])
    assert y.shape == (1, 40, 40, 3) and float(tf.reduce_min(y)) >= -1


def test_label_dataset_jitters_ids_and_photo_together(tmp_path):
    from data_prep.make_synthetic import PALETTE
    from tf_pix2pix.data import build_label_dataset

    data_dir, _ = _flat_label_records(tmp_path)
    config = DataConfig(data_dir=data_dir, label_nc=4, load_size=56, crop_size=32, batch_size=3,
                        preprocess="resize_and_crop")
    x, y = next(iter(build_label_dataset(config, "train", training=True)))
    x, y = x.numpy(), y.numpy()
    assert x.shape == (3, 32, 32, 5)
    np.testing.assert_array_equal(x[..., :4].sum(-1), 1)  # nearest: ids stay ids
    ids = x[..., :4].argmax(-1)
    # Pixels whose 5x5 neighbourhood has one class: the photo there is that class's colour.
    same = np.ones_like(ids, bool)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            same &= np.roll(ids, (dy, dx), axis=(1, 2)) == ids
    same[:, :2] = same[:, -2:] = same[:, :, :2] = same[:, :, -2:] = False
    assert same.sum() > 1000
    expected = PALETTE[ids] / 127.5 - 1
    np.testing.assert_allclose(y[same], expected[same], atol=0.05)


def test_label_dataset_errors_name_the_file_and_the_flag(tmp_path):
    from tf_pix2pix.data import build_label_dataset

    data_dir, _ = _flat_label_records(tmp_path)
    with pytest.raises(DataError, match=r"holds class id 3, but --label_nc=3 allows 0..2; "
                                        r"pass --label_nc=4"):
        build_label_dataset(DataConfig(data_dir=data_dir, label_nc=3), "train", training=True)
    colour_dir, _ = _flat_label_records(tmp_path / "c", colour=True)
    with pytest.raises(DataError, match=r"0.png is an RGB image, but --label_nc=4.*--label_nc=0"):
        build_label_dataset(DataConfig(data_dir=colour_dir, label_nc=4), "train", training=True)
    # label_nc 0 reads RGB inputs and asks for no instance maps (the reference's #111).
    x, _ = next(iter(build_label_dataset(DataConfig(data_dir=colour_dir, label_nc=0,
                                                    preprocess="none"), "train", False)))
    assert x.shape[-1] == 3 and float(tf.reduce_min(x)) >= -1
    with pytest.raises(DataError, match="pix2pixHD reads label maps"):
        build_label_dataset(DataConfig(data_dir=_paired_records(tmp_path), label_nc=4),
                            "train", True)


def _paired_records(tmp_path):
    from data_prep.build_tfrecords import BuildConfig, build

    from conftest import write_image

    os.makedirs(tmp_path / "pairs", exist_ok=True)
    write_image(str(tmp_path / "pairs" / "0.png"), random_image(16, 32, seed=0))
    build(BuildConfig(input_dir=str(tmp_path / "pairs"), output_dir=str(tmp_path / "ptfr"),
                      progress=False))
    return str(tmp_path / "ptfr")


def test_checked_ids_accept_grayscale_pngs_and_refuse_colour_and_ids_beyond_label_nc():
    from tf_pix2pix.data import assertion_reason, decode_checked_ids

    ids16 = np.array([[0, 40000], [65535, 7]], np.uint16)[..., None]
    np.testing.assert_array_equal(decode_checked_ids(tf.io.encode_png(ids16),
                                                     what="instance map")[..., 0], ids16[..., 0])

    @tf.function
    def served(encoded):  # as in an export's graph
        return decode_checked_ids(encoded, 4)

    for pixels, reason in ((np.full((2, 2, 1), 9, np.uint8),
                            "the label map holds class id 9 but the model has label_nc=4 "
                            "classes (ids 0..3)"),
                           (np.zeros((2, 2, 3), np.uint8),
                            "the label map is not a grayscale PNG of ids (8 or 16 bit)")):
        for fn in (lambda e: decode_checked_ids(e, 4), served):
            with pytest.raises(tf.errors.InvalidArgumentError) as error:
                fn(tf.io.encode_png(pixels))
            assert assertion_reason(error.value).startswith(reason)
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_checked_ids(tf.constant(b"short"), 4)
