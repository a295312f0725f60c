"""Per-frame descriptors against ground truth: pure sines, chirps and noise with known
frequency, level and flatness, and drumsynth hits with known pitch and brightness. Frame
alignment (latent frame i = samples [i * hop, (i + 1) * hop)), silence, padding and bad input."""

from __future__ import annotations

import math

import drumsynth
import numpy as np
import pytest

from steerpad.offline.descriptors import (
    DESCRIPTORS,
    FrameDescriptors,
    describe_clips,
    frame_descriptors,
)
from steerpad.realtime.descriptors import (
    BANDS,
    SPECTRAL_NAMES,
    SPECTRAL_UNITS,
    band_matrix,
    spectral_features,
)

SR = 44100
HOP = 2048
NAMES = tuple(d.name for d in DESCRIPTORS)
COL = {name: i for i, name in enumerate(NAMES)}
BAND_COLS = [COL[f"band_{name}"] for name, _, _ in BANDS]


def _sine(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return amp * np.sin(2 * np.pi * freq * t)


def _col(d: FrameDescriptors, name: str, sounding_only: bool = True) -> np.ndarray:
    v = d.values[:, COL[name]]
    return v[d.sounding] if sounding_only else v


def _hit(kind: str, params: dict) -> FrameDescriptors:
    return frame_descriptors(drumsynth.render(kind, params)[None], SR, HOP)


# ---------------------------------------------------------------- names

def test_names_units_and_bands():
    assert NAMES[: len(SPECTRAL_NAMES)] == SPECTRAL_NAMES
    assert NAMES[-2:] == ("pitch", "pitch_confidence")
    assert all(d.unit == SPECTRAL_UNITS[d.name] for d in DESCRIPTORS if d.name in SPECTRAL_UNITS)
    assert all(d.doc for d in DESCRIPTORS)
    # ordered and contiguous, from 20 Hz to Nyquist; every bin >= 20 Hz is in exactly one band
    assert all(a[2] == b[1] for a, b in zip(BANDS, BANDS[1:])) and BANDS[-1][2] == math.inf
    m = band_matrix(HOP, SR)
    freqs = np.fft.rfftfreq(HOP, 1 / SR)
    np.testing.assert_array_equal(m.sum(axis=1), freqs >= BANDS[0][1])


# ---------------------------------------------------------------- pure signals

def test_sine_440():
    d = frame_descriptors(_sine(440.0, 1.5)[None], SR, HOP)
    assert d.names == NAMES and d.values.dtype == np.float32 and d.sounding[:-1].all()
    inner = slice(1, -1)  # the last frame is half zero padding
    v = d.values[inner]
    np.testing.assert_allclose(v[:, COL["centroid"]], 440.0, rtol=0.01)
    np.testing.assert_allclose(v[:, COL["pitch"]], 440.0, rtol=0.01)  # bins are 0.58 % apart
    assert (v[:, COL["pitch_confidence"]] > 0.5).all()
    assert (v[:, COL["flatness"]] < 0.01).all()
    np.testing.assert_allclose(v[:, COL["crest"]], 10 * math.log10(2), atol=0.03)
    np.testing.assert_allclose(v[:, COL["loudness"]], 20 * math.log10(0.5 / math.sqrt(2)),
                               atol=0.03)
    assert (v[:, COL["band_low_mid"]] > 0.999).all()


def test_white_noise():
    x = np.random.default_rng(0).standard_normal((40, HOP)) * 0.3
    f = spectral_features(x, SR)
    flat = f[:, SPECTRAL_NAMES.index("flatness")]
    assert (flat > 0.5).all() and abs(flat.mean() - 0.56) < 0.02  # E[geo/arith] of exp. power
    np.testing.assert_allclose(f[:, SPECTRAL_NAMES.index("centroid")].mean(), SR / 4, rtol=0.03)


def test_pitch_is_measured_at_the_frame_centre():
    """An exponential chirp (2 octaves / s): pitch matches the truth at i * hop + hop / 2 within
    1.5 %; half a frame off either way would be ~3 % off."""
    t = np.arange(SR) / SR
    f0, rate = 200.0, 2.0
    x = 0.5 * np.sin(2 * np.pi * f0 * (2 ** (rate * t) - 1) / (rate * math.log(2)))
    d = frame_descriptors(x[None], SR, HOP)
    i = np.arange(1, len(d.values) - 1)
    err = d.values[i, COL["pitch"]] / (f0 * 2 ** (rate * (i + 0.5) * HOP / SR)) - 1
    assert np.abs(err).max() < 0.015, err


# ---------------------------------------------------------------- drums with known parameters

def test_brighter_hats_have_higher_centroid_and_more_air():
    dark = _hit("hat", {"brightness_hz": 3000.0, "decay_s": 0.1})
    bright = _hit("hat", {"brightness_hz": 12000.0, "decay_s": 0.1})
    for name in ("centroid", "band_air"):
        assert _col(bright, name)[0] > _col(dark, name)[0]
        assert _col(bright, name).mean() > _col(dark, name).mean()
    assert _col(dark, "band_air")[0] < 0.05 < 0.5 < _col(bright, "band_air")[0]


def test_kick_energy_is_in_the_sub_band():
    d = _hit("kick", {"pitch_hz": 55.0, "decay_s": 0.5})
    bands = d.values[d.sounding][:, BAND_COLS]
    assert (bands.argmax(axis=1) == 0).all()  # sub dominates every sounding frame
    assert bands[1:, 0].min() > 0.95  # after the downward sweep (from 220 Hz) in frame 0


def test_tom_pitch():
    """Tom at 150 Hz settles from a +40 % sweep (time constant 50 ms): after 0.15 s pitch is
    within 1 % of the instantaneous truth; measured 177, 173, 160 Hz on frames 0-2 (the sweep)."""
    d = _hit("tom", {"pitch_hz": 150.0, "decay_s": 0.4})
    i = np.nonzero(d.sounding)[0]
    centre = (i + 0.5) * HOP / SR
    truth = 150.0 * (1 + 0.4 * np.exp(-centre / 0.05))
    late = centre > 0.15
    assert late.sum() >= 4
    np.testing.assert_allclose(d.values[i[late], COL["pitch"]], truth[late], rtol=0.01)
    assert (d.values[i[late], COL["pitch_confidence"]] > 0.9).all()
    assert abs(np.median(d.values[i, COL["pitch"]]) / 150.0 - 1) < 0.02


# ---------------------------------------------------------------- level, alignment, silence

def test_level_scaling_and_band_sums():
    x = drumsynth.render("snare", {"brightness_hz": 6000.0})[: 6 * HOP].reshape(6, HOP)
    a, b = spectral_features(x, SR), spectral_features(0.5 * x, SR)
    loud = SPECTRAL_NAMES.index("loudness")
    np.testing.assert_allclose(b[:, loud] - a[:, loud], 20 * math.log10(0.5), atol=0.01)
    rest = [k for k in range(len(SPECTRAL_NAMES)) if k != loud]  # all level-invariant
    np.testing.assert_allclose(b[:, rest], a[:, rest], rtol=1e-6, atol=1e-9)
    bands = [SPECTRAL_NAMES.index(f"band_{n}") for n, _, _ in BANDS]
    np.testing.assert_allclose(a[:, bands].sum(axis=1), 1.0, atol=1e-9)


def test_frame_alignment_and_silence():
    x = np.zeros((1, 10 * HOP))
    x[0, 5 * HOP + 10] = 1.0
    x[0, 8 * HOP - 1] = 0.1
    d = frame_descriptors(x, SR, HOP)
    loud = _col(d, "loudness", sounding_only=False)
    assert loud.argmax() == 5 and loud[4] == loud[6] == -120.0
    assert loud[7] > -120.0 and loud[8] == -120.0
    np.testing.assert_array_equal(d.sounding, np.isin(np.arange(10), [5, 7]))
    assert np.isfinite(d.values).all()

    silent = frame_descriptors(np.zeros((2, 3 * HOP), np.float32), SR, HOP)
    assert not silent.sounding.any() and np.isfinite(silent.values).all()
    assert (silent.values[:, COL["pitch"]] == 0).all()
    assert (silent.values[:, COL["pitch_confidence"]] == 0).all()


def test_stereo_padding_and_batches():
    mono = drumsynth.render("tom", {"pitch_hz": 120.0, "decay_s": 0.3})  # 0.375 s
    stereo = np.stack([mono, 0.5 * mono])
    a = frame_descriptors(stereo, SR, HOP)
    b = frame_descriptors(0.75 * mono[None], SR, HOP)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-4)

    n = math.ceil(len(mono) / HOP)
    assert a.values.shape == (n, len(DESCRIPTORS))
    padded = frame_descriptors(stereo, SR, HOP, n_frames=n + 3)
    assert padded.values.shape == (n + 3, len(DESCRIPTORS)) and not padded.sounding[n:].any()
    np.testing.assert_array_equal(padded.values[: n - 1, :-2], a.values[: n - 1, :-2])

    short = mono[: 3 * HOP]
    values, sounding = describe_clips([stereo, np.stack([short, short])], SR, HOP)
    assert values.shape == (2, n, len(DESCRIPTORS)) and sounding.shape == (2, n)
    np.testing.assert_array_equal(values[0], a.values)
    assert sounding[1, :3].all() and not sounding[1, 3:].any()
    batch = np.stack([stereo, stereo])
    values, _ = describe_clips(batch, SR, HOP, n_frames=2)
    np.testing.assert_array_equal(values[1], frame_descriptors(stereo, SR, HOP, 2).values)


@pytest.mark.parametrize("audio, rate, hop, match", [
    (np.zeros(4096), SR, HOP, r"\[C, T\]"),
    (np.full((1, 4096), np.nan), SR, HOP, "NaN"),
    (np.zeros((1, 4096)), 0, HOP, "sample_rate"),
    (np.zeros((1, 4096)), SR, 0, "hop"),
    (np.zeros((1, 4096)), SR, -2048, "hop"),
    (np.zeros((1, 0)), SR, HOP, "no samples"),
])
def test_bad_input(audio, rate, hop, match):
    with pytest.raises(ValueError, match=match):
        frame_descriptors(audio, rate, hop)


def test_bad_spectral_input():
    with pytest.raises(ValueError, match="at least 64"):
        spectral_features(np.zeros((2, 32)), SR)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        spectral_features(np.zeros(2048), SR)
    with pytest.raises(ValueError, match="n_frames"):
        frame_descriptors(np.zeros((1, 4096)), SR, HOP, n_frames=0)
    with pytest.raises(ValueError, match=r"\[N, C, T\]"):
        describe_clips(np.zeros((2, 4096)), SR, HOP)
