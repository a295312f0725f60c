"""The render worker: keeps a steered render of every pad's one-shot ready at the device rate.

What a pad plays is a PadSound: its latents, its source audio and its render mode
(faithful.MODES). In `faithful` mode, with the pad's knobs centred the worker publishes the
source itself, resampled once to the device rate (no model, no STFT: bit-exact when the rates
match); with a knob moved it publishes the source reshaped by the decoder's change
(faithful.FaithfulPad, prepared once per sound: the source's STFT and the plain decode's band
energies). In `resynth` mode it publishes the decoder's output. A faithful pad without source
audio (a kit entry of an older bundle) plays resynthesis.

The knob state is one alpha vector per render mode (each mode has its own calibrated knob
scales), with a version number. Live, the worker follows the engine's knobs (`follow`): it polls
their serial every POLL_S while idle and computes the alpha itself, so the audio callback that
writes them takes no lock; `set_alpha` serves direct callers. A new alpha bumps the version; the
worker re-renders stale pads one at a time, the sounding ones first (their ringing notes follow
the render), then the most recently played, always with the newest alpha (work for an older knob
state is never queued, so it cannot pile up); the visualizer's analyses of the renders wait until
no pad is stale. Each finished render is
published by replacing the pad's array reference, an atomic swap: the audio thread reads
`slots[pad]` and always gets a finished buffer; a voice that is playing the previous one keeps
it. A failing render keeps the previous buffer and records the error. A bounce (bounce.py)
leaves the thread unstarted and calls `refresh(pads)` instead: the same render and bookkeeping
in its own thread, for just the pads it is about to hit.

Runs bundle.steer + bundle.decode (onnxruntime), the faithful change and soxr; never called from
the audio callback.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import soxr

from steerpad.realtime.bundle import Bundle
from steerpad.realtime.faithful import MODES, FaithfulPad
from steerpad.realtime.service import Service

TOP_FEATURES = 8
"""How many of the strongest SAE features PadAnalysis keeps per latent frame."""


@dataclass(frozen=True)
class PadAnalysis:
    """What a pad's current render is made of, per latent frame (for the visualizer feed):
    computed by the worker with each render, from the steered latents' SAE code."""

    probe: dict[str, np.ndarray]
    """Descriptor -> predicted bin per frame, normalised 0-1 ([N] float32)."""
    top_index: np.ndarray
    """[N, TOP_FEATURES] int: the strongest dictionary features per frame (level pair left out)."""
    top_value: np.ndarray
    """[N, TOP_FEATURES] float32: their values in the code (after RMSNorm)."""
    frame_s: float
    """Seconds per latent frame (hop / bundle sample rate)."""


def analyse(bundle: Bundle, probes, steered: np.ndarray) -> PadAnalysis:
    """PadAnalysis of steered latents [1, D, N] (probes: a ProbeReader, or None)."""
    values, indices = bundle.codes(steered)
    values, indices = values[0], indices[0]
    probe = probes.predict(values, indices) if probes is not None else {}  # trained with the pair
    if bundle.manifest["sae"].get("level_pair", True):
        values, indices = values[:, 2:], indices[:, 2:]
    order = np.argsort(-values, axis=1, kind="stable")[:, :TOP_FEATURES]
    return PadAnalysis(probe=probe, top_index=np.take_along_axis(indices, order, 1),
                       top_value=np.take_along_axis(values, order, 1).astype(np.float32),
                       frame_s=bundle.hop / bundle.sample_rate)


@dataclass(frozen=True, eq=False)
class PadSound:
    """What a pad plays: its latents [D, N] through the bundle's encoder and, when there is one,
    its source one-shot `audio` [T, C] float32 at `rate` Hz (C = 1 or 2), in render `mode`."""

    latents: np.ndarray
    audio: np.ndarray | None = None
    rate: int = 0
    mode: str = "resynth"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"not a render mode: {self.mode!r} (one of {', '.join(MODES)})")
        if self.audio is not None and (self.audio.ndim != 2 or self.rate <= 0):
            raise ValueError("PadSound.audio must be [T, C] with a rate")

    @property
    def faithful(self) -> bool:
        """Whether it plays its source (faithful mode, and source audio to play)."""
        return self.mode == "faithful" and self.audio is not None


@dataclass(eq=False)
class Prepared:
    """A sound's render cache: the centre render and the change's fixed part, made on its first
    render (the worker keeps one per pad, in its own thread; eval and calibration keep one per
    clip they render many times)."""

    sound: PadSound
    centre: np.ndarray | None = None
    """[T, 2] float32 at out_rate: the source as it plays with the knobs centred."""
    change: FaithfulPad | None = None


def clip_sound(bundle: Bundle, audio: np.ndarray, mode: str) -> Prepared:
    """A one-shot [C, T] at the bundle's rate as a pad plays it in `mode` (its latents through
    the bundle's encoder), ready to render many times: eval and calibration measure this way."""
    audio = np.ascontiguousarray(audio, np.float32)
    latents = bundle.encode(audio)[0]
    return Prepared(PadSound(latents, np.ascontiguousarray(audio.T), bundle.sample_rate, mode))


@dataclass
class RenderStats:
    """What the status view and the benchmark read (written by the worker only)."""

    renders: int = 0
    errors: int = 0
    last_error: str = ""
    last_ms: float = 0.0
    """Compute time of the last render (steer + decode + resample), ms."""
    last_latency_ms: float = 0.0
    """Knob move -> that pad's fresh render published, ms, for the last render."""
    busy: int = 0
    """Bumped as a render or an analysis starts and again as it ends: odd while one runs."""


class RenderWorker(Service):
    """Renders pad sounds through `bundle` into stereo float32 [T, 2] arrays at `out_rate`.

    `sources[p]` is pad p's PadSound, or None for a pad with no sound. Call `start()`, then
    `set_alpha()` from any thread whenever the knobs move; read `slots[p]` from any thread.
    """

    def __init__(self, bundle: Bundle, sources: list[PadSound | None], out_rate: int,
                 analyse: bool = True):
        self.bundle = bundle
        self.probes = None
        if analyse:
            from steerpad.realtime.probes import ProbeReader

            self.probes = ProbeReader(bundle)
        self.analyse = analyse
        self.out_rate = int(out_rate)
        self.sources = list(sources)
        n = len(self.sources)
        self.slots: list[np.ndarray | None] = [None] * n
        """Latest finished render per pad, [T, 2] float32 at out_rate (replaced, never mutated)."""
        self.lineage: list[int] = [0] * n
        """Per pad: the lineage of its slot's render, written just before the slot: the pad's
        source generation (bumped by set_source) and the knob epoch its alpha came with (see
        Engine.knob_epoch). A ringing voice moves only to a render of its own lineage."""
        self._generation = [0] * n
        self.latency_ms: list[float] = [float("nan")] * n
        """Per pad: knob move -> fresh render published, ms, for its last render."""
        self.analysis: list[PadAnalysis | None] = [None] * n
        """Per pad: what its current render is made of (PadAnalysis), replaced after each render
        once no pad is stale (the visualizer's read-out never delays a sound); None before the
        first render or when the worker does not analyse."""
        self._unanalysed: dict[int, np.ndarray] = {}
        """Pad -> the steered latents of a published render not analysed yet (the rendering
        thread's own: the worker's, or refresh's caller)."""
        self.errors: list[str] = [""] * n
        """Per pad: the last render error ('' when its last render worked)."""
        self.rendered: list[tuple[PadSound, float] | None] = [None] * n
        """Per pad: (the sound its slot was rendered from, when it was published)."""
        self.stats = RenderStats()
        self.history: deque[tuple[int, float, float]] = deque(maxlen=512)
        """(pad, compute ms, latency ms) of recent renders."""
        self._alpha = np.zeros((len(MODES), len(bundle.directions)), np.float32)
        self._prepared: list[Prepared | None] = [None] * n
        self._level = np.array([d.descriptor == "loudness" for d in bundle.directions], bool)
        """The level knobs: in faithful mode their own decode part applies its level change only."""
        self.mirror_down = np.array([d.scale("faithful").mirror_down for d in bundle.directions], bool)
        """The directions whose faithful left half is their right half's change, inverted (from the
        bundle; written only by whoever owns the worker before it starts: calibration)."""
        self._version = 1
        self._version_time = time.perf_counter()
        self._done = [0] * n
        self._played = [0.0] * n
        self._source_time = [0.0] * n
        self._cond = threading.Condition()
        super().__init__()
        self._knobs = None
        """What `follow` gave: an object with `knob_serial` and `alpha()` (the Engine)."""
        self._seen = -1
        """The knob_serial whose alpha this worker last took (written by _sync's caller only)."""
        self._epoch = 0
        """The knob epoch that came with that alpha."""

    # ------------------------------------------------------------ control (any thread)

    thread_name = "steerpad-render"

    def _wake(self) -> None:
        """stop(): the loop may wait on the condition (set_source, the next knob poll)."""
        with self._cond:
            self._cond.notify_all()

    def follow(self, knobs) -> None:
        """Take the knob state from `knobs` from now on (the Engine): its `knob_serial` (an int)
        is bumped after each knob write, `knob_epoch` after an `affects = "next"` one, `alpha()`
        gives the [MODES, K] alpha for the current positions and `ringing_pads()` the pads
        sounding now. The worker thread polls the serial every POLL_S while idle and calls
        alpha() itself, so the knobs' writer (the audio callback) never takes a lock; `refresh`
        and `wait_fresh` look at it first too."""
        self._knobs = knobs
        self._seen = -1
        self._sync()

    def _sync(self) -> None:
        """Take the followed knob state if its serial moved (the serial is read before the
        positions: a write racing the read bumps it again, and the next poll takes that)."""
        knobs = self._knobs
        if knobs is None:
            return
        serial = knobs.knob_serial
        if serial != self._seen:
            self._seen = serial
            epoch, alpha = knobs.knob_epoch, knobs.alpha()
            with self._cond:
                if epoch != self._epoch:  # renders of the old epoch are stale, whatever alpha is
                    self._epoch = epoch
                    self._version += 1
                    self._version_time = time.perf_counter()
                    self._cond.notify_all()
            self.set_alpha(alpha)

    def set_alpha(self, alpha: np.ndarray) -> None:
        """The newest knob state: one alpha per bundle direction for each render mode, [MODES, K]
        (a [K] vector serves every mode): every pad becomes stale."""
        a = np.asarray(alpha, np.float32)
        if a.ndim == 1:
            a = np.repeat(a[None], len(MODES), axis=0)
        if a.shape != self._alpha.shape or not np.isfinite(a).all():
            raise ValueError(f"alpha must be {self._alpha.shape} finite values, got {a}")
        with self._cond:
            if np.array_equal(a, self._alpha):
                return
            self._alpha = a.copy()
            self._version += 1
            self._version_time = time.perf_counter()
            self._cond.notify_all()

    @property
    def alpha(self) -> np.ndarray:
        return self._alpha.copy()

    def set_source(self, pad: int, sound: PadSound | None) -> None:
        """Give pad a new sound (e.g. a captured hit): it is rendered with the current knobs."""
        with self._cond:
            self.sources[pad] = sound
            self._generation[pad] += 1
            self._source_time[pad] = time.perf_counter()
            self._done[pad] = 0
            self._cond.notify_all()

    def played(self, pad: int) -> None:
        """Note that pad was just hit (its re-render goes first). Safe from the audio thread:
        one float store, no lock."""
        self._played[pad] = time.perf_counter()

    def pending(self) -> int:
        """Pads whose render is older than the knobs."""
        v = self._version
        return sum(1 for p, s in enumerate(self.sources) if s is not None and self._done[p] < v)

    def wait_fresh(self, timeout: float | None = None, analysed: bool = False) -> bool:
        """Block until every pad has a render of the current knob state (True) or timeout; with
        `analysed`, also until every render's analysis is in `analysis`."""
        if self._thread is None:
            self._sync()  # (a running worker syncs in its own thread within POLL_S)
        else:
            while self._knobs is not None and self._knobs.knob_serial != self._seen:
                time.sleep(self.POLL_S)  # the worker has not taken the newest knobs yet
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._stale() is not None or (analysed and self._unanalysed):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ------------------------------------------------------------ the worker

    def _stale(self) -> int | None:
        """The stale pad to render next: a pad that is sounding now first (its ringing notes
        follow the render), then the most recently played, then pad order."""
        if not any(src is not None and done < self._version for src, done in zip(self.sources, self._done)):
            return None  # (the idle poll's path: it builds nothing)
        sounding = self._knobs.ringing_pads() if self._knobs is not None else ()
        best, best_key = None, (False, -1.0)
        for p, src in enumerate(self.sources):
            if src is not None and self._done[p] < self._version:
                key = (p in sounding, self._played[p])
                if key > best_key:
                    best, best_key = p, key
        return best

    POLL_S = 0.001
    """While idle, the worker looks at the followed knob serial this often."""

    def _run(self) -> None:
        while True:
            self._sync()
            with self._cond:
                stopping = self._stopping.is_set()  # (set before stop() notifies, under _cond)
                pad = None if stopping else self._stale()
                if pad is None and not stopping and not self._unanalysed:
                    # nothing stale: wait for set_source / stop, or the next knob poll
                    self._cond.wait(self.POLL_S if self._knobs is not None else None)
                    continue
                if stopping:
                    return
                if pad is not None:
                    alpha, version, since = self._alpha, self._version, self._version_time
                    sound, lineage = self.sources[pad], self._lineage_of(pad)
            if pad is None:  # every pad is fresh: the visualizer's analyses, one at a time
                self._analyse_one()
            else:
                self._render_pad(pad, sound, alpha, version, since, lineage)

    def refresh(self, pads) -> list[str]:
        """Render now, in the calling thread, each of `pads` whose render is older than the knobs
        (or that has none yet), with the current alpha: a bounce renders only what its next hit
        will hear. Only while the worker thread is not running. Returns the errors of the
        renders that failed (their pads keep their previous buffers)."""
        if self._thread is not None:
            raise RuntimeError("refresh() renders in the caller's thread: stop the worker first")
        self._sync()
        failed = []
        for pad in pads:
            with self._cond:
                sound = self.sources[pad]
                if sound is None or self._done[pad] >= self._version:
                    continue
                alpha, version, since = self._alpha, self._version, self._version_time
                lineage = self._lineage_of(pad)
            error = self._render_pad(pad, sound, alpha, version, since, lineage)
            if error:
                failed.append(error)
        while self._unanalysed:
            self._analyse_one()
        return failed

    def _lineage_of(self, pad: int) -> int:
        """The lineage a render of pad started now belongs to (under the condition)."""
        return self._generation[pad] << 32 | self._epoch

    def _render_pad(self, pad: int, sound: PadSound, alpha: np.ndarray, version: int,
                    since: float, lineage: int = 0) -> str:
        """Render one pad and publish it (slot, analysis, stats); '' or the render's error."""
        self.stats.busy += 1
        try:
            return self._render_and_publish(pad, sound, alpha, version, since, lineage)
        finally:
            self.stats.busy += 1

    def _render_and_publish(self, pad: int, sound: PadSound, alpha: np.ndarray, version: int,
                            since: float, lineage: int) -> str:
        t0 = time.perf_counter()
        error = ""
        try:
            prepared = self._prepared[pad]
            if prepared is None or prepared.sound is not sound:
                prepared = self._prepared[pad] = Prepared(sound)
            audio, steered = self.render(prepared, alpha[MODES.index(sound.mode)])
        except Exception as e:  # noqa: BLE001 - a bad render must never stop the instrument
            error = f"pad {pad + 1}: render failed ({type(e).__name__}: {e})"
            self.errors[pad] = error + "; the previous sound keeps playing"
            self.stats.errors += 1
            self.stats.last_error = self.errors[pad]
        else:
            self.lineage[pad] = lineage  # first: a reader that sees the new slot sees its lineage
            self.slots[pad] = audio  # the atomic swap
            self.errors[pad] = ""
            t1 = time.perf_counter()
            self.rendered[pad] = (sound, t1)
            compute, latency = (t1 - t0) * 1e3, (t1 - max(since, self._source_time[pad])) * 1e3
            self.latency_ms[pad] = latency
            self.stats.renders += 1
            self.stats.last_ms, self.stats.last_latency_ms = compute, latency
            self.history.append((pad, compute, latency))
            if self.analyse:  # for the visualizer, once every stale pad is rendered (_analyse_one)
                self._unanalysed[pad] = steered
        with self._cond:
            if self.sources[pad] is sound:
                self._done[pad] = version
            self._cond.notify_all()
        return error

    def _analyse_one(self) -> None:
        """Analyse one published render that waits for it (the oldest first)."""
        pad, steered = next(iter(self._unanalysed.items()))
        del self._unanalysed[pad]
        self.stats.busy += 1
        try:
            self.analysis[pad] = analyse(self.bundle, self.probes, steered)
        except Exception as e:  # noqa: BLE001 - a display must never stop the instrument
            self.analysis[pad] = None
            self.stats.last_error = f"pad {pad + 1}: analysis failed ({type(e).__name__}: {e})"
        finally:
            self.stats.busy += 1
        with self._cond:
            self._cond.notify_all()

    def render(self, prepared: Prepared | PadSound, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One pad's sound for alpha [K] in its mode: [T, 2] float32 C-contiguous at out_rate, and
        the steered latents [1, D, N] it was made from. `prepared` caches the sound's fixed parts
        between calls (a bare PadSound renders without a cache)."""
        if isinstance(prepared, PadSound):
            prepared = Prepared(prepared)
        sound = prepared.sound
        if not sound.faithful:
            steered = self.bundle.steer(sound.latents, alpha)
            return self._to_device(self.bundle.decode(steered)[0], self.bundle.sample_rate), steered
        if not alpha.any():  # centred: the source itself
            if prepared.centre is None:
                prepared.centre = self._to_device(sound.audio.T, sound.rate)
            return prepared.centre, sound.latents[None]
        if prepared.change is None:
            prepared.change = FaithfulPad(self._at_bundle_rate(sound),
                                          self.bundle.decode(sound.latents)[0], self.bundle.change)
        # Up to four parts, each decoded once (batched): what raises (timbre right halves: cut +
        # add), a timbre knob's own left half (cut-only), a left half that mirrors its right half
        # (decoded at +|α|, inverted, cut-only), and the level knobs (their level change only).
        # See FaithfulPad.render.
        timbre = np.where(self._level, 0.0, alpha)
        down = timbre < 0
        mirror = down & self.mirror_down
        parts = (np.where(down, 0.0, timbre), np.where(mirror, -timbre, 0.0),
                 np.where(down & ~mirror, timbre, 0.0), np.where(self._level, alpha, 0.0))
        steered = [self.bundle.steer(sound.latents, a.astype(np.float32)) if a.any() else None for a in parts]
        present = [s for s in steered if s is not None]
        decoded = iter(self.bundle.decode(np.concatenate(present)))
        raised, mirrored, lowered, level = (next(decoded) if s is not None else None for s in steered)
        y = prepared.change.render(raised, mirrored, lowered, level=level,
                                   level_up=bool(alpha[self._level].sum() >= 0))
        return self._to_device(y, self.bundle.sample_rate), present[0]

    def _at_bundle_rate(self, sound: PadSound) -> np.ndarray:
        """The sound's source audio [C, T] at the bundle rate (the decoder's time grid)."""
        audio = sound.audio
        if sound.rate != self.bundle.sample_rate:
            audio = soxr.resample(audio, sound.rate, self.bundle.sample_rate, quality="HQ")
        return np.ascontiguousarray(audio.T, dtype=np.float32)

    def _to_device(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """Audio [C, T] at `rate` -> [T, 2] float32 C-contiguous at out_rate (mono spread to both
        sides, more channels cut to two)."""
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        elif audio.shape[0] > 2:
            audio = audio[:2]
        frames = np.ascontiguousarray(audio.T, dtype=np.float32)
        if rate != self.out_rate:
            frames = soxr.resample(frames, rate, self.out_rate, quality="HQ")
        if not np.isfinite(frames).all():
            raise ValueError("the render has non-finite samples")
        return np.ascontiguousarray(frames, dtype=np.float32)
