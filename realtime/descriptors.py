"""Spectral descriptors of short audio frames: brightness, noisiness, peakiness, band balance,
level. numpy only, vectorised over frames, so the engine can compute them off the audio thread
for a visualizer and the offline side (`steerpad.offline.descriptors`) for probes and steering
measurements, with the same numbers.

Each frame `[L]` (L >= 64 samples, mono) gives, in `SPECTRAL_NAMES` order:

- `centroid` (Hz): power-weighted mean frequency of the Hann-windowed rfft (DC bin included);
- `flatness` (ratio, 0..1): geometric / arithmetic mean of that power spectrum, both + 1e-20;
  ~0 for a sine, ~0.56 for white noise (the expected value of an exponential variable's
  geometric/arithmetic mean), 1 for digital silence;
- `crest` (dB): 20 log10(peak |x| / RMS) of the frame's samples (3.01 dB for a sine over whole
  periods); 0 dB for silence;
- `band_<name>` (fraction): each band's share of the power between 20 Hz and Nyquist (bins
  below 20 Hz, i.e. DC and rumble, are left out), so the fractions sum to 1; all 0 for silence;
- `loudness` (dBFS): 10 log10(mean x^2), floored at -120; full-scale sine = -3.01 dBFS.

Band edges (`BANDS`), chosen for drums: `sub` 20-150 Hz (kick fundamentals, 808 tails, floor
toms), `low_mid` 150-1000 Hz (toms, snare body, boxiness), `high_mid` 1000-6000 Hz (attack,
snare wires, claps, rims), `air` 6000 Hz-Nyquist (hats, cymbals, sizzle). A band above Nyquist
is empty (fraction 0). At short L the lowest bands are coarse: bins are sample_rate / L apart
(21.5 Hz at 2048 samples and 44.1 kHz).

Bad arguments are programmer errors and raise ValueError naming the argument.
"""

from __future__ import annotations

import math

import numpy as np

BANDS: tuple[tuple[str, float, float], ...] = (
    ("sub", 20.0, 150.0),
    ("low_mid", 150.0, 1000.0),
    ("high_mid", 1000.0, 6000.0),
    ("air", 6000.0, math.inf),  # up to and including the Nyquist bin
)
"""(name, low Hz inclusive, high Hz exclusive) per band, ordered and contiguous."""

SPECTRAL_NAMES: tuple[str, ...] = (
    "centroid", "flatness", "crest", *(f"band_{name}" for name, _, _ in BANDS), "loudness",
)
SPECTRAL_UNITS: dict[str, str] = {
    "centroid": "Hz", "flatness": "ratio", "crest": "dB",
    **{f"band_{name}": "fraction" for name, _, _ in BANDS}, "loudness": "dBFS",
}

MIN_FRAME = 64
LOUDNESS_FLOOR_DB = -120.0
_EPS_POWER = 1e-20  # flatness floor on the power spectrum (silence -> 1, never NaN)
_EPS_SIGNAL = 1e-12  # = LOUDNESS_FLOOR_DB as a mean square


def band_matrix(n_samples: int, sample_rate: int) -> np.ndarray:
    """0/1 matrix `[L // 2 + 1, len(BANDS)]` assigning each rfft bin of an L-sample frame to
    its band (bins below the first band's low edge belong to none)."""
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
    out = np.zeros((len(freqs), len(BANDS)))
    for b, (_, lo, hi) in enumerate(BANDS):
        out[:, b] = (freqs >= lo) & (freqs < hi)
    return out


def spectral_features(frames: np.ndarray, sample_rate: int) -> np.ndarray:
    """Descriptors of mono frames `[N, L]` -> float64 `[N, len(SPECTRAL_NAMES)]`, finite
    everywhere (silent frames included; see the module docstring for each value there)."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2:
        raise ValueError(f"frames must be [N, L], got shape {frames.shape}")
    n, length = frames.shape
    if length < MIN_FRAME:
        raise ValueError(f"frames must be at least {MIN_FRAME} samples long, got {length}")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if not np.isfinite(frames).all():
        raise ValueError("frames contain NaN or inf samples")

    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [N, K]
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    total = power.sum(axis=1)
    centroid = (power @ freqs) / np.maximum(total, _EPS_POWER)
    geo = np.exp(np.mean(np.log(power + _EPS_POWER), axis=1))
    flatness = np.minimum(geo / (power.mean(axis=1) + _EPS_POWER), 1.0)  # AM-GM; clip rounding

    bands = power @ band_matrix(length, sample_rate)  # [N, B]
    fractions = bands / np.maximum(bands.sum(axis=1, keepdims=True), _EPS_POWER)

    mean_sq = np.mean(frames**2, axis=1)
    peak = np.abs(frames).max(axis=1)
    crest = 20 * np.log10(np.maximum(peak, _EPS_SIGNAL) / np.maximum(np.sqrt(mean_sq), _EPS_SIGNAL))
    loudness = 10 * np.log10(np.maximum(mean_sq, _EPS_SIGNAL))
    out = np.column_stack([centroid, flatness, crest, fractions, loudness])
    assert out.shape == (n, len(SPECTRAL_NAMES))
    return out
