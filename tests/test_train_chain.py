"""`steerpad train` end to end on synthetic drums: ingest -> (VAE) -> encode -> SAE -> descriptors,
probes, directions, calibration -> export -> eval, and the brightness and loudness knobs move
their descriptors the right way on kits held out of everything.

The chain itself (interrupted in the steering stage, then resumed) is built once per session
by tests/chainbundle.py, through the conftest `chain` fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from drumsynth import write_kits

from steerpad.offline.cli import main
from steerpad.realtime.bundle import load_bundle

pytestmark = pytest.mark.slow  # ~1.5 min on 2 cores

from chainbundle import FIXTURE_VAE, VAL_KITS  # noqa: E402,F401


def test_chain_writes_a_bundle_that_loads_and_plays(chain):
    bundle = load_bundle(chain / "bundle")
    assert [d.name for d in bundle.directions] == ["brighter", "louder"]
    assert bundle.n_features == 1024 and bundle.k == 16
    for d in bundle.directions:
        assert d.alpha_min < 0 < d.alpha_max
    m = bundle.manifest
    assert m["probes"]["centroid"]["accuracy/val"] > m["probes"]["centroid"]["chance/val"]
    assert m["probes"]["loudness"]["accuracy/val"] > m["probes"]["loudness"]["chance/val"]
    assert set(m["descriptors"]) >= {"centroid", "loudness"}


def test_loudness_knob_steers_held_out_drums(chain):
    report = json.loads((chain / "work" / "eval" / "report.json").read_text())
    assert report["identity_max_abs"] <= 1e-4, report["identity_max_abs"]
    held_out = {Path(c).parent.name for c in report["clips"]}
    assert held_out <= set(VAL_KITS), held_out
    # Measured: rho median 0.7, effect +0.94 std at the top, +0.04 at the bottom (this weak
    # fixture VAE turns any large push into some noise, so the low end is not quieter yet).
    r = report["directions"]["louder"]
    assert r["spearman_median"] > 0.5, r
    assert r["effect_size"] > 0.5, r  # dataset stds at full knob, the right way
    assert r["effect_size"] > r["effect_size_min"] + 0.5, r  # a push, not just any change
    assert (chain / "work" / "eval" / "response.png").stat().st_size > 1000
    assert (chain / "work" / "eval" / "drift.png").stat().st_size > 1000


def test_brightness_knob_is_calibrated_and_measured(chain):
    """The brightness direction is fitted, calibrated and evaluated. That it moves the decoded
    centroid is NOT asserted yet: through this fixture VAE (validation SNR -0.3 dB, a fixed
    ~4.5 kHz noise floor in its output) the calibrated change stays at ~0.2 std, the same
    for both signs (measured: effect +0.21 at the top, +0.20 at the bottom). Open in
    issue 3's note; needs a fixture VAE that reproduces brightness."""
    report = json.loads((chain / "work" / "eval" / "report.json").read_text())
    r = report["directions"]["brighter"]
    assert r["descriptor"] == "centroid" and r["clips"] >= 6
    assert all(np.isfinite(r[k]) for k in ("spearman_median", "effect_size", "drift"))


def test_cli_trains_the_vae_stage_too_and_refuses_bad_input(tmp_path, capsys):
    """The CLI with a VAE trained in the run (a few steps: wiring, not quality)."""
    write_kits(tmp_path / "kits", n_kits=3, hits_per_kit=7, seed=11)
    rc = main(["train", "--data", str(tmp_path / "kits"), "--out", str(tmp_path / "b"),
               "--vae", "tiny", "--vae-steps", "3", "--sae-steps", "20", "--sae-features", "256",
               "--sae-k", "8", "--sae-batch", "256", "--calib-clips", "2", "--eval-clips", "2",
               "--knobs", "loudness", "--val-kits", "synth_kit_2", "--exact-duplicates-only",
               "--bins", "4", "--binning", "linear",
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "steerpad train" in out and "bundle:" in out
    assert (tmp_path / "b.work" / "vae" / "vae" / "config.json").is_file()
    bundle = load_bundle(tmp_path / "b")
    assert [d.name for d in bundle.directions] == ["louder"]
    probe = bundle.manifest["probes"]["loudness"]
    assert probe["n_bins"] == 4 and probe["binning"] == "linear"

    rc = main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert rc == 2 and "--data" in capsys.readouterr().err
    rc = main(["eval", str(tmp_path / "b"), "--data", str(tmp_path / "empty_dir_missing"),
               "--out", str(tmp_path / "e")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err
