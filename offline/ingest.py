"""`steerpad ingest`: folders of drum one-shots -> a store of equal-length clips with labels.

Every audio file (wav, flac, aiff, ogg, mp3) under the given folders is read with soundfile,
resampled with soxr to the model rate, mapped to the model's channel count, stripped of leading
silence and cropped or zero-padded to `frames * hop` samples. Files that cannot be used are skipped
with one line each and counted. Labels and duplicate groups come from `labels.py`; train/val
splits are by kit (kits linked by a near-duplicate count as one), never by file.

The store format and its reader live in `ingest_store.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from steerpad.offline.ingest_store import (  # noqa: F401  (re-exported: the public ingest API)
    STORE_FORMAT,
    STORE_VERSION,
    ClipRecord,
    IngestConfig,
    IngestStore,
    IngestSummary,
    ShardWriter,
    replace_folder,
)
from steerpad.offline.labels import (
    LABELS,
    assign_splits,
    choose_label,
    fingerprint,
    group_clips,
    kit_units,
    read_drumkit,
)
from steerpad.realtime.errors import RuntimeFailure, SteerpadError, one_line
from steerpad.realtime.limits import FILE_RATES
from steerpad.realtime.outputs import claim_output, os_reason

# IngestConfig overrides that keep only exact duplicates (cosine and correlation of 1).
EXACT_DUPLICATES_ONLY = {"dup_spectral": 1.0, "dup_corr": 1.0}
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".mp3")
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
        with sf.SoundFile(os.fsencode(path)) as f:  # bytes: any file name, UTF-8 or not
            rate, cin = f.samplerate, f.channels
            x = f.read(frames=int(config.max_read_s * rate), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as e:
        raise SkipFile("unreadable", f"cannot decode: {str(e).strip() or type(e).__name__}") from e
    if not FILE_RATES[0] <= rate <= FILE_RATES[1]:
        raise SkipFile("unreadable", f"sample rate {rate} Hz is outside {FILE_RATES[0]}-"
                                     f"{FILE_RATES[1]} Hz: a broken header")
    if x.shape[0] == 0:
        raise SkipFile("empty", "no audio samples")
    if not np.isfinite(x).all():
        raise SkipFile("nan", "contains NaN or inf samples")
    peak = float(np.abs(x).max())
    if peak > 10 ** (config.max_peak_db / 20):
        raise SkipFile("level", f"peak {20 * math.log10(peak):+.1f} dBFS is beyond any audio "
                                f"level (> {config.max_peak_db:+g} dBFS); normalise the file")
    ac = float(np.abs(x - x.mean(axis=0)).max())
    if peak >= 10 ** (config.min_peak_db / 20) and ac < 10 ** (config.min_peak_db / 20):
        raise SkipFile("dc", f"no sound: a constant level ({20 * math.log10(peak):+.1f} dBFS DC) "
                             "with no AC content")
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
        if Path(path).stat().st_size == 0:  # (before a read that may never end: errors.EMPTY)
            raise SkipFile("empty", "empty file (0 bytes)")
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

def find_files(dirs: list[Path], skipped: list[tuple[Path, str, str]] | None = None
               ) -> list[tuple[Path, Path]]:
    """(file, input folder) for every audio file, sorted within each folder. Symlinks are
    followed, but each real folder is walked once and each real file listed once (overlapping
    inputs, links to a parent). Only regular files are listed: a FIFO, a device, a dangling link
    or a link loop named like audio goes to `skipped` as (path, kind, reason) instead."""
    seen_dirs: set[tuple[int, int]] = set()
    seen: set[tuple[int, int]] = set()
    out = []
    for root in dirs:
        for d, subdirs, names in os.walk(root, followlinks=True):
            try:
                st = os.stat(d)
            except OSError:
                subdirs[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen_dirs:  # a link back to a folder already walked
                subdirs[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            subdirs.sort()
            for name in sorted(names):
                p = Path(d) / name
                if name.startswith(".") or p.suffix.lower() not in AUDIO_SUFFIXES:
                    continue
                try:
                    st = os.stat(p)
                except OSError as e:  # dangling link, link loop, no permission
                    if skipped is not None:
                        skipped.append((p, "unreadable", f"cannot read: {os_reason(e)}"))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    if skipped is not None:
                        skipped.append((p, "not_a_file", f"not a regular file ({_file_type(st)})"))
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    out.append((p, root))
    return out


def _file_type(st: os.stat_result) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return name
    return "not a plain file"


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
    tqdm.write(one_line(f"skip {path}: {reason}"), file=sys.stderr)  # (a name may hold a newline)


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


def _plan(dirs: list[Path], skipped: list[tuple[Path, str, str]]) -> list[_Source]:
    found = find_files(dirs, skipped)
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
    writer = ShardWriter(tmp, config.shard_mb << 20)
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
    claim_output(out, "store", inputs=dirs, force=force)
    dirs = [d.resolve() for d in dirs]
    skipped: list[tuple[Path, str, str]] = []
    sources = _plan(dirs, skipped)
    summary = IngestSummary(files=len(sources) + len(skipped))
    for path, kind, reason in skipped:
        _skip(summary, path, kind, reason)

    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as e:
        raise SteerpadError(f"--out {out}: cannot write in {out.parent} ({os_reason(e)}); choose "
                            "a writable place") from None
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
        claim_output(out, "store", force=force)  # again: a folder may have appeared there since
        replace_folder(tmp, out)
    except OSError as e:  # the store's own writes: a full disk, a vanished folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeFailure(f"--out {out}: writing the store failed ({os_reason(e)}); free some "
                             "space (is the disk full?) or choose another --out") from None
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
    parser.add_argument("--exact-duplicates-only", action="store_true",
                        help="link only exact (scaled) copies across kits, not near duplicates: "
                             "for kits known to be independent, e.g. synthesised ones")
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
                              skip_other=args.skip_other, workers=args.workers,
                              **(EXACT_DUPLICATES_ONLY if args.exact_duplicates_only else {}))
    except ValueError as e:
        raise SteerpadError(str(e)) from e
    summary = ingest(args.dirs, args.out, config, force=args.force,
                     progress=not args.no_progress)
    print_summary(summary, args.out)
    return 0
