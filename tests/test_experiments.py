import csv
import os

import pytest

from tf_pix2pix.cli import UserError
import dataclasses

from tf_pix2pix.experiments import SUITES, RunnerConfig, config_key, experiment_config, run


def test_suites_are_the_papers_configurations():
    runner = RunnerConfig(suite="all", data_dir="d", output_dir="o", steps=10)
    rows = {(s, n): experiment_config(runner, o) for s in SUITES for n, o in SUITES[s].items()}
    l1 = rows[("objectives", "L1")]
    assert l1.train.lambda_gan == 0 and l1.train.lambda_l1 == 100
    assert rows[("objectives", "cGAN")].train.lambda_l1 == 0
    assert not rows[("objectives", "L1+GAN")].model.condition_D
    assert rows[("generators", "encoder-decoder")].model.netG == "encoder_decoder_256"
    fields = [rows[("patch_sizes", n)].model.receptive_field
              for n in ("1x1", "16x16", "70x70", "286x286")]
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
    changed = [dataclasses.replace(base, data=dataclasses.replace(base.data, data_dir="other")),
               dataclasses.replace(base, train=dataclasses.replace(base.train, lr=1e-3)),
               dataclasses.replace(base, train=dataclasses.replace(base.train, gan_mode="lsgan")),
               dataclasses.replace(base, data=dataclasses.replace(base.data, no_flip=True))]
    assert len({key, *map(config_key, changed)}) == 5
    # Where a run is written and how often it logs do not make it another run.
    same = dataclasses.replace(base, train=dataclasses.replace(
        base.train, model_dir="elsewhere", summary_every_steps=7, val_max_examples=3))
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
