"""Steering VAE latents along SAE feature directions, keeping what the SAE misses.

    f  = sae.encode(z)                       (TopK, ReLU, RMSNorm: ||f|| = sqrt(F))
    z' = sae.decode(rmsnorm(f + sum_k alpha_k d_k)) + (z - sae.decode(f))

The second term is the SAE's reconstruction error: at alpha = 0 the steered latents are z
itself (up to float rounding), so an untouched knob gives the plain VAE reconstruction. The
directions d_k are unit vectors in code space; since ||f|| = sqrt(F) (64 for 4096 features), an
alpha of a few units barely moves anything, and the calibrated ranges are tens of units.

`SteerModule` is the exported form (steer.onnx / steer.pt): latents [B, D, N] in the VAE's
layout (channels first, N frames) and alpha [K] -> steered latents [B, D, N]. `CodesModule`
(codes.onnx / codes.pt): latents [B, D, N] -> the sparse SAE code, values and feature indices
[B, N, J] (J = k + the level pair).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from steerpad.offline.sae import TopKSAE, rmsnorm


def steer(sae: TopKSAE, z: Tensor, directions: Tensor, alpha: Tensor) -> Tensor:
    """z [N, D] latent vectors, directions [K, F], alpha [K] (or [N, K] per vector) -> [N, D]."""
    f = sae.encode(z)
    residual = z - sae.decode(f)
    push = alpha @ directions if alpha.dim() > 1 else (alpha[:, None] * directions).sum(0)
    return sae.decode(rmsnorm(f + push)) + residual


class SteerModule(nn.Module):
    """steer() over channels-first VAE latents, with the directions baked in as a buffer."""

    def __init__(self, sae: TopKSAE, directions: Tensor):
        super().__init__()
        if directions.dim() != 2 or directions.shape[1] != sae.config.n_features:
            raise ValueError(f"directions must be [K, {sae.config.n_features}], "
                             f"got {list(directions.shape)}")
        self.sae = sae.eval()
        self.register_buffer("directions", directions.detach().float().clone())

    @property
    def n_directions(self) -> int:
        return int(self.directions.shape[0])

    def forward(self, latents: Tensor, alpha: Tensor) -> Tensor:
        b, d, n = latents.shape
        z = latents.transpose(1, 2).reshape(b * n, d)
        out = steer(self.sae, z, self.directions, alpha)
        return out.reshape(b, n, d).transpose(1, 2)


class CodesModule(nn.Module):
    """The SAE code of channels-first latents, sparse: latents [B, D, N] -> values [B, N, J] and
    feature indices [B, N, J] (J = k + the level pair), as probes.sae_codes computes them. The
    realtime side reads it to show what is sounding (probe read-out, strongest features)."""

    def __init__(self, sae: TopKSAE):
        super().__init__()
        self.sae = sae.eval()

    def forward(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        b, d, n = latents.shape
        z = latents.transpose(1, 2).reshape(b * n, d)
        values, idx, gain, _ = self.sae.encode_sparse(self.sae.standardize(z))
        r = self.sae.config.reserved
        if r:  # the level pair: features 0 and 1 at level * gain
            values = torch.cat([(self.sae.level.abs() * gain).expand(-1, r), values], 1)
            idx = torch.cat([torch.arange(r, device=idx.device).expand(idx.shape[0], r), idx], 1)
        j = values.shape[1]
        return values.reshape(b, n, j), idx.reshape(b, n, j)
