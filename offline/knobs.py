"""`steerpad calibrate BUNDLE --data DIR...`: each knob's feel, per render mode, measured on what
a pad plays, written into the bundle's manifest (directions[].modes, render).

Export calibrates each direction once, on torch resynthesis, to one α range. A pad plays either
mode (realtime/faithful.py), and the two respond differently to the same α: faithful mode keeps
the source and applies only the decoder's change, which is smaller where the source already has
what the knob asks for. So each side of each knob is calibrated again here, per mode, on the
exported bundle through the realtime render path (RenderWorker.render, onnxruntime):

- one-shots from --data (training kits: validation kits stay held out for `steerpad eval`) and
  the bundle's own kit one-shots are rendered on a geometric α grid per side, up to GRID_SPAN
  times the export's range;
- the side's response is the clips' mean change of the direction's descriptor, in dataset stds
  (as `steerpad eval` reports effect_size), and their median (as flat_fraction judges a step);
  the walk stops where the mean reaches TARGET_STD, where a timbre knob would move any clip's
  level by more than LEVEL_BOUND_DB (`louder` is exempt), or where the response (mean and
  median together) turns back; the knob ends where mean and median together first come within
  END_SHARE of their best;
- the knob's KNOTS knots per side are placed at equal steps of that response (the measured
  curve inverted): equal knob steps give equal descriptor steps, with no flat stretch;
- faithful mode's left half of a timbre knob only ever removes (FaithfulPad.render): it is
  measured two ways, its own negative α (the decoder's cuts, applied cut-only), and the mirror
  of its right half (the decoder's change at +|α|, inverted, cut-only: KnobScale.mirror_down);
  the one that moves the descriptor further is kept. The learned negative side of brighter,
  noisier, crisper and airier barely changes the decoder's spectrum, and where it does, far
  out, it adds a low hum (the collapse the knobs had), which cut-only cannot play; the mirror
  cuts what the right half adds. `louder` keeps its own negative side (the level change).

manifest.json then holds, per direction, `modes.<mode>`: up, down (α knots), mirror_down,
effect_up_std / effect_down_std (mean change at each end), level_up_db / level_down_db (median
level change there), reached_up / reached_down (TARGET_STD reached within the bounds); and
`render`: default_mode and the faithful change's settings.

`--kit-audio DIR` also stores each kit entry's source one-shot (its manifest `source`, found under
DIR, read as ingest reads it) so kit pads play faithfully: for bundles exported before kit
entries carried audio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steerpad.realtime.errors import SteerpadError

TARGET_STD = 1.0
"""A side stops where its mean change reaches this many dataset stds (eval asks >= 0.8)."""
LEVEL_BOUND_DB = 12.0
"""No clip's level may move further than this at a timbre knob's end."""
GRID_SPAN = 8.0
"""The α grid reaches this many times the export's range (alpha_min / alpha_max; a mirrored
left half twice that of alpha_max: it is only ever a cut)."""
GRID_POINTS = 12
"""Geometric α grid points per side, from span / 2**(GRID_POINTS - 1) up to span."""
KNOTS = 8
"""Knots per side of a calibrated knob (equal descriptor steps)."""
END_SHARE = 0.95
"""A side ends at the first grid point whose response (mean + median) is within this share of
its best: the last few percent are not worth pushing α further out, where responses flatten
and some one-shots start to turn back."""
TURN_BACK_STD = 0.1
"""A side stops where its response falls this far below its best so far."""
REFINE = 2
"""Where a side stops at a bound, the grid step before it is halved (geometrically) this many
times: the side ends within 2 ** (1 / 2 ** REFINE) (19 %) of where the bound lies. (A side
that reaches TARGET_STD far past it is not closed in on: measured, on the training chain's
fixture model that took the held-out faithful effect of brighter from +0.14 to +0.04 std.)"""
LEVEL_DESCRIPTOR = "loudness"


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


class Measure:
    """Renders clips through the realtime path and measures one descriptor's change and the level
    change against each clip's centred render (what the pad plays with the knobs centred)."""

    def __init__(self, bundle, clips: list[np.ndarray]):
        from steerpad.offline.evaluate import clip_means
        from steerpad.realtime.renderer import RenderWorker, clip_sound

        self.bundle = bundle
        self.clip_means = clip_means
        self.worker = RenderWorker(bundle, [], out_rate=bundle.sample_rate, analyse=False)
        self.stds = {n: max(float(v["std"]), 1e-12) for n, v in bundle.manifest["descriptors"].items()}
        self.k = len(bundle.directions)
        self.prepared: dict[str, list] = {}
        self.bases: dict[str, list[tuple[np.ndarray, np.ndarray, float]]] = {}
        from steerpad.realtime.faithful import MODES

        for mode in MODES:
            preps = [clip_sound(bundle, x, mode) for x in clips]
            self.prepared[mode] = preps
            self.bases[mode] = []
            for p in preps:
                y = self.worker.render(p, np.zeros(self.k, np.float32))[0].T
                ref, mask = clip_means(y, bundle.sample_rate, bundle.hop, None)
                self.bases[mode].append((ref, mask, level_db(y)))

    def __call__(self, mode: str, direction: int, alpha: float, mirror: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per clip: the descriptor's change in stds and the level change in dB at α."""
        from steerpad.offline.evaluate import DESC_NAMES

        d = self.bundle.directions[direction]
        j = DESC_NAMES.index(d.descriptor)
        a = np.zeros(self.k, np.float32)
        a[direction] = alpha
        self.worker.mirror_down[direction] = mirror
        change, level = [], []
        for p, (ref, mask, lv) in zip(self.prepared[mode], self.bases[mode], strict=True):
            y = self.worker.render(p, a)[0].T
            vals, _ = self.clip_means(y, self.bundle.sample_rate, self.bundle.hop, mask)
            change.append((vals[j] - ref[j]) / self.stds[d.descriptor])
            level.append(level_db(y) - lv)
        self.worker.mirror_down[direction] = False
        return np.asarray(change), np.asarray(level)


def walk_side(measure: Measure, mode: str, direction: int, side: str, mirror: bool) -> dict:
    """Walk one side's α grid outwards; the points reached within the bounds and how it ended."""
    d = measure.bundle.directions[direction]
    sign = 1.0 if side == "up" else -1.0
    span = GRID_SPAN * (d.alpha_max if side == "up" else 2 * d.alpha_max if mirror else -d.alpha_min)
    timbre = d.descriptor != LEVEL_DESCRIPTOR
    alphas, effects, medians, levels = [0.0], [0.0], [0.0], [0.0]

    def step(mag: float) -> str | None:
        """Measure at `mag`; keep it unless it breaks a bound ("level bound" / "turned back");
        "reached" where it reaches TARGET_STD."""
        change, level = measure(mode, direction, sign * mag, mirror)
        effect = float(sign * change.mean())
        if timbre and np.abs(level).max() > LEVEL_BOUND_DB:
            return "level bound"
        score = 0.5 * (effect + sign * float(np.median(change)))
        if score < max(0.5 * (e + m) for e, m in zip(effects, medians)) - TURN_BACK_STD:
            return "turned back"
        alphas.append(sign * mag)
        effects.append(effect)
        medians.append(float(sign * np.median(change)))
        levels.append(float(np.median(level)))
        return "reached" if effect >= TARGET_STD else None

    stop = "grid end"
    for mag in span / 2.0 ** np.arange(GRID_POINTS - 1, -1, -1):
        stop = step(float(mag)) or "grid end"
        if stop != "grid end":
            break
    if stop in ("level bound", "turned back") and len(alphas) > 1:
        # the bound lies between the last point kept and the one refused (a factor 2 apart):
        # close in on it geometrically, REFINE times, so the side ends as far out as it may
        last, factor = abs(alphas[-1]), 2.0
        for _ in range(REFINE):
            factor = np.sqrt(factor)
            result = step(float(last * factor))
            if result in (None, "reached"):  # kept: the bound lies further out still
                last = abs(alphas[-1])
            if result == "reached":
                stop = "reached"
                break
    return {"alphas": alphas, "effects": effects, "medians": medians, "levels": levels, "stop": stop,
            "mirror": mirror}


def knots(walk: dict) -> tuple[list[float], float, float]:
    """KNOTS α values at equal steps of the walk's response up to its best point (the clips'
    median change, as `flat_fraction` judges a step; the mean where the median hardly moves), the
    effect (mean change) and the median level change at the last knot."""
    a, e = np.asarray(walk["alphas"]), np.asarray(walk["effects"])
    score = e + np.asarray(walk["medians"])  # the end: the first point within END_SHARE of the best
    best = int(np.argmax(score >= END_SHARE * score.max())) if score.max() > 0 else 0
    if best == 0 or e[best] <= 0:  # nothing moves it: a linear knob over the first grid step
        return [float(a[1] * (i + 1) / KNOTS) for i in range(KNOTS)] if len(a) > 1 else \
            [0.0] * KNOTS, 0.0, 0.0
    median = np.asarray(walk["medians"])[:best + 1]
    a, e = a[:best + 1], np.maximum.accumulate(median if median[-1] >= 0.5 * e[best] else e[:best + 1])
    e = e + np.arange(len(e)) * 1e-9  # strictly rising for the inversion
    targets = e[-1] * np.arange(1, KNOTS + 1) / KNOTS
    # the response is read between grid points in log |α| (the grid is geometric, and responses
    # saturate: linear in α, a knot would land too far out and the outer steps go flat); from
    # 0 to the first point it is linear
    mag = np.abs(a)
    first = np.interp(targets, e[:2], mag[:2])
    outer = np.exp(np.interp(targets, e[1:], np.log(np.maximum(mag[1:], 1e-12))))
    out = np.where(targets <= e[1], first, outer) * np.sign(a[-1])
    return [float(v) for v in out], float(walk["effects"][best]), float(walk["levels"][best])


def calibrate_direction(measure: Measure, direction: int, mode: str, log=print) -> dict:
    d = measure.bundle.directions[direction]
    entry: dict = {}
    for side in ("up", "down"):
        both = mode == "faithful" and side == "down" and d.descriptor != LEVEL_DESCRIPTOR
        results = []
        for mirror in ([False, True] if both else [False]):
            walk = walk_side(measure, mode, direction, side, mirror)
            results.append((knots(walk), walk))
        (ks, effect, level), walk = max(results, key=lambda r: r[0][1])  # the one that moves it most
        entry[side] = ks
        entry[f"effect_{side}_std"] = effect if side == "up" else -effect
        entry[f"level_{side}_db"] = level
        entry[f"reached_{side}"] = walk["stop"] == "reached"
        if side == "down":
            entry["mirror_down"] = walk["mirror"]
        tried = ", ".join(f"{'mirror' if w['mirror'] else 'own'} {r[1]:+.2f} at {r[0][-1]:+.2f} ({w['stop']})"
                          for r, w in results)
        log(f"calibrate {d.name:<9} {mode:<8} {side:<4} effect {entry[f'effect_{side}_std']:+.2f} std  "
            f"level {level:+.1f} dB  [{tried}]")
    return entry


def calibrate(bundle, clips: list[np.ndarray], only: list[str] | None = None, log=print) -> dict:
    """{direction name: {mode: entry}} for the bundle's directions (or those in `only`)."""
    from steerpad.realtime.faithful import MODES

    measure = Measure(bundle, clips)
    out: dict = {}
    for i, d in enumerate(bundle.directions):
        if only is not None and d.name not in only:
            continue
        out[d.name] = {mode: calibrate_direction(measure, i, mode, log) for mode in MODES}
    return out


def kit_audio(bundle, root: Path) -> dict[str, np.ndarray]:
    """Each kit entry's source one-shot [C, T] found under `root` (its manifest `source`), read as
    ingest reads it for this bundle; checked against the entry's latents (the same clip encodes
    to them)."""
    from steerpad.offline.ingest import IngestConfig, SkipFile, load_clip

    if not bundle.kit:
        raise SteerpadError(f"--kit-audio {root}: {bundle.path} has no kit entries to give audio to; "
                            "leave the option out")
    config = IngestConfig(sample_rate=bundle.sample_rate, channels=bundle.channels, hop=bundle.hop,
                          frames=bundle.max_frames, workers=1)
    out = {}
    for entry, meta in zip(bundle.kit, bundle.manifest["kit"], strict=True):
        source = meta.get("source")
        path = root / str(source)
        if not source or not path.is_file():
            raise SteerpadError(f"--kit-audio {root}: kit entry {entry.name}'s source {source!r} is not "
                                "there; give the folder its sources are relative to")
        try:
            audio, _ = load_clip(path, config)
        except SkipFile as e:
            raise SteerpadError(f"--kit-audio {path}: {e}") from None
        z = bundle.encode(audio)[0]
        n = min(z.shape[1], entry.latents.shape[1])
        err = float(np.abs(z[:, :n] - entry.latents[:, :n]).max() / max(np.abs(entry.latents).max(), 1e-9))
        if z.shape[1] != entry.latents.shape[1] or err > 1e-2:
            raise SteerpadError(f"--kit-audio {path}: does not encode to kit entry {entry.name}'s latents "
                                f"(relative error {err:.2g}); it is not the clip the bundle was made from")
        out[entry.name] = audio
    return out


def write_manifest(folder: Path, manifest: dict) -> None:
    """Replace folder/manifest.json atomically (a reader sees the old one or the new one)."""
    from steerpad.realtime.outputs import write_text_atomic

    write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=2, allow_nan=False) + "\n")


def calibrate_bundle(folder: Path, clips: list[np.ndarray], kit: dict[str, np.ndarray] | None = None,
                     only: list[str] | None = None, log=print) -> dict:
    """Calibrate the bundle at `folder` in place on `clips` and the bundle's own kit one-shots
    (what its pads play; `kit` audio is stored first, when given); returns the calibration. The
    manifest keeps its old calibration until the new one is whole: a stop or a failure on the
    way puts the manifest back as it was."""
    original = (folder / "manifest.json").read_text()
    manifest = json.loads(original)
    try:
        return _calibrate_bundle(folder, manifest, clips, kit, only, log)
    except BaseException:  # a stop or a failure leaves the bundle's own calibration as it was
        restored = json.loads(original)
        for rel, info in manifest["files"].items():  # kit audio this call rewrote: as it is now
            if rel in restored["files"] and restored["files"][rel] != info:
                restored["files"][rel] = info
        write_manifest(folder, restored)
        raise


def _calibrate_bundle(folder: Path, manifest: dict, clips: list[np.ndarray],
                      kit: dict[str, np.ndarray] | None, only: list[str] | None, log) -> dict:
    from steerpad.offline.export import store_kit_audio
    from steerpad.realtime.bundle import load_bundle, sha256
    from steerpad.realtime.faithful import DEFAULT_MODE, ChangeConfig

    if kit:
        for meta in manifest["kit"]:
            if meta["name"] in kit:
                meta.update(store_kit_audio(folder, meta["name"], kit[meta["name"]],
                                            manifest["audio"]["sample_rate"]))
                path = folder / meta["audio"]  # listed and hashed like every file of the bundle
                manifest["files"][meta["audio"]] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    manifest["render"] = {"default_mode": DEFAULT_MODE, "faithful": ChangeConfig().as_dict()}
    write_manifest(folder, manifest)  # (the kit audio and render settings measured with)
    bundle = load_bundle(folder)
    kit_clips = [e.audio for e in bundle.kit if e.audio is not None]  # what its pads play, too
    result = calibrate(bundle, list(clips) + kit_clips, only, log)
    for d in manifest["directions"]:
        if only is None or d["name"] in only:
            d.pop("modes", None)
        if d["name"] in result:
            d["modes"] = result[d["name"]]
    write_manifest(folder, manifest)
    load_bundle(folder)  # what was written loads
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle folder steerpad wrote (updated in place)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="folders of one-shots to calibrate on (training kits, not validation)")
    parser.add_argument("--clips", type=int, default=12, help="one-shots to measure (default 12)")
    parser.add_argument("--kit-audio", type=Path, default=None, metavar="DIR",
                        help="also store each kit entry's source one-shot, found under DIR")
    parser.add_argument("--directions", nargs="+", default=None, metavar="NAME",
                        help="calibrate only these directions (default: all)")


def run(args: argparse.Namespace) -> int:
    from steerpad.offline.evaluate import read_clips
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.outputs import claim_output

    if args.clips < 1:
        raise SteerpadError("--clips must be >= 1")
    bundle = load_bundle(args.bundle)
    claim_output(args.bundle, "bundle", option="BUNDLE", force=True)  # a bundle steerpad wrote
    clips = [audio for _, audio in read_clips(args.data, bundle, args.clips)]
    unknown = sorted(set(args.directions or []) - set(bundle.direction_names()))
    if unknown:
        raise SteerpadError(f"--directions {' '.join(unknown)}: not in {args.bundle} "
                            f"(it has {', '.join(bundle.direction_names())})")
    kit = kit_audio(bundle, args.kit_audio) if args.kit_audio is not None else None
    calibrate_bundle(args.bundle, clips, kit, args.directions)
    print(f"calibrate: wrote {args.bundle}/manifest.json (directions[].modes, render)")
    return 0
