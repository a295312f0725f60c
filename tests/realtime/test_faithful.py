"""Faithful mode's change (realtime/faithful.py): the source comes back untouched at the centre,
cuts follow the decoder's cuts with the source's own fine structure, boosts add what the decoder
adds, a mirrored change only cuts, the level is kept unless asked, and a tonal source keeps its
partials. With the shipped bundle: a pad plays its source bit-exactly with the knobs centred,
every calibrated knob moves its descriptor on both sides within the level bound, and two
partials survive a quarter turn of every timbre knob."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steerpad.realtime.faithful import ChangeConfig, FaithfulPad, apply_change, istft, stft

SR = 44100
BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
ABSOLUTE = ChangeConfig(keep_level=False)


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.mean(axis=0))) ** 2
    f = np.fft.rfftfreq(x.shape[1], 1 / SR)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-20))


def _lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(x, axis=-1)
    spec[:, np.fft.rfftfreq(x.shape[1], 1 / SR) > cutoff] = 0
    return np.fft.irfft(spec, n=x.shape[1], axis=-1).astype(np.float32)


def _noise(seed: int, n: int = SR) -> np.ndarray:
    env = np.exp(-np.arange(n) / (0.2 * SR))
    return (0.3 * np.random.default_rng(seed).standard_normal((2, n)) * env).astype(np.float32)


def test_stft_round_trip_is_exact():
    x = _noise(0, 12345)
    assert np.abs(istft(stft(x), x.shape[1]) - x).max() < 1e-6


def test_no_change_gives_the_source_back():
    x, p = _noise(1), _noise(2)
    assert np.abs(apply_change(x, p, p) - x).max() < 1e-6


def test_a_cut_in_the_decode_cuts_the_source_there_only():
    x, p = _noise(3), _noise(4)
    y = apply_change(x, p, _lowpass(p, 2000), ABSOLUTE)
    assert _band_db(y, 6000, 20000) < _band_db(x, 6000, 20000) - 20
    assert abs(_band_db(y, 100, 1000) - _band_db(x, 100, 1000)) < 1.0


def test_keep_level_takes_out_the_decoders_overall_level_change():
    x, p = _noise(3), _noise(4)
    quieter = (0.5 * p).astype(np.float32)  # the decode only got 6 dB quieter: no timbre change
    assert np.abs(apply_change(x, p, quieter) - x).max() < 1e-3
    assert _band_db(apply_change(x, p, quieter, ABSOLUTE), 20, 20000) == pytest.approx(
        _band_db(x, 20, 20000) - 6.02, abs=0.3)


def test_a_mirrored_change_cuts_where_the_decoder_adds_and_never_boosts():
    x, p = _noise(8), _lowpass(_noise(9), 3000)
    q = p + (_noise(10) - _lowpass(_noise(10), 3000))  # the decode grows highs
    pad = FaithfulPad(x, p, ABSOLUTE)
    y = pad.render(None, mirrored=q)
    assert _band_db(y, 6000, 20000) < _band_db(x, 6000, 20000) - 10  # the mirror: fewer highs
    assert abs(_band_db(y, 100, 1500) - _band_db(x, 100, 1500)) < 1.0
    lowered = pad.render(None, mirrored=_lowpass(p, 500))  # the decode loses highs: no boost back
    assert _band_db(lowered, 20, 20000) <= _band_db(x, 20, 20000) + 0.1
    kept = FaithfulPad(x, p).render(None, mirrored=q)  # keep_level: a tilt at the source's level
    assert abs(_band_db(kept, 20, 20000) - _band_db(x, 20, 20000)) < 0.5
    assert _band_db(kept, 6000, 20000) - _band_db(kept, 100, 1500) < \
        _band_db(x, 6000, 20000) - _band_db(x, 100, 1500) - 10


def test_a_boost_adds_what_the_source_lacks():
    t = np.arange(SR) / SR
    x = np.tile(0.5 * np.sin(2 * np.pi * 200 * t) * np.exp(-t / 0.3), (2, 1)).astype(np.float32)
    p = _lowpass(_noise(5), 1000)
    q = p + (_noise(6) - _lowpass(_noise(6), 4000))  # the decode grows highs
    y = apply_change(x, p, q, ABSOLUTE)
    assert _band_db(y, 5000, 20000) > _band_db(x, 5000, 20000) + 20
    assert abs(_band_db(y, 150, 250) - _band_db(x, 150, 250)) < 1.0
    assert _band_db(apply_change(x, p, q, ChangeConfig(add_gain=0.0, keep_level=False)), 5000, 20000) < \
        _band_db(x, 5000, 20000) + 1  # without the added path a gain cannot create it


def test_a_level_change_is_a_gain_per_frame_and_leaves_the_spectrum_alone():
    x, p = _noise(11), _noise(12)
    ramp = np.linspace(1.0, 4.0, p.shape[1], dtype=np.float32)  # the decode swells to +12 dB
    q = _lowpass(p, 3000) * ramp  # ... and loses its highs: a level change is not a timbre change
    y = FaithfulPad(x, p).render(None, level=q)
    n = SR // 4
    head, tail = y[:, :n], y[:, -n:]
    for lo, hi in ((100, 1000), (6000, 20000)):  # every band follows the swell, highs included
        assert _band_db(head, lo, hi) - _band_db(x[:, :n], lo, hi) < 3.0
        assert _band_db(tail, lo, hi) - _band_db(x[:, -n:], lo, hi) > 9.0
    spec = lambda a: _band_db(a, 6000, 20000) - _band_db(a, 100, 1000)  # noqa: E731
    assert abs(spec(y) - spec(x)) < 1.0
    limit = FaithfulPad(x, p, ChangeConfig(level_db=6.0)).render(None, level=q)
    assert _band_db(limit[:, -n:], 20, 20000) - _band_db(x[:, -n:], 20, 20000) < 6.5  # within level_db


def test_a_tonal_source_keeps_its_partials_under_a_gentle_change():
    t = np.arange(SR) / SR
    env = np.exp(-t / 0.4)
    tone = (0.4 * np.sin(2 * np.pi * 587 * t) + 0.2 * np.sin(2 * np.pi * 1613 * t)) * env
    x = np.tile(tone, (2, 1)).astype(np.float32)
    p = _noise(7)                      # a decoder that turned the partials into noise
    q = (p * 1.12).astype(np.float32)  # ... and a knob a quarter of the way: +1 dB broadband
    y = apply_change(x, p, q)
    for f in (587, 1613):
        assert abs(_band_db(y, f - 5, f + 5) - _band_db(x, f - 5, f + 5)) < 3.0
    # still two lines, not noise: the energy between them stays far below them
    assert _band_db(y, 800, 1400) < _band_db(y, 580, 595) - 25


# ---------------------------------------------------------------- the shipped bundle, as a pad plays


@pytest.fixture(scope="module")
def worker():
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.renderer import RenderWorker

    bundle = load_bundle(BUNDLE)
    return RenderWorker(bundle, [], out_rate=bundle.sample_rate, analyse=False)


def _pad(worker, audio: np.ndarray, mode: str = "faithful"):
    from steerpad.realtime.renderer import clip_sound

    return clip_sound(worker.bundle, audio, mode)


def _alpha(worker, name: str, u: float, mode: str = "faithful") -> np.ndarray:
    b = worker.bundle
    a = np.zeros(len(b.directions), np.float32)
    k = b.direction_names().index(name)
    a[k] = b.directions[k].scale(mode).alpha(u)
    return a


def _kit_audio(worker, name: str) -> np.ndarray:
    e = next(e for e in worker.bundle.kit if e.name == name)
    assert e.audio is not None, "the default bundle's kit entries carry their source audio"
    return e.audio


def test_the_shipped_bundle_plays_faithful_and_is_calibrated_per_mode(worker):
    b = worker.bundle
    assert b.default_mode == "faithful"
    for d in b.directions:
        for mode in ("faithful", "resynth"):
            s = d.scale(mode)
            assert len(s.up) == 8 and len(s.down) == 8, (d.name, mode)
            assert s.alpha(1.0) > 0 > s.alpha(-1.0), (d.name, mode)


def test_centred_knobs_play_the_source_bit_exactly(worker):
    audio = _kit_audio(worker, "snare")
    out, _ = worker.render(_pad(worker, audio), np.zeros(len(worker.bundle.directions), np.float32))
    assert np.array_equal(out.T[:audio.shape[0]], audio)


@pytest.mark.parametrize("name", ["brighter", "boomier", "crisper", "airier", "noisier", "louder"])
def test_a_sweep_moves_its_descriptor_on_both_sides_within_the_level_bound(worker, name):
    from steerpad.offline.evaluate import DESC_NAMES, clip_means
    from steerpad.offline.knobs import LEVEL_BOUND_DB, level_db

    b = worker.bundle
    d = b.directions[b.direction_names().index(name)]
    j = DESC_NAMES.index(d.descriptor)
    changes = []
    for e in b.kit:  # every kit one-shot: the mean change (as eval's effect sizes) moves both ways
        # step by step (the median of 16 is a clip whose sub, or air, hardly exists: ~0 both ways)
        audio = e.audio
        pad = _pad(worker, audio)
        ref, mask = clip_means(audio, b.sample_rate, b.hop, None)
        values = []
        for u in (-1.0, -0.5, 0.5, 1.0):
            y = worker.render(pad, _alpha(worker, name, u))[0].T[:audio.shape[0]]
            values.append(clip_means(y, b.sample_rate, b.hop, mask)[0][j] - ref[j])
            if name != "louder":  # no timbre knob takes a one-shot's level further than 12 dB
                assert abs(level_db(y) - level_db(audio)) <= LEVEL_BOUND_DB, (name, e.name, u)
        changes.append(values)
    far_left, left, right, far_right = np.mean(changes, axis=0)
    assert far_left < left < 0 < right < far_right, (name, far_left, left, right, far_right)


def test_the_level_knob_moves_loudness_and_not_the_spectrum(worker):
    """`louder` applies the decoder's level change alone: no kit one-shot moves the wrong way,
    the median moves by 3 dB or more each way, and the band balance stays put (within 0.01 in the
    median one-shot, 0.1 in any: a 0.14 s shaker's last 256 samples fade back to the source)."""
    from steerpad.offline.evaluate import DESC_NAMES, clip_means
    from steerpad.offline.knobs import level_db

    b = worker.bundle
    bands = [DESC_NAMES.index(n) for n in DESC_NAMES if n.startswith("band_")]
    moved, shifts = [], []
    for e in b.kit:
        pad = _pad(worker, e.audio)
        ref, mask = clip_means(e.audio, b.sample_rate, b.hop, None)
        down, up = (worker.render(pad, _alpha(worker, "louder", u))[0].T[:e.audio.shape[0]]
                    for u in (-1.0, 1.0))
        moved.append((level_db(e.audio) - level_db(down), level_db(up) - level_db(e.audio)))
        assert min(moved[-1]) >= 0.0, (e.name, moved[-1])
        for y in (down, up):
            shares = clip_means(y, b.sample_rate, b.hop, mask)[0][bands]
            shifts.append(float(np.abs(shares - ref[bands]).max()))
            assert shifts[-1] < 0.1, (e.name, shares, ref[bands])
    assert np.median(moved, axis=0).min() > 3.0, moved
    assert np.median(shifts) < 0.01, shifts


@pytest.mark.parametrize("name", ["brighter", "boomier", "crisper", "airier", "noisier", "warmer",
                                  "punchier"])
def test_a_tonal_source_keeps_its_two_partials_at_a_quarter_turn(worker, name):
    t = np.arange(SR) / SR
    tone = (0.4 * np.sin(2 * np.pi * 587 * t) + 0.2 * np.sin(2 * np.pi * 1613 * t)) * np.exp(-t / 0.4)
    audio = np.tile(tone, (worker.bundle.channels, 1)).astype(np.float32)
    pad = _pad(worker, audio)
    for u in (-0.25, 0.25):
        y = worker.render(pad, _alpha(worker, name, u))[0].T[:audio.shape[0]]
        for f in (587, 1613):
            assert abs(_band_db(y, f - 5, f + 5) - _band_db(audio, f - 5, f + 5)) < 3.0, (name, u, f)


def test_a_bounce_of_one_hit_is_the_source_after_one_gain(tmp_path):
    """Velocity 127, the source's own rate, knobs centred: the bounce is the kit entry's source
    audio times one scalar (the pad's gain and pan law), past the voice's 32-sample fade-in and
    the master bus's look-ahead delay."""
    from steerpad.realtime.bounce import bounce
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.events import NoteOn
    from steerpad.realtime.presets import load_preset

    bundle = load_bundle(BUNDLE)
    source = next(e for e in bundle.kit if e.name == "snare").audio  # [C, T] at the bundle rate
    preset = tmp_path / "one.toml"
    preset.write_text('name = "one"\ncontroller = "generic"\n\n[[pads]]\nsample = "kit:snare"\n'
                      'gain_db = -12.0\npan = 0.3\n\n[[knobs]]\ndirection = "brighter"\n')
    out, _ = bounce(bundle, load_preset(preset), [(0, NoteOn(9, 36, 127))], bundle.sample_rate, 256)
    n = source.shape[1]
    lag = int(np.argmax([np.dot(out[d:d + 4096, 0], source[0, :4096]) for d in range(64)]))
    for ch in range(2):
        x, y = source[min(ch, source.shape[0] - 1), 32:], out[lag + 32:lag + n, ch]
        gain = float(np.dot(x, y) / np.dot(x, x))
        assert np.abs(y - gain * x).max() <= 1e-5, (ch, lag, gain)
        assert np.abs(out[lag + n:]).max() < 1e-6  # nothing after it either


def test_a_silent_source_renders_without_a_warning():
    """A silent kit one-shot (a band of the source at 0: the boost divides by it) printed numpy's
    overflow warnings, two lines on the terminal of a render that succeeded (a hostile pass)."""
    import warnings

    rng = np.random.default_rng(0)
    plain = (0.1 * rng.standard_normal((2, 44100))).astype(np.float32)
    steered = (0.3 * rng.standard_normal((2, 44100))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = FaithfulPad(np.zeros((2, 44100), np.float32), plain).render(steered)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("value", [1e30, 2000.0])
def test_a_pad_file_far_beyond_full_scale_is_one_line(tmp_path, value):
    import soundfile as sf

    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.engine import load_file_sound
    from steerpad.realtime.errors import SteerpadError

    path = tmp_path / "hot.wav"
    sf.write(str(path), np.full((4410, 2), value, np.float32), 44100, subtype="FLOAT")
    with pytest.raises(SteerpadError, match=r"hot\.wav: the audio is empty, not finite or peaks above 1000"):
        load_file_sound(load_bundle(Path(__file__).resolve().parents[2] / "models" / "default"), path,
                        "faithful", "p.toml: pads[1].sample")
