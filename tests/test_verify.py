"""data_prep.verify: every shard's size, checksum, record CRCs and images, as one line each."""

import json
import os
import shutil
import subprocess
import sys

from data_prep.verify import VerifyConfig, verify

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(data_dir):
    return subprocess.run([sys.executable, "-m", "data_prep.verify", "--data_dir", data_dir],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_a_good_folder_passes_and_bad_shards_are_each_named(records_dir, unpaired_records_dir,
                                                            tmp_path):
    assert verify(VerifyConfig(data_dir=records_dir)) == {"shards": 6, "problems": {}}
    assert verify(VerifyConfig(data_dir=unpaired_records_dir))["problems"] == {}
    result = _run(records_dir)
    assert result.returncode == 0 and "all good" in result.stdout

    bad = tmp_path / "bad"
    shutil.copytree(records_dir, bad)
    manifest = json.load(open(bad / "manifest.json"))
    flipped, cut = manifest["splits"]["train"]["shards"]
    data = bytearray((bad / flipped).read_bytes())
    data[len(data) // 2:len(data) // 2 + 40] = bytes(40)
    (bad / flipped).write_bytes(bytes(data))
    whole = (bad / cut).read_bytes()
    (bad / cut).write_bytes(whole[:len(whole) // 2])
    problems = verify(VerifyConfig(data_dir=str(bad)))["problems"]
    assert set(problems) == {flipped, cut}
    assert problems[flipped][0] == "SHA-256 differs from the manifest's"
    assert problems[flipped][1].startswith("corrupted record at ")
    assert problems[cut][0] == f"{len(whole) // 2} bytes, the manifest says {len(whole)}"
    assert problems[cut][-1].startswith("truncated record at ")

    result = _run(str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith(f"{bad}/{flipped}: corrupted record at ") for line in lines)
    assert lines[-1] == f"checked 6 shard(s) of {bad}: 2 bad; rebuild them with " \
                        "data_prep.build_tfrecords (or train with --on_corrupt_record=skip)"


def test_labels_builds_verify_and_counts_are_checked(label_records, tmp_path):
    """Issue 33, fault 11: verify decoded label records with another layout's schema (every
    clean --layout=labels build was reported corrupt, rc 1) and never checked num_examples; a
    hand-edited manifest was trusted by training."""
    import pytest

    from tf_pix2pix import data as data_lib

    result = verify(VerifyConfig(data_dir=label_records))
    assert result["problems"] == {} and result["shards"] >= 2
    run = _run(label_records)
    assert run.returncode == 0 and "all good" in run.stdout, run.stdout

    edited = tmp_path / "edited"
    shutil.copytree(label_records, edited)
    manifest = json.load(open(edited / "manifest.json"))
    train = manifest["splits"]["train"]
    held = (train["num_examples"], train["max_label"])
    train["num_examples"] += 5
    train["max_label"] += 7
    (edited / "manifest.json").write_text(json.dumps(manifest))
    problems = verify(VerifyConfig(data_dir=str(edited)))["problems"]
    assert problems == {"manifest.json": [
        "changed after data_prep.build_tfrecords wrote it (its checksum differs)",
        f"train: num_examples is {held[0] + 5}, the shards hold {held[0]} records",
        f"train: max_label is {held[1] + 7}, the largest class id in the shards is {held[1]}"]}
    run = _run(str(edited))
    assert run.returncode == 1 and run.stdout.strip().splitlines()[-1].endswith(
        "manifest.json does not match its shards; rebuild the data with "
        "data_prep.build_tfrecords")
    # Training reads the manifest's counts: an edited one is refused, naming verify.
    with pytest.raises(data_lib.DataError, match="was changed after data_prep.build_tfrecords "
                                                 "wrote it.*data_prep.verify"):
        data_lib.read_manifest(str(edited))
    # Even with the checksum dropped too (a manifest of before had none), verify sees the
    # counts that differ from the shards.
    del manifest["checksum"]
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert len(verify(VerifyConfig(data_dir=str(edited)))["problems"]["manifest.json"]) == 2
    for damage in ("{not json", "[]", '{"splits": []}'):
        (edited / "manifest.json").write_text(damage)
        with pytest.raises(data_lib.DataError, match="is damaged .*rebuild"):
            verify(VerifyConfig(data_dir=str(edited)))
        run = _run(str(edited))
        assert run.returncode == 1 and "Traceback" not in run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith("error: ")
