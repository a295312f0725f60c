"""Export a bundle (the format is described in realtime/bundle.py) from a VAE, an SAE and a
steering folder: `steerpad export --vae DIR --sae DIR --steering DIR --out BUNDLE`.

`export_bundle` builds every file in a temp folder next to `out`, loads the result with the
realtime loader, checks onnxruntime and TorchScript against torch on a batch and length the
models were not traced at, and only then renames the folder into place: a failed or interrupted
export leaves nothing at `out` (and an existing bundle there untouched).

ONNX comes from the torch.export-based exporter (`dynamo=True`): the legacy TorchScript-based
one bakes the traced batch x frames into steer.onnx's reshapes, so it only runs at the traced
size. TorchScript comes from `torch.jit.trace` (deprecated in torch 2.13 but working), with the
SAE's dense code built without an in-place slice write, which tracing records at a fixed size.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from steerpad.offline.sae import TopKSAE
from steerpad.offline.steering import CodesModule, SteerModule
from steerpad.offline.vae import OobleckVAE
from steerpad.realtime.bundle import (
    KIT_AUDIO_GAIN_MAX,
    KIT_NAME,
    MODELS,
    SCHEMA,
    SCHEMA_VERSION,
    load_bundle,
    parse_directions,
    sha256,
)
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.outputs import claim_output, stops_held

OPSET = 18
TRACE_BATCH, TRACE_FRAMES = 2, 4
"""The example size the models are exported at (not 1: torch.export specialises size-1 axes)."""
CHECK_BATCH, CHECK_FRAMES = 3, 3
"""The size the export check runs at: a different batch and length from the traced ones."""
TOLERANCE = 1e-4
"""Max |onnxruntime - torch| allowed, relative to max(1, max |torch output|)."""
IO = {"encoder": ("audio", "latents"), "decoder": ("latents", "audio"),
      "steer": (("latents", "alpha"), "steered"), "codes": ("latents", ("values", "indices"))}
"""Each model's ONNX input and output names; a spectral VAE's decoder outputs `spectrum` (_io)."""


def _io(vae: OobleckVAE) -> dict[str, tuple]:
    """IO for this VAE: a spectral VAE's STFTs are left to the realtime half, which does them
    with an FFT, several times faster than their fixed-basis convolutions in onnxruntime
    (offline/spectral.py): its encoder.onnx starts after its log-magnitude STFT (input
    `log_magnitude`) and its decoder.onnx stops before its inverse STFT (output `spectrum`)."""
    if not vae.config.stft_hop:
        return IO
    return IO | {"encoder": ("log_magnitude", "latents"), "decoder": ("latents", "spectrum")}


def load_steering(folder: str | Path) -> dict[str, Any]:
    """Read a steering folder (directions.json + directions.safetensors) into the dict
    export_bundle takes: directions.json's content (`directions`, `probes`, `descriptors` and any
    other keys) plus `tensors`: {"directions": [K, F], "probe.<descriptor>.weight" ...}."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_file, tensor_file = folder / "directions.json", folder / "directions.safetensors"
    for p in (meta_file, tensor_file):
        if not p.is_file():
            raise SteerpadError(f"{p}: missing; a steering folder holds directions.json and "
                                "directions.safetensors")
    try:
        steering = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SteerpadError(f"{meta_file}: not valid JSON ({e}); recompute the directions") from None
    if not isinstance(steering, dict):
        raise SteerpadError(f"{meta_file}: must hold an object; recompute the directions")
    try:
        steering["tensors"] = load_file(str(tensor_file))
    except Exception as e:  # noqa: BLE001 -- a torn or foreign file: safetensors raises many types
        raise SteerpadError(f"{tensor_file}: not a readable safetensors file ({e.__class__.__name__}); "
                            "recompute the directions") from None
    _check_steering(steering, None, str(folder))
    return steering


def _check_steering(steering: dict, n_features: int | None, where: str) -> list[dict]:
    """The directions entries (each with a unit), after checking them against the tensors."""
    fix = "recompute the directions"
    tensors = steering.get("tensors")
    if not isinstance(tensors, dict) or "directions" not in tensors:
        raise SteerpadError(f"{where}: no 'directions' tensor in directions.safetensors; {fix}")
    d = torch.as_tensor(tensors["directions"])
    if d.dim() != 2 or (n_features is not None and d.shape[1] != n_features):
        raise SteerpadError(f"{where}: the directions tensor is {list(d.shape)}, expected [K, "
                            f"{n_features or 'F'}] (the SAE's feature count); {fix} for this SAE")
    if not torch.isfinite(d).all() or ((d.float().norm(dim=1) - 1).abs() > 1e-3).any():
        raise SteerpadError(f"{where}: the directions tensor's rows must be finite unit vectors; {fix}")
    entries = steering.get("directions")
    parse_directions(entries, f"{where}: directions.json directions", fix)
    if len(entries) != d.shape[0]:
        raise SteerpadError(f"{where}: directions.json lists {len(entries)} directions, the directions "
                            f"tensor has {d.shape[0]} rows; {fix}")
    for key in ("probes", "descriptors"):
        if not isinstance(steering.get(key, {}), dict):
            raise SteerpadError(f"{where}: directions.json {key} must be an object; {fix}")
    for name in {k.split(".")[1] for k in tensors if k.startswith("probe.") and k.count(".") >= 2}:
        shapes = {part: list(torch.as_tensor(tensors[f"probe.{name}.{part}"]).shape)
                  for part in ("weight", "bias", "edges") if f"probe.{name}.{part}" in tensors}
        w = shapes.get("weight", [0, 0])
        if (len(shapes) != 3 or len(w) != 2 or shapes["bias"] != w[:1] or shapes["edges"] != [w[0] + 1]
                or (n_features is not None and w[1] != n_features)):
            raise SteerpadError(f"{where}: probe {name!r} tensors must be weight [n_bins, F], bias "
                                f"[n_bins], edges [n_bins + 1], got {shapes}; {fix}")
    descriptors = steering.get("descriptors", {})
    return [{**e, "unit": e.get("unit", descriptors.get(e["descriptor"], {}).get("unit", ""))}
            for e in entries]


# --- models -------------------------------------------------------------------------------
class _DecodeSpectrum(nn.Module):
    """Latents [B, D, F] -> a spectral decoder's frames [B, C, 2, bins, F'] (OobleckDecoder.spectrum)."""

    def __init__(self, vae: OobleckVAE):
        super().__init__()
        self.decoder = vae.decoder

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder.spectrum(z)


class _Encode(nn.Module):
    """Audio [B, C, T] -> latents [B, D, T / hop]: the posterior mean. `from_spectrum`: from a
    spectral encoder's log magnitudes [B, C * bins, T / stft_hop] (OobleckEncoder.from_spectrum)."""

    def __init__(self, vae: OobleckVAE, from_spectrum: bool = False):
        super().__init__()
        self.encoder, self.latent_dim, self.from_spectrum = vae.encoder, vae.config.latent_dim, from_spectrum

    def forward(self, audio: Tensor) -> Tensor:
        out = self.encoder.from_spectrum(audio) if self.from_spectrum else self.encoder(audio)
        return out[:, : self.latent_dim]


def _prepared(vae: OobleckVAE, sae: TopKSAE | None, directions: Tensor | None
              ) -> tuple[OobleckVAE, TopKSAE | None, Tensor | None]:
    """The models on the CPU in eval mode, the VAE's weight norm folded: copies unless they are
    that already (then as they are: nothing here changes them), so the caller's are untouched.
    (No SAE and directions: only the VAE's models can be exported.)"""
    if vae.training or not vae.folded or _device(vae) != "cpu":
        vae = vae.folded_copy()
    if sae is not None and (sae.training or _device(sae) != "cpu"):
        sae = copy.deepcopy(sae).cpu().eval()
    return vae, sae, None if directions is None else torch.as_tensor(directions).detach().float().cpu()


def _modules(vae: OobleckVAE, sae: TopKSAE | None, directions: Tensor | None,
             onnx: bool = False) -> dict[str, nn.Module]:
    """The exported models (the VAE's only, without an SAE); for ONNX (`onnx`), a spectral
    decoder stops at its frames (_io)."""
    spectral = onnx and vae.config.stft_hop
    modules = {"encoder": _Encode(vae, from_spectrum=spectral).eval(),
               "decoder": (_DecodeSpectrum(vae) if spectral else vae.decoder).eval()}
    if sae is not None:
        modules |= {"steer": SteerModule(sae, directions).eval(), "codes": CodesModule(sae).eval()}
    return modules


def _device(module: nn.Module) -> str:
    return next(module.parameters()).device.type


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' expected notices: torch.jit's deprecation, a pytree FutureWarning
    from torch.export, and the ONNX registry's "torchvision is not installed"."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
        registry.setLevel(logging.ERROR)
        try:
            yield
        finally:
            registry.setLevel(level)


def _examples(vae: OobleckVAE, k: int) -> dict[str, tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    c, d, hop = vae.config.audio_channels, vae.config.latent_dim, vae.config.hop
    z = torch.randn(TRACE_BATCH, d, TRACE_FRAMES, generator=g)
    return {"encoder": (0.1 * torch.randn(TRACE_BATCH, c, TRACE_FRAMES * hop, generator=g),),
            "decoder": (z,), "steer": (z, torch.zeros(k)), "codes": (z,)}


def export_onnx(vae: OobleckVAE, sae: TopKSAE | None, directions: Tensor | None, out_dir: str | Path,
                opset: int = OPSET, models: tuple[str, ...] = MODELS) -> dict[str, Path]:
    """Write encoder.onnx, decoder.onnx, steer.onnx and codes.onnx (or only `models`: the
    VAE's need no SAE or directions; single files, weights inline) into out_dir, with dynamic
    batch and frame axes. Returns {model: path}."""
    vae, sae, directions = _prepared(vae, sae, directions)
    out_dir = Path(out_dir)
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=1)
    modules, io = _modules(vae, sae, directions, onnx=True), _io(vae)
    spectral = io["encoder"][0] == "log_magnitude"  # the encoder's input: one frame per stft_hop
    per_frame = vae.config.hop // vae.config.stft_hop if spectral else vae.config.hop
    dynamic = {"encoder": {"audio": {0: batch, 2: frames * per_frame}},
               "decoder": {"z": {0: batch, 2: frames}},
               "steer": {"latents": {0: batch, 2: frames}, "alpha": None},
               "codes": {"latents": {0: batch, 2: frames}}}
    examples, paths = _examples(vae, 0 if directions is None else directions.shape[0]), {}
    if spectral:  # the encoder's example: the log magnitudes of the example audio
        examples["encoder"] = (vae.encoder.front(examples["encoder"][0]),)
    for name in models:
        module, (inputs, output) = modules[name], io[name]
        paths[name] = out_dir / f"{name}.onnx"
        with _quiet(), torch.no_grad():
            torch.onnx.export(module, examples[name], str(paths[name]), dynamo=True, verbose=False,
                              opset_version=opset, external_data=False, dynamic_shapes=dynamic[name],
                              input_names=[inputs] if isinstance(inputs, str) else list(inputs),
                              output_names=[output] if isinstance(output, str) else list(output))
    return paths


def export_torchscript(vae: OobleckVAE, sae: TopKSAE, directions: Tensor,
                       out_dir: str | Path) -> dict[str, Path]:
    """Write encoder.pt, decoder.pt, steer.pt and codes.pt (torch.jit.trace, any batch and length)."""
    vae, sae, directions = _prepared(vae, sae, directions)
    modules = _modules(vae, sae, directions)
    examples, paths = _examples(vae, directions.shape[0]), {}
    for name, module in modules.items():
        paths[name] = Path(out_dir) / f"{name}.pt"
        with _quiet(), torch.no_grad():
            torch.jit.trace(module, examples[name], check_trace=False).save(str(paths[name]))
    return paths


# --- the bundle -----------------------------------------------------------------------------
def export_bundle(out: str | Path, vae: OobleckVAE, sae: TopKSAE, steering: dict, *, metrics: dict,
                  provenance: dict, kit: list[dict] | None = None, force: bool = False,
                  max_frames: int = 32, torchscript: bool = True) -> Path:
    """Write the bundle folder `out` (see the module docstring) and return it. `steering` is
    load_steering's dict; `kit` entries are {"name", "label", "latents": [D, N]} (N <= max_frames,
    the one-shot length in frames); metrics and provenance are JSON-able dicts recorded as given.
    An existing `out` is replaced only with force=True, and only if it is a bundle.
    torchscript=False leaves out the TorchScript copies (the realtime half never reads them;
    the shipped default does, to stay within its size budget)."""
    out = Path(out)
    _check_target(out, force)
    if vae.config.latent_dim != sae.config.d_in:
        raise SteerpadError(f"export: the SAE reads {sae.config.d_in}-dim latents but the VAE makes "
                            f"{vae.config.latent_dim}-dim ones; train the SAE on this VAE's latents")
    if not isinstance(max_frames, int) or max_frames < 1:
        raise SteerpadError(f"export: max_frames must be a positive integer, got {max_frames!r}")
    entries = _check_steering(steering, sae.config.n_features, "steering")
    vae, sae, directions = _prepared(vae, sae, steering["tensors"]["directions"])
    kit_arrays = _check_kit(kit or [], vae.config.latent_dim, max_frames)
    kit_audio = _check_kit_audio(kit or [], vae.config.audio_channels, max_frames * vae.config.hop)
    out.parent.mkdir(parents=True, exist_ok=True)
    with bundle_beside(out) as tmp:
        export_onnx(vae, sae, directions, tmp)
        if torchscript:
            export_torchscript(vae, sae, directions, tmp)
        probes = {k: torch.as_tensor(v).detach().float().cpu().contiguous().numpy()
                  for k, v in steering["tensors"].items() if k.startswith("probe.")}
        from safetensors.numpy import save_file

        save_file(probes, str(tmp / "probes.safetensors"), metadata={"format": "steerpad-probes"})
        kit_entries = []
        for entry, z, audio in zip(kit or [], kit_arrays, kit_audio):
            (tmp / "kit").mkdir(exist_ok=True)
            np.save(tmp / "kit" / f"{entry['name']}.npy", z)
            extra = {k: v for k, v in entry.items() if k not in ("name", "label", "latents", "audio")}
            if audio is not None:  # the source one-shot itself: what faithful mode plays
                extra.update(store_kit_audio(tmp, entry["name"], audio, vae.config.sample_rate))
            kit_entries.append({"name": entry["name"], "label": str(entry.get("label", entry["name"])),
                                "file": f"kit/{entry['name']}.npy", **extra})
        manifest = _manifest(tmp, vae, sae, steering, entries, metrics, provenance, kit_entries, max_frames)
        _write_json(tmp / "manifest.json", manifest)
        manifest["export_check"] = check_bundle(tmp, vae, sae, directions)
        _write_json(tmp / "manifest.json", manifest)
        install_bundle(tmp, out, force)
    return out


def store_kit_audio(folder: Path, name: str, audio: np.ndarray, rate: int) -> dict[str, Any]:
    """Write kit entry `name`'s source one-shot [C, T] as folder/kit/<name>.flac (24-bit) and
    return its manifest keys: `audio`, and `audio_gain` for a one-shot over 0 dBFS (FLAC holds
    |x| <= 1, so such a one-shot is stored scaled down and keeps its level as a gain)."""
    import soundfile as sf

    (folder / "kit").mkdir(exist_ok=True)
    gain = max(1.0, float(np.abs(audio).max()))
    sf.write(folder / "kit" / f"{name}.flac", np.asarray(audio).T / gain, rate, subtype="PCM_24",
             format="FLAC")
    return {"audio": f"kit/{name}.flac", **({"audio_gain": gain} if gain > 1.0 else {})}


def _check_kit_audio(kit: list[dict], channels: int, max_samples: int) -> list[np.ndarray | None]:
    """Each entry's optional source audio [C, T] (the VAE's rate and channels, T <= max_frames *
    hop, finite, peak at most +24 dBFS as ingest allows) -> the arrays, None where none."""
    out: list[np.ndarray | None] = []
    for i, e in enumerate(kit):
        if e.get("audio") is None:
            out.append(None)
            continue
        a = np.asarray(e["audio"], dtype=np.float32)
        if a.ndim != 2 or a.shape[0] != channels or not 1 <= a.shape[1] <= max_samples \
                or not np.isfinite(a).all() or np.abs(a).max() > KIT_AUDIO_GAIN_MAX:
            raise SteerpadError(f"export: kit[{i}] ({e.get('name')}) audio must be finite [{channels}, T] "
                                f"with 1 <= T <= {max_samples} and |x| <= {KIT_AUDIO_GAIN_MAX:g}, got "
                                f"{list(a.shape)}")
        out.append(np.ascontiguousarray(a))
    return out


def _check_kit(kit: list[dict], dim: int, max_frames: int) -> list[np.ndarray]:
    arrays, seen = [], set()
    for i, e in enumerate(kit):
        name = e.get("name") if isinstance(e, dict) else None
        if not isinstance(name, str) or not KIT_NAME.match(name) or name in seen:
            raise SteerpadError(f"export: kit[{i}] needs a unique, file-safe name (letters, digits, "
                                f"'_', '.', '-'), got {name!r}")
        seen.add(name)
        z = np.asarray(e.get("latents"), dtype=np.float32)
        if z.ndim != 2 or z.shape[0] != dim or not 1 <= z.shape[1] <= max_frames or not np.isfinite(z).all():
            raise SteerpadError(f"export: kit[{i}] ({name}) latents must be finite [{dim}, N] with "
                                f"1 <= N <= {max_frames}, got {list(z.shape)}")
        arrays.append(np.ascontiguousarray(z))
    return arrays


def _manifest(folder: Path, vae: OobleckVAE, sae: TopKSAE, steering: dict, entries: list[dict],
              metrics: dict, provenance: dict, kit: list[dict], max_frames: int) -> dict[str, Any]:
    cfg = vae.config
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    onnx = {"opset": OPSET}
    for name, (inputs, output) in _io(vae).items():
        onnx[name] = {"file": f"{name}.onnx", ("input" if isinstance(inputs, str) else "inputs"):
                      inputs if isinstance(inputs, str) else list(inputs),
                      ("output" if isinstance(output, str) else "outputs"):
                      output if isinstance(output, str) else list(output)}
    if cfg.stft_hop:  # the STFTs the realtime half does (realtime/bundle.py log_spectrum, synthesize)
        front = vae.encoder.front
        onnx["encoder"]["spectrum"] = {"n_fft": front.n_fft, "hop": front.hop, "floor": front.eps}
        onnx["decoder"]["spectrum"] = {"n_fft": vae.decoder.head.n_fft, "hop": vae.decoder.head.hop}
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steerpad_version": _version("steerpad"),
        "audio": {"sample_rate": cfg.sample_rate, "channels": cfg.audio_channels, "hop": cfg.hop,
                  "max_frames": max_frames},
        "latent": {"dim": cfg.latent_dim, "mean": sae.mean.tolist(), "std": sae.std.tolist()},
        "sae": {"n_features": sae.config.n_features, "k": sae.config.k,
                "level_pair": bool(sae.config.reserved)},
        "vae": {"config": cfg.to_dict()},
        "directions": entries,
        "probes": steering.get("probes", {}),
        "descriptors": steering.get("descriptors", {}),
        "metrics": metrics,
        "provenance": provenance,
        "onnx": onnx,
        "torchscript": {name: f"{name}.pt" for name in MODELS if (folder / f"{name}.pt").is_file()},
        "probes_file": "probes.safetensors",
        "kit": kit,
        "files": {p.relative_to(folder).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size}
                  for p in files},
    }


def check_bundle(folder: str | Path, vae: OobleckVAE, sae: TopKSAE, directions: Tensor,
                 batch: int = CHECK_BATCH, frames: int = CHECK_FRAMES) -> dict[str, Any]:
    """Load `folder` with the realtime loader and compare every ONNX and TorchScript model with
    torch (`vae` folded or not, `sae`, `directions` [K, F]) on random input of `batch` x `frames`.
    SteerpadError if any differs by more than TOLERANCE; else the record kept in the manifest."""
    folder = Path(folder)
    bundle = load_bundle(folder, providers=["CPUExecutionProvider"])
    vae, sae, directions = _prepared(vae, sae, directions)
    steer, codes = SteerModule(sae, directions).eval(), CodesModule(sae).eval()
    g = torch.Generator().manual_seed(1)
    audio = 0.1 * torch.randn(batch, vae.config.audio_channels, frames * vae.config.hop, generator=g)
    z = sae.mean[:, None] + sae.std[:, None] * torch.randn(batch, vae.config.latent_dim, frames, generator=g)
    lo = torch.tensor([d.alpha_min for d in bundle.directions])
    hi = torch.tensor([d.alpha_max for d in bundle.directions])
    alpha = lo + (hi - lo) * torch.rand(len(lo), generator=g)
    with torch.no_grad():
        want = {"encoder": vae.encode(audio), "decoder": vae.decode(z), "steer": steer(z, alpha),
                "codes": _dense(*codes(z), sae.config.n_features)}
    inputs = {"encoder": (audio,), "decoder": (z,), "steer": (z, alpha), "codes": (z,)}
    code_values, code_indices = map(torch.as_tensor, bundle.codes(z.numpy()))
    got = {"encoder.onnx": bundle.encode(audio.numpy()), "decoder.onnx": bundle.decode(z.numpy()),
           "steer.onnx": bundle.steer(z.numpy(), alpha.numpy()),
           "codes.onnx": _dense(code_values, code_indices, sae.config.n_features).numpy()}
    with _quiet(), torch.no_grad():
        for name in MODELS:
            if not (folder / f"{name}.pt").is_file():  # exported without TorchScript
                continue
            out = torch.jit.load(str(folder / f"{name}.pt"))(*inputs[name])
            got[f"{name}.pt"] = (_dense(*out, sae.config.n_features) if name == "codes" else out).numpy()
    errors = {}
    for file, value in got.items():
        ref = want[file.split(".")[0]].numpy()
        if not np.isfinite(ref).all():
            raise SteerpadError(f"export: torch's {file.split('.')[0]} output is not finite on random "
                                "input; the model weights hold NaN or inf: retrain or re-save them")
        err = float(np.abs(value - ref).max()) if value.shape == ref.shape else float("inf")
        bound = TOLERANCE * max(1.0, float(np.abs(ref).max()))
        if not err <= bound:
            raise SteerpadError(f"export: {file} differs from torch by {err:.3g} (allowed {bound:.3g}) on "
                                f"{batch} x {frames} frames; nothing was written; please report this")
        errors[file] = err
    return {"max_abs_error": errors, "tolerance": TOLERANCE, "batch": batch, "frames": frames,
            "torch": torch.__version__, "onnxruntime": _version("onnxruntime")}


def _dense(values: Tensor, indices: Tensor, n_features: int) -> Tensor:
    """Sparse codes [B, N, J] -> dense [B, N, F] (how two codes compare, whatever their order)."""
    out = torch.zeros(*values.shape[:2], n_features, dtype=values.dtype)
    return out.scatter_(2, indices.long(), values)


def _check_target(out: Path, force: bool, inputs: tuple = ()) -> None:
    claim_output(out, "bundle", inputs=inputs, force=force)


@contextlib.contextmanager
def bundle_beside(out: Path, copy_of: Path | None = None) -> Iterator[Path]:
    """A new folder beside `out` to build a bundle in (`.NAME.XXXX.partial`: empty, or a copy of
    the bundle `copy_of`), for install_bundle to rename over `out`. At the end, whatever
    happened, it is removed if it is still there: made here by mkdtemp, never an existing
    folder (once installed it is gone already); a stop while it is made leaves nothing."""
    tmp = None
    try:
        with stops_held():  # a stop lands once `tmp` holds the folder, inside the try
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        if copy_of is not None:
            shutil.copytree(copy_of, tmp, dirs_exist_ok=True)
        yield tmp
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def install_bundle(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished bundle folder tmp to out; an existing bundle at out (only one
    steerpad wrote: claim_output) is swapped aside first, put back if the rename fails, and
    removed once it succeeded."""
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
        return
    _check_target(out, force)
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "bundle")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / "bundle", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: dict) -> None:
    try:
        text = json.dumps(data, indent=2, allow_nan=False, default=_jsonable)
    except (TypeError, ValueError) as e:
        raise SteerpadError(f"export: the manifest is not plain JSON ({e}); pass metrics and "
                            "provenance as numbers, strings, lists and dicts") from None
    path.write_text(text + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.generic, np.ndarray, Tensor)):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# --- CLI --------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", type=Path, required=True, metavar="VAE_DIR",
                        help="a VAE folder (steerpad train vae: RUN/vae)")
    parser.add_argument("--sae", type=Path, required=True, metavar="SAE_DIR",
                        help="an SAE folder (steerpad train sae)")
    parser.add_argument("--steering", type=Path, required=True, metavar="STEERING_DIR",
                        help="a steering folder (directions.json + directions.safetensors)")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE",
                        help="the bundle folder to write")
    parser.add_argument("--max-frames", type=int, default=32, metavar="N",
                        help="one-shot length in latent frames (default 32)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument("--no-torchscript", action="store_true",
                        help="leave out the TorchScript copies (*.pt; realtime never reads them)")


def run(args: argparse.Namespace) -> int:
    from steerpad.offline.sae import load_sae
    from steerpad.offline.vae import load_vae

    _check_target(args.out, args.force, (args.vae, args.sae, args.steering))
    vae, sae = load_vae(args.vae), load_sae(args.sae)
    steering = load_steering(args.steering)
    sae_record = json.loads((args.sae / "config.json").read_text()).get("training") or {}
    metrics: dict[str, Any] = {"sae": sae_record.get("metrics", {})}
    for candidate in (args.vae / "metrics.json", args.vae.parent / "metrics.json"):
        if candidate.is_file():
            metrics["vae"] = json.loads(candidate.read_text())
            break
    if isinstance(steering.get("metrics"), dict):
        metrics["steering"] = steering["metrics"]
    provenance = {"vae": str(args.vae.resolve()), "sae": str(args.sae.resolve()),
                  "steering": str(args.steering.resolve()), "sae_source": sae_record.get("source"),
                  "command": "steerpad export"}
    out = export_bundle(args.out, vae, sae, steering, metrics=metrics, provenance=provenance,
                        force=args.force, max_frames=args.max_frames,
                        torchscript=not args.no_torchscript)
    manifest = json.loads((out / "manifest.json").read_text())
    worst = max(manifest["export_check"]["max_abs_error"].values())
    names = ", ".join(d["name"] for d in manifest["directions"])
    print(f"export: {out} ({manifest['audio']['sample_rate']} Hz x {manifest['audio']['channels']} ch, "
          f"hop {manifest['audio']['hop']}, D={manifest['latent']['dim']}; directions: {names}; "
          f"max |onnx - torch| {worst:.2g})")
    return 0
