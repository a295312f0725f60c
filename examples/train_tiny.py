"""Train a tiny bundle on a folder of one-shots, every stage, as `steerpad train` does: ingest,
the VAE (or a trained one), encode, the sparse autoencoder, probes and steering directions (with
their α calibration), export, per-mode knob calibration, a short eval. Tiny: it shows the API and
makes a bundle steerpad plays; for a model worth playing, see the README's "Train on your own
samples".

    python examples/train_tiny.py ~/samples/kits --out tiny_bundle            # trains a small VAE too
    python examples/train_tiny.py ~/samples/kits --out tiny_bundle --vae models/my_vae
    steerpad render presets/demo.mid --bundle tiny_bundle --preset my_preset.toml --out x.wav

Needs the training install (torch): pip install torch==2.13.0 'steerpad[train,cpu]'.
"""

import argparse
from pathlib import Path

from steerpad.offline.directions import SteeringConfig
from steerpad.offline.sae import SAEConfig
from steerpad.offline.sae_train import SAETrainConfig
from steerpad.offline.train_all import TrainPlan, train_bundle
from steerpad.offline.vae_train import VAETrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="+", help="folders of one-shots (a kit per sub-folder)")
    ap.add_argument("--out", type=Path, required=True, help="the bundle folder to write")
    ap.add_argument("--work", type=Path, default=None, help="the stages' folder (default: OUT.work)")
    ap.add_argument("--vae", default="small", help="a trained VAE folder, or 'small' to train one")
    ap.add_argument("--vae-steps", type=int, default=200)
    ap.add_argument("--knobs", nargs="+", default=["centroid", "loudness"],
                    help="descriptors to make knobs of (brighter, louder)")
    args = ap.parse_args()

    # One config per stage, each with its own defaults (see their docstrings); tiny values here.
    plan = TrainPlan(
        data=args.data, out=args.out, work=args.work or args.out.with_name(args.out.name + ".work"),
        vae=args.vae,
        vae_train=VAETrainConfig(steps=args.vae_steps),  # used when --vae names a config to train
        sae=SAETrainConfig(sae=SAEConfig(n_features=512, k=16), steps=300, batch=1024),
        steering=SteeringConfig(calib_clips=4, knobs=tuple(args.knobs)),
        eval_clips=4, progress=False,
    )
    summary = train_bundle(plan)  # resumable: run it again and the finished stages are kept
    for stage, metrics in summary.items():
        print(stage, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in metrics.items()})
    print(f"bundle: {args.out}")


if __name__ == "__main__":  # ingest reads files in worker processes, which import this file again
    main()
