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

from steerpad.realtime import oscfeed
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
           blocksize: int = 256, progress=None, on_block=None) -> tuple[np.ndarray, dict]:
    """Render events through a fresh Engine: stereo float32 [T, 2], and the engine's counters.
    `on_block(engine, block)` is called after each rendered block (the feature feed)."""
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
            if on_block is not None:
                on_block(engine, out[start:start + blocksize])
            if progress is not None:
                progress(b + 1, blocks)
        counters = {"renders": engine.worker.stats.renders, "render_errors": engine.worker.stats.errors,
                    "silent_hits": engine.silent_hits, "unmapped": engine.unmapped,
                    "stolen": engine.mixer.stolen, "choked": engine.mixer.choked}
    return out, counters


def bounce_to_files(bundle: Bundle, preset: Preset, events: list[tuple[int, Event]], out: Path,
                    sample_rate: int = 48000, blocksize: int = 256, subtype: str = "FLOAT",
                    features: Path | None = None, sender=None,
                    rate: float = oscfeed.DEFAULT_RATE, label: str = "render"):
    """bounce() with a progress bar, written to the WAV `out` (atomically) and the feature frames
    to `features` (JSON lines) and/or `sender` (OSC) -> (audio, counters, the FeatureFile or
    None). A failed render leaves no partial files."""
    from rich.progress import Progress

    file = None if features is None else oscfeed.FeatureFile(features)
    feed = None if file is None and sender is None else oscfeed.BounceFeed(rate, file, sender)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task(label, total=None)
            audio, counters = bounce(bundle, preset, events, sample_rate, blocksize, on_block=feed,
                                     progress=lambda done, n: bar.update(task, completed=done, total=n))
    except BaseException:
        if file is not None:
            file.abort()
        raise
    if file is not None:
        file.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    sf.write(str(tmp), audio, sample_rate, subtype=subtype, format="WAV")
    tmp.replace(out)
    return audio, counters, file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("performance", type=Path, help="a standard MIDI file (.mid)")
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--preset", type=Path, required=True, help="a preset TOML (presets/*.toml)")
    parser.add_argument("--out", type=Path, required=True, help="the WAV file to write")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--blocksize", type=int, default=256)
    parser.add_argument("--subtype", default="FLOAT", choices=["FLOAT", "PCM_24", "PCM_16"],
                        help="WAV sample format (FLOAT keeps the render bit-exact)")
    parser.add_argument("--features", type=Path, default=None, metavar="FILE.jsonl",
                        help="also write the feature frames as JSON lines (README: Visualizer feed)")
    parser.add_argument("--osc", nargs="?", const=f"{oscfeed.DEFAULT_HOST}:{oscfeed.DEFAULT_PORT}",
                        default=None, metavar="HOST:PORT",
                        help="also send the frames over OSC while rendering (as fast as it renders)")
    parser.add_argument("--osc-rate", type=float, default=oscfeed.DEFAULT_RATE, metavar="HZ",
                        help="feature frames per second of audio (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    if not args.performance.is_file():
        raise SteerpadError(f"{args.performance}: no such MIDI file")
    sender = None if args.osc is None else oscfeed.OscSender(*oscfeed.parse_target(args.osc))
    rate = oscfeed.check_rate(args.osc_rate)
    bundle = load_bundle(args.bundle)
    preset = load_preset(args.preset)
    events = read_performance(args.performance, args.sample_rate, preset.controller.cc14)
    audio, counters, file = bounce_to_files(bundle, preset, events, args.out, args.sample_rate,
                                            args.blocksize, args.subtype, args.features, sender,
                                            rate)
    if file is not None:
        print(f"wrote {args.features}: {file.frames} feature frames at {rate:g} Hz")
    if sender is not None:
        sender.close()
        print(f"sent {sender.sent} OSC messages to {sender}"
              + (f", {sender.errors} not sent ({sender.last_error})" if sender.errors else ""))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    print(f"wrote {args.out}: {audio.shape[0] / args.sample_rate:.2f} s, {len(events)} events, "
          f"peak {20 * np.log10(max(peak, 1e-9)):.1f} dBFS, {counters['renders']} renders"
          + (f", {counters['render_errors']} render errors" if counters["render_errors"] else ""))
    return 0
