"""Calibration and report arithmetic on sweeps with a known response."""

from __future__ import annotations

import numpy as np
import pytest

from steerpad.offline.evaluate import knob_grid
from steerpad.offline.steer_eval import (
    DESC_NAMES,
    SweepResult,
    alpha_grid,
    calibrate_direction,
    content_norm,
    direction_report,
    spearman,
)

J = DESC_NAMES.index("centroid")


def _sweep(alphas: np.ndarray, slope: float, clips: int = 5) -> SweepResult:
    """Centroid = 1000 + slope * α (+ a per-clip offset); loudness drifts by |α| / 10."""
    values = np.zeros((clips, len(alphas), len(DESC_NAMES)))
    for c in range(clips):
        values[c, :, J] = 1000 + 10 * c + slope * alphas
        values[c, :, DESC_NAMES.index("loudness")] = -20 + np.abs(alphas) / 10
    return SweepResult(alphas.astype(np.float32), values, 0.0)


def test_alpha_grid_is_symmetric_and_geometric():
    g = alpha_grid(2.0, points=3, top=4.0)
    assert g.tolist() == [-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0]
    assert content_norm(np.array([[5.0, 5.0, 3.0, 4.0]]), reserved=2) == pytest.approx(5.0)


@pytest.mark.parametrize("slope", [5.0, -5.0])
def test_calibration_finds_the_alpha_of_one_std_either_polarity(slope):
    grid = alpha_grid(10.0, points=4)  # up to ±40
    cal = calibrate_direction(_sweep(grid, slope), "centroid", std=100.0, target_std=1.0)
    # |slope| 5 per α unit, std 100: one std at |α| = 20, on both sides
    assert cal["polarity"] == (1 if slope > 0 else -1)
    assert cal["alpha_max"] == pytest.approx(20.0, rel=1e-4)
    assert cal["alpha_min"] == pytest.approx(-20.0, rel=1e-4)
    assert cal["reached_up"] and cal["reached_down"]
    assert cal["median_change_std"][-1] > 0  # along the flipped direction, +α raises it


def test_calibration_that_never_reaches_the_target_uses_the_best_alpha():
    grid = alpha_grid(1.0, points=3)
    cal = calibrate_direction(_sweep(grid, 1.0), "centroid", std=100.0)
    assert not cal["reached_up"] and cal["alpha_max"] == pytest.approx(4.0)
    assert cal["effect_up_std"] == pytest.approx(0.04, rel=1e-3)


def test_report_measures_monotonicity_effect_and_drift():
    grid = knob_grid(-20.0, 20.0, 4)
    assert grid[0] == -20 and grid[4] == 0 and grid[-1] == 20
    r = direction_report(_sweep(grid, 5.0), "centroid", {"centroid": 100.0, "loudness": 2.0})
    assert r["spearman_median"] == pytest.approx(1.0) and r["monotonic_fraction"] == 1.0
    assert r["effect_size"] == pytest.approx(1.0) and r["effect_size_min"] == pytest.approx(-1.0)
    assert r["drift"] == pytest.approx((20 / 10 / 2.0) / 1.0)  # loudness: +2 dB = 1 std
    flat = direction_report(_sweep(grid, 0.0), "centroid", {"centroid": 100.0})
    assert flat["spearman_median"] == 0.0 and flat["monotonic_fraction"] == 0.0


def test_spearman_handles_ties_and_reversal():
    assert spearman(np.arange(5), np.arange(5)[::-1]) == pytest.approx(-1.0)
    assert spearman(np.arange(4), np.array([1, 1, 2, 3])) > 0.9
