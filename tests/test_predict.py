import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import label_maps
from tf_pix2pix.configuration import ConfigError, DataConfig, ExperimentConfig
from tf_pix2pix.metrics.scoring import PSNR_CAP
from tf_pix2pix.image_io import BadImageError
from tf_pix2pix.serving.predict import (Translator, iterate_examples, plot_losses, predict,
                                    read_scalars, translator_from_model_dir)

from conftest import random_image, write_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _identity(config=None):
    return Translator(lambda x: x, config or ExperimentConfig(), "eval", "identity")


def _aligned_folder(folder, n=3, same_halves=True, size=16):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        half = random_image(size, size, seed=i)
        other = half if same_halves else random_image(size, size, seed=100 + i)
        write_image(os.path.join(folder, f"p{i}.png"), np.concatenate([half, other], axis=1))


def test_identity_model_scores_zero_l1_and_capped_psnr(tmp_path):
    _aligned_folder(str(tmp_path / "in"))
    out = str(tmp_path / "out")
    summary = predict(_identity(), iterate_examples("aligned", str(tmp_path / "in"),
                                                    ExperimentConfig()), out, progress=False)
    assert summary["count"] == 3 and summary["l1"] == 0.0
    assert summary["psnr"] == PSNR_CAP and summary["ssim"] == pytest.approx(1.0)
    on_disk = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert on_disk["l1"] == 0.0 and on_disk["psnr_cap_db"] == PSNR_CAP
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [r["name"] for r in rows] == ["p0", "p1", "p2"]
    assert all(float(r["l1"]) == 0.0 for r in rows)
    gallery = open(os.path.join(out, "index.html")).read()
    for i in range(3):
        for kind in ("input", "output", "target"):
            assert f'src="images/p{i}_{kind}.png"' in gallery
            assert os.path.exists(os.path.join(out, "images", f"p{i}_{kind}.png"))


def test_known_l1_for_different_halves(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    black, white = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)
    write_image(str(folder / "x.png"), np.concatenate([black, white], axis=1))
    summary = predict(_identity(), iterate_examples("aligned", str(folder), ExperimentConfig()),
                      str(tmp_path / "out"), progress=False)
    assert summary["l1"] == pytest.approx(1.0) and summary["psnr"] == pytest.approx(0.0)


def test_direction_and_channels_come_from_the_config(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    left, right = random_image(8, 8, seed=1), random_image(8, 8, seed=2)
    write_image(str(folder / "x.png"), np.concatenate([left, right], axis=1))
    config = ExperimentConfig(data=DataConfig(direction="BtoA", input_nc=1))
    (ex,) = iterate_examples("aligned", str(folder), config)
    assert ex.input.shape == (8, 8, 1) and ex.target.shape == (8, 8, 3)
    np.testing.assert_allclose(ex.target, left / 127.5 - 1, atol=1e-6)


def test_plain_images_have_no_metrics(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(str(folder / "a.jpg"), random_image(12, 20))
    summary = predict(_identity(), iterate_examples("images", str(folder), ExperimentConfig()),
                      str(tmp_path / "out"), progress=False)
    assert summary["count"] == 1 and "l1" not in summary
    assert not os.path.exists(tmp_path / "out" / "metrics.json")
    out = tf.io.decode_png(open(tmp_path / "out/images/a_output.png", "rb").read())
    assert out.shape == (12, 20, 3)


def test_bad_images_fail_or_are_skipped_and_counted(tmp_path):
    _aligned_folder(str(tmp_path / "in"), n=2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(BadImageError, match="broken.png"):
        list(iterate_examples("aligned", str(tmp_path / "in"), ExperimentConfig()))
    skipped = []
    examples = iterate_examples("aligned", str(tmp_path / "in"), ExperimentConfig(),
                                on_bad_image="skip", skipped=skipped)
    summary = predict(_identity(), examples, str(tmp_path / "out"), False, skipped)
    assert summary["count"] == 2 and summary["num_skipped"] == 1
    assert summary["skipped"][0]["file"].endswith("broken.png")


def test_tfrecord_split_source(records_dir, tmp_path):
    examples = list(iterate_examples("tfrecord", records_dir, ExperimentConfig(), split="val"))
    assert len(examples) == 4 and examples[0].input.shape == (64, 64, 3)
    with pytest.raises(ConfigError, match="is not a file, a folder or a pattern"):
        list(iterate_examples("images", str(tmp_path / "missing"), ExperimentConfig()))


def test_read_scalars_and_plot_losses(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        for step in range(1, 4):
            tf.summary.scalar("loss/G_L1", 10.0 / step, step=step)
            tf.summary.scalar("loss/D_real", 0.5, step=step)
    writer.flush()
    series = read_scalars(str(tmp_path / "train"))
    assert series["loss/G_L1"] == [(1, 10.0), (2, 5.0), (3, pytest.approx(10 / 3))]
    path = plot_losses(str(tmp_path), str(tmp_path / "plots" / "losses.png"))
    image = tf.io.decode_png(open(path, "rb").read())
    assert image.shape[0] > 100 and image.shape[1] > 100
    with pytest.raises(ConfigError, match="not found"):
        plot_losses(str(tmp_path / "nothing"), str(tmp_path / "x.png"))


def test_cli_from_model_dir_and_saved_model(records_dir, tmp_path):
    from tf_pix2pix import models
    from tf_pix2pix.serving.export import ExportConfig, export
    from tf_pix2pix.runtime.training import train

    model_dir = str(tmp_path / "m")
    train(models.resolve("pix2pix", data_dir=records_dir, load_size=36, crop_size=32,
                         batch_size=2, netG="unet_32", ngf=8, ndf=8, model_dir=model_dir,
                         max_steps=2, summary_every_steps=1), progress=False)
    saved = export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path / "e")))
    run = lambda *a: subprocess.run([sys.executable, os.path.join(REPO, "run_predict.py"), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    a = run("--model_dir", model_dir, "--tfrecord_dir", records_dir, "--split=test",
            "--output_dir", str(tmp_path / "pa"), "--noprogress", "--plot_losses")
    assert a.returncode == 0, a.stderr
    assert "translated 4 image(s)" in a.stdout and "L1=" in a.stdout
    assert os.path.exists(tmp_path / "pa" / "losses.png")
    b = run("--saved_model", saved, "--tfrecord_dir", records_dir, "--split=test",
            "--output_dir", str(tmp_path / "pb"), "--noprogress")
    assert b.returncode == 0, b.stderr
    ma = json.load(open(tmp_path / "pa" / "metrics.json"))
    mb = json.load(open(tmp_path / "pb" / "metrics.json"))
    assert ma["l1"] == pytest.approx(mb["l1"], abs=1e-6)
    bad = run("--model_dir", model_dir, "--input_dir", str(tmp_path / "none"), "--output_dir",
              str(tmp_path / "pc"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "is not a file, a folder or a pattern" in bad.stderr.strip().splitlines()[-1]
    # A|B pairs without --source=aligned: translated whole, with a warning; --input (the
    # alias) takes a pattern; the bar in a pipe is plain lines that know the total.
    _aligned_folder(str(tmp_path / "pairs"), n=2, size=32)
    pairs = run("--saved_model", saved, "--input", str(tmp_path / "pairs" / "*.png"),
                "--output_dir", str(tmp_path / "pf"))
    assert pairs.returncode == 0, pairs.stderr
    assert "warning: every image of" in pairs.stderr and "--source=aligned" in pairs.stderr
    assert "image 2/2 (100%)" in pairs.stdout and "\r" not in pairs.stdout
    assert "translated 2 image(s)" in pairs.stdout

    # The FCN-score from the command line: label-id PNGs named as the split's images, a
    # segmenter that always answers class 2 (a .keras file): both rows score what the formulas
    # say, whatever the generator made.
    from tf_pix2pix.image_io import encode_ids

    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    names = [ex.name for ex in iterate_examples("tfrecord", records_dir, ExperimentConfig(),
                                                split="test")]
    rng = np.random.default_rng(1)
    all_ids = []
    for name in names:
        ids = rng.integers(0, 4, size=[64, 64])
        ids[:5] = 255  # ignored
        all_ids.append(ids)
        (labels_dir / f"{name}.png").write_bytes(encode_ids(ids))
    constant = _constant_segmenter(num_classes=4, answer=2)
    constant.save(str(tmp_path / "seg.keras"))
    fcn = run("--model_dir", model_dir, "--tfrecord_dir", records_dir, "--split=test",
              "--output_dir", str(tmp_path / "pd"), "--noprogress", "--metrics=l1,fcn",
              "--segmenter", str(tmp_path / "seg.keras"), "--fcn_labels", str(labels_dir),
              "--fcn_classes=4", "--segmenter_input_size=16,16")
    assert fcn.returncode == 0, fcn.stderr
    labelled = np.concatenate([ids[ids != 255] for ids in all_ids])
    share = np.mean(labelled == 2)
    assert f"| generated | {share:.3f} | 0.250 | {share / 4:.3f} |" in fcn.stdout
    assert f"| real (ground truth) | {share:.3f} |" in fcn.stdout
    scores = json.load(open(tmp_path / "pd" / "metrics.json"))
    assert scores["fcn"]["pixels"] == labelled.size
    assert scores["fcn"]["pixel_acc"] == pytest.approx(share)
    assert scores["fcn_real"]["class_iou"] == pytest.approx(share / 4)
    for args, message in (((), "--metrics=fcn needs --segmenter"),
                          (("--segmenter", str(tmp_path / "seg.keras")),
                           "--metrics=fcn needs label maps: pass --fcn_labels")):
        bad = run("--model_dir", model_dir, "--tfrecord_dir", records_dir, "--split=test",
                  "--output_dir", str(tmp_path / "pe"), "--noprogress", "--metrics=fcn", *args)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert message in bad.stderr.strip().splitlines()[-1]


def _constant_segmenter(num_classes, answer):
    import keras

    inputs = keras.Input([None, None, 3])
    layer = keras.layers.Conv2D(num_classes, 1)
    outputs = layer(inputs)
    bias = np.zeros([num_classes], np.float32)
    bias[answer] = 1.0
    layer.set_weights([np.zeros([1, 1, 3, num_classes], np.float32), bias])
    return keras.Model(inputs, outputs)


COLOURS = np.array([[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float32)


def test_fcn_score_of_label_map_translations(label_records, tmp_path):
    """pix2pixHD's inputs carry their label maps: a generator painting each class in its colour
    and a nearest-colour segmenter score 1.0; the real photos score what an independent
    nearest-colour labelling of them scores."""
    from tf_pix2pix import models
    from tf_pix2pix.metrics.fcn_score import FCNScorer, LabelFolder, label_source

    cfg = models.resolve("pix2pix_hd", label_nc=4, no_vgg_loss=True)
    painter = Translator(lambda x: tf.einsum("nhwc,cd->nhwd", x[..., :4], COLOURS), cfg,
                         "eval", "painter")
    c = COLOURS
    kernel = tf.constant((2 * c.T)[np.newaxis, np.newaxis])
    nearest = lambda x: tf.nn.conv2d(x, kernel, 1, "VALID") - np.sum(c ** 2, 1)  # noqa: E731
    scorer = FCNScorer(nearest, 4)
    summary = predict(painter, iterate_examples("tfrecord", label_records, cfg, split="val"),
                      str(tmp_path / "out"), progress=False, metrics=("l1", "fcn"), fcn=scorer)
    assert summary["fcn"]["pixel_acc"] == 1.0 and summary["fcn"]["class_iou"] == 1.0
    hits = total = 0
    for ex in iterate_examples("tfrecord", label_records, cfg, split="val"):
        ids = np.argmax(ex.input[..., :4], -1)
        guess = np.argmin(((ex.target[..., None, :] - c) ** 2).sum(-1), -1)
        hits, total = hits + np.sum(guess == ids), total + ids.size
    assert summary["fcn_real"]["pixels"] == total
    assert summary["fcn_real"]["pixel_acc"] == pytest.approx(hits / total)
    assert json.load(open(tmp_path / "out" / "metrics.json"))["fcn"]["pixel_acc"] == 1.0
    # The inputs as colour-coded label images (pix2pix's Cityscapes set): the labels are read
    # back from the colours; the identity "generator" then scores 1.0.
    pal = label_maps.palette(4).astype(np.float32) / 127.5 - 1
    pal_kernel = tf.constant((2 * pal.T)[np.newaxis, np.newaxis])
    by_palette = lambda x: (tf.nn.conv2d(x, pal_kernel, 1, "VALID")  # noqa: E731
                            - np.sum(pal ** 2, 1))
    coloured = [dataclasses.replace(ex, input=np.asarray(label_maps.colorize(
        ex.input[np.newaxis], 4)[0])) for ex in iterate_examples("tfrecord", label_records, cfg,
                                                                  split="val")]
    rgb = ExperimentConfig()
    result = predict(Translator(lambda x: x, rgb, "eval", "identity"), iter(coloured),
                     str(tmp_path / "out2"), progress=False, metrics=("fcn",),
                     fcn=FCNScorer(by_palette, 4), fcn_labels=label_source("input_colours", 4))
    assert result["fcn"]["pixel_acc"] == 1.0 and result["fcn"]["pixels"] == total

    with pytest.raises(ConfigError, match="--metrics=fcn needs --segmenter"):
        predict(painter, iter([]), str(tmp_path / "x"), metrics=("fcn",))
    with pytest.raises(ConfigError, match="add fcn to --metrics"):
        predict(painter, iter([]), str(tmp_path / "x"), fcn=scorer)
    with pytest.raises(ConfigError, match="needs label maps"):
        predict(_identity(), iter([]), str(tmp_path / "x"), metrics=("fcn",), fcn=scorer)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "other.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="no label map for '00000'"):
        predict(painter, iterate_examples("tfrecord", label_records, cfg, split="val"),
                str(tmp_path / "y"), progress=False, metrics=("fcn",), fcn=FCNScorer(nearest, 4),
                fcn_labels=LabelFolder(str(tmp_path / "labels")))


def test_cycle_gan_translates_an_unaligned_split_with_either_generator(unpaired_records_dir,
                                                                        tmp_path):
    from tf_pix2pix import models
    from tf_pix2pix.runtime.training import train

    model_dir = str(tmp_path / "m")
    # Trained on crops of width-scaled images (the reference's advice for large images) ...
    train(models.resolve("cycle_gan", data_dir=unpaired_records_dir,
                         preprocess="scale_width_and_crop", load_size=40, crop_size=32,
                         netG="resnet_6blocks", ngf=4, ndf=4, model_dir=model_dir, max_steps=1,
                         val_max_examples=0), progress=False)
    for direction, domain in (("AtoB", "A"), ("BtoA", "B")):
        out = tmp_path / direction
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "run_predict.py"), "--model_dir", model_dir,
             "--tfrecord_dir", unpaired_records_dir, "--split=test", f"--direction={direction}",
             "--output_dir", str(out), "--noprogress"],
            capture_output=True, text=True, timeout=300, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert "translated 2 image(s)" in result.stdout and "L1=" not in result.stdout
        page = (out / "index.html").read_text()
        assert ("G_A" if direction == "AtoB" else "G_B") in page and "<th>target</th>" not in page
        # The inputs are the test images of the generator's own input domain.
        manifest = json.load(open(os.path.join(unpaired_records_dir, "manifest.json")))
        assert manifest["splits"]["test"][domain]["num_examples"] == 2
        first = tf.io.decode_png((out / "images" / "00000_input.png").read_bytes()).numpy()
        colours = len(np.unique(first.reshape(-1, 3), axis=0))
        assert (colours <= 4) == (domain == "A")  # A: flat label colours; B: renderings
    # ... and translates full-size images of any size.
    folder = tmp_path / "full"
    folder.mkdir()
    write_image(str(folder / "big.png"), random_image(50, 38))
    translator = translator_from_model_dir(model_dir, "eval", direction="BtoA")
    summary = predict(translator, iterate_examples("images", str(folder), translator.config,
                                                   direction="BtoA"),
                      str(tmp_path / "full_out"), progress=False)
    assert summary["count"] == 1
    out = tf.io.decode_png((tmp_path / "full_out" / "images" / "big_output.png").read_bytes())
    assert out.shape == (50, 38, 3)


def test_reference_protocol_resizes_to_256_and_fid_kid_are_reported(tmp_path):
    _aligned_folder(str(tmp_path / "in"), n=4, same_halves=False)
    translator = Translator(lambda x: x, ExperimentConfig(), "paper", "identity")
    summary = predict(translator, iterate_examples("aligned", str(tmp_path / "in"),
                                                   ExperimentConfig()),
                      str(tmp_path / "out"), progress=False, protocol="reference",
                      metrics=("l1", "fid", "kid"), inception_weights="random")
    output = tf.io.decode_png((tmp_path / "out" / "images" / "p0_output.png").read_bytes())
    assert output.shape == (256, 256, 3) and summary["protocol"] == "reference"
    assert summary["inception_images"] == 4 and summary["fid"] > 0
    assert "kid" in summary and "biased" in summary["fid_warning"]
    assert "psnr" not in summary and summary["l1"] > 0
    with pytest.raises(ConfigError, match="--metrics=is"):
        predict(translator, iter([]), str(tmp_path / "x"), metrics=("is",))


def test_reference_protocol_refuses_eval_mode_from_the_command_line(records_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_predict.py"), "--model_dir", str(tmp_path),
         "--tfrecord_dir", records_dir, "--output_dir", str(tmp_path / "o"),
         "--protocol=reference", "--test_mode=eval"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "protocol=reference runs the generator in paper mode" in result.stderr


def test_label_maps_with_ids_beyond_label_nc_or_in_colour_are_refused_or_skipped(tmp_path):
    """Issue 33, fault 10: run_predict accepted ids >= label_nc (200, 40000, exactly label_nc)
    and RGB images as label maps and translated them into garbage."""
    from tf_pix2pix import models

    cfg = models.resolve("pix2pix_hd", label_nc=4, no_vgg_loss=True)
    folder = tmp_path / "labels"
    folder.mkdir()
    ok = np.array([[0, 1], [2, 3]], np.uint8).repeat(4, 0).repeat(4, 1)[..., None]
    (folder / "a_ok.png").write_bytes(tf.io.encode_png(ok).numpy())
    for name, pixels in (("b_200", np.full((8, 8, 1), 200, np.uint8)),
                         ("c_40000", np.full((8, 8, 1), 40000, np.uint16)),
                         ("d_exactly", np.full((8, 8, 1), 4, np.uint8)),
                         ("e_rgb", np.zeros((8, 8, 3), np.uint8))):
        (folder / f"{name}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    with pytest.raises(BadImageError, match=r"b_200.png: the label map holds class id 200 but "
                                            r"the model has label_nc=4 classes \(ids 0..3\)"):
        list(iterate_examples("images", str(folder), cfg))
    skipped = []
    kept = list(iterate_examples("images", str(folder), cfg, on_bad_image="skip",
                                 skipped=skipped))
    assert [ex.name for ex in kept] == ["a_ok"]
    np.testing.assert_array_equal(label_maps.class_ids(kept[0].input, 4), ok[..., 0])
    reasons = {os.path.basename(s["file"]): s["reason"] for s in skipped}
    assert reasons["c_40000.png"].startswith("the label map holds class id 40000")
    assert reasons["d_exactly.png"].startswith("the label map holds class id 4 ")
    assert reasons["e_rgb.png"].startswith("the label map is not a grayscale PNG of ids")


def test_an_earlier_prediction_is_never_mixed_with_a_new_one(tmp_path):
    """Issue 33, fault 2: into an existing results folder run_predict left the old model's
    outputs beside the new ones (index.html listed only the new; a study then scored both as
    one model)."""
    from tf_pix2pix.cli import UserError

    _aligned_folder(str(tmp_path / "in"), n=3)
    out = str(tmp_path / "out")
    first = lambda: iterate_examples("aligned", str(tmp_path / "in"), ExperimentConfig())  # noqa: E731
    predict(_identity(), first(), out, progress=False)
    os.remove(os.path.join(tmp_path, "in", "p2.png"))  # the second run sees fewer inputs
    with pytest.raises(UserError, match="is not empty; pass --overwrite"):
        predict(_identity(), first(), out, progress=False)
    assert len(os.listdir(os.path.join(out, "images"))) == 9  # the first result, untouched
    predict(_identity(), first(), out, progress=False, overwrite=True)
    assert sorted(os.listdir(os.path.join(out, "images"))) == sorted(
        f"p{i}_{k}.png" for i in (0, 1) for k in ("input", "output", "target"))
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("mine")
    with pytest.raises(UserError, match="'notes.txt'.*did not write"):
        predict(_identity(), first(), out, progress=False, overwrite=True)
    # A run that fails part-way leaves the earlier result as it was, and nothing beside it.
    os.remove(os.path.join(out, "notes.txt"))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(BadImageError):
        predict(_identity(), first(), out, progress=False, overwrite=True)
    assert len(os.listdir(os.path.join(out, "images"))) == 6
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_one_file_a_pattern_or_a_folder_and_a_b_pairs_are_noticed(tmp_path):
    """Issue 36: one image answered "is not a directory"; A|B pairs given without
    --source=aligned were translated whole without a word."""
    from tf_pix2pix.serving.predict import example_count, input_files, looks_aligned

    _aligned_folder(str(tmp_path / "pairs"), n=3)  # 32x16 A|B images
    write_image(str(tmp_path / "shot.jpg"), random_image(12, 20))
    files = input_files(str(tmp_path / "pairs"))
    assert [os.path.basename(f) for f in files] == ["p0.png", "p1.png", "p2.png"]
    assert input_files(str(tmp_path / "shot.jpg")) == [str(tmp_path / "shot.jpg")]
    assert input_files(str(tmp_path / "pairs" / "p[01].png")) == files[:2]
    assert looks_aligned(files) and not looks_aligned([str(tmp_path / "shot.jpg")])
    assert example_count("images", str(tmp_path / "pairs" / "*.png"), ExperimentConfig()) == 3
    with pytest.raises(ConfigError, match="matches no file"):
        input_files(str(tmp_path / "*.bmp"))
    with pytest.raises(ConfigError, match="is not a file, a folder or a pattern"):
        input_files(str(tmp_path / "nothing.png"))
    os.makedirs(tmp_path / "other")
    write_image(str(tmp_path / "other" / "p0.jpg"), random_image(8, 8))
    with pytest.raises(ConfigError, match=r"p0.jpg and .*p0.png have one name \(p0\)"):
        input_files(str(tmp_path / "*" / "p0.*"))
    # One file through the whole prediction: one output of its stem.
    summary = predict(_identity(), iterate_examples("images", str(tmp_path / "shot.jpg"),
                                                    ExperimentConfig()),
                      str(tmp_path / "out"), progress=False)
    assert summary["count"] == 1
    assert sorted(os.listdir(tmp_path / "out" / "images")) == ["shot_input.png",
                                                               "shot_output.png"]
