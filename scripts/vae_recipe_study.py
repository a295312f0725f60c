"""A/B of VAE training recipes on the same store, seed and step budget, judged on audio: each
variant is trained (resumably) and its reconstructions of the store's validation clips are
measured as `steerpad eval --fidelity` measures a bundle (offline/fidelity.py: mel L1, third-
octave band error, onset-envelope r, MR-STFT distance; medians).

    python scripts/vae_recipe_study.py --store runs/v2_store --out runs/recipe --steps 1500 \
        base= transient=transient_weight:0.5 adv=adv_weight:0.1,feature_weight:2,adv_start:500

Writes OUT/study.json and OUT/study.md (one row per variant, plus steps/s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition("=")
    kw: dict = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        kw[key] = float(value) if "." in value or "e" in value else int(value)
    return name, kw


def main(argv: list[str] | None = None) -> int:
    import torch

    from steerpad.offline.fidelity import LABELS, MEASURES, measure
    from steerpad.offline.ingest import IngestStore
    from steerpad.offline.vae import load_vae
    from steerpad.offline.vae_train import VAETrainConfig, load_split, train_vae

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--val-clips", type=int, default=32)
    ap.add_argument("--model", default="small")
    ap.add_argument("variants", nargs="+", help="NAME=key:value,key:value (VAETrainConfig fields)")
    args = ap.parse_args(argv)

    store = IngestStore.open(args.store)
    val, _ = load_split(store, "val", args.val_clips)
    sr = store.config.sample_rate
    rows = {}
    for name, kw in map(parse_variant, args.variants):
        out = args.out / name
        cfg = VAETrainConfig(model=args.model, steps=args.steps, eval_every=0, **kw)
        resume = (out / "checkpoint.pt").is_file()
        metrics = train_vae(store, out, cfg, resume=resume, progress=False)
        model = load_vae(out / "vae").eval()
        per_clip = []
        with torch.inference_mode():
            for x in val:
                y = model.decode(model.encode(torch.from_numpy(x[None])))[0].numpy()
                per_clip.append(measure(x, y[:, :x.shape[1]], sr))
        rows[name] = {"config": kw, "steps_per_s": metrics.get("run/steps_per_s"),
                      "median": {m: float(np.median([r[m] for r in per_clip])) for m in MEASURES}}
        print(name, rows[name]["median"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps({"steps": args.steps, "val_clips": len(val),
                                                     "variants": rows}, indent=2) + "\n")
    lines = [f"| variant ({args.steps} steps, {len(val)} validation clips) | "
             + " | ".join(LABELS[m] for m in MEASURES) + " | steps/s |",
             "|---" * (len(MEASURES) + 2) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['median'][m]:.3f}" for m in MEASURES)
                     + f" | {r['steps_per_s']:.2f} |")
    (args.out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
