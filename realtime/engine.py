"""The engine: MIDI events in, steered one-shots out, one block at a time.

    rtmidi's queue ──drained at block start──┐
    bounce / any thread ──handle(event)──► note queue ──► process(out) (the audio callback)
                     └── knobs: positions + knob_serial ◄──polled── RenderWorker ──► slots
                                                                  (atomic swaps) ──► ringing voices

Live, the audio callback drains the MIDI input itself at the start of each block (attach_midi),
so a note-on sounds in the block that follows its arrival, with no thread hop to wait for; as a
JACK client (jackio.JackStream) the process callback hands each JACK MIDI event to `handle` at
its own frame offset before calling `process`. A route() splits the voices into per-pad or
per-group stems as well (the JACK client's extra ports).
`handle()` maps an event: a note-on captures its pad's latest finished render and queues it; a
knob or program change stores the knob positions and bumps `knob_serial`: no lock, no array.
The render worker polls the serial (RenderWorker.follow), computes alpha itself, renders the
pads that are sounding first, and publishes each render by a reference swap; at every block the
mixer moves the ringing voices of a pad to its fresh render with a short equal-power crossfade
(VoiceMixer.follow), unless a knob with `affects = "next"` moved since they started.
`process()` is the audio callback's body: it drains the queue, mixes the voices and runs the
master bus, with no lock, I/O, onnxruntime or allocation that grows with the block. The live
stream and the offline bounce both drive this one class.

Shared attributes (one writer each; readers take a snapshot, never a lock):

    attribute                          writer                          readers
    knobs, knob_epoch, knob_serial     callback (handle; offline the   render worker (alpha()),
                                       bounce's thread)                status view
    worker.slots, worker.lineage       render worker (lineage first)   callback (note_on,
                                                                       mixer.follow), capture
    worker._played                     callback (worker.played)        render worker (order)
    mixer voices, _queue, hits,        callback                        render worker
    played, dropped, load, blocks,                                     (ringing_pads), status, OSC
    unmapped, silent_hits
    out_ring, in_ring                  callback (position last)        OSC feed, capture threads
    stems (route(): made before start) callback (mix)                  the callback (JackStream)
    monitor                            key reader / main thread        callback
    capture                            main thread (Capture.start,     callback (handle)
                                       Capture.stop)
    midi (its MidiInput._midiin)       main thread (attach_midi); the  callback (drain)
                                       port watcher swaps a fresh one
    worker.sources                     capture thread (set_source,     render worker
                                       under the worker's lock)
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from steerpad.realtime.bundle import Bundle
from steerpad.realtime.errors import EMPTY, SteerpadError
from steerpad.realtime.events import ControlChange, Event, NoteOn, ProgramChange
from steerpad.realtime.faithful import MODES
from steerpad.realtime.limits import FILE_RATES
from steerpad.realtime.masterbus import MasterBus
from steerpad.realtime.presets import Preset, check_preset
from steerpad.realtime.renderer import PadSound, RenderWorker
from steerpad.realtime.ring import AudioRing
from steerpad.realtime.voices import VoiceMixer

OUT_RING_S = 2
"""Seconds of output kept for the visualizer feed."""
IN_RING_S = 20
"""Seconds of live input kept for capture (a one-shot plus its pre-roll fits many times)."""
QUEUE = 1024
"""Note-ons waiting for the next block; more than this in one block are dropped (and counted)."""
LOAD_RING = 4096
"""Callback durations kept for the load statistics (~11 s of 128-frame blocks at 48 kHz)."""


@dataclass
class Hit:
    pad: int
    velocity: int
    time: float


def load_pad_sources(bundle: Bundle, preset: Preset) -> list[PadSound | None]:
    """Each preset pad's PadSound in its render mode: a bundle kit entry (its latents, and its
    audio when the bundle carries it), or an audio file (its audio as read, and its latents
    through the bundle's encoder)."""
    sources: list[PadSound | None] = [None] * len(preset.controller.pad_notes)
    kit = {e.name: e for e in bundle.kit}
    for pad in preset.pads:
        mode = preset.pad_mode(pad, bundle.default_mode)
        if pad.kind == "kit":
            e = kit[pad.sample]
            audio = None if e.audio is None else np.ascontiguousarray(e.audio.T)
            sources[pad.index] = PadSound(e.latents, audio, bundle.sample_rate, mode)
        else:
            where = f"{preset.path}: pads[{pad.index + 1}].sample"
            sources[pad.index] = load_file_sound(bundle, Path(pad.sample), mode, where)
    return sources


READ_CHUNK = 1 << 20
"""Samples (frames x channels) read from a one-shot file at a time: its channels are mixed down
chunk by chunk, so a file with many channels takes no more memory than a stereo one."""
RESAMPLE_MARGIN_S = 0.05
"""Read this much more than the one-shot length, so the resampler's edge falls past the cut."""


FILE_PEAK_MAX = 1000.0
"""A pad file's samples may reach this (a float file may run hot; +60 dB over full scale is no
one-shot: its squares overflow float32 in the encoder's STFT)."""


def read_one_shot(path: Path, seconds: float, channels: int, where: str = "") -> tuple[np.ndarray, int]:
    """The first `seconds` of an audio file as float32 [T, channels] (mixed down or spread to
    `channels`) and its sample rate; only that much is read, whatever the file's length. Only a
    regular file is opened (a FIFO or a device would block, a folder cannot be read)."""
    name = f"{where} {path}" if where else str(path)
    fix = "point it at a WAV, FLAC or OGG one-shot"
    try:
        st = os.stat(path)  # follows links: a link loop fails here (ELOOP)
    except (OSError, ValueError) as e:
        raise SteerpadError(f"{name}: cannot open it ({getattr(e, 'strerror', None) or e}); {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SteerpadError(f"{name}: not a regular file (a folder, FIFO or device); {fix}")
    if st.st_size == 0:
        raise SteerpadError(f"{name}: {EMPTY}; {fix}")
    try:
        with sf.SoundFile(os.fsencode(path)) as f:  # bytes: any file name, UTF-8 or not
            rate = f.samplerate
            if not FILE_RATES[0] <= rate <= FILE_RATES[1]:
                raise SteerpadError(f"{name}: sample rate {rate} Hz is out of range ({FILE_RATES[0]}-"
                                    f"{FILE_RATES[1]} Hz); {fix}")
            need, step = int(np.ceil(seconds * rate)), max(1, READ_CHUNK // f.channels)
            parts, got = [], 0
            while got < need:
                chunk = f.read(min(step, need - got), dtype="float32", always_2d=True)
                if chunk.shape[0] == 0:
                    break
                if chunk.shape[1] != channels:
                    chunk = np.repeat(chunk.mean(axis=1, keepdims=True), channels, axis=1)
                parts.append(chunk)
                got += chunk.shape[0]
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise SteerpadError(f"{name}: cannot read this audio file ({e}); {fix}") from None
    audio = np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)
    return audio, rate


def load_file_sound(bundle: Bundle, path: Path, mode: str, where: str = "") -> PadSound:
    """A one-shot file as a pad sound: its first max_frames * hop / bundle rate seconds as read
    (only that part of the file is read; the file's own rate, the bundle's channel count), and
    their latents through the bundle's encoder. `where` names the setting that gave the path
    (e.g. "preset.toml: pads[3].sample") in errors."""
    length = bundle.max_frames * bundle.hop
    audio, rate = read_one_shot(path, length / bundle.sample_rate + RESAMPLE_MARGIN_S, bundle.channels,
                                where)
    if audio.shape[0] == 0 or not np.isfinite(audio).all() or np.abs(audio).max() > FILE_PEAK_MAX:
        name = f"{where} {path}" if where else str(path)
        raise SteerpadError(f"{name}: the audio is empty, not finite or peaks above {FILE_PEAK_MAX:g} "
                            "(+60 dB over full scale); use another one-shot")
    try:
        latents = bundle.latents_of(audio, rate)
    except ValueError as e:
        name = f"{where} {path}" if where else str(path)
        raise SteerpadError(f"{name}: {e}; use another one-shot") from None
    plays = np.ascontiguousarray(audio[:int(np.ceil(length * rate / bundle.sample_rate))], np.float32)
    return PadSound(latents, plays, rate, mode)


def encode_file(bundle: Bundle, path: Path, where: str = "") -> np.ndarray:
    """Latents [D, N] of one audio file through the bundle's encoder (see load_file_sound)."""
    return load_file_sound(bundle, path, "resynth", where).latents


class Engine:
    """Plays `preset` with `bundle` at `sample_rate`, `blocksize` frames per block, stereo out."""

    def __init__(self, bundle: Bundle, preset: Preset, sample_rate: int, blocksize: int,
                 master: bool = True, input_channels: int = 0):
        check_preset(preset, bundle.direction_names(), [e.name for e in bundle.kit])
        self.bundle, self.preset = bundle, preset
        self.sample_rate, self.blocksize = int(sample_rate), int(blocksize)
        self.controller = preset.controller
        n_pads = len(self.controller.pad_notes)
        self.worker = RenderWorker(bundle, load_pad_sources(bundle, preset), self.sample_rate)
        self.mixer = VoiceMixer(n_pads, self.blocksize, polyphony=preset.polyphony,
                                velocity_curve=preset.velocity_curve)
        chokes: dict[str, int] = {}
        for pad in preset.pads:
            group = -1 if pad.choke is None else chokes.setdefault(pad.choke, len(chokes))
            self.mixer.set_pad(pad.index, gain_db=pad.gain_db, pan=pad.pan, choke=group)
        self.master = MasterBus(self.sample_rate, self.blocksize) if master else None
        self._dir_index = {name: i for i, name in enumerate(bundle.direction_names())}
        self.knobs = [k.initial for k in preset.knobs]
        """Knob positions 0-1, in preset knob order."""
        self._queue: deque[tuple[int, int, np.ndarray, int, int]] = deque()
        self.hits: deque[Hit] = deque(maxlen=64)
        """Recent pad hits (for the status view)."""
        self.played = 0
        """Note-ons that started a voice."""
        self.dropped = 0
        self.silent_hits = 0
        """Hits on a pad that had no render yet (nothing to play)."""
        self.unmapped = 0
        self.load = np.zeros(LOAD_RING)
        """Callback durations in seconds, a ring; `blocks` counts how many were written."""
        self.blocks = 0
        self.midi = None
        """A MidiInput made with handler=None, drained at the start of every block (attach_midi)."""
        self.out_ring = AudioRing(OUT_RING_S * self.sample_rate, 2)
        """Every output block, for the visualizer feed (read off the audio thread)."""
        self.input_channels = int(input_channels)
        self.in_ring = AudioRing(IN_RING_S * self.sample_rate, max(1, self.input_channels))
        """Every input block (full duplex), for capture (read off the audio thread)."""
        self.monitor = False
        """Mix the live input into the output (before the master bus)."""
        self.capture = None
        """A Capture (capture.py) or None: sees every event first, to catch its arm presses."""
        self._knob_scales = [(i, tuple(self.bundle.directions[i].scale(m) for m in MODES))
                             for i in (self._dir_index[k.direction] for k in self.preset.knobs)]
        """Per preset knob: its direction's index and knob scale per render mode (looked up once)."""
        self.knob_serial = 0
        """Bumped after every knob write (set_knob, recall): the render worker polls it and computes
        alpha itself, so a knob CC in the callback takes no lock and builds no array."""
        self.knob_epoch = 0
        """Bumped when a knob with `affects = "next"` moves (before knob_serial): renders of a
        newer epoch never reach a voice that started before it (VoiceMixer.follow)."""
        self._affects_next = [k.affects == "next" for k in preset.knobs]
        self.stems: np.ndarray | None = None
        """[buses, blocksize, 2]: each block's pad voices split by bus (route()), before the
        master bus; None: no stems (the default)."""
        self.worker.follow(self)

    def route(self, bus_of_pad: list[int], buses: int) -> None:
        """Split every block's voices into `buses` stems (Engine.stems) as well: pad p's voices go
        to stem bus_of_pad[p] (-1: none), after pad gain, pan and velocity, before the master bus
        (so no limiter). Call before start()."""
        if len(bus_of_pad) != self.mixer.n_pads or not all(-1 <= b < buses for b in bus_of_pad):
            raise ValueError(f"bus_of_pad must give each of {self.mixer.n_pads} pads a bus < {buses} or -1")
        for pad, bus in enumerate(bus_of_pad):
            self.mixer.set_bus(pad, bus)
        self.stems = np.zeros((buses, self.blocksize, 2), np.float32)

    # ------------------------------------------------------------ lifecycle

    def start(self, wait: float | None = None) -> bool:
        """Start the render worker; wait up to `wait` s (None = forever) for the first renders
        and their analyses."""
        self.worker.start()
        return self.worker.wait_fresh(wait, analysed=True) if wait != 0 else False

    def close(self) -> None:
        self.worker.stop()
        if self.master is not None:
            self.master.close()
            self.master = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ control (callback, bounce)

    def alpha(self) -> np.ndarray:
        """The alpha vectors for the current knob positions: [MODES, K], one row per render mode
        (each mode has its own calibrated knob scales), bundle direction order."""
        a = np.zeros((len(MODES), len(self._dir_index)), np.float32)
        for knob, pos, (k, scales) in zip(self.preset.knobs, self.knobs, self._knob_scales):
            u = knob.share(pos)
            for m, scale in enumerate(scales):
                a[m, k] += scale.alpha(u)
        return a

    def handle(self, event: Event, offset: int = 0) -> None:
        """Apply one MIDI event. A note-on sounds at `offset` frames into the next block."""
        if self.capture is not None and self.capture.on_event(event):
            return  # an arm press
        if isinstance(event, NoteOn):
            pad = self.controller.pad_for(event)
            if pad is None:
                self.unmapped += 1
                return
            self.note_on(pad, event.velocity, offset)
        elif isinstance(event, ControlChange):
            knob = self.controller.knob_for(event)
            if knob is None or knob >= len(self.knobs):
                self.unmapped += 1
                return
            self.set_knob(knob, self.controller.knob_value(self.knobs[knob], event))
        elif isinstance(event, ProgramChange):
            ch = self.controller.program_channel
            snapshot = self.preset.snapshots.get(event.program)
            if snapshot is None or (ch is not None and event.channel != ch):
                self.unmapped += 1
                return
            self.recall(snapshot)
        # NoteOff: one-shots play to their end (a choke group or a steal stops them)

    def attach_midi(self, midi) -> None:
        """Drain `midi` (a MidiInput made with handler=None) at the start of every block: a
        note-on starts its voice in the very block that drains it."""
        self.midi = midi

    def note_on(self, pad: int, velocity: int, offset: int = 0) -> None:
        audio = self.worker.slots[pad]  # the render, then its lineage (published the other way round)
        lineage = self.worker.lineage[pad]
        if audio is None:
            self.silent_hits += 1
            return
        if len(self._queue) >= QUEUE:
            self.dropped += 1
            return
        self._queue.append((pad, velocity, audio, offset, lineage))

    def set_knob(self, knob: int, position: float) -> None:
        """Store a knob position and bump knob_serial: no lock, no array (the audio callback calls
        it for every knob CC); the render worker notices within RenderWorker.POLL_S."""
        self.knobs[knob] = min(1.0, max(0.0, float(position)))
        if self._affects_next[knob]:
            self.knob_epoch += 1
        self.knob_serial += 1

    def recall(self, snapshot: dict[str, float]) -> None:
        """Set knobs by direction name (a program-change snapshot), as set_knob does."""
        nxt = False
        for i, knob in enumerate(self.preset.knobs):
            if knob.direction in snapshot:
                self.knobs[i] = min(1.0, max(0.0, float(snapshot[knob.direction])))
                nxt = nxt or self._affects_next[i]
        if nxt:
            self.knob_epoch += 1
        self.knob_serial += 1

    # ------------------------------------------------------------ the audio callback

    def process(self, out: np.ndarray, inp: np.ndarray | None = None) -> None:
        """Fill out [frames, 2] float32 (frames <= blocksize) with the next block; `inp`
        [frames, input_channels] is the live input of the same block (full duplex), or None."""
        t0 = time.perf_counter()
        queue, mixer = self._queue, self.mixer
        if self.midi is not None:
            self.midi.drain(self.handle)
        while queue:
            pad, velocity, audio, offset, lineage = queue.popleft()
            mixer.note_on(pad, velocity, audio, offset, lineage)
            self.worker.played(pad)
            self.hits.append(Hit(pad, velocity, t0))
            self.played += 1
        mixer.follow(self.worker.slots, self.worker.lineage)  # ringing notes take fresh renders
        mixer.mix(out, self.stems)
        if inp is not None:
            self.in_ring.write(inp)
            if self.monitor:
                self._monitor_mix(out, inp)
        if self.master is not None:
            self.master.process(out)
        self.out_ring.write(out)
        self.load[self.blocks % LOAD_RING] = time.perf_counter() - t0
        self.blocks += 1

    @staticmethod
    def _monitor_mix(out: np.ndarray, inp: np.ndarray) -> None:
        """out += the input (a mono input on both sides), column by column: same-shape adds in
        place, where a broadcasting one would allocate a block-sized temporary."""
        last = inp.shape[1] - 1
        for c in range(2):
            np.add(out[:, c], inp[:, min(c, last)], out=out[:, c])

    def ringing_pads(self) -> set[int]:
        """The pads with a sounding voice (the render worker renders them first): a snapshot
        from any thread, without locks."""
        return {pad for pad, _ in self.mixer.sounding()}

    def sounding(self) -> list[tuple[int, float]]:
        """(pad, seconds since that voice started) for every sounding voice; for displays and
        the visualizer feed, from any thread (a snapshot without locks)."""
        return [(pad, pos / self.sample_rate) for pad, pos in self.mixer.sounding()]

    def load_stats(self) -> dict[str, float]:
        """Callback time p50 / p99 / max in ms and as a share of the block period."""
        n = min(self.blocks, LOAD_RING)
        if n == 0:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "p99_load": 0.0}
        t = self.load[:n] * 1e3
        period = self.blocksize / self.sample_rate * 1e3
        p50, p99 = np.percentile(t, [50, 99])
        return {"p50_ms": float(p50), "p99_ms": float(p99), "max_ms": float(t.max()),
                "p99_load": float(p99 / period)}
