"""The model card and report of a trained bundle (models/default): what `scripts/train_default`
runs after `steerpad train`.

    python bench/model_report.py BUNDLE --work WORK [--eval-clips N]
    python bench/model_report.py BUNDLE --work WORK --steering-only VAL_DIR...

From the bundle (played as the realtime engine plays it: onnxruntime) and the training work
folder (the ingested store and each stage's metrics) it writes, into BUNDLE/report/:
  reconstructions.png   spectrograms of validation one-shots and their reconstructions
  steering_<name>.png   one validation one-shot steered by every knob: full left, centre, full right
  steering_eval.json    `steerpad eval` on the validation kits (report.json), + response.png and
                        drift.png; steering_eval_resynth.json, response_resynth.png and
                        drift_resynth.png: the same in resynth mode
  fidelity.json         `steerpad eval --fidelity` on the validation kits, + spectrograms.png
  metrics.json          VAE reconstruction on the validation kits (multi-resolution STFT, SNR)
and BUNDLE/MODEL_CARD.md: data with licences, model sizes, training steps and time, metrics,
the fidelity and steering tables, and the command that reproduces it. The bundle's hashes cover
only the files its manifest lists, so adding report/ and the card leaves it valid.

--steering-only measures the fidelity and both modes' steering again on the given validation
folders and replaces only those sections of the card (after `steerpad calibrate`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from steerpad.realtime.errors import SteerpadError

# Where the default's data comes from and under what terms (Debian's copyright files and each
# Hydrogen kit's drumkit.xml). Keyed by kit name as ingest names them.
DATA_SOURCES = {
    "BJA_Pacific": ("hydrogen-drumkits", "Luc Tanguay / Bransin James Anderson", "CC-BY-SA-3.0-US"),
    "ForzeeStereo": ("hydrogen-drumkits", "Vladimir Sadovnikov, Alexander Belokurov", "GPL-2"),
    "Millo_MultiLayered2": ("hydrogen-drumkits", "Emiliano Grilli (Emillo)", "GPL-2"),
    "Millo_MultiLayered3": ("hydrogen-drumkits", "Emiliano Grilli (Emillo)", "GPL-2"),
    "Millo-Drums_v.1": ("hydrogen-drumkits", "Emiliano Grilli (Emillo)", "GPL-2"),
    "ColomboAcousticDrumkit": ("hydrogen-drumkits", "Marcos Guglielmetti", "GPL-2+"),
    "ElectricEmpireKit": ("hydrogen-drumkits", "Artemiy Pavlov (ArtemioLabs)", "GPL-2+"),
    "HardElectro1": ("hydrogen-drumkits", "Artemiy Pavlov (ArtemioLabs)", "GPL-2+"),
    "VariBreaks": ("hydrogen-drumkits", "Artemiy Pavlov (ArtemioLabs) / Sineshine", "GPL-2+"),
    "circAfrique v4": ("hydrogen-drumkits", "Jim Harney", "CC-BY-SA-3.0"),
    "rumpf_kit_z01_h2": ("hydrogen-drumkits", "Emanuel Rumpf", "CC-BY-3.0"),
    "Audiophob": ("hydrogen-drumkits", "soundcloud.com/audiophobdubstep", "CC0-1.0"),
    "TR808EmulationKit": ("hydrogen-data", "Artemiy Pavlov (ArtemioLabs)", "GPL-2+"),
    "sonic-pi": ("sonic-pi-samples", "the Sonic Pi project and freesound.org authors, per file",
                 "per file in /usr/share/doc/sonic-pi-samples/copyright"),
    "lmms": ("lmms-common", "the LMMS developers", "GPL-2+"),
}
SOURCE_PREFIXES = {
    "TimGM6mb_": ("timgm6mb-soundfont", "Tim Brechbill (rendered by scripts/gather_drums.py)", "GPL-2"),
    "OPL-3_FM_128M_": ("opl3-soundfont", "Zandro Reveille (rendered by scripts/gather_drums.py)",
                       "CC-BY-SA-4.0"),
    "SynthHydrogenKit": ("steerpad", "scripts/gather_drums.py synth (tests/drumsynth.py)", "generated"),
    "synth_kit_": ("steerpad", "scripts/gather_drums.py synth (tests/drumsynth.py)", "generated"),
}
"""Kits named by a generator: the kit name's prefix -> (package, author, licence)."""


def data_source(kit: str) -> tuple[str, str, str]:
    """(package, author, licence) of a training kit."""
    if kit in DATA_SOURCES:
        return DATA_SOURCES[kit]
    return next((v for prefix, v in SOURCE_PREFIXES.items() if kit.startswith(prefix)), ("?", "?", "?"))


def _spectrogram(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    mono = x.mean(0)
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * np.hanning(n_fft)
    return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-6)


def _show(ax, x: np.ndarray, sr: int, title: str) -> None:
    s = _spectrogram(x)
    ax.imshow(s, origin="lower", aspect="auto", vmin=-90, vmax=30, cmap="magma",
              extent=[0, x.shape[-1] / sr, 0, sr / 2 / 1000])
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def val_clips(store, hop: int, per_label: int = 1) -> list:
    """Validation records, `per_label` of each label (the loudest first), labels sorted."""
    by_label: dict[str, list] = {}
    for r in store.records:
        if r.split == "val":
            by_label.setdefault(r.label, []).append(r)
    out = []
    for label in sorted(by_label):
        out += sorted(by_label[label], key=lambda r: (-r.frames, r.path))[:per_label]
    return out


def reconstruction_metrics(bundle, store) -> dict:
    """Multi-resolution STFT distance and SNR of every validation clip through the bundle."""
    import torch

    from steerpad.offline.losses import MultiResolutionSTFTLoss, snr_db

    stft = MultiResolutionSTFTLoss()
    dist, snr, silence = [], [], []
    for r in store.records:
        if r.split != "val":
            continue
        x = store.audio(r.id)
        y = bundle.decode(bundle.encode(x))[0][:, : x.shape[-1]]
        xt, yt = torch.from_numpy(x[None]), torch.from_numpy(np.ascontiguousarray(y)[None])
        dist.append(float(stft(yt, xt)))
        snr.append(float(snr_db(yt, xt)[0]))
        silence.append(float(stft(torch.zeros_like(xt), xt)))  # the reference: output nothing
    return {"stft/val": float(np.mean(dist)), "snr_db/val": float(np.mean(snr)),
            "snr_db/val_median": float(np.median(snr)), "clips/val": len(dist),
            "stft/val_silence": float(np.mean(silence))}


def plot_reconstructions(bundle, store, records, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(len(records), 2, figsize=(10, 1.9 * len(records)), squeeze=False)
    for row, r in enumerate(records):
        x = store.audio(r.id)[:, : max(r.frames, 4) * bundle.hop]
        y = bundle.decode(bundle.encode(x))[0]
        name = f"{r.kit}/{Path(r.path).name} ({r.label})"
        _show(ax[row, 0], x, bundle.sample_rate, f"source: {name}")
        _show(ax[row, 1], y, bundle.sample_rate, "reconstruction")
    for a in ax[:, 0]:
        a.set_ylabel("kHz", fontsize=7)
    fig.suptitle("validation kits: source vs reconstruction (log magnitude, dB)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_steering(bundle, store, record, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = store.audio(record.id)[:, : max(record.frames, 4) * bundle.hop]
    z = bundle.encode(x)
    k = len(bundle.directions)
    fig, ax = plt.subplots(k, 3, figsize=(10, 1.6 * k), squeeze=False)
    for i, d in enumerate(bundle.directions):
        for j, (pos, alpha) in enumerate((("full left", d.alpha_min), ("centre", 0.0),
                                          ("full right", d.alpha_max))):
            a = np.zeros(k, np.float32)
            a[i] = alpha
            _show(ax[i, j], bundle.render(z, a)[0], bundle.sample_rate,
                  f"{d.name} {pos} (α {alpha:+.2f})")
    fig.suptitle(f"steering {record.kit}/{Path(record.path).name} ({record.label})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def _params(work: Path) -> dict[str, int]:
    """Trained parameter counts of the VAE's halves."""
    from steerpad.offline.vae import load_vae

    vae = load_vae(work / "vae" / "vae")
    return {name: sum(p.numel() for p in getattr(vae, name).parameters())
            for name in ("encoder", "decoder")}


def write_report(bundle_dir: Path, work: Path, eval_clips: int = 24) -> dict:
    from steerpad.offline.ingest import IngestStore
    from steerpad.realtime.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    store = IngestStore.open(work / "store")
    out = bundle_dir / "report"
    out.mkdir(exist_ok=True)
    records = val_clips(store, bundle.hop)
    if not records:
        raise SteerpadError(f"{work / 'store'}: no validation clips to report on")
    plot_reconstructions(bundle, store, records, out / "reconstructions.png")
    for r in records:
        if r.label in ("kick", "snare", "hat"):
            plot_steering(bundle, store, r, out / f"steering_{r.label}.png")
    metrics = {"vae": reconstruction_metrics(bundle, store)}
    val_dirs = sorted({str(Path(r.path).parent) for r in store.records if r.split == "val"})
    reports = evaluate_modes(bundle_dir, [Path(d) for d in val_dirs], work, eval_clips)
    fidelity = measure_fidelity(bundle_dir, [Path(d) for d in val_dirs], work, eval_clips)
    metrics["params"] = _params(work)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (bundle_dir / "MODEL_CARD.md").write_text(model_card(bundle, store, work, metrics, reports, fidelity))
    return metrics


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def steering_section(reports: dict[str, dict]) -> str:
    """The card's "## Steering" section: `steerpad eval` per render mode ({mode: report.json}),
    the modes side by side, from "## Steering" up to the next section."""
    modes = list(reports)
    first = reports[modes[0]]
    positions = len(next(iter(first["directions"].values()))["alphas"])
    lines = ["## Steering and fidelity (`steerpad eval` on the validation kits)", "",
             f"{len(first['clips'])} validation one-shots, {positions} "
             "knob positions per direction, each render mode as a pad plays it (`faithful`, the "
             "default: the source reshaped by the decoder's change; `resynth`: the decoder's output). "
             "Effects are mean changes of the direction's descriptor at full right / full left, in "
             "dataset stds; the bound is how far removing the content outright moves it down.", "",
             "| | " + " | ".join(modes) + " |", "| --- |" + " --- |" * len(modes)]
    for key, label in (("centre_max_abs", "centred knobs: max abs(output - source)"),
                       ("onset_r_quarter", "onset-envelope correlation with the source at ±25 % knob"),
                       ("mel_db_quarter", "mel-spectrogram L1 from the source at ±25 % knob, dB")):
        lines.append(f"| {label} | " + " | ".join(
            f"{reports[m].get('fidelity', {}).get(key, float('nan')):.3g}" for m in modes) + " |")
    lines += ["", "| direction | descriptor | " + " | ".join(
        f"{m}: effect right / left (bound) | {m}: monotonic | {m}: flat | {m}: drift" for m in modes) + " |",
        "| --- | --- |" + " --- | --- | --- | --- |" * len(modes)]
    for name, r0 in first["directions"].items():
        cells = []
        for m in modes:
            r = reports[m]["directions"].get(name)
            if r is None:
                cells += ["—"] * 4
                continue
            bound = r.get("effect_bound_min")
            cells += [f"{r['effect_size']:+.2f} / {r['effect_size_min']:+.2f}"
                      + (f" ({bound:+.2f})" if bound is not None else ""),
                      f"{r['monotonic_fraction']:.2f}", f"{r.get('flat_fraction', float('nan')):.2f}",
                      f"{r['drift']:.2f}"]
        lines.append(f"| {name} | {r0['descriptor']} | " + " | ".join(cells) + " |")
    lines += ["", "Pictures: `report/reconstructions.png`, `report/steering_*.png`, "
              "`report/response*.png`, `report/drift*.png`; numbers: `report/steering_eval*.json`.", ""]
    return "\n".join(lines) + "\n"


def evaluate_modes(bundle_dir: Path, val_dirs: list[Path], work: Path, eval_clips: int) -> dict[str, dict]:
    """`steerpad eval` of the bundle in each render mode (cached in work/eval_<mode> while the
    bundle is unchanged); copies the reports and PNGs into bundle/report (`_<mode>` suffix for
    the modes after the default)."""
    from steerpad.offline.evaluate import evaluate_bundle
    from steerpad.realtime.faithful import DEFAULT_MODE, MODES

    out = bundle_dir / "report"
    out.mkdir(exist_ok=True)
    reports = {}
    for mode in sorted(MODES, key=lambda m: m != DEFAULT_MODE):
        eval_dir = work / f"eval_{mode}"
        done = eval_dir / "report.json"
        if done.is_file() and done.stat().st_mtime > (bundle_dir / "manifest.json").stat().st_mtime \
                and json.loads(done.read_text()).get("n_clips_asked") == eval_clips:
            report = json.loads(done.read_text())  # this bundle's, already measured
        else:
            report = evaluate_bundle(bundle_dir, val_dirs, eval_dir, max_clips=eval_clips, log=print,
                                     mode=mode)
            report["n_clips_asked"] = eval_clips
            done.write_text(json.dumps(report, indent=2) + "\n")
        suffix = "" if mode == DEFAULT_MODE else f"_{mode}"
        shutil.copy(done, out / f"steering_eval{suffix}.json")
        for png in ("response", "drift"):
            shutil.copy(eval_dir / f"{png}.png", out / f"{png}{suffix}.png")
        reports[mode] = report
    return reports


def measure_fidelity(bundle_dir: Path, val_dirs: list[Path], work: Path, eval_clips: int) -> dict:
    """`steerpad eval --fidelity` on the validation folders (in work/fidelity); copies
    fidelity.json and spectrograms.png into bundle/report."""
    from steerpad.offline.fidelity import fidelity_report

    report = fidelity_report(bundle_dir, val_dirs, work / "fidelity", max_clips=eval_clips)
    for name in ("fidelity.json", "spectrograms.png"):
        shutil.copy(work / "fidelity" / name, bundle_dir / "report" / name)
    return report


def fidelity_section(report: dict) -> str:
    """The card's "## VAE fidelity" section: the VAE's reconstruction next to Opus."""
    from steerpad.offline.fidelity import table

    return "\n".join([
        "## VAE fidelity (`steerpad eval --fidelity` on the validation kits)", "",
        "How close the VAE's own reconstruction (encode, decode: what a pad plays in `resynth` "
        "mode with the knobs centred) comes to the source one-shots, next to Opus on the same "
        "clips (opus-tools). A `faithful` pad plays the source itself; the VAE only computes a "
        "knob's change, so these numbers bound how well it can read one.", "",
        table(report), "",
        "Spectrograms (source | VAE | Opus 24 kbps): `report/spectrograms.png`; per clip: "
        "`report/fidelity.json`.", ""])


def _replace_section(text: str, heading: str, body: str, before: str) -> str:
    """`text` with its section starting `heading` replaced by `body` (inserted before the section
    starting `before` where it has none)."""
    key = "\n" + heading
    if key in text:
        start = text.index(key) + 1
        end = text.index("\n## ", start) + 1
    else:
        start = end = text.index("\n" + before) + 1
    return text[:start] + body + "\n" + text[end:]


def refresh_steering(bundle_dir: Path, val_dirs: list[Path], work: Path, eval_clips: int) -> None:
    """Measure the VAE's fidelity and both modes' steering again and replace only those sections
    of the card (for a bundle whose knobs were recalibrated: `steerpad calibrate`; the rest of
    the card needs the training work folder)."""
    card = bundle_dir / "MODEL_CARD.md"
    reports = evaluate_modes(bundle_dir, val_dirs, work, eval_clips)
    fidelity = measure_fidelity(bundle_dir, val_dirs, work, eval_clips)
    text = _replace_section(card.read_text(), "## Steering", steering_section(reports), "## Reproduce")
    card.write_text(_replace_section(text, "## VAE fidelity", fidelity_section(fidelity), "## Steering"))


def model_card(bundle, store, work: Path, metrics: dict, reports: dict[str, dict], fidelity: dict) -> str:
    m = bundle.manifest
    vae_run = _json(work / "vae" / "metrics.json")
    sae = _json(work / "sae" / "metrics.json")
    kits: dict[str, dict[str, int]] = {}
    for r in store.records:
        kits.setdefault(r.kit, {"train": 0, "val": 0})[r.split] += 1
    lines = [
        "# models/default: steerpad's default bundle", "",
        "A small spectral VAE, a TopK sparse autoencoder and knob directions, trained from scratch "
        "on drum one-shots from Debian packages by `scripts/train_default` (no model hub). "
        "`./scripts/demo` plays it; `presets/default.toml` maps its 16-pad kit and 8 knobs.", "",
        "## Data", "",
        f"{len(store.records)} one-shots ({sum(v['train'] for v in kits.values())} training, "
        f"{sum(v['val'] for v in kits.values())} validation), read at {bundle.sample_rate} Hz, "
        f"{bundle.channels} channels, leading silence trimmed, cut to "
        f"{m['audio'].get('max_frames', 32)} latent frames "
        f"({m['audio'].get('max_frames', 32) * bundle.hop / bundle.sample_rate:.2f} s). "
        "Validation = whole kits, held out of every stage (VAE, SAE, probes, calibration); "
        "ingest keeps kits that share near-duplicate hits in one split (so Millo-Drums_v.1, "
        "which shares hits with Millo_MultiLayered3, is validation too).", "",
        "| kit | package | author | licence | clips (train / val) |", "| --- | --- | --- | --- | --- |"]
    sources: dict[str, dict[str, int]] = {}
    for kit in sorted(kits):
        pkg, author, lic = data_source(kit)
        lines.append(f"| {kit} | `{pkg}` | {author} | {lic} | {kits[kit]['train']} / {kits[kit]['val']} |")
        row = sources.setdefault(pkg, {"kits": 0, "train": 0, "val": 0})
        row["kits"] += 1
        row["train"] += kits[kit]["train"]
        row["val"] += kits[kit]["val"]
    lines += ["", "One-shots per source:", "", "| source | kits | one-shots (train / val) |",
              "| --- | --- | --- |"]
    lines += [f"| `{pkg}` | {v['kits']} | {v['train']} / {v['val']} |" for pkg, v in sorted(sources.items())]
    lines += ["", "Several kits are CC-BY / CC-BY-SA / GPL: this model is derived from them; keep "
              "this attribution with it. The kit entries carried in the bundle (`kit/`) are "
              "latents of these one-shots:", "",
              "| kit entry | from |", "| --- | --- |"]
    lines += [f"| `{e['name']}` | {e.get('source', '?')} |" for e in m.get("kit", [])]
    cfg = m.get("vae", {}).get("config", {}) or m.get("models", {}).get("vae", {})
    p = metrics["params"]
    v = metrics["vae"]
    lines += ["", "## Models", "",
              f"- **VAE** (`small`, spectral: a log-magnitude STFT front end, an inverse-STFT head; "
              f"hop {bundle.hop}, {bundle.latent_dim}-dim latents): encoder {p['encoder'] / 1e6:.2f} M "
              f"and decoder {p['decoder'] / 1e6:.2f} M parameters. Trained "
              f"{int(vae_run.get('run/steps', 0))} steps (batch 4 whole one-shots) in "
              f"{vae_run.get('run/seconds', 0) / 60:.0f} min on 2 CPU cores.",
              f"- **SAE**: {bundle.latent_dim} → {bundle.n_features} features, k = {bundle.k}, "
              f"RMSNorm on the code; {int(sae.get('steps/done', 0))} steps (batch 4096) on "
              f"{int(sae.get('data/train_vectors', 0))} latent frames.",
              f"- Config: `{json.dumps(cfg)}`" if cfg else "",
              "", "## Metrics (validation kits)", "",
              "| what | value |", "| --- | --- |",
              f"| VAE multi-resolution STFT distance (an all-silent output scores "
              f"{v['stft/val_silence']:.2f}) | {v['stft/val']:.3f} |",
              f"| VAE SNR, mean / median over clips | {v['snr_db/val']:.2f} / "
              f"{v['snr_db/val_median']:.2f} dB |",
              f"| SAE fraction of variance explained | {sae.get('fve/val', float('nan')):.4f} |",
              f"| SAE L0 | {sae.get('l0/val', float('nan')):.1f} |",
              f"| SAE dead features | {100 * sae.get('dead/train', float('nan')):.2f} % |"]
    for name, pr in sorted(m.get("probes", {}).items()):
        lines.append(f"| probe `{name}`: accuracy / chance / within one bin | "
                     f"{pr['accuracy/val']:.3f} / {pr['chance/val']:.3f} / {pr['within_one/val']:.3f} |")
    lines += ["", "SNR is low by design of the metric: the decoder invents phase (an inverse STFT "
              "of predicted magnitudes and phases), so waveforms differ where spectra agree; the "
              "STFT distance and the spectrograms in `report/` are the measures to read.", "",
              *fidelity_section(fidelity).splitlines(),
              *steering_section(reports).splitlines(),
              "## Reproduce", "", "```sh", "./scripts/train_default      # resumable; then:",
              "python bench/model_report.py models/default --work runs/default.work",
              "```", "", "`steerpad train` calibrates the knobs per render mode after export "
              "(`steerpad calibrate`, offline/knobs.py).", ""]
    return "\n".join(x for x in lines if x is not None) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--work", type=Path, required=True, help="the `steerpad train` work folder")
    ap.add_argument("--eval-clips", type=int, default=24)
    ap.add_argument("--steering-only", type=Path, nargs="+", default=None, metavar="VAL_DIR",
                    help="only measure the VAE's fidelity and the steering again on these validation "
                         "folders and replace those sections of the card (after `steerpad calibrate`)")
    args = ap.parse_args(argv)
    try:
        if args.steering_only:
            refresh_steering(args.bundle, args.steering_only, args.work, args.eval_clips)
            print(f"wrote the steering section of {args.bundle / 'MODEL_CARD.md'} and "
                  f"{args.bundle / 'report'}")
            return 0
        metrics = write_report(args.bundle, args.work, args.eval_clips)
    except SteerpadError as e:
        print(f"model_report: error: {e}")
        return 2
    print(json.dumps(metrics, indent=2))
    print(f"wrote {args.bundle / 'MODEL_CARD.md'} and {args.bundle / 'report'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
