"""Faithful mode (issue 14, work in progress): the pad plays its own source audio, and a knob
reshapes it by the decoder's *change* instead of replacing it by the decoder's output.

    x  the source one-shot [C, T] (at the bundle rate)
    P  = dec(z)    the plain decode of its latents      (cached per pad)
    Q  = dec(z')   the steered decode (the knob moved)
    y  = change(P -> Q) applied to x;   α = 0  =>  y = x exactly (no transform at all)

The change lives in the STFT domain, per bin, on magnitudes smoothed a little across frequency
and time (the decoder invents its phase, so single-bin ratios are noisy):

- **cut** where the steered decode has less energy than the plain one: x's bin is multiplied by
  (|Q| / |P|) ** cut_power, at least the floor, keeping x's phase (what the decoder takes away,
  the source loses in proportion, with its own fine structure: partials stay partials);
- **boost** where it has more: a gain cannot create what x lacks, so the decoder's new energy,
  |Q| - |P|, is added with Q's phase, scaled by `add_gain` (what the source already has keeps
  its own sound; what the knob asks for beyond it comes from the decoder).

numpy only (the realtime half): a Hann-windowed STFT with 75 % overlap, inverted by weighted
overlap-add, so a unit gain everywhere gives x back to float precision. Never called from the
audio callback: the render worker runs it after decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FFT = 1024
HOP = 256


@dataclass(frozen=True)
class ChangeConfig:
    cut_power: float = 1.0
    """Exponent on |Q| / |P| where it is below 1: above 1 cuts harder than the decoder does."""
    add_gain: float = 1.0
    """Scale of the decoder's added energy (|Q| - |P|, with Q's phase) where it is above 0."""
    floor_db: float = -60.0
    """Magnitudes below this, re. the plain decode's peak bin, count as this (ratios stay sane
    where the decoder is silent)."""
    smooth_bins: int = 3
    """Half-width of the moving average over frequency bins applied to |P| and |Q|."""
    smooth_frames: int = 1
    """... and over STFT frames."""


def _window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:N_FFT].astype(np.float64)  # periodic Hann


def stft(x: np.ndarray) -> np.ndarray:
    """x [C, T] -> complex [C, frames, N_FFT/2 + 1]; padded by N_FFT at both ends so every sample
    is covered by a full set of overlapping windows."""
    x = np.asarray(x, dtype=np.float64)
    c, t = x.shape
    padded = np.zeros((c, t + 2 * N_FFT + HOP), np.float64)
    padded[:, N_FFT:N_FFT + t] = x
    n = (padded.shape[1] - N_FFT) // HOP + 1
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    return np.fft.rfft(padded[:, idx] * _window(), axis=-1)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """The inverse of `stft` (weighted overlap-add) -> float32 [C, length]. With HOP = N_FFT / 4,
    frames k, k + 4, k + 8 ... do not overlap: each such set is laid down as one array."""
    c, n, _ = spec.shape
    w = _window()
    frames = np.fft.irfft(spec, n=N_FFT, axis=-1) * w
    step = N_FFT // HOP
    total = (n - 1) * HOP + N_FFT
    out = np.zeros((c, total + N_FFT), np.float64)
    norm = np.zeros(total + N_FFT, np.float64)
    for k in range(step):
        part = frames[:, k::step]  # [C, m, N_FFT], back to back
        m = part.shape[1]
        out[:, k * HOP:k * HOP + m * N_FFT] += part.reshape(c, m * N_FFT)
        norm[k * HOP:k * HOP + m * N_FFT] += np.tile(w * w, m)
    out /= np.maximum(norm, 1e-12)
    return out[:, N_FFT:N_FFT + length].astype(np.float32)


def _smooth(mag: np.ndarray, bins: int, frames: int) -> np.ndarray:
    """Moving average of mag [C, frames, bins] over ±bins and ±frames (edges: shorter windows)."""
    out = mag
    for axis, half in ((2, bins), (1, frames)):
        if half <= 0:
            continue
        k = 2 * half + 1
        pad = [(0, 0)] * out.ndim
        pad[axis] = (half, half)
        csum = np.cumsum(np.pad(out, pad), axis=axis)
        csum = np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)
        n = out.shape[axis]
        hi = np.take(csum, np.arange(k, k + n), axis=axis)
        lo = np.take(csum, np.arange(0, n), axis=axis)
        counts = np.convolve(np.ones(n), np.ones(k), mode="same")
        shape = [1] * out.ndim
        shape[axis] = n
        out = (hi - lo) / counts.reshape(shape)
    return out


def apply_change(source: np.ndarray, plain: np.ndarray, steered: np.ndarray,
                 config: ChangeConfig = ChangeConfig()) -> np.ndarray:
    """The source [C, T] reshaped by the change from `plain` to `steered` (both [C, T'] at the
    source's rate, time-aligned with it; cut or zero-padded to T) -> float32 [C, T]."""
    source = np.asarray(source, dtype=np.float32)
    c, t = source.shape

    def fit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if a.shape[0] != c:
            a = np.repeat(a.mean(axis=0, keepdims=True), c, axis=0)
        out = np.zeros((c, t), np.float32)
        out[:, :min(t, a.shape[1])] = a[:, :t]
        return out

    X, P, Q = stft(source), stft(fit(plain)), stft(fit(steered))
    mp = _smooth(np.abs(P), config.smooth_bins, config.smooth_frames)
    mq = _smooth(np.abs(Q), config.smooth_bins, config.smooth_frames)
    floor = max(float(mp.max()), 1e-12) * 10 ** (config.floor_db / 20)
    mp, mq = np.maximum(mp, floor), np.maximum(mq, floor)
    ratio = mq / mp
    cut = np.minimum(ratio, 1.0) ** config.cut_power
    added = config.add_gain * np.maximum(mq - mp, 0.0)
    phase = Q / np.maximum(np.abs(Q), 1e-20)
    return istft(X * cut + added * phase, t)
