"""Flags generated from config fields, and the folder checks shared by the tools."""

import dataclasses
import os

import pytest
from absl import flags

from tf_pix2pix import configuration as cfg
from tf_pix2pix.cli import UserError, define_flags, from_flags, writable_dir


@dataclasses.dataclass(frozen=True)
class _Tool:
    path: str = cfg.option(dataclasses.MISSING, "Where.")
    count: int = cfg.option(3, "How many.")
    rate: float = cfg.option(0.5, "How fast.")
    mode: str = cfg.option("a", "Which.", ("a", "b"))
    use_it: bool = cfg.option(True, "Negated on the command line.", flag="no_use_it",
                              inverted=True)
    formats: tuple[str, ...] = cfg.option(("x",), "A list.")


def test_flags_carry_the_fields_types_defaults_and_help_and_build_the_config_back():
    fv = flags.FlagValues()
    define_flags(_Tool, flag_values=fv)
    fv(["prog", "--path=p", "--count=4", "--mode=b", "--no_use_it", "--formats=x,y"])
    assert from_flags(_Tool, fv) == _Tool(path="p", count=4, mode="b", use_it=False,
                                          formats=("x", "y"))
    assert fv["rate"].default == 0.5 and fv["rate"].help == "How fast."
    assert fv["mode"].parser.enum_values == ["a", "b"]
    fresh = flags.FlagValues()
    define_flags(_Tool, flag_values=fresh)
    with pytest.raises(flags.IllegalFlagValueError):
        fresh(["prog", "--mode=c", "--path=p"])
    required = flags.FlagValues()
    define_flags(_Tool, flag_values=required)
    with pytest.raises(flags.IllegalFlagValueError, match="path"):
        required(["prog"])


def test_every_training_option_has_help_and_one_flag_per_field():
    from tf_pix2pix import models

    for name in models.names():
        fv = flags.FlagValues()
        classes = models.option_classes(name)
        define_flags(*classes, flag_values=fv)
        fv(["prog"])
        for klass in classes:
            for field in dataclasses.fields(klass):
                assert field.metadata.get("help"), f"{klass.__name__}.{field.name} has no help"
            assert from_flags(klass, fv) == klass()


def test_given_defaults_replace_the_fields_own_in_flag_terms():
    fv = flags.FlagValues()
    define_flags(_Tool, flag_values=fv, defaults={"count": 9, "no_use_it": True})
    fv(["prog", "--path=p"])
    assert fv["count"].default == 9 and fv["no_use_it"].default is True
    assert from_flags(_Tool, fv) == _Tool(path="p", count=9, use_it=False)


def test_the_one_line_errors_need_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; import tf_pix2pix.cli, tf_pix2pix.tools.study; "
            "print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_writable_dir_creates_or_refuses(tmp_path):
    assert writable_dir(str(tmp_path / "a" / "b"), "--cache_dir") == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"--cache_dir .*/file/c: cannot create it"):
        writable_dir(str(tmp_path / "file" / "c"), "--cache_dir")


def test_cli_tools_refuse_stray_arguments_unless_they_take_them():
    """One check in run_main for every tool: a stray argument is a one-line error naming it and
    main never runs; a tool that takes arguments (run_kill9.py) gets them."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = ("import sys\nfrom tf_pix2pix.cli import run_main\n"
              "def main(argv):\n    print('main', argv[1:])\n"
              "run_main(main, positional=sys.argv.pop(1) == 'yes')\n")

    def run(positional, *args):
        return subprocess.run([sys.executable, "-c", script, positional, *args], cwd=repo,
                              capture_output=True, text=True, timeout=120)

    refused = run("no", "photos/", "--verbosity=0")
    assert refused.returncode == 1 and "main" not in refused.stdout
    assert refused.stderr.strip().splitlines()[-1] == "error: unexpected arguments: photos/"
    taken = run("yes", "--", "--data_dir", "d")
    assert taken.returncode == 0 and "main ['--data_dir', 'd']" in taken.stdout
    assert run("no").returncode == 0


def test_tensorflows_start_up_banner_is_hidden_unless_asked_for(records_dir):
    """Issue 36: every command started with TensorFlow's start-up log lines (written while its
    libraries load, before TF_CPP_MIN_LOG_LEVEL applies)."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "data_prep.verify", "--data_dir", records_dir]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=repo)
    assert quiet.returncode == 0 and quiet.stdout.startswith("checked ")
    assert "absl::InitializeLog" not in quiet.stderr and "I0000" not in quiet.stderr, quiet.stderr
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    loud = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=repo,
                          env=env)
    assert loud.returncode == 0 and "I0000" in loud.stderr  # the banner, when asked for
