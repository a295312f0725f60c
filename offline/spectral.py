"""STFT and inverse STFT for the spectral VAE (`OobleckConfig.stft_hop > 0`), with torch's FFT.

Window = 4 x hop (periodic Hann); frames are centred so that T samples give T / hop frames and
back. Audio `[B, C, T]`; spectra `[B, C * bins, F]` with bins = window / 2 + 1, channels grouped
(each audio channel has its own bins).

An exported bundle leaves both out of its ONNX models (the encoder starts after
STFTLogMagnitude, the decoder stops at ISTFTHead.complex_spectrum) and the realtime half does them
with numpy's FFT (realtime/bundle.py `log_spectrum`, `synthesize`): written first as
convolutions with fixed Fourier bases (ONNX has no inverse STFT), they were half of
onnxruntime's time for each model, and in training a dense [2 * bins x n_fft] product per frame
(an FFT here: 43 ms less per `small` step of batch 4, about 12 %)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOG_MAGNITUDE = math.log(100.0)
"""The head's log magnitudes are clipped here (Vocos does the same): one bin at 100 is already
far above full scale, and an unbounded exp can overflow early in training."""


class STFTLogMagnitude(nn.Module):
    """Audio `[B, C, T]` (T a multiple of hop) -> log magnitude `[B, C * bins, T / hop]`.

    An exported bundle's encoder starts after it: the realtime half makes its output with an FFT
    (realtime/bundle.py `log_spectrum`, `onnx.encoder.spectrum`), 2.5 times faster for the whole
    `small` encode than this dense [2 * bins x n_fft] conv in onnxruntime."""

    def __init__(self, channels: int, hop: int, eps: float = 1e-8):
        super().__init__()
        self.channels, self.hop, self.n_fft, self.eps = channels, hop, 4 * hop, eps
        self.bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.n_fft - self.hop) // 2
        spec = torch.stft(F.pad(x.flatten(0, 1), (pad, pad)), self.n_fft, self.hop, window=self.window,
                          center=False, return_complex=True)  # [B * C, bins, F]
        power = (spec.real ** 2 + spec.imag ** 2).unflatten(0, (x.shape[0], self.channels))
        # clamp, not "+ eps": a tiny added constant can be folded away (log(0) = -inf)
        return 0.5 * torch.log(power.clamp_min(self.eps)).flatten(1, 2)


def head_channels(channels: int, hop: int) -> int:
    """Output channels of the conv feeding an ISTFTHead: log magnitude and phase of every bin
    of every audio channel."""
    return channels * 2 * (2 * hop + 1)


class ISTFTHead(nn.Module):
    """Features `[B, width, F]` -> audio `[B, C, F * hop]`: `conv` (width -> head_channels(C,
    hop)) predicts each bin's log magnitude and phase, and an inverse STFT overlap-adds the
    frames (each inverted, windowed and divided by the windows' overlap).

    An exported bundle's decoder stops at `complex_spectrum` and the realtime half does the
    inverse STFT with numpy's FFT (realtime/bundle.py `synthesize`, the same arithmetic; as a
    transposed conv with a fixed basis it was about half of the `small` decoder's time in
    onnxruntime, 7.9 of 15.7 ms for 1.5 s, and onnxruntime's DFT op was slower still, 10.4 ms
    for the same frames, against 1.8 ms)."""

    def __init__(self, conv: nn.Module, channels: int, hop: int):
        super().__init__()
        self.channels, self.hop, self.n_fft = channels, hop, 4 * hop
        self.bins = self.n_fft // 2 + 1
        self.conv = conv
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64)
        self.register_buffer("window", (window / ((window ** 2).sum() / hop)).float(), persistent=False)
        """The synthesis window over the squared windows' overlap (1.5 for hop = n_fft / 4)."""

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
        return self.synthesis(self.complex_spectrum(h))

    def synthesis(self, spec: torch.Tensor) -> torch.Tensor:
        """The inverse STFT: frames `[B, C, 2, bins, F]` (real, imaginary) -> audio `[B, C, F * hop]`."""
        b, f = spec.shape[0], spec.shape[-1]
        frames = torch.fft.irfft(torch.complex(spec[:, :, 0], spec[:, :, 1]).transpose(-1, -2),
                                 n=self.n_fft) * self.window  # [B, C, F, n_fft]
        audio = F.fold(frames.flatten(0, 1).transpose(1, 2), output_size=(1, (f - 1) * self.hop + self.n_fft),
                       kernel_size=(1, self.n_fft), stride=(1, self.hop))  # overlap-add: [B * C, 1, 1, T']
        pad = (self.n_fft - self.hop) // 2
        return audio.reshape(b, self.channels, -1)[..., pad:pad + f * self.hop]
