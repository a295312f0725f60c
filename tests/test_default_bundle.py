"""The shipped default bundle (models/default, trained by scripts/train_default) and the demo:
it loads and validates, every pad of presets/default.toml renders, the demo bounce runs, and
the brightness and loudness knobs steer the validation kits it was never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.presets import load_preset

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "models" / "default"
PRESET = ROOT / "presets" / "default.toml"
HYDROGEN = Path("/usr/share/hydrogen/data/drumkits")
# scripts/train_default's validation kits (package hydrogen-drumkits; ./scripts/test installs it)
VAL_KITS = ["ColomboAcousticDrumkit", "HardElectro1", "Millo_MultiLayered3"]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


def test_default_bundle_loads_within_its_budgets(bundle):
    assert bundle.sample_rate == 44100 and bundle.latent_dim == 64 and bundle.hop == 2048
    assert bundle.n_features == 4096 and bundle.k == 32
    assert len(bundle.kit) == 16
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size <= 40e6, size
    assert (BUNDLE / "MODEL_CARD.md").stat().st_size > 2000
    for png in ("reconstructions.png", "response.png", "drift.png"):
        assert (BUNDLE / "report" / png).stat().st_size > 10_000


def test_every_pad_of_the_default_preset_renders(bundle):
    preset = load_preset(PRESET)
    assert len(preset.pads) == 16 and len(preset.knobs) == 8
    with Engine(bundle, preset, 48000, 256) as engine:
        assert engine.start(wait=120)
        for pad, audio in zip(preset.pads, engine.worker.slots):
            assert audio is not None, pad
            peak = float(np.abs(audio).max())
            assert np.isfinite(audio).all() and 10 ** (-40 / 20) < peak < 4, (pad.sample, peak)
        assert engine.worker.stats.errors == 0


@pytest.mark.slow
def test_demo_bounces_the_performance(tmp_path):
    from steerpad.offline.cli import main
    from steerpad.realtime.demo import knob_lanes

    assert main(["demo", "--out", str(tmp_path), "--no-play"]) == 0
    import soundfile as sf

    info = sf.info(str(tmp_path / "demo.wav"))
    assert info.samplerate == 48000 and info.channels == 2 and info.duration > 45
    audio, _ = sf.read(str(tmp_path / "demo.wav"), dtype="float32")
    assert np.abs(audio).max() < 1.0 and np.sqrt((audio**2).mean()) > 0.01
    assert (tmp_path / "demo.png").stat().st_size > 30_000
    times, lanes = knob_lanes(tmp_path / "demo.jsonl")
    preset = load_preset(PRESET)
    assert set(lanes) == {k.direction for k in preset.knobs}
    for name, lane in lanes.items():  # each knob sweeps its whole range at some point
        assert np.nanmin(lane) < 0.05 and np.nanmax(lane) > 0.95, name


@pytest.mark.slow
def test_brightness_and_loudness_steer_the_validation_kits(bundle, tmp_path):
    from steerpad.offline.evaluate import evaluate_bundle

    missing = [k for k in VAL_KITS if not (HYDROGEN / k).is_dir()]
    if missing:
        pytest.skip(f"validation kits not installed ({', '.join(missing)}): apt install hydrogen-drumkits")
    report = evaluate_bundle(BUNDLE, [HYDROGEN / k for k in VAL_KITS], tmp_path, max_clips=12,
                             points=3, log=lambda s: None, only=["brighter", "louder"])
    assert report["identity_max_abs"] <= 1e-4, report["identity_max_abs"]
    for name in ("brighter", "louder"):
        r = report["directions"][name]
        assert r["monotonic_fraction"] >= 0.8, (name, r["monotonic_fraction"], r["spearman_median"])
        assert r["effect_size"] > 0.3 and r["effect_size_min"] < -0.3, (name, r)
    card = json.loads((BUNDLE / "report" / "steering_eval.json").read_text())
    assert set(card["directions"]) >= {"brighter", "louder"}


@pytest.mark.slow
def test_demo_plays_live_on_jack(jack_server, tmp_path):
    """The demo's live play: the engine on a real (dummy-driver) JACK output, fed by a MIDI file
    in real time: every note-on is played, a knob move re-renders while it plays."""
    import mido

    from steerpad.realtime.demo import play_live

    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks a second
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i in range(6):
        if i == 3:
            track.append(mido.Message("control_change", channel=0, control=70, value=127, time=0))
        track.append(mido.Message("note_on", channel=9, note=36 + i, velocity=100, time=240))
    mid.save(tmp_path / "short.mid")
    live = play_live(BUNDLE, PRESET, tmp_path / "short.mid", tail_s=0.5)
    assert live["played"], live
    assert live["hits"] == 6 and live["callback_errors"] == 0, live


def test_demo_writes_only_over_its_own_outputs(tmp_path, capsys):
    """demo.png, demo.wav and demo.jsonl are claimed as render claims its outputs, before the
    bounce: a file steerpad did not write (or a link to one) is refused with one line and left
    alone, and so is an --out inside an input (the bundle)."""
    from steerpad.offline.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "demo.png").write_text("mine")
    victim = tmp_path / "victim.txt"
    victim.write_text("victim")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "demo.png").symlink_to(victim)
    for out, words in ((mine, "steerpad did not write it"), (linked, "is a symlink"),
                       (BUNDLE, "lies inside the input")):
        assert main(["demo", "--out", str(out), "--no-play"]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "demo." in err, err
        assert not (out / "demo.wav").exists() and not (out / "demo.jsonl").exists()
    assert (mine / "demo.png").read_text() == "mine" and victim.read_text() == "victim"


def test_demo_picture_is_marked_and_drawn_without_knobs(tmp_path):
    """plot() draws a performance with no knob lanes (a preset without knobs), marks the PNG as
    steerpad's (outputs.kind_of: "picture") and draws over its own picture again."""
    import soundfile as sf

    from steerpad.realtime.demo import plot
    from steerpad.realtime.outputs import kind_of

    wav, jsonl, png = tmp_path / "demo.wav", tmp_path / "demo.jsonl", tmp_path / "demo.png"
    sf.write(str(wav), 0.1 * np.random.default_rng(0).standard_normal((48000, 2)), 48000)
    jsonl.write_text("".join(json.dumps({"frame": i, "time": i / 10, "messages": [["/steerpad/rms", 0.1]]})
                             + "\n" for i in range(10)))
    for _ in range(2):
        assert plot(wav, jsonl, png) == png and kind_of(png) == "picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.jsonl", "demo.png", "demo.wav"]
