"""The spectral VAE's fixed-basis STFT / inverse STFT (offline/spectral.py) and the spectral
Oobleck layout (OobleckConfig.stft_hop > 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steerpad.offline.spectral import ISTFTHead, STFTLogMagnitude, head_channels
from steerpad.offline.vae import OobleckConfig, OobleckVAE, get_config
from steerpad.realtime.bundle import log_spectrum, synthesize


def test_analysis_then_synthesis_reconstructs_the_signal():
    """The front's framing analysed, the head's inverse STFT gives the signal back."""
    hop = 64
    n_fft = 4 * hop
    head = ISTFTHead(torch.nn.Conv1d(8, head_channels(2, hop), 7, padding=3), channels=2, hop=hop)
    x = torch.randn(3, 2, hop * 30, generator=torch.Generator().manual_seed(0))
    pad = (n_fft - hop) // 2
    spec = torch.stft(F.pad(x.flatten(0, 1), (pad, pad)), n_fft, hop, window=torch.hann_window(n_fft),
                      center=False, return_complex=True).unflatten(0, (3, 2))  # [B, C, bins, F]
    y = head.synthesis(torch.stack([spec.real, spec.imag], 2))
    assert spec.shape[-1] == 30 and y.shape == x.shape
    inner = slice(n_fft, -n_fft)  # the edges lack overlapping frames
    assert (y - x)[..., inner].abs().max() < 1e-5


def test_log_magnitude_matches_torch_stft():
    hop, sr = 64, 16000
    t = torch.arange(hop * 20) / sr
    x = torch.stack([torch.sin(2 * math.pi * 1000 * t), 0.5 * torch.sin(2 * math.pi * 3000 * t)])
    front = STFTLogMagnitude(channels=2, hop=hop)
    out = front(x[None])
    assert out.shape == (1, 2 * front.bins, 20)
    ref = torch.stft(x, 4 * hop, hop, window=torch.hann_window(4 * hop), center=True,
                     pad_mode="constant", return_complex=True).abs()
    # torch's centred frames are offset by (n_fft - hop) / 2 - n_fft / 2 = -hop / 2 samples;
    # compare the frame-averaged spectra, which the offset does not change
    mine = out[0].unflatten(0, (2, front.bins)).exp().mean(-1)
    theirs = ref[..., 2:-2].mean(-1)
    assert mine.argmax(-1).tolist() == theirs.argmax(-1).tolist() == [16, 48]
    peaks = [(0, 16), (1, 48)]  # 1 kHz on the left, 3 kHz (half as loud) on the right
    for c, k in peaks:
        assert abs(float(mine[c, k] / theirs[c, k]) - 1) < 0.05  # edge frames see less signal


def test_istft_head_gives_hop_samples_per_frame():
    head = ISTFTHead(torch.nn.Conv1d(8, head_channels(2, 32), 7, padding=3), channels=2, hop=32)
    y = head(torch.randn(3, 8, 7))
    assert y.shape == (3, 2, 7 * 32)
    log_mag, phase = head.spectrum(torch.randn(1, 8, 7) * 100)
    assert log_mag.shape == phase.shape == (1, 2, head.bins, 7)
    assert log_mag.max() <= math.log(100.0) + 1e-6  # clipped: exp cannot overflow


@pytest.mark.parametrize("hop", [32, 256])
def test_the_realtime_synthesis_is_the_heads_inverse_stft(hop):
    """An exported decoder stops at ISTFTHead.complex_spectrum and realtime/bundle.py's
    `synthesize` finishes it with an FFT: the same audio as the head's transposed conv (the
    random phases put imaginary parts on DC and Nyquist too, which both must ignore)."""
    g = torch.Generator().manual_seed(hop)
    head = ISTFTHead(torch.nn.Conv1d(8, head_channels(2, hop), 7, padding=3), channels=2, hop=hop)
    h = torch.randn(3, 8, 9, generator=g)
    with torch.no_grad():
        want, frames = head(h).numpy(), head.complex_spectrum(h).numpy()
    assert frames.shape == (3, 2, 2, head.bins, 9)
    got = synthesize(frames, head.n_fft, hop)
    assert got.shape == want.shape == (3, 2, 9 * hop) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_the_realtime_analysis_is_the_fronts_log_magnitude_stft():
    """An exported encoder starts after STFTLogMagnitude and realtime/bundle.py's `log_spectrum`
    makes its input with an FFT: the same log magnitudes (silence included, at the floor)."""
    front = STFTLogMagnitude(channels=2, hop=64)
    x = 0.3 * torch.randn(3, 2, 64 * 11, generator=torch.Generator().manual_seed(1))
    x[1] = 0.0
    with torch.no_grad():
        want = front(x).numpy()
    got = log_spectrum(x.numpy(), front.n_fft, front.hop, front.eps)
    assert got.shape == want.shape == (3, 2 * front.bins, 11) and got.dtype == np.float32
    # float32 either way: the fixed-basis conv's rounding is largest, relatively, on quiet bins
    assert np.abs(got - want).max() < 1e-3 and np.median(np.abs(got - want)) < 1e-6


def test_spectral_vae_shapes_init_level_and_folding():
    cfg = OobleckConfig(name="spec", sample_rate=16000, audio_channels=2, channels=8,
                        c_mults=[2, 4], strides=[2, 2], latent_dim=16, stft_hop=32,
                        use_snake=False)
    assert cfg.hop == 128
    vae = OobleckVAE(cfg)
    g = torch.Generator().manual_seed(1)
    env = torch.exp(-torch.arange(cfg.hop * 8) / 600.0)
    x = 0.3 * torch.randn(4, 2, cfg.hop * 8, generator=g) * env
    vae.data_init_(x)
    vae.eval()
    with torch.no_grad():
        z = vae.encode(x)
        y = vae.decode(z)
        assert z.shape == (4, 16, 8) and y.shape == x.shape
        # data_init_ sets the head's level to the audio's, and the latents to unit spread
        assert 0.5 < float(y.std() / x.std()) < 2.0
        assert 0.5 < float(z.std()) < 2.0
        folded = vae.folded_copy()
        assert torch.allclose(folded.decode(z), y, atol=1e-5)
    state = vae.state_dict()
    assert not any("basis" in k for k in state)  # fixed bases are rebuilt, never stored


def test_shipped_spectral_configs_and_validation():
    for name in ("small", "tiny"):
        cfg = get_config(name)
        assert cfg.stft_hop == 256 and cfg.hop == 2048 and cfg.latent_dim == 64
    with pytest.raises(ValueError, match="stft_hop"):
        OobleckConfig(stft_hop=3)
    with pytest.raises(ValueError, match="final_tanh"):
        OobleckConfig(stft_hop=256, strides=[2, 4], c_mults=[2, 4], final_tanh=True)
