"""STFT and inverse STFT as convolutions with fixed Fourier bases, for the spectral VAE
(`OobleckConfig.stft_hop > 0`).

Plain `Conv1d` / `ConvTranspose1d` arithmetic, so the models export to ONNX (which has no
inverse STFT) and run on any provider. Window = 4 x hop (periodic Hann); frames are centred so
that T samples give T / hop frames and back. Audio `[B, C, T]`; spectra `[B, C * bins, F]` with
bins = window / 2 + 1, channels grouped (each audio channel has its own bins)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOG_MAGNITUDE = math.log(100.0)
"""The head's log magnitudes are clipped here (Vocos does the same): one bin at 100 is already
far above full scale, and an unbounded exp can overflow early in training."""


def fourier_basis(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(analysis, synthesis) kernels `[2 * bins, n_fft]`: rows are cos then −sin of each bin.
    Analysis carries the window; synthesis the window, the one-sided weights (1 for DC and
    Nyquist, 2 else), 1/n_fft and the overlap-add normalisation for hop = n_fft / 4."""
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)
    phase = 2 * math.pi * k[:, None] * n[None, :] / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    cos, sin = torch.cos(phase), -torch.sin(phase)
    analysis = torch.cat([cos, sin]) * window
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0
    ola = (window**2).sum() / (n_fft // 4)  # sum of window^2 over the overlapping frames: 1.5
    # x[n] = 1/N sum_k w_k (Re X_k cos - Im X_k sin); the sin rows already hold the minus.
    synthesis = torch.cat([cos * weight, sin * weight]) * window / (n_fft * ola)
    return analysis.float(), synthesis.float()


class STFTLogMagnitude(nn.Module):
    """Audio `[B, C, T]` (T a multiple of hop) -> log magnitude `[B, C * bins, T / hop]`.

    An exported bundle's encoder starts after it: the realtime half makes its output with an FFT
    (realtime/bundle.py `log_spectrum`, `onnx.encoder.spectrum`), 2.5 times faster for the whole
    `small` encode than this dense [2 * bins x n_fft] conv in onnxruntime."""

    def __init__(self, channels: int, hop: int, eps: float = 1e-8):
        super().__init__()
        self.channels, self.hop, self.n_fft, self.eps = channels, hop, 4 * hop, eps
        self.bins = self.n_fft // 2 + 1
        analysis, _ = fourier_basis(self.n_fft)
        # one basis for every channel (channels folded into the batch): half the bytes of a
        # grouped conv's repeated one, in the model files too
        self.register_buffer("basis", analysis.unsqueeze(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.n_fft - self.hop) // 2
        spec = F.conv1d(F.pad(x.flatten(0, 1).unsqueeze(1), (pad, pad)), self.basis,
                        stride=self.hop)  # [B * C, 2 * bins, F]
        spec = spec.unflatten(0, (x.shape[0], self.channels)).unflatten(2, (2, self.bins))
        power = spec[:, :, 0] ** 2 + spec[:, :, 1] ** 2
        # clamp, not "+ eps": the ONNX exporter folded a tiny added constant away (log(0) = -inf)
        return 0.5 * torch.log(power.clamp_min(self.eps)).flatten(1, 2)


def head_channels(channels: int, hop: int) -> int:
    """Output channels of the conv feeding an ISTFTHead: log magnitude and phase of every bin
    of every audio channel."""
    return channels * 2 * (2 * hop + 1)


class ISTFTHead(nn.Module):
    """Features `[B, width, F]` -> audio `[B, C, F * hop]`: `conv` (width -> head_channels(C,
    hop)) predicts each bin's log magnitude and phase, and an inverse STFT (a transposed conv)
    overlap-adds the frames.

    An exported bundle's decoder stops at `complex_spectrum` and the realtime half does the
    inverse STFT with an FFT (realtime/bundle.py, `onnx.decoder.spectrum`): the transposed conv
    is a dense [2 * bins x n_fft] product per frame, about half of the `small` decoder's time in
    onnxruntime (7.9 of 15.7 ms for 1.5 s), and onnxruntime's DFT op was slower still (10.4 ms
    for the same frames); numpy's FFT and overlap-add take 1.8 ms."""

    def __init__(self, conv: nn.Module, channels: int, hop: int):
        super().__init__()
        self.channels, self.hop, self.n_fft = channels, hop, 4 * hop
        self.bins = self.n_fft // 2 + 1
        self.conv = conv
        _, synthesis = fourier_basis(self.n_fft)
        self.register_buffer("basis", synthesis.unsqueeze(1), persistent=False)

    def spectrum(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log magnitude, phase), each `[B, C, bins, F]`."""
        y = self.conv(h).unflatten(1, (self.channels, 2, self.bins))
        return y[:, :, 0].clamp(max=MAX_LOG_MAGNITUDE), y[:, :, 1]

    def complex_spectrum(self, h: torch.Tensor) -> torch.Tensor:
        """The frames the inverse STFT overlap-adds: `[B, C, 2, bins, F]`, real then imaginary
        part (frame f is centred on sample f * hop + hop / 2 of the output)."""
        log_mag, phase = self.spectrum(h)
        mag = torch.exp(log_mag)
        return torch.stack([mag * torch.cos(phase), mag * torch.sin(phase)], 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        spec = self.complex_spectrum(h)  # [B, C, 2, bins, F]
        audio = F.conv_transpose1d(spec.flatten(0, 1).flatten(1, 2), self.basis, stride=self.hop,
                                   padding=(self.n_fft - self.hop) // 2)  # [B * C, 1, T]
        return audio.unflatten(0, (h.shape[0], self.channels)).squeeze(2)
