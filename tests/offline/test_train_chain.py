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

pytestmark = pytest.mark.slow  # ~2 min on 2 cores

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
    # each knob calibrated again per render mode, on what a pad plays (steerpad calibrate)
    assert bundle.default_mode == "faithful" and m["render"]["default_mode"] == "faithful"
    for d in bundle.directions:
        for mode in ("faithful", "resynth"):
            entry = next(e for e in m["directions"] if e["name"] == d.name)["modes"][mode]
            assert len(entry["up"]) == len(entry["down"]) == 8, (d.name, mode)
            assert d.scale(mode).alpha(1.0) > 0 > d.scale(mode).alpha(-1.0)
            assert {"effect_up_std", "effect_down_std", "reached_up", "reached_down"} <= set(entry)
    report = json.loads((chain / "work" / "eval" / "report.json").read_text())
    assert report["mode"] == "faithful" and report["fidelity"]["centre_max_abs"] == 0.0


def test_calibrate_cli_recalibrates_in_place_and_refuses_bad_input(chain, tmp_path, capsys):
    import shutil

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(chain / "bundle", bundle_dir)
    kits = chain / "kits" / "synth_kit_1"
    before = json.loads((bundle_dir / "manifest.json").read_text())
    assert main(["calibrate", str(bundle_dir), "--data", str(kits), "--clips", "2",
                 "--directions", "louder"]) == 0, capsys.readouterr().err
    after = json.loads((bundle_dir / "manifest.json").read_text())
    louder = next(e for e in after["directions"] if e["name"] == "louder")
    assert louder["modes"] != next(e for e in before["directions"] if e["name"] == "louder")["modes"]
    assert [e for e in after["directions"] if e["name"] == "brighter"] == \
        [e for e in before["directions"] if e["name"] == "brighter"]  # only the one asked
    load_bundle(bundle_dir)
    capsys.readouterr()
    for args, words in (([str(bundle_dir), "--data", str(tmp_path / "nowhere")], "not a folder"),
                        ([str(bundle_dir), "--data", str(kits), "--directions", "nope"], "nope"),
                        ([str(kits), "--data", str(kits)], str(kits)),
                        ([str(bundle_dir), "--data", str(kits), "--kit-audio", str(tmp_path)],
                         "--kit-audio")):
        assert main(["calibrate", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err, err


def test_loudness_knob_steers_held_out_drums(chain):
    report = json.loads((chain / "work" / "eval" / "report.json").read_text())
    assert report["identity_max_abs"] <= 1e-4, report["identity_max_abs"]
    held_out = {Path(c).parent.name for c in report["clips"]}
    assert held_out <= set(VAL_KITS), held_out
    # Measured with the spectral fixture VAE: rho median 0.95, every clip monotonic, effect
    # +0.62 std at the top and -0.49 at the bottom.
    r = report["directions"]["louder"]
    assert r["spearman_median"] > 0.7, r
    assert r["monotonic_fraction"] >= 0.75, r
    assert r["effect_size"] > 0.3 and r["effect_size_min"] < -0.2, r  # both ways, the right way
    assert (chain / "work" / "eval" / "response.png").stat().st_size > 1000
    assert (chain / "work" / "eval" / "drift.png").stat().st_size > 1000


def test_brightness_knob_steers_held_out_drums(chain, tmp_path):
    """The brighter knob moves the spectral centroid of kits held out of everything, up when
    turned up and down when turned down. In resynthesis (the decoder's output), measured: rho
    median 1.0 and every clip monotonic, effect +0.98 std at full knob and -1.0 at the bottom
    (the calibration's target is 1 std), drift 0.53. In faithful mode (train's own eval) the
    synthetic held-out hits get darker (-0.90) far more than brighter (+0.14): the fixture VAE
    adds little to them that their own noise does not already have."""
    from steerpad.offline.evaluate import evaluate_bundle

    report = evaluate_bundle(chain / "bundle", [chain / "kits" / k for k in VAL_KITS], tmp_path, max_clips=8,
                             points=2, log=lambda s: None, only=["brighter"], mode="resynth")
    r = report["directions"]["brighter"]
    assert r["descriptor"] == "centroid" and r["clips"] >= 6
    assert r["spearman_median"] > 0.8, r
    assert r["monotonic_fraction"] >= 0.75, r
    assert r["effect_size"] > 0.5 and r["effect_size_min"] < -0.5, r
    assert r["drift"] < 1.5, r  # it moves the centroid more than the other descriptors
    faithful = json.loads((chain / "work" / "eval" / "report.json").read_text())["directions"]["brighter"]
    assert faithful["effect_size"] > 0.05 and faithful["effect_size_min"] < -0.5, faithful


def test_cli_trains_the_vae_stage_too_and_refuses_bad_input(tmp_path, capsys):
    """The CLI with a VAE trained in the run (a few steps: wiring, not quality)."""
    write_kits(tmp_path / "kits", n_kits=3, hits_per_kit=7, seed=11)
    picked = sorted((tmp_path / "kits" / "synth_kit_1").glob("*.*"))
    picked = [p for p in picked if p.suffix != ".xml"][:2]
    kit = tmp_path / "kit.toml"
    kit.write_text("".join(f'[[kit]]\nname = "pad{i}"\nfile = "synth_kit_1/{p.name}"\n\n'
                           for i, p in enumerate(picked)))
    rc = main(["train", "--data", str(tmp_path / "kits"), "--out", str(tmp_path / "b"),
               "--kit", str(kit),
               "--vae", "tiny", "--vae-steps", "3", "--sae-steps", "20", "--sae-features", "256",
               "--sae-k", "8", "--sae-batch", "256", "--calib-clips", "2", "--eval-clips", "2",
               "--knobs", "loudness", "--val-kits", "synth_kit_2", "--exact-duplicates-only",
               "--bins", "4", "--binning", "linear",
               "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "steerpad train" in out and "bundle:" in out
    assert (tmp_path / "b.work" / "vae" / "vae" / "config.json").is_file()
    bundle = load_bundle(tmp_path / "b")
    assert [d.name for d in bundle.directions] == ["louder"]
    probe = bundle.manifest["probes"]["loudness"]
    assert probe["n_bins"] == 4 and probe["binning"] == "linear"
    # the kit file's clips are the bundle's kit entries, encoded by its VAE
    assert [e.name for e in bundle.kit] == ["pad0", "pad1"]
    assert [e["source"] for e in bundle.manifest["kit"]] == [f"synth_kit_1/{p.name}" for p in picked]

    # more --vae-steps trains the finished VAE on, and rebuilds what came from it
    sae_before = (tmp_path / "b.work" / "sae" / "metrics.json").stat().st_mtime_ns
    rc = main(["train", "--data", str(tmp_path / "kits"), "--out", str(tmp_path / "b"),
               "--kit", str(kit), "--vae", "tiny", "--vae-steps", "4", "--sae-steps", "20",
               "--sae-features", "256", "--sae-k", "8", "--sae-batch", "256", "--calib-clips", "2",
               "--eval-clips", "2", "--knobs", "loudness", "--val-kits", "synth_kit_2",
               "--exact-duplicates-only", "--bins", "4", "--binning", "linear", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    vae_metrics = json.loads((tmp_path / "b.work" / "vae" / "metrics.json").read_text())
    assert vae_metrics["run/steps"] == 4
    assert (tmp_path / "b.work" / "sae" / "metrics.json").stat().st_mtime_ns > sae_before
    assert load_bundle(tmp_path / "b").manifest["provenance"]["vae_steps"] == 4

    bad = tmp_path / "bad.toml"
    for text, words in (('[[kit]]\nname = "x"\nfile = "nowhere.wav"\n', "matches no clip"),
                        ('[[kit]]\nname = "a b"\nfile = "x.wav"\n', "name 'a b'"),
                        ("kit = 3\n", "no [[kit]] entries"), ("[[kit]\n", "unreadable")):
        bad.write_text(text)
        rc = main(["train", "--data", str(tmp_path / "kits"), "--out", str(tmp_path / "b"),
                   "--vae", "tiny", "--vae-steps", "3", "--sae-steps", "20", "--sae-features",
                   "256", "--sae-k", "8", "--sae-batch", "256", "--knobs", "loudness",
                   "--val-kits", "synth_kit_2", "--exact-duplicates-only", "--kit", str(bad),
                   "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and str(bad) in err and words in err, err

    rc = main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert rc == 2 and "--data" in capsys.readouterr().err
    rc = main(["eval", str(tmp_path / "b"), "--data", str(tmp_path / "empty_dir_missing"),
               "--out", str(tmp_path / "e")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_a_stopped_calibration_leaves_the_bundle_as_it_was(chain, tmp_path, monkeypatch):
    """Ctrl-C (or any failure) while `steerpad calibrate` measures: the manifest keeps its old
    calibration and render settings (the interim manifest used to drop the knobs' `modes`)."""
    import shutil

    from steerpad.offline import knobs

    bundle_dir = Path(shutil.copytree(chain / "bundle", tmp_path / "bundle"))
    before = (bundle_dir / "manifest.json").read_bytes()
    measured = []

    def stop(measure, direction, mode, log=print):
        measured.append(json.loads((bundle_dir / "manifest.json").read_text()))  # the interim one
        raise KeyboardInterrupt

    monkeypatch.setattr(knobs, "calibrate_direction", stop)
    b = load_bundle(bundle_dir)
    clips = [np.asarray(0.1 * np.random.default_rng(0).standard_normal((b.channels, 4 * b.hop)), np.float32)]
    with pytest.raises(KeyboardInterrupt):
        knobs.calibrate_bundle(bundle_dir, clips, only=["louder"])
    assert measured and all("modes" in d for d in measured[0]["directions"])
    assert json.loads((bundle_dir / "manifest.json").read_bytes()) == json.loads(before)
    load_bundle(bundle_dir)


def test_a_stopped_calibration_keeps_the_kit_audio_it_rewrote_listed_as_it_is(tmp_path, monkeypatch):
    """`calibrate --kit-audio` stores each kit entry's audio before it measures: stopped after
    that, the manifest put back lists the rewritten file's new hash (the bundle still loads)."""
    import shutil

    from steerpad.offline import knobs

    bundle_dir = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "models" / "default",
                                      tmp_path / "bundle"))
    before = json.loads((bundle_dir / "manifest.json").read_text())
    b = load_bundle(bundle_dir)
    entry = b.kit[0]

    def stop(measure, direction, mode, log=print):
        raise KeyboardInterrupt

    monkeypatch.setattr(knobs, "calibrate_direction", stop)
    with pytest.raises(KeyboardInterrupt):
        knobs.calibrate_bundle(bundle_dir, [], kit={entry.name: 0.5 * entry.audio}, only=["louder"])
    after = json.loads((bundle_dir / "manifest.json").read_text())
    assert [d.get("modes") for d in after["directions"]] == [d.get("modes") for d in before["directions"]]
    rel = next(e["audio"] for e in before["kit"] if e["name"] == entry.name)
    assert after["files"][rel] != before["files"][rel]  # rewritten, and listed as it is now
    assert np.allclose(load_bundle(bundle_dir).kit[0].audio, 0.5 * entry.audio, atol=1e-4)
