"""Read a bundle: the one contract between offline (which writes it) and realtime (which plays it).

    bundle/
      manifest.json        schema, audio format, latent stats, SAE size, directions, file hashes
      encoder.onnx         audio [B, C, T]              -> latents [B, D, T / hop]
      decoder.onnx         latents [B, D, N]            -> audio [B, C, N * hop]
      steer.onnx           latents [B, D, N], alpha [K] -> steered [B, D, N]
      codes.onnx           latents [B, D, N] -> SAE code values, indices [B, N, k + 2]
      encoder.pt ...       the same as TorchScript (offline use; never read here)
      probes.safetensors   the descriptor probes (realtime/probes.py reads them for the visualizer)
      kit/<name>.npy       pad latents [D, N] float32

`load_bundle(path)` checks everything it can before any audio is made (schema, field types,
file hashes, the ONNX models' shapes against the manifest) and refuses a bundle it cannot play
with a one-line SteerpadError naming the bundle and the field or file. numpy + onnxruntime only:
the `Bundle` methods run on a render worker thread, never in the audio callback.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from steerpad.realtime.errors import SteerpadError

SCHEMA = "steerpad-bundle"
SCHEMA_VERSION = 1
MODELS = ("encoder", "decoder", "steer", "codes")
KIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""Kit entry names double as file names (kit/<name>.npy)."""


@dataclass(frozen=True)
class Direction:
    """One steering knob: alpha in [alpha_min, alpha_max] moves `descriptor` (in `unit`); a
    polarity of -1 means turning the knob up lowers the descriptor."""

    name: str
    descriptor: str
    unit: str
    alpha_min: float
    alpha_max: float
    polarity: int


@dataclass(frozen=True, eq=False)
class KitEntry:
    """A pad sound shipped with the bundle: its latents [D, N] float32."""

    name: str
    label: str
    latents: np.ndarray


def parse_directions(entries: Any, where: str, fix: str) -> list[Direction]:
    """Check a directions list (manifest.json `directions`, or a steering folder's) and return it
    as Directions. `where` prefixes error messages (e.g. "bundle x: manifest.json directions"),
    `fix` ends them (what to do)."""
    if not isinstance(entries, list) or not entries:
        raise SteerpadError(f"{where} must be a non-empty list, got {_short(entries)}; {fix}")
    out, seen = [], set()
    for i, e in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(e, dict):
            raise SteerpadError(f"{at} must be an object, got {_short(e)}; {fix}")
        for key in ("name", "descriptor"):
            if not isinstance(e.get(key), str) or not e[key]:
                raise SteerpadError(f"{at}.{key} must be a non-empty string, got {_short(e.get(key))}; {fix}")
        if e["name"] in seen:
            raise SteerpadError(f"{at}.name {e['name']!r} is a duplicate: direction names must be "
                                f"unique; {fix}")
        seen.add(e["name"])
        unit = e.get("unit", "")
        if not isinstance(unit, str):
            raise SteerpadError(f"{at}.unit must be a string, got {_short(unit)}; {fix}")
        lo, hi = e.get("alpha_min"), e.get("alpha_max")
        for key, v in (("alpha_min", lo), ("alpha_max", hi)):
            if not _is_number(v):
                raise SteerpadError(f"{at}.{key} must be a finite number, got {_short(v)}; {fix}")
        if not lo < hi:
            raise SteerpadError(f"{at}: alpha_min {lo} must be below alpha_max {hi}; {fix}")
        if e.get("polarity") not in (1, -1) or isinstance(e.get("polarity"), bool):
            raise SteerpadError(f"{at}.polarity must be 1 or -1, got {_short(e.get('polarity'))}; {fix}")
        out.append(Direction(e["name"], e["descriptor"], unit, float(lo), float(hi), int(e["polarity"])))
    return out


class Bundle:
    """A loaded bundle: its format, directions and kit, and onnxruntime sessions for the models.
    Arrays in and out are float32 numpy; batch-first, as the shapes below."""

    def __init__(self, path: Path, manifest: dict[str, Any], sessions: dict[str, Any],
                 directions: list[Direction], kit: list[KitEntry]):
        self.path = path
        self.manifest = manifest
        audio, latent, sae = manifest["audio"], manifest["latent"], manifest["sae"]
        self.sample_rate: int = audio["sample_rate"]
        self.channels: int = audio["channels"]
        self.hop: int = audio["hop"]
        self.max_frames: int = audio["max_frames"]
        self.latent_dim: int = latent["dim"]
        self.latent_mean = np.asarray(latent["mean"], np.float32)
        self.latent_std = np.asarray(latent["std"], np.float32)
        self.n_features: int = sae["n_features"]
        self.k: int = sae["k"]
        self.directions = directions
        self.kit = kit
        self._sessions = sessions
        self._io = {m: manifest["onnx"][m] for m in MODELS}
        self.provider: str = sessions["decoder"].get_providers()[0]
        """The onnxruntime execution provider the models run on (CUDA... or CPU...)."""

    def __repr__(self) -> str:
        return (f"Bundle({str(self.path)!r}, {self.sample_rate} Hz x {self.channels} ch, hop {self.hop}, "
                f"D={self.latent_dim}, {len(self.directions)} directions, {self.provider})")

    def direction_names(self) -> list[str]:
        return [d.name for d in self.directions]

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Audio [C, T] or [B, C, T] -> latents [B, D, ceil(T / hop)] (T zero-padded up to a
        multiple of hop)."""
        x = _batched(audio, self.channels, "audio", "C")
        t = x.shape[-1]
        if t == 0:
            raise ValueError("encode: audio has no samples")
        pad = -t % self.hop
        if pad:
            x = np.pad(x, ((0, 0), (0, 0), (0, pad)))
        return self._run("encoder", {self._io["encoder"]["input"]: x})

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents [D, N] or [B, D, N] -> audio [B, C, N * hop]."""
        z = _batched(latents, self.latent_dim, "latents", "D")
        return self._run("decoder", {self._io["decoder"]["input"]: z})

    def steer(self, latents: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Latents [D, N] or [B, D, N], alpha [K] (one value per direction, in direction order)
        -> steered latents [B, D, N]. alpha = 0 gives the latents back."""
        z = _batched(latents, self.latent_dim, "latents", "D")
        a = np.ascontiguousarray(alpha, dtype=np.float32).reshape(-1)
        if a.shape[0] != len(self.directions):
            raise ValueError(f"steer: alpha has {a.shape[0]} values, the bundle has "
                             f"{len(self.directions)} directions")
        latents_name, alpha_name = self._io["steer"]["inputs"]
        return self._run("steer", {latents_name: z, alpha_name: a})

    def codes(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latents [D, N] or [B, D, N] -> their SAE codes, sparse: values [B, N, J] float32 and
        feature indices [B, N, J] int64 (J = k + 2 with the level pair, features 0 and 1)."""
        z = _batched(latents, self.latent_dim, "latents", "D")
        io = self._io["codes"]
        values, indices = self._sessions["codes"].run(io["outputs"], {io["input"]: z})
        return values, indices

    def render(self, latents: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Steer, then decode: latents [D, N] or [B, D, N], alpha [K] -> audio [B, C, N * hop]."""
        return self.decode(self.steer(latents, alpha))

    def _run(self, model: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._sessions[model].run([self._io[model]["output"]], feeds)[0]


def load_bundle(path: str | Path, providers: list[str] | None = None, verify_hashes: bool = True,
                intra_op_threads: int | None = None) -> Bundle:
    """Check and load the bundle folder at `path`. `providers`: onnxruntime execution providers
    in order of preference (default: CUDA when this onnxruntime has it, else CPU).
    `verify_hashes=False` skips the SHA-256 check of every file (sizes are still checked).
    `intra_op_threads`: onnxruntime threads per model (None: onnxruntime's default)."""
    path = Path(path)
    check = _Checker(path)
    manifest = check.manifest()
    directions = check.fields(manifest)
    check.files(manifest, verify_hashes)
    kit = check.kit(manifest)
    sessions = _sessions(path, manifest, providers, intra_op_threads)
    check.models(manifest, sessions, len(directions))
    return Bundle(path, manifest, sessions, directions, kit)


def default_providers() -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in have else []) + ["CPUExecutionProvider"]


def _sessions(path: Path, manifest: dict, providers: list[str] | None,
              intra_op_threads: int | None) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Idle onnxruntime threads must sleep, not spin: they share the cores with the audio thread.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    providers = providers or default_providers()
    sessions = {}
    for m in MODELS:
        file = path / manifest["onnx"][m]["file"]
        try:
            sessions[m] = ort.InferenceSession(str(file), options, providers=providers)
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise SteerpadError(f"bundle {path}: {manifest['onnx'][m]['file']} is not a model "
                                f"onnxruntime can load ({first[:200]}); re-export the bundle") from None
    return sessions


class _Checker:
    """The checks of load_bundle, each failing with `bundle PATH: <what>; <fix>`."""

    FIX = "re-export the bundle"

    def __init__(self, path: Path):
        self.path = path

    def fail(self, what: str, fix: str = FIX) -> SteerpadError:
        return SteerpadError(f"bundle {self.path}: {what}; {fix}")

    def manifest(self) -> dict[str, Any]:
        where = "point at a bundle folder written by `steerpad export`"
        if not self.path.is_dir():
            raise self.fail("not a folder", where)
        file = self.path / "manifest.json"
        if not file.is_file():
            raise self.fail("manifest.json is missing", where)
        try:
            manifest = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.fail(f"manifest.json is not valid JSON ({e})") from None
        if not isinstance(manifest, dict):
            raise self.fail(f"manifest.json must hold an object, got {_short(manifest)}")
        if manifest.get("schema") != SCHEMA:
            raise self.fail(f"manifest.json schema must be {SCHEMA!r}, got {_short(manifest.get('schema'))}",
                            "this is not a steerpad bundle")
        version = manifest.get("schema_version")
        if not _is_int(version) or version < 1:
            raise self.fail(f"manifest.json schema_version must be a positive integer, got {_short(version)}")
        if version > SCHEMA_VERSION:
            raise self.fail(f"manifest.json schema_version {version} was written by a newer steerpad "
                            f"(this one reads {SCHEMA_VERSION})", "upgrade steerpad")
        return manifest

    def get(self, manifest: dict, dotted: str, kind: str) -> Any:
        """manifest[a][b]... checked against `kind`: pos_int, int, str, dict, list, numbers."""
        value: Any = manifest
        for key in dotted.split("."):
            if not isinstance(value, dict) or key not in value:
                raise self.fail(f"manifest.json {dotted} is missing")
            value = value[key]
        ok = {"pos_int": lambda v: _is_int(v) and v > 0, "str": lambda v: isinstance(v, str) and v,
              "dict": lambda v: isinstance(v, dict), "list": lambda v: isinstance(v, list),
              "numbers": lambda v: isinstance(v, list) and all(_is_number(x) for x in v)}[kind]
        if not ok(value):
            what = {"pos_int": "a positive integer", "str": "a non-empty string", "dict": "an object",
                    "list": "a list", "numbers": "a list of finite numbers"}[kind]
            raise self.fail(f"manifest.json {dotted} must be {what}, got {_short(value)}")
        return value

    def fields(self, m: dict) -> list[Direction]:
        for key in ("audio.sample_rate", "audio.channels", "audio.hop", "audio.max_frames",
                    "latent.dim", "sae.n_features", "sae.k"):
            self.get(m, key, "pos_int")
        dim = m["latent"]["dim"]
        for key in ("latent.mean", "latent.std"):
            if len(self.get(m, key, "numbers")) != dim:
                raise self.fail(f"manifest.json {key} has {len(m['latent'][key.split('.')[1]])} values, "
                                f"latent.dim is {dim}")
        if any(s <= 0 for s in m["latent"]["std"]):
            raise self.fail("manifest.json latent.std must be positive")
        if m["sae"]["k"] > m["sae"]["n_features"]:
            raise self.fail(f"manifest.json sae.k ({m['sae']['k']}) must not exceed sae.n_features "
                            f"({m['sae']['n_features']})")
        for key in ("probes", "descriptors", "metrics", "provenance", "files"):
            self.get(m, key, "dict")
        for model in MODELS:
            self.get(m, f"onnx.{model}.file", "str")
        for model in ("encoder", "decoder", "steer"):
            self.get(m, f"onnx.{model}.output", "str")
        for model in ("encoder", "decoder", "codes"):
            self.get(m, f"onnx.{model}.input", "str")
        outputs = self.get(m, "onnx.codes.outputs", "list")
        if len(outputs) != 2 or not all(isinstance(s, str) and s for s in outputs):
            raise self.fail(f"manifest.json onnx.codes.outputs must name 2 outputs (values, indices), "
                            f"got {_short(outputs)}")
        inputs = self.get(m, "onnx.steer.inputs", "list")
        if len(inputs) != 2 or not all(isinstance(s, str) and s for s in inputs):
            raise self.fail(f"manifest.json onnx.steer.inputs must name 2 inputs (latents, alpha), "
                            f"got {_short(inputs)}")
        seen: set[str] = set()
        for i, e in enumerate(self.get(m, "kit", "list")):
            at = f"manifest.json kit[{i}]"
            if not (isinstance(e, dict) and isinstance(e.get("name"), str) and KIT_NAME.match(e["name"])
                    and isinstance(e.get("file"), str)):
                raise self.fail(f"{at} must be an object with a file-safe name and a file, got {_short(e)}")
            if e["name"] in seen:
                raise self.fail(f"{at}.name {e['name']!r} is a duplicate")
            seen.add(e["name"])
        return parse_directions(m.get("directions"), f"bundle {self.path}: manifest.json directions",
                                self.FIX)

    def files(self, m: dict, verify_hashes: bool) -> None:
        listed = m["files"]
        needed = [m["onnx"][model]["file"] for model in MODELS]
        needed += [e["file"] for e in m["kit"]]
        for rel in needed:
            if rel not in listed:
                raise self.fail(f"manifest.json files does not list {rel!r}")
        for rel, info in listed.items():
            p = PurePosixPath(rel)
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise self.fail(f"manifest.json files lists {rel!r}, which is outside the bundle")
            if not (isinstance(info, dict) and _is_int(info.get("bytes"))
                    and isinstance(info.get("sha256"), str) and len(info["sha256"]) == 64):
                raise self.fail(f"manifest.json files[{rel!r}] must be {{\"sha256\": hex, \"bytes\": n}}, "
                                f"got {_short(info)}")
            file = self.path / rel
            if not file.is_file():
                raise self.fail(f"{rel} is missing (listed in manifest.json files)",
                                "re-export the bundle or copy it again")
            if file.stat().st_size != info["bytes"] or (verify_hashes and sha256(file) != info["sha256"]):
                raise self.fail(f"{rel} is corrupt (its size or SHA-256 does not match manifest.json "
                                "files)", "re-export the bundle or copy it again")

    def kit(self, m: dict) -> list[KitEntry]:
        kit = []
        for e in m["kit"]:
            try:
                z = np.load(self.path / e["file"], allow_pickle=False)
            except (OSError, ValueError) as err:
                raise self.fail(f"{e['file']} is not a readable .npy file ({err})") from None
            if z.dtype != np.float32 or z.ndim != 2 or z.shape[0] != m["latent"]["dim"] \
                    or not 1 <= z.shape[1] <= m["audio"]["max_frames"] or not np.isfinite(z).all():
                raise self.fail(f"{e['file']} must hold finite float32 latents [D={m['latent']['dim']}, "
                                f"N <= {m['audio']['max_frames']}], got {z.dtype} {list(z.shape)}")
            kit.append(KitEntry(e["name"], str(e.get("label", e["name"])), z))
        return kit

    def models(self, m: dict, sessions: dict[str, Any], k: int) -> None:
        c, d, k_sae = m["audio"]["channels"], m["latent"]["dim"], m["sae"]["k"]
        io = m["onnx"]
        self._shape(io["encoder"]["file"], sessions["encoder"].get_inputs(), [io["encoder"]["input"]],
                    [[None, ("audio.channels", c), None]])
        self._shape(io["encoder"]["file"], sessions["encoder"].get_outputs(), [io["encoder"]["output"]],
                    [[None, ("latent.dim", d), None]])
        self._shape(io["decoder"]["file"], sessions["decoder"].get_inputs(), [io["decoder"]["input"]],
                    [[None, ("latent.dim", d), None]])
        self._shape(io["decoder"]["file"], sessions["decoder"].get_outputs(), [io["decoder"]["output"]],
                    [[None, ("audio.channels", c), None]])
        self._shape(io["steer"]["file"], sessions["steer"].get_inputs(), io["steer"]["inputs"],
                    [[None, ("latent.dim", d), None], [("directions (count)", k)]])
        self._shape(io["steer"]["file"], sessions["steer"].get_outputs(), [io["steer"]["output"]],
                    [[None, ("latent.dim", d), None]])
        j = ("sae.k (+ 2 for the level pair)", k_sae + (2 if m["sae"].get("level_pair", True) else 0))
        self._shape(io["codes"]["file"], sessions["codes"].get_inputs(), [io["codes"]["input"]],
                    [[None, ("latent.dim", d), None]])
        self._shape(io["codes"]["file"], sessions["codes"].get_outputs(), io["codes"]["outputs"],
                    [[None, None, j], [None, None, j]])

    def _shape(self, file: str, args: list, names: list[str], shapes: list[list]) -> None:
        """ONNX inputs/outputs `args` must be named `names`, with ranks and fixed sizes as in
        `shapes` (None: a dynamic axis; (field, n): must be n)."""
        got = [a.name for a in args]
        if got != names:
            raise self.fail(f"{file} has inputs/outputs {got}, manifest.json onnx names {names}")
        for arg, want in zip(args, shapes):
            if len(arg.shape) != len(want):
                raise self.fail(f"{file} {arg.name} has rank {len(arg.shape)}, expected {len(want)}")
            for axis, (have, spec) in enumerate(zip(arg.shape, want)):
                if spec is None and _is_int(have):
                    raise self.fail(f"{file} {arg.name} axis {axis} is fixed at {have}; the batch and "
                                    "frame axes must be dynamic")
                if spec is not None and have != spec[1]:
                    raise self.fail(f"{file} {arg.name} axis {axis} is {have}, but manifest.json "
                                    f"{spec[0]} is {spec[1]}")


def sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _batched(x: np.ndarray, channels: int, name: str, axis_name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != channels:
        raise ValueError(f"{name} must be [{axis_name}, N] or [B, {axis_name}, N] with "
                         f"{axis_name} = {channels}, got {list(x.shape)}")
    return x


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."
