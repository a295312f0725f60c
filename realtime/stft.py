"""The realtime half's STFT pieces, numpy and scipy.fft (float32 in, complex64 / float32 out):
a periodic Hann window, the FFT of a signal's windowed frames, and overlap-add. Shared by the
bundle's spectral encoder front and decoder tail (bundle.py `log_spectrum`, `synthesize`) and by
faithful mode's change (faithful.py `stft`, `istft`). Never called from the audio callback."""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft


@functools.lru_cache(maxsize=16)
def hann(n: int) -> np.ndarray:
    """The periodic Hann window of n samples, float32 (read-only: shared)."""
    w = np.hanning(n + 1)[:n].astype(np.float32)
    w.flags.writeable = False
    return w


def frames_fft(x: np.ndarray, n_fft: int, hop: int, left: int, right: int) -> np.ndarray:
    """x [..., T] zero-padded by `left` and `right` samples, cut into frames of n_fft every hop,
    each Hann-windowed and transformed -> complex64 [..., frames, n_fft / 2 + 1]."""
    x = np.asarray(x, dtype=np.float32)
    padded = np.zeros((*x.shape[:-1], left + x.shape[-1] + right), np.float32)
    padded[..., left:left + x.shape[-1]] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    return scipy.fft.rfft(frames * hann(n_fft), axis=-1)


def overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Frames [..., F, n] laid down every hop samples and summed -> float32 [..., (F - 1) * hop + n]
    (n a multiple of hop). Frames f, f + r, f + 2r ... (r = n / hop) do not overlap: each such
    set is laid down as one array, r additions in all."""
    *lead, f, n = frames.shape
    r = n // hop
    out = np.zeros((*lead, (f + r - 1) * hop), np.float32)
    for k in range(r):
        part = frames[..., k::r, :]  # back to back
        m = part.shape[-2]
        out[..., k * hop:k * hop + m * n] += part.reshape(*lead, m * n)
    return out
