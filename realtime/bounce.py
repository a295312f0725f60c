"""Render a MIDI performance offline through the live engine (a "bounce"): `steerpad render`.

The same Engine as on stage, driven block by block from the file instead of by a sound card:
notes land on their exact sample, and every knob move waits for its fresh renders, so the
bounce hears each knob state the file asks for. The output is deterministic: the same file,
bundle and preset give the same samples.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from steerpad.realtime.bundle import Bundle, load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import Event, NoteOn
from steerpad.realtime.midiparse import MidiParser
from steerpad.realtime.presets import Preset, load_preset

TAIL_S = 0.25
"""Silence-detection margin after the last sound ends."""
RENDER_TIMEOUT_S = 600.0


def read_performance(path: Path, sample_rate: int, cc14: frozenset[int] | set[int] = frozenset()
                     ) -> list[tuple[int, Event]]:
    """The file's events as (sample time, event), in time order (tempo changes applied)."""
    try:
        midi = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise SteerpadError(f"{path}: not a readable MIDI file ({e}); export a standard MIDI file "
                            "(.mid) from your sequencer") from None
    parser = MidiParser(cc14=cc14)
    events, t = [], 0.0
    for msg in midi:  # merged tracks, .time = seconds since the previous message
        t += msg.time
        if msg.is_meta:
            continue
        event = parser.feed(msg.bytes())
        if event is not None:
            events.append((int(round(t * sample_rate)), event))
    return events


def bounce(bundle: Bundle, preset: Preset, events: list[tuple[int, Event]], sample_rate: int = 48000,
           blocksize: int = 256, progress=None) -> tuple[np.ndarray, dict]:
    """Render events through a fresh Engine: stereo float32 [T, 2], and the engine's counters."""
    with Engine(bundle, preset, sample_rate, blocksize) as engine:
        if not engine.start(wait=RENDER_TIMEOUT_S):
            raise SteerpadError("render: the first renders did not finish in time")
        longest = max((s.shape[0] for s in engine.worker.slots if s is not None), default=0)
        end = (events[-1][0] if events else 0) + longest + int(TAIL_S * sample_rate)
        blocks = -(-end // blocksize)
        out = np.zeros((blocks * blocksize, 2), np.float32)
        i = 0
        for b in range(blocks):
            start = b * blocksize
            while i < len(events) and events[i][0] < start + blocksize:
                when, event = events[i]
                if isinstance(event, NoteOn):
                    engine.handle(event, offset=max(0, when - start))
                else:
                    engine.handle(event)
                    if not engine.worker.wait_fresh(RENDER_TIMEOUT_S):
                        raise SteerpadError("render: a knob's re-render did not finish in time")
                i += 1
            engine.process(out[start:start + blocksize])
            if progress is not None:
                progress(b + 1, blocks)
        counters = {"renders": engine.worker.stats.renders, "render_errors": engine.worker.stats.errors,
                    "silent_hits": engine.silent_hits, "unmapped": engine.unmapped,
                    "stolen": engine.mixer.stolen, "choked": engine.mixer.choked}
    return out, counters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("performance", type=Path, help="a standard MIDI file (.mid)")
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--preset", type=Path, required=True, help="a preset TOML (presets/*.toml)")
    parser.add_argument("--out", type=Path, required=True, help="the WAV file to write")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--blocksize", type=int, default=256)
    parser.add_argument("--subtype", default="FLOAT", choices=["FLOAT", "PCM_24", "PCM_16"],
                        help="WAV sample format (FLOAT keeps the render bit-exact)")


def run(args: argparse.Namespace) -> int:
    if not args.performance.is_file():
        raise SteerpadError(f"{args.performance}: no such MIDI file")
    bundle = load_bundle(args.bundle)
    preset = load_preset(args.preset)
    events = read_performance(args.performance, args.sample_rate, preset.controller.cc14)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("render", total=None)
        audio, counters = bounce(bundle, preset, events, args.sample_rate, args.blocksize,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    sf.write(str(tmp), audio, args.sample_rate, subtype=args.subtype, format="WAV")
    tmp.replace(args.out)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    print(f"wrote {args.out}: {audio.shape[0] / args.sample_rate:.2f} s, {len(events)} events, "
          f"peak {20 * np.log10(max(peak, 1e-9)):.1f} dBFS, {counters['renders']} renders"
          + (f", {counters['render_errors']} render errors" if counters["render_errors"] else ""))
    return 0
