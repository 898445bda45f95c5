"""Progress bars: redrawn on a terminal, plain bounded lines in a file or a pipe (issue 36: a demo
wrote 0.7-0.9 MB of carriage-return redraws into a log file)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bar_output(log_every_s):
    code = f"""
from tf_pix2pix.runtime.progress import progress_bar
bar = progress_bar(2000, "step", stateful_metrics=["loss"], log_every_s={log_every_s})
for step in range(1, 2001):
    bar.update(step, [("loss", 1.0 / step)])
print("done")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_pipe_gets_plain_lines_with_step_losses_and_eta():
    out = _bar_output(0.0)  # a line per update when asked for every 0 s
    assert b"\r" not in out and b"\x08" not in out
    lines = out.decode().splitlines()
    assert lines[-1] == "done" and lines[-2].startswith("step 2000/2000 (100%) loss=0.0005 ")
    assert " step/s in " in lines[-2] and " step/s ETA " in lines[-3]
    assert b"\x1b" not in out  # no colours in a file
    out = _bar_output(30.0)  # the default: a line every 30 s, and the last
    assert b"\r" not in out and len(out) < 2000
    assert out.decode().splitlines()[-2].startswith("step 2000/2000 (100%)")


def test_build_tfrecords_progress_in_a_pipe_has_no_redraws(synthetic_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "data_prep.build_tfrecords", "--input_dir",
                             synthetic_dir, "--output_dir", str(tmp_path / "out")],
                            capture_output=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert b"\r" not in result.stdout and len(result.stdout) < 4000
    assert result.stdout.decode().strip().splitlines()[-1].startswith("wrote ")


def test_on_a_terminal_an_error_starts_on_a_line_of_its_own():
    """Issue 36: result and error lines were printed on the progress bar's line."""
    import pty

    code = """
from tf_pix2pix.cli import UserError, run_main
from tf_pix2pix.runtime.progress import progress_bar

def main(argv):
    bar = progress_bar(10, "step")
    for step in range(1, 4):
        bar.update(step)
    raise UserError("the data ran out")

run_main(main)
"""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=follower, stdout=follower,
                            stderr=follower, cwd=REPO, close_fds=True)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 1
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))
    assert re.search(r"\b[123]/10 ", text)  # the bar was drawn (in place, on the terminal)
    before = text[:text.index("error: the data ran out")]
    assert before.endswith("\n"), repr(before[-80:])
