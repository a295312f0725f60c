"""The engine offline (a bounce): the same Engine the live stream drives, fed from a MIDI file.

Plays the bundle the synthetic-drums chain trains (conftest `chain`), with one-shots from its
held-out kit as pad samples (encoded with the bundle's encoder)."""

from __future__ import annotations

import mido
import numpy as np
import pytest
import soundfile as sf

from steerpad.offline.cli import main
from steerpad.realtime.bounce import bounce, read_performance
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, NoteOn
from steerpad.realtime.faithful import MODES
from steerpad.realtime.presets import load_preset
from tests.chainbundle import write_preset

pytestmark = pytest.mark.slow  # needs the chain bundle (~2 min, once per session)

RATE = 48000
@pytest.fixture(scope="module")
def rig(chain, tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    bundle = load_bundle(chain / "bundle")
    preset = load_preset(write_preset(folder, chain / "kits" / "synth_kit_6"))
    return bundle, preset, folder


def note(pad: int, velocity: int = 100) -> NoteOn:
    return NoteOn(9, 36 + pad, velocity)  # generic map: pads on channel 10 from note 36


def knob(index: int, position: float) -> ControlChange:
    raw = int(round(position * 127))
    return ControlChange(0, 70 + index, raw / 127, raw)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def onsets(audio: np.ndarray, threshold: float = 1e-3) -> list[int]:
    """Sample indices where sound starts after at least 2000 samples of silence."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > threshold)
    if loud.size == 0:
        return []
    starts = [int(loud[0])] + [int(b) for a, b in zip(loud[:-1], loud[1:]) if b - a > 2000]
    return starts


def test_bounce_is_deterministic_and_sample_accurate(rig):
    bundle, preset, _ = rig
    times = [1000, 30_011, 61_257, 90_000]  # not on block boundaries
    events = [(t, note(p)) for t, p in zip(times, (2, 3, 2, 3))]
    a, counters = bounce(bundle, preset, events, RATE, blocksize=256)
    b, _ = bounce(bundle, preset, events, RATE, blocksize=256)
    assert a.dtype == np.float32 and a.shape[1] == 2
    assert np.array_equal(a, b)  # bit-identical
    assert counters["silent_hits"] == 0 and counters["render_errors"] == 0
    assert np.abs(a[:times[0]]).max() == 0.0  # nothing before the first note
    found = onsets(a)
    assert len(found) == len(times), found
    for want, got in zip(times, found):
        assert 0 <= got - want < 40, (want, got)  # within the 32-sample fade-in
    assert np.abs(a).max() <= 10 ** (-0.3 / 20) + 1e-6  # the master bus' ceiling

    # The block size changes when blocks start, never where notes land.
    c, _ = bounce(bundle, preset, events, RATE, blocksize=128)
    assert onsets(c) == found


def test_knob_moves_in_a_performance_are_heard(rig):
    """A performance turns the `louder` knob between hits: each hit uses the fresh render."""
    bundle, preset, _ = rig
    snare, gap = 2, RATE // 2
    events = [(0, note(snare)), (gap - 100, knob(1, 1.0)), (gap, note(snare)),
              (2 * gap - 100, knob(1, 0.0)), (2 * gap, note(snare))]
    audio, counters = bounce(bundle, preset, events, RATE)
    centre, up, down = (rms_db(audio[i * gap:i * gap + 8000]) for i in range(3))
    assert counters["renders"] >= 3  # the snare at each of the three knob states (and its ringing notes)
    assert up > centre + 1.0 > down + 2.0, (down, centre, up)


def test_choke_group_cuts_the_open_hat(rig):
    bundle, preset, _ = rig
    closed, opened = 0, 1
    alone, _ = bounce(bundle, preset, [(0, note(opened))], RATE)
    choked, counters = bounce(bundle, preset, [(0, note(opened)), (4800, note(closed))], RATE)
    assert counters["choked"] == 1
    hat_only, _ = bounce(bundle, preset, [(4800, note(closed))], RATE)
    # After the fade, what sounds is the closed hat alone: the open hat's tail is gone.
    tail = slice(4800 + 512, 4800 + 12000)
    residual = choked[tail] - hat_only[tail]
    assert rms_db(alone[tail]) > -60
    assert rms_db(residual) < rms_db(alone[tail]) - 40


def test_program_change_recalls_a_snapshot(rig):
    bundle, preset, folder = rig
    text = preset.path.read_text() + '\n[snapshots]\n5 = { louder = 1.0 }\n'
    path = folder / "snap.toml"
    path.write_text(text)
    snap = load_preset(path)
    with Engine(bundle, snap, RATE, 256, master=False) as engine:
        engine.start(wait=120)
        from steerpad.realtime.events import ProgramChange

        engine.handle(ProgramChange(0, 5))
        assert engine.knobs[1] == 1.0 and engine.knobs[0] == 0.5
        # One α row per render mode: the knob full right is the top of that mode's own knob scale
        # (calibrated per mode), on the row of the mode the pads play as on the other.
        louder = bundle.direction_names().index("louder")
        alpha = engine.alpha()
        assert alpha.shape == (len(MODES), len(bundle.directions))
        for m, mode in enumerate(MODES):
            top = bundle.directions[louder].scale(mode).up[-1]
            assert top > 0 and alpha[m, louder] == pytest.approx(top), mode
        mode = snap.pad_mode(snap.pads[0], bundle.default_mode)  # what the pads play
        full = bundle.directions[louder].scale(mode).alpha(1.0)
        assert alpha[MODES.index(mode), louder] == pytest.approx(full)
        engine.handle(ProgramChange(0, 6))  # no such snapshot: ignored, counted
        assert engine.unmapped == 1 and engine.knobs[1] == 1.0


def test_a_failing_render_keeps_the_previous_sound(rig):
    bundle, preset, _ = rig
    with Engine(bundle, preset, RATE, 256, master=False) as engine:
        assert engine.start(wait=120)
        before = list(engine.worker.slots)
        real = engine.worker.render

        def broken(sound, alpha):
            raise RuntimeError("onnxruntime fell over")

        engine.worker.render = broken
        engine.set_knob(0, 0.9)
        assert engine.worker.wait_fresh(30)
        assert all(a is b for a, b in zip(before, engine.worker.slots))
        assert engine.worker.stats.errors == 4 and "onnxruntime fell over" in engine.worker.stats.last_error
        engine.handle(note(2))
        out = np.zeros((256, 2), np.float32)
        engine.process(out)
        assert np.abs(out).max() > 0  # the old render plays

        engine.worker.render = real
        engine.set_knob(0, 0.8)
        assert engine.worker.wait_fresh(60)
        assert engine.worker.errors == [""] * 16
        assert all(a is not b for a, b in zip(before[:4], engine.worker.slots[:4]))


def test_render_cli_writes_a_wav_and_refuses_a_bad_file(rig, tmp_path, capsys):
    bundle, preset, _ = rig
    mid = mido.MidiFile()
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.Message("note_on", channel=9, note=38, velocity=100, time=0))
    track.append(mido.Message("control_change", channel=0, control=71, value=127, time=240))
    track.append(mido.Message("note_on", channel=9, note=38, velocity=100, time=240))
    mid.save(tmp_path / "perf.mid")
    events = read_performance(tmp_path / "perf.mid", RATE)
    assert [type(e).__name__ for _, e in events] == ["NoteOn", "ControlChange", "NoteOn"]
    assert events[1][0] == pytest.approx(0.25 * RATE, abs=1)  # 240 ticks at 480 ppq, 120 bpm

    out = tmp_path / "out" / "perf.wav"
    rc = main(["render", str(tmp_path / "perf.mid"), "--bundle", str(bundle.path), "--preset",
               str(preset.path), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE and audio.shape[1] == 2 and np.abs(audio).max() > 0.01
    assert "wrote" in capsys.readouterr().out

    (tmp_path / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    rc = main(["render", str(tmp_path / "bad.mid"), "--bundle", str(bundle.path), "--preset",
               str(preset.path), "--out", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.mid" in err and "not a readable MIDI file" in err
    assert not (tmp_path / "x.wav").exists()
    with pytest.raises(SteerpadError, match="nope.mid"):
        read_performance(tmp_path / "nope.mid", RATE)


def test_each_render_comes_with_what_it_is_made_of(rig):
    """The worker analyses every render (for the visualizer): the probes' read-out per latent
    frame and the strongest SAE features; `sounding()` says which pad is where."""
    bundle, preset, _ = rig
    with Engine(bundle, preset, RATE, 256, master=False) as engine:
        assert engine.start(wait=120)
        a = engine.worker.analysis[2]
        n = bundle.kit[0].latents.shape[1] if bundle.kit else engine.worker.sources[2].latents.shape[1]
        assert set(a.probe) >= {"centroid", "loudness"}
        assert all(v.shape == (n,) and 0 <= v.min() <= v.max() <= 1 for v in a.probe.values())
        assert a.top_index.shape == a.top_value.shape == (n, 8) and a.top_index.min() >= 2
        assert (np.diff(a.top_value, axis=1) <= 0).all()  # strongest first
        assert a.frame_s == pytest.approx(bundle.hop / bundle.sample_rate)
        quiet = a.probe["loudness"].mean()
        engine.set_knob(1, 1.0)  # louder
        assert engine.worker.wait_fresh(60, analysed=True)
        assert engine.worker.analysis[2].probe["loudness"].mean() > quiet  # the probe hears it
        engine.handle(note(2))
        engine.process(np.zeros((256, 2), np.float32))
        (pad, seconds), = engine.sounding()
        assert pad == 2 and 0 < seconds <= 256 / RATE
