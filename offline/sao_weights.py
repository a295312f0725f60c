"""Load Stable Audio Open VAE weights from a local file into an `OobleckVAE`.

Accepted files: the full SAO checkpoint (`model.safetensors` / `model.ckpt`, VAE keys under
`pretransform.model.`; a .ckpt usually wraps everything in "state_dict") or a VAE-only one (keys
`encoder.*` / `decoder.*`, maybe under `autoencoder.`, `model.`, `vae.` or `module.`).
Prefixes are matched liberally; under the chosen prefix every key must fit the model exactly.
Only the VAE's tensors are read: safetensors files through `safe_open`, .ckpt files
memory-mapped (`torch.load(mmap=True, weights_only=True)`), so the diffusion weights are never
loaded. Weight norm may be stored the old way (`weight_g`, `weight_v`), the parametrization way
(`parametrizations.weight.original0/1`) or folded (`weight`); each is mapped to the model's form.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from steerpad.realtime.errors import SteerpadError

if TYPE_CHECKING:
    from steerpad.offline.vae import OobleckVAE

# Tried in this order; the first under which any encoder./decoder. key exists wins.
PREFIXES = ("pretransform.model.", "autoencoder.", "model.", "vae.", "module.",
            "module.pretransform.model.", "module.autoencoder.", "")
_NEW_G, _NEW_V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"
_SHOW = 3  # keys named in an error message


def load_sao_weights(model: OobleckVAE, path: str | Path, prefix: str | None = None) -> OobleckVAE:
    """Load an SAO (or VAE-only) checkpoint into `model` in place, folded or not; returns it.
    `prefix` overrides the detection of where the VAE keys live. SteerpadError naming the file,
    the counts and the first few missing / unexpected / mis-shaped keys for a wrong file."""
    state, prefix = read_vae_state(path, prefix)
    return load_vae_state(model, state, source=str(path), prefix=prefix)


def read_vae_state(path: str | Path, prefix: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The VAE tensors of a checkpoint file, keys with the prefix stripped, and that prefix."""
    path = Path(path)
    if not path.is_file():
        raise SteerpadError(f"{path}: no such file; give the path to Stable Audio Open's "
                            "model.safetensors or model.ckpt (or a VAE-only checkpoint)")
    if _is_safetensors(path):
        return _read_safetensors(path, prefix)
    return _read_torch(path, prefix)


def load_vae_state(model: OobleckVAE, state: Mapping[str, object], source: str,
                   prefix: str = "") -> OobleckVAE:
    """Load `state` (keys relative to the VAE, any weight-norm naming) into `model` strictly.
    Missing, unexpected or mis-shaped keys raise SteerpadError naming `source` and the keys as
    they are (or would be) written in the file, i.e. with `prefix`."""
    target = model.state_dict()
    state = _to_model_form(dict(state), target)
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    misshaped = [f"{prefix}{_old(k)} {_shape(v)} vs {tuple(target[k].shape)}"
                 for k, v in state.items()
                 if k in target and (not isinstance(v, torch.Tensor) or v.shape != target[k].shape)]
    if missing or unexpected or misshaped:
        parts = [f"{len(lst)} {what} ({', '.join(lst[:_SHOW])}{', ...' if len(lst) > _SHOW else ''})"
                 for what, lst in (("missing keys", _named(missing, prefix)),
                                   ("unexpected keys", _named(unexpected, prefix)),
                                   ("keys of the wrong shape", misshaped)) if lst]
        raise SteerpadError(f"{source}: does not fit the {model.config.name!r} Oobleck VAE: "
                            f"{'; '.join(parts)}; give a Stable Audio Open checkpoint for the "
                            "'sao' config, or a VAE saved with this config")
    with torch.no_grad():
        for k, v in state.items():
            target[k].copy_(v)
    return model


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _named(keys: list[str], prefix: str) -> list[str]:
    return list(dict.fromkeys(prefix + _old(k) for k in keys))


def _old(key: str) -> str:
    """The SAO (old weight_norm) spelling of a key: `X.weight_g` / `X.weight_v`."""
    if key.endswith(_NEW_G):
        return key[: -len(_NEW_G)] + ".weight_g"
    if key.endswith(_NEW_V):
        return key[: -len(_NEW_V)] + ".weight_v"
    return key


def _to_model_form(state: dict[str, object], target: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Rename/convert weight-norm tensors to the form `target` uses; leave other keys alone."""
    out: dict[str, object] = {}
    for key, value in state.items():
        out[_old(key)] = value
    for key in list(out):
        if not key.endswith(".weight_g"):
            continue
        base = key[: -len(".weight_g")]
        g, v = out.get(base + ".weight_g"), out.get(base + ".weight_v")
        if base + _NEW_G in target:
            out[base + _NEW_G] = out.pop(base + ".weight_g")
            if base + ".weight_v" in out:
                out[base + _NEW_V] = out.pop(base + ".weight_v")
        elif (base + ".weight" in target and isinstance(g, torch.Tensor)
              and isinstance(v, torch.Tensor) and g.dim() == v.dim()):
            # (a g/v pair that cannot fold stays as is and is reported as unexpected)
            del out[base + ".weight_g"], out[base + ".weight_v"]
            out[base + ".weight"] = torch._weight_norm(v.float(), g.float(), 0)
    for key in list(out):  # a folded `X.weight` given to a weight-normed model
        base = key[: -len(".weight")]
        w = out[key]
        if key.endswith(".weight") and base + _NEW_G in target and isinstance(w, torch.Tensor):
            del out[key]
            out[base + _NEW_G] = torch.norm_except_dim(w.float(), 2, 0)
            out[base + _NEW_V] = w
    return out


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length, then the JSON header `{`."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _pick_prefix(path: Path, keys: list[str], prefix: str | None) -> str:
    candidates = PREFIXES if prefix is None else (prefix,)
    for p in candidates:
        if any(k.startswith((p + "encoder.", p + "decoder.")) for k in keys):
            return p
    looked = "under " + repr(prefix) if prefix is not None else \
        f"under {', '.join(repr(p) for p in PREFIXES if p)} or at the top level"
    first = ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")
    raise SteerpadError(f"{path}: no Oobleck VAE weights in it (no encoder.*/decoder.* keys "
                        f"{looked}; it has {len(keys)} keys: {first or 'none'}); give Stable "
                        "Audio Open's model.safetensors / model.ckpt or a VAE-only checkpoint")


def _read_safetensors(path: Path, prefix: str | None) -> tuple[dict[str, torch.Tensor], str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            prefix = _pick_prefix(path, keys, prefix)
            return {k[len(prefix):]: f.get_tensor(k) for k in keys if k.startswith(prefix)}, prefix
    except SteerpadError:
        raise
    except Exception as e:  # noqa: BLE001 -- a torn or foreign file: safetensors raises many types
        raise SteerpadError(f"{path}: not a readable safetensors file ({e.__class__.__name__}: "
                            f"{_first_line(e)}); is it a complete download?") from None


def _read_torch(path: Path, prefix: str | None) -> tuple[dict[str, torch.Tensor], str]:
    try:
        try:  # zip-format checkpoints map lazily: only the VAE's pages are ever read
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as e:  # noqa: BLE001 -- not a checkpoint, or one needing unsafe unpickling
        raise SteerpadError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: "
                            f"{_first_line(e)}); give a .safetensors or .ckpt file") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise SteerpadError(f"{path}: holds a {type(obj).__name__}, not a state dict of named "
                            "tensors; give Stable Audio Open's model.ckpt or model.safetensors")
    keys = list(obj)
    prefix = _pick_prefix(path, keys, prefix)
    return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}, prefix


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else ""
