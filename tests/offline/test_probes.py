"""Probes on planted codes: the descriptor is a known linear read-out of two features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerpad.offline.probes import (
    ProbeConfig,
    SparseCodes,
    assign_bins,
    bin_edges,
    train_probe,
)

F_, K = 256, 8


def _planted(n: int, seed: int) -> tuple[SparseCodes, np.ndarray]:
    """Random sparse codes; descriptor = value of feature 7 - value of feature 9 (+ noise).
    Features 7 and 9 are active in every vector, the other k - 2 at random."""
    g = torch.Generator().manual_seed(seed)
    other = torch.stack([torch.randperm(F_ - 10, generator=g)[: K - 2] + 10 for _ in range(n)])
    idx = torch.cat([torch.tensor([[7, 9]]).expand(n, 2), other], 1)
    vals = torch.rand(n, K, generator=g) * 10
    desc = (vals[:, 0] - vals[:, 1]).numpy() + np.random.default_rng(seed).normal(0, 0.3, n)
    return SparseCodes(vals, idx, F_, K), desc


def test_bins_quantile_and_linear():
    v = np.arange(100.0)
    q = bin_edges(v, 4, "quantile")
    assert np.bincount(assign_bins(v, q)).tolist() == [25, 25, 25, 25]
    lin = bin_edges(np.array([0.0, 1.0, 10.0]), 5, "linear")
    assert np.allclose(lin, [0, 2, 4, 6, 8, 10])
    assert assign_bins(np.array([-5.0, 100.0]), lin).tolist() == [0, 4]  # outside -> end bins


@pytest.mark.parametrize("binning", ["quantile", "linear"])
def test_probe_reads_planted_descriptor_and_points_the_right_way(binning):
    codes, desc = _planted(3000, 0)
    val_codes, val_desc = _planted(1000, 1)
    probe = train_probe("planted", codes, desc, val_codes, val_desc,
                        ProbeConfig(n_bins=6, binning=binning, steps=300))
    m = probe.metrics
    assert m["accuracy/val"] > m["chance/val"] + 0.25, m  # measured +0.29 (linear) +0.5 (quantile)
    assert m["within_one/val"] > 0.9, m
    d = probe.direction
    assert torch.isclose(d.norm(), torch.tensor(1.0))
    assert d[7] > 0.3 and d[9] < -0.3, (d[7], d[9])  # raise 7, lower 9 = higher descriptor
    assert d.abs().argsort(descending=True)[:2].sort().values.tolist() == [7, 9]
    t = probe.class_targets()
    assert t.shape == (6, F_) and torch.allclose(t.norm(dim=1), torch.ones(6))
    assert t[-1, 7] > 0 and t[0, 7] < 0


def test_config_is_checked():
    with pytest.raises(ValueError, match="n_bins"):
        ProbeConfig(n_bins=1)
    with pytest.raises(ValueError, match="binning"):
        ProbeConfig(binning="log")
