"""`steerpad eval BUNDLE --data DIR... --out DIR [--mode faithful|resynth]`: how well each knob
steers, and how close a pad stays to its source, measured on audio. (With --fidelity: how close
the VAE's reconstruction is to the source, next to Opus; offline/fidelity.py.)

The bundle is played the way the realtime engine plays a pad (the render worker's path:
onnxruntime encoder, steer, decoder, and in faithful mode the change applied to the source), on
held-out one-shots read like `steerpad ingest` reads them. Per direction, each one-shot is
rendered at 2 x points + 1 equal knob positions (each side's α from the bundle's calibrated
KnobScale for the mode) and every descriptor is measured on the audio (`sweep`, below).
`report.json`:

    mode                      the render mode measured
    identity_max_abs          resynth: max |render(z, α = 0) - decode(z)| (the residual trick
                              gives back the plain VAE reconstruction); faithful: = centre_max_abs
    fidelity.centre_max_abs   max |output - source| with the knobs centred (bundle rate)
    fidelity.onset_r_quarter  median onset-envelope correlation, output vs source, at +-25 % knob
                              over all directions and clips
    fidelity.mel_db_quarter   the same as mel-spectrogram L1, dB
    directions.<name>         spearman_median   ρ(knob, target descriptor) per clip, median
                              monotonic_fraction share of clips with ρ >= 0.8
                              effect_size       mean change at full right, in dataset stds
                              effect_size_min   ... at full left
                              effect_bound_min  how far removing the content itself moves it
                                                down (band removed / 300 Hz low-pass); None
                                                where removal does not bound it
                              flat_fraction     share of knob steps whose median change is under
                                                5 % of that side's total
                              drift             mean |change| of the other descriptors, in
                                                their stds, relative to the target's
                              + the response curve (median, quartiles and mean per position)

and two PNGs: `response.png` (change of each direction's descriptor vs knob position, median
with the interquartile band) and `drift.png` (direction x descriptor change at full knob).

The measurement, shared with the steering stage's calibration (offline/directions.py) and the
per-mode knob calibration (offline/knobs.py): render held-out one-shots at a grid of α for one
direction, describe the audio frame by frame (offline/descriptors.py), and average each
descriptor over the frames that sound in the α = 0 render (a fixed mask, so a quieter render is
not judged on fewer frames). `sweep` does that for any renderer: torch modules before export
(calibration), the exported bundle through onnxruntime after it (`steerpad eval`, so what is
evaluated is what a performer plays).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steerpad.offline.descriptors import DESCRIPTORS, frame_descriptors
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.outputs import claim_output, mark_run

# ---------------------------------------------------------------- the measurement

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
    mean = np.mean(change[:, :, j], 0)  # the response: its ends are the effect sizes
    target = float(mean[-1])
    others = [i for i, n in enumerate(DESC_NAMES) if i != j and n in stds]
    drift_abs = {DESC_NAMES[i]: float(np.mean(np.abs(full[:, i]))) for i in others}
    drift = float(np.mean(list(drift_abs.values())) / max(abs(target), 1e-12)) if others else 0.0
    return {"descriptor": descriptor,
            "spearman_median": float(np.median(rhos)),
            "monotonic_fraction": float(np.mean(rhos >= 0.8)),
            "effect_size": target,
            "effect_size_min": float(mean[0]),
            "drift": drift,
            "drift_per_descriptor": drift_abs,
            "alphas": [float(a) for a in result.alphas],
            "change_median": [float(x) for x in np.median(change[:, :, j], 0)],
            "change_mean": [float(x) for x in mean],
            "change_q25": [float(x) for x in np.quantile(change[:, :, j], 0.25, 0)],
            "change_q75": [float(x) for x in np.quantile(change[:, :, j], 0.75, 0)],
            "clips": int(len(result.values))}


# ---------------------------------------------------------------- `steerpad eval`

FLAT_SHARE = 0.05
"""A knob step is flat where its median change is under this share of its side's total."""


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
    """Knob positions -1..1 in `2 points + 1` steps, mapped linearly to α (centre = 0)."""
    pos = np.linspace(0, 1, points + 1)[1:]
    return np.concatenate([pos[::-1] * alpha_min, [0.0], pos * alpha_max]).astype(np.float32)


def knob_positions(points: int) -> np.ndarray:
    """Knob shares -1..1 in `2 points + 1` equal steps (centre = 0)."""
    pos = np.linspace(0, 1, points + 1)[1:]
    return np.concatenate([-pos[::-1], [0.0], pos])


def flat_fraction(change_median: list[float], points: int) -> float:
    """Share of the knob's steps (both sides) whose median change is under FLAT_SHARE of that
    side's total change (a side that does not move at all is flat throughout)."""
    m = np.asarray(change_median)
    flat = []
    for side in (m[points::-1], m[points:]):  # centre outwards
        steps = np.abs(np.diff(side))
        total = abs(side[-1])
        flat += list(steps < FLAT_SHARE * total) if total > 0 else [True] * len(steps)
    return float(np.mean(flat))


def effect_bound_min(descriptor: str, clips: list[np.ndarray], sample_rate: int, hop: int,
                     std: float) -> float | None:
    """How far the extreme removal of content moves `descriptor` down, in dataset stds (mean
    over clips, as effect_size_min): for a band share, the band removed; for centroid and
    flatness, an 8th-order 300 Hz low-pass. None for descriptors removal does not bound."""
    from steerpad.realtime.descriptors import BANDS

    j = DESC_NAMES.index(descriptor)
    out = []
    for x in clips:
        spec = np.fft.rfft(x, axis=-1)
        f = np.fft.rfftfreq(x.shape[-1], 1 / sample_rate)
        if descriptor.startswith("band_"):
            lo, hi = next((lo, hi) for name, lo, hi in BANDS if f"band_{name}" == descriptor)
            spec[:, (f >= lo) & (f < hi)] = 0
        elif descriptor in ("centroid", "flatness"):
            spec /= np.sqrt(1 + (f / 300.0) ** 16)  # |H| of an 8th-order Butterworth low-pass
        else:
            return None
        cut = np.fft.irfft(spec, n=x.shape[-1], axis=-1).astype(np.float32)
        ref, mask = clip_means(x, sample_rate, hop, None)
        vals, _ = clip_means(cut, sample_rate, hop, mask)
        out.append((vals[j] - ref[j]) / std)
    return float(np.mean(out))


def fidelity_features(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Onset envelope and mel power spectrogram of audio [C, T] (channel mean)."""
    import librosa

    mono = audio.mean(axis=0)
    return (librosa.onset.onset_strength(y=mono, sr=sample_rate, hop_length=512),
            librosa.feature.melspectrogram(y=mono, sr=sample_rate, n_fft=2048, hop_length=512, n_mels=64))


def fidelity(source: tuple[np.ndarray, np.ndarray], output: np.ndarray, sample_rate: int
             ) -> tuple[float, float]:
    """(onset-envelope correlation, mel-spectrogram L1 in dB) of output [C, T] against the
    source's fidelity_features (mel power in dB re. the source's peak, floored 80 dB below it)."""
    import librosa

    (ox, mx), (oy, my) = source, fidelity_features(output, sample_rate)
    r = float(np.corrcoef(ox, oy)[0, 1]) if ox.std() > 1e-9 and oy.std() > 1e-9 else \
        float(np.allclose(ox, oy))
    ref = max(float(mx.max()), 1e-20)
    dx = librosa.power_to_db(mx, ref=ref, top_db=None).clip(-80, None)
    dy = librosa.power_to_db(my, ref=ref, top_db=None).clip(-80, None)
    return r, float(np.abs(dx - dy).mean())


def evaluate_bundle(bundle_path: Path, data: list[Path], out: Path, max_clips: int = 16,
                    points: int = 8, log=print, only: list[str] | None = None,
                    mode: str | None = None) -> dict:
    """Measure every direction of the bundle (or those named in `only`) in render `mode` (the
    bundle's default: faithful) on clips from `data`, as a pad plays them (the render worker's
    path, at the bundle's rate); write report.json + PNGs."""
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.faithful import MODES
    from steerpad.realtime.renderer import Prepared, RenderWorker, clip_sound

    t0 = time.perf_counter()
    claim_output(out, "run:eval", inputs=[bundle_path, *data], resume=True)
    bundle = load_bundle(bundle_path)
    mode = mode or bundle.default_mode
    if mode not in MODES:
        raise SteerpadError(f"--mode {mode}: not a render mode (one of {', '.join(MODES)})")
    names = [d.name for d in bundle.directions]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise SteerpadError(f"--directions {' '.join(unknown)}: not in {bundle_path} "
                            f"(it has {', '.join(names)})")
    clips = read_clips(data, bundle, max_clips, log)
    mark_run(out, "eval")  # once the input is good, and a place it cannot write fails before the measuring
    sr, hop, channels = bundle.sample_rate, bundle.hop, bundle.channels
    stds = {n: float(v["std"]) for n, v in bundle.manifest.get("descriptors", {}).items()}
    k = len(bundle.directions)
    worker = RenderWorker(bundle, [], out_rate=sr, analyse=False)
    sounds = [clip_sound(bundle, audio, mode) for _, audio in clips]

    def render(sound: Prepared, alpha: np.ndarray) -> np.ndarray:  # what the pad plays, [C, T]
        return worker.render(sound, alpha)[0].T[:channels]

    def plain(sound: Prepared) -> np.ndarray:
        return bundle.decode(sound.sound.latents[None])[0]

    source_features = [fidelity_features(audio, sr) for _, audio in clips]  # once per clip
    zero = np.zeros(k, np.float32)
    centre = max(float(np.abs(render(s, zero) - audio).max()) for s, (_, audio) in zip(sounds, clips))
    report: dict = {"bundle": str(bundle_path), "provider": bundle.provider, "mode": mode,
                    "clips": [name for name, _ in clips], "directions": {}}
    identity = 0.0
    onsets, mels = [], []
    positions = knob_positions(points)
    chosen = [(i, d) for i, d in enumerate(bundle.directions) if only is None or d.name in only]
    for n, (i, d) in enumerate(chosen):
        scale = d.scale(mode)
        grid = np.array([scale.alpha(float(u)) for u in positions], np.float32)
        result = sweep(render, sounds, i, k, grid, sr, hop,
                       plain=plain if n == 0 and mode == "resynth" else None)
        identity = max(identity, result.identity_max_abs)
        r = report["directions"][d.name] = direction_report(result, d.descriptor, stds)
        r["positions"] = [float(u) for u in positions]
        r["flat_fraction"] = flat_fraction(r["change_median"], points)
        r["effect_bound_min"] = effect_bound_min(d.descriptor, [a for _, a in clips], sr, hop,
                                                 max(stds.get(d.descriptor, 1.0), 1e-12))
        r["mirror_down"] = bool(scale.mirror_down and mode == "faithful")
        for u in (-0.25, 0.25):  # fidelity a quarter of the way, each side
            alpha = zero.copy()
            alpha[i] = scale.alpha(u)
            for s, features in zip(sounds, source_features):
                onset_r, mel_db = fidelity(features, render(s, alpha), sr)
                onsets.append(onset_r)
                mels.append(mel_db)
        log(f"eval {mode} {d.name:<10} ({d.descriptor}): "
            + "  ".join(f"{key}={r[key]:.3g}" for key in
                        ("spearman_median", "monotonic_fraction", "effect_size", "effect_size_min",
                         "flat_fraction", "drift")))
    report["identity_max_abs"] = identity if mode == "resynth" else centre
    report["fidelity"] = {"centre_max_abs": centre,
                          "onset_r_quarter": float(np.median(onsets)) if onsets else None,
                          "mel_db_quarter": float(np.median(mels)) if mels else None}
    report["seconds"] = time.perf_counter() - t0
    report["descriptor_order"] = list(DESC_NAMES)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, out)
    return report


def plot_report(report: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    from steerpad.offline.plots import save_figure  # (Agg, set there)

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
    save_figure(fig, out / "response.png", 100)

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
    save_figure(fig, out / "drift.png", 100)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle folder (steerpad export / train)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="folders of held-out one-shots")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json + PNGs")
    parser.add_argument("--clips", type=int, default=16, help="one-shots to render")
    parser.add_argument("--points", type=int, default=None,
                        help=f"knob positions per side (default 8, at most {MAX_POINTS})")
    parser.add_argument("--mode", choices=("faithful", "resynth"), default=None,
                        help="render mode to measure (default: the bundle's, faithful)")
    parser.add_argument("--fidelity", action="store_true",
                        help="measure the VAE's reconstruction against the sources instead, next to "
                             "Opus at 24 and 48 kbps (fidelity.json, fidelity.md, spectrograms.png; "
                             "needs opus-tools)")
    parser.add_argument("--directions", nargs="+", default=None, metavar="NAME",
                        help="evaluate only these directions (default: all)")


MAX_POINTS = 64
"""Knob positions per side `steerpad eval` renders at most (each is a render of every clip)."""


def run(args: argparse.Namespace) -> int:
    if args.fidelity:
        asked = [name for name, value in (("--points", args.points), ("--mode", args.mode),
                                          ("--directions", args.directions)) if value is not None]
        if asked:
            raise SteerpadError(f"{' and '.join(asked)}: --fidelity measures the VAE's reconstruction, "
                                "not the knobs; leave them out, or measure the knobs without --fidelity")
    points = 8 if args.points is None else args.points
    if args.clips < 1 or not 1 <= points <= MAX_POINTS:
        raise SteerpadError(f"--clips must be >= 1 and --points 1 to {MAX_POINTS} (got --clips {args.clips}, "
                            f"--points {points})")
    if args.fidelity:
        from steerpad.offline.fidelity import fidelity_report, table

        print(table(fidelity_report(args.bundle, args.data, args.out, args.clips)))
        print(f"eval --fidelity: wrote {args.out}/fidelity.json, fidelity.md, spectrograms.png")
        return 0
    report = evaluate_bundle(args.bundle, args.data, args.out, args.clips, points,
                             only=args.directions, mode=args.mode)
    f = report["fidelity"]
    print(f"eval ({report['mode']}): centre_max_abs={f['centre_max_abs']:.3g} onset_r_quarter="
          f"{f['onset_r_quarter']:.3g} mel_db_quarter={f['mel_db_quarter']:.3g}; wrote "
          f"{args.out}/report.json, response.png, drift.png")
    return 0
