"""`steerpad eval BUNDLE --data DIR... --out DIR`: how well each knob steers, measured on audio.

The bundle is played the way the realtime engine plays it (onnxruntime: encoder, steer, decoder),
on held-out one-shots read like `steerpad ingest` reads them. Per direction, each one-shot is
rendered across an α grid spanning the knob (alpha_min .. 0 .. alpha_max) and every descriptor
is measured on the audio (offline/steer_eval.py). `report.json`:

    identity_max_abs          max |render(z, α = 0) - decode(z)| over the clips (the residual
                              trick gives back the plain VAE reconstruction)
    directions.<name>         spearman_median   ρ(α, target descriptor) per clip, median
                              monotonic_fraction share of clips with ρ >= 0.8
                              effect_size       mean change at full knob, in dataset stds
                              drift             mean |change| of the other descriptors, in
                                                their stds, relative to the target's
                              + the response curve (median and quartiles per α)

and two PNGs: `response.png` (change of each direction's descriptor vs knob position, median
with the interquartile band) and `drift.png` (direction x descriptor change at full knob).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from steerpad.offline.steer_eval import DESC_NAMES, direction_report, sweep
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.outputs import claim_output, mark_run


def read_clips(dirs: list[Path], bundle, max_clips: int, log=print) -> list[tuple[str, np.ndarray]]:
    """Up to max_clips one-shots from `dirs` (evenly spread over the sorted files), prepared as
    ingest prepares them for this bundle's rate, channels and length. Unusable files are
    skipped with one line each."""
    from steerpad.offline.ingest import IngestConfig, SkipFile, find_files, load_clip

    for d in dirs:
        if not Path(d).is_dir():
            raise SteerpadError(f"--data {d}: not a folder of audio files")
    files = [p for p, _ in find_files([Path(d) for d in dirs])]
    if not files:
        raise SteerpadError(f"--data {' '.join(map(str, dirs))}: no audio files "
                            "(wav, flac, aiff, ogg, mp3) found")
    frames = int(bundle.manifest["audio"].get("max_frames", 32))
    config = IngestConfig(sample_rate=bundle.sample_rate, channels=bundle.channels,
                          hop=bundle.hop, frames=frames, workers=1)
    pick = np.unique(np.linspace(0, len(files) - 1, min(max_clips, len(files))).round().astype(int))
    out = []
    for i in pick:
        try:
            audio, _ = load_clip(files[i], config)
        except SkipFile as e:
            log(f"skip {files[i]}: {e}")
            continue
        out.append((str(files[i]), audio))
    if not out:
        raise SteerpadError(f"--data: none of the {len(pick)} files tried could be read")
    return out


def knob_grid(alpha_min: float, alpha_max: float, points: int) -> np.ndarray:
    """Knob positions -1..1 in `2 points + 1` steps, mapped to α (centre = 0)."""
    pos = np.linspace(0, 1, points + 1)[1:]
    return np.concatenate([pos[::-1] * alpha_min, [0.0], pos * alpha_max]).astype(np.float32)


def evaluate_bundle(bundle_path: Path, data: list[Path], out: Path, max_clips: int = 16,
                    points: int = 4, log=print, only: list[str] | None = None) -> dict:
    """Measure every direction of the bundle (or those named in `only`) on clips from `data`;
    write report.json + PNGs."""
    from steerpad.realtime.bundle import load_bundle

    t0 = time.perf_counter()
    claim_output(out, "run:eval", inputs=[bundle_path, *data], resume=True)
    mark_run(out, "eval")  # now, so a place it cannot write fails before the measuring
    bundle = load_bundle(bundle_path)
    clips = read_clips(data, bundle, max_clips, log)
    latents = [bundle.encode(audio)[0] for _, audio in clips]
    stds = {n: float(v["std"]) for n, v in bundle.manifest.get("descriptors", {}).items()}
    k = len(bundle.directions)
    names = [d.name for d in bundle.directions]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise SteerpadError(f"--directions {' '.join(unknown)}: not in {bundle_path} "
                            f"(it has {', '.join(names)})")

    def render(z: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return bundle.render(z[None], alpha)[0]

    def plain(z: np.ndarray) -> np.ndarray:
        return bundle.decode(z[None])[0]

    report: dict = {"bundle": str(bundle_path), "provider": bundle.provider,
                    "clips": [name for name, _ in clips], "directions": {}}
    identity = 0.0
    chosen = [(i, d) for i, d in enumerate(bundle.directions) if only is None or d.name in only]
    for n, (i, d) in enumerate(chosen):
        grid = knob_grid(d.alpha_min, d.alpha_max, points)
        result = sweep(render, latents, i, k, grid, bundle.sample_rate, bundle.hop,
                       plain=plain if n == 0 else None)
        identity = max(identity, result.identity_max_abs)
        report["directions"][d.name] = direction_report(result, d.descriptor, stds)
        log(f"eval {d.name:<10} ({d.descriptor}): "
            + "  ".join(f"{key}={report['directions'][d.name][key]:.3g}" for key in
                        ("spearman_median", "monotonic_fraction", "effect_size", "drift")))
    report["identity_max_abs"] = identity
    report["seconds"] = time.perf_counter() - t0
    report["descriptor_order"] = list(DESC_NAMES)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, out)
    return report


def plot_report(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = report["directions"]
    n = max(len(dirs), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.flat, dirs.items()):
        x = np.linspace(-1, 1, len(r["alphas"]))
        ax.fill_between(x, r["change_q25"], r["change_q75"], alpha=0.3)
        ax.plot(x, r["change_median"], marker="o")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{name}: {r['descriptor']}  ρ={r['spearman_median']:.2f}", fontsize=9)
        ax.set_xlabel("knob")
        ax.set_ylabel("change (std)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(dirs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "response.png", dpi=100)
    plt.close(fig)

    names = list(dirs)
    descs = report["descriptor_order"]
    mat = np.zeros((len(names), len(descs)))
    for i, name in enumerate(names):
        r = dirs[name]
        for j, dn in enumerate(descs):
            mat[i, j] = r["effect_size"] if dn == r["descriptor"] else \
                r["drift_per_descriptor"].get(dn, np.nan)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(descs), 1 + 0.5 * max(len(names), 1)))
    im = ax.imshow(np.abs(mat), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(descs)), descs, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    fig.colorbar(im, ax=ax, label="|change| at full knob (std)")
    ax.set_title("drift: every descriptor's change per direction", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "drift.png", dpi=100)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle folder (steerpad export / train)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="folders of held-out one-shots")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json + PNGs")
    parser.add_argument("--clips", type=int, default=16, help="one-shots to render")
    parser.add_argument("--points", type=int, default=4, help="knob positions per side")
    parser.add_argument("--directions", nargs="+", default=None, metavar="NAME",
                        help="evaluate only these directions (default: all)")


def run(args: argparse.Namespace) -> int:
    if args.clips < 1 or args.points < 1:
        raise SteerpadError("--clips and --points must be >= 1")
    report = evaluate_bundle(args.bundle, args.data, args.out, args.clips, args.points,
                             only=args.directions)
    print(f"eval: identity_max_abs={report['identity_max_abs']:.3g}; wrote {args.out}/report.json, "
          "response.png, drift.png")
    return 0
