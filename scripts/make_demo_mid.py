"""Writes presets/demo.mid, the demo performance of ./scripts/demo (presets/default.toml on the
generic controller map): a 100 BPM groove of 20 bars (48 s) on the 16 pads, while each of the 8
knobs in turn sweeps its whole range and back (two bars each, from bar 3), so every direction
is heard on the same groove. Deterministic: rerunning it writes the same file.

    .venv/bin/python scripts/make_demo_mid.py [--out presets/demo.mid]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mido

BPM, TPB = 100, 480
PAD_CH, KNOB_CH = 9, 0  # mido channels are 0-based: 10 and 1
PAD = {name: 36 + i for i, name in enumerate(
    ["kick", "snare", "clap", "hat-closed", "hat-open", "tom-low", "tom-mid", "tom-high", "crash",
     "ride", "kick-808", "snare-electro", "rim", "cowbell", "shaker", "conga"])}
KNOB_CCS = list(range(70, 78))
BARS, SWEEP_FROM = 20, 2  # bars (0-based) where the first knob sweep starts
SIXTEENTH = TPB // 4


def groove(bar: int) -> list[tuple[int, str, int]]:
    """(tick in the bar, pad, velocity) of one bar; the pattern changes every 4 bars."""
    section = bar // 4
    hits = []
    for s in range(16):
        t = s * SIXTEENTH
        if s in (0, 10) or (section % 2 and s == 7):
            hits.append((t, "kick" if section < 3 else "kick-808", 118))
        if s in (4, 12):
            hits.append((t, "snare" if section != 2 else "snare-electro", 110))
        if s % 2 == 0 and s != 14:
            hits.append((t, "hat-closed", 70 + 25 * (s % 4 == 0)))
        if s == 14:
            hits.append((t, "hat-open", 90))
        if section >= 1 and s in (3, 11):
            hits.append((t, "shaker", 60))
        if section >= 2 and s in (6, 15):
            hits.append((t, "conga", 80))
        if section == 3 and s in (2, 9):
            hits.append((t, "cowbell", 75))
        if section == 4 and s in (5, 13):
            hits.append((t, "rim", 90))
        if section in (1, 4) and s == 12:
            hits.append((t, "clap", 100))
    if bar % 4 == 0:
        hits.append((0, "crash", 112))
    if bar % 4 == 2:
        hits.append((0, "ride", 85))
    if bar % 4 == 3:  # a tom fill on the last beat
        for j, tom in enumerate(("tom-high", "tom-mid", "tom-low", "tom-low")):
            hits.append((12 * SIXTEENTH + j * SIXTEENTH, tom, 100))
    return hits


def knob_events() -> list[tuple[int, int, int]]:
    """(absolute tick, cc, value): knob i sweeps centre -> top -> bottom -> centre over two bars."""
    events = [(0, cc, 64) for cc in KNOB_CCS]
    bar_ticks = 4 * TPB
    steps = 16  # a value every 0.3 s: each knob move re-renders all 16 pads in the bounce
    for i, cc in enumerate(KNOB_CCS):
        start = (SWEEP_FROM + 2 * i) * bar_ticks
        for j in range(steps + 1):
            u = j / steps  # 0 .. 1 over two bars
            if u < 0.25:
                v = 64 + (127 - 64) * u / 0.25
            elif u < 0.75:
                v = 127 - 127 * (u - 0.25) / 0.5
            else:
                v = 64 * (u - 0.75) / 0.25
            events.append((start + round(u * 2 * bar_ticks), cc, round(v)))
    return events


def build() -> mido.MidiFile:
    mid = mido.MidiFile(ticks_per_beat=TPB)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("track_name", name="steerpad demo", time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM), time=0))
    events = []
    for bar in range(BARS):
        for t, pad, vel in groove(bar):
            at = bar * 4 * TPB + t
            events.append((at, 1, mido.Message("note_on", channel=PAD_CH, note=PAD[pad], velocity=vel)))
            events.append((at + SIXTEENTH // 2, 0,
                           mido.Message("note_off", channel=PAD_CH, note=PAD[pad], velocity=0)))
    for at, cc, v in knob_events():
        events.append((at, 2, mido.Message("control_change", channel=KNOB_CH, control=cc, value=v)))
    end = BARS * 4 * TPB
    events.append((end, 3, mido.Message("note_on", channel=PAD_CH, note=PAD["crash"], velocity=120)))
    events.append((end + TPB, 0, mido.Message("note_off", channel=PAD_CH, note=PAD["crash"])))
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for at, _, msg in events:
        track.append(msg.copy(time=at - now))
        now = at
    track.append(mido.MetaMessage("end_of_track", time=4 * TPB))
    return mid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    ap.add_argument("--out", type=Path, default=here.parent / "presets" / "demo.mid")
    args = ap.parse_args()
    mid = build()
    mid.save(str(args.out))
    print(f"wrote {args.out} ({mid.length:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
