"""`steerpad ingest`: folders of drum one-shots -> a store of equal-length clips with labels.

Every audio file (wav, flac, aiff, ogg, mp3) under the given folders is read with soundfile,
resampled with soxr to the model rate, mapped to the model's channel count, stripped of leading
silence and cropped or zero-padded to `frames * hop` samples. Files that cannot be used are skipped
with one line each and counted. Labels and duplicate groups come from `labels.py`; train/val
splits are by kit (kits linked by a near-duplicate count as one), never by file.

Store (a folder, written to a temp folder and renamed into place):
  store.json   {"format", "version", "config", "summary", "shards"}
  index.jsonl  one ClipRecord per line, plus its shard, offset and length
  audio_NNN.npy  float32 [C, total]: the clips' sounding frames, back to back (read with mmap)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from steerpad.offline.labels import (
    LABELS,
    assign_splits,
    choose_label,
    fingerprint,
    group_clips,
    kit_units,
    read_drumkit,
)
from steerpad.realtime.errors import SteerpadError

AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".mp3")
STORE_FORMAT = "steerpad-ingest"
STORE_VERSION = 1


@dataclass
class IngestConfig:
    sample_rate: int = 44100
    """Model sample rate (Hz); every file is resampled to it with soxr."""
    channels: int = 2
    """Model channels: mono is copied to each, more channels are downmixed (5.1 by ITU)."""
    hop: int = 2048
    """Samples per latent frame of the VAE the store feeds."""
    frames: int = 32
    """Clip length in latent frames (32 * 2048 / 44100 = 1.49 s); longer clips are cropped."""
    silence_db: float = -60.0
    """Tail threshold, dB re the clip's peak: frames after the last sample above it hold no sound
    and are not stored (`ClipRecord.frames` counts the ones kept)."""
    trim_db: float = -40.0
    """Leading-silence threshold, dB re the clip's peak: the clip starts at the first sample
    above it (minus `pre_roll_s`)."""
    pre_roll_s: float = 0.0005
    """Kept before the first sample above `trim_db`, so a soft attack is not cut."""
    min_peak_db: float = -70.0
    """Files whose peak is below this (dBFS) are skipped as silent."""
    min_length_s: float = 0.005
    """Files with less sound than this after trimming are skipped."""
    fade_s: float = 0.01
    """Fade-out at the crop point of a clip cut while still sounding."""
    max_read_s: float = 30.0
    """Only the first `max_read_s` seconds of a file are read (long loops, recordings)."""
    val_kits: list[str] | None = None
    """Kits for validation by name; None picks `val_fraction` of the kits with `seed`."""
    val_fraction: float = 0.2
    """Fraction of kits (rounded, at least one when there are two or more) for validation."""
    seed: int = 0
    """Seed of the validation-kit draw."""
    skip_other: bool = False
    """Skip clips whose label is "other" (no drum word in any name) instead of keeping them."""
    dup_spectral: float = 0.98
    """Near-duplicate candidates: cosine of opening magnitude spectra at least this."""
    dup_corr: float = 0.95
    """Near duplicate when the peak normalised cross-correlation is at least this."""
    workers: int = 0
    """Decoding processes; 0 = one per CPU core (at most 8); 1 = in this process."""
    shard_mb: int = 128
    """Audio shard size (MiB) before a new audio_NNN.npy is started."""

    def __post_init__(self):
        if self.val_kits is not None:
            self.val_kits = [str(k) for k in self.val_kits]
        checks = [
            (self.sample_rate >= 1000, "sample_rate must be >= 1000 Hz"),
            (self.channels >= 1, "channels must be >= 1"),
            (self.hop >= 1 and self.frames >= 1, "hop and frames must be >= 1"),
            (self.silence_db < 0 and self.trim_db < 0, "silence_db and trim_db must be < 0 dB"),
            (self.min_peak_db < 0, "min_peak_db must be < 0 dBFS"),
            (self.pre_roll_s >= 0 and self.fade_s >= 0, "pre_roll_s and fade_s must be >= 0"),
            (self.min_length_s > 0, "min_length_s must be > 0"),
            (self.max_read_s * self.sample_rate >= self.frames * self.hop,
             "max_read_s must cover frames * hop samples"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (0 < self.dup_spectral <= 1 and 0 < self.dup_corr <= 1,
             "dup_spectral and dup_corr must be in (0, 1]"),
            (self.workers >= 0 and self.shard_mb >= 1, "workers must be >= 0, shard_mb >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"IngestConfig: {message}")

    @property
    def length(self) -> int:
        """Samples per clip: frames * hop."""
        return self.frames * self.hop

    @classmethod
    def from_dict(cls, d: dict) -> IngestConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ClipRecord:
    id: int
    """Index in the store (0..N-1)."""
    path: str
    """Source file (absolute)."""
    kit: str
    """Drumkit: the folder holding drumkit.xml, or the top folder under the input folder."""
    label: str
    """kick|snare|hat|tom|cymbal|clap|rim|percussion|other."""
    split: str
    """"train" or "val"."""
    frames: int
    """Leading latent frames that hold sound (tail below silence_db not counted)."""
    group: int
    """Duplicate group: velocity copies (Hydrogen layers, scaled copies) share one."""
    sha256: str
    """Of the source file's bytes."""
    instrument: str = ""
    """Hydrogen instrument name, "" for plain files."""
    peak_db: float = 0.0
    """Peak of the stored clip, dBFS."""
    source_rate: int = 0
    """Sample rate of the source file."""
    source_channels: int = 0
    """Channel count of the source file."""
    trimmed_s: float = 0.0
    """Leading silence removed, seconds."""


@dataclass
class IngestSummary:
    files: int = 0
    """Audio files found."""
    clips: int = 0
    """Clips stored."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Skip reason kind -> count (empty, unreadable, nan, silent, too_short, duplicate, other)."""
    skipped_files: list[dict] = field(default_factory=list)
    """{"path", "kind", "reason"} per skipped file."""
    labels: dict[str, int] = field(default_factory=dict)
    """Label -> clips."""
    splits: dict[str, int] = field(default_factory=dict)
    """Split -> clips."""
    split_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    """Split -> label -> clips."""
    kits: dict[str, dict] = field(default_factory=dict)
    """Kit -> {"clips", "split"}."""
    groups: int = 0
    """Duplicate groups (a clip with no copies is a group of one)."""
    near_duplicates: int = 0
    """Pairs of clips found to be scaled copies."""
    linked_kits: list[list[str]] = field(default_factory=list)
    """Kits that share a near-duplicate and so share a split."""
    wall_s: float = 0.0


class SkipFile(Exception):
    """A file that cannot be used; `kind` is the summary key, the message says why."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


# ---------------------------------------------------------------- one file

def _to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """[T, Cin] -> [T, channels]: copy mono, ITU-downmix 5.1 to stereo, else average."""
    cin = x.shape[1]
    if cin == channels:
        return x
    if cin == 1:
        return np.repeat(x, channels, axis=1)
    if cin == 6 and channels == 2:  # FL FR FC LFE BL BR (WAV order); LFE dropped per ITU-R BS.775
        c = 0.7071
        m = np.array([[1, 0], [0, 1], [c, c], [0, 0], [c, 0], [0, c]], np.float32) / (1 + 2 * c)
        return x @ m
    return np.repeat(x.mean(axis=1, keepdims=True), channels, axis=1)


def load_clip(path: str | Path, config: IngestConfig) -> tuple[np.ndarray, dict]:
    """Read and prepare one file: (audio float32 [C, frames_sounding * hop], info dict with
    frames, peak_db, source_rate, source_channels, trimmed_s). Raises SkipFile."""
    import soundfile as sf

    path = Path(path)
    if path.stat().st_size == 0:
        raise SkipFile("empty", "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as f:
            rate, cin = f.samplerate, f.channels
            x = f.read(frames=int(config.max_read_s * rate), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as e:
        raise SkipFile("unreadable", f"cannot decode: {str(e).strip() or type(e).__name__}") from e
    if x.shape[0] == 0:
        raise SkipFile("empty", "no audio samples")
    if not np.isfinite(x).all():
        raise SkipFile("nan", "contains NaN or inf samples")
    x = _to_channels(x, config.channels)
    if rate != config.sample_rate:
        import soxr

        x = soxr.resample(x, rate, config.sample_rate, quality="HQ").astype(np.float32)
    amp = np.abs(x).max(axis=1)  # [T]
    peak = float(amp.max())
    if peak < 10 ** (config.min_peak_db / 20):
        peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
        raise SkipFile("silent", f"silent (peak {peak_db:.1f} dBFS)")
    onset = int(np.argmax(amp >= peak * 10 ** (config.trim_db / 20)))
    start = max(0, onset - round(config.pre_roll_s * config.sample_rate))
    x, amp = x[start:], amp[start:]
    loud = np.nonzero(amp >= peak * 10 ** (config.silence_db / 20))[0]
    sound = int(loud[-1]) + 1
    if sound < config.min_length_s * config.sample_rate:
        raise SkipFile("too_short", f"only {sound} samples of sound after trimming leading "
                                    f"silence (< {config.min_length_s * 1000:g} ms)")
    full = config.length
    if len(x) > full:
        x = x[:full].copy()
        if sound > full:  # cut while sounding: fade out instead of a click
            n = min(full, int(config.fade_s * config.sample_rate))
            x[full - n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
    frames = min(config.frames, math.ceil(sound / config.hop))
    out = np.zeros((config.channels, frames * config.hop), np.float32)
    keep = min(len(x), frames * config.hop)
    out[:, :keep] = x[:keep].T
    peak_out = max(float(np.abs(out).max()), 1e-12)
    info = {"frames": frames, "peak_db": round(20 * math.log10(peak_out), 2),
            "source_rate": int(rate), "source_channels": int(cin),
            "trimmed_s": round(start / config.sample_rate, 5)}
    return out, info


def _work(job: tuple[str, IngestConfig]) -> dict:
    """Worker: load one file; never raises for a bad file (the run goes on)."""
    path, config = job
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        audio, info = load_clip(path, config)
    except SkipFile as e:
        return {"skip": e.kind, "reason": str(e)}
    except (OSError, MemoryError) as e:
        return {"skip": "unreadable", "reason": f"cannot read: {e}"}
    return {"audio": audio, "info": info, "sha256": sha, "print": fingerprint(audio),
            "audio_hash": hashlib.sha256(audio.tobytes()).hexdigest()}


# ---------------------------------------------------------------- folders, kits, labels

def find_files(dirs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, input folder) for every audio file, sorted within each folder; a file reached
    twice (overlapping inputs) is listed once."""
    seen, out = set(), []
    for root in dirs:
        for d, subdirs, names in os.walk(root, followlinks=True):
            subdirs.sort()
            for name in sorted(names):
                p = Path(d) / name
                if name.startswith(".") or p.suffix.lower() not in AUDIO_SUFFIXES:
                    continue
                key = p.resolve()
                if key not in seen:
                    seen.add(key)
                    out.append((p, root))
    return out


def _kit_folder(path: Path, root: Path) -> Path:
    for d in [path.parent, *path.parent.parents]:
        if (d / "drumkit.xml").is_file():
            return d
        if d == root:
            break
    rel = path.relative_to(root).parts
    return root / rel[0] if len(rel) > 1 else root


def _kit_names(folders: list[Path]) -> dict[Path, str]:
    """Folder name; folders sharing a name get "parent/name" (and "#n" if still equal)."""
    by_name: dict[str, list[Path]] = {}
    for f in folders:
        by_name.setdefault(f.name or str(f), []).append(f)
    out, used = {}, set()
    for name, group in by_name.items():
        for f in group:
            n = name if len(group) == 1 else f"{f.parent.name}/{name}"
            k, base = 2, n
            while n in used:
                n, k = f"{base}#{k}", k + 1
            used.add(n)
            out[f] = n
    return out


# ---------------------------------------------------------------- the run

def _skip(summary: IngestSummary, path: Path, kind: str, reason: str) -> None:
    from tqdm import tqdm

    summary.skipped[kind] = summary.skipped.get(kind, 0) + 1
    summary.skipped_files.append({"path": str(path), "kind": kind, "reason": reason})
    tqdm.write(f"skip {path}: {reason}", file=sys.stderr)


def _results(jobs: list, workers: int):
    if workers == 1 or len(jobs) < 2:
        yield from map(_work, jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: `steerpad train` calls ingest with torch (and its threads) loaded
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx)
    try:
        yield from pool.map(_work, jobs, chunksize=4)
    finally:  # on an error or Ctrl-C, drop the queued files instead of decoding them all
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Source:
    """One audio file found, with its kit and (Hydrogen) instrument."""

    path: Path
    names: list[str]
    """Instrument name (if any), file stem, folders up to the input folder: label sources."""
    kit: str
    instrument: tuple[Path, int, str] | None
    """(kit folder, instrument index, instrument name) from drumkit.xml."""


def _plan(dirs: list[Path]) -> list[_Source]:
    found = find_files(dirs)
    kit_dirs = [_kit_folder(p, root) for p, root in found]
    kit_name = _kit_names(sorted(set(kit_dirs), key=lambda f: (f.name, str(f))))
    drumkits: dict[Path, dict] = {}
    for kd in sorted(set(kit_dirs)):
        if (kd / "drumkit.xml").is_file():
            try:
                drumkits[kd] = read_drumkit(kd / "drumkit.xml")
            except (OSError, ValueError, SyntaxError) as e:
                print(f"warning: {kd / 'drumkit.xml'} unreadable ({e}); labels from names",
                      file=sys.stderr)
    out = []
    for (path, root), kd in zip(found, kit_dirs, strict=True):
        inst = drumkits.get(kd, {}).get(path.resolve())
        folders = list(reversed(path.parent.relative_to(root.parent).parts))
        out.append(_Source(path=path, names=([inst[1]] if inst else []) + [path.stem] + folders,
                           kit=kit_name[kd], instrument=(kd, *inst) if inst else None))
    return out


def _read(sources: list[_Source], config: IngestConfig, tmp: Path, summary: IngestSummary,
          progress: bool) -> tuple[list[dict], list[np.ndarray], list[dict]]:
    """Decode every source (in worker processes), write kept audio to shards in `tmp`.
    Returns (rows for ClipRecord + "_inst", "_loc"; fingerprints; shard list)."""
    from tqdm import tqdm

    rows, prints = [], []
    seen: dict[str, str] = {}  # file sha256 / processed-audio hash -> first path
    writer = _ShardWriter(tmp, config.shard_mb << 20)
    workers = config.workers or min(os.cpu_count() or 1, 8)
    jobs = [(str(s.path), config) for s in sources]
    bar = tqdm(total=len(jobs), unit="file", desc="ingest", disable=not progress)
    for src, res in zip(sources, _results(jobs, workers), strict=True):
        bar.update()
        if "skip" in res:
            _skip(summary, src.path, res["skip"], res["reason"])
            continue
        first = seen.get(res["sha256"]) or seen.get(res["audio_hash"])
        if first is not None:
            _skip(summary, src.path, "duplicate", f"duplicate of {first}")
            continue
        label = choose_label(src.names)
        if label == "other" and config.skip_other:
            _skip(summary, src.path, "other", "no drum word in its names (label other)")
            continue
        seen[res["sha256"]] = seen[res["audio_hash"]] = str(src.path)
        info = res["info"]
        rows.append({"path": str(src.path.resolve()), "kit": src.kit, "label": label,
                     "sha256": res["sha256"], **info,
                     "instrument": src.instrument[2] if src.instrument else "",
                     "_inst": src.instrument[:2] if src.instrument else None,
                     "_loc": writer.add(res["audio"])})
        prints.append(res["print"])
    bar.close()
    return rows, prints, writer.close()


def ingest(dirs: list[Path], out: Path, config: IngestConfig, force: bool = False,
           progress: bool = True) -> IngestSummary:
    """Read every audio file under `dirs` into a store folder at `out` (see the module doc).
    Refuses an existing `out` unless `force`; on any error nothing is left at `out` (or the old
    store stays). Raises SteerpadError for bad input."""
    t0 = time.perf_counter()
    dirs, out = [Path(d) for d in dirs], Path(out)
    for d in dirs:
        if not d.is_dir():
            raise SteerpadError(f"input folder {d} does not exist or is not a folder")
    if out.exists() and not force:
        raise SteerpadError(f"{out} already exists; pass --force to replace it")
    dirs = [d.resolve() for d in dirs]
    sources = _plan(dirs)
    summary = IngestSummary(files=len(sources))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        rows, prints, shards = _read(sources, config, tmp, summary, progress)
        if not rows:
            raise SteerpadError(f"no usable audio in {', '.join(map(str, dirs))} "
                                f"({summary.files} audio files found, all skipped)")
        _group_and_split(rows, np.stack(prints), tmp, config, summary)
        with open(tmp / "index.jsonl", "w", encoding="utf-8") as f:
            for i, r in enumerate(rows):
                shard, offset, length = r.pop("_loc")
                r.pop("_inst")
                rec = ClipRecord(id=i, **r)
                f.write(json.dumps({**asdict(rec), "shard": shard, "offset": offset,
                                    "length": length}) + "\n")
        summary.clips = len(rows)
        summary.labels = dict(sorted(Counter(r["label"] for r in rows).items(),
                                     key=lambda kv: LABELS.index(kv[0])))
        summary.splits = dict(Counter(r["split"] for r in rows))
        summary.split_labels = {sp: dict(Counter(r["label"] for r in rows if r["split"] == sp))
                                for sp in ("train", "val")}
        summary.wall_s = round(time.perf_counter() - t0, 2)
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "config": asdict(config),
                "summary": asdict(summary), "shards": shards}
        (tmp / "store.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _group_and_split(rows: list[dict], prints: np.ndarray, tmp: Path, config: IngestConfig,
                     summary: IngestSummary) -> None:
    """Set rows' "group" (Hydrogen layers of one instrument + scaled copies) and "split"."""
    shards: dict[int, np.ndarray] = {}

    def mono(i: int) -> np.ndarray:
        shard, offset, length = rows[i]["_loc"]
        if shard not in shards:
            shards[shard] = np.load(tmp / f"audio_{shard:03d}.npy", mmap_mode="r")
        return np.asarray(shards[shard][:, offset:offset + length]).mean(axis=0)

    kits = [r["kit"] for r in rows]
    groups, pairs, links = group_clips([r["_inst"] for r in rows], kits, prints, mono,
                                       config.dup_spectral, config.dup_corr)
    split = assign_splits(kits, links, config.val_kits, config.val_fraction, config.seed)
    for r, g in zip(rows, groups):
        r["group"], r["split"] = g, split[r["kit"]]
    summary.groups = max(groups) + 1
    summary.near_duplicates = len(pairs)
    summary.linked_kits = [c for c in kit_units(kits, links) if len(c) > 1]
    counts = Counter(kits)
    summary.kits = {k: {"clips": counts[k], "split": split[k]} for k in sorted(split)}


class _ShardWriter:
    """Appends clips [C, L] to float32 .npy shards of about `limit` bytes."""

    def __init__(self, folder: Path, limit: int):
        self.folder, self.limit = folder, limit
        self.buf: list[np.ndarray] = []
        self.size = self.offset = 0
        self.shards: list[dict] = []

    def add(self, audio: np.ndarray) -> tuple[int, int, int]:
        loc = (len(self.shards), self.offset, audio.shape[1])
        self.buf.append(audio)
        self.offset += audio.shape[1]
        self.size += audio.nbytes
        if self.size >= self.limit:
            self._flush()
        return loc

    def _flush(self) -> None:
        if self.buf:
            name = f"audio_{len(self.shards):03d}.npy"
            np.save(self.folder / name, np.concatenate(self.buf, axis=1))
            self.shards.append({"file": name, "clips": len(self.buf), "samples": self.offset})
        self.buf, self.size, self.offset = [], 0, 0

    def close(self) -> list[dict]:
        self._flush()
        return self.shards


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished temp folder to `out`; an old store is removed only after that."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


# ---------------------------------------------------------------- reading a store

class IngestStore:
    """A finished ingest store: `.config`, `.records`, `.summary`, `len()`, `.audio(i)`,
    `.ids(split)`."""

    def __init__(self, path: Path, meta: dict, records: list[ClipRecord], locs: list[tuple]):
        self.path = path
        self.config = IngestConfig.from_dict(meta["config"])
        self.summary: dict = meta.get("summary", {})
        self.records = records
        self._locs = locs
        self._shard_files = [s["file"] for s in meta["shards"]]
        self._shards: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | Path) -> IngestStore:
        path = Path(path)
        meta_path = path / "store.json"
        if not meta_path.is_file():
            raise SteerpadError(f"{path} is not an ingest store (no store.json); "
                                "create one with `steerpad ingest DIR --out STORE`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
                raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
            records, locs = [], []
            names = {f.name for f in fields(ClipRecord)}
            with open(path / "index.jsonl", encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    records.append(ClipRecord(**{k: v for k, v in d.items() if k in names}))
                    locs.append((d["shard"], d["offset"], d["length"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SteerpadError(f"{path} is not a valid ingest store ({e}); "
                                "re-run `steerpad ingest`") from e
        return cls(path, meta, records, locs)

    def __len__(self) -> int:
        return len(self.records)

    def audio(self, i: int) -> np.ndarray:
        """Clip i, float32 [C, frames * hop], zero-padded after its sounding frames."""
        shard, offset, length = self._locs[i]
        if shard not in self._shards:
            self._shards[shard] = np.load(self.path / self._shard_files[shard], mmap_mode="r")
        cfg = self.config
        out = np.zeros((cfg.channels, cfg.length), np.float32)
        out[:, :length] = self._shards[shard][:, offset:offset + length]
        return out

    def ids(self, split: str | None = None) -> list[int]:
        """Record ids in `split` ("train" / "val"), or all for None."""
        if split not in ("train", "val", None):
            raise ValueError(f"split must be 'train', 'val' or None, not {split!r}")
        return [r.id for r in self.records if split is None or r.split == split]


# ---------------------------------------------------------------- CLI

def print_summary(summary: IngestSummary, out: Path | None = None) -> None:
    """A rich table of labels per split, kits, and skipped files by reason."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    console.print(f"ingest: {summary.clips} clips from {summary.files} audio files in "
                  f"{summary.wall_s:.1f} s" + (f" -> {out}" if out else ""))
    kits = Table(title="kits")
    for col in ("kit", "clips", "split"):
        kits.add_column(col, justify="right" if col == "clips" else "left")
    for name, k in summary.kits.items():
        kits.add_row(name, str(k["clips"]), k["split"])
    console.print(kits)
    table = Table(title="summary")
    for col in ("what", "train", "val", "all"):
        table.add_column(col, justify="left" if col == "what" else "right")
    by_split = summary.split_labels
    for name, n in summary.labels.items():
        table.add_row(f"label {name}", *(str(by_split.get(sp, {}).get(name, 0))
                                         for sp in ("train", "val")), str(n))
    n_kits = Counter(k["split"] for k in summary.kits.values())
    table.add_row("clips", *(str(summary.splits.get(sp, 0)) for sp in ("train", "val")),
                  str(summary.clips))
    table.add_row("kits", str(n_kits["train"]), str(n_kits["val"]), str(len(summary.kits)))
    table.add_row("duplicate groups", "", "", str(summary.groups))
    table.add_row("near-duplicate pairs", "", "", str(summary.near_duplicates))
    for kind, n in sorted(summary.skipped.items()):
        table.add_row(f"skipped: {kind}", "", "", str(n))
    table.add_row("skipped (all)", "", "", str(sum(summary.skipped.values())))
    console.print(table)
    val = [k for k, v in summary.kits.items() if v["split"] == "val"]
    console.print(f"val kits: {', '.join(val) or '(none)'}")
    for group in summary.linked_kits:
        console.print(f"kits sharing near duplicates (one split): {', '.join(group)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = IngestConfig()
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders of one-shots")
    parser.add_argument("--out", type=Path, required=True, help="store folder to write")
    parser.add_argument("--frames", type=int, default=d.frames, help="clip length, latent frames")
    parser.add_argument("--hop", type=int, default=d.hop, help="samples per latent frame")
    parser.add_argument("--sample-rate", type=int, default=d.sample_rate)
    parser.add_argument("--channels", type=int, default=d.channels)
    parser.add_argument("--val-kits", default=None, help="comma-separated kit names for val")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--skip-other", action="store_true", help="drop clips labelled other")
    parser.add_argument("--workers", type=int, default=d.workers, help="0 = one per core")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    val_kits = None
    if args.val_kits is not None:
        val_kits = [k.strip() for k in args.val_kits.split(",") if k.strip()]
    try:
        config = IngestConfig(sample_rate=args.sample_rate, channels=args.channels, hop=args.hop,
                              frames=args.frames, val_kits=val_kits,
                              val_fraction=args.val_fraction, seed=args.seed,
                              skip_other=args.skip_other, workers=args.workers)
    except ValueError as e:
        raise SteerpadError(str(e)) from e
    summary = ingest(args.dirs, args.out, config, force=args.force,
                     progress=not args.no_progress)
    print_summary(summary, args.out)
    return 0
