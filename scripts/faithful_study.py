"""Issue 14 study: faithful mode (realtime/faithful.py) against resynthesis, measured on held-out
one-shots with a bundle. Not product code: it prints a table and writes JSON for the notes.

    python scripts/faithful_study.py [--bundle models/default] [--data DIR ...] [--clips 12]
        [--variant NAME=cut_power,add_gain ...] [--json out/faithful_study.json]

Per direction and per mode it sweeps each knob side over 8 equal steps of its calibrated α range
and reports, in dataset stds of the direction's descriptor: the median change at each end
(effect_up / effect_down), the share of steps whose median change is under 5 % of that side's
total (flat), the median level change at each end (dB), and the onset-envelope correlation with
the source at ±25 % of the knob. Centre error is |y - x| with every knob at 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIRROR: dict[str, bool] = {}
HYDROGEN = Path("/usr/share/hydrogen/data/drumkits")
VAL_KITS = ["ColomboAcousticDrumkit", "HardElectro1", "Millo_MultiLayered3"]


def onset_env(x: np.ndarray, hop: int = 512) -> np.ndarray:
    m = x.mean(axis=0)
    n = len(m) // hop
    e = np.sqrt((m[: n * hop].reshape(n, hop) ** 2).mean(1) + 1e-12)
    d = np.diff(20 * np.log10(e), prepend=-120)
    return np.maximum(d, 0)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10((x.astype(np.float64) ** 2).mean() + 1e-20))


def main() -> int:
    from steerpad.offline.evaluate import DESC_NAMES, clip_means, read_clips
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.faithful import ChangeConfig, apply_change

    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--data", type=Path, nargs="+", default=[HYDROGEN / k for k in VAL_KITS])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--directions", nargs="+", default=["brighter", "noisier", "crisper", "airier",
                                                        "boomier", "louder"])
    ap.add_argument("--variant", nargs="+", default=["ratio=1,1"],
                    help="NAME=cut_power,add_gain[,keep_level 0/1] (faithful variants to compare)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--calibrate", action="store_true",
                    help="per side, find on each mode's own output the α where the median change "
                         "reaches 1 std, on a geometric grid up to 4x the bundle's range, stopping "
                         "where the level leaves +-12 dB or the change falls back by 0.1 std")
    ap.add_argument("--no-resynth", action="store_true", help="measure the faithful variants only")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    clips = read_clips(args.data, bundle, args.clips, log=lambda s: None)
    sr, hop = bundle.sample_rate, bundle.hop
    stds = {n: float(v["std"]) for n, v in bundle.manifest["descriptors"].items()}
    names = [d.name for d in bundle.directions]
    modes: dict[str, ChangeConfig | None] = {} if args.no_resynth else {"resynth": None}
    for v in args.variant:
        name, params = v.split("=")
        cp, ag, *rest = (float(p) for p in params.split(","))
        modes[name] = ChangeConfig(cut_power=cp, add_gain=ag, keep_level=bool(rest[0]) if rest else True)
        MIRROR[name] = len(rest) > 1 and bool(rest[1])

    latents = [bundle.encode(a)[0] for _, a in clips]
    if args.calibrate:
        return calibrate(args, bundle, clips, latents, modes)
    plains = [bundle.decode(bundle.steer(z, np.zeros(len(names), np.float32)))[0] for z in latents]
    results: dict = {}
    steps = np.linspace(0, 1, 9)  # 8 equal steps per side
    for dname in args.directions:
        k = names.index(dname)
        d = bundle.directions[k]
        j = DESC_NAMES.index(d.descriptor)
        for mode, cfg in modes.items():
            per_side = {}
            for side, end in (("up", d.alpha_max), ("down", d.alpha_min)):
                changes = np.zeros((len(clips), len(steps)))
                levels = np.zeros(len(clips))
                onsets = []
                for c, ((_, x), z, p) in enumerate(zip(clips, latents, plains, strict=True)):
                    base = x if cfg is not None else p
                    ref, mask = clip_means(base, sr, hop, None)
                    for s, u in enumerate(steps):
                        if u == 0:
                            changes[c, s] = 0.0
                            continue
                        alpha = np.zeros(len(names), np.float32)
                        alpha[k] = u * end
                        q = bundle.decode(bundle.steer(z, alpha))[0]
                        y = q if cfg is None else apply_change(x, p, q, cfg)
                        vals, _ = clip_means(y, sr, hop, mask)
                        changes[c, s] = (vals[j] - ref[j]) / stds[d.descriptor]
                        if s == len(steps) - 1:
                            levels[c] = level_db(y) - level_db(base)
                        if s == 2:  # 25 % of the knob
                            onsets.append(corr(onset_env(x), onset_env(y)))
                med = np.median(changes, axis=0)
                total = med[-1]
                flat = float(np.mean(np.abs(np.diff(med)) < 0.05 * abs(total))) if total else 1.0
                per_side[side] = {"effect": float(total), "flat": flat,
                                  "level_db": float(np.median(levels)),
                                  "onset_r_quarter": float(np.median(onsets)),
                                  "median_curve": [float(v) for v in med]}
            centre = 0.0
            if cfg is not None:
                centre = max(float(np.abs(apply_change(x, p, p, cfg) - x).max())
                             for (_, x), p in zip(clips, plains, strict=True))
            else:
                centre = float(np.median([np.abs(p - x).max()
                                          for (_, x), p in zip(clips, plains, strict=True)]))
            results.setdefault(dname, {})[mode] = {**per_side, "centre_max_abs": centre}
            u, dn = per_side["up"], per_side["down"]
            print(f"{dname:9s} {mode:10s} up {u['effect']:+.2f} (flat {u['flat']:.2f}, "
                  f"{u['level_db']:+.1f} dB, onset r {u['onset_r_quarter']:.2f})  down {dn['effect']:+.2f} "
                  f"(flat {dn['flat']:.2f}, {dn['level_db']:+.1f} dB, onset r {dn['onset_r_quarter']:.2f})  "
                  f"centre {centre:.2g}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"clips": [n for n, _ in clips], "results": results}, indent=1))
    return 0


def calibrate(args, bundle, clips, latents, modes) -> int:
    """Per direction, side and mode: the α that reaches 1 std on that mode's own output."""
    from steerpad.offline.evaluate import DESC_NAMES, clip_means
    from steerpad.realtime.faithful import FaithfulPad

    sr, hop = bundle.sample_rate, bundle.hop
    stds = {n: float(v["std"]) for n, v in bundle.manifest["descriptors"].items()}
    names = [d.name for d in bundle.directions]
    zero = np.zeros(len(names), np.float32)
    plains = [bundle.decode(bundle.steer(z, zero))[0] for z in latents]
    out: dict = {}
    for dname in args.directions:
        k = names.index(dname)
        d = bundle.directions[k]
        j = DESC_NAMES.index(d.descriptor)
        for mode, cfg in modes.items():
            pads = [None if cfg is None else FaithfulPad(x, p, cfg)
                    for (_, x), p in zip(clips, plains, strict=True)]
            bases = [p if cfg is None else x for (_, x), p in zip(clips, plains, strict=True)]
            refs = [clip_means(b, sr, hop, None) for b in bases]
            for side, end in (("up", 4 * d.alpha_max), ("down", 4 * d.alpha_min)):
                grid = end / 2.0 ** np.arange(9, -1, -1)  # |end|/512 ... |end|
                best = {"alpha": 0.0, "effect": 0.0, "level_db": 0.0, "reached": False}
                for a in grid:
                    alpha = zero.copy()
                    mirror = MIRROR.get(mode, False) and a < 0
                    alpha[k] = -a if mirror else a
                    eff, lev = [], []
                    for c, z in enumerate(latents):
                        q = bundle.decode(bundle.steer(z, alpha))[0]
                        keep = None if d.descriptor != "loudness" else False
                        y = q if pads[c] is None else pads[c].render(None, mirrored=q) if mirror \
                            else pads[c].render(q, keep_level=keep)
                        vals, _ = clip_means(y, sr, hop, refs[c][1])
                        sign = 1 if side == "up" else -1
                        eff.append(sign * (vals[j] - refs[c][0][j]) / stds[d.descriptor])
                        lev.append(level_db(y) - level_db(bases[c]))
                    e, lv = float(np.median(eff)), float(np.median(lev))
                    if abs(lv) > 12 or e < best["effect"] - 0.1:  # a knob that turns back
                        break
                    if e < best["effect"]:
                        continue
                    best = {"alpha": float(a), "effect": e, "level_db": lv, "reached": e >= 1.0}
                    if e >= 1.0:
                        break
                out.setdefault(dname, {}).setdefault(mode, {})[side] = best
                was = d.alpha_max if side == "up" else d.alpha_min
                print(f"{dname:9s} {mode:10s} {side:4s} alpha {best['alpha']:+8.3f} (bundle {was:+7.3f})"
                      f"  effect {best['effect']:+.2f} std  level {best['level_db']:+.1f} dB  "
                      f"{'reached' if best['reached'] else 'NOT reached'}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
