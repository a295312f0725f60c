"""MIDI events as the engine sees them: parsed, channel 0-15, controller values resolved to 0-1.

The MIDI inputs (midi.py over rtmidi, jackio.JackMidi over JACK) and the offline bounce
(bounce.py) produce these; the engine maps them to pads and knobs through the preset's controller
map."""

from __future__ import annotations

from typing import NamedTuple


class NoteOn(NamedTuple):
    channel: int
    """0-15 (devices and presets say 1-16)."""
    note: int
    velocity: int
    """1-127 (a note-on with velocity 0 is parsed as a NoteOff)."""


class NoteOff(NamedTuple):
    channel: int
    note: int
    velocity: int = 0


class ControlChange(NamedTuple):
    channel: int
    control: int
    """The controller number (for a 14-bit pair, the MSB's number, 0-31)."""
    value: float
    """0-1: a 7-bit value / 127, or a 14-bit pair's value / 16383."""
    raw: int
    """The value as sent: 0-127, or 0-16383 for a 14-bit pair (relative encoders need it)."""


class ProgramChange(NamedTuple):
    channel: int
    program: int
    """0-127."""


Event = NoteOn | NoteOff | ControlChange | ProgramChange
