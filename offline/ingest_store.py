"""The ingest store: the config and records of `steerpad ingest`, written as float32 .npy shards
and read back with mmap.

Store (a folder, written to a temp folder and renamed into place):
  store.json   {"format", "version", "config", "summary", "shards"}
  index.jsonl  one ClipRecord per line, plus its shard, offset and length
  audio_NNN.npy  float32 [C, total]: the clips' sounding frames, back to back
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from steerpad.realtime.errors import SteerpadError

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
    max_peak_db: float = 24.0
    """Files whose peak is above this (dBFS) are skipped: no recording or float render of a
    drum sits 16 times over full scale, and such a level would wreck training."""
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
            (8000 <= self.sample_rate <= 384000, "sample_rate must be 8000 to 384000 Hz (a "
             "bundle's range)"),
            (1 <= self.channels <= 8, "channels must be 1 to 8 (a bundle's range)"),
            (self.hop * self.frames <= 60 * self.sample_rate, "frames * hop must be at most 60 s "
             "of audio (a bundle's range)"),
            (self.hop >= 1 and self.frames >= 1, "hop and frames must be >= 1"),
            (self.silence_db < 0 and self.trim_db < 0, "silence_db and trim_db must be < 0 dB"),
            (self.min_peak_db < 0, "min_peak_db must be < 0 dBFS"),
            (0 <= self.max_peak_db <= 60, "max_peak_db must be in [0, 60] dBFS"),
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
    """Skip reason kind -> count (empty, unreadable, not_a_file, nan, level, dc, silent, too_short,
    duplicate, other)."""
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



class ShardWriter:
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


def replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished temp folder to `out`; an old store (checked by the caller: only a store
    is ever replaced) is removed only after that."""
    old = None
    if out.exists():  # a store: ingest's claim_output checked its marker
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "store")
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old / "store", out)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old)


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
            return cls(path, meta, records, locs)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise SteerpadError(f"{path} is not a valid ingest store ({e}); "
                                "re-run `steerpad ingest`") from None

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
