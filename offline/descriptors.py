"""Acoustic descriptors per VAE latent frame: the targets of linear probes and the yardstick of
steering ("did this direction raise the centroid?").

Frame i of a clip is latent frame i: samples `[i * hop, (i + 1) * hop)` of the mono mix (mean
over channels), zero-padded to `n_frames * hop` (samples past that are ignored). Descriptors,
in `DESCRIPTORS` order:

- the spectral ones of `steerpad.realtime.descriptors` (centroid, flatness, crest, band
  fractions, loudness), computed on exactly that frame's `hop` samples, so the engine's
  visualizer, which uses the same function, reports the same numbers;
- `pitch` (Hz) and `pitch_confidence` (0..1) from `librosa.pyin` with fmin 40 Hz (low kicks and
  808s), fmax 2000 Hz (rims, cowbells, high toms; clipped to Nyquist), on a window centred on
  the frame's centre `i * hop + hop / 2` (4096 samples at 44.1 kHz: 2 periods of 40 Hz, so it
  reaches into the neighbouring frames), pitch bins 0.2 semitone apart (pyin's default 0.1 takes
  5x longer for +-0.05 semitone). Where pyin's Viterbi path calls a frame unvoiced, and on silent
  frames, pitch is 0 Hz and pitch_confidence 0; elsewhere pitch_confidence is pyin's voiced
  probability. pyin sometimes calls a frame voiced at a very low probability (white noise:
  ~40 Hz at 0.01), so weight or gate pitch by pitch_confidence.

A frame is `sounding` when its loudness is above `silence_db` (default -60 dBFS); the other
frames hold finite values that mean little (see the realtime module for what they are) and
should be left out of probe fits. Every value is finite.

Cost: ~0.1 s per 1.5 s clip at 44.1 kHz, hop 2048 (33 frames) on one busy CPU core (measured
0.11 s, ~0.065 s of it pyin's Viterbi decoding; resolution 0.1 would make it ~0.35 s). The first
call in a process also loads librosa's numba cache (~4 s; ~45 s the first time ever, when it
compiles).

Bad arguments (shapes, rates, NaN audio) are programmer errors and raise ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from steerpad.realtime.descriptors import SPECTRAL_NAMES, SPECTRAL_UNITS, spectral_features

PITCH_FMIN = 40.0
PITCH_FMAX = 2000.0
PITCH_RESOLUTION = 0.2
"""pyin pitch-bin spacing in semitones: reported pitch is off by at most half of it (0.58 %)."""


@dataclass(frozen=True)
class Descriptor:
    """One per-frame descriptor: its column name, unit and meaning."""

    name: str
    unit: str
    doc: str


_SPECTRAL_DOCS = {
    "centroid": "power-weighted mean frequency of the Hann-windowed frame (brightness)",
    "flatness": "geometric / arithmetic mean of the power spectrum: 0 tonal .. ~0.56 white noise",
    "crest": "peak / RMS of the frame's samples (3.01 dB for a sine): transient peakiness",
    "band_sub": "share of power in 20-150 Hz (kick fundamentals, 808 tails)",
    "band_low_mid": "share of power in 150-1000 Hz (tom and snare bodies)",
    "band_high_mid": "share of power in 1000-6000 Hz (attacks, snare wires, claps)",
    "band_air": "share of power in 6000 Hz-Nyquist (hats, cymbals, sizzle)",
    "loudness": "RMS level of the frame (floor -120; a full-scale sine is -3.01)",
}
assert set(_SPECTRAL_DOCS) == set(SPECTRAL_NAMES), "document every spectral descriptor"

DESCRIPTORS: tuple[Descriptor, ...] = (
    *(Descriptor(name, SPECTRAL_UNITS[name], _SPECTRAL_DOCS[name]) for name in SPECTRAL_NAMES),
    Descriptor("pitch", "Hz", "pyin fundamental, 40-2000 Hz; 0 where unvoiced or silent"),
    Descriptor("pitch_confidence", "ratio",
               "pyin voiced probability, 0..1; 0 where unvoiced or silent"),
)
NAMES: tuple[str, ...] = tuple(d.name for d in DESCRIPTORS)


@dataclass(frozen=True)
class FrameDescriptors:
    """Descriptors of one clip's latent frames."""

    values: np.ndarray
    """float32 [n_frames, len(DESCRIPTORS)], columns in DESCRIPTORS order, finite."""
    sounding: np.ndarray
    """bool [n_frames]: loudness above silence_db; fit probes on these frames only."""

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES


def _check_args(sample_rate: int, hop: int, n_frames: int | None) -> None:
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if not (isinstance(hop, (int, np.integer)) and hop >= 64):
        raise ValueError(f"hop must be an int >= 64 samples (one latent frame), got {hop!r}")
    if n_frames is not None and not (isinstance(n_frames, (int, np.integer)) and n_frames >= 1):
        raise ValueError(f"n_frames must be an int >= 1 or None, got {n_frames!r}")


def _pitch(mono: np.ndarray, sample_rate: int, hop: int, n_frames: int) -> np.ndarray:
    """(pitch Hz, confidence) `[n_frames, 2]` from pyin on frames centred on each latent
    frame's centre; `mono` is `[n_frames * hop]`."""
    import librosa

    fmax = min(PITCH_FMAX, sample_rate / 2)
    # Smallest power of two holding 2 periods of fmin (yin's lags go up to half the frame).
    frame_length = 1 << math.ceil(math.log2(2 * sample_rate / PITCH_FMIN + 1))
    # pyin's frame j is centred on sample j * hop of what it gets: drop hop // 2 samples so that
    # is sample j * hop + hop // 2 of the clip.
    f0, voiced, prob = librosa.pyin(
        mono[hop // 2:], fmin=PITCH_FMIN, fmax=fmax, sr=sample_rate, frame_length=frame_length,
        hop_length=hop, resolution=PITCH_RESOLUTION, center=True, pad_mode="constant")
    out = np.zeros((n_frames, 2))
    m = min(n_frames, len(f0))  # len(f0) == n_frames for hop >= 2
    ok = voiced[:m] & np.isfinite(f0[:m]) & np.isfinite(prob[:m])
    out[:m, 0] = np.where(ok, f0[:m], 0.0)
    out[:m, 1] = np.where(ok, prob[:m], 0.0)
    return out


def frame_descriptors(audio: np.ndarray, sample_rate: int, hop: int,
                      n_frames: int | None = None, silence_db: float = -60.0,
                      ) -> FrameDescriptors:
    """Descriptors of audio `[C, T]` per latent frame of `hop` samples; `n_frames` defaults to
    ceil(T / hop). See the module docstring for alignment and each value."""
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[0] < 1:
        raise ValueError(f"audio must be [C, T] with C >= 1, got shape {audio.shape}; "
                         "pass mono as audio[None]")
    _check_args(sample_rate, hop, n_frames)
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or inf samples")
    if n_frames is None:
        n_frames = math.ceil(audio.shape[1] / hop)
        if n_frames < 1:
            raise ValueError("audio has no samples; pass n_frames to describe silence")

    length = n_frames * hop
    mono = np.zeros(length)
    keep = min(length, audio.shape[1])
    mono[:keep] = audio[:, :keep].astype(np.float64).mean(axis=0)

    spectral = spectral_features(mono.reshape(n_frames, hop), sample_rate)
    sounding = spectral[:, SPECTRAL_NAMES.index("loudness")] > silence_db
    pitch = _pitch(mono, sample_rate, hop, n_frames)
    pitch[~sounding] = 0.0
    values = np.concatenate([spectral, pitch], axis=1).astype(np.float32)
    assert values.shape == (n_frames, len(DESCRIPTORS)) and np.isfinite(values).all()
    return FrameDescriptors(values, sounding)


def _describe_one(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    clip, sample_rate, hop, n_frames, silence_db = job
    d = frame_descriptors(clip, sample_rate, hop, n_frames, silence_db)
    return d.values, d.sounding


def describe_clips(clips: np.ndarray | list[np.ndarray], sample_rate: int, hop: int,
                   n_frames: int | None = None, silence_db: float = -60.0, workers: int = 1,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`frame_descriptors` of clips `[N, C, T]` (or a list of `[C, T]`, lengths may differ) ->
    (values float32 `[N, n_frames, len(DESCRIPTORS)]`, sounding bool `[N, n_frames]`).
    `n_frames` defaults to ceil(longest T / hop); `workers` > 1 uses a process pool."""
    if isinstance(clips, np.ndarray) and clips.ndim != 3:
        raise ValueError(f"clips must be [N, C, T] or a list of [C, T], got shape {clips.shape}")
    _check_args(sample_rate, hop, n_frames)
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    clips = list(clips)
    for i, clip in enumerate(clips):
        if np.ndim(clip) != 2:
            raise ValueError(f"clip {i} must be [C, T], got shape {np.shape(clip)}")
    if n_frames is None:
        n_frames = max((math.ceil(np.shape(c)[1] / hop) for c in clips), default=0)
        if n_frames < 1:
            n_frames = 1
    jobs = [(clip, sample_rate, hop, n_frames, silence_db) for clip in clips]
    values = np.zeros((len(clips), n_frames, len(DESCRIPTORS)), np.float32)
    sounding = np.zeros((len(clips), n_frames), bool)
    if workers == 1 or len(jobs) < 2:
        results = map(_describe_one, jobs)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # The first clip here, before any worker starts: it compiles librosa's numba kernels
        # into numba's on-disk cache once. Workers compiling them at the same time write that
        # cache concurrently, and a process that later loads the torn cache segfaults.
        first = _describe_one(jobs[0])
        # spawn, not fork: the caller may have torch (and its threads) loaded
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs) - 1), mp_context=ctx) as pool:
            results = [first, *pool.map(_describe_one, jobs[1:], chunksize=8)]
    for i, (v, s) in enumerate(results):
        values[i], sounding[i] = v, s
    return values, sounding
