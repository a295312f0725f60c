"""Faithful mode's change (realtime/faithful.py): the source comes back untouched at the centre,
cuts follow the decoder's cuts with the source's own fine structure, boosts add what the decoder
adds, and a tonal source keeps its partials."""

from __future__ import annotations

import numpy as np

from steerpad.realtime.faithful import ChangeConfig, apply_change, istft, stft

SR = 44100


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
    y = apply_change(x, p, _lowpass(p, 2000))
    assert _band_db(y, 6000, 20000) < _band_db(x, 6000, 20000) - 20
    assert abs(_band_db(y, 100, 1000) - _band_db(x, 100, 1000)) < 1.0


def test_a_boost_adds_what_the_source_lacks():
    t = np.arange(SR) / SR
    x = np.tile(0.5 * np.sin(2 * np.pi * 200 * t) * np.exp(-t / 0.3), (2, 1)).astype(np.float32)
    p = _lowpass(_noise(5), 1000)
    q = p + (_noise(6) - _lowpass(_noise(6), 4000))  # the decode grows highs
    y = apply_change(x, p, q)
    assert _band_db(y, 5000, 20000) > _band_db(x, 5000, 20000) + 20
    assert abs(_band_db(y, 150, 250) - _band_db(x, 150, 250)) < 1.0
    assert _band_db(apply_change(x, p, q, ChangeConfig(add_gain=0.0)), 5000, 20000) < \
        _band_db(x, 5000, 20000) + 1  # without the added path a gain cannot create it


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
