"""`steerpad train --data DIR... --out BUNDLE`: one-shots to a playable bundle, stage by stage.

    ingest -> VAE (train `small`/`tiny`, or load `sao` weights / a VAE folder) -> encode -> SAE
    -> descriptors, probes, directions, α calibration -> kit -> export
    -> per-mode knob calibration -> a short eval

Every stage writes into the work folder (default `BUNDLE.work/`) and is skipped when its output
is complete, so running the same command again after an interruption resumes at the stage
that did not finish (the VAE and SAE trainers also resume from their own checkpoints). The
last lines are a summary table of each stage's numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from steerpad.offline.directions import SteeringConfig
from steerpad.offline.flags import ConfigFlags
from steerpad.offline.probes import ProbeConfig
from steerpad.offline.sae import SAEConfig
from steerpad.offline.sae_train import SAETrainConfig
from steerpad.offline.vae_train import VAETrainConfig
from steerpad.realtime.errors import SteerpadError


@dataclass
class TrainPlan:
    """One `steerpad train` run: where from and to, and each stage's own config (their defaults
    and meanings are declared once, in the stage's dataclass)."""

    data: list[Path]
    out: Path
    work: Path
    vae: str = "small"
    """`small` / `tiny` (trained here), `sao` (with vae_weights), or a VAE folder."""
    vae_weights: Path | None = None
    vae_train: VAETrainConfig = field(default_factory=VAETrainConfig)
    """How the VAE is trained when `vae` names a config (its `model` is set from `vae`)."""
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    """The SAE and its training (its input size is set from the latents)."""
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    """Probes, knobs and their calibration."""
    eval_clips: int = 8
    """Held-out clips the closing evaluation renders per knob."""
    val_kits: list[str] | None = None
    """Validation kits by name (default: drawn by ingest, 20 % of the kits)."""
    ingest: dict = field(default_factory=dict)
    """Other IngestConfig fields (e.g. the near-duplicate thresholds)."""
    kit: Path | None = None
    """A kit file (TOML, `[[kit]]` name + file; presets/default_kit.toml): clips of the store
    encoded into the bundle as its kit entries."""
    torchscript: bool = True
    """Also write the TorchScript copies of the models (*.pt) into the bundle."""
    force: bool = False
    progress: bool = True
    summary: dict[str, dict[str, float | str]] = field(default_factory=dict)


FLAGS = (
    ConfigFlags(VAETrainConfig, {"steps": "--vae-steps"}),
    ConfigFlags(SAETrainConfig, {"steps": "--sae-steps", "batch": "--sae-batch"}),
    ConfigFlags(SAEConfig, {"n_features": "--sae-features", "k": "--sae-k"}),
    ConfigFlags(SteeringConfig, {"calib_clips": "--calib-clips", "knobs": "--knobs"}),
    ConfigFlags(ProbeConfig, {"n_bins": "--bins", "binning": "--binning"}),
)
"""`steerpad train`'s flags for the stage configs (the stages' own commands take the rest)."""


def _note(plan: TrainPlan, stage: str, **values) -> None:
    plan.summary.setdefault(stage, {}).update(values)


def stage_ingest(plan: TrainPlan, vae_config):
    from steerpad.offline.ingest import IngestConfig, IngestStore, ingest, print_summary

    path = plan.work / "store"
    if not path.exists():
        config = IngestConfig(sample_rate=vae_config.sample_rate, channels=vae_config.audio_channels,
                              hop=vae_config.hop, val_kits=plan.val_kits, **plan.ingest)
        summary = ingest(plan.data, path, config, progress=plan.progress)
        print_summary(summary, path)
    store = IngestStore.open(path)
    _note(plan, "ingest", clips=len(store), train=len(store.ids("train")), val=len(store.ids("val")))
    return store


def _vae_config(plan: TrainPlan):
    from steerpad.offline.latents import resolve_vae_dir
    from steerpad.offline.vae import CONFIGS, OobleckConfig, get_config

    if plan.vae in CONFIGS:
        return get_config(plan.vae)
    cfg = resolve_vae_dir(Path(plan.vae)) / "config.json"
    if not cfg.is_file():
        raise SteerpadError(f"--vae {plan.vae}: not a config name ({', '.join(CONFIGS)}) nor a "
                            "VAE folder with config.json")
    return OobleckConfig.from_dict(json.loads(cfg.read_text())["config"])


def stage_vae(plan: TrainPlan, store):
    from steerpad.offline.latents import load_encoder
    from steerpad.offline.vae import CONFIGS, load_vae
    from steerpad.offline.vae_train import train_vae

    if plan.vae == "sao" or plan.vae not in CONFIGS:
        vae, source = load_encoder(plan.vae, plan.vae_weights)
        _note(plan, "vae", source=source)
        return vae, source
    run = plan.work / "vae"
    done = json.loads((run / "metrics.json").read_text())["run/steps"] \
        if (run / "metrics.json").is_file() else None
    steps = plan.vae_train.steps
    if done is None or done < steps:
        if done is not None:  # train a finished VAE on: what was made from it goes stale
            import shutil

            from steerpad.realtime.outputs import kind_of

            for stale in ("latents", "sae", "steering"):
                if kind_of(plan.work / stale) is not None:  # only what steerpad wrote there
                    shutil.rmtree(plan.work / stale)
            (plan.work / "exported").unlink(missing_ok=True)
        resume = (run / "checkpoint.pt").is_file()
        train_vae(store, run, replace(plan.vae_train, model=plan.vae), resume=resume,
                  progress=plan.progress)
    metrics = json.loads((run / "metrics.json").read_text())
    _note(plan, "vae", **{k: metrics[k] for k in ("stft/val", "snr_db/val") if k in metrics},
          steps=steps)
    return load_vae(run / "vae"), str(run / "vae")


def stage_encode(plan: TrainPlan, store, vae, source: str):
    from steerpad.offline.latents import LatentStore, encode_store

    path = plan.work / "latents"
    if not (path / "index.json").is_file():
        encode_store(store, vae, path, vae_source=source, progress=plan.progress)
    latents = LatentStore.open(path)
    _note(plan, "encode", frames_train=sum(r.frames for r in latents.records if r.split == "train"))
    return latents


def stage_sae(plan: TrainPlan, latents):
    from steerpad.offline.sae import load_sae
    from steerpad.offline.sae_train import train_sae

    path = plan.work / "sae"
    if not (path / "metrics.json").is_file():
        train, val = latents.frames("train"), latents.frames("val")
        config = replace(plan.sae, sae=replace(plan.sae.sae, d_in=int(train.shape[1])))
        train_sae(train, val, config, path, resume=(path / "checkpoint.pt").is_file(),
                  mean=latents.mean, std=latents.std, progress=plan.progress,
                  source=str(latents.path))
    metrics = json.loads((path / "metrics.json").read_text())
    _note(plan, "sae", **{k: metrics[k] for k in ("fve/val", "l0/val", "dead/train")})
    return load_sae(path), metrics


def stage_steering(plan: TrainPlan, store, latents, sae, vae):
    from steerpad.offline.directions import fit_steering

    path = plan.work / "steering"
    if not (path / "directions.json").is_file():
        fit_steering(store, latents, sae, vae, plan.steering, path, progress=plan.progress)
    content = json.loads((path / "directions.json").read_text())
    for name, p in content["probes"].items():
        _note(plan, f"probe {name}", accuracy=p["accuracy/val"], chance=p["chance/val"],
              within_one=p["within_one/val"])
    return path, content


def read_kit_file(path: Path) -> list[dict]:
    """The `[[kit]]` entries of a kit file: name (a kit entry name), file (the end of a source
    path), optional label. SteerpadError naming the file and the entry."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    from steerpad.realtime.bundle import KIT_NAME

    try:
        entries = tomllib.loads(Path(path).read_text()).get("kit")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SteerpadError(f"--kit {path}: unreadable ({e}); give a TOML file of [[kit]] "
                            "entries (name, file)") from None
    if not isinstance(entries, list) or not entries:
        raise SteerpadError(f"--kit {path}: no [[kit]] entries (each: name = ..., file = ...)")
    seen = set()
    for i, e in enumerate(entries):
        where = f"--kit {path}: kit entry {i + 1}"
        if not isinstance(e, dict) or set(e) - {"name", "file", "label"}:
            raise SteerpadError(f"{where}: keys are name, file and label (optional)")
        name, file = e.get("name"), e.get("file")
        if not isinstance(name, str) or not KIT_NAME.match(name) or name in seen:
            raise SteerpadError(f"{where}: name {name!r} must be unique letters, digits, '.', "
                                "'_' or '-'")
        if not isinstance(file, str) or not file.strip("/"):
            raise SteerpadError(f"{where} ({name}): file must name a one-shot, e.g. "
                                "\"MyKit/kick.wav\"")
        seen.add(name)
    return entries


def stage_kit(plan: TrainPlan, store, vae) -> list[dict]:
    """The kit file's clips from the store (as ingested: trimmed, resampled), encoded by the
    VAE: export's kit entries. A file that matches no clip, or several, is refused."""
    import numpy as np
    import torch

    if plan.kit is None:
        return []
    hop = vae.config.hop
    kit = []
    for e in read_kit_file(plan.kit):
        tail = "/" + e["file"].strip("/")
        hits = [r for r in store.records if Path(r.path).as_posix().endswith(tail)]
        if len(hits) != 1:
            what = "no clip in the store" if not hits else f"{len(hits)} clips"
            raise SteerpadError(f"--kit {plan.kit}: {e['name']}: file {e['file']!r} matches "
                                f"{what}; name a file under --data (more of its path if it is "
                                "ambiguous)")
        r = hits[0]
        audio = np.ascontiguousarray(store.audio(r.id)[:, : r.frames * hop])
        with torch.inference_mode():
            z = vae.encode(torch.from_numpy(audio)[None].float())[0].numpy()
        kit.append({"name": e["name"], "label": e.get("label", r.label), "latents": z,
                    "audio": audio, "source": r.path, "kit": r.kit})
    return kit


def stage_export(plan: TrainPlan, vae, sae, steering_dir: Path, sae_metrics: dict, source: str,
                 kit: list[dict]):
    from steerpad.offline.export import export_bundle, load_steering

    marker = plan.work / "exported"
    stamp = json.dumps({"kit": [[e["name"], e["source"]] for e in kit],
                        "torchscript": plan.torchscript})
    if (plan.out / "manifest.json").is_file() and not plan.force and marker.is_file() and \
            marker.read_text().splitlines()[1:] == [stamp]:
        return
    metrics = {"sae": sae_metrics, "summary": plan.summary}
    provenance = {"data": [str(d) for d in plan.data], "vae": source,
                  "vae_steps": plan.vae_train.steps, "sae_steps": plan.sae.steps,
                  "command": "steerpad train", "work": str(plan.work)}
    entries = [{"name": e["name"], "label": e["label"], "latents": e["latents"], "audio": e["audio"],
                "source": f"{e['kit']}/{Path(e['source']).name}"} for e in kit]
    export_bundle(plan.out, vae, sae, load_steering(steering_dir), metrics=metrics,
                  provenance=provenance, kit=entries, force=True, torchscript=plan.torchscript)
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n" + stamp + "\n")


def stage_knobs(plan: TrainPlan, store) -> dict:
    """Calibrate the exported bundle's knobs per render mode on training clips (offline/knobs.py):
    up to plan.steering.calib_clips, spread evenly over the store's training clips."""
    import numpy as np

    from steerpad.offline.knobs import calibrate_bundle

    marker = plan.work / "knobs"
    exported = (plan.work / "exported").read_text() if (plan.work / "exported").is_file() else ""
    if marker.is_file() and marker.read_text() == exported and not plan.force:
        return {}
    train = sorted((r for r in store.records if r.split == "train"), key=lambda r: r.path)
    if not train:
        return {}
    n = min(plan.steering.calib_clips, len(train))
    pick = np.unique(np.linspace(0, len(train) - 1, n).round().astype(int))
    hop = int(json.loads((plan.out / "manifest.json").read_text())["audio"]["hop"])
    clips = [np.ascontiguousarray(store.audio(train[i].id)[:, : train[i].frames * hop]) for i in pick]
    result = calibrate_bundle(plan.out, clips, log=lambda s: None)
    for name, modes in result.items():
        for mode, e in modes.items():
            _note(plan, f"knob {name} {mode}", up_std=e["effect_up_std"], down_std=e["effect_down_std"])
    marker.write_text(exported)
    return result


def stage_eval(plan: TrainPlan, store) -> dict:
    """A short `steerpad eval` of the exported bundle on the validation kits' folders."""
    from steerpad.offline.evaluate import evaluate_bundle

    val_dirs = sorted({str(Path(r.path).parent) for r in store.records if r.split == "val"})
    report = evaluate_bundle(plan.out, [Path(d) for d in val_dirs], plan.work / "eval",
                             max_clips=plan.eval_clips, points=2, log=lambda s: None)
    for name, r in report["directions"].items():
        _note(plan, f"knob {name}", rho=r["spearman_median"], monotonic=r["monotonic_fraction"],
              effect_std=r["effect_size"], drift=r["drift"])
    _note(plan, "eval", identity_max_abs=report["identity_max_abs"])
    return report


def train_bundle(plan: TrainPlan) -> dict:
    from steerpad.realtime.outputs import claim_output, mark_run, related

    # A rerun replaces the bundle it made; the work folder is resumed.
    if related(plan.out, plan.work):
        raise SteerpadError(f"--out {plan.out} and --work {plan.work}: one holds the other; give "
                            "the bundle and the work folder separate places")
    claim_output(plan.out, "bundle", inputs=plan.data, force=True)
    claim_output(plan.work, "run:train", option="--work", inputs=plan.data, resume=True)
    mark_run(plan.work, "train")
    vae_config = _vae_config(plan)
    store = stage_ingest(plan, vae_config)
    vae, source = stage_vae(plan, store)
    latents = stage_encode(plan, store, vae, source)
    sae, sae_metrics = stage_sae(plan, latents)
    steering_dir, _ = stage_steering(plan, store, latents, sae, vae)
    kit = stage_kit(plan, store, vae)
    stage_export(plan, vae, sae, steering_dir, sae_metrics, source, kit)
    stage_knobs(plan, store)
    stage_eval(plan, store)
    return plan.summary


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="steerpad train")
    table.add_column("stage")
    table.add_column("numbers")
    for stage, values in summary.items():
        table.add_row(stage, "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in values.items()))
    Console().print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainPlan(data=[], out=Path(), work=Path())
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="folders of one-shots (kits; validation = whole kits)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument("--work", type=Path, default=None,
                        help="stage outputs (default OUT.work); rerun to resume")
    parser.add_argument("--vae", default=d.vae,
                        help="small | tiny (trained here), sao (with --vae-weights) or a VAE folder")
    parser.add_argument("--vae-weights", type=Path, default=None,
                        help="Stable Audio Open checkpoint, with --vae sao")
    for flags in FLAGS:
        flags.add(parser)
    parser.add_argument("--eval-clips", type=int, default=d.eval_clips)
    parser.add_argument("--val-kits", nargs="+", default=None,
                        help="validation kits by name (default: 20%% of the kits, drawn)")
    parser.add_argument("--exact-duplicates-only", action="store_true",
                        help="ingest: link only exact copies across kits (see steerpad ingest)")
    parser.add_argument("--kit", type=Path, default=None,
                        help="kit file (TOML [[kit]] name + file): clips exported as kit entries")
    parser.add_argument("--no-torchscript", action="store_true",
                        help="leave the TorchScript copies (*.pt) out of the bundle")
    parser.add_argument("--no-progress", action="store_true")


def plan_configs(args: argparse.Namespace) -> dict:
    """The stage configs of TrainPlan from the flags (FLAGS): what the command line set, the
    stages' defaults for the rest. A value a stage refuses is one line naming it."""
    vae, sae_train, sae, steering, probe = (flags.given(args) for flags in FLAGS)
    try:
        return {"vae_train": VAETrainConfig(**vae),
                "sae": SAETrainConfig(sae=SAEConfig(**sae), **sae_train),
                "steering": SteeringConfig(probe=ProbeConfig(**probe), **steering)}
    except ValueError as e:
        raise SteerpadError(f"train: {e}") from None


def run(args: argparse.Namespace) -> int:
    from steerpad.offline.ingest import EXACT_DUPLICATES_ONLY

    work = args.work or args.out.with_name(args.out.name + ".work")
    plan = TrainPlan(data=args.data, out=args.out, work=work, vae=args.vae,
                     vae_weights=args.vae_weights, **plan_configs(args), eval_clips=args.eval_clips,
                     val_kits=args.val_kits,
                     ingest=EXACT_DUPLICATES_ONLY if args.exact_duplicates_only else {},
                     kit=args.kit, torchscript=not args.no_torchscript,
                     progress=not args.no_progress)
    if plan.kit is not None:
        read_kit_file(plan.kit)  # a bad kit file fails now, not after hours of training
    for d in plan.data:
        if not Path(d).is_dir():
            raise SteerpadError(f"--data {d}: not a folder")
    print_summary(train_bundle(plan))
    print(f"bundle: {plan.out}  (work: {plan.work}; eval report: {plan.work / 'eval'})")
    return 0
