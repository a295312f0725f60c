"""Finding one hit in a stream of input blocks: its onset, with pre-roll, and its end.

A HitDetector is fed blocks [frames, C] as they arrive (any sizes: the take does not depend on
them) and returns the Take once its end is known. Onset: the first sample (any channel) above
threshold_db. End: the last sample above the silence level followed by hold_ms below it, or the
one-shot length. Pure numpy, no threads: capture.py runs it on the input ring.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

FLOOR_MS = 100.0
"""Input kept before an onset to measure the noise floor (the end's silence level sits above it)."""
TAIL_MS = 5.0
"""Kept after the last sample above the silence level (capture.py fades it out)."""


def db_to_lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


class Take(NamedTuple):
    audio: np.ndarray
    """[T, C] float32 at the input rate, from the pre-roll to the end."""
    onset: int
    """Index of the onset in audio: the pre-roll kept (less than pre_roll_ms right after arming)."""
    ended: str
    """ "silence" or "max_length"."""
    onset_at: int
    """The onset's position in the stream of frames given to prime() and feed()."""


class HitDetector:
    """Finds one hit in a stream of input blocks [frames, C] at `rate`: feed() returns its Take once
    the end is known, None before; then it is done (make a new one for the next hit).

    Onset: the first sample (any channel) above threshold_db. End: the last sample above the
    silence level followed by hold_ms below it; the silence level is silence_db, raised to 6 dB
    over the noise floor measured before the onset (but kept 6 dB under the threshold)."""

    def __init__(self, rate: int, max_frames: int, threshold_db: float = -36.0, pre_roll_ms: float = 15.0,
                 silence_db: float = -60.0, hold_ms: float = 100.0):
        def frames(ms: float) -> int:
            return int(round(ms * rate / 1000))

        self.threshold, self.silence = db_to_lin(threshold_db), db_to_lin(silence_db)
        self.pre, self.hold = frames(pre_roll_ms), max(1, frames(hold_ms))
        self.tail = min(self.hold, frames(TAIL_MS))
        self.max = int(max_frames)
        self.keep = self.pre + frames(FLOOR_MS)
        self.state = "listening"
        """listening -> recording (onset found) -> done (Take returned)."""
        self.position = 0
        """Frames given to prime() and feed() so far (a caller may start it at its own count)."""
        self.level = self.silence
        """The silence level in use (set at the onset)."""
        self._history: np.ndarray | None = None
        self._take: list[np.ndarray] = []
        self._n = self._kept = 0
        self._last_loud = -1
        self._onset = self._onset_at = 0

    def prime(self, block: np.ndarray) -> None:
        """Input from just before arming: pre-roll and noise floor for a hit that comes at once.
        Never searched for an onset."""
        block = _frames(block)
        self.position += block.shape[0]
        self._remember(block)

    def _remember(self, block: np.ndarray) -> None:
        h = block if self._history is None else np.concatenate([self._history, block])
        self._history = h[h.shape[0] - min(self.keep, h.shape[0]):]

    def feed(self, block: np.ndarray) -> Take | None:
        block = _frames(block)
        start = self.position
        self.position += block.shape[0]
        if self.state == "done":
            return None
        if self.state == "listening":
            hot = np.flatnonzero(np.abs(block).max(axis=1, initial=0.0) > self.threshold)
            if hot.size == 0:
                self._remember(block)
                return None
            hist = block[:0] if self._history is None else self._history
            j = hist.shape[0] + int(hot[0])  # the onset in hist + block
            pre = min(self.pre, j)
            buf = np.concatenate([hist, block])
            floor = float(np.abs(buf[:j - pre]).max(initial=0.0))
            self.level = min(max(self.silence, 2.0 * floor), self.threshold / 2.0)
            self._onset, self._onset_at = pre, start + int(hot[0])
            self.state, self._history = "recording", None
            block = buf[j - pre:]
        loud = np.flatnonzero(np.abs(block).max(axis=1, initial=0.0) > self.level)
        if loud.size:
            self._last_loud = self._n + int(loud[-1])
        self._n += block.shape[0]
        if self._kept < self.max:
            self._take.append(block[:self.max - self._kept])
            self._kept += self._take[-1].shape[0]
        if self._n >= self.max and self._last_loud + 1 + self.tail >= self.max:
            end, ended = self.max, "max_length"  # still sounding at the one-shot length
        elif self._n - (self._last_loud + 1) >= self.hold:
            end, ended = self._last_loud + 1 + self.tail, "silence"
        else:
            return None
        self.state = "done"
        audio = np.concatenate(self._take)[:end]
        self._take = []
        return Take(np.ascontiguousarray(audio, np.float32), self._onset, ended, self._onset_at)


def _frames(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block, np.float32)
    return block[:, None] if block.ndim == 1 else block
