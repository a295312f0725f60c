"""Faithful mode: the pad plays its own source audio, and a knob reshapes it by the decoder's
*change* instead of replacing it by the decoder's output.

    x  the source one-shot [C, T] (at the bundle rate)
    P  = dec(z)    the plain decode of its latents      (cached per pad)
    Q  = dec(z')   the steered decode (a knob moved)
    y  = change(P -> Q) applied to x;   α = 0  =>  y = x exactly (the renderer plays x itself)

The change is read per band (64 log-spaced hat bands, on the channels' mean power): the decoder
invents its fine structure and its phase, so only its spectral envelope is trusted. Per band:

- **cut** where Q has less energy than P: x's bins are multiplied by (|Q| / |P|) ** cut_power,
  keeping x's phase and fine structure (partials stay partials);
- **add** where Q has more: the band's energy grows by what the decoder's grew (times
  `add_gain` squared, in power); x's own band is raised first, by at most `boost_db` (default
  6 dB), and only the rest, which a gain on x cannot create, is added from Q's own bins;
- a timbre knob's **left half** only ever removes: either its own change applied cut-only, or
  the *mirror* of its right half (the change to dec(z'') at +|α|, inverted, cut-only, with
  exponent mirror_power), whichever its calibration found moves the descriptor further
  (offline/knobs.py; KnobScale.mirror_down);
- **level**: a timbre knob reshapes, it does not make louder or quieter (keep_level): the
  decoder's overall level change is taken out before its change is read, and the output is
  scaled back to the source's energy within makeup_db. A level knob (`loudness`) is the
  opposite: only its level change is applied, a gain per STFT frame (the decoder's frame energy
  against the plain decode's, within level_db), so it moves loudness and the envelope and leaves
  the spectrum alone (its spectral side effects were most of its drift: 0.60 -> see README).

The README ("What a pad plays") gives the measured alternatives and why this one. numpy and
scipy.fft (the realtime half; float32 transforms): a Hann-windowed STFT with 75 % overlap,
inverted by weighted overlap-add, so a unit gain everywhere gives x back to float precision.
Never called from the audio callback: the render worker runs it after decode.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

from steerpad.realtime.stft import frames_fft, hann, overlap_add

N_FFT = 1024
HOP = 256
MODES = ("faithful", "resynth")
"""What a pad plays: `faithful`, its source reshaped by the decoder's change (the default), or
`resynth`, the decoder's output itself (the VAE's sound of the source)."""
DEFAULT_MODE = "faithful"


@dataclass(frozen=True)
class ChangeConfig:
    cut_power: float = 1.0
    """Exponent on a band's |Q| / |P| where it is below 1: above 1 cuts harder than the decoder."""
    add_gain: float = 1.0
    """Scale of the decoder's added energy where a band's |Q| is above |P|."""
    boost_db: float = 6.0
    """Where the decoder adds energy to a band, the source's own band is raised first, by at
    most this many dB; what is left is added from Q's own bins. 0: all of it from Q. (Measured on
    the validation kits: 6 dB lowers brighter's drift from 0.75 to 0.65 and noisier's from 0.69
    to 0.63 at the same effect; 12 dB gains nothing more.)"""
    mirror_power: float = 2.0
    """Exponent on |P| / |Q| of a mirrored change (a knob's left half that inverts its right
    half): 2 cuts twice as many dB as the right half adds (measured: the mirror then reaches
    about 70 % of what removing the content outright would)."""
    floor_db: float = -60.0
    """Band magnitudes below this, re. the plain decode's loudest band, count as this (ratios
    stay sane where the decoder is silent)."""
    bands: int = 64
    """Gain bands: log-spaced centres from the first bin up, one bin apart at the bottom."""
    smooth_frames: int = 1
    """Band energies are averaged over +-this many STFT frames."""
    makeup_db: float = 12.0
    """With keep_level, the output is scaled back to the source's energy by at most this much
    either way (a cut that removes most of a one-shot leaves at most this much makeup gain)."""
    level_db: float = 24.0
    """A level knob's per-frame gain stays within +-this many dB."""
    keep_level: bool = True
    """A timbre knob reshapes the spectrum and the envelope but not the loudness: the decoder's
    overall level change (its total energy over the clip) is taken out before its change is
    read, and the output is scaled back to the source's energy (within makeup_db). A level knob
    (descriptor `loudness`) is applied after it, as a gain (`render(level=...)`)."""

    LIMITS = {"cut_power": (0.0, 8.0, False), "add_gain": (0.0, 4.0, False),
              "mirror_power": (0.0, 8.0, False),
              "boost_db": (0.0, 40.0, False),
              "floor_db": (-160.0, 0.0, False), "makeup_db": (0.0, 40.0, False),
              "level_db": (0.0, 60.0, False),
              "bands": (4, N_FFT // 2 + 1, True),
              "smooth_frames": (0, 16, True)}
    """manifest.json render.faithful: each field's range, and whether it is a whole number."""

    def as_dict(self) -> dict:
        return {"cut_power": self.cut_power, "add_gain": self.add_gain, "boost_db": self.boost_db,
                "mirror_power": self.mirror_power,
                "floor_db": self.floor_db, "makeup_db": self.makeup_db, "level_db": self.level_db,
                "bands": self.bands, "smooth_frames": self.smooth_frames}


_WINDOW = hann(N_FFT)
_TAIL = (0.5 + 0.5 * np.cos(np.linspace(0, np.pi, 256))).astype(np.float32)
"""A changed render's last 256 samples cross-fade (raised cosine) from the change to the source
itself: the decoder's added energy (a level knob at the top, say) can still be loud where the
source one-shot is cut off, and the source ends as it ends."""


def stft(x: np.ndarray) -> np.ndarray:
    """x [C, T] -> complex64 [C, frames, N_FFT/2 + 1]; padded by N_FFT at both ends so every
    sample is covered by a full set of overlapping windows."""
    return frames_fft(x, N_FFT, HOP, N_FFT, N_FFT + HOP)


def istft(spec: np.ndarray, length: int, scale: float = 1.0) -> np.ndarray:
    """The inverse of `stft` (weighted overlap-add) -> float32 [C, length], times `scale`."""
    frames = scipy.fft.irfft(spec, n=N_FFT, axis=-1)
    frames *= _WINDOW * np.float32(scale) if scale != 1.0 else _WINDOW
    y = overlap_add(frames, HOP)[:, N_FFT:N_FFT + length]
    y *= _inverse_overlap(spec.shape[1])[N_FFT:N_FFT + length]
    return y


@functools.lru_cache(maxsize=64)
def _inverse_overlap(n: int) -> np.ndarray:
    """1 / the squared windows' overlap-add of n frames (istft's normalisation; read-only)."""
    norm = overlap_add(np.broadcast_to(_WINDOW * _WINDOW, (n, N_FFT)), HOP)
    inverse = 1.0 / np.maximum(norm, 1e-12)
    inverse.flags.writeable = False
    return inverse


def band_hats(bands: int, n_bins: int = N_FFT // 2 + 1) -> np.ndarray:
    """[n_bins, J] hat functions on log-spaced centre bins (J <= bands: centres closer than one
    bin merge, so the bottom of the spectrum keeps single-bin resolution). Each bin's weights sum
    to 1: `gains @ hats.T` interpolates band gains linearly between centres."""
    centres = np.unique(np.round(np.geomspace(1, n_bins - 1, bands)).astype(int))
    hats = np.zeros((n_bins, len(centres)), np.float32)
    k = np.arange(n_bins)
    j = np.clip(np.searchsorted(centres, k, side="right") - 1, 0, len(centres) - 1)
    nxt = np.minimum(j + 1, len(centres) - 1)
    span = np.maximum(centres[nxt] - centres[j], 1)
    t = np.clip((k - centres[j]) / span, 0.0, 1.0)
    t[nxt == j] = 0.0
    hats[k, j] += 1 - t
    hats[k, nxt] += t
    return hats


class FaithfulPad:
    """One pad's fixed part, computed once per source: the source's STFT and the plain decode's
    band energies. `render(steered)` then costs one STFT, the band gains and one inverse STFT.

    The change is measured per band (log-spaced hats, `band_hats`) on the channels' mean power,
    smoothed over +-smooth_frames: the decoder invents its fine structure and its phase, so only
    its envelope is trusted. Band gains are interpolated back to bins and applied to every
    channel of the source."""

    def __init__(self, source: np.ndarray, plain: np.ndarray, config: ChangeConfig = ChangeConfig()):
        self.source = np.asarray(source, dtype=np.float32)
        self.config = config
        self.channels, self.length = self.source.shape
        self.X = stft(self.source)
        self.energy = float(np.sum(self.X.real ** 2 + self.X.imag ** 2, dtype=np.float64))
        self.hats = band_hats(config.bands)
        self.hats_t = np.ascontiguousarray(self.hats.T)
        self.average = self.hats / self.hats.sum(axis=0)  # band power = weighted mean of bins
        bp = self._bands(stft(self._fit(plain)))
        self.floor = max(float(bp.max()), 1e-24) * 10 ** (config.floor_db / 10)
        self.total = max(float(bp.sum(dtype=np.float64)), 1e-30)
        self.bp = np.maximum(bp, self.floor)
        bs = self._bands(self.X)
        self.bs = np.maximum(bs, max(float(bs.max()), 1e-24) * 1e-12)
        """The source's band power (what a boost can scale before it must add the decoder's)."""

    def _fit(self, a: np.ndarray) -> np.ndarray:
        """a [C', T'] as [C, T]: channels folded or spread, cut or zero-padded."""
        a = np.asarray(a, dtype=np.float32)
        if a.shape[0] != self.channels:
            a = np.repeat(a.mean(axis=0, keepdims=True), self.channels, axis=0)
        out = np.zeros((self.channels, self.length), np.float32)
        n = min(self.length, a.shape[1])
        out[:, :n] = a[:, :n]
        return out

    def _bands(self, spec: np.ndarray) -> np.ndarray:
        """[C, F, K] spectrum -> [F, J] band power (mean over channels), smoothed over frames."""
        power = np.square(spec.real).sum(axis=0)
        power += np.square(spec.imag).sum(axis=0)
        power *= np.float32(1 / spec.shape[0])
        bands = power @ self.average
        if self.config.smooth_frames <= 0:
            return bands
        size = 2 * self.config.smooth_frames + 1  # a moving average over +-smooth_frames frames
        return scipy.ndimage.uniform_filter1d(bands, size, axis=0, mode="nearest")

    def render(self, steered: np.ndarray | None, mirrored: np.ndarray | None = None,
               lowered: np.ndarray | None = None, keep_level: bool | None = None,
               level: np.ndarray | None = None, level_up: bool = True) -> np.ndarray:
        """The source reshaped -> [C, T], by up to four decoder changes from the plain decode
        (each None when there is none):

        - `steered`: the change to it, both ways: cut where it has less energy, the decoder's
          added energy where it has more (a timbre knob's right half);
        - `lowered`: the change to it, cut-only (a timbre knob's own left half: turning it left
          only ever removes);
        - `mirrored`: the inverse of the change to it, cut-only (a timbre knob's left half that
          mirrors its right half, decoded at +|α|: KnobScale.mirror_down);
        - `level`: its level change alone, one gain per STFT frame (a level knob, both ways),
          each frame's gain only the knob's way (`level_up`: up, else down; a decoder that grows
          a frame the other way leaves it as it is).

        `keep_level` overrides the config's for `steered` and `lowered`."""
        cfg = self.config
        keep = cfg.keep_level if keep_level is None else keep_level
        gain = np.ones_like(self.bp)
        y = None
        if steered is not None:
            Q = stft(self._fit(steered))
            ratio, overall = self._ratio(self._bands(Q), keep)
            gain *= np.minimum(ratio, 1.0) ** (0.5 * cfg.cut_power)
            if cfg.add_gain > 0:  # the decoder's added band power: the source's own first, then Q's
                added = cfg.add_gain ** 2 * np.maximum(ratio - 1.0, 0.0) * self.bp
                with np.errstate(over="ignore"):  # a silent band of the source: inf, capped below
                    boost = np.minimum(1.0 + added / self.bs, 10 ** (cfg.boost_db / 10))
                gain *= np.sqrt(boost)
                rest = np.maximum(added - (boost - 1.0) * self.bs, 0.0)
                y = Q  # Q's own bins (its overall level change taken out), in place: Q is ours
                y *= np.sqrt(rest / (ratio * self.bp * overall)).astype(np.float32) @ self.hats_t
        if lowered is not None:  # a decoder that got louder overall (a hum) changes nothing here
            ratio, _ = self._ratio(self._bands(stft(self._fit(lowered))), keep, louder=False)
            gain *= np.minimum(ratio, 1.0) ** (0.5 * cfg.cut_power)
        if mirrored is not None:  # where the decoder adds, the source loses; never a boost
            ratio, _ = self._ratio(self._bands(stft(self._fit(mirrored))), False)
            gain *= np.minimum(1.0 / ratio, 1.0) ** (0.5 * cfg.mirror_power)
        out = self.X * (gain.astype(np.float32) @ self.hats_t)
        if y is not None:
            out += y
        scale = 1.0
        if keep:  # the source's energy back, within makeup_db (applied by the inverse STFT)
            parts = out.view(np.float32).reshape(-1)  # real and imaginary parts, squared and summed
            energy = float(np.square(parts).sum(dtype=np.float64))
            limit = 10 ** (cfg.makeup_db / 20)
            scale = float(np.clip(np.sqrt(self.energy / max(energy, 1e-30)), 1 / limit, limit))
        if level is not None:  # frame energy ratio (both floored), as a gain on every bin
            frames = np.maximum(self._bands(stft(self._fit(level))), self.floor).sum(axis=1)
            plain = self.bp.sum(axis=1)
            limit = 10 ** (cfg.level_db / 10)  # the knob's way only: a hum the decoder grows in
            g = np.clip(frames / plain, 1.0, limit) if level_up else \
                np.clip(frames / plain, 1 / limit, 1.0)  # a quiet tail of a quieter hit stays out
            out *= np.sqrt(g).astype(np.float32)[None, :, None]
        y = istft(out, self.length, scale)
        end = y[:, -len(_TAIL):]  # the change fades out into the source's own last samples:
        end -= self.source[:, -len(_TAIL):]  # added content may still sound where x is cut off
        end *= _TAIL[-y.shape[1]:]
        end += self.source[:, -len(_TAIL):]
        return y

    def _ratio(self, bq: np.ndarray, keep_level: bool, louder: bool = True) -> tuple[np.ndarray, float]:
        """Band power ratio steered / plain (both floored), after taking out the overall level
        change when keep_level (only a fall when not `louder`); and that level change (1 when
        none was taken out)."""
        level = 1.0
        if keep_level:
            level = max(float(bq.sum(dtype=np.float64)) / self.total, 1e-30)
            level = level if louder else min(level, 1.0)
            bq = bq / level
        return np.maximum(bq, self.floor) / self.bp, level


def apply_change(source: np.ndarray, plain: np.ndarray, steered: np.ndarray,
                 config: ChangeConfig = ChangeConfig()) -> np.ndarray:
    """The source [C, T] reshaped by the change from `plain` to `steered` (both [C, T'] at the
    source's rate, time-aligned with it; cut or zero-padded to T) -> float32 [C, T]."""
    return FaithfulPad(source, plain, config).render(steered)
