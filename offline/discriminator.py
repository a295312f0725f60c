"""A multi-scale STFT discriminator (EnCodec's MS-STFTD: 2-D convolutions over the complex STFT
at several resolutions) with hinge losses and relative feature matching, for VAE training
(`VAETrainConfig.adv_weight`). Codecs of this family use it to get partials and noise texture
right, which spectral-distance losses alone average into a smooth envelope."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

FFT_SIZES = (2048, 1024, 512)
"""The discriminator's STFT resolutions (hop = a quarter)."""


class STFTDiscriminator(nn.Module):
    """One resolution: [B, C, T] audio -> (logits [B, 1, F', T'], feature maps)."""

    def __init__(self, channels: int, n_fft: int, width: int = 32):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2 * channels, width, (3, 9), padding=(1, 4)))]
        for d in (1, 2, 4):
            layers.append(weight_norm(nn.Conv2d(width, width, (3, 9), stride=(1, 2), dilation=(d, 1),
                                                padding=(d, 4))))
        layers.append(weight_norm(nn.Conv2d(width, width, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        spec = torch.stft(x.reshape(b * c, t), self.n_fft, self.hop, window=self.window.to(x),
                          return_complex=True)  # [B*C, F, frames]
        h = torch.view_as_real(spec).reshape(b, c, *spec.shape[1:], 2)
        h = h.permute(0, 1, 4, 3, 2).reshape(b, 2 * c, spec.shape[2], spec.shape[1])  # time x freq
        features = []
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
            features.append(h)
        return self.out(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, channels: int, fft_sizes: tuple[int, ...] = FFT_SIZES, width: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(channels, n, width) for n in fft_sizes)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x) for d in self.discriminators]


def hinge_discriminator(real: list, fake: list) -> torch.Tensor:
    """Mean over scales of relu(1 - D(x)) + relu(1 + D(x̂))."""
    return sum(F.relu(1 - r[0]).mean() + F.relu(1 + f[0]).mean() for r, f in zip(real, fake)) / len(real)


def hinge_generator(fake: list) -> torch.Tensor:
    """Mean over scales of relu(1 - D(x̂))."""
    return sum(F.relu(1 - f[0]).mean() for f in fake) / len(fake)


def feature_matching(real: list, fake: list) -> torch.Tensor:
    """Mean over scales and layers of |f(x) - f(x̂)| / mean |f(x)| (EnCodec's relative form)."""
    terms = [F.l1_loss(ff, fr.detach()) / (fr.detach().abs().mean() + 1e-6)
             for r, f in zip(real, fake) for fr, ff in zip(r[1], f[1])]
    return sum(terms) / len(terms)
