"""The synthetic-drums training chain, shared by the chain test and the realtime tests (which
play its bundle): `steerpad train` on synthetic kits through the fixture VAE, interrupted in the
steering stage and resumed. Built once per test session (conftest.py `chain`), ~2 min on 2 cores.

The VAE is tests/fixtures/synth_vae (trained on other synthetic kits by
tests/fixtures/make_synth_vae.py): a VAE trained inside a CI-length test decodes noise that no
direction can steer. The kits here are rendered with another seed, and the two validation kits
are held out of the SAE, the probes, the calibration and, with the rest, out of the VAE too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from drumsynth import write_kits

from steerpad.offline import directions as directions_mod
from steerpad.offline import sae_train
from steerpad.offline.directions import SteeringConfig
from steerpad.offline.ingest import EXACT_DUPLICATES_ONLY
from steerpad.offline.sae import SAEConfig
from steerpad.offline.sae_train import SAETrainConfig
from steerpad.offline.train_all import TrainPlan, train_bundle

FIXTURE_VAE = Path(__file__).resolve().parent / "fixtures" / "synth_vae"
VAL_KITS = ["synth_kit_6", "synth_kit_7"]
FIXTURE_LABELS = ("hat", "snare", "cymbal", "clap")  # noise-based kinds: brightness to steer
# Synthetic kits are simple enough that ingest's near-duplicate test links hits across kits
# (and so every kit into one split); these are independent renders: exact duplicates only.


def _plan(root: Path, **kw) -> TrainPlan:
    base = dict(data=[root / "kits"], out=root / "bundle", work=root / "work",
                vae=str(FIXTURE_VAE),
                sae=SAETrainConfig(sae=SAEConfig(n_features=1024, k=16), steps=600, batch=1024),
                steering=SteeringConfig(calib_clips=6, knobs=("centroid", "loudness")),
                eval_clips=8, val_kits=VAL_KITS, ingest=EXACT_DUPLICATES_ONLY, progress=False)
    return TrainPlan(**{**base, **kw})


def build_chain(root: Path) -> Path:
    """Train a bundle on synthetic kits, interrupted in the steering stage and resumed; returns
    the root folder (root/bundle, root/work, root/kits, root/summary.json)."""
    assert (FIXTURE_VAE / "model.safetensors").is_file(), \
        "tests/fixtures/synth_vae is missing: run tests/fixtures/make_synth_vae.py"
    write_kits(root / "kits", n_kits=8, hits_per_kit=24, seed=7, labels=FIXTURE_LABELS)

    # First run: interrupted in the steering stage (as by Ctrl-C)...
    real_fit = directions_mod.fit_steering

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    directions_mod.fit_steering = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            train_bundle(_plan(root))
    finally:
        directions_mod.fit_steering = real_fit
    assert (root / "work" / "sae" / "metrics.json").is_file()
    assert not (root / "bundle").exists()

    # ...then resumed: the finished stages are not run again.
    real_train = sae_train.train_sae

    def no_retrain(*a, **k):
        raise AssertionError("the SAE stage ran again on resume")

    sae_train.train_sae = no_retrain
    try:
        summary = train_bundle(_plan(root))
    finally:
        sae_train.train_sae = real_train
    (root / "summary.json").write_text(json.dumps(summary, default=str))
    return root


PAD_FILES = (("hh_closed*", "hats"), ("hihat_opened*", "hats"), ("*snare*", None), ("*clap*", None))


def write_preset(folder: Path, kit: Path, knobs=("brighter", "louder")) -> Path:
    """A preset on the generic controller: pads 1-4 = closed hat, open hat (one choke group),
    snare, clap from `kit`; knobs 1.. = `knobs`."""
    lines = ['name = "test"', 'controller = "generic"', ""]
    for pattern, choke in PAD_FILES:
        sample = sorted(kit.glob(pattern))[0]
        lines += ["[[pads]]", f'sample = "{sample}"'] + ([f'choke = "{choke}"'] if choke else []) + [""]
    for d in knobs:
        lines += ["[[knobs]]", f'direction = "{d}"', ""]
    path = folder / "test.toml"
    path.write_text("\n".join(lines))
    return path
