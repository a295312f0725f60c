"""Steering measured on audio: α sweeps, the calibration of knob ranges, and `steerpad eval`.

One measurement underlies both: render held-out one-shots at a grid of α for one direction,
describe the audio frame by frame (offline/descriptors.py), and average each descriptor over the
frames that sound in the α = 0 render (a fixed mask, so a quieter render is not judged on fewer
frames). `sweep` does that for any renderer: torch modules before export (calibration), the
exported bundle through onnxruntime after it (`steerpad eval`, so what is evaluated is what a
performer plays).

Calibration: ‖f‖ = sqrt(F) after RMSNorm, but most of it is the level pair's (offline/sae.py);
the content part is far shorter, and it sets the α scale (`content_norm`). For each direction the
median change of its descriptor, in dataset standard deviations, is measured on a symmetric α
grid; the stored direction is flipped if the decoded audio moves the wrong way (polarity -1),
and each side's α is where the median change reaches `target_std` (interpolated; the grid's
best if it never does). A bipolar knob spans [alpha_min, alpha_max], centre = untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from steerpad.offline.descriptors import DESCRIPTORS, frame_descriptors

Renderer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(latents [D, N], alpha [K]) -> audio [C, N * hop]."""

# Descriptor -> the knob's name: what turning it up does to the sound.
KNOB_NAMES: dict[str, str] = {
    "centroid": "brighter", "flatness": "noisier", "crest": "punchier", "band_sub": "boomier",
    "band_low_mid": "warmer", "band_high_mid": "crisper", "band_air": "airier",
    "loudness": "louder", "pitch": "higher",
}
DESC_NAMES = tuple(d.name for d in DESCRIPTORS)


@dataclass
class SweepResult:
    alphas: np.ndarray
    """[A] the α grid."""
    values: np.ndarray
    """[clips, A, descriptors] clip means over the α = 0 render's sounding frames."""
    identity_max_abs: float
    """max |render(z, 0) - render_plain(z)| over the clips, when a plain renderer was given."""


def clip_means(audio: np.ndarray, sample_rate: int, hop: int, mask: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Descriptor means [n_desc] of audio [C, T] over `mask` (default: its own sounding frames);
    also returns the sounding mask it used."""
    fd = frame_descriptors(audio, sample_rate, hop)
    if mask is None:
        mask = fd.sounding if fd.sounding.any() else np.ones_like(fd.sounding)
    mask = mask[: len(fd.values)]
    return fd.values[mask].mean(0), mask


def sweep(render: Renderer, latents: Sequence[np.ndarray], direction: int, n_directions: int,
          alphas: np.ndarray, sample_rate: int, hop: int,
          plain: Callable[[np.ndarray], np.ndarray] | None = None) -> SweepResult:
    """Render every clip's latents [D, N] at each α of `alphas` on `direction` (the others at 0)
    and describe the audio."""
    alphas = np.asarray(alphas, dtype=np.float32)
    out = np.zeros((len(latents), len(alphas), len(DESCRIPTORS)), np.float64)
    zero_at = int(np.argmin(np.abs(alphas)))
    identity = 0.0
    for c, z in enumerate(latents):
        vec = np.zeros(n_directions, np.float32)
        base = render(z, vec)
        if plain is not None:
            identity = max(identity, float(np.abs(base - plain(z)).max()))
        _, mask = clip_means(base, sample_rate, hop, None)
        for a, alpha in enumerate(alphas):
            if a == zero_at and alpha == 0:
                audio = base
            else:
                vec[direction] = alpha
                audio = render(z, vec)
            out[c, a], _ = clip_means(audio, sample_rate, hop, mask)
    return SweepResult(alphas, out, identity)


def _first_crossing(alphas: np.ndarray, change: np.ndarray, target: float
                    ) -> tuple[float, float, bool]:
    """Along increasing alphas (>= 0, sorted, alphas[0] = 0): the α where `change` first reaches
    `target` (linear interpolation) -> (α, change there, True). If it never does: the α of the
    largest change, or the end of the grid when nothing rises at all -> (α, change, False)."""
    for i in range(1, len(alphas)):
        if change[i] >= target:
            lo, hi = change[i - 1], change[i]
            t = (target - lo) / (hi - lo) if hi > lo else 1.0
            return float(alphas[i - 1] + t * (alphas[i] - alphas[i - 1])), float(target), True
    best = int(np.argmax(change))
    if change[best] <= 0:
        best = len(alphas) - 1
    return float(alphas[best]), float(change[best]), False


def calibrate_direction(result: SweepResult, descriptor: str, std: float,
                        target_std: float = 1.0) -> dict:
    """Knob range of one direction from its sweep over a symmetric α grid. `polarity` says
    whether the probe direction raised the descriptor (+1) or has to be flipped (-1);
    alpha_min/alpha_max and the changes are for the flipped direction, so +α raises it."""
    j = DESC_NAMES.index(descriptor)
    a = result.alphas
    if not np.allclose(a, -a[::-1]):
        raise ValueError("calibration needs a symmetric, sorted α grid")
    zero = int(np.argmin(np.abs(a)))
    change = result.values[:, :, j] - result.values[:, zero:zero + 1, j]
    med = np.median(change, axis=0) / max(std, 1e-12)
    polarity = 1 if med[-1] - med[0] >= 0 else -1
    m = med if polarity > 0 else med[::-1]  # change at +α along the flipped direction
    pos, neg = a >= 0, a <= 0
    alpha_up, effect_up, reached_up = _first_crossing(a[pos], m[pos], target_std)
    alpha_down, effect_down, reached_down = _first_crossing(-a[neg][::-1], -m[neg][::-1],
                                                            target_std)
    return {"polarity": polarity, "alpha_min": -alpha_down, "alpha_max": alpha_up,
            "effect_up_std": effect_up, "effect_down_std": effect_down,
            "reached_up": reached_up, "reached_down": reached_down,
            "target_std": target_std, "grid": [float(x) for x in a],
            "median_change_std": [float(x) for x in m]}


def alpha_grid(scale: float, points: int = 5, top: float = 4.0) -> np.ndarray:
    """Symmetric grid, geometric in |α|, up to top * scale: 0, ±top scale / 2^(points-1) ...
    ±top scale. `scale` is the typical length of the content part of a code (`content_norm`):
    a push of that size outweighs what the code says, so the grid spans a nudge to a takeover."""
    pos = top * scale / 2.0 ** np.arange(points - 1, -1, -1)
    return np.concatenate([-pos[::-1], [0.0], pos]).astype(np.float32)


def content_norm(values: np.ndarray, reserved: int) -> float:
    """Median length of the codes' content part (SparseCodes values [N, j]; the first
    `reserved` columns are the level pair). With the level pair taking most of ||f|| = sqrt(F),
    this, not sqrt(F), is the scale at which a direction starts to change the sound."""
    v = np.asarray(values)[:, reserved:]
    return float(np.median(np.sqrt((v.astype(np.float64) ** 2).sum(1))))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ (average ranks for ties); 0 when y is constant."""
    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):  # ties share their mean rank
            tie = v == val
            r[tie] = r[tie].mean()
        return r
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if ry.std() == 0 or rx.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def direction_report(result: SweepResult, descriptor: str, stds: dict[str, float]) -> dict:
    """`report.json`'s `directions.<name>` entry from a sweep over [alpha_min .. alpha_max]."""
    j = DESC_NAMES.index(descriptor)
    zero = int(np.argmin(np.abs(result.alphas)))
    rhos = np.array([spearman(result.alphas, clip[:, j]) for clip in result.values])
    change = (result.values - result.values[:, zero:zero + 1]) / np.array(
        [max(stds.get(n, 1.0), 1e-12) for n in DESC_NAMES])
    full = change[:, -1]  # at alpha_max
    target = float(np.mean(full[:, j]))
    others = [i for i, n in enumerate(DESC_NAMES) if i != j and n in stds]
    drift_abs = {DESC_NAMES[i]: float(np.mean(np.abs(full[:, i]))) for i in others}
    drift = float(np.mean(list(drift_abs.values())) / max(abs(target), 1e-12)) if others else 0.0
    return {"descriptor": descriptor,
            "spearman_median": float(np.median(rhos)),
            "monotonic_fraction": float(np.mean(rhos >= 0.8)),
            "effect_size": target,
            "effect_size_min": float(np.mean(change[:, 0, j])),
            "drift": drift,
            "drift_per_descriptor": drift_abs,
            "alphas": [float(a) for a in result.alphas],
            "change_median": [float(x) for x in np.median(change[:, :, j], 0)],
            "change_q25": [float(x) for x in np.quantile(change[:, :, j], 0.25, 0)],
            "change_q75": [float(x) for x in np.quantile(change[:, :, j], 0.75, 0)],
            "clips": int(len(result.values))}
