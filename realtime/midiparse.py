"""Raw MIDI bytes -> events.py events: the parser behind MidiInput (midi.py), the JACK MIDI input
(jackio.JackMidi) and the bounce (bounce.py), with no I/O.

Runs once per incoming message (in the audio callback, when it drains the MIDI input), so it
allocates only the event it returns."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, Event, NoteOff, NoteOn, ProgramChange

_CC7 = tuple(v / 127 for v in range(128))


class MidiParser:
    """Raw MIDI messages (one per list, as rtmidi delivers them) -> events, or None.

    Parsed: note-on (velocity 0 -> NoteOff), note-off, control change, program change, each with
    exact length and data bytes 0-127. Everything else -> None and `ignored += 1`, never an
    exception: system messages (sysex, clock, ...), aftertouch, pitch bend, running-status
    fragments (no status byte), truncated or overlong messages, data bytes outside 0-127.

    14-bit controllers: for each MSB number n in `cc14` (0-31) the LSB is n + 32 on the same
    channel, kept per channel. An MSB sets the pair's MSB and resets its LSB to 0, as MIDI 1.0
    says a receiver should ("when an MSB is received, the receiver should set its concept of the
    LSB to zero"), and emits (MSB << 7) at once; an LSB emits (MSB << 7 | LSB) with the last MSB
    (0 before any). So a controller sending MSB then LSB gives two events that never overshoot on
    the way up, and one sending LSB alone for fine moves works. Both events carry control n and
    raw 0-16383; a 7-bit controller's event carries raw 0-127.
    """

    __slots__ = ("cc14", "ignored", "_pair", "_msb", "_lsb")

    def __init__(self, cc14: Collection[int] = ()):
        for n in cc14:
            if type(n) is not int or not 0 <= n <= 31:
                raise SteerpadError(f"14-bit controller {n!r} is not an MSB number: use 0-31 "
                                    "(its LSB is that number + 32)")
        self.cc14 = frozenset(cc14)
        """The MSB numbers of the 14-bit pairs."""
        self.ignored = 0
        """Messages that gave no event."""
        self._pair = [-1] * 128  # control number -> its pair's MSB number, or -1 for a 7-bit control
        for n in self.cc14:
            self._pair[n] = self._pair[n + 32] = n
        self._msb = bytearray(16 * 32)  # [channel * 32 + MSB number]
        self._lsb = bytearray(16 * 32)

    def feed(self, message: Sequence[int]) -> Event | None:
        """One raw message -> its event, or None (counted in `ignored`)."""
        try:
            n = len(message)
            status = message[0] if n else 0
            if 0x80 <= status <= 0xEF:
                kind, channel = status & 0xF0, status & 0x0F
                if n == 3:
                    a, b = message[1], message[2]
                    if not (a | b) & ~0x7F:
                        if kind == 0x90:
                            return NoteOn(channel, a, b) if b else NoteOff(channel, a, 0)
                        if kind == 0x80:
                            return NoteOff(channel, a, b)
                        if kind == 0xB0:
                            return self._control(channel, a, b)
                elif n == 2 and kind == 0xC0 and not message[1] & ~0x7F:
                    return ProgramChange(channel, message[1])
        except TypeError:  # not a sequence of ints
            pass
        self.ignored += 1
        return None

    def _control(self, channel: int, control: int, value: int) -> ControlChange:
        msb = self._pair[control]
        if msb < 0:
            return ControlChange(channel, control, _CC7[value], value)
        i = channel * 32 + msb
        if control == msb:
            self._msb[i] = value
            self._lsb[i] = 0
        else:
            self._lsb[i] = value
        raw = self._msb[i] << 7 | self._lsb[i]
        return ControlChange(channel, msb, raw / 16383, raw)
