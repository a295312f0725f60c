"""Re-export the encoder and decoder of a bundle made before a spectral VAE's STFTs left its
ONNX models (encoder.onnx now starts after the log-magnitude STFT, decoder.onnx stops before the
inverse STFT; realtime/bundle.py `log_spectrum` and `synthesize` do them with an FFT), with the
same weights:

    python scripts/upgrade_stfts.py models/default

The weights are read back from encoder.onnx and decoder.onnx (the exporter names them after
the torch parameters), re-exported, and checked against the old models (TOLERANCE, as export
checks): the decoder on every kit entry's latents and on random latents, the encoder on every
kit entry's audio and on random audio. The bundle is then rebuilt beside itself with the new
models and manifest.json (hashes refreshed) and installed as export installs one
(export.install_bundle: a reader sees the old bundle or the new one). A model that already
has its `spectrum` entry is left as it is, and a
waveform VAE's bundle alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from steerpad.offline.cli import guarded
from steerpad.offline.export import TOLERANCE, bundle_beside, export_onnx, install_bundle
from steerpad.offline.knobs import write_manifest
from steerpad.offline.vae import OobleckConfig, OobleckVAE
from steerpad.realtime.bundle import load_bundle, sha256
from steerpad.realtime.errors import SteerpadError


def upgraded(bundle: Path, models: tuple[str, ...], out_dir: Path) -> dict[str, Path]:
    """`models` (encoder, decoder) of `bundle` re-exported into out_dir as export does now."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    vae = OobleckVAE(OobleckConfig(**manifest["vae"]["config"])).folded_copy()
    for model in models:
        file = bundle / manifest["onnx"][model]["file"]
        prefix = "encoder." if model == "encoder" else ""  # (export wraps the encoder, not the decoder)
        weights = {i.name.removeprefix(prefix): torch.from_numpy(numpy_helper.to_array(i).copy())
                   for i in onnx.load(str(file)).graph.initializer}
        half = getattr(vae, model)
        state = half.state_dict()
        missing = [k for k in state if k not in weights or tuple(weights[k].shape) != tuple(state[k].shape)]
        if missing:
            sys.exit(f"upgrade_stfts: {file} lacks the weights {missing[:3]}; re-export the bundle from "
                     "its VAE instead")
        half.load_state_dict({k: weights[k] for k in state})
    return export_onnx(vae, None, None, out_dir, models=models)


def main(argv: list[str] | None = None) -> int:
    """One line and an exit code for bad input, a stop (the partial copy removed) or a bug, as
    steerpad's commands end (cli.guarded)."""
    return guarded("upgrade_stfts", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    args = ap.parse_args(argv)
    bundle = args.bundle.resolve()
    old = load_bundle(bundle, providers=["CPUExecutionProvider"])  # (refuses what is no bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    config = manifest.get("vae", {}).get("config") if isinstance(manifest.get("vae"), dict) else None
    if not isinstance(config, dict):
        raise SteerpadError(f"upgrade_stfts: {bundle}: its manifest has no vae.config to rebuild the "
                            "models from; re-export the bundle from its VAE instead")
    models = tuple(m for m in ("encoder", "decoder") if "spectrum" not in manifest["onnx"][m])
    if not models or not config.get("stft_hop"):
        print(f"upgrade_stfts: {bundle}: nothing to do (its STFTs are already outside its models, "
              "or its VAE is a waveform one)")
        return 0
    with bundle_beside(bundle, copy_of=bundle) as new_dir:
        if any(manifest["onnx"][m]["file"] != f"{m}.onnx" for m in models):
            sys.exit(f"upgrade_stfts: {bundle}: its models are not named as export names them; "
                     "re-export the bundle from its VAE instead")
        upgraded(bundle, models, new_dir)  # (over the copies of the old models)
        stft = manifest["vae"]["config"]["stft_hop"]
        if "encoder" in models:
            manifest["onnx"]["encoder"] |= {"input": "log_magnitude",
                                            "spectrum": {"n_fft": 4 * stft, "hop": stft, "floor": 1e-8}}
        if "decoder" in models:
            manifest["onnx"]["decoder"] |= {"output": "spectrum",
                                            "spectrum": {"n_fft": 4 * stft, "hop": stft}}
        for rel in manifest["files"]:
            file = new_dir / rel
            manifest["files"][rel] = {"sha256": sha256(file), "bytes": file.stat().st_size}
        write_manifest(new_dir, manifest)
        new = load_bundle(new_dir, providers=["CPUExecutionProvider"])
        g = np.random.default_rng(0)
        latents = [e.latents for e in old.kit]
        latents.append(g.standard_normal((3, old.latent_dim, 5)).astype(np.float32))
        audio = [e.audio for e in old.kit if e.audio is not None]
        audio.append(0.1 * g.standard_normal((2, old.channels, 5 * old.hop)).astype(np.float32))
        worst = {"decoder": max(_error(old.decode(z), new.decode(z)) for z in latents),
                 "encoder": max(_error(old.encode(x), new.encode(x)) for x in audio)}
        for model, error in worst.items():
            if not error <= TOLERANCE:
                sys.exit(f"upgrade_stfts: the re-exported {model} differs by {error:.2e} (> {TOLERANCE}); "
                         f"{bundle} is unchanged")
        install_bundle(new_dir, bundle, force=True)  # (swaps out only a bundle steerpad wrote)
    print(f"upgrade_stfts: {bundle}: {' and '.join(models)} re-exported, their STFTs outside "
          f"(largest difference from the old models: encoder {worst['encoder']:.1e}, decoder "
          f"{worst['decoder']:.1e}, relative to full scale)")
    return 0


def _error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(1.0, np.abs(a).max()))


if __name__ == "__main__":
    raise SystemExit(main())
