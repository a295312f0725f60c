"""Training-crop augmentation (offline/augment.py): each transform does what it says and no more,
draws are reproducible from the step's generator, and a crop stays a one-shot (length, onset
near the start, peak under full scale)."""

from __future__ import annotations

import numpy as np
import pytest

from steerpad.offline.augment import Augment

SR = 44100
OFF = dict(prob=1.0, gain_db=0.0, semitones=0.0, tilt_db_per_octave=0.0, width=(1.0, 1.0), offset_ms=0.0)


def _hit(n: int = SR // 2) -> np.ndarray:
    t = np.arange(n) / SR
    left = 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.1)
    right = 0.5 * np.sin(2 * np.pi * 440 * t + 0.7) * np.exp(-t / 0.1)
    return np.stack([left, right]).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x.mean(axis=0)))
    return float(np.fft.rfftfreq(x.shape[1], 1 / SR)[spec.argmax()])


def _centroid(x: np.ndarray) -> float:
    p = np.abs(np.fft.rfft(x.mean(axis=0))) ** 2
    return float(p @ np.fft.rfftfreq(x.shape[1], 1 / SR) / p.sum())


def test_with_every_range_at_zero_a_crop_comes_back_unchanged():
    x = _hit()
    assert np.allclose(Augment(**OFF).one(x, SR, np.random.default_rng(0)), x, atol=1e-6)


def test_each_transform_moves_what_it_names():
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    x = _hit()
    up = Augment(**{**OFF, "semitones": 12.0})  # a draw in +-1 octave: the partial moves with it
    y = up.one(x, SR, rng())
    ratio = _peak_hz(y) / _peak_hz(x)
    assert ratio != pytest.approx(1.0, abs=0.01) and 0.5 <= ratio <= 2.0
    noise = 0.1 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    tilted = Augment(**{**OFF, "tilt_db_per_octave": 6.0}).one(noise, SR, rng())
    assert _centroid(tilted) != pytest.approx(_centroid(noise), rel=0.1)
    assert 10 * np.log10((tilted ** 2).mean() / (noise ** 2).mean()) < 24.0  # within 4 octaves' tilt
    mono = Augment(**{**OFF, "width": (0.0, 0.0)}).one(x, SR, rng())
    assert np.allclose(mono[0], mono[1]) and np.allclose(mono.mean(axis=0), x.mean(axis=0), atol=1e-6)
    late = Augment(**{**OFF, "offset_ms": 20.0}).one(x, SR, rng())
    onset = int(np.argmax(np.abs(late[0]) > 1e-4))
    assert 0 < onset <= 0.02 * SR and late.shape == x.shape
    louder = Augment(**{**OFF, "gain_db": 6.0}).one(x, SR, rng())
    g = np.abs(louder).max() / np.abs(x).max()
    assert g != pytest.approx(1.0, abs=1e-3) and 0.5 <= g <= 2.0
    assert np.allclose(louder / g, x, atol=1e-5)  # a gain and nothing else


def test_draws_are_reproducible_and_peaks_stay_under_full_scale():
    crops = np.stack([_hit() * 1.9, _hit(), _hit() * 0.1])
    a = Augment()(crops, SR, np.random.default_rng(7))
    b = Augment()(crops, SR, np.random.default_rng(7))
    assert np.array_equal(a, b) and a.shape == crops.shape and a.dtype == np.float32
    assert not np.array_equal(a, crops)
    assert np.abs(a).max() <= 0.99 + 1e-6
    assert np.array_equal(Augment(prob=0.0)(crops, SR, np.random.default_rng(7)), crops)


def test_bad_ranges_are_refused():
    for bad in (dict(prob=1.5), dict(gain_db=-1.0), dict(width=(1.0, 0.5))):
        with pytest.raises(ValueError):
            Augment(**bad)
