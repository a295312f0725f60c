"""The steering stage: descriptors of every clip, a probe per descriptor, knob directions, and
their calibration on held-out clips. Writes a steering folder that `steerpad export` reads:

    directions.safetensors   "directions" [K, F] (unit rows, oriented so +α raises the
                             descriptor), "probe.<descriptor>.weight|bias|edges", and
                             "probe.<descriptor>.targets" [n_bins, F]: one unit direction per
                             bin (steer toward a bin, Paek et al. 2025)
    directions.json          {"directions": [{name, descriptor, unit, alpha_min, alpha_max,
                             polarity, ...calibration}], "probes": {descriptor: metrics},
                             "descriptors": {name: {unit, mean, std}}}

Frames: latent frame i of a clip pairs with descriptor frame i (same hop) of its VAE
reconstruction (`describe="reconstruction"`, the default: what a knob acts through) or of its
audio (`describe="audio"`); only frames that sound, judged on the audio either way (loudness
above -60 dBFS, and within the clip's sounding frames), are used,
and for pitch only frames with pitch_confidence >= `pitch_confidence`. Probes are fitted on the
training kits and scored on the validation kits; calibration renders validation clips.

Calibration (the end of this file): ‖f‖ = sqrt(F) after RMSNorm, but most of it is the level
pair's (offline/sae.py); the content part is far shorter, and it sets the α scale
(`content_norm`). For each direction the median change of its descriptor, in dataset standard
deviations, is measured on a symmetric α grid (evaluate.sweep, the measurement `steerpad eval`
makes too); the stored direction is flipped if the decoded audio moves the wrong way (polarity
-1), and each side's α is where the median change reaches `target_std` (interpolated; the grid's
best if it never does). A bipolar knob spans [alpha_min, alpha_max], centre = untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from steerpad.offline.descriptors import DESCRIPTORS, describe_clips
from steerpad.offline.evaluate import DESC_NAMES, KNOB_NAMES, SweepResult, sweep
from steerpad.offline.probes import Probe, ProbeConfig, sae_codes, train_probe
from steerpad.offline.sae import TopKSAE
from steerpad.offline.steering import SteerModule
from steerpad.realtime.errors import SteerpadError

MIN_FRAMES = 32  # per split, for a probe to be fitted at all


@dataclass
class SteeringConfig:
    """Probes, knobs and their calibration."""

    probe: ProbeConfig = field(default_factory=ProbeConfig)
    knobs: tuple[str, ...] = tuple(KNOB_NAMES)
    """Descriptors that become knob directions (named by evaluate.KNOB_NAMES)."""
    pitch_confidence: float = 0.5
    """Pitch frames below this pyin voiced probability are left out of the pitch probe."""
    calib_clips: int = 16
    """Validation clips rendered per direction to calibrate α."""
    alpha_points: int = 5
    """Grid points per side of α = 0 (geometric, up to twice the codes' content length)."""
    target_std: float = 1.0
    """A full knob turn should move its descriptor by this many dataset standard deviations."""
    describe: str = "reconstruction"
    """Fit probes to descriptors of the VAE's reconstructions ("reconstruction": what a knob
    acts through, so a direction moves what is heard even where the VAE colours the sound) or
    of the original audio ("audio")."""
    workers: int = 2
    """Processes describing clips."""
    decorrelate: tuple[str, ...] = ("flatness",)
    """Descriptors whose knob direction is projected off every other knob's (`decorrelate`), so
    it moves its own descriptor and less of theirs. Measured on models/default (faithful mode,
    16 validation one-shots; scripts/decorrelate_knobs.py): noisier's probe direction leaned on
    airier's (cosine 0.80) and brighter's (0.58), raising the centroid 2 std and the air band
    2.8 std for 1.7 std of flatness (drift 0.62); projected, drift 0.27. For the others it did
    not pay: brighter and airier lost most of their effect and boomier's drift rose (the
    centroid and the band shares are functions of one another), and crisper gained effect
    (+1.33 / -0.90 -> +1.55 / -1.06) and lost monotonic one-shots (1.00 -> 0.94), its flat
    steps 0.25 to 0.44 from one calibration to the next; they keep their probe directions."""

    def __post_init__(self) -> None:
        if isinstance(self.probe, dict):
            self.probe = ProbeConfig(**self.probe)
        self.knobs = tuple(self.knobs)
        self.decorrelate = tuple(self.decorrelate)
        unknown = [k for k in self.knobs if k not in KNOB_NAMES]
        if unknown:
            raise ValueError(f"unknown knob descriptors {unknown}; choose from {list(KNOB_NAMES)}")
        unknown = [k for k in self.decorrelate if k not in KNOB_NAMES]
        if unknown:
            raise ValueError(f"unknown descriptors to decorrelate {unknown}; choose from {list(KNOB_NAMES)}")
        if self.describe not in ("reconstruction", "audio"):
            raise ValueError(f"describe must be 'reconstruction' or 'audio', got {self.describe!r}")
        if self.calib_clips < 1 or self.alpha_points < 1 or self.target_std <= 0:
            raise ValueError("calib_clips >= 1, alpha_points >= 1 and target_std > 0 required")


@dataclass
class FrameTable:
    """Sounding frames of one split: latents z [N, D], descriptor values [N, n_desc]."""

    z: np.ndarray
    values: np.ndarray


def _decode_all(vae, zs: list[np.ndarray], progress: bool) -> list[np.ndarray]:
    out = []
    with torch.inference_mode():
        for z in tqdm(zs, desc="decode clips", disable=not progress):
            out.append(vae.decode(torch.from_numpy(np.ascontiguousarray(z))[None])[0].numpy())
    return out


def frame_tables(store, latents, vae=None, workers: int = 2, progress: bool = True
                 ) -> dict[str, FrameTable]:
    """Pair every clip's sounding latent frames with descriptors, per split: of the clip's
    reconstruction by `vae` when given (what a knob acts through), else of its audio. Sounding
    frames are judged on the audio either way."""
    meta = latents.meta
    sr, hop = int(meta["sample_rate"]), int(meta["hop"])
    ids = latents.ids()
    zs = [latents.latents(i) for i in ids]
    audio = [store.audio(i) for i in tqdm(ids, desc="read clips", disable=not progress)]
    values, sounding = describe_clips(audio, sr, hop, n_frames=None, workers=workers)
    if vae is not None:
        recon = _decode_all(vae, zs, progress)
        values, _ = describe_clips(recon, sr, hop, n_frames=values.shape[1], workers=workers)
    by_id = {r.id: r for r in latents.records}
    out: dict[str, list] = {"train": [[], []], "val": [[], []]}
    for i, z, v, s in zip(ids, zs, values, sounding):
        rec = by_id[i]
        n = min(z.shape[1], len(v), rec.frames)
        keep = s[:n]
        out[rec.split][0].append(z[:, :n].T[keep])
        out[rec.split][1].append(v[:n][keep])
    tables = {}
    for split, (z, v) in out.items():
        if not z:
            raise SteerpadError(f"{latents.path}: no {split} clips; ingest kits for both splits")
        tables[split] = FrameTable(np.concatenate(z).astype(np.float32), np.concatenate(v))
    return tables


def fit_probes(sae: TopKSAE, tables: dict[str, FrameTable], config: SteeringConfig,
               progress: bool = True) -> tuple[dict[str, Probe], dict[str, dict]]:
    """One probe per descriptor (pitch_confidence itself is not a target). Returns the probes
    and, per descriptor, the dataset mean/std of the training frames it used."""
    codes = {s: sae_codes(sae, t.z) for s, t in tables.items()}
    conf = DESC_NAMES.index("pitch_confidence")
    probes, stats = {}, {}
    names = [d for d in DESCRIPTORS if d.name != "pitch_confidence"]
    for d in tqdm(names, desc="probes", disable=not progress):
        j = DESC_NAMES.index(d.name)
        rows = {}
        for s, t in tables.items():
            ok = np.ones(len(t.values), bool)
            if d.name == "pitch":
                ok = t.values[:, conf] >= config.pitch_confidence
            rows[s] = np.flatnonzero(ok)
        if min(len(r) for r in rows.values()) < MIN_FRAMES:
            continue  # e.g. no pitched frames at all: no probe, no knob
        v_tr = tables["train"].values[rows["train"], j]
        if np.ptp(v_tr) <= 0:
            continue
        probes[d.name] = train_probe(
            d.name, codes["train"].subset(rows["train"]), v_tr,
            codes["val"].subset(rows["val"]), tables["val"].values[rows["val"], j], config.probe)
        stats[d.name] = {"unit": d.unit, "mean": float(v_tr.mean()), "std": float(v_tr.std())}
    return probes, stats


def torch_renderer(vae, steer: SteerModule):
    """(latents [D, N], alpha [K]) -> audio [C, T] through torch: the calibration renderer."""
    def render(z: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            zz = steer(torch.from_numpy(np.ascontiguousarray(z))[None], torch.from_numpy(alpha))
            return vae.decode(zz)[0].numpy()
    return render


def calibration_clips(latents, n: int) -> list[np.ndarray]:
    """Up to n validation clips' sounding latents, spread over labels (round robin)."""
    by_label: dict[str, list] = {}
    for r in latents.records:
        if r.split == "val" and r.frames > 0:
            by_label.setdefault(r.label, []).append(r)
    picked, queues = [], [list(v) for _, v in sorted(by_label.items())]
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return [latents.latents(r.id)[:, :max(r.frames, 1)] for r in picked]


def fit_steering(store, latents, sae: TopKSAE, vae, config: SteeringConfig, out_dir: str | Path,
                 progress: bool = True) -> dict:
    """Descriptors -> probes -> directions -> calibration; writes the steering folder and returns
    its directions.json content."""
    from safetensors.torch import save_file

    from steerpad.realtime.outputs import claim_output, mark_run

    out_dir = Path(out_dir)
    claim_output(out_dir, "run:steering", resume=True)  # refused before hours of work, not after
    sae.eval()
    vae.fold_weight_norm().eval()
    tables = frame_tables(store, latents, vae if config.describe == "reconstruction" else None,
                          config.workers, progress)
    probes, stats = fit_probes(sae, tables, config, progress)
    knobs = [d for d in config.knobs if d in probes]
    if not knobs:
        raise SteerpadError(f"{latents.path}: no descriptor had enough sounding frames for a "
                            "probe; ingest more clips")
    dirs = torch.from_numpy(decorrelate(torch.stack([probes[d].direction for d in knobs]).numpy(),
                                        knobs, [d for d in config.decorrelate if d in knobs]))
    clips = calibration_clips(latents, config.calib_clips)
    scale = content_norm(sae_codes(sae, np.concatenate([c.T for c in clips])).values.numpy(),
                         sae.config.reserved)
    grid = alpha_grid(scale, config.alpha_points)
    sr, hop = int(latents.meta["sample_rate"]), int(latents.meta["hop"])
    render = torch_renderer(vae, SteerModule(sae, dirs))
    entries = []
    for k, d in enumerate(tqdm(knobs, desc="calibrate", disable=not progress)):
        result = sweep(render, clips, k, len(knobs), grid, sr, hop)
        cal = calibrate_direction(result, d, stats[d]["std"], config.target_std)
        entries.append({"name": KNOB_NAMES[d], "descriptor": d, "unit": stats[d]["unit"],
                        **cal, "calibration_clips": len(clips), "content_norm": scale,
                        "decorrelated": d in config.decorrelate})
    polarity = torch.tensor([float(e["polarity"]) for e in entries])
    dirs = dirs * polarity[:, None]  # oriented so +α raises the descriptor on decoded audio

    mark_run(out_dir, "steering")
    tensors = {"directions": dirs.contiguous()}
    for name, p in probes.items():
        tensors[f"probe.{name}.weight"] = p.weight.contiguous()
        tensors[f"probe.{name}.bias"] = p.bias.contiguous()
        tensors[f"probe.{name}.edges"] = torch.from_numpy(p.edges.astype(np.float32))
        tensors[f"probe.{name}.targets"] = p.class_targets().contiguous()  # per-bin directions
    save_file(tensors, str(out_dir / "directions.safetensors"))
    content = {
        "directions": entries,
        "probes": {name: {"binning": config.probe.binning, "n_bins": config.probe.n_bins,
                          **p.metrics} for name, p in probes.items()},
        "descriptors": stats,
        "config": asdict(config),
        "frames": {s: int(len(t.z)) for s, t in tables.items()},
    }
    (out_dir / "directions.json").write_text(json.dumps(content, indent=2) + "\n")
    return content


def decorrelate(directions: np.ndarray, names: Sequence[str], which: Sequence[str]) -> np.ndarray:
    """directions [K, F] with each row named in `which` replaced by its projection onto the null
    space of the other rows (least squares), at unit norm: a knob that leans on other knobs'
    directions then moves none of them along their own (what is left is the part of it that is
    its own). Its sign is kept (the projection's dot product with the row is its squared
    norm); the other rows are unchanged, so doing it again changes nothing. One row only, or a
    row that lies in the others' span, is a SteerpadError."""
    out = np.array(directions, dtype=np.float32, copy=True)
    names = list(names)
    for name in which:
        if name not in names:
            raise SteerpadError(f"decorrelate: {name} is not a knob direction here ({', '.join(names)})")
        i = names.index(name)
        others = np.delete(out, i, axis=0).astype(np.float64)
        if not len(others):
            raise SteerpadError(f"decorrelate: {name} is the only direction; there is nothing to project off")
        row = out[i].astype(np.float64)
        row -= others.T @ np.linalg.lstsq(others @ others.T, others @ row, rcond=None)[0]
        norm = float(np.linalg.norm(row))
        if norm < 1e-3 * float(np.linalg.norm(out[i])):
            raise SteerpadError(f"decorrelate: {name}'s direction lies in the span of the others; "
                                "leave it out of decorrelate")
        out[i] = row / norm
    return out


# ---------------------------------------------------------------- calibration

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
