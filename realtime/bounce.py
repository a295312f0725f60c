"""Render a MIDI performance offline through the live engine (a "bounce"): `steerpad render`.

The same Engine as on stage, driven block by block from the file instead of by a sound card:
notes land on their exact sample, and every hit hears a fresh render of the knob state at its
moment. Only what a hit will hear is rendered: knob moves between two hits only update the
knobs, and a hit renders its own pad (if the knobs moved since its last render) just before it
sounds, so a performance dense with knob moves costs one render per hit at most. The output is
deterministic: the same file, bundle and preset give the same samples.

The bounce streams: each block goes to the WAV (and the feature frames to their file) as it is
made, so memory stays flat however long the performance. With --osc the frames are also sent over
OSC, each at its time in the audio (the render waits for it), or as fast as they come with
--osc-fast. A performance longer than
--max-duration (default MAX_DURATION_S) is refused before anything is rendered. The outputs are
written to temporary files next to their destinations and moved into place only when the
whole bounce worked: a failed render (a broken decoder, a full disk, Ctrl-C) leaves no partial
files.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from steerpad.realtime import config, oscfeed
from steerpad.realtime.bundle import Bundle, load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import EMPTY, RuntimeFailure, SteerpadError
from steerpad.realtime.events import Event, NoteOn
from steerpad.realtime.limits import check_audio_options
from steerpad.realtime.midiparse import MidiParser
from steerpad.realtime.outputs import claim_output, os_reason, replace_claimed, stops_held
from steerpad.realtime.presets import Preset, load_preset

TAIL_S = 0.25
"""Silence kept after the last voice ends (the master bus' lookahead and release)."""
MAX_DURATION_S = 3600.0
"""The longest performance (its last event, seconds) rendered without --max-duration: an hour
of stereo float at 48 kHz is a 1.4 GB WAV."""
WAV_LIMIT_BYTES = 0xFFFF_FFFF - (1 << 20)
"""A RIFF WAV holds at most 4 GiB; a bounce that may grow past this is written as RF64."""
SOFTWARE = "steerpad render"
"""The WAV's `software` tag (outputs.py recognises a steerpad WAV by it)."""


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def check_duration(seconds: float, max_duration: float, what: str) -> None:
    """Refuse (one line naming --max-duration) a performance whose events reach past
    `max_duration` seconds."""
    if seconds > max_duration:
        raise SteerpadError(f"{what}: the performance runs to {_hms(seconds)} ({seconds:.0f} s), past "
                            f"the {max_duration:g} s limit; pass --max-duration {math.ceil(seconds) + 1} "
                            "(seconds) to render it anyway")


def check_max_duration(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise SteerpadError(f"--max-duration {value}: give the longest performance to render, in "
                            f"seconds, more than 0 (default {MAX_DURATION_S:g})")
    return float(value)


MAX_DELTA_TICKS = 0x0FFFFFFF
"""The longest delta time a standard MIDI file can hold (a variable-length quantity of at most
4 bytes)."""


def read_performance(path: Path, sample_rate: int, cc14: frozenset[int] | set[int] = frozenset(),
                     max_duration: float = MAX_DURATION_S) -> list[tuple[int, Event]]:
    """The file's events as (sample time, event), in time order (tempo changes applied).
    SteerpadError, one line, for a file that is not a standard MIDI file or whose events run
    past `max_duration` seconds (it stops reading there)."""
    fix = "export a standard MIDI file (.mid, type 0 or 1) from your sequencer"
    parser = MidiParser(cc14=cc14)
    events: list[tuple[int, Event]] = []
    try:
        if os.stat(path).st_size == 0:  # never opened (errors.EMPTY)
            raise SteerpadError(f"{path}: {EMPTY}; give a standard MIDI file (.mid)")
        with open(path, "rb") as f:
            head = f.read(14)
        if head[:4] == b"MThd" and len(head) == 14 and head[12] & 0x80:  # the division's top bit
            raise SteerpadError(f"{path}: its header counts time in SMPTE frames per second, not ticks "
                                f"per beat, which steerpad does not read; {fix}")
        midi = mido.MidiFile(str(path))
        if midi.type == 2:
            raise SteerpadError(f"{path}: a type 2 (asynchronous) MIDI file has no single timeline; {fix}")
        if midi.ticks_per_beat <= 0:
            raise SteerpadError(f"{path}: its header says 0 ticks per beat, so no event has a time; {fix}")
        for n, track in enumerate(midi.tracks, 1):  # (mido reads a delta time of any length)
            if any(msg.time > MAX_DELTA_TICKS for msg in track):
                raise SteerpadError(f"{path}: track {n} has a delta time longer than a MIDI file's 4 bytes "
                                    f"(a damaged file, or not a MIDI file); {fix}")
        t = 0.0
        for msg in midi:  # merged tracks, .time = seconds since the previous message
            t += msg.time
            if msg.is_meta:
                continue
            event = parser.feed(msg.bytes())
            if event is not None:
                check_duration(t, max_duration, str(path))
                events.append((int(round(t * sample_rate)), event))
    except (SteerpadError, MemoryError):
        raise
    except EOFError:
        raise SteerpadError(f"{path}: not a readable MIDI file (it ends in the middle of a chunk: "
                            f"truncated?); {fix}") from None
    except Exception as e:  # noqa: BLE001 - mido raises many types on a malformed file
        raise SteerpadError(f"{path}: not a readable MIDI file ({str(e) or type(e).__name__}); "
                            f"{fix}") from None
    return events


def _check_events(events: list[tuple[int, Event]], sample_rate: int, max_duration: float) -> None:
    if events:
        check_duration(max(t for t, _ in events) / sample_rate, max_duration, "render")


def stream(bundle: Bundle, preset: Preset, events: list[tuple[int, Event]],
           write: Callable[[np.ndarray], None], sample_rate: int = 48000, blocksize: int = 256,
           progress=None, on_block=None, max_duration: float = MAX_DURATION_S) -> dict:
    """Render events through a fresh Engine, block by block: `write(block)` gets each stereo
    float32 [blocksize, 2] block (a buffer reused for the next block: copy what you keep), then
    `on_block(engine, block)` (the feature feed) and `progress(done, estimated total)` blocks.
    Ends TAIL_S after the last event has passed and the last voice has ended. Returns the
    engine's counters, with `frames` written and the output's `peak`.

    Raises SteerpadError for a performance past `max_duration` seconds, RuntimeFailure when a
    render fails (a bounce must hear every render it asks for)."""
    _check_events(events, sample_rate, max_duration)
    events = sorted(events, key=lambda e: e[0])  # stable: same-time events keep their order
    rate, size = int(sample_rate), int(blocksize)
    tail = -(-int(TAIL_S * rate) // size)
    last = events[-1][0] if events else 0
    with Engine(bundle, preset, rate, size) as engine:
        worker = engine.worker  # never started: the bounce renders in this thread, on demand
        block = np.zeros((size, 2), np.float32)
        i = done = quiet = longest = 0
        peak = 0.0
        while quiet < tail:
            start = done * size
            while i < len(events) and events[i][0] < start + size:
                when, event = events[i]
                if isinstance(event, NoteOn):
                    pad = engine.controller.pad_for(event)
                    if pad is not None:  # its render of the knobs as they are now
                        failed = worker.refresh((pad,))
                        if failed:
                            raise RuntimeFailure(f"render: {failed[0]} for the hit at {when / rate:.3f} s; "
                                                 "the bounce stopped and wrote nothing (check the bundle)")
                        if worker.slots[pad] is not None:
                            longest = max(longest, worker.slots[pad].shape[0])
                    engine.handle(event, offset=max(0, when - start))
                else:
                    engine.handle(event)  # knobs move; renders wait for the next hit
                i += 1
            engine.process(block)
            write(block)
            if on_block is not None:
                on_block(engine, block)
            peak = max(peak, float(np.abs(block).max()))
            done += 1
            quiet = quiet + 1 if i == len(events) and engine.mixer.active == 0 else 0
            if progress is not None:
                progress(done, max(done, -(-(last + longest) // size) + tail))
        counters = {"renders": worker.stats.renders, "render_errors": worker.stats.errors,
                    "silent_hits": engine.silent_hits, "unmapped": engine.unmapped,
                    "stolen": engine.mixer.stolen, "choked": engine.mixer.choked,
                    "frames": done * size, "peak": peak}
    return counters


def bounce(bundle: Bundle, preset: Preset, events: list[tuple[int, Event]], sample_rate: int = 48000,
           blocksize: int = 256, progress=None, on_block=None,
           max_duration: float = MAX_DURATION_S) -> tuple[np.ndarray, dict]:
    """stream() kept in memory: stereo float32 [T, 2] and the counters. For short performances
    (tests, scripts); `steerpad render` streams to disk with bounce_to_files()."""
    blocks: list[np.ndarray] = []
    counters = stream(bundle, preset, events, lambda b: blocks.append(b.copy()), sample_rate, blocksize,
                      progress, on_block, max_duration)
    audio = np.concatenate(blocks) if blocks else np.zeros((0, 2), np.float32)
    return audio, counters


class WavOutput:
    """The one place `render --out` opens its output: a WAV written block by block to a new
    temporary file next to `out` (never an existing file), moved over `out` (os.replace) by
    close(), removed by abort(). A write the system refuses is one line: SteerpadError when the
    file cannot be created (a read-only or missing place), RuntimeFailure when writing fails
    (a full disk)."""

    def __init__(self, out: Path, sample_rate: int, subtype: str = "FLOAT", rf64: bool = False):
        self.path = Path(out)
        fd, self._tmp = oscfeed.create_beside(self.path, "--out", "wav")
        try:
            self._file = sf.SoundFile(fd, "w", int(sample_rate), 2, subtype, format="RF64" if rf64 else "WAV",
                                      closefd=True)
        except BaseException as e:  # (a SIGTERM raised here too: the file is ours to remove)
            try:
                os.close(fd)
            except OSError:  # soundfile had taken it
                pass
            self._tmp.unlink(missing_ok=True)
            if isinstance(e, (sf.LibsndfileError, RuntimeError, OSError, ValueError)):
                raise RuntimeFailure(f"--out {self.path}: cannot write a WAV there ({e})") from None
            raise
        self._file.software = SOFTWARE

    def _failed(self, e: Exception) -> RuntimeFailure:
        why = os_reason(e) if isinstance(e, OSError) else _sndfile_reason(self._file, e)
        self.abort()
        return RuntimeFailure(f"--out {self.path}: writing it failed ({why}); free some space or "
                              "choose another place; nothing was written")

    def write(self, block: np.ndarray) -> None:
        try:
            self._file.write(block)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise self._failed(e) from None

    def close(self) -> None:
        try:
            self._file.close()  # writes the header: can fail on a full disk too
            replace_claimed(self._tmp, self.path, "wav", "--out")
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise self._failed(e) from None

    def abort(self) -> None:
        try:
            self._file.close()
        except (sf.LibsndfileError, RuntimeError, OSError):
            pass
        self._tmp.unlink(missing_ok=True)


def _sndfile_reason(file: sf.SoundFile, e: Exception) -> str:
    """libsndfile's own message for its last error on `file` ("System error : No space left on
    device."): LibsndfileError carries only the generic "System error."."""
    try:
        text = sf._ffi.string(sf._snd.sf_strerror(file._file)).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - soundfile internals moved: fall back to its message
        text = ""
    text = text.removeprefix("System error : ").rstrip(".")
    return text or str(e) or type(e).__name__


def bounce_to_files(bundle: Bundle, preset: Preset, events: list[tuple[int, Event]], out: Path,
                    sample_rate: int = 48000, blocksize: int = 256, subtype: str = "FLOAT",
                    features: Path | None = None, sender=None,
                    rate: float = oscfeed.DEFAULT_RATE, label: str = "render", osc_realtime: bool = False,
                    max_duration: float = MAX_DURATION_S):
    """stream() with a progress bar, to the WAV `out` and the feature frames to `features`
    (JSON lines) and/or `sender` (OSC; each frame at its time in the audio with `osc_realtime`)
    -> (counters, the FeatureFile or None). Both files are
    written as the bounce goes and moved into place at the end; a failed bounce leaves neither."""
    from rich.progress import Progress

    _check_events(events, sample_rate, max_duration)
    shot = bundle.max_frames * bundle.hop / bundle.sample_rate
    seconds = (max((t for t, _ in events), default=0) / sample_rate) + shot + TAIL_S + 1.0
    bytes_per_frame = 2 * {"FLOAT": 4, "PCM_24": 3, "PCM_16": 2}.get(subtype, 4)
    wav = file = None
    try:
        rf64 = seconds * sample_rate * bytes_per_frame > WAV_LIMIT_BYTES
        with stops_held():  # both files made and held by their variables before a stop can land
            wav = WavOutput(out, sample_rate, subtype, rf64=rf64)
            file = None if features is None else oscfeed.FeatureFile(features)
        feed = None
        if file is not None or sender is not None:
            feed = oscfeed.BounceFeed(rate, file, sender, realtime=osc_realtime)
        with Progress(transient=True) as bar:
            task = bar.add_task(label, total=None)
            counters = stream(bundle, preset, events, wav.write, sample_rate, blocksize, on_block=feed,
                              progress=lambda done, n: bar.update(task, completed=done, total=n),
                              max_duration=max_duration)
        wav.close()
        if file is not None:
            file.close()
    except BaseException:
        if wav is not None:
            wav.abort()
        if file is not None:
            file.abort()
        raise
    return counters, file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("performance", type=Path, help="a standard MIDI file (.mid)")
    config.add_sound_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="the WAV file to write")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--blocksize", type=int, default=256)
    parser.add_argument("--subtype", default="FLOAT", choices=["FLOAT", "PCM_24", "PCM_16"],
                        help="WAV sample format (FLOAT keeps the render bit-exact)")
    parser.add_argument("--max-duration", type=float, default=MAX_DURATION_S, metavar="SECONDS",
                        help="render performances up to this long (default %(default)g s; a longer "
                             "one is refused)")
    parser.add_argument("--features", type=Path, default=None, metavar="FILE.jsonl",
                        help="also write the feature frames as JSON lines (README: Visualizer feed)")
    parser.add_argument("--osc", nargs="?", const=f"{oscfeed.DEFAULT_HOST}:{oscfeed.DEFAULT_PORT}",
                        default=None, metavar="HOST:PORT",
                        help="also send the frames over OSC while rendering, each at its time in the "
                             "audio (the render keeps pace with them)")
    parser.add_argument("--osc-fast", action="store_true",
                        help="with --osc: send the frames as fast as the render makes them")
    parser.add_argument("--osc-rate", type=float, default=oscfeed.DEFAULT_RATE, metavar="HZ",
                        help="feature frames per second of audio (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    check_audio_options(args.sample_rate, args.blocksize, "render")
    max_duration = check_max_duration(args.max_duration)
    if not args.performance.is_file():
        what = "not a regular file" if args.performance.exists() else "no such MIDI file"
        raise SteerpadError(f"{args.performance}: {what}; give a standard MIDI file (.mid)")
    sender = None if args.osc is None else oscfeed.OscSender(*oscfeed.parse_target(args.osc))
    rate = oscfeed.check_rate(args.osc_rate)
    bundle_dir, preset_path = config.sound_paths(args)
    bundle = load_bundle(bundle_dir)
    preset = load_preset(preset_path)
    # every file the render reads (a pad's sample may be an earlier bounce): refused now, not after
    inputs = (args.performance, bundle_dir, preset_path, *preset.files())
    claim_output(args.out, "wav", inputs=inputs, force=True)
    if args.features is not None:
        claim_output(args.features, "features", option="--features", inputs=(*inputs, args.out), force=True)
    events = read_performance(args.performance, args.sample_rate, preset.controller.cc14, max_duration)
    counters, file = bounce_to_files(bundle, preset, events, args.out, args.sample_rate, args.blocksize,
                                     args.subtype, args.features, sender, rate, max_duration=max_duration,
                                     osc_realtime=not args.osc_fast)
    if file is not None:
        print(f"wrote {args.features}: {file.frames} feature frames at {rate:g} Hz")
    if sender is not None:
        sender.close()
        print(f"sent {sender.sent} OSC messages to {sender}"
              + (f", {sender.errors} not sent ({sender.last_error})" if sender.errors else ""))
    print(f"wrote {args.out}: {counters['frames'] / args.sample_rate:.2f} s, {len(events)} events, "
          f"peak {20 * np.log10(max(counters['peak'], 1e-9)):.1f} dBFS, {counters['renders']} renders")
    return 0
