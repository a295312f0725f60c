"""The visualizer feed's frames: what steerpad sounds like and what it is playing, `rate` times
per audio-second, computed from blocks of its output and the engine's state.

    output blocks ──► AudioMeter (level, centroid, bands, onset) ─┐
    engine ──► EngineTap (new hits, knobs, probe read-out, SAE features) ─┴─► Frame ──► OSC / JSONL

Frames live on the audio's own timeline: frame k covers output samples up to
round((k + 1) * sample_rate / rate), whatever the block size, so a bounce gives the same frames
every time and the live feed gives one frame per 1/rate s of output however its thread is woken.
Values are normalised to 0-1 where that is natural (what TouchDesigner or Resolume expect):

- level: RMS and peak of the frame's samples (both channels) in dBFS, -60..0 dBFS -> 0..1;
- centroid: the spectral centroid of the last `window` samples (mono, Hann), on a log scale,
  20 Hz..20 kHz -> 0..1 (0 below -60 dBFS, where there is nothing to be bright);
- bands: each band's level (its share of the window's power times the window's mean square, in
  dBFS) for descriptors.BANDS (sub, low_mid, high_mid, air), -60..0 dBFS -> 0..1;
- onset: 1 if a new sound started in the frame: a 2.5 ms chunk at least ONSET_RISE_DB above the
  mean power of the ONSET_LOOKBACK_S before it, and above ONSET_FLOOR_DB (then ONSET_HOLD_S
  without another). The frame is the one the chunk ends in, so up to 2.5 ms late.

Nothing here runs on the audio thread: the live feed reads the engine's output ring, a bounce
passes each rendered block.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from steerpad.realtime.descriptors import BANDS, band_matrix

LEVEL_FLOOR_DB = -60.0
"""dBFS mapped to 0 (0 dBFS maps to 1) for level and bands."""
CENTROID_LOW_HZ, CENTROID_HIGH_HZ = 20.0, 20000.0
"""The centroid's log scale: these map to 0 and 1."""
WINDOW_S = 0.04
"""The spectrum's window: the next power of two of this many seconds (2048 samples at 48 kHz)."""
CHUNK_S = 0.0025
ONSET_RISE_DB = 6.0
ONSET_FLOOR_DB = -50.0
ONSET_HOLD_S = 0.05
ONSET_LOOKBACK_S = 0.01
TOP_FEATURES = 8
"""SAE features reported per frame."""
BAND_NAMES = tuple(name for name, _, _ in BANDS)
DIGITS = 5
"""Floats are rounded to this many decimals, so frames print (and compare) the same everywhere."""


def db01(db: float) -> float:
    """dBFS -> 0..1 (LEVEL_FLOOR_DB -> 0, 0 dBFS -> 1, clipped)."""
    return round(min(1.0, max(0.0, 1.0 - db / LEVEL_FLOOR_DB)), DIGITS)


def hz01(hz: float) -> float:
    """Hz -> 0..1 on a log scale (CENTROID_LOW_HZ -> 0, CENTROID_HIGH_HZ -> 1, clipped)."""
    x = math.log(max(hz, CENTROID_LOW_HZ) / CENTROID_LOW_HZ) / math.log(CENTROID_HIGH_HZ / CENTROID_LOW_HZ)
    return round(min(1.0, x), DIGITS)


def _db(mean_square: float) -> float:
    return 10.0 * math.log10(max(mean_square, 1e-12))


class Measure(NamedTuple):
    """An AudioMeter frame: what the output did (0-1 values, see the module docstring)."""

    index: int
    time: float
    rms: float
    peak: float
    centroid: float
    bands: tuple[float, ...]
    onset: int


@dataclass
class Frame:
    """One feed frame. Audio values are 0-1 (see the module docstring); `pads` are the hits since
    the previous frame as (pad 1.., velocity 0-1); `knobs` direction -> position 0-1; `probe`
    descriptor -> predicted bin 0-1 of the newest sounding voice; `features` (SAE feature index,
    magnitude) strongest first, over the sounding voices. Probe and features are empty when no
    voice with an analysis sounds."""

    index: int
    time: float
    """Seconds of output up to the frame's end, on the feed's own timeline."""
    rms: float
    peak: float
    centroid: float
    bands: tuple[float, ...]
    onset: int
    voices: int = 0
    pads: list[tuple[int, float]] = field(default_factory=list)
    knobs: dict[str, float] = field(default_factory=dict)
    probe: dict[str, float] = field(default_factory=dict)
    features: list[tuple[int, float]] = field(default_factory=list)

    def messages(self) -> list[tuple[str, list]]:
        """The frame as OSC messages (address, args), in sending order (the README's scheme)."""
        out: list[tuple[str, list]] = [
            ("/steerpad/level", [self.rms, self.peak]),
            ("/steerpad/centroid", [self.centroid]),
            ("/steerpad/bands", list(self.bands)),
            ("/steerpad/onset", [self.onset]),
            ("/steerpad/voices", [self.voices]),
            ("/steerpad/hits", [pad for pad, _ in self.pads]),
        ]
        for pad, velocity in self.pads:  # one address per pad too: receivers that keep one value
            out += [("/steerpad/pad", [pad, velocity]), (f"/steerpad/pad/{pad}", [velocity])]
        out += [(f"/steerpad/knob/{name}", [pos]) for name, pos in self.knobs.items()]
        out += [(f"/steerpad/probe/{name}", [b]) for name, b in self.probe.items()]
        if self.features:
            out.append(("/steerpad/features", [x for i, m in self.features for x in (i, m)]))
        return out

    def to_json(self) -> dict:
        """One JSON-lines record: the frame's index, time and its OSC messages."""
        return {"frame": self.index, "time": round(self.time, 6),
                "messages": [[address, *args] for address, args in self.messages()]}

    def absorb(self, older: Frame) -> None:
        """Keep an older, unsent frame's events (onset, hits) in this one (a feed catching up)."""
        self.onset = max(self.onset, older.onset)
        self.pads = older.pads + self.pads


class AudioMeter:
    """Cuts stereo blocks [n, 2] into frames of sample_rate / rate samples (see the module
    docstring) and measures them. `push` returns the frames the block completed."""

    def __init__(self, sample_rate: int, rate: float, yield_gil: bool = False):
        """yield_gil: release the GIL (time.sleep(0)) before measuring each frame, so an audio
        callback waiting for it runs at once instead of after this thread's next stretch."""
        if not 0 < rate <= sample_rate / 64:
            raise ValueError(f"rate must be in (0, {sample_rate / 64}] frames/s, got {rate}")
        self.sample_rate, self.rate = int(sample_rate), float(rate)
        self.yield_gil = yield_gil
        self.window = 1 << max(6, math.ceil(math.log2(WINDOW_S * self.sample_rate)))
        self.chunk = max(16, round(CHUNK_S * self.sample_rate))
        self.frames = 0
        """Frames made so far (the next frame's index)."""
        self.consumed = 0
        """Samples assigned to finished frames."""
        self._history = np.zeros(self.window, np.float64)  # the last `window` mono samples
        self._pending = np.zeros((0, 2), np.float64)  # samples of the frame being filled
        self._chunk_left = np.zeros((0, 2), np.float64)  # samples of an unfinished onset chunk
        self._recent = [1e-12] * max(1, round(ONSET_LOOKBACK_S * self.sample_rate / self.chunk))
        self._hold = 0
        self._scanned = 0  # samples run through the onset detector (whole chunks)
        self._onsets: list[int] = []  # sample positions (chunk ends) of onsets not yet framed
        self._hold_chunks = max(1, round(ONSET_HOLD_S * self.sample_rate / self.chunk))
        n = self.window
        self._hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic, as descriptors.py
        self._freqs = np.fft.rfftfreq(n, 1.0 / self.sample_rate)
        self._bands = band_matrix(n, self.sample_rate)

    def spectrum(self, frame: np.ndarray) -> tuple[float, np.ndarray]:
        """Centroid (Hz) and band fractions of one mono frame [window], the same numbers as
        descriptors.spectral_features' `centroid` and `band_*` in a fifth of its time (it also
        computes what the feed does not send, and this runs 60 times a second beside the audio)."""
        f = np.fft.rfft(frame * self._hann)
        power = f.real ** 2 + f.imag ** 2
        bands = power @ self._bands
        centroid = float(power @ self._freqs) / max(float(power.sum()), 1e-20)
        return centroid, bands / max(float(bands.sum()), 1e-20)

    def frame_end(self, index: int) -> int:
        """The sample (on the meter's timeline) at which frame `index` ends."""
        return int(round((index + 1) * self.sample_rate / self.rate))

    def push(self, block: np.ndarray) -> list[Measure]:
        """Feed the next output samples [n, 2]; returns the frames they complete."""
        block = np.asarray(block, np.float64)
        self._scan_onsets(block)
        pending = np.concatenate([self._pending, block]) if self._pending.size else block
        done = []
        while True:
            need = self.frame_end(self.frames) - self.consumed
            if pending.shape[0] < need:
                break
            samples, pending = pending[:need], pending[need:]
            self.consumed += need
            if self.yield_gil:
                time.sleep(0)
            done.append(self._measure(samples))
        self._pending = pending
        return done

    def _measure(self, samples: np.ndarray) -> Measure:
        mono = samples.mean(axis=1)
        n = mono.shape[0]
        if n >= self.window:
            self._history = mono[-self.window:].copy()
        else:
            self._history = np.concatenate([self._history[n:], mono])
        centroid_hz, fractions = self.spectrum(self._history)
        window_ms = float(np.mean(self._history ** 2))
        rms_db = _db(float(np.mean(samples ** 2)))
        peak_db = 20.0 * math.log10(max(float(np.abs(samples).max(initial=0.0)), 1e-6))
        centroid = hz01(centroid_hz) if _db(window_ms) > LEVEL_FLOOR_DB else 0.0
        bands = tuple(db01(_db(float(b) * window_ms)) for b in fractions)
        # An onset belongs to the frame its chunk ends in (push scans before it measures).
        onset = int(bool(self._onsets) and self._onsets[0] <= self.consumed)
        self._onsets = [t for t in self._onsets if t > self.consumed]
        index = self.frames
        self.frames += 1
        return Measure(index, self.consumed / self.sample_rate, db01(rms_db), db01(peak_db), centroid, bands,
                       onset)

    def _scan_onsets(self, block: np.ndarray) -> None:
        """Run the onset detector over the whole chunks the block completes; note where onsets
        are (each chunk's end sample)."""
        samples = np.concatenate([self._chunk_left, block]) if self._chunk_left.size else block
        whole = samples.shape[0] // self.chunk * self.chunk
        if whole:
            energies = np.mean(samples[:whole].reshape(-1, self.chunk * 2) ** 2, axis=1)
            recent = self._recent  # the last chunks' mean squares, a ring
            for e in energies.tolist():
                db = _db(e)
                before = _db(sum(recent) / len(recent))
                recent[self._scanned // self.chunk % len(recent)] = e
                self._scanned += self.chunk
                if self._hold > 0:
                    self._hold -= 1
                elif db > ONSET_FLOOR_DB and db > before + ONSET_RISE_DB:
                    self._onsets.append(self._scanned)
                    self._hold = self._hold_chunks
        self._chunk_left = samples[whole:].copy()


class EngineTap:
    """What the engine is playing, read once per frame (reads only; safe off the audio thread):
    hits since the previous read, knob positions by direction, and, from the render worker's
    per-pad analysis, the probe read-out and strongest SAE features of the sounding voices."""

    def __init__(self, engine, past_hits: bool = False):
        """past_hits: report the hits the engine already holds at the first read too (a bounce's
        feed starts after its first block); else only those after this call."""
        self.engine = engine
        self._last_hit = engine.hits[-1] if engine.hits and not past_hits else None

    def new_hits(self) -> list[tuple[int, float]]:
        """(pad 1.., velocity 0-1) of each hit since the previous call, oldest first."""
        hits = list(self.engine.hits)  # one C-level copy: atomic against the audio thread's append
        start = 0
        for i in range(len(hits) - 1, -1, -1):
            if hits[i] is self._last_hit:
                start = i + 1
                break
        if hits:
            self._last_hit = hits[-1]
        return [(h.pad + 1, round(h.velocity / 127, DIGITS)) for h in hits[start:]]

    def knobs(self) -> dict[str, float]:
        e = self.engine
        return {k.direction: round(float(pos), DIGITS) for k, pos in zip(e.preset.knobs, e.knobs)}

    def sounding(self) -> tuple[int, dict[str, float], list[tuple[int, float]]]:
        """(voices sounding, probe read-out of the newest analysed voice, the TOP_FEATURES
        strongest SAE features over all analysed voices at their current latent frame, each
        feature at its largest magnitude). A voice past its analysis' last frame is left out."""
        voices = self.engine.sounding()
        analyses = self.engine.worker.analysis
        probe: dict[str, float] = {}
        merged: dict[int, float] = {}
        newest = math.inf
        for pad, seconds in voices:
            a = analyses[pad]
            if a is None:
                continue
            j = int(seconds / a.frame_s)
            if not 0 <= j < a.top_index.shape[0]:
                continue
            if seconds < newest:
                newest = seconds
                probe = {name: round(float(bins[j]), DIGITS) for name, bins in a.probe.items()}
            for i, m in zip(a.top_index[j].tolist(), a.top_value[j].tolist()):
                if m > merged.get(i, -math.inf):
                    merged[i] = m
        top = sorted(merged.items(), key=lambda im: (-im[1], im[0]))[:TOP_FEATURES]
        return len(voices), probe, [(int(i), round(float(m), DIGITS)) for i, m in top]


class FeatureStream:
    """AudioMeter + EngineTap: push the engine's output blocks, get whole Frames."""

    def __init__(self, engine, rate: float, past_hits: bool = False, yield_gil: bool = False):
        """past_hits: see EngineTap; yield_gil: see AudioMeter (the live feed, beside the audio
        callback, sets it; measured in bench/bench_live.py: the callback starts 1 ms later at
        p99 without it, 0.3 ms with it)."""
        self.meter = AudioMeter(engine.sample_rate, rate, yield_gil)
        self.tap = EngineTap(engine, past_hits)

    def push(self, block: np.ndarray) -> list[Frame]:
        """Frames the block completes; the engine's state is read once, at the call, and given
        to the last of them (the hits to the first, so a frame never repeats a hit)."""
        measured = self.meter.push(block)
        if not measured:
            return []
        if self.meter.yield_gil:
            time.sleep(0)
        hits, knobs = self.tap.new_hits(), self.tap.knobs()
        voices, probe, features = self.tap.sounding()
        frames = [Frame(*m, voices=voices, knobs=knobs, probe=probe, features=features) for m in measured]
        frames[0].pads = hits
        return frames
