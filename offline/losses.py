"""Reconstruction losses for VAE training: multi-resolution STFT (spectral convergence + log
magnitude, as in auraloss / Stable Audio Open's autoencoder config), a pre-emphasised waveform L1
that pins phase and sharpens attacks, a log-envelope L1 for attack loudness, an onset-weighted
short-STFT log-magnitude L1 (transient_weighted_l1: attacks weigh as much as tails), and SNR in
dB for evaluation (the KL term is `vae.kl_divergence`). All audio is `[B, C, T]` float; every loss
returns a scalar tensor."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Stereo = Literal["mid_side", "per_channel", "mono"]

FFT_SIZES: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)
"""The default resolutions: window = FFT size, hop = FFT size / 4."""


def _views(x: torch.Tensor, stereo: Stereo) -> torch.Tensor:
    """`[B, C, T]` -> `[B * V, T]`: the signals the spectral loss compares.

    mid_side: (L+R)/2 and (L-R)/2 for stereo (auraloss' SumAndDifference; the side of a mono
    one-shot is silent, so a phantom stereo image is penalised); per_channel: every channel;
    mono: the channel mean. One-channel audio is used as it is."""
    b, c, t = x.shape
    if c == 1:
        return x.reshape(b, t)
    if stereo == "mono":
        return x.mean(1)
    if stereo == "mid_side":
        if c != 2:
            raise ValueError(f"stereo='mid_side' needs 2 channels, got {c}")
        x = torch.stack([(x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2], 1)
    return x.reshape(b * x.shape[1], t)


class STFTLoss(nn.Module):
    """One resolution: spectral convergence ‖|Y|−|X|‖_F / ‖|Y|‖_F plus mean |log|Y| − log|X||.

    Magnitudes are floored at sqrt(eps) (eps on the power) so silent bins give finite logs."""

    def __init__(self, n_fft: int, hop: int | None = None, eps: float = 1e-8):
        super().__init__()
        self.n_fft, self.hop, self.eps = n_fft, hop or n_fft // 4, eps
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, T]` -> `[N, n_fft // 2 + 1, frames]`."""
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window.to(x), return_complex=True)
        return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=self.eps))

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[N, T]` each (estimate, target) -> (spectral convergence, log-magnitude L1)."""
        m_hat, m = self.magnitude(x_hat), self.magnitude(x)
        sc = torch.linalg.vector_norm(m - m_hat) / torch.linalg.vector_norm(m)
        log_mag = F.l1_loss(torch.log(m_hat), torch.log(m))
        return sc, log_mag


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of (spectral convergence + log_weight * log-magnitude L1).

    A magnitude-only distance: it leaves phase free, so pair it with `waveform_l1` in training.
    The two terms pull differently: spectral convergence is energy-weighted (the loud bins, i.e.
    the spectral shape a listener hears), while the log-magnitude L1 weighs every bin alike and
    its 1/|X| gradient is ruled by the quietest bins (tails, digital silence, the valleys of a
    buzzy early decoder): on drum one-shots its gradient is ~10-1000x the other's."""

    def __init__(self, fft_sizes: tuple[int, ...] = FFT_SIZES, stereo: Stereo = "mid_side",
                 eps: float = 1e-8, log_weight: float = 1.0):
        super().__init__()
        if not fft_sizes:
            raise ValueError("fft_sizes is empty")
        self.stereo, self.log_weight = stereo, log_weight
        self.resolutions = nn.ModuleList(STFTLoss(n, eps=eps) for n in fft_sizes)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`[B, C, T]` estimate and target (T ≥ the largest FFT size / 2) -> scalar."""
        if x_hat.shape != x.shape:
            raise ValueError(f"shape mismatch: estimate {tuple(x_hat.shape)}, "
                             f"target {tuple(x.shape)}")
        v_hat, v = _views(x_hat, self.stereo), _views(x, self.stereo)
        total = x.new_zeros(())
        for res in self.resolutions:
            sc, log_mag = res(v_hat, v)
            total = total + sc + self.log_weight * log_mag
        return total / len(self.resolutions)


def preemphasis(x: torch.Tensor, coef: float) -> torch.Tensor:
    """y[t] = x[t] − coef·x[t−1] along the last axis (x[−1] = 0): a first-order high-pass that
    weights attacks and high frequencies, where a plain L1 is dominated by low-frequency bodies."""
    if coef == 0.0:
        return x
    return x - coef * F.pad(x[..., :-1], (1, 0))


def waveform_l1(x_hat: torch.Tensor, x: torch.Tensor, coef: float = 0.0) -> torch.Tensor:
    """Mean |pre(x̂) − pre(x)| over `[B, C, T]`: ties the phase that the STFT terms leave free."""
    return F.l1_loss(preemphasis(x_hat, coef), preemphasis(x, coef))


def log_envelope_l1(x_hat: torch.Tensor, x: torch.Tensor, window: int = 256,
                    floor_db: float = -80.0) -> torch.Tensor:
    """Mean |log RMS(x̂) − log RMS(x)| over non-overlapping windows of `window` samples (natural
    log units; RMS floored at `floor_db` dBFS). Penalises soft attacks and wrong decays equally
    at every loudness, which the energy-weighted terms do not."""
    t = x.shape[-1] // window * window
    floor = 10.0 ** (floor_db / 10.0)  # on the mean square

    def env(a: torch.Tensor) -> torch.Tensor:
        power = a[..., :t].reshape(*a.shape[:-1], -1, window).pow(2).mean(-1)
        return 0.5 * torch.log(power + floor)

    return F.l1_loss(env(x_hat), env(x))


def snr_db(x_hat: torch.Tensor, x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-example signal-to-noise ratio in dB, `[B, C, T]` -> `[B]`: 10·log10(Σx² / Σ(x − x̂)²)."""
    signal = x.pow(2).flatten(1).sum(1)
    noise = (x - x_hat).pow(2).flatten(1).sum(1)
    return 10.0 * torch.log10((signal + eps) / (noise + eps))


def transient_weighted_l1(x_hat: torch.Tensor, x: torch.Tensor, fft_sizes: tuple[int, ...] = (256, 512),
                          eps: float = 1e-8) -> torch.Tensor:
    """Log-magnitude L1 on short STFTs, each frame weighted by the target's onset strength:
    1 + its positive spectral flux over the mean flux (mono). Attacks (a few frames of a
    one-shot) weigh as much as the tail that otherwise rules a frame-averaged loss. `[B, C, T]`."""
    a, b = x_hat.mean(1), x.mean(1)
    total = x.new_zeros(())
    for n in fft_sizes:
        window = torch.hann_window(n, device=x.device, dtype=x.dtype)
        specs = (torch.stft(s, n, n // 4, window=window, return_complex=True) for s in (a, b))
        log_hat, log_ref = (0.5 * torch.log(torch.clamp(z.abs() ** 2, min=eps)) for z in specs)
        flux = torch.relu(log_ref[..., 1:] - log_ref[..., :-1]).mean(1)  # [B, frames - 1]
        flux = torch.cat([flux[:, :1], flux], dim=1)
        weight = 1 + flux / (flux.mean(dim=1, keepdim=True) + 1e-6)
        err = (log_hat - log_ref).abs().mean(1)  # [B, frames]
        total = total + (weight * err).sum() / weight.sum()
    return total / len(fft_sizes)
