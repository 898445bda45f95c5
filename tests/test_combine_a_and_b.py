import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.combine_a_and_b import combine
from tf_pix2pix.image_io import BadImageError, read_image

from conftest import random_image, write_image


def _folders(tmp_path, mismatch=False, lonely=False):
    for side in "AB":
        (tmp_path / side / "train").mkdir(parents=True)
    a, b = random_image(8, 8, seed=1), random_image(8, 8, seed=2)
    write_image(str(tmp_path / "A/train/x.png"), a)
    write_image(str(tmp_path / "B/train/x.png"), b)
    if mismatch:
        write_image(str(tmp_path / "A/train/y.png"), a)
        write_image(str(tmp_path / "B/train/y.png"), random_image(8, 10))
    if lonely:
        write_image(str(tmp_path / "B/train/z.png"), b)
    return a, b


def test_pairs_are_joined_left_to_right_losslessly(tmp_path):
    a, b = _folders(tmp_path)
    counts, skipped = combine(str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB"),
                              show_progress=False)
    assert counts == {"train": 1} and skipped == []
    joined = read_image(str(tmp_path / "AB/train/x.png")).pixels
    np.testing.assert_array_equal(joined, np.concatenate([a, b], axis=1))


def test_mismatch_and_unmatched_fail_by_default_and_write_nothing(tmp_path):
    _folders(tmp_path, mismatch=True)
    with pytest.raises(BadImageError, match="differs from its A image"):
        combine(str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB"),
                show_progress=False)
    assert not (tmp_path / "AB").exists()


def test_skip_lists_every_problem(tmp_path):
    _folders(tmp_path, mismatch=True, lonely=True)
    counts, skipped = combine(str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB"),
                              on_bad_image="skip", show_progress=False)
    assert counts == {"train": 1}
    reasons = sorted(s["reason"].split(" (")[0] for s in skipped)
    assert reasons == ["no file of the same name in the A folder",
                       "size 10x8 differs from its A image " + str(tmp_path / "A/train/y.png")]


def test_cli_reports_unmatched_names(tmp_path):
    _folders(tmp_path, lonely=True)
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.combine_a_and_b", "--fold_A", str(tmp_path / "A"),
         "--fold_B", str(tmp_path / "B"), "--fold_AB", str(tmp_path / "AB")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {tmp_path / 'B/train/z.png'}: no file of the same name" in result.stderr
    assert not os.path.exists(tmp_path / "AB")
