import csv
import os

import pytest

from tf_pix2pix.cli import UserError
from tf_pix2pix.experiments import SUITES, RunnerConfig, experiment_config, run


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
