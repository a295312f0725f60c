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
    return np.hanning(N_FFT + 1)[:N_FFT].astype(np.float32)  # periodic Hann


def stft(x: np.ndarray) -> np.ndarray:
    """x [C, T] -> complex64 [C, frames, N_FFT/2 + 1]; padded by N_FFT at both ends so every
    sample is covered by a full set of overlapping windows."""
    x = np.asarray(x, dtype=np.float32)
    c, t = x.shape
    padded = np.zeros((c, t + 2 * N_FFT + HOP), np.float32)
    padded[:, N_FFT:N_FFT + t] = x
    n = (padded.shape[1] - N_FFT) // HOP + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::HOP][:, :n]
    return np.fft.rfft(frames * _window(), axis=-1)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """The inverse of `stft` (weighted overlap-add) -> float32 [C, length]. With HOP = N_FFT / 4,
    frames k, k + 4, k + 8 ... do not overlap: each such set is laid down as one array."""
    c, n, _ = spec.shape
    w = _window()
    frames = np.fft.irfft(spec, n=N_FFT, axis=-1).astype(np.float32) * w
    step = N_FFT // HOP
    total = (n - 1) * HOP + N_FFT
    out = np.zeros((c, total + N_FFT), np.float32)
    norm = np.zeros(total + N_FFT, np.float32)
    for k in range(step):
        part = frames[:, k::step]  # [C, m, N_FFT], back to back
        m = part.shape[1]
        out[:, k * HOP:k * HOP + m * N_FFT] += part.reshape(c, m * N_FFT)
        norm[k * HOP:k * HOP + m * N_FFT] += np.tile(w * w, m)
    out /= np.maximum(norm, 1e-12)
    return out[:, N_FFT:N_FFT + length].astype(np.float32)


def _box(a: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Moving average over ±half along `axis` (shorter windows at the edges)."""
    if half <= 0:
        return a
    a = np.moveaxis(a, axis, -1)
    n, k = a.shape[-1], 2 * half + 1
    csum = np.zeros(a.shape[:-1] + (n + 2 * half + 1,), np.float32)
    np.cumsum(np.pad(a, [(0, 0)] * (a.ndim - 1) + [(half, half)]), axis=-1, out=csum[..., 1:])
    counts = np.convolve(np.ones(n, np.float32), np.ones(k, np.float32), mode="same")
    return np.moveaxis((csum[..., k:] - csum[..., :n]) / counts, -1, axis)


def _smooth(mag: np.ndarray, bins: int, frames: int) -> np.ndarray:
    """Moving average of mag [C, frames, bins] over ±bins and ±frames."""
    return _box(_box(mag, bins, 2), frames, 1)


class FaithfulPad:
    """One pad's fixed part, computed once per source: the source's STFT and the plain decode's
    smoothed magnitude. `render(steered)` then costs one STFT, the per-bin change and one
    inverse STFT per knob move."""

    def __init__(self, source: np.ndarray, plain: np.ndarray, config: ChangeConfig = ChangeConfig()):
        self.source = np.asarray(source, dtype=np.float32)
        self.config = config
        self.channels, self.length = self.source.shape
        self.X = stft(self.source)
        mp = _smooth(np.abs(stft(self._fit(plain))), config.smooth_bins, config.smooth_frames)
        self.floor = max(float(mp.max()), 1e-12) * 10 ** (config.floor_db / 20)
        self.mp = np.maximum(mp, self.floor)

    def _fit(self, a: np.ndarray) -> np.ndarray:
        """a [C', T'] as [C, T]: channels folded or spread, cut or zero-padded."""
        a = np.asarray(a, dtype=np.float32)
        if a.shape[0] != self.channels:
            a = np.repeat(a.mean(axis=0, keepdims=True), self.channels, axis=0)
        out = np.zeros((self.channels, self.length), np.float32)
        n = min(self.length, a.shape[1])
        out[:, :n] = a[:, :n]
        return out

    def render(self, steered: np.ndarray) -> np.ndarray:
        """The source reshaped by the change from the plain decode to `steered` -> [C, T]."""
        cfg = self.config
        Q = stft(self._fit(steered))
        mq = np.maximum(_smooth(np.abs(Q), cfg.smooth_bins, cfg.smooth_frames), self.floor)
        cut = np.minimum(mq / self.mp, 1.0) ** cfg.cut_power
        added = cfg.add_gain * np.maximum(mq - self.mp, 0.0)
        phase = Q / np.maximum(np.abs(Q), 1e-20)
        return istft(self.X * cut + added * phase, self.length)


def apply_change(source: np.ndarray, plain: np.ndarray, steered: np.ndarray,
                 config: ChangeConfig = ChangeConfig()) -> np.ndarray:
    """The source [C, T] reshaped by the change from `plain` to `steered` (both [C, T'] at the
    source's rate, time-aligned with it; cut or zero-padded to T) -> float32 [C, T]."""
    return FaithfulPad(source, plain, config).render(steered)
