"""Live capture: resample a hit from the audio input into a pad, playable and steerable at once.

    audio callback ──every input block──► engine.in_ring ──► capture thread: HitDetector
    MIDI arm press ──Engine.handle → on_event (counters)──┘     (onset, pre-roll, end on silence
    status-view keys ──arm() / disarm()──────────────────┘       or at the one-shot length)
        → WAV in the kit folder → soxr to the bundle rate → bundle.encode → .npy beside the WAV
        → worker.set_source(pad): rendered with the current knobs, playable when published

Arming, with one hand: an arm press (the preset's [capture] `arm_note` or `arm_cc`, or `r` in the
status view) arms the pad hit last; hitting a pad while armed moves the arm to that pad, so "hit
the pad, then press arm" and "press arm, then hit the pad" both work. A second MIDI arm press
cancels. The next onset on the input (the first sample above `threshold_db`) is captured from
`pre_roll_ms` before it until the input stays below `silence_db` for `hold_ms`, or for the
bundle's one-shot length at most.

The audio callback only writes the ring and, through on_event, stores counters; reading the ring,
detection, soxr, onnxruntime and file writes all run on the capture thread. The WAV is written
before encoding, so a failing encoder never loses a take; a failing capture or encode keeps the
pad's previous sound and is reported (`errors`, the status view). Files are never overwritten.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import re
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, Event, NoteOn
from steerpad.realtime.onset import TAIL_MS, HitDetector, Take
from steerpad.realtime.presets import CaptureSpec
from steerpad.realtime.renderer import PadSound
from steerpad.realtime.service import Service

POLL_S = 0.003
"""How often the capture thread reads the input ring (and checks arm presses)."""
FADE_IN_MS = 1.0
"""A fade over the start of the pre-roll (noise floor only, never the attack)."""
RENDER_TIMEOUT_S = 60.0


# ---------------------------------------------------------------- files


def default_kit_dir(preset_name: str) -> Path:
    """$XDG_DATA_HOME/steerpad/kits/<preset name> (XDG_DATA_HOME defaults to ~/.local/share)."""
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", preset_name).strip("._") or "preset"
    return base / "steerpad" / "kits" / name


def _place(tmp: Path, dest: Path) -> None:
    """Give the finished file `tmp` the name `dest`, unless dest exists (FileExistsError)."""
    try:
        os.link(tmp, dest)  # atomic, and refuses an existing name
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links (FAT, some network shares)
        f = open(dest, "xb")  # refuses an existing name too
        try:
            with f:
                f.write(tmp.read_bytes())
        except BaseException:
            dest.unlink(missing_ok=True)  # ours, half written: never leave it under the name
            raise


def save_take(folder: Path, stem: str, audio: np.ndarray, rate: int) -> Path:
    """Write audio [T, C] as folder/<stem>.wav (32-bit float), or <stem>-2.wav, -3 ...: the first
    name free for both the .wav and its .npy. Never overwrites a file; never leaves a half one."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".wav.part")
    os.close(fd)
    tmp = Path(name)
    try:
        sf.write(str(tmp), audio, rate, subtype="FLOAT", format="WAV")
        for i in itertools.count(1):
            wav = folder / f"{stem if i == 1 else f'{stem}-{i}'}.wav"
            if wav.with_suffix(".npy").exists():
                continue
            try:
                _place(tmp, wav)
                return wav
            except FileExistsError:
                continue
    finally:
        tmp.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def save_latents(wav: Path, latents: np.ndarray) -> Path:
    """Write latents [D, N] beside `wav` as <stem>.npy (refusing an existing file)."""
    fd, name = tempfile.mkstemp(dir=wav.parent, prefix=f".{wav.stem}.", suffix=".npy.part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, latents)
        npy = wav.with_suffix(".npy")
        _place(tmp, npy)
        return npy
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- the capture thread


@dataclass
class CaptureResult:
    pad: int
    wav: Path | None
    """The take as heard (input rate and channels); None if it could not be saved."""
    npy: Path | None
    seconds: float
    ended: str
    ring_start: int = 0
    """The take's first frame, counted as engine.in_ring counts (`written`)."""
    end_to_source_ms: float = math.nan
    """End detected -> latents handed to the render worker (save, resample, encode)."""
    encode_ms: float = math.nan
    end_to_playable_ms: float = math.nan
    """End detected -> the pad's render of the capture published (playable)."""
    error: str = ""


class Capture(Service):
    """Captures hits from `engine`'s input into its pads (see the module docstring). start()
    attaches it to the engine (engine.capture) and starts the thread; stop() undoes both."""

    def __init__(self, engine, spec: CaptureSpec, kit_dir: Path, poll_s: float = POLL_S):
        if engine.input_channels < 1:
            raise SteerpadError("capture needs live input: start steerpad live with --input")
        self.engine, self.spec, self.kit_dir, self.poll_s = engine, spec, Path(kit_dir), poll_s
        self.ring, self.rate = engine.in_ring, engine.sample_rate
        b = engine.bundle
        self.max_frames = math.ceil(b.max_frames * b.hop * self.rate / b.sample_rate)
        """The longest take at the input rate: the bundle's one-shot length."""
        n = len(engine.controller.pad_notes)
        self.state: tuple[str, int | None] = ("idle", None)
        """("idle" | "armed" | "recording" | "encoding", pad)."""
        self.rendering: frozenset[int] = frozenset()
        """Pads whose capture is encoded and waits for its first render."""
        self.names = [""] * n
        """Per pad: a short label for its capture ('' = the preset's sound)."""
        self.errors = [""] * n
        self.last_error = ""
        self.results: deque[CaptureResult] = deque(maxlen=64)
        self.takes = 0
        self.completed = 0
        """Takes fully handled (playable, or failed)."""
        self.level_db = -math.inf
        """Input peak level, falling back 60 dB/s (for the meter)."""
        self._done = threading.Condition()
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        # Written by the audio thread only (on_event): plain stores.
        self._presses = self._press_hits = self._press_at = 0
        self._hits = self._last_pad = 0
        self._arm_note, self._arm_cc, self._channel = spec.arm_note, spec.arm_cc, spec.channel
        super().__init__()

    thread_name = "steerpad-capture"

    # ------------------------------------------------------------ control

    def start(self) -> Capture:
        try:
            self.kit_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SteerpadError(f"capture kit folder {self.kit_dir}: cannot create it ({e.strerror or e}); "
                                "pass --kit-dir a writable folder") from None
        self.engine.capture = self
        return super().start()

    def stop(self) -> None:
        super().stop()
        if self.engine.capture is self:
            self.engine.capture = None

    def arm(self, pad: int | None = None) -> None:
        """Arm `pad` (0 = pad 1), or the last-hit pad; already armed: move the arm. Any thread."""
        if pad is not None and not 0 <= pad < len(self.names):
            raise ValueError(f"pad index must be 0-{len(self.names) - 1}, got {pad}")
        self._commands.put(("arm", pad, self.ring.written, self._hits))

    def disarm(self) -> None:
        self._commands.put(("disarm", None, 0, 0))

    def on_event(self, event: Event) -> bool:
        """The audio thread (Engine.handle): note pad hits and arm presses, stores only. True =
        the event was the arm control (consumed)."""
        if isinstance(event, NoteOn):
            if event.note == self._arm_note and (self._channel is None or event.channel == self._channel):
                self._press()
                return True
            pad = self.engine.controller.pad_for(event)
            if pad is not None:
                self._last_pad = pad
                self._hits += 1
        elif (isinstance(event, ControlChange) and event.control == self._arm_cc
              and (self._channel is None or event.channel == self._channel)):
            if event.value >= 0.5:  # a press (127); its release (0) is consumed too
                self._press()
            return True
        return False

    def _press(self) -> None:
        self._press_at, self._press_hits = self.ring.written, self._hits
        self._presses += 1

    def pad_state(self, pad: int) -> str:
        """'armed', 'recording', 'encoding' or '' (for the status view)."""
        what, p = self.state
        if p == pad and what != "idle":
            return what
        return "encoding" if pad in self.rendering else ""

    def summary(self) -> str:
        what, pad = self.state
        level = "-inf" if self.level_db == -math.inf else f"{self.level_db:.0f}"
        parts = [f"{self.engine.input_channels} ch · level {level} dBFS · monitor "
                 f"{'on' if self.engine.monitor else 'off'}"]
        if what != "idle":
            parts.append(f"{what} pad {pad + 1}")
        if self.results:
            r = self.results[-1]
            where = r.wav.name if r.wav is not None else "not saved"
            ready = "" if math.isnan(r.end_to_playable_ms) else f", playable in {r.end_to_playable_ms:.0f} ms"
            parts.append(f"last: pad {r.pad + 1} ← {where} ({r.seconds:.2f} s{ready})")
        parts.append(f"kit {self.kit_dir}")
        return " · ".join(parts)

    def wait_completed(self, count: int, timeout: float | None = None) -> bool:
        """Block until `count` takes are fully handled (playable or failed), or timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.completed >= count, timeout)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        pos = self.ring.written
        presses, hits = self._presses, self._hits
        detector: HitDetector | None = None
        pad = 0
        waiting: list[tuple[CaptureResult, np.ndarray, float, int, float]] = []
        while not self._stopping.wait(self.poll_s):
            try:
                commands = []
                while not self._commands.empty():
                    commands.append(self._commands.get())
                if self._presses != presses:  # MIDI arm presses: each toggles
                    n, presses = self._presses - presses, self._presses
                    commands += [("toggle", None, self._press_at, self._press_hits)] * n
                for what, p, at, hits_then in commands:
                    if what == "disarm" or (what == "toggle" and detector is not None):
                        detector, self.state = None, ("idle", None)
                        continue
                    pad = self._last_pad if p is None else p
                    hits = hits_then
                    if detector is None:
                        detector, pos = self._listen(at), at
                    self.state = (self.state[0] if detector.state == "recording" else "armed", pad)
                if self._hits != hits:
                    hits = self._hits
                    if detector is not None and detector.state == "listening":
                        pad = self._last_pad
                        self.state = ("armed", pad)
                block, pos, lost = self.ring.read(pos)
                self._meter(block)
                if detector is not None:
                    if lost and detector.state == "recording":
                        raise RuntimeError(f"the input ring overran ({lost} frames lost)")
                    take = detector.feed(block)
                    if take is not None:
                        detector = None
                        self._finish(pad, take, waiting)
                    elif detector.state == "recording" and self.state[0] != "recording":
                        self.state = ("recording", pad)
                waiting = [w for w in waiting if not self._rendered(*w)]
            except Exception as e:  # noqa: BLE001 - capture must never stop the instrument
                detector, self.state = None, ("idle", None)
                self._fail(pad, f"pad {pad + 1}: capture failed ({type(e).__name__}: {e}); "
                           "the pad keeps its previous sound")

    def _listen(self, at: int) -> HitDetector:
        s = self.spec
        d = HitDetector(self.rate, self.max_frames, s.threshold_db, s.pre_roll_ms, s.silence_db, s.hold_ms)
        before, end, _ = self.ring.read(max(0, at - d.keep), d.keep)
        d.position = end - before.shape[0]  # onset_at counts as the ring does
        d.prime(before)
        return d

    def _meter(self, block: np.ndarray) -> None:
        peak = float(np.abs(block).max(initial=0.0))
        fallen = self.level_db - 60.0 * max(self.poll_s, block.shape[0] / self.rate)
        self.level_db = max(fallen, 20 * math.log10(peak) if peak > 0 else -math.inf)

    def _finish(self, pad: int, take: Take, waiting: list) -> None:
        t_end = time.perf_counter()
        self.state = ("encoding", pad)
        self.takes += 1
        audio = _fade_edges(take.audio, take.onset, self.rate)
        result = CaptureResult(pad, None, None, audio.shape[0] / self.rate, take.ended,
                               take.onset_at - take.onset)
        self.results.append(result)
        problems = []
        try:
            result.wav = save_take(self.kit_dir, f"pad{pad + 1:02d}-{time.strftime('%Y%m%d-%H%M%S')}",
                                   audio, self.rate)
        except (OSError, sf.LibsndfileError) as e:
            problems.append(f"not saved ({e}); check the kit folder {self.kit_dir}")
        try:
            t0 = time.perf_counter()
            latents = self.encode(audio)
            result.encode_ms = (time.perf_counter() - t0) * 1e3
        except Exception as e:  # noqa: BLE001 - a bad encode keeps the previous sound
            saved = f"saved as {result.wav}" if result.wav is not None else "not saved"
            self._fail(pad, f"pad {pad + 1}: capture {saved}, but encoding failed ({type(e).__name__}: {e}); "
                       "the pad keeps its previous sound", result)
            self.state = ("idle", None)
            self._complete()
            return
        if result.wav is not None:
            try:
                result.npy = save_latents(result.wav, latents)
            except OSError as e:
                problems.append(f"latents not saved ({e})")
        worker = self.engine.worker
        errors_before = worker.stats.errors
        preset, spec = self.engine.preset, next((p for p in self.engine.preset.pads if p.index == pad), None)
        sound = PadSound(latents, audio, self.rate, preset.pad_mode(spec, self.engine.bundle.default_mode))
        worker.set_source(pad, sound)  # the take plays as itself (faithful), or resynthesised
        result.end_to_source_ms = (time.perf_counter() - t_end) * 1e3
        self.names[pad] = f"take {self.takes}"
        self.errors[pad] = f"pad {pad + 1}: plays the capture, but " + "; ".join(problems) if problems else ""
        if problems:
            self.last_error = self.errors[pad]
        self.rendering = self.rendering | {pad}
        waiting.append((result, sound, t_end, errors_before, time.monotonic() + RENDER_TIMEOUT_S))
        self.state = ("idle", None)

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """A take [T, C] at the input rate -> latents [D, N] (Bundle.latents_of)."""
        return self.engine.bundle.latents_of(audio, self.rate)

    def _rendered(self, result: CaptureResult, sound: PadSound, t_end: float, errors_before: int,
                  deadline: float) -> bool:
        """Whether the wait for this capture's first render is over (published, failed, replaced)."""
        w, pad = self.engine.worker, result.pad
        done = w.rendered[pad]
        if done is not None and done[0] is sound:
            result.end_to_playable_ms = (done[1] - t_end) * 1e3
        elif w.sources[pad] is not sound:
            pass  # a newer capture took the pad
        elif w.errors[pad] and w.stats.errors > errors_before:
            self._fail(pad, w.errors[pad], result)
        elif time.monotonic() > deadline:
            self._fail(pad, f"pad {pad + 1}: the capture was not rendered within {RENDER_TIMEOUT_S:.0f} s",
                       result)
        else:
            return False
        self.rendering = self.rendering - {pad}
        self._complete()
        return True

    def _fail(self, pad: int, message: str, result: CaptureResult | None = None) -> None:
        self.errors[pad] = self.last_error = message
        if result is not None:
            result.error = message

    def _complete(self) -> None:
        with self._done:
            self.completed += 1
            self._done.notify_all()


def _fade_edges(audio: np.ndarray, onset: int, rate: int) -> np.ndarray:
    """A copy with a FADE_IN_MS fade-in over the pre-roll (never into the attack at `onset`) and
    a TAIL_MS fade-out."""
    out = audio.copy()
    n_in = min(onset, int(rate * FADE_IN_MS / 1000))
    n_out = min(out.shape[0], int(rate * TAIL_MS / 1000))
    out[:n_in] *= np.linspace(0.0, 1.0, n_in, endpoint=False, dtype=np.float32)[:, None]
    out[out.shape[0] - n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)[:, None]
    return out
