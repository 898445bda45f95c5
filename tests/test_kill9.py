"""The kill -9 test tool, short form: three SIGKILLs (one per moment) on a tiny model.

``run_kill9.py --kills 10`` is the long form (README); this proves the tool and the trainer in
the suite's time: every restart resumes from the newest complete checkpoint and the final
weights are bit-identical to an uninterrupted run.
"""

import os
import subprocess
import sys

import pytest

import kill9

from conftest import TINY_FLAGS

pytestmark = pytest.mark.multiprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = (*TINY_FLAGS, "--max_steps", "240", "--save_every_steps", "8", "--image_every_steps",
         "60", "--val_max_examples", "4")


def test_three_kills_one_per_moment_end_bit_identical(records_dir, tmp_path):
    messages = []
    report = kill9.run(kill9.Kill9Config(train_args=("--data_dir", records_dir, *TRAIN),
                                         work_dir=str(tmp_path), kills=3, seed=0, timeout=300),
                       log=messages.append)
    assert report.identical and len(report.kills) == 3
    assert sorted(k.moment for k in report.kills) == sorted(kill9.MOMENTS)
    checked = [k for k in report.kills if k.resumed_step is not None]
    assert checked and all(k.resumed_step == k.newest_step for k in checked)
    assert any(k.newest_step > 0 for k in report.kills)
    assert messages[0].startswith("uninterrupted run:") and len(messages) == 4
    assert "bit-identical" in report.summary()


def test_a_restart_that_loses_steps_is_caught(tmp_path):
    log = tmp_path / "attempt.log"
    log.write_text("Resumed from /m/checkpoints/ckpt-8 at step 8\n")
    kill = kill9.Kill("between_saves", 3.0, newest_step=16, saving=False)
    with pytest.raises(kill9.Kill9Error, match="newest checkpoint was step 16 but the restart "
                                               "resumed at step 8"):
        kill9._check_resume(str(log), kill, killed_at_startup=False)
    log.write_text("Traceback (most recent call last):\n")
    with pytest.raises(kill9.Kill9Error, match="traceback"):
        kill9._check_resume(str(log), kill, killed_at_startup=True)


def test_command_line_errors_are_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, "tests", "run_kill9.py"), *args],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    result = run("--work_dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: pass the run_train.py flags")
    result = run("--work_dir", str(tmp_path), "--", "--model_dir", "x")
    assert result.returncode == 1 and "do not pass --model_dir" in result.stderr
