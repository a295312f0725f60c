"""Read a bundle: the one contract between offline (which writes it) and realtime (which plays it).

    bundle/
      manifest.json        schema, audio format, latent stats, SAE size, directions, file hashes
      encoder.onnx         audio [B, C, T]              -> latents [B, D, T / hop], or, with
                           onnx.encoder.spectrum {n_fft, hop, floor}, from the audio's log-magnitude
                           STFT [B, C * (n_fft / 2 + 1), T / hop'], which `encode` makes (`log_spectrum`)
      decoder.onnx         latents [B, D, N]            -> audio [B, C, N * hop], or, with
                           onnx.decoder.spectrum {n_fft, hop}, the frames of an inverse STFT:
                           spectrum [B, C, 2, n_fft / 2 + 1, N * audio.hop / hop] (real, imaginary),
                           which `decode` overlap-adds (`synthesize`)
      steer.onnx           latents [B, D, N], alpha [K] -> steered [B, D, N]
      codes.onnx           latents [B, D, N] -> SAE code values, indices [B, N, k + 2]
      encoder.pt ...       the same as TorchScript (offline use; never read here)
      probes.safetensors   the descriptor probes (realtime/probes.py reads them for the visualizer)
      kit/<name>.npy       pad latents [D, N] float32
      kit/<name>.flac      the pad's source one-shot, if stored (export.store_kit_audio; KitEntry.audio,
                           which faithful mode plays)

`load_bundle(path)` checks everything it can before any audio is made (schema, field types,
every number against its range in LIMITS, file hashes, the kit's and probes' headers, the ONNX
models' shapes against the manifest) and refuses a bundle it cannot play with a one-line
SteerpadError naming the bundle and the field or file. manifest.json's size and nesting are
capped before it is parsed. numpy + onnxruntime (+ scipy.fft for a spectral decoder's
inverse STFT, safetensors for the probes' header,
soundfile for the kit audio, soxr for latents_of) only: the `Bundle` methods run on a render
worker thread, never in the audio callback.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.faithful import DEFAULT_MODE, MODES, ChangeConfig
from steerpad.realtime.stft import frames_fft, hann, overlap_add

SCHEMA = "steerpad-bundle"
SCHEMA_VERSION = 1
MODELS = ("encoder", "decoder", "steer", "codes")
KIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""Kit entry names double as file names (kit/<name>.npy)."""

KIT_AUDIO_GAIN_MAX = 16.0
"""A kit entry's `audio_gain` (its FLAC holds the one-shot / gain, as FLAC holds |x| <= 1) is at
most this: +24 dBFS, the loudest peak ingest keeps."""
MANIFEST_MAX_BYTES = 2 << 20
"""manifest.json is refused above this size (the shipped default's is ~27 kB), before it is read."""
MANIFEST_MAX_DEPTH = 32
"""... and above this nesting of objects and lists (the default's is 4), before it is parsed."""
LIMITS: dict[str, tuple[int, int]] = {
    "audio.sample_rate": (8000, 384000),
    "audio.channels": (1, 8),
    "audio.hop": (1, 1 << 16),
    "audio.max_frames": (1, 1 << 16),
    "latent.dim": (1, 4096),
    "sae.n_features": (1, 1 << 20),
    "sae.k": (1, 4096),
}
"""The manifest's whole-number fields and the range each must lie in."""
MAX_SOUND_SECONDS = 60
"""A pad's longest sound, audio.max_frames x audio.hop samples, in seconds at audio.sample_rate."""
MAX_SOUND_SAMPLES = 1 << 24
"""... and in samples over all channels (64 MiB of float32)."""
VALUE_LIMIT = 1e6
"""|x| cap on latent-space numbers: latent.mean, latent.std, alpha ranges, kit latents."""
STD_MIN = 1e-6
"""latent.std's floor (the SAE divides by it)."""
DESCRIPTOR_LIMIT = 1e12
"""|x| cap on the descriptors' mean and std (Hz, dB, ratios: far below this)."""
MAX_DIRECTIONS = 256
MAX_KIT = 1024
MAX_NAME = 200
"""Longest direction / descriptor / unit / kit name or label, in characters."""
MAX_PROBE_BINS = 1024
MAX_KNOTS = 64
"""Most α values per side of a knob scale (a calibrated one has 8)."""
MAX_INT_DIGITS = 100
"""A JSON integer longer than this is refused while parsing (no field needs a tenth of it)."""


@dataclass(frozen=True)
class KnobScale:
    """Where a knob's travel puts α, per side, in one render mode: `up[i]` is α at share
    (i + 1) / len(up) of the right half, `down[i]` at that share of the left half; in between α is
    interpolated linearly. Calibrated so equal knob steps move the descriptor by equal amounts."""

    up: tuple[float, ...]
    down: tuple[float, ...]
    mirror_down: bool = False
    """Faithful mode only: the left half applies the *inverse* of the change the right half makes
    at the same |α| (cut-only; `down` then holds -|α|). For directions whose learned negative
    side barely changes the decoder (calibration chooses, per direction)."""

    def alpha(self, u: float) -> float:
        """α at knob share u, -1 (full left) .. 0 (centre, α = 0) .. 1 (full right). Plain Python
        over a few knots: no allocation (the engine calls it for every knob message)."""
        knots = self.up if u > 0 else self.down
        if u == 0 or not knots:
            return 0.0
        x = min(abs(u), 1.0) * len(knots)
        i = int(x)
        if i >= len(knots):
            return knots[-1]
        lo = knots[i - 1] if i > 0 else 0.0
        return lo + (x - i) * (knots[i] - lo)


@dataclass(frozen=True)
class Direction:
    """One steering knob: alpha in [alpha_min, alpha_max] moves `descriptor` (in `unit`); a
    polarity of -1 means turning the knob up lowers the descriptor. `scales` holds the knob's
    calibration per render mode (manifest `modes`); a mode without one spreads α linearly over
    [alpha_min, alpha_max]."""

    name: str
    descriptor: str
    unit: str
    alpha_min: float
    alpha_max: float
    polarity: int
    scales: dict[str, KnobScale] = field(default_factory=dict, compare=False, hash=False)
    _linear: KnobScale = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_linear", KnobScale((self.alpha_max,), (self.alpha_min,)))

    def scale(self, mode: str) -> KnobScale:
        """The knob scale of render `mode` (a dictionary lookup: no allocation)."""
        return self.scales.get(mode, self._linear)


@dataclass(frozen=True, eq=False)
class KitEntry:
    """A pad sound shipped with the bundle: its latents [D, N] float32 and, in bundles that carry
    it (`audio`, a FLAC file), the source one-shot itself [C, T] float32 at the bundle rate."""

    name: str
    label: str
    latents: np.ndarray
    audio: np.ndarray | None = None


def parse_directions(entries: Any, where: str, fix: str) -> list[Direction]:
    """Check a directions list (manifest.json `directions`, or a steering folder's) and return it
    as Directions. `where` prefixes error messages (e.g. "bundle x: manifest.json directions"),
    `fix` ends them (what to do)."""
    if not isinstance(entries, list):
        raise SteerpadError(f"{where} must be a list, got {_short(entries)}; {fix}")
    if not 1 <= len(entries) <= MAX_DIRECTIONS:
        raise SteerpadError(f"{where} has {len(entries)} entries; 1 to {MAX_DIRECTIONS} are allowed; {fix}")
    out, seen = [], set()
    for i, e in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(e, dict):
            raise SteerpadError(f"{at} must be an object, got {_short(e)}; {fix}")
        for key in ("name", "descriptor"):
            check_string(e.get(key), f"{at}.{key}", fix)
        if e["name"] in seen:
            raise SteerpadError(f"{at}.name {e['name']!r} is a duplicate: direction names must be "
                                f"unique; {fix}")
        seen.add(e["name"])
        unit = e.get("unit", "")
        check_string(unit, f"{at}.unit", fix, empty=True)
        # the knob's centre is alpha = 0 (untouched), its ends alpha_min and alpha_max
        lo, hi = e.get("alpha_min"), e.get("alpha_max")
        check_number(lo, -VALUE_LIMIT, 0.0, f"{at}.alpha_min", fix)
        check_number(hi, 0.0, VALUE_LIMIT, f"{at}.alpha_max", fix)
        if not lo < hi:
            raise SteerpadError(f"{at}: alpha_min {lo} must be below alpha_max {hi}; {fix}")
        if e.get("polarity") not in (1, -1) or isinstance(e.get("polarity"), bool):
            raise SteerpadError(f"{at}.polarity must be 1 or -1, got {_short(e.get('polarity'))}; {fix}")
        scales = _scales(e.get("modes", {}), f"{at}.modes", fix)
        out.append(Direction(e["name"], e["descriptor"], unit, float(lo), float(hi), int(e["polarity"]),
                             scales))
    return out


def _scales(modes: Any, at: str, fix: str) -> dict[str, KnobScale]:
    """A direction's `modes`: {mode: {"up": [α >= 0, rising], "down": [α <= 0, falling], ...}}."""
    if not isinstance(modes, dict):
        raise SteerpadError(f"{at} must be an object, got {_short(modes)}; {fix}")
    out = {}
    for mode, entry in modes.items():
        if mode not in MODES:
            raise SteerpadError(f"{at}: {_short(mode)} is not a render mode ({', '.join(MODES)}); {fix}")
        if not isinstance(entry, dict):
            raise SteerpadError(f"{at}.{mode} must be an object, got {_short(entry)}; {fix}")
        sides = []
        for side, lo, hi, sign in (("up", 0.0, VALUE_LIMIT, 1), ("down", -VALUE_LIMIT, 0.0, -1)):
            knots = entry.get(side)
            if not isinstance(knots, list) or not 1 <= len(knots) <= MAX_KNOTS:
                raise SteerpadError(f"{at}.{mode}.{side} must be a list of 1 to {MAX_KNOTS} numbers, "
                                    f"got {_short(knots)}; {fix}")
            for i, v in enumerate(knots):
                check_number(v, lo, hi, f"{at}.{mode}.{side}[{i}]", fix)
            if any(sign * (b - a) < 0 for a, b in zip(knots, knots[1:])):
                raise SteerpadError(f"{at}.{mode}.{side} must move away from 0 step by step, got "
                                    f"{_short(knots)}; {fix}")
            sides.append(tuple(float(v) for v in knots))
        mirror = entry.get("mirror_down", False)
        if not isinstance(mirror, bool) or (mirror and mode != "faithful"):
            raise SteerpadError(f"{at}.{mode}.mirror_down must be true or false (true only in faithful "
                                f"mode), got {_short(mirror)}; {fix}")
        out[mode] = KnobScale(*sides, mirror_down=mirror)
    return out


def check_number(v: Any, lo: float, hi: float, what: str, fix: str, whole: bool = False) -> None:
    """Raise `<what> must be a [whole] number from lo to hi, got v; <fix>` unless v is a JSON
    number (not a bool; an int when `whole`) in [lo, hi]: the one range check of every number."""
    if not (_is_int(v) if whole else _is_number(v)) or not lo <= v <= hi:
        kind = "a whole number" if whole else "a number"
        raise SteerpadError(f"{what} must be {kind} from {_num(lo)} to {_num(hi)}, got {_short(v)}; {fix}")


def check_string(v: Any, what: str, fix: str, empty: bool = False) -> None:
    """Raise unless v is a string of at most MAX_NAME characters (and not empty, unless `empty`)
    without control characters (a name reaches the terminal in messages and the status view: an
    escape sequence there would drive the terminal)."""
    if not isinstance(v, str) or not (0 if empty else 1) <= len(v) <= MAX_NAME:
        kind = "a string" if empty else "a non-empty string"
        raise SteerpadError(f"{what} must be {kind} of at most {MAX_NAME} characters, got {_short(v)}; {fix}")
    if any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in v):
        raise SteerpadError(f"{what} must not hold control characters, got {_short(v)}; {fix}")


class Bundle:
    """A loaded bundle: its format, directions and kit, and onnxruntime sessions for the models.
    Arrays in and out are float32 numpy; batch-first, as the shapes below."""

    def __init__(self, path: Path, manifest: dict[str, Any], sessions: dict[str, Any],
                 directions: list[Direction], kit: list[KitEntry],
                 default_mode: str = DEFAULT_MODE, change: ChangeConfig | None = None):
        self.path = path
        self.default_mode = default_mode
        """The render mode of a pad whose preset names none (manifest render.default_mode)."""
        self.change = change or ChangeConfig()
        """Faithful mode's change settings (manifest render.faithful)."""
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
        spectrum = self._io["encoder"].get("spectrum")
        if spectrum is not None:
            x = log_spectrum(x, spectrum["n_fft"], spectrum["hop"], spectrum["floor"])
        return self._run("encoder", {self._io["encoder"]["input"]: x})

    def latents_of(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """A one-shot [T, channels] at any sample rate -> this bundle's latents [D, N]: resampled
        to the bundle's rate (soxr HQ), its channels mixed down to or spread over the bundle's,
        cut to the bundle's one-shot length (max_frames), encoded. ValueError if the encoder gives
        non-finite latents. What a pad from a file and a captured take both go through."""
        import soxr

        x = np.asarray(audio, np.float32)
        if rate != self.sample_rate:
            x = soxr.resample(x, rate, self.sample_rate, quality="HQ")
        if x.shape[1] != self.channels:
            x = np.repeat(x.mean(axis=1, keepdims=True), self.channels, axis=1)
        z = self.encode(np.ascontiguousarray(x[:self.max_frames * self.hop].T, dtype=np.float32))[0]
        if not np.isfinite(z).all():
            raise ValueError("the encoder produced non-finite latents")
        return np.ascontiguousarray(z, np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents [D, N] or [B, D, N] -> audio [B, C, N * hop]."""
        z = _batched(latents, self.latent_dim, "latents", "D")
        out = self._run("decoder", {self._io["decoder"]["input"]: z})
        spectrum = self._io["decoder"].get("spectrum")
        return out if spectrum is None else synthesize(out, spectrum["n_fft"], spectrum["hop"])

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


def log_spectrum(audio: np.ndarray, n_fft: int, hop: int, floor: float) -> np.ndarray:
    """A spectral encoder's front: audio [B, C, T] (T a multiple of hop) -> log magnitudes
    [B, C * (n_fft / 2 + 1), T / hop] float32, channel by channel: frames of n_fft samples every
    hop (the audio zero-padded by (n_fft - hop) / 2 at each end), a periodic Hann window, the
    FFT, and 0.5 * log(max(|X|^2, floor)). The same arithmetic as offline/spectral.py's
    STFTLogMagnitude, which the export checks it against."""
    b, c, _ = audio.shape
    pad = (n_fft - hop) // 2
    spec = frames_fft(audio, n_fft, hop, pad, pad)  # [B, C, T / hop, bins]
    power = np.square(spec.real)
    power += np.square(spec.imag)
    np.maximum(power, np.float32(floor), out=power)
    out = np.log(power).transpose(0, 1, 3, 2)
    out *= np.float32(0.5)
    return np.ascontiguousarray(out.reshape(b, c * spec.shape[-1], -1), dtype=np.float32)


def synthesize(spectrum: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """A spectral decoder's inverse STFT: frames [B, C, 2, n_fft / 2 + 1, F] (real, imaginary;
    frame f centred on output sample f * hop + hop / 2) -> float32 audio [B, C, F * hop]. Each
    frame is inverted (the imaginary parts of DC and Nyquist ignored), windowed by a periodic
    Hann window, divided by the windows' overlap (sum of the squared window / hop) and
    overlap-added; (n_fft - hop) / 2 samples are cut from each end. The same arithmetic as
    offline/spectral.py's ISTFTHead, which the export checks it against."""
    import scipy.fft

    b, c, _, bins, f = spectrum.shape
    z = np.empty((b, c, f, bins), np.complex64)
    z.real = spectrum[:, :, 0].transpose(0, 1, 3, 2)
    z.imag = spectrum[:, :, 1].transpose(0, 1, 3, 2)
    frames = scipy.fft.irfft(z, n=n_fft, axis=-1)  # [B, C, F, n_fft] float32
    window = hann(n_fft)
    frames *= window * np.float32(hop / np.sum(window * window, dtype=np.float64))
    pad = (n_fft - hop) // 2
    return np.ascontiguousarray(overlap_add(frames, hop)[:, :, pad:pad + f * hop])


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
    default_mode, change = check.render(manifest)
    check.files(manifest, verify_hashes)
    kit = check.kit(manifest)
    check.probes(manifest)
    sessions = _sessions(path, manifest, providers, intra_op_threads)
    check.models(manifest, sessions, len(directions))
    return Bundle(path, manifest, sessions, directions, kit, default_mode, change)


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
            # from its bytes, not its path: a model whose weights sit in external data files
            # (which `files` does not hash) cannot load; export never writes one
            sessions[m] = ort.InferenceSession(file.read_bytes(), options, providers=providers)
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            if "external data" in first.lower():
                raise SteerpadError(f"bundle {path}: {manifest['onnx'][m]['file']} keeps its weights in "
                                    "external data files, which manifest.json's hashes do not cover; "
                                    "re-export the bundle") from None
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
        """manifest.json, read only when small enough and parsed only when shallow enough, as
        strict JSON (no NaN / Infinity, no integer of more than MAX_INT_DIGITS digits)."""
        where = "point at a bundle folder written by `steerpad export`"
        if not self.path.is_dir():
            raise self.fail("not a folder", where)
        file = self.path / "manifest.json"
        if not file.is_file():
            raise self.fail("manifest.json is missing", where)
        try:
            with open(file, "rb") as f:
                data = f.read(MANIFEST_MAX_BYTES + 1)
        except OSError as e:
            raise self.fail(f"manifest.json is not readable ({e.strerror or e})",
                            "check its permissions, or copy the bundle again") from None
        if len(data) > MANIFEST_MAX_BYTES:
            raise self.fail(f"manifest.json is larger than {MANIFEST_MAX_BYTES >> 20} MiB, the most a "
                            "manifest may be (an exported one is tens of kB)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"manifest.json is not valid JSON (not UTF-8 text: {e.reason} at byte "
                            f"{e.start})") from None
        if _json_depth(text, MANIFEST_MAX_DEPTH) > MANIFEST_MAX_DEPTH:
            raise self.fail(f"manifest.json nests objects and lists more than {MANIFEST_MAX_DEPTH} "
                            "levels deep (an exported one nests 4)")
        try:
            manifest = json.loads(text, parse_constant=_no_constant, parse_int=_parse_int)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise self.fail(f"manifest.json is not valid JSON ({_one_line(e)})") from None
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

    def at(self, manifest: dict, dotted: str) -> Any:
        """manifest[a][b]... for dotted = "a.b...", refused when missing or under a non-object."""
        value: Any = manifest
        keys = dotted.split(".")
        for i, key in enumerate(keys):
            if not isinstance(value, dict):
                raise self.fail(f"manifest.json {'.'.join(keys[:i])} must be an object, got {_short(value)}")
            if key not in value:
                raise self.fail(f"manifest.json {dotted} is missing")
            value = value[key]
        return value

    def get(self, manifest: dict, dotted: str, kind: str) -> Any:
        """manifest[a][b]... checked against `kind`: str, dict, list."""
        value = self.at(manifest, dotted)
        ok = {"str": lambda v: isinstance(v, str) and v, "dict": lambda v: isinstance(v, dict),
              "list": lambda v: isinstance(v, list)}[kind]
        if not ok(value):
            what = {"str": "a non-empty string", "dict": "an object", "list": "a list"}[kind]
            raise self.fail(f"manifest.json {dotted} must be {what}, got {_short(value)}")
        return value

    def number(self, manifest: dict, dotted: str, lo: float, hi: float, whole: bool = False) -> Any:
        """manifest[a][b]..., a number in [lo, hi] (a whole one when `whole`)."""
        value = self.at(manifest, dotted)
        check_number(value, lo, hi, f"bundle {self.path}: manifest.json {dotted}", self.FIX, whole)
        return value

    def numbers(self, manifest: dict, dotted: str, n: int, lo: float, hi: float) -> list:
        """manifest[a][b]..., a list of n numbers, each in [lo, hi]."""
        values = self.get(manifest, dotted, "list")
        if len(values) != n:
            raise self.fail(f"manifest.json {dotted} has {len(values)} values, latent.dim is {n}")
        for i, v in enumerate(values):
            check_number(v, lo, hi, f"bundle {self.path}: manifest.json {dotted}[{i}]", self.FIX)
        return values

    def fields(self, m: dict) -> list[Direction]:
        for key, (lo, hi) in LIMITS.items():
            self.number(m, key, lo, hi, whole=True)
        audio, sae = m["audio"], m["sae"]
        samples = audio["max_frames"] * audio["hop"]
        if samples > MAX_SOUND_SECONDS * audio["sample_rate"] \
                or samples * audio["channels"] > MAX_SOUND_SAMPLES:
            raise self.fail(f"manifest.json audio.max_frames x audio.hop is {samples} samples "
                            f"({samples / audio['sample_rate']:.1f} s at audio.sample_rate, x "
                            f"{audio['channels']} audio.channels); a pad's sound may be at most "
                            f"{MAX_SOUND_SECONDS} s and {MAX_SOUND_SAMPLES} samples over all channels")
        dim = m["latent"]["dim"]
        self.numbers(m, "latent.mean", dim, -VALUE_LIMIT, VALUE_LIMIT)
        self.numbers(m, "latent.std", dim, STD_MIN, VALUE_LIMIT)
        if sae["k"] > sae["n_features"]:
            raise self.fail(f"manifest.json sae.k ({sae['k']}) must not exceed sae.n_features "
                            f"({sae['n_features']})")
        if not isinstance(sae.get("level_pair", True), bool):
            raise self.fail(f"manifest.json sae.level_pair must be true or false, got "
                            f"{_short(sae['level_pair'])}")
        for key in ("probes", "descriptors", "metrics", "provenance", "files"):
            self.get(m, key, "dict")
        for name, d in m["descriptors"].items():
            at = f"manifest.json descriptors.{_short(name)}"
            if not isinstance(d, dict):
                raise self.fail(f"{at} must be an object, got {_short(d)}")
            for key, lo in (("mean", -DESCRIPTOR_LIMIT), ("std", 0.0)):
                if key in d:
                    check_number(d[key], lo, DESCRIPTOR_LIMIT, f"bundle {self.path}: {at}.{key}", self.FIX)
        for model in MODELS:
            self.get(m, f"onnx.{model}.file", "str")
        for model in ("encoder", "decoder", "steer"):
            self.get(m, f"onnx.{model}.output", "str")
        for model in ("encoder", "decoder", "codes"):
            self.get(m, f"onnx.{model}.input", "str")
        for model in ("encoder", "decoder"):  # the STFTs a spectral VAE leaves to `encode`, `decode`
            if "spectrum" not in m["onnx"][model]:
                continue
            at = f"onnx.{model}.spectrum"
            self.get(m, at, "dict")
            hop = self.number(m, f"{at}.hop", 1, 1 << 16, whole=True)
            n_fft = self.number(m, f"{at}.n_fft", 2, 1 << 16, whole=True)
            if n_fft % hop or not 1 <= n_fft // hop <= 16 or (n_fft - hop) % 2 or m["audio"]["hop"] % hop:
                raise self.fail(f"manifest.json {at}: n_fft {n_fft} must be 1 to 16 times hop {hop}, "
                                f"with n_fft - hop even, and hop must divide audio.hop {m['audio']['hop']}")
            if model == "encoder":
                self.number(m, f"{at}.floor", 1e-30, 1.0)
        outputs = self.get(m, "onnx.codes.outputs", "list")
        if len(outputs) != 2 or not all(isinstance(s, str) and s for s in outputs):
            raise self.fail(f"manifest.json onnx.codes.outputs must name 2 outputs (values, indices), "
                            f"got {_short(outputs)}")
        inputs = self.get(m, "onnx.steer.inputs", "list")
        if len(inputs) != 2 or not all(isinstance(s, str) and s for s in inputs):
            raise self.fail(f"manifest.json onnx.steer.inputs must name 2 inputs (latents, alpha), "
                            f"got {_short(inputs)}")
        self.get(m, "probes_file", "str")
        kit = self.get(m, "kit", "list")
        if len(kit) > MAX_KIT:
            raise self.fail(f"manifest.json kit has {len(kit)} entries, at most {MAX_KIT} are allowed")
        seen: set[str] = set()
        for i, e in enumerate(kit):
            at = f"manifest.json kit[{i}]"
            if not (isinstance(e, dict) and isinstance(e.get("name"), str) and KIT_NAME.match(e["name"])
                    and len(e["name"]) <= MAX_NAME and isinstance(e.get("file"), str)):
                raise self.fail(f"{at} must be an object with a file-safe name (at most {MAX_NAME} "
                                f"characters) and a file, got {_short(e)}")
            if e["name"] in seen:
                raise self.fail(f"{at}.name {e['name']!r} is a duplicate")
            seen.add(e["name"])
            if "label" in e:
                check_string(e["label"], f"bundle {self.path}: {at}.label", self.FIX, empty=True)
            if "audio" in e and not (isinstance(e["audio"], str) and e["audio"]):
                raise self.fail(f"{at}.audio must name a file in the bundle, got {_short(e['audio'])}")
        return parse_directions(m.get("directions"), f"bundle {self.path}: manifest.json directions",
                                self.FIX)

    def files(self, m: dict, verify_hashes: bool) -> None:
        listed = m["files"]
        needed = [m["onnx"][model]["file"] for model in MODELS]
        needed += [e["file"] for e in m["kit"]] + [e["audio"] for e in m["kit"] if "audio" in e]
        needed += [m["probes_file"]]
        for rel in needed:
            if rel not in listed:
                raise self.fail(f"manifest.json files does not list {rel!r}")
        for rel, info in listed.items():
            p = PurePosixPath(rel)
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise self.fail(f"manifest.json files lists {_short(rel)}, which is outside the bundle")
            if any(ord(c) < 32 or c == "\x7f" for c in rel):  # names that would break a message line
                raise self.fail(f"manifest.json files lists {_short(rel)}, a name with control characters")
            if not (isinstance(info, dict) and _is_int(info.get("bytes")) and info["bytes"] >= 0
                    and isinstance(info.get("sha256"), str) and len(info["sha256"]) == 64):
                raise self.fail(f"manifest.json files[{_short(rel)}] must be "
                                f"{{\"sha256\": hex, \"bytes\": n}}, got {_short(info)}")
            file = self.path / rel
            if not file.is_file():
                raise self.fail(f"{rel} is missing (listed in manifest.json files)",
                                "re-export the bundle or copy it again")
            try:
                bad = (file.stat().st_size != info["bytes"]
                       or (verify_hashes and sha256(file) != info["sha256"]))
            except OSError as e:
                raise self.fail(f"{rel} is not readable ({e.strerror or e})",
                                "check its permissions, or copy the bundle again") from None
            if bad:
                raise self.fail(f"{rel} is corrupt (its size or SHA-256 does not match manifest.json "
                                "files)", "re-export the bundle or copy it again")

    def render(self, m: dict) -> tuple[str, ChangeConfig]:
        """manifest.json `render` (optional): {"default_mode": a mode, "faithful": ChangeConfig
        fields}; a bundle without it plays faithful with the default change settings."""
        r = m.get("render", {})
        if not isinstance(r, dict):
            raise self.fail(f"manifest.json render must be an object, got {_short(r)}")
        mode = r.get("default_mode", DEFAULT_MODE)
        if mode not in MODES:
            raise self.fail(f"manifest.json render.default_mode must be one of {', '.join(MODES)}, "
                            f"got {_short(mode)}")
        cfg = r.get("faithful", {})
        if not isinstance(cfg, dict):
            raise self.fail(f"manifest.json render.faithful must be an object, got {_short(cfg)}")
        unknown = sorted(set(cfg) - set(ChangeConfig.LIMITS))
        if unknown:
            raise self.fail(f"manifest.json render.faithful has unknown keys {_short(unknown)} (known: "
                            f"{', '.join(ChangeConfig.LIMITS)})")
        for key, (lo, hi, whole) in ChangeConfig.LIMITS.items():
            if key in cfg:
                self.number(m, f"render.faithful.{key}", lo, hi, whole=whole)
        return mode, ChangeConfig(**cfg)

    def kit(self, m: dict) -> list[KitEntry]:
        dim, frames = m["latent"]["dim"], m["audio"]["max_frames"]
        want = f"finite float32 latents [D={dim}, N <= {frames}] with |x| <= {_num(VALUE_LIMIT)}"
        kit = []
        for e in m["kit"]:
            rel = e["file"]
            # the header first: its dtype and shape bound what np.load would allocate
            try:
                with open(self.path / rel, "rb") as f:
                    version = np.lib.format.read_magic(f)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f"unsupported .npy format version {version}")
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                    data_bytes = os.fstat(f.fileno()).st_size - f.tell()
            except Exception as err:  # noqa: BLE001 -- numpy's header parser raises ValueError, TokenError...
                raise self.fail(f"{rel} is not a readable .npy file ({_one_line(err)})") from None
            if dtype != np.float32 or len(shape) != 2 or shape[0] != dim or not 1 <= shape[1] <= frames:
                raise self.fail(f"{rel} must hold {want}, got {dtype} {list(shape)}")
            if data_bytes != 4 * shape[0] * shape[1]:
                raise self.fail(f"{rel} holds {data_bytes} bytes of data, its header says "
                                f"{4 * shape[0] * shape[1]} ([{shape[0]}, {shape[1]}] float32)")
            try:
                z = np.load(self.path / rel, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise self.fail(f"{rel} is not a readable .npy file ({_one_line(err)})") from None
            if not (np.isfinite(z).all() and np.abs(z).max() <= VALUE_LIMIT):
                raise self.fail(f"{rel} must hold {want}, it has values beyond that")
            kit.append(KitEntry(e["name"], str(e.get("label", e["name"])), np.ascontiguousarray(z),
                                self.kit_audio(m, e)))
        return kit

    def kit_audio(self, m: dict, e: dict) -> np.ndarray | None:
        """A kit entry's source audio (its `audio` FLAC): the bundle's rate and channels, at most
        max_frames * hop samples (checked from the header before reading) -> [C, T] float32."""
        import soundfile as sf

        rel = e.get("audio")
        if rel is None:
            return None
        audio = m["audio"]
        most = audio["max_frames"] * audio["hop"]
        try:
            with sf.SoundFile(os.fsencode(self.path / rel)) as f:
                if f.samplerate != audio["sample_rate"] or f.channels != audio["channels"] \
                        or not 1 <= f.frames <= most:
                    raise self.fail(f"{rel} holds {f.channels} channels at {f.samplerate} Hz, {f.frames} "
                                    f"samples; kit audio must be audio.channels ({audio['channels']}) at "
                                    f"audio.sample_rate ({audio['sample_rate']}), 1 to {most} samples")
                x = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
            raise self.fail(f"{rel} is not readable audio ({_one_line(err)})") from None
        if not (np.isfinite(x).all() and np.abs(x).max() <= 1.0):  # export writes 24-bit FLAC
            raise self.fail(f"{rel} holds samples that are not finite or beyond full scale; kit audio "
                            "is stored within +-1 (its level in audio_gain)")
        gain = e.get("audio_gain", 1.0)
        check_number(gain, 1.0, KIT_AUDIO_GAIN_MAX, f"bundle {self.path}: manifest.json kit {e['name']} "
                     "audio_gain", self.FIX)
        return np.ascontiguousarray(x.T * np.float32(gain))

    def probes(self, m: dict) -> None:
        """probes.safetensors: a readable header (safetensors checks its size and the tensors'
        offsets against the file) and each probe a float32 weight [bins, sae.n_features] with a
        bias [bins]. Only the header is read; realtime/probes.py loads the tensors."""
        from safetensors import safe_open

        rel, n_features = m["probes_file"], m["sae"]["n_features"]
        try:
            with safe_open(str(self.path / rel), framework="numpy") as f:
                tensors = {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape()))
                           for k in f.keys()}
        except Exception as e:  # noqa: BLE001 -- safetensors raises its own SafetensorError
            raise self.fail(f"{rel} is not a readable safetensors file ({_one_line(e)})") from None
        for key, (dtype, shape) in tensors.items():
            parts = key.split(".")
            if not (len(parts) == 3 and parts[0] == "probe" and parts[2] == "weight"):
                continue
            bias = tensors.get(f"probe.{parts[1]}.bias")
            if not (dtype == "F32" and len(shape) == 2 and 1 <= shape[0] <= MAX_PROBE_BINS
                    and shape[1] == n_features and bias == ("F32", shape[:1])):
                raise self.fail(f"{rel} probe {parts[1]!r} has weight {dtype} {shape} and bias "
                                f"{_short(bias)}; expected F32 [bins <= {MAX_PROBE_BINS}, sae.n_features = "
                                f"{n_features}] and F32 [bins]")

    def models(self, m: dict, sessions: dict[str, Any], k: int) -> None:
        c, d, k_sae = m["audio"]["channels"], m["latent"]["dim"], m["sae"]["k"]
        io = m["onnx"]
        front = io["encoder"].get("spectrum")
        self._shape(io["encoder"]["file"], sessions["encoder"].get_inputs(), [io["encoder"]["input"]],
                    [[None, ("audio.channels", c), None] if front is None else
                     [None, ("audio.channels x (onnx.encoder.spectrum.n_fft / 2 + 1)",
                             c * (front["n_fft"] // 2 + 1)), None]])
        self._shape(io["encoder"]["file"], sessions["encoder"].get_outputs(), [io["encoder"]["output"]],
                    [[None, ("latent.dim", d), None]])
        self._shape(io["decoder"]["file"], sessions["decoder"].get_inputs(), [io["decoder"]["input"]],
                    [[None, ("latent.dim", d), None]])
        spectrum = io["decoder"].get("spectrum")
        self._shape(io["decoder"]["file"], sessions["decoder"].get_outputs(), [io["decoder"]["output"]],
                    [[None, ("audio.channels", c), None] if spectrum is None else
                     [None, ("audio.channels", c), ("real and imaginary", 2),
                      ("onnx.decoder.spectrum.n_fft / 2 + 1", spectrum["n_fft"] // 2 + 1), None]])
        self._shape(io["steer"]["file"], sessions["steer"].get_inputs(), io["steer"]["inputs"],
                    [[None, ("latent.dim", d), None], [("directions (count)", k)]])
        self._shape(io["steer"]["file"], sessions["steer"].get_outputs(), [io["steer"]["output"]],
                    [[None, ("latent.dim", d), None]])
        j = ("sae.k (+ 2 for the level pair)", k_sae + (2 if m["sae"].get("level_pair", True) else 0))
        self._shape(io["codes"]["file"], sessions["codes"].get_inputs(), [io["codes"]["input"]],
                    [[None, ("latent.dim", d), None]])
        self._shape(io["codes"]["file"], sessions["codes"].get_outputs(), io["codes"]["outputs"],
                    [[None, None, j], [None, None, j]])
        self._frames(m, sessions)

    def _frames(self, m: dict, sessions: dict[str, Any]) -> None:
        """The spectral models' time axes agree with their `spectrum.hop`: two latent frames
        decode to 2 * audio.hop / hop STFT frames, and that many samples of audio encode to two
        latent frames (a hop the models were not made with passes every shape check and then
        gives audio of the wrong length, or an encoder error, at the first render)."""
        io, c, d, hop = m["onnx"], m["audio"]["channels"], m["latent"]["dim"], m["audio"]["hop"]
        for model, spectrum in (("decoder", io["decoder"].get("spectrum")),
                                ("encoder", io["encoder"].get("spectrum"))):
            if spectrum is None:
                continue
            if model == "decoder":
                x = np.zeros((1, d, 2), np.float32)
                want, unit = 2 * hop // spectrum["hop"], "STFT frames from 2 latent frames"
            else:
                x = log_spectrum(np.zeros((1, c, 2 * hop), np.float32), spectrum["n_fft"], spectrum["hop"],
                                 spectrum["floor"])
                want, unit = 2, f"latent frames from {2 * hop} samples"
            try:
                got = sessions[model].run([io[model]["output"]], {io[model]["input"]: x})[0].shape[-1]
            except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own errors
                got = f"an error ({_one_line(e)[:200]})"
            if got != want:
                raise self.fail(f"{io[model]['file']} gives {got} {unit}, not the {want} that manifest.json "
                                f"onnx.{model}.spectrum.hop {spectrum['hop']} and audio.hop {hop} mean; "
                                "the manifest does not match its models")

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
    """A finite JSON number: an int (of any size: math.isfinite would overflow on a huge one) or a
    finite float, not a bool."""
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _one_line(e: BaseException) -> str:
    """An exception's first line, at most 200 characters (library messages can be long)."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


_JSON_TOKEN = re.compile(r'\\.|["\[\]{}]', re.S)


def _json_depth(text: str, limit: int) -> int:
    """The nesting depth of objects and lists in JSON `text` (brackets inside strings do not
    count), or the first depth past `limit`: a linear scan, so that json.loads never meets a
    document deep enough to exhaust the stack."""
    depth = deepest = 0
    in_string = False
    for token in _JSON_TOKEN.finditer(text):
        c = token.group()
        if c == '"':
            in_string = not in_string
        elif in_string or len(c) == 2:  # a bracket in a string, or an escape such as \\"
            continue
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits")
    return int(digits)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."
