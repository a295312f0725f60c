"""Drum labels from names, Hydrogen drumkit.xml reading, and near-duplicate grouping for ingest.

Labels come from words: a Hydrogen instrument name ("Closed HH", "c3 - bass drum 1"), a file
name (sonic-pi `drum_bass_hard.flac`, lmms `kick01.ogg`) or a folder name. A word list per label
gives a *strong* match (kick, snare, hat, tom, cymbal, clap, rim, percussion instruments; "loop"
is a strong "other"); generic words ("drum", "perc", sonic-pi's "elec") give only a *weak*
"percussion"; no word at all gives "other".

Near duplicates (a velocity copy that is a scaled copy of another file) are found by cosine
similarity of the magnitude spectra of the clips' openings (scale and small-shift invariant),
then confirmed by the peak normalised cross-correlation of the whole clips. No torch here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

LABELS = ("kick", "snare", "hat", "tom", "cymbal", "clap", "rim", "percussion", "other")

_PERC_WORDS = {
    "cowbell", "bell", "bells", "tambourine", "tamb", "tambo", "shaker", "shake", "clave",
    "claves", "clav", "woodblock", "wood", "block", "conga", "congas", "bongo", "bongos",
    "triangle", "guiro", "cabasa", "maraca", "maracas", "agogo", "timbale", "timbales", "cajon",
    "djembe", "tabla", "darbuka", "doumbek", "sangban", "kenkeni", "dundun", "dununba",
    "vibraslap",
    "whistle", "chime", "chimes", "snap", "fingersnap", "cuica", "surdo", "quijada", "castanet",
    "castanets", "waterglass", "waterglasslo", "waterglasshi", "metal", "zap",
}
_LOOP_WORDS = {"loop", "loops", "groove", "fill"}  # phrases, not one-shots
_WEAK_WORDS = {"drum", "drums", "perc", "percs", "percussion", "elec"}


def tokens(text: str) -> list[str]:
    """Lower-case words of a name: split on non-letters, digits and camelCase
    ("BassDrum_01" -> ["bass", "drum"], "g#3 - hi-hat pedal" -> ["g", "hi", "hat", "pedal"])."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [t for t in re.split(r"[^a-z]+", text.lower()) if t]


def label_from_name(text: str) -> tuple[str, bool] | None:
    """(label, strong) for a name, or None when no word says anything. Hats are checked
    before cymbals (sonic-pi's `drum_cymbal_closed` is a hat), snares before rims
    ("Snare Rimshot" is a snare)."""
    words = tokens(text)
    w = set(words)
    joined = "".join(words)
    if w & _LOOP_WORDS:
        return "other", True

    def starts(*prefixes: str) -> bool:
        return any(t.startswith(prefixes) for t in words)

    if (w & {"hh", "hat", "hats", "hihat", "hihats", "ohh", "chh", "phh", "hhat", "hho", "hhc"}
            or starts("hihat", "hhat") or "hihat" in joined
            or ({"cymbal", "cym"} & w and w & {"closed", "open", "opened", "pedal", "foot"})):
        return "hat", True
    if w & {"cymbal", "cym", "china", "splash"} or starts("crash", "ride", "cymbal", "splash"):
        return "cymbal", True
    if w & {"snare", "snares", "sd", "snr", "sn"} or starts("snare"):
        return "snare", True
    if (w & {"rim", "rims", "rimshot", "rimclick", "sidestick", "stick", "sticks", "xstick"}
            or starts("rim", "sidestick")):
        return "rim", True
    if starts("clap") or any(t.endswith("clap") for t in words) or "clp" in w:
        return "clap", True
    if (w & {"kick", "kicks", "bd", "kik", "bassdrum", "kickdrum"} or starts("kick", "bassdrum")
            or ({"bass", "drum"} <= w)):
        return "kick", True
    if starts("tom") or w & {"floortom", "toms"}:
        return "tom", True
    if w & _PERC_WORDS:
        return "percussion", True
    if w & _WEAK_WORDS:
        return "percussion", False
    return None


def choose_label(names: list[str]) -> str:
    """The first strong label over `names` (most specific first: instrument, file, folders),
    else the first weak one, else "other"."""
    weak = None
    for name in names:
        found = label_from_name(name)
        if found is None:
            continue
        if found[1]:
            return found[0]
        weak = weak or found[0]
    return weak or "other"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_drumkit(xml_path: Path) -> dict[Path, tuple[int, str]]:
    """Map each sample file a Hydrogen drumkit.xml names to (instrument index, instrument name).

    Reads both layouts: `<instrument><instrumentComponent><layer><filename>` (Hydrogen >= 0.9.7)
    and `<instrument><filename>` / `<instrument><layer><filename>` (older kits). Paths are
    resolved against the kit folder; an absolute path keeps only its file name. Raises
    ET.ParseError / OSError for an unreadable file (the caller warns and falls back to names).
    """
    root = ET.parse(xml_path).getroot()
    kit_dir = xml_path.parent
    out: dict[Path, tuple[int, str]] = {}
    instruments = [el for el in root.iter() if _local(el.tag) == "instrument"]
    for index, inst in enumerate(instruments):
        name = ""
        for child in inst:
            if _local(child.tag) == "name":
                name = (child.text or "").strip()
                break
        for el in inst.iter():
            if _local(el.tag) != "filename" or not (el.text or "").strip():
                continue
            rel = Path(el.text.strip())
            path = (kit_dir / (rel.name if rel.is_absolute() else rel)).resolve()
            out.setdefault(path, (index, name))
    return out


class UnionFind:
    """Disjoint sets over 0..n-1 (path halving); `find` returns the smallest member."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def fingerprint(audio: np.ndarray, length: int = 4096) -> np.ndarray:
    """Unit-norm magnitude spectrum of the first `length` samples of the mono mixdown of
    `audio` [C, T]: equal (up to codec noise) for scaled copies. float32 `[length // 2 + 1]`."""
    mono = np.zeros(length, np.float64)
    head = np.asarray(audio, np.float64).mean(axis=0)[:length]
    mono[: len(head)] = head
    mag = np.abs(np.fft.rfft(mono))
    norm = np.linalg.norm(mag)
    return (mag / norm if norm > 0 else mag).astype(np.float32)


def max_xcorr(a: np.ndarray, b: np.ndarray, max_lag: int = 64) -> float:
    """Peak normalised cross-correlation of two mono signals over lags |l| <= max_lag,
    normalised by the norms of the WHOLE signals (so a different decay lowers it)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    c = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    lags = np.concatenate([c[: max_lag + 1], c[-max_lag:]])
    return float(np.max(np.abs(lags)) / denom)


def near_duplicate_pairs(prints: np.ndarray, mono: Callable[[int], np.ndarray],
                         spectral_min: float = 0.98, corr_min: float = 0.95,
                         block: int = 512) -> list[tuple[int, int, float]]:
    """Pairs (i, j, corr), i < j, of clips that are scaled copies of each other.

    `prints` [N, K]: `fingerprint` rows; candidates have spectral cosine >= `spectral_min`
    (blocked matmul, N*N/2 dot products); `mono(i)` gives clip i's mono audio `[T]`, and a
    candidate is kept when `max_xcorr` >= `corr_min`.
    """
    n = len(prints)
    out = []
    for start in range(0, n, block):
        sims = prints[start:start + block] @ prints.T  # [b, N]
        rows, cols = np.nonzero(sims >= spectral_min)
        for r, j in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if j <= i:
                continue
            corr = max_xcorr(mono(i), mono(j))
            if corr >= corr_min:
                out.append((i, j, corr))
    return out


def group_clips(instruments: list, kits: list[str], prints: np.ndarray,
                mono: Callable[[int], np.ndarray], spectral_min: float = 0.98,
                corr_min: float = 0.95
                ) -> tuple[list[int], list[tuple[int, int, float]], list[tuple[str, str]]]:
    """Duplicate groups of N clips: clips with the same non-None `instruments[i]` key (the
    Hydrogen layers of one instrument) and scaled copies (`near_duplicate_pairs`) share one.
    Returns (group id per clip, numbered 0.. in order of first clip; the near-duplicate pairs;
    the (kit, kit) links of pairs that cross kits)."""
    uf = UnionFind(len(kits))
    first_of: dict = {}
    for i, key in enumerate(instruments):
        if key is not None:
            uf.union(first_of.setdefault(key, i), i)
    pairs = near_duplicate_pairs(prints, mono, spectral_min, corr_min)
    links = []
    for i, j, _ in pairs:
        uf.union(i, j)
        if kits[i] != kits[j]:
            links.append((kits[i], kits[j]))
    renumber: dict[int, int] = {}
    groups = [renumber.setdefault(uf.find(i), len(renumber)) for i in range(len(kits))]
    return groups, pairs, links


def kit_units(kits: list[str], links: list[tuple[str, str]]) -> list[list[str]]:
    """Kits joined by links (shared near duplicates), each unit sorted, units by first kit."""
    names = sorted(set(kits))
    index = {k: i for i, k in enumerate(names)}
    uf = UnionFind(len(names))
    for a, b in links:
        uf.union(index[a], index[b])
    units: dict[int, list[str]] = {}
    for k in names:
        units.setdefault(uf.find(index[k]), []).append(k)
    return [units[r] for r in sorted(units)]


def assign_splits(kits: list[str], links: list[tuple[str, str]], val_kits: list[str] | None,
                  val_fraction: float, seed: int) -> dict[str, str]:
    """kit -> "train"/"val", by kit never by file. A unit of linked kits (`kit_units`) is one
    draw: it goes to val when it holds a kit named in `val_kits`, or (val_kits None) when drawn
    among round(val_fraction * units) units by a numpy Generator seeded with `seed` (at least
    one when there are two or more units and val_fraction > 0; never all of them).
    Raises SteerpadError for an unknown name in `val_kits`."""
    from steerpad.realtime.errors import SteerpadError

    units = kit_units(kits, links)
    if val_kits is not None:
        known = {k for u in units for k in u}
        unknown = [k for k in val_kits if k not in known]
        if unknown:
            raise SteerpadError(f"--val-kits: no kit named {', '.join(map(repr, unknown))}; "
                                f"kits found: {', '.join(sorted(known))}")
        val_units = [u for u in units if set(u) & set(val_kits)]
    else:
        n_val = 0
        if len(units) >= 2 and val_fraction > 0:
            n_val = min(len(units) - 1, max(1, round(val_fraction * len(units))))
        order = np.random.default_rng(seed).permutation(len(units))
        val_units = [units[i] for i in order[:n_val]]
    val = {k for u in val_units for k in u}
    return {k: ("val" if k in val else "train") for u in units for k in u}
