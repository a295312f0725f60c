"""Training drums that steerpad makes itself, for scripts/train_default (issue 15's allowlist):

    python scripts/gather_drums.py soundfont SF2 --out DIR     # every drum kit of a soundfont
    python scripts/gather_drums.py synth --out DIR [--kits N]  # the project's synthesiser

`soundfont` renders each drum preset (bank 128) of an SF2 note by note with fluidsynth (reverb
and chorus off, 44.1 kHz, velocity 100), one kit folder per preset (`<sf2>_<preset>`), one file
per General MIDI percussion note named after it (`38_acoustic_snare.flac`), so ingest labels it
from the name. Notes the preset leaves silent are skipped. The whistles are not drums and are
skipped too.

`synth` writes kits from tests/drumsynth.py with its frequency and decay ranges widened
`--spread` times in log about their centres (spread 2: kicks 27-135 Hz, snare decays 0.06-0.8 s,
filter cutoffs up to 18 kHz, decays up to 3 s).

Each prints one line per kit with its one-shot count.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

GM_DRUMS = {
    35: "acoustic bass drum", 36: "bass drum 1", 37: "side stick", 38: "acoustic snare",
    39: "hand clap", 40: "electric snare", 41: "low floor tom", 42: "closed hi hat",
    43: "high floor tom", 44: "pedal hi hat", 45: "low tom", 46: "open hi hat", 47: "low mid tom",
    48: "hi mid tom", 49: "crash cymbal 1", 50: "high tom", 51: "ride cymbal 1",
    52: "chinese cymbal", 53: "ride bell", 54: "tambourine", 55: "splash cymbal", 56: "cowbell",
    57: "crash cymbal 2", 58: "vibraslap", 59: "ride cymbal 2", 60: "hi bongo", 61: "low bongo",
    62: "mute hi conga", 63: "open hi conga", 64: "low conga", 65: "high timbale",
    66: "low timbale", 67: "high agogo", 68: "low agogo", 69: "cabasa", 70: "maracas",
    73: "short guiro", 74: "long guiro", 75: "claves", 76: "hi wood block", 77: "low wood block",
    78: "mute cuica", 79: "open cuica", 80: "mute triangle", 81: "open triangle",
}
"""General MIDI percussion notes rendered (71 and 72, the whistles, are left out)."""
RATE = 44100
SPACING_S = 4.0
"""Each note starts this long after the previous one (longer than any drum in the kits)."""
SILENT = 1e-4


def drum_presets(sf2: Path) -> list[tuple[int, str]]:
    """(preset, name) of every bank-128 (drum) preset in an SF2's phdr chunk."""
    data = sf2.read_bytes()
    i = data.find(b"phdr")
    if i < 0:
        raise SystemExit(f"gather_drums: {sf2}: no preset headers (not an SF2 soundfont)")
    size = struct.unpack("<I", data[i + 4:i + 8])[0]
    out = []
    for k in range(size // 38 - 1):  # the last record is the terminal EOP
        rec = data[i + 8 + 38 * k:i + 8 + 38 * (k + 1)]
        preset, bank = struct.unpack("<HH", rec[20:24])
        if bank == 128:
            out.append((preset, rec[:20].split(b"\0")[0].decode("latin-1").strip()))
    return sorted(out)


def render_preset(sf2: Path, preset: int, tmp: Path) -> np.ndarray:
    """Every GM_DRUMS note of one drum preset, SPACING_S apart, rendered dry -> [T, 2]."""
    import mido
    import soundfile as sf

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000))  # 120 bpm: 960 ticks per second
    track.append(mido.Message("program_change", channel=9, program=preset, time=0))
    per_note = int(SPACING_S * 960)
    track.append(mido.Message("note_on", channel=9, note=min(GM_DRUMS), velocity=0, time=per_note))
    for note in GM_DRUMS:
        track.append(mido.Message("note_on", channel=9, note=note, velocity=100, time=0))
        track.append(mido.Message("note_off", channel=9, note=note, velocity=0, time=per_note // 2))
        track.append(mido.Message("note_off", channel=9, note=note, velocity=0, time=per_note // 2))
    path, wav = tmp / "kit.mid", tmp / "kit.wav"
    mid.save(path)
    cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(RATE),
           "-T", "wav", "-O", "float", "-F", str(wav), str(sf2), str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not wav.is_file():
        raise SystemExit(f"gather_drums: fluidsynth failed on {sf2} preset {preset}: "
                         f"{done.stderr.strip()[:300]} (apt install fluidsynth)")
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == RATE
    return audio


def soundfont(sf2: Path, out: Path) -> None:
    import soundfile as sf

    if not sf2.is_file():
        raise SystemExit(f"gather_drums: {sf2}: no such soundfont")
    for preset, name in drum_presets(sf2):
        kit = out / f"{sf2.stem}_{preset:03d}_{name.replace(' ', '_') or 'drums'}"
        kit.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="steerpad-sf-") as tmp:
            audio = render_preset(sf2, preset, Path(tmp))
        step = int(SPACING_S * RATE)
        n = 0
        for k, note in enumerate(GM_DRUMS):
            hit = audio[(k + 1) * step:(k + 2) * step]
            loud = np.flatnonzero(np.abs(hit).max(axis=1) > SILENT)
            if len(loud) == 0:
                continue  # no sample on this note in this kit
            hit = hit[:loud[-1] + 1]
            sf.write(kit / f"{note}_{GM_DRUMS[note].replace(' ', '_')}.flac", hit, RATE, subtype="PCM_24")
            n += 1
        print(f"{kit.name}: {n} one-shots")


def synth(out: Path, kits: int, hits: int, spread: float, seed: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import drumsynth

    wide = {kind: {p: _widen(p, lo, hi, spread) for p, (lo, hi) in ranges.items()}
            for kind, ranges in drumsynth.PARAM_RANGES.items()}
    saved, drumsynth.PARAM_RANGES = drumsynth.PARAM_RANGES, wide
    try:
        rows = drumsynth.write_kits(out, n_kits=kits, hits_per_kit=hits, seed=seed)
    finally:
        drumsynth.PARAM_RANGES = saved
    for kit in sorted({r["kit"] for r in rows}):
        print(f"{kit}: {sum(r['kit'] == kit for r in rows)} one-shots")


def _widen(name: str, lo: float, hi: float, spread: float) -> tuple[float, float]:
    """A frequency's or a time's [lo, hi] widened `spread` times (in log) about its geometric
    centre; mixes and other shares stay as they are."""
    if not (name.endswith("_hz") or name.endswith("_s")) or lo <= 0:
        return lo, hi
    centre, half = np.sqrt(lo * hi), (hi / lo) ** (spread / 2)
    return float(centre / half), float(min(centre * half, 18000.0 if name.endswith("_hz") else 3.0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("soundfont", help="render an SF2's drum kits note by note (fluidsynth)")
    s.add_argument("sf2", type=Path)
    s.add_argument("--out", type=Path, required=True)
    y = sub.add_parser("synth", help="synthetic kits with wide parameter draws")
    y.add_argument("--out", type=Path, required=True)
    y.add_argument("--kits", type=int, default=12)
    y.add_argument("--hits", type=int, default=24)
    y.add_argument("--spread", type=float, default=2.0)
    y.add_argument("--seed", type=int, default=15)
    args = ap.parse_args(argv)
    if args.what == "soundfont":
        soundfont(args.sf2, args.out)
    else:
        synth(args.out, args.kits, args.hits, args.spread, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
