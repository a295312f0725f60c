"""Linear probes from SAE codes to binned descriptors, and the knob directions they give.

Per descriptor: the values of the training frames are cut into bins (quantile: equal counts, or
linear: equal widths), and a softmax probe logits = W x + b is fitted on the codes of the
training kits, x = f * sqrt(k / F) (the RMS-normalised code, rescaled so its entries are O(1);
a global scale, so directions in x and in f are the same). It is scored on held-out kits:
accuracy beside chance (the share of the most common bin) and within-one-bin accuracy.

Directions (docs/design.md, section 1): the knob direction is W[high bin] - W[low bin], unit norm, in
code space; `class_targets` gives one per bin (W[c] - mean_c' W[c'], unit norm, as in Paek et
al. 2025) for steering toward a particular bin.

Codes are passed sparse, as (values [N, j], indices [N, j]) from TopKSAE.encode_sparse plus the
level pair, so a probe over 4096 features costs O(N j) per step, not O(N F).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from steerpad.offline.sae import TopKSAE

Binning = Literal["quantile", "linear"]


@dataclass
class ProbeConfig:
    """How descriptors are binned and probes fitted."""

    n_bins: int = 8
    """Bins per descriptor."""
    binning: Binning = "quantile"
    """quantile = equal counts of training frames per bin; linear = equal widths."""
    steps: int = 300
    """Full-batch Adam steps."""
    lr: float = 0.05
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """L2 penalty on W (mean over entries times F, so it does not scale with F)."""

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {self.n_bins}")
        if self.binning not in ("quantile", "linear"):
            raise ValueError(f"binning must be 'quantile' or 'linear', got {self.binning!r}")
        if self.steps < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("steps >= 1, lr > 0 and weight_decay >= 0 are required")


@dataclass
class Probe:
    descriptor: str
    weight: Tensor
    """[n_bins, F], acting on x = f * sqrt(k / F)."""
    bias: Tensor
    """[n_bins]."""
    edges: np.ndarray
    """[n_bins + 1] bin edges in the descriptor's unit (outer edges = training min / max)."""
    metrics: dict[str, float]

    @property
    def direction(self) -> Tensor:
        """The knob direction: high-bin weight minus low-bin weight, unit norm [F]."""
        return F.normalize(self.weight[-1] - self.weight[0], dim=0)

    def class_targets(self) -> Tensor:
        """One unit direction per bin [n_bins, F]: W[c] minus the mean of all bins' weights."""
        return F.normalize(self.weight - self.weight.mean(0, keepdim=True), dim=1)


@dataclass
class SparseCodes:
    """SAE codes of N vectors: values [N, j] at indices [N, j] (level pair included)."""

    values: Tensor
    indices: Tensor
    n_features: int
    k: int

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def subset(self, rows: np.ndarray | Tensor) -> SparseCodes:
        rows = torch.as_tensor(rows)
        return SparseCodes(self.values[rows], self.indices[rows], self.n_features, self.k)

    def dense(self) -> Tensor:
        out = torch.zeros(len(self), self.n_features)
        return out.scatter_(1, self.indices, self.values)


@torch.no_grad()
def sae_codes(sae: TopKSAE, z: np.ndarray | Tensor, chunk: int = 8192) -> SparseCodes:
    """Latent vectors z [N, D] (original units) -> their SAE codes, as SparseCodes."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32))
    r = sae.config.reserved
    vals, idxs = [], []
    for i in range(0, len(z), chunk):
        v, idx, gain, _ = sae.encode_sparse(sae.standardize(z[i:i + chunk]))
        if r:  # the level pair: features 0 and 1 at level * gain
            lp = (sae.level.abs() * gain).expand(-1, r)
            v = torch.cat([lp, v], 1)
            idx = torch.cat([torch.arange(r).expand(len(idx), r), idx], 1)
        vals.append(v)
        idxs.append(idx)
    return SparseCodes(torch.cat(vals), torch.cat(idxs), sae.config.n_features, sae.config.k)


def bin_edges(values: np.ndarray, n_bins: int, binning: Binning) -> np.ndarray:
    """Edges [n_bins + 1] over training values (finite, at least two distinct)."""
    v = np.asarray(values, dtype=np.float64)
    if binning == "quantile":
        edges = np.quantile(v, np.linspace(0, 1, n_bins + 1))
    else:
        edges = np.linspace(v.min(), v.max(), n_bins + 1)
    return np.maximum.accumulate(edges)


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value (values outside the training range go to the end bins)."""
    return np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, len(edges) - 2)


def _logits(weight: Tensor, bias: Tensor, codes: SparseCodes) -> Tensor:
    x = codes.values * math.sqrt(codes.k / codes.n_features)
    return F.embedding_bag(codes.indices, weight.t(), per_sample_weights=x, mode="sum") + bias


def _scores(weight: Tensor, bias: Tensor, codes: SparseCodes, bins: np.ndarray,
            n_bins: int) -> dict[str, float]:
    with torch.no_grad():
        pred = _logits(weight, bias, codes).argmax(1).numpy()
    counts = np.bincount(bins, minlength=n_bins)
    return {"accuracy": float((pred == bins).mean()),
            "within_one": float((np.abs(pred - bins) <= 1).mean()),
            "chance": float(counts.max() / max(len(bins), 1))}


def train_probe(descriptor: str, codes: SparseCodes, values: np.ndarray, val_codes: SparseCodes,
                val_values: np.ndarray, config: ProbeConfig) -> Probe:
    """Fit one descriptor's probe on (codes, values) and score it on the held-out pair."""
    values, val_values = np.asarray(values, np.float64), np.asarray(val_values, np.float64)
    edges = bin_edges(values, config.n_bins, config.binning)
    y = assign_bins(values, edges)
    y_val = assign_bins(val_values, edges)
    n_bins, n_features = config.n_bins, codes.n_features
    # Zero init: a feature that never fires in the training frames gets no gradient and keeps
    # weight 0, so the direction puts nothing on it (a random init would leave noise there,
    # and a knob would push every unused feature's decoder column into the latents).
    weight = torch.zeros(n_bins, n_features, requires_grad=True)
    bias = torch.zeros(n_bins, requires_grad=True)
    target = torch.from_numpy(y)
    # Frames per bin are equal for quantile bins; for linear ones, weight the rare bins up so
    # the end bins (the ones the direction is made of) are learned too.
    counts = torch.bincount(target, minlength=n_bins).float()
    class_w = (counts.sum() / (n_bins * counts.clamp_min(1.0))).clamp(max=20.0)
    opt = torch.optim.Adam([weight, bias], lr=config.lr)
    for _ in range(config.steps):
        loss = F.cross_entropy(_logits(weight, bias, codes), target, weight=class_w)
        loss = loss + config.weight_decay * weight.pow(2).mean() * n_features
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    weight, bias = weight.detach(), bias.detach()
    metrics = {f"{k}/train": v for k, v in _scores(weight, bias, codes, y, n_bins).items()}
    metrics.update({f"{k}/val": v for k, v in
                    _scores(weight, bias, val_codes, y_val, n_bins).items()})
    metrics.update({"frames/train": float(len(y)), "frames/val": float(len(y_val))})
    return Probe(descriptor, weight, bias, edges, metrics)
