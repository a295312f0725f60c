"""On-the-fly augmentation of VAE training crops: gain, small rate (pitch) shifts, EQ tilt,
stereo width and start offsets, drawn per crop from one numpy Generator (train_vae seeds it per
step, so a resumed run draws the same). Validation clips are never augmented.

Each transform keeps a one-shot a one-shot: the onset stays near the start, the length stays
the crop's, nothing is added that a real kit would not hold (a gain stays within the ingest
level bound, a rate shift is a sampler's repitch, a tilt a channel EQ, a width a stereo
widener or mono fold).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    prob: float = 0.8
    """Share of crops augmented at all (the rest train as recorded)."""
    gain_db: float = 6.0
    """Gain drawn uniformly in +-gain_db (peaks stay under 0 dBFS: the gain is capped there)."""
    semitones: float = 1.0
    """Rate shift drawn uniformly in +-semitones (a sampler's repitch: pitch and length move
    together), by linear interpolation."""
    tilt_db_per_octave: float = 2.0
    """Spectral tilt drawn uniformly in +-this many dB per octave, pivoting at 1 kHz, flat below
    62.5 Hz and above 16 kHz (4 octaves either way: DC and rumble are not boosted)."""
    width: tuple[float, float] = (0.0, 1.5)
    """Side signal scaled by a factor drawn in this range (0: folded to mono; stereo crops only)."""
    offset_ms: float = 8.0
    """Up to this much silence before the onset (a hit that does not start on sample 0)."""

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1:
            raise ValueError(f"augment prob must be in [0, 1], got {self.prob}")
        for name in ("gain_db", "semitones", "tilt_db_per_octave", "offset_ms"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"augment {name} must be >= 0, got {getattr(self, name)}")
        lo, hi = self.width
        if not 0 <= lo <= hi:
            raise ValueError(f"augment width must be 0 <= low <= high, got {self.width}")

    def as_dict(self) -> dict:
        return asdict(self)

    def __call__(self, crops: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """crops [B, C, T] float32 -> augmented copies [B, C, T] float32."""
        out = np.array(crops, dtype=np.float32, copy=True)
        for b in range(out.shape[0]):
            if rng.random() < self.prob:
                out[b] = self.one(out[b], sample_rate, rng)
        return out

    def one(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """One crop [C, T]: every transform, each drawn from rng (the same draws in the same order
        whatever their values, so one setting at 0 does not shift the others' draws)."""
        c, t = x.shape
        rate = 2.0 ** (rng.uniform(-1, 1) * self.semitones / 12)
        tilt = rng.uniform(-1, 1) * self.tilt_db_per_octave
        width = rng.uniform(*self.width)
        offset = int(rng.uniform(0, 1) * self.offset_ms * 1e-3 * sample_rate)
        gain_db = rng.uniform(-1, 1) * self.gain_db
        if rate != 1.0:  # read the crop `rate` times faster: higher and shorter
            pos = np.arange(t) * rate
            x = np.stack([np.interp(pos, np.arange(t), ch, right=0.0) for ch in x])
        if tilt != 0.0:
            spec = np.fft.rfft(x, axis=-1)
            f = np.fft.rfftfreq(t, 1 / sample_rate)
            octaves = np.clip(np.log2(np.maximum(f, 1.0) / 1000.0), -4.0, 4.0)
            spec *= 10 ** (tilt * octaves / 20)
            x = np.fft.irfft(spec, n=t, axis=-1)
        if c == 2 and width != 1.0:
            mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2 * width
            x = np.stack([mid + side, mid - side])
        if offset:
            x = np.concatenate([np.zeros((c, offset)), x[:, :t - offset]], axis=1)
        peak = float(np.abs(x).max())
        gain = 10 ** (gain_db / 20)
        if peak * gain > 0.99:
            gain = 0.99 / peak if peak > 0 else 1.0
        return (x * gain).astype(np.float32)
