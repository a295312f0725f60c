"""A lock-free single-producer, single-consumer ring of audio frames.

The audio callback writes every block (output for the visualizer feed, input for capture); one
other thread reads. No locks: the writer copies the block in, then publishes it by advancing
`written` (one int store, atomic under the GIL). A reader keeps its own position; if it falls
more than `capacity` frames behind, the oldest frames are gone and `read` says how many it lost.
"""

from __future__ import annotations

import numpy as np


class AudioRing:
    def __init__(self, capacity: int, channels: int = 2):
        if capacity < 1 or channels < 1:
            raise ValueError(f"capacity and channels must be >= 1, got {capacity}, {channels}")
        self.capacity, self.channels = int(capacity), int(channels)
        self.buffer = np.zeros((self.capacity, self.channels), np.float32)
        self.written = 0
        """Frames written since the start (monotonic; the writer's position)."""

    def write(self, block: np.ndarray) -> None:
        """Append block [frames, channels] (audio thread; no allocation)."""
        n = block.shape[0]
        if n > self.capacity:
            block, n = block[-self.capacity:], self.capacity
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self.buffer[start:start + first] = block[:first]
        if first < n:
            self.buffer[:n - first] = block[first:]
        self.written += n

    def read(self, position: int, max_frames: int | None = None) -> tuple[np.ndarray, int, int]:
        """Frames from `position` (a reader's own count) up to what is written, at most
        max_frames: (a copy [frames, channels], the new position, frames lost to overrun)."""
        end = self.written
        lost = max(0, end - self.capacity - position)
        start = position + lost
        if max_frames is not None:
            end = min(end, start + max_frames)
        n = end - start
        if n <= 0:
            return np.zeros((0, self.channels), np.float32), start, lost
        i = start % self.capacity
        first = min(n, self.capacity - i)
        out = np.empty((n, self.channels), np.float32)
        out[:first] = self.buffer[i:i + first]
        if first < n:
            out[first:] = self.buffer[:n - first]
        # The writer may have lapped us during the copy: drop what it overwrote.
        over = max(0, self.written - self.capacity - start)
        if over:
            out, start, lost = out[over:], start + over, lost + over
        return out, start + out.shape[0], lost

    def latest(self, frames: int) -> np.ndarray:
        """A copy of the last `frames` frames written (fewer at the start)."""
        frames = min(frames, self.written, self.capacity)
        return self.read(self.written - frames)[0]
