"""Flags built from the stage configs (offline/flags.py): help from the field's docstring,
defaults from the config (declared once), only what the command line set is applied; and
`steerpad train`'s plan made from them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from steerpad.offline import train_all
from steerpad.offline.flags import ConfigFlags, field_docs
from steerpad.offline.sae_train import SAETrainConfig
from steerpad.offline.vae_train import VAETrainConfig
from steerpad.realtime.errors import SteerpadError


@dataclass
class Example:
    steps: int = 10
    """Steps in all,
    over two lines."""
    rate: float | None = None
    """A rate; None = by size."""
    mode: Literal["a", "b"] = "a"
    names: tuple[str, ...] = ("x", "y")
    """Some names."""
    hidden: list = field(default_factory=list)


def test_field_docs_reads_the_docstring_under_each_field():
    assert field_docs(Example) == {"steps": "Steps in all, over two lines.",
                                   "rate": "A rate; None = by size.", "names": "Some names."}


def test_flags_take_type_choices_default_and_help_from_the_config(capsys):
    flags = ConfigFlags(Example, {"steps": "--steps", "rate": "--rate", "mode": "--mode", "names": "--names"})
    parser = argparse.ArgumentParser()
    flags.add(parser)
    assert flags.given(parser.parse_args([])) == {}  # nothing set: the config's defaults stand
    args = parser.parse_args(["--steps", "3", "--rate", "0.5", "--mode", "b", "--names", "p", "q"])
    assert flags.given(args) == {"steps": 3, "rate": 0.5, "mode": "b", "names": ("p", "q")}
    assert Example(**flags.given(args)).names == ("p", "q")
    parser.print_help()
    help_ = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS Steps in all, over two lines. (default 10)" in help_
    assert "--names NAMES [NAMES ...] Some names. (default x y)" in help_ and "{a,b}" in help_
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])


def test_train_flags_build_the_nested_plan():
    parser = argparse.ArgumentParser()
    train_all.add_arguments(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--sae-steps", "7", "--sae-features", "256",
                              "--bins", "4", "--knobs", "centroid", "--vae-steps", "9"])
    configs = train_all.plan_configs(args)
    assert configs["vae_train"] == VAETrainConfig(steps=9)
    assert configs["sae"].steps == 7 and configs["sae"].sae.n_features == 256
    assert configs["sae"].batch == SAETrainConfig().batch  # one default, the stage's own
    assert configs["steering"].probe.n_bins == 4 and configs["steering"].knobs == ("centroid",)
    plan = train_all.TrainPlan(data=[Path("d")], out=Path("o"), work=Path("w"), **configs)
    assert plan.sae.steps == 7
    args = parser.parse_args(["--data", "d", "--out", "o", "--knobs", "sparkle"])
    with pytest.raises(SteerpadError, match="train: unknown knob descriptors"):
        train_all.plan_configs(args)
