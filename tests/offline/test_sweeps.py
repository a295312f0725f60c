"""Calibration and report arithmetic on sweeps with a known response."""

from __future__ import annotations

import numpy as np
import pytest

from steerpad.offline.directions import alpha_grid, calibrate_direction, content_norm
from steerpad.offline.evaluate import DESC_NAMES, SweepResult, direction_report, knob_grid, spearman

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
    mean = r["change_mean"]  # the whole knob's mean change: its ends are the effect sizes
    assert mean[0] == r["effect_size_min"] and mean[-1] == r["effect_size"] and mean[4] == 0.0
    assert mean == pytest.approx([a / 20 for a in grid])
    assert r["drift"] == pytest.approx((20 / 10 / 2.0) / 1.0)  # loudness: +2 dB = 1 std
    flat = direction_report(_sweep(grid, 0.0), "centroid", {"centroid": 100.0})
    assert flat["spearman_median"] == 0.0 and flat["monotonic_fraction"] == 0.0


def test_spearman_handles_ties_and_reversal():
    assert spearman(np.arange(5), np.arange(5)[::-1]) == pytest.approx(-1.0)
    assert spearman(np.arange(4), np.array([1, 1, 2, 3])) > 0.9


class _Knob:
    """A Measure stand-in for offline/knobs.walk_side: one direction (alpha_max 1) whose clips'
    change saturates, 0.8 * (1 - exp(-|α| / 2)) stds, and whose level falls by 3 dB per unit
    of |α| (a timbre knob: the 12 dB bound lies at |α| = 4)."""

    def __init__(self):
        from types import SimpleNamespace

        d = SimpleNamespace(alpha_max=1.0, alpha_min=-1.0, descriptor="centroid")
        self.bundle = SimpleNamespace(directions=[d])
        self.asked: list[float] = []

    def __call__(self, mode, direction, alpha, mirror):
        self.asked.append(alpha)
        change = np.sign(alpha) * 0.8 * (1 - np.exp(-abs(alpha) / 2)) * np.array([0.9, 1.0, 1.1])
        return change, np.full(3, -3.0 * abs(alpha))


def test_a_side_closes_in_on_its_level_bound_and_its_knots_follow_the_saturating_response():
    from steerpad.offline.knobs import REFINE, knots, walk_side

    knob = _Knob()
    walk = walk_side(knob, "faithful", 0, "up", mirror=False)
    assert walk["stop"] == "level bound"
    end = walk["alphas"][-1]
    assert 4 / 2 ** (1 / 2 ** REFINE) <= end <= 4.0  # within a quarter octave of the bound
    assert all(abs(a) <= 4.0 for a in walk["alphas"])  # nothing kept beyond it
    ks, effect, level = knots(walk)
    assert ks[-1] == pytest.approx(end) and level == pytest.approx(-3 * end)
    response = [0.8 * (1 - np.exp(-a / 2)) for a in ks]  # equal knob steps, equal steps of change
    steps = np.diff([0.0, *response])
    assert steps.min() > 0.8 * steps.mean() and steps.max() < 1.2 * steps.mean(), steps

