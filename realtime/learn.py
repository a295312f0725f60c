"""MIDI learn: touch each pad, turn each knob, say which one it is; get a controller map.

    MidiInput thread ──events──┐
    stdin thread ─────lines────┴─► queue ─► Session (the conversation) ─► Learner ─► write_controller

`Learner` is the pure logic: it takes parsed events with their times, tells what was touched (a
note, a CC, a 14-bit CC pair, an absolute knob or a relative encoder of some kind), assigns it to
a pad or knob slot, refuses what would make a map that cannot work, and builds the
ControllerMap. `Session` is the conversation around it (typed answers in, lines to print out),
still without I/O of its own; `run()` wires both to a MIDI port and the terminal.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, Event, NoteOn, ProgramChange
from steerpad.realtime.outputs import claim_output
from steerpad.realtime.presets import ControllerMap, KnobMode, write_controller

SETTLE_S = 0.4
"""A knob gesture is over after this long without a CC; then it is classified."""
HISTORY = 64
"""Values kept per (channel, CC) to classify encoders, across gestures until assigned."""
MODE_WORDS = {
    "absolute": "absolute",
    "relative_binary_offset": "relative encoder, binary offset (64 = still, 65 = +1, 63 = -1)",
    "relative_twos_complement": "relative encoder, two's complement (1 = +1, 127 = -1)",
    "relative_signed_bit": "relative encoder, signed bit (1 = +1, 65 = -1)",
}
Kind = Literal["pad", "knob"]


@dataclass(frozen=True)
class Control:
    """What one touch was. A pad: note `number`; a knob: CC `number` (a 14-bit pair's MSB),
    with its possible knob modes, the likeliest first (one left = certain)."""

    kind: Kind
    channel: int
    number: int
    cc14: bool = False
    modes: tuple[KnobMode, ...] = ("absolute",)

    @property
    def mode(self) -> KnobMode:
        return self.modes[0]

    def describe(self) -> str:
        ch = self.channel + 1
        if self.kind == "pad":
            return f"note {self.number} on channel {ch}"
        cc = f"CC {self.number}" + (f" + CC {self.number + 32} (a 14-bit pair)" if self.cc14 else "")
        text = f"{cc} on channel {ch}, {MODE_WORDS[self.mode]}"
        if len(self.modes) > 1:
            others = " or ".join(m.replace("_", " ") for m in self.modes[1:])
            text += f" (could be {others}: turn it the other way too to tell)"
        return text


def classify(values: Sequence[int]) -> tuple[KnobMode, ...]:
    """The knob modes a CC's value sequence fits, likeliest first. Absolute controllers send a
    value only when it changes; relative encoders repeat the same small step (65 65 65, 1 1 1)
    and stay near 64 (binary offset) or near 0 and 128 (two's complement, signed bit). At least a
    third of consecutive values must repeat, and all must fit one encoder's pattern."""
    v = list(values)
    repeats = sum(a == b for a, b in zip(v, v[1:]))
    if len(v) < 3 or repeats * 3 < len(v) - 1:  # accelerated encoders repeat less, but still do
        return ("absolute",)
    s = set(v)
    up, down_twos = set(range(1, 16)), set(range(113, 128))
    above, below = set(range(65, 80)), set(range(49, 64))
    if s <= above | below | {64}:
        if s & below:
            return ("relative_binary_offset",)
        return ("relative_binary_offset", "relative_signed_bit")  # 65.. is +n or -n
    if s <= up | down_twos:
        if s & down_twos:
            return ("relative_twos_complement",) if s & up else ("relative_twos_complement", "absolute")
        return ("relative_twos_complement", "relative_signed_bit")  # 1.. is +n in both
    if s <= up | above and s & up and s & above:
        return ("relative_signed_bit",)
    return ("absolute",)


class Learner:
    """Builds a controller map from touches: feed(event, now), poll(now) -> Control, assign()."""

    def __init__(self, n_pads: int = 16, n_knobs: int = 8, settle: float = SETTLE_S):
        self.pads: list[Control | None] = [None] * n_pads
        self.knobs: list[Control | None] = [None] * n_knobs
        self.program_channels: set[int] = set()
        self.settle = settle
        self._note: NoteOn | None = None
        self._gesture: list[ControlChange] = []
        self._last_cc = float("-inf")
        self._history: dict[tuple[int, int], deque[int]] = {}

    def slots(self, kind: Kind) -> list[Control | None]:
        return self.pads if kind == "pad" else self.knobs

    # ------------------------------------------------------------ detecting

    def feed(self, event: Event, now: float) -> None:
        """Take one parsed event (NoteOff is ignored: a pad is known by its note-on)."""
        if isinstance(event, NoteOn):
            if self._note is None:
                self._note = event
        elif isinstance(event, ControlChange):
            self._gesture.append(event)
            self._history.setdefault((event.channel, event.control), deque(maxlen=HISTORY)).append(event.raw)
            self._last_cc = now
        elif isinstance(event, ProgramChange):
            self.program_channels.add(event.channel)

    def poll(self, now: float) -> Control | None:
        """What was touched, once known: a note at once, a knob when its gesture has settled."""
        if self._note is not None:
            note, self._note = self._note, None
            self._gesture.clear()
            return Control("pad", note.channel, note.note)
        if self._gesture and now - self._last_cc >= self.settle:
            control = self._knob(self._gesture)
            self._gesture.clear()
            return control
        return None

    def clear_gesture(self) -> None:
        """Forget touches not yet reported (e.g. bumps while an answer was being typed)."""
        self._note = None
        self._gesture.clear()

    def _knob(self, gesture: list[ControlChange]) -> Control:
        counts = Counter((e.channel, e.control) for e in gesture)
        scores = {}
        for (ch, n), count in counts.items():
            if 32 <= n < 64 and (ch, n - 32) in counts:
                continue  # the LSB of a pair, counted with its MSB
            pair = n < 32 and (ch, n + 32) in counts
            scores[(ch, n, pair)] = count + (counts[(ch, n + 32)] if pair else 0)
        ch, n, pair = max(scores, key=lambda k: (scores[k], -k[1]))
        if pair:
            return Control("knob", ch, n, cc14=True)
        return Control("knob", ch, n, modes=classify(self._history[(ch, n)]))

    # ------------------------------------------------------------ assigning

    def assign(self, control: Control, index: int | None = None, kind: Kind | None = None
               ) -> tuple[Kind, int]:
        """Put `control` in slot `index` (0-based) of `kind` (default: its own kind), or the
        next free slot. Returns (kind, index); refuses what would make an unusable map."""
        kind = kind or control.kind
        slots = self.slots(kind)
        if not slots:
            raise SteerpadError(f"this session learns no {kind}s (--{kind}s 0); say 'skip'")
        if kind != control.kind:
            raise SteerpadError(f"{control.describe()} is a {'note' if control.kind == 'pad' else 'CC'}, "
                                f"so it can only be a {control.kind}, not a {kind}")
        if index is None:
            free = [i for i, c in enumerate(slots) if c is None]
            if not free:
                raise SteerpadError(f"all {len(slots)} {kind}s are assigned (--{kind}s {len(slots)}); "
                                    f"say 'clear {kind} N' to free one, or 'done'")
            index = free[0]
        if not 0 <= index < len(slots):
            raise SteerpadError(f"there is no {kind} {index + 1}: this map has {kind}s 1-{len(slots)} "
                                f"(--{kind}s {len(slots)})")
        if slots[index] is not None:
            raise SteerpadError(f"{kind} {index + 1} is already {slots[index].describe()}; say "
                                f"'clear {kind} {index + 1}' first, or pick another {kind}")
        for i, c in enumerate(slots):
            if c is None:
                continue
            if (c.channel, c.number) == (control.channel, control.number):
                raise SteerpadError(f"{control.describe()} is already {kind} {i + 1}; touch another {kind}")
            if c.channel != control.channel:
                raise SteerpadError(f"{control.describe()} is on channel {control.channel + 1}, but the "
                                    f"{kind}s so far are on channel {c.channel + 1}; set the device's "
                                    f"{kind}s to one channel")
            if kind == "knob":
                self._check_pair(control, c, i)
        if kind == "knob" and not self._modes(control):
            raise SteerpadError(f"{control.describe()} cannot share the map with the knobs so far "
                                f"({MODE_WORDS[self._modes()[0]]}): a map has one knob mode; set this "
                                "knob's mode on the device to match")
        slots[index] = control
        if kind == "knob":
            self._history.pop((control.channel, control.number), None)
        return kind, index

    @staticmethod
    def _check_pair(new: Control, old: Control, i: int) -> None:
        for a, b in ((new, old), (old, new)):
            if a.cc14 and b.number == a.number + 32:
                raise SteerpadError(f"CC {b.number} is the LSB of the 14-bit pair CC {a.number} "
                                    f"({'knob ' + str(i + 1) if a is old else 'this knob'}); it "
                                    "cannot be a knob of its own")

    def unassign(self, kind: Kind, index: int) -> Control:
        slots = self.slots(kind)
        if not 0 <= index < len(slots) or slots[index] is None:
            raise SteerpadError(f"{kind} {index + 1} is not assigned")
        control, slots[index] = slots[index], None
        return control

    def _modes(self, extra: Control | None = None) -> tuple[KnobMode, ...]:
        """The knob modes all assigned knobs (and `extra`) fit, in the first knob's order."""
        knobs = [c for c in self.knobs if c is not None] + ([extra] if extra is not None else [])
        if not knobs:
            return ("absolute",)
        modes = knobs[0].modes
        for c in knobs[1:]:
            modes = tuple(m for m in modes if m in c.modes)
        return modes

    # ------------------------------------------------------------ the map

    def build(self, name: str, sources: Sequence[str] = ("steerpad learn",), notes: str = ""
              ) -> ControllerMap:
        """The learned ControllerMap; refuses gaps (pad 3 without pad 2) and an empty map."""
        for kind in ("pad", "knob"):
            slots = self.slots(kind)
            used = [i for i, c in enumerate(slots) if c is not None]
            if used and len(used) != used[-1] + 1:
                gap = next(i for i in range(used[-1]) if slots[i] is None)
                raise SteerpadError(f"{kind} {gap + 1} is not assigned but {kind} {used[-1] + 1} is; "
                                    f"assign {kind} {gap + 1}, or 'clear {kind} {used[-1] + 1}'")
        pads = [c for c in self.pads if c is not None]
        knobs = [c for c in self.knobs if c is not None]
        if not pads and not knobs:
            raise SteerpadError("nothing is assigned yet: touch a pad or turn a knob first")
        program = next(iter(self.program_channels)) if len(self.program_channels) == 1 else None
        return ControllerMap(
            name=name, pad_channel=pads[0].channel if pads else None,
            pad_notes=tuple(c.number for c in pads), knob_channel=knobs[0].channel if knobs else None,
            knob_ccs=tuple(c.number for c in knobs), cc14=frozenset(c.number for c in knobs if c.cc14),
            knob_mode=self._modes()[0], program_channel=program, sources=tuple(sources), notes=notes)


# ---------------------------------------------------------------- the conversation

HELP = ("answers: Enter = the next free slot, 'pad N' / 'knob N', 'skip'; any time: 'clear pad N', "
        "'clear knob N', 'done' (write the map)")
_ANSWER = re.compile(r"^(?:(clear)\s+)?(pad|knob|p|k)\s*(\d+)$")


def parse_answer(text: str) -> tuple:
    """A typed line -> ("next",) | ("skip",) | ("done",) | ("assign"|"clear", kind, index 0-based)."""
    t = " ".join(text.strip().lower().split())
    if t in ("", "next"):
        return ("next",)
    if t in ("skip", "done"):
        return (t,)
    m = _ANSWER.match(t)
    if m is None or int(m.group(3)) < 1:
        raise SteerpadError(f"{text.strip()!r}? {HELP}")
    kind = "pad" if m.group(2).startswith("p") else "knob"
    return ("clear" if m.group(1) else "assign", kind, int(m.group(3)) - 1)


class Session:
    """One learn session: events and typed lines in, lines out through `say`, the map written
    to `out` on 'done'. `finished` turns True once it is written."""

    def __init__(self, learner: Learner, name: str, out: Path, say: Callable[[str], None],
                 port: str | None = None):
        self.learner, self.name, self.out, self.say, self.port = learner, name, out, say, port
        self.pending: Control | None = None
        self.finished = False
        self.map: ControllerMap | None = None

    def start(self) -> None:
        self.say(f"Touch a pad, or turn a knob slowly for a few clicks ({len(self.learner.pads)} pad and "
                 f"{len(self.learner.knobs)} knob slots). {HELP}")

    def event(self, event: Event, now: float) -> None:
        if isinstance(event, ProgramChange):
            self.learner.feed(event, now)
            self.say(f"program change {event.program} on channel {event.channel + 1}: snapshots will "
                     "follow program changes")
        elif self.pending is None:
            self.learner.feed(event, now)

    def tick(self, now: float) -> None:
        if self.pending is not None or self.finished:
            return
        control = self.learner.poll(now)
        if control is not None:
            self.pending = control
            free = [i for i, c in enumerate(self.learner.slots(control.kind)) if c is None]
            default = f"{control.kind} {free[0] + 1}" if free else "no free slot"
            self.say(f"{control.describe()} -> which {control.kind}? [Enter = {default}]")

    def line(self, text: str) -> None:
        try:
            answer = parse_answer(text)
            if answer[0] == "done":
                self._finish()
            elif answer[0] == "clear":
                control = self.learner.unassign(answer[1], answer[2])
                self.say(f"{answer[1]} {answer[2] + 1} cleared (was {control.describe()})")
            elif self.pending is None:
                self.say("touch a pad or turn a knob first (or 'done')")
            elif answer[0] == "skip":
                self.say(f"skipped {self.pending.describe()}")
                self._next()
            else:
                index, kind = (None, None) if answer[0] == "next" else (answer[2], answer[1])
                kind, index = self.learner.assign(self.pending, index, kind)
                self.say(f"{kind} {index + 1} = {self.pending.describe()}")
                self._next()
        except SteerpadError as e:
            self.say(str(e))

    def _next(self) -> None:
        self.pending = None
        self.learner.clear_gesture()

    def _finish(self) -> None:
        notes = "Learned with `steerpad learn`" + (f" from MIDI port {self.port!r}." if self.port else ".")
        cmap = self.learner.build(self.name, (f"steerpad learn, {time.strftime('%Y-%m-%d')}",), notes)
        write_controller(cmap, self.out)
        self.map, self.finished = cmap, True
        ref = self.out.stem if self.out.parent.name == "controllers" else str(self.out)
        pads, knobs = len(cmap.pad_notes), len(cmap.knob_ccs)
        self.say(f"wrote {self.out}: {pads} pad{'s' * (pads != 1)}, {knobs} knob{'s' * (knobs != 1)} "
                 f"({cmap.knob_mode}{', 14-bit ' + str(sorted(cmap.cc14)) if cmap.cc14 else ''}); "
                 f"in a preset: controller = {json.dumps(ref)}")


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the controller map to write "
                        "(presets/controllers/NAME.toml)")
    parser.add_argument("--midi-port", default=None,
                        help="MIDI input port name (substring); default: a virtual port named steerpad")
    parser.add_argument("--midi-api", default=None, help="jack, alsa, coremidi or winmm (default: auto)")
    parser.add_argument("--name", default=None, help="the device's name in the map (default: from --out)")
    parser.add_argument("--pads", type=int, default=16, help="pad slots (default 16)")
    parser.add_argument("--knobs", type=int, default=8, help="knob slots (default 8)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args: argparse.Namespace) -> int:
    if args.out.suffix != ".toml":
        raise SteerpadError(f"--out {args.out}: a controller map is a .toml file; use e.g. "
                            "presets/controllers/mine.toml")
    claim_output(args.out, "controller", force=args.force)  # a map `learn` wrote, nothing else
    for flag, n in (("--pads", args.pads), ("--knobs", args.knobs)):
        if not 0 <= n <= 128:
            raise SteerpadError(f"{flag} {n}: give 0-128 slots")
    if args.pads + args.knobs == 0:
        raise SteerpadError("--pads 0 --knobs 0 leaves nothing to learn; give some slots")
    from steerpad.realtime.midi import MidiInput

    inbox: queue.Queue = queue.Queue()
    midi = MidiInput(lambda event: inbox.put(("event", event, time.monotonic())), port=args.midi_port,
                     api=args.midi_api)
    session = Session(Learner(args.pads, args.knobs), args.name or args.out.stem.replace("_", " "),
                      args.out, lambda text: print(text, flush=True))
    try:
        midi.start()
        session.port = midi.port_name
        print(f"steerpad learn: listening on {midi.port_name}", flush=True)
        session.start()
        threading.Thread(target=_read_lines, args=(inbox,), name="stdin", daemon=True).start()
        while not session.finished:
            try:
                item = inbox.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is not None and item[0] == "event":
                session.event(item[1], item[2])
            elif item is not None and item[0] == "line":
                session.line(item[1])
            elif item is not None:  # end of input: finish if it can, else give up
                session.line("done")
                if not session.finished:
                    print("steerpad learn: input ended; nothing written", file=sys.stderr)
                    return 1
            session.tick(time.monotonic())
    finally:
        midi.stop()
    return 0


def _read_lines(inbox: queue.Queue) -> None:
    for line in sys.stdin:
        inbox.put(("line", line))
    inbox.put(("eof",))
