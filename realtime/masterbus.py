"""The master bus: a lookahead limiter through pyo, run block by block inside our audio callback.

pyo runs in "manual" mode: no audio device of its own. `process(block)` copies the block into
the pyo server's input buffer, computes one buffer (`Server.process()`), and copies the result
back. The signal path, per block of `blocksize` frames:

    input ──────────────────────── SDelay(lookahead) ──× gain ── Clip(±ceiling) ── output
      └─ max |channel| ── Compress(outputAmp) ── Tone ─┘
                                                   └──────────────── extra output channel (meter)

- Detection is linked across channels (the loudest channel sets one gain), so the stereo image
  does not move under limiting.
- Compress follows the peak level with an instant rise (risetime 1 us) and a 50 ms release, and
  outputs the gain that holds the level at `ceiling_db - 1 dB` (ratio 100, hard knee).
- Tone (a one-pole low-pass at sr * 5 / (2 pi L)) turns the gain's instant drop into a ramp
  that is 99% there after the L lookahead samples (time constant L / 5), so the gain is down
  before the delayed peak arrives and the drop does not click.
- Clip at the ceiling is the last guard: the output never exceeds `ceiling_db` (sample peak).
  `clipped` counts the blocks where it had work to do (the limiter alone let a peak through).
  pyo multiplies its whole output by the server's fade-in gain, which settles near, not at, 1
  (float rounding: -7.7e-7 at 48 kHz, +6.2e-6 at 96 kHz), so the Clip sits CLIP_SLACK
  (1e-4, 0.0009 dB) under the ceiling.

Latency: the delay L = round(0.5 ms * sample_rate) samples (`latency`: 24 at 48 kHz, 22 at
44.1 kHz), measured with an impulse in tests/realtime/test_masterbus.py, and at most half a block (tiny
blocks shorten the lookahead), so a note mixed into block n still starts in block n. With
`limiter=False` only the Clip runs (latency 0). An offline render that wants its last `latency`
samples appends that much silence.

pyo facts this module relies on (pyo 1.1, verified in the tests):
- pyo keeps one "current" server per process, and new pyo objects attach to the newest one, so
  one MasterBus may be open at a time (a second raises RuntimeError). `close()` stops and shuts
  the server down and drops every reference to it, which frees its slot; a new MasterBus can
  then boot a fresh server in the same process.
- `Server.process()` takes the GIL itself and has no thread affinity: it may run on the audio
  thread although the server booted elsewhere. One thread at a time, as with any block.
- The server fades its output in over its first 5 ms; the constructor runs silent blocks past
  that fade, so the first real block already has unity gain.
- `midi="portmidi"` plus `deactivateMidi()` opens no MIDI at all (an unknown name such as "none"
  falls back to portmidi with an "Unknown midi type" warning); verbosity 1 keeps pyo to errors.
- `import pyo` prints a wxPython notice unless PYO_GUI_WX=0 is set first (set here if unset);
  pyo is imported lazily, by the first MasterBus, because the import takes ~0.1 s.
"""

from __future__ import annotations

import builtins
import ctypes
import math
import os
import threading
import weakref

import numpy as np

LOOKAHEAD_S = 0.0005
"""The limiter's lookahead (and so its latency), rounded to whole samples."""
MARGIN_DB = 1.0
"""The limiter holds peaks this far under the ceiling, so its ramped gain rarely needs the Clip."""
RATIO = 100.0
CLIP_SLACK = 1e-4
RELEASE_S = 0.05
ATTACK_STEPS = 5.0
"""The gain ramp's time constant is the lookahead / ATTACK_STEPS (99.3% of the way in time)."""
METER_FALL_DB_PER_S = 20.0
"""The meters hold their peak and fall this fast, so a GUI polling a few times a second sees
every limiting event."""

_guard = threading.Lock()
_open: weakref.ref[MasterBus] | None = None


def _import_pyo():
    os.environ.setdefault("PYO_GUI_WX", "0")  # no "WxPython is not found" notice on import
    import pyo

    if hasattr(builtins, "pyo_use_double"):
        raise RuntimeError("MasterBus needs pyo's single-precision build; pyo64 is loaded")
    return pyo


def _float_view(address: str, n: int) -> np.ndarray:
    """A float32 numpy view of n floats at a hex address from pyo (getInputAddr/getOutputAddr)."""
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(int(address, 16)))


class MasterBus:
    """The limiter on the master output; see the module docstring.

    `process(block)` runs on the audio thread. Meters, plain floats readable from any thread:
    `gain_reduction_db` (>= 0) and `peak_db` (output sample peak, dBFS), each the largest value
    of recent blocks falling at METER_FALL_DB_PER_S; counters `clipped` (blocks the final Clip
    touched) and `dropped` (blocks asked for after close(), answered with silence).
    """

    def __init__(self, sample_rate: int, blocksize: int, channels: int = 2, ceiling_db: float = -0.3,
                 limiter: bool = True) -> None:
        global _open
        self._process = None
        for name, value in (("sample_rate", sample_rate), ("blocksize", blocksize), ("channels", channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not -60.0 <= ceiling_db <= 0.0:
            raise ValueError(f"ceiling_db must be in -60..0 dBFS, got {ceiling_db}")
        self.sample_rate, self.blocksize, self.channels = int(sample_rate), int(blocksize), int(channels)
        self.ceiling_db, self.limiter = float(ceiling_db), bool(limiter)
        if blocksize < 16:
            raise ValueError(f"blocksize must be at least 16 frames, got {blocksize}")
        self.ceiling = float(np.float32(10.0 ** (ceiling_db / 20.0)))
        self.latency = min(round(LOOKAHEAD_S * sample_rate), blocksize // 2) if limiter else 0
        with _guard:
            if _open is not None and _open() is not None:
                raise RuntimeError("a MasterBus is already open in this process (pyo runs one server at a "
                                   "time); close() it before creating another")
            self._boot()
            _open = weakref.ref(self)
        self.gain_reduction_db = 0.0
        self.peak_db = -120.0
        self.clipped = 0
        self.dropped = 0
        self._fall = METER_FALL_DB_PER_S * blocksize / sample_rate
        self._amp = 1.0
        silence = np.zeros((blocksize, channels), np.float32)
        for _ in range(int(0.005 * sample_rate) // blocksize + 2):  # past the server's 5 ms fade-in
            self.process(silence)
        # The meter channel carries gain * the server's settled output gain (see CLIP_SLACK).
        self._amp = float(self._out[-1, channels]) if limiter else 1.0
        self.gain_reduction_db, self.peak_db = 0.0, -120.0

    def _boot(self) -> None:
        pyo = _import_pyo()
        sr, bs, ch = self.sample_rate, self.blocksize, self.channels
        server = pyo.Server(sr=sr, nchnls=ch + 1, ichnls=ch, buffersize=bs, duplex=1, audio="manual",
                            midi="portmidi", verbosity=1)
        server.deactivateMidi()
        server.boot()
        server.start()
        inp = pyo.Input(chnl=list(range(ch)))
        objects = [inp]
        if self.limiter:
            level = pyo.Abs(inp[0])
            for c in range(1, ch):
                level = pyo.Max(level, pyo.Abs(inp[c]))
            # With outputAmp, Compress outputs the gain for the undelayed input (its own lookahead
            # only delays the signal it would output), so the signal's delay is SDelay's. SDelay
            # floors its time to whole samples: aim half a sample over.
            gain = pyo.Compress(level, thresh=self.ceiling_db - MARGIN_DB, ratio=RATIO, risetime=1e-6,
                                falltime=RELEASE_S, lookahead=0.0, knee=0, outputAmp=True)
            ramp = pyo.Tone(gain, freq=sr * ATTACK_STEPS / (2.0 * math.pi * self.latency))
            look = (self.latency + 0.5) / sr
            delayed = pyo.SDelay(inp, delay=look, maxdelay=2 * look)
            limited = delayed * ramp
            ramp.out(ch)
            objects += [level, gain, ramp, delayed, limited]
        else:
            limited = inp
        bound = self.ceiling * (1.0 - CLIP_SLACK)
        objects.append(pyo.Clip(limited, -bound, bound).out())
        self._server, self._objects = server, objects
        self._process = server._server.process   # the C method: no Python wrapper per block
        self._in = _float_view(server.getInputAddr(), bs * ch).reshape(bs, ch)
        self._out = _float_view(server.getOutputAddr(), bs * (ch + 1)).reshape(bs, ch + 1)
        self._out_sig = self._out[:, :ch]

    def process(self, block: np.ndarray) -> None:
        """Limit `block` ([frames, channels] float32) in place. Any frame count works; a last
        piece shorter than `blocksize` is padded with zeros (use that for the end of a render:
        the pad enters pyo's timeline)."""
        proc = self._process  # held for the call: keeps pyo's server, and so its buffers, alive
        if proc is None:
            block.fill(0.0)
            self.dropped += 1
            return
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"block must be [frames, {self.channels}], got shape {block.shape}")
        bs = self.blocksize
        if block.shape[0] == bs:
            self._in[:] = block
            proc()
            block[:] = self._out_sig
            self._meter(block, bs)
            return
        for start in range(0, block.shape[0], bs):
            piece = block[start:start + bs]
            n = piece.shape[0]
            self._in[:n] = piece
            self._in[n:] = 0.0
            proc()
            piece[:] = self._out_sig[:n]
            self._meter(piece, n)

    def _meter(self, piece: np.ndarray, n: int) -> None:
        """Update the meters and `clipped` from an output piece of n frames. Gain reduction is
        read at the piece's last frame: the gain only rises at the 50 ms release, so that
        reads at most ~5% (of the dB value) under the piece's deepest reduction."""
        peak = max(float(piece.max()), -float(piece.min()))
        if peak >= self.ceiling * (1.0 - 2.0 * CLIP_SLACK):
            self.clipped += 1
        self.peak_db = max(20.0 * math.log10(max(peak, 1e-6)), self.peak_db - self._fall)
        if self.limiter:
            gain = min(max(float(self._out[n - 1, self.channels]) / self._amp, 1e-6), 1.0)
            self.gain_reduction_db = max(-20.0 * math.log10(gain), self.gain_reduction_db - self._fall)

    def close(self) -> None:
        """Stop and shut down the pyo server and release it, so another MasterBus can be made.
        Stop the audio stream first: a process() racing close() finishes its block safely, later
        ones return silence (`dropped`)."""
        global _open
        with _guard:
            if self._process is None:
                return
            self._process = None
            server, self._server, self._objects = self._server, None, None
            server.stop()
            server.shutdown()
            del server     # pyo frees the server and its slot once no process() call holds it
            if _open is not None and _open() is self:
                _open = None

    def __enter__(self) -> MasterBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
