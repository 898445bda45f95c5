import csv
import os

import pytest

import dataclasses

from tf_pix2pix import models
from tf_pix2pix.cli import UserError
from tf_pix2pix.tools.experiments import SUITES, RunnerConfig, config_key, experiment_config, run


def test_suites_are_the_papers_configurations():
    runner = RunnerConfig(suite="all", data_dir="d", output_dir="o", steps=10)
    rows = {(s, n): experiment_config(runner, o) for s in SUITES for n, o in SUITES[s].items()}
    l1 = rows[("objectives", "L1")]
    assert l1.model.lambda_gan == 0 and l1.model.lambda_l1 == 100
    assert rows[("objectives", "cGAN")].model.lambda_l1 == 0
    assert not rows[("objectives", "L1+GAN")].model.condition_D
    assert rows[("generators", "encoder-decoder")].model.netG == "encoder_decoder_256"
    fields = [int(models.for_config(c).receptive_field(c)) for c in
              (rows[("patch_sizes", n)] for n in ("1x1", "16x16", "70x70", "286x286"))]
    assert fields == [1, 16, 70, 286]
    # The full objective, the U-Net and the 70x70 PatchGAN are one configuration.
    assert (rows[("objectives", "L1+cGAN")] == rows[("generators", "U-Net")]
            == rows[("patch_sizes", "70x70")])
    with pytest.raises(UserError, match="--suite='tables'"):
        RunnerConfig(suite="tables", data_dir="d", output_dir="o", steps=1)


def test_the_run_key_covers_everything_that_changes_training():
    runner = RunnerConfig(data_dir="d", output_dir="o", steps=10)
    base = experiment_config(runner, {})
    key = config_key(base)
    changed = [base.replace(data_dir="other"), base.replace(lr=1e-3),
               base.replace(gan_mode="lsgan"), base.replace(no_flip=True),
               base.replace(precision="mixed_bfloat16")]
    assert len({key, *map(config_key, changed)}) == 6
    # Where a run is written and how often it logs do not make it another run.
    same = base.replace(model_dir="elsewhere", summary_every_steps=7, val_max_examples=3,
                        lock_timeout=5)
    assert config_key(same) == key


def test_runner_trains_evaluates_tabulates_and_resumes(records_dir, tmp_path):
    runner = RunnerConfig(suite="all", data_dir=records_dir, output_dir=str(tmp_path),
                          steps=2, crop_size=128, ngf=4, ndf=4, split="test", progress=False)
    result = run(runner)
    assert len(os.listdir(tmp_path / "runs")) == 9  # 11 rows, 9 distinct configurations
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 2 * sum(len(s) for s in SUITES.values())
    assert {r["mode"] for r in rows} == {"eval", "paper"} and {r["count"] for r in rows} == {"4"}
    assert all(0 <= float(r["l1"]) <= 2 for r in rows)
    table = open(result["table"]).read()
    assert "### Objectives (paper Table 1)" in table and "| 286x286 |" in table
    assert sorted(os.path.basename(p) for p in result["figures"]) == [
        "generators.png", "objectives.png", "patch_sizes.png"]
    # A rerun skips the finished runs (no new checkpoints) and reproduces the numbers.
    stamps = {d: os.path.getmtime(tmp_path / "runs" / d / "checkpoints" / "checkpoint")
              for d in os.listdir(tmp_path / "runs")}
    run(runner)
    assert stamps == {d: os.path.getmtime(tmp_path / "runs" / d / "checkpoints" / "checkpoint")
                      for d in os.listdir(tmp_path / "runs")}
    again = list(csv.DictReader(open(tmp_path / "results.csv")))
    evals = lambda table: [(r["suite"], r["config"], r["l1"], r["ssim"])  # noqa: E731
                           for r in table if r["mode"] == "eval"]
    assert evals(again) == evals(rows)  # eval mode is deterministic; paper mode samples dropout

    # The FCN-score on the same runs (no retraining): a segmenter that always answers class 2
    # scores the share of class 2 among the labels read from the inputs' colours, for every
    # configuration, mode and the real photos alike; its class accuracy is 1/classes present.
    import keras
    import numpy as np

    from tf_pix2pix.tools.experiments import FCNSetup, _test_images

    inputs = keras.Input([None, None, 3])
    layer = keras.layers.Conv2D(4, 1)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.zeros([1, 1, 3, 4], np.float32), np.array([0, 0, 1, 0], np.float32)])
    model.save(str(tmp_path / "constant.keras"))
    scored = dataclasses.replace(runner, segmenter=str(tmp_path / "constant.keras"),
                                 fcn_classes="4", fcn_labels="input_colours",
                                 suite="generators")
    result = run(scored)
    setup = FCNSetup(scored)
    images, _, names = _test_images(scored, experiment_config(scored, {}))
    setup.read_labels(names, images)
    ids = np.concatenate([i.ravel() for i in setup.labels])
    share, present = np.mean(ids == 2), len(np.unique(ids))
    assert result["real_fcn"]["fcn_pixel_acc"] == pytest.approx(share)
    assert result["real_fcn"]["fcn_class_acc"] == pytest.approx(1 / present)
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 4 and all(float(r["fcn_pixel_acc"]) == pytest.approx(share)
                                  for r in rows)
    table = open(result["table"]).read()
    assert "| FCN pixel (eval) | FCN class (eval) | FCN IOU (eval) |" in table
    assert f"the real photos score {share:.3f}, {1 / present:.3f}" in table
    with pytest.raises(UserError, match="--segmenter needs --fcn_labels"):
        FCNSetup(dataclasses.replace(scored, fcn_labels=""))
