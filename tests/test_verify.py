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
