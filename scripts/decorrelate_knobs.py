"""Project some of a bundle's knob directions off the others' and calibrate those knobs again: what
the steering stage now does for SteeringConfig.decorrelate (offline/directions.py `decorrelate`),
for a bundle made before it did (models/default):

    python scripts/decorrelate_knobs.py models/default --directions noisier crisper \\
        --data TRAINING_KIT_DIR... [--clips 10]

steer.onnx's `directions` initializer (the exporter's name) gets the projected rows. The bundle is
rebuilt beside itself: hashes refreshed, each projected direction marked `"decorrelated": true`
in the manifest and its per-mode knob calibration made again (`steerpad calibrate`'s
calibrate_bundle, on --data and the bundle's kit one-shots); then checked (every other direction
steers the kit latents exactly as before, the projected ones differently) and installed as export
installs one (export.install_bundle: a reader sees the old bundle or the new one). A direction
already marked is left as it is, so a second run changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from steerpad.offline.cli import guarded
from steerpad.offline.directions import decorrelate
from steerpad.offline.evaluate import read_clips
from steerpad.offline.export import bundle_beside, install_bundle
from steerpad.offline.knobs import calibrate_bundle, write_manifest
from steerpad.realtime.bundle import load_bundle, sha256
from steerpad.realtime.errors import SteerpadError


def project_steer(steer: Path, names: list[str], which: list[str]) -> None:
    """Rewrite steer.onnx with the rows of its `directions` initializer [K, F] named in `which`
    projected off the others."""
    model = onnx.load(str(steer))
    found = [i for i in model.graph.initializer if i.name == "directions"]
    if len(found) != 1 or tuple(found[0].dims)[:1] != (len(names),):
        raise SteerpadError(f"{steer}: no `directions` initializer of {len(names)} rows (not one export "
                            "wrote); re-export the bundle instead")
    rows = decorrelate(numpy_helper.to_array(found[0]), names, which)
    found[0].CopyFrom(numpy_helper.from_array(rows.astype(np.float32), "directions"))
    onnx.save(model, str(steer))


def main(argv: list[str] | None = None) -> int:
    """One line and an exit code for bad input, a stop (the partial copy removed) or a bug, as
    steerpad's commands end (cli.guarded)."""
    return guarded("decorrelate_knobs", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--directions", nargs="+", required=True, metavar="NAME")
    ap.add_argument("--data", type=Path, nargs="+", required=True,
                    help="training kits to calibrate on (never the validation kits)")
    ap.add_argument("--clips", type=int, default=10)
    args = ap.parse_args(argv)
    bundle = args.bundle.resolve()
    old = load_bundle(bundle, providers=["CPUExecutionProvider"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = [d["name"] for d in manifest["directions"]]
    unknown = sorted(set(args.directions) - set(names))
    if unknown:
        raise SteerpadError(f"--directions {' '.join(unknown)}: not in {bundle} "
                            f"(it has {', '.join(names)})")
    todo = [n for n in args.directions if not manifest["directions"][names.index(n)].get("decorrelated")]
    if not todo:
        print(f"decorrelate_knobs: {bundle}: nothing to do "
              f"({', '.join(args.directions)} already decorrelated)")
        return 0
    if manifest["onnx"]["steer"]["file"] != "steer.onnx":
        raise SteerpadError(f"{bundle}: its steer model is not named as export names it; "
                            "re-export instead")
    clips = [audio for _, audio in read_clips(args.data, old, args.clips, log=lambda s: None)]
    with bundle_beside(bundle, copy_of=bundle) as new_dir:
        project_steer(new_dir / "steer.onnx", names, todo)
        for d in manifest["directions"]:
            if d["name"] in todo:
                d["decorrelated"] = True
        manifest["files"]["steer.onnx"] = {"sha256": sha256(new_dir / "steer.onnx"),
                                           "bytes": (new_dir / "steer.onnx").stat().st_size}
        write_manifest(new_dir, manifest)
        calibrate_bundle(new_dir, clips, only=todo)
        new = load_bundle(new_dir, providers=["CPUExecutionProvider"])
        latents = [e.latents for e in old.kit]
        latents.append(np.random.default_rng(0).standard_normal((old.latent_dim, 8)).astype(np.float32))
        for i, name in enumerate(names):
            alpha = np.zeros(len(names), np.float32)
            alpha[i] = 1.0
            same = all(np.array_equal(old.steer(z, alpha), new.steer(z, alpha)) for z in latents)
            if same == (name in todo):
                raise SteerpadError(f"{name} steers {'as before' if same else 'differently'} after the "
                                    f"projection; {bundle} is unchanged")
        install_bundle(new_dir, bundle, force=True)  # (swaps out only a bundle steerpad wrote)
    print(f"decorrelate_knobs: {bundle}: {', '.join(todo)} projected off the other directions and "
          "calibrated again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
