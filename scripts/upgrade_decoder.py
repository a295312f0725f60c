"""Re-export the decoder of a bundle made before decoder.onnx stopped at the inverse STFT's
frames (offline/spectral.py ISTFTHead; realtime/bundle.py `synthesize`), with the same weights:

    python scripts/upgrade_decoder.py models/default

The decoder's weights are read back from its decoder.onnx (the exporter names them after the
torch parameters), re-exported as the spectral decoder's frames, and checked against the old
decoder on every kit entry's latents and on random latents (TOLERANCE, as export checks). The
bundle is then rebuilt beside itself with the new decoder.onnx and manifest.json (hashes
refreshed) and renamed into place: a reader sees the old bundle or the new one. A bundle that
already has onnx.decoder.spectrum, or whose VAE is not spectral, is left alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from steerpad.offline.export import TOLERANCE, export_onnx
from steerpad.offline.knobs import write_manifest
from steerpad.offline.vae import OobleckConfig, OobleckVAE
from steerpad.realtime.bundle import load_bundle, sha256


def upgraded_decoder(bundle: Path, out_dir: Path) -> Path:
    """decoder.onnx of `bundle` re-exported into out_dir as its spectral frames."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    vae = OobleckVAE(OobleckConfig(**manifest["vae"]["config"])).folded_copy()
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in onnx.load(str(bundle / manifest["onnx"]["decoder"]["file"])).graph.initializer}
    state = vae.decoder.state_dict()
    missing = [k for k in state if k not in weights or tuple(weights[k].shape) != tuple(state[k].shape)]
    if missing:
        sys.exit(f"upgrade_decoder: {bundle}/decoder.onnx lacks the weights {missing[:3]}...; re-export "
                 "the bundle from its VAE instead")
    vae.decoder.load_state_dict({k: weights[k] for k in state})
    return export_onnx(vae, None, None, out_dir, models=("decoder",))["decoder"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    args = ap.parse_args(argv)
    bundle = args.bundle.resolve()
    manifest = json.loads((bundle / "manifest.json").read_text())
    if "spectrum" in manifest["onnx"]["decoder"] or not manifest["vae"]["config"].get("stft_hop"):
        print(f"upgrade_decoder: {bundle}: nothing to do (already spectral frames, or a waveform VAE)")
        return 0
    old = load_bundle(bundle, providers=["CPUExecutionProvider"])
    new_dir = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", suffix=".partial", dir=bundle.parent))
    try:
        shutil.copytree(bundle, new_dir, dirs_exist_ok=True)
        (new_dir / "export").mkdir()
        decoder = upgraded_decoder(bundle, new_dir / "export")
        shutil.move(decoder, new_dir / manifest["onnx"]["decoder"]["file"])
        shutil.rmtree(new_dir / "export")
        head = manifest["vae"]["config"]["stft_hop"]
        manifest["onnx"]["decoder"] |= {"output": "spectrum", "spectrum": {"n_fft": 4 * head, "hop": head}}
        for rel in manifest["files"]:
            file = new_dir / rel
            manifest["files"][rel] = {"sha256": sha256(file), "bytes": file.stat().st_size}
        write_manifest(new_dir, manifest)
        new = load_bundle(new_dir, providers=["CPUExecutionProvider"])
        g = np.random.default_rng(0)
        latents = [e.latents for e in old.kit]
        latents.append(g.standard_normal((3, old.latent_dim, 5)).astype(np.float32))
        worst = 0.0
        for z in latents:
            a, b = old.decode(z), new.decode(z)
            worst = max(worst, float(np.abs(a - b).max() / max(1.0, np.abs(a).max())))
        if not worst <= TOLERANCE:
            sys.exit(f"upgrade_decoder: the re-exported decoder differs by {worst:.2e} (> {TOLERANCE}); "
                     f"{bundle} is unchanged")
        old_dir = bundle.with_name(f".{bundle.name}.old")
        bundle.rename(old_dir)
        new_dir.rename(bundle)
        shutil.rmtree(old_dir)
    finally:
        shutil.rmtree(new_dir, ignore_errors=True)
    print(f"upgrade_decoder: {bundle}: decoder.onnx now outputs the inverse STFT's frames "
          f"(largest difference from the old decoder {worst:.1e} of full scale)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
