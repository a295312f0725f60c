"""The voice mixer: plays pad one-shots into the audio callback's block, sample-accurately.

Each pad's audio is a pre-rendered float32 C-contiguous array `[T, 2]` at the device rate.
The caller keeps every pad's latest render and hands the reference to `note_on`; a voice keeps
playing the array it started with even if the pad's render is replaced meanwhile.

Everything `mix` and `note_on` touch is sized at construction: per-voice scalars in fixed-length
lists, per-voice gains as `[max_block, 2]` tiles, one `[max_block, 2]` scratch buffer and the fade
tables (also two columns). Every numpy call multiplies or adds operands of one shape with `out=`:
numpy 2 allocates a block-sized buffer when a ufunc broadcasts (a `[2]` gain row or an `[n, 1]`
ramp against `[n, 2]`), so nothing here broadcasts. No lock. Problems are counted (`rejected`,
`cut`), never raised, so the callback cannot fail.

Click-free starts and ends: every voice starts with a `fade_in`-sample raised-cosine ramp, and a
stop, choke or steal fades the voice out over `fade_out` samples (raised cosine) before its slot
is freed. A stolen voice keeps sounding during its fade next to the voice that replaced it, so
there are `2 * polyphony` slots: at most `polyphony` voices are held (not fading), the rest
carry fades. Only when every slot is taken (more than `polyphony` fades running at once, i.e.
more than `polyphony` steals within one fade) is the fade nearest its end cut short (`cut`).

Ringing voices follow the knobs: `follow(renders, lineages)` (once per block, before `mix`)
moves every voice whose pad has a fresh render of the same lineage (the same source, no
`affects = "next"` knob moved since the voice started) and the same length to it, at the same
playhead, with an `xfade`-sample equal-power crossfade (sin / cos: the two renders of one source
are time-aligned, so the ringing note changes sound without a click or a jump in time). A render
that arrives during a crossfade is taken when that one ends.

Threads: `note_on`, `stop`, `stop_all`, `follow` and `mix` belong to one thread (the audio
callback, which drains the event queue before mixing). `set_pad` is configuration: it may run on
another thread, and takes effect at the next note-on of that pad.
"""

from __future__ import annotations

import math

import numpy as np

VELOCITY_CURVES = ("linear", "soft", "hard", "fixed")
"""linear: v/127; soft: (v/127)**0.5 (quiet hits louder); hard: (v/127)**2; fixed: always 1."""


def velocity_gain(curve: str, velocity: int) -> float:
    """The linear gain of a MIDI velocity (clamped to 0-127) on a curve of VELOCITY_CURVES."""
    if curve not in VELOCITY_CURVES:
        raise ValueError(f"unknown velocity curve {curve!r}; choose one of {', '.join(VELOCITY_CURVES)}")
    v = min(max(int(velocity), 0), 127) / 127.0
    if curve == "linear":
        return v
    if curve == "soft":
        return v**0.5
    if curve == "hard":
        return v * v
    return 1.0


def pan_gains(pan: float) -> tuple[float, float]:
    """Equal-power pan law, normalised so the centre is unity: pan -1 (left) .. 1 (right) gives
    (sqrt(2) cos t, sqrt(2) sin t) with t = (pan + 1) pi / 4, so L^2 + R^2 = 2 at every pan and a
    centred pad plays its render unchanged (hard left: +3 dB left, silent right)."""
    t = (min(max(float(pan), -1.0), 1.0) + 1.0) * math.pi / 4.0
    return math.sqrt(2.0) * math.cos(t), math.sqrt(2.0) * math.sin(t)


def _equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(falling, rising) equal-power crossfade tables `[n, 2]` float32: cos and sin of a quarter
    turn, sampled strictly inside it (falling^2 + rising^2 = 1 throughout)."""
    x = (np.arange(1, n + 1, dtype=np.float64) / (n + 1)) * (np.pi / 2)
    fall, rise = np.cos(x), np.sin(x)
    return tuple(np.ascontiguousarray(np.repeat(r[:, None], 2, axis=1), np.float32) for r in (fall, rise))


def _ramp(n: int, rising: bool) -> np.ndarray:
    """A raised-cosine ramp `[n, 2]` float32 (both columns equal) that never reaches its end
    value inside: rising ends just below 1, falling starts just below 1 and ends just above 0."""
    x = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
    r = 0.5 - 0.5 * np.cos(np.pi * x)
    return np.ascontiguousarray(np.repeat((r if rising else r[::-1])[:, None], 2, axis=1), np.float32)


class VoiceMixer:
    """Up to `polyphony` held voices over `n_pads` pads, mixed into stereo blocks of at most
    `max_block` frames (longer blocks are mixed in `max_block` pieces). Memory: `2 * polyphony`
    gain tiles of `max_block` stereo frames (64 KiB at the defaults and 128 frames).

    Counters (read from any thread): `active` voices sounding (held or fading); `stolen` voices
    taken at the polyphony limit (oldest held first, faded out); `choked` voices faded out by a
    note of another pad in their choke group; `cut` fades cut short because every slot was busy;
    `rejected` note-ons ignored (pad out of range, audio not float32 C-contiguous [T>0, 2]).
    """

    def __init__(self, n_pads: int, max_block: int, polyphony: int = 32, fade_in: int = 32,
                 fade_out: int = 256, velocity_curve: str = "linear", xfade: int = 256) -> None:
        for name, value, low in (("n_pads", n_pads, 1), ("max_block", max_block, 1),
                                 ("polyphony", polyphony, 1), ("fade_in", fade_in, 1),
                                 ("fade_out", fade_out, 1), ("xfade", xfade, 1)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.n_pads, self.max_block, self.polyphony = n_pads, max_block, polyphony
        self.fade_in, self.fade_out = fade_in, fade_out
        self._vel = [velocity_gain(velocity_curve, v) for v in range(128)]
        self.velocity_curve = velocity_curve
        # Pads: gain (linear, pan applied) per channel, choke group (-1: none).
        self._pad_l = [1.0] * n_pads
        self._pad_r = [1.0] * n_pads
        self._choke = [-1] * n_pads
        self._bus = [-1] * n_pads  # pad -> its stem in mix(out, stems) (set_bus); -1: none
        # Voices: one slot each; a slot is free when _audio[i] is None.
        s = self.slots = 2 * polyphony
        self._audio: list[np.ndarray | None] = [None] * s
        self._pad = [0] * s
        self._pos = [0] * s       # next frame of _audio to play
        self._delay = [0] * s     # frames of the next block before the voice starts
        self._fade = [-1] * s     # -1: held; else the next index into the fade-out table
        self._next: list[np.ndarray | None] = [None] * s  # the render a crossfade goes to
        self._xpos = [0] * s      # the next index into the crossfade tables
        self._lineage = [0] * s   # the lineage of the render the voice plays (see follow)
        self._fstart = [0] * s    # frames of the next block before that fade begins
        self._order = [0] * s     # note-on count when the voice started (oldest = smallest)
        self._gain = np.zeros((s, max_block, 2), np.float32)   # voice gain, repeated down the block
        self._gain_l = [self._gain[i, :, 0] for i in range(s)]   # column views, made once
        self._gain_r = [self._gain[i, :, 1] for i in range(s)]
        self._tmp = np.zeros((max_block, 2), np.float32)
        self._tmp2 = np.zeros((max_block, 2), np.float32)
        self._fin = _ramp(fade_in, rising=True)
        self._fout = _ramp(fade_out, rising=False)
        self.xfade = xfade
        self._xfall, self._xrise = _equal_power(xfade)
        self._count = 0
        self._held = 0
        self._top = 0             # slots at and above this index are free (free_slot fills low first)
        self.active = 0
        self.stolen = 0
        self.choked = 0
        self.cut = 0
        self.rejected = 0
        self.followed = 0
        """Crossfades started by `follow` (ringing voices moved to a fresh render)."""

    # Configuration ---------------------------------------------------------------------------

    def set_pad(self, pad: int, gain_db: float = 0.0, pan: float = 0.0, choke: int = -1) -> None:
        """A pad's level (dB), pan (-1..1, equal power, centre = unity; see `pan_gains`) and
        choke group (>= 0; -1 for none). Applies to the pad's next note-ons."""
        if not 0 <= pad < self.n_pads:
            raise ValueError(f"pad must be in 0..{self.n_pads - 1}, got {pad}")
        if not -1.0 <= pan <= 1.0:
            raise ValueError(f"pan must be in -1..1, got {pan}")
        if int(choke) != choke or choke < -1:
            raise ValueError(f"choke must be a group number >= 0 or -1 for none, got {choke!r}")
        g = 10.0 ** (gain_db / 20.0)
        left, right = pan_gains(pan)
        self._pad_l[pad], self._pad_r[pad], self._choke[pad] = g * left, g * right, int(choke)

    def set_bus(self, pad: int, bus: int) -> None:
        """Also add `pad`'s voices to stem `bus` of mix(out, stems) (-1: to no stem)."""
        if not 0 <= pad < self.n_pads or int(bus) != bus or bus < -1:
            raise ValueError(f"pad {pad} or bus {bus!r} out of range")
        self._bus[pad] = int(bus)

    # Events (audio thread) -------------------------------------------------------------------

    def note_on(self, pad: int, velocity: int, audio: np.ndarray, offset: int = 0, lineage: int = 0) -> None:
        """Start `audio` ([T, 2] float32, C-contiguous) on `pad`, `offset` frames into the next
        mixed block (`lineage`: the render's, for `follow`). Chokes the pad's group (other pads
        only) and steals the oldest held voice if `polyphony` voices are held."""
        if (not 0 <= pad < self.n_pads or not isinstance(audio, np.ndarray) or audio.ndim != 2
                or audio.shape[1] != 2 or audio.shape[0] == 0 or audio.dtype != np.float32
                or not audio.flags.c_contiguous):
            self.rejected += 1
            return
        offset = max(int(offset), 0)
        group = self._choke[pad]
        if group >= 0:
            for i in range(self._top):
                if (self._audio[i] is not None and self._fade[i] < 0 and self._pad[i] != pad
                        and self._choke[self._pad[i]] == group):
                    self.choked += 1
                    self._release(i, offset)
        if self._held >= self.polyphony:
            oldest = -1
            for i in range(self._top):
                if self._audio[i] is not None and self._fade[i] < 0 and (
                        oldest < 0 or self._order[i] < self._order[oldest]):
                    oldest = i
            self.stolen += 1
            self._release(oldest, offset)
        slot = self._free_slot()
        vel = self._vel[min(max(int(velocity), 0), 127)]
        self._audio[slot] = audio
        self._next[slot] = None
        self._lineage[slot] = lineage
        self._pad[slot] = pad
        self._pos[slot] = 0
        self._delay[slot] = offset
        self._fade[slot] = -1
        self._fstart[slot] = 0
        self._order[slot] = self._count
        self._count += 1
        self._gain_l[slot].fill(self._pad_l[pad] * vel)
        self._gain_r[slot].fill(self._pad_r[pad] * vel)
        self._held += 1
        self.active += 1

    def stop(self, pad: int, offset: int = 0) -> None:
        """Fade out the pad's held voices, starting `offset` frames into the next block."""
        for i in range(self._top):
            if self._audio[i] is not None and self._fade[i] < 0 and self._pad[i] == pad:
                self._release(i, max(int(offset), 0))

    def stop_all(self, offset: int = 0) -> None:
        """Fade out every held voice, starting `offset` frames into the next block."""
        for i in range(self._top):
            if self._audio[i] is not None and self._fade[i] < 0:
                self._release(i, max(int(offset), 0))

    def follow(self, renders: list, lineages: list[int]) -> None:
        """Move ringing voices to their pad's fresh render: a voice whose pad's render
        (`renders[pad]`, read before `lineages[pad]`: a publisher writes the lineage first) is
        another array of the same lineage and length starts an equal-power crossfade to it at
        its playhead, from the next mixed frame. A voice already crossfading, or not yet
        started, waits; a fading-out voice follows too."""
        for i in range(self._top):
            audio = self._audio[i]
            if audio is None or self._next[i] is not None:
                continue
            pad = self._pad[i]
            fresh = renders[pad]
            if (fresh is None or fresh is audio or lineages[pad] != self._lineage[i]
                    or len(fresh) != len(audio)):
                continue
            self._next[i] = fresh
            self._xpos[i] = 0
            self.followed += 1

    # The block -------------------------------------------------------------------------------

    def mix(self, out: np.ndarray, stems: np.ndarray | None = None) -> None:
        """Overwrite `out` ([frames, 2]) with the sum of the voices; advance and free them. With
        `stems` ([buses, >= frames, 2]), also overwrite stems[b, :frames] with the voices of the
        pads routed to bus b (set_bus): the same samples `out` gets, split by pad."""
        out.fill(0.0)
        frames = out.shape[0]
        if stems is not None:
            stems[:, :frames].fill(0.0)
        for start in range(0, frames, self.max_block):
            block = out[start:start + self.max_block]
            n = block.shape[0]
            for i in range(self._top):
                if self._audio[i] is not None:
                    bus = -1 if stems is None else self._bus[self._pad[i]]
                    self._play(i, block, n, None if bus < 0 else stems[bus, start:start + n])

    def sounding(self) -> list[tuple[int, int]]:
        """(pad, frames played) of every sounding voice; for displays, from any thread (a
        snapshot without locks: a voice may start or end while it is taken)."""
        out = []
        for i in range(self._top):
            if self._audio[i] is not None and self._delay[i] == 0:
                out.append((self._pad[i], self._pos[i]))
        return out

    # Internals -------------------------------------------------------------------------------

    def _release(self, i: int, offset: int) -> None:
        """Begin voice i's fade-out `offset` frames into the next block (free it at once if it
        would not have sounded by then)."""
        if self._pos[i] == 0 and self._delay[i] >= offset:
            self._free(i)
            return
        self._held -= 1
        self._fade[i] = 0
        self._fstart[i] = offset

    def _free(self, i: int) -> None:
        if self._fade[i] < 0:
            self._held -= 1
        self._audio[i] = None
        self._next[i] = None
        self._fade[i] = -1
        self.active -= 1
        while self._top > 0 and self._audio[self._top - 1] is None:
            self._top -= 1

    def _free_slot(self) -> int:
        """The lowest free slot; if there is none, cut the fade nearest its end."""
        best = -1
        for i in range(self.slots):
            if self._audio[i] is None:
                self._top = max(self._top, i + 1)
                return i
            if self._fade[i] >= 0 and (best < 0 or self._fade[i] > self._fade[best]):
                best = i
        self.cut += 1
        self._free(best)
        self._top = max(self._top, best + 1)
        return best

    def _play(self, i: int, block: np.ndarray, n: int, stem: np.ndarray | None = None) -> None:
        """Add voice i's part of a block of n frames (and to `stem`, if given): a held stretch,
        then its fade-out."""
        at = self._delay[i]
        if at >= n:
            self._delay[i] = at - n
            if self._fade[i] >= 0:
                self._fstart[i] = max(self._fstart[i] - n, 0)
            return
        self._delay[i] = 0
        audio = self._audio[i]
        left = audio.shape[0] - self._pos[i]
        if self._fade[i] < 0 or self._fstart[i] > at:
            end = n if self._fade[i] < 0 else min(self._fstart[i], n)
            k = min(end - at, left)
            self._add(i, block, at, k, -1, stem)
            at += k
            left -= k
            if self._fade[i] >= 0:
                self._fstart[i] = max(self._fstart[i] - n, 0)
        if self._fade[i] >= 0 and at < n and left > 0:
            k = min(n - at, left, self.fade_out - self._fade[i])
            self._add(i, block, at, k, self._fade[i], stem)
            self._fade[i] += k
            left -= k
            if self._fade[i] >= self.fade_out:
                left = 0
        if left <= 0:
            self._free(i)

    def _add(self, i: int, block: np.ndarray, at: int, k: int, fade: int,
             stem: np.ndarray | None = None) -> None:
        """block[at:at+k] (and stem[at:at+k]) += voice i's next k frames (gain, fade-in, fade-out
        from `fade`)."""
        if k <= 0:
            return
        pos = self._pos[i]
        t = self._tmp[:k]
        np.multiply(self._audio[i][pos:pos + k], self._gain[i, :k], out=t)
        nxt = self._next[i]
        if nxt is not None:  # crossfading to a fresh render: old * fall + new * rise
            x = self._xpos[i]
            m = min(k, self.xfade - x)
            u = self._tmp2[:k]
            np.multiply(nxt[pos:pos + k], self._gain[i, :k], out=u)
            np.multiply(t[:m], self._xfall[x:x + m], out=t[:m])
            np.multiply(u[:m], self._xrise[x:x + m], out=u[:m])
            if m < k:
                t[m:] = 0.0  # past the crossfade: the fresh render alone
            np.add(t, u, out=t)
            self._xpos[i] = x + m
            if x + m >= self.xfade:
                self._audio[i], self._next[i] = nxt, None
        if pos < self.fade_in:
            m = min(k, self.fade_in - pos)
            np.multiply(t[:m], self._fin[pos:pos + m], out=t[:m])
        if fade >= 0:
            np.multiply(t, self._fout[fade:fade + k], out=t)
        dst = block[at:at + k]
        np.add(dst, t, out=dst)
        if stem is not None:
            dst = stem[at:at + k]
            np.add(dst, t, out=dst)
        self._pos[i] = pos + k
