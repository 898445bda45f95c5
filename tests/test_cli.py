"""Flags generated from config fields, and the folder checks shared by the tools."""

import dataclasses

import pytest
from absl import flags

from tf_pix2pix import config as cfg
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
    fv = flags.FlagValues()
    define_flags(cfg.ModelConfig, cfg.DataConfig, cfg.TrainConfig, flag_values=fv)
    fv(["prog"])
    for klass in (cfg.DataConfig, cfg.ModelConfig, cfg.TrainConfig):
        for field in dataclasses.fields(klass):
            assert field.metadata.get("help"), f"{klass.__name__}.{field.name} has no help"
    defaults = cfg.ExperimentConfig()
    assert from_flags(cfg.DataConfig, fv) == defaults.data
    assert from_flags(cfg.ModelConfig, fv) == defaults.model
    assert from_flags(cfg.TrainConfig, fv) == defaults.train


def test_writable_dir_creates_or_refuses(tmp_path):
    assert writable_dir(str(tmp_path / "a" / "b"), "--cache_dir") == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"--cache_dir .*/file/c: cannot create it"):
        writable_dir(str(tmp_path / "file" / "c"), "--cache_dir")
