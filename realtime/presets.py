"""Presets and controller maps: which pad plays what, which knob steers where (TOML files).

    presets/<name>.toml               a performance: controller, voices, [[pads]], [[knobs]], [snapshots],
                                      [capture]
    presets/controllers/<id>.toml     a controller map: the notes its pads send, the CCs its knobs send

`load_preset(path)` reads a preset and its controller map and checks every field it can without
a bundle; `check_preset(preset, direction_names, kit_names)` checks it against the bundle it is
about to play. Bad input raises a one-line SteerpadError naming the file and the key, with the
allowed values. In messages `pads[2]` is pad 2: the second [[pads]] table (counting from 1, as
devices print pad numbers). Channels in files are 1-16 as printed on devices, or 0 / "any".
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from steerpad.realtime import shipped
from steerpad.realtime.errors import EMPTY, SteerpadError, user_path
from steerpad.realtime.events import ControlChange, Event, NoteOff, NoteOn
from steerpad.realtime.faithful import MODES
from steerpad.realtime.outputs import write_text_atomic

KnobMode = Literal["absolute", "relative_binary_offset", "relative_twos_complement", "relative_signed_bit"]
KNOB_MODES: tuple[str, ...] = get_args(KnobMode)
VELOCITY_CURVES = ("linear", "soft", "hard", "fixed")
KNOB_CURVES = ("linear", "exponential", "logarithmic", "s-curve")
KNOB_AFFECTS = ("ringing", "next")
"""What a knob move reaches: `ringing`, the notes already sounding (they crossfade to the fresh
render) and the next hits; `next`, only the next hits (a sounding note keeps its sound)."""
PRESETS_DIR = shipped.presets_dir()
"""The shipped presets (steerpad.presets, through importlib.resources: the wheel's copy, or the
repository's presets/ in a checkout); `controller = "<id>"` finds PRESETS_DIR/controllers/<id>.toml."""
KIT_PREFIX = "kit:"
KIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
"""As bundle.KIT_NAME (kit entry names are file names); kept here so presets load without numpy."""
STEP = 1 / 127
"""A relative encoder's knob movement per tick."""

_SHAPES = {
    "linear": lambda x: x,
    "exponential": lambda x: x * x,
    "logarithmic": math.sqrt,
    "s-curve": lambda x: x * x * (3.0 - 2.0 * x),
}


@dataclass(frozen=True)
class ControllerMap:
    """How one device's pads and knobs reach steerpad. Pad i sends note pad_notes[i], knob i
    sends CC knob_ccs[i]; channels are 0-15, None = any channel."""

    name: str
    pad_channel: int | None
    pad_notes: tuple[int, ...]
    knob_channel: int | None
    knob_ccs: tuple[int, ...]
    cc14: frozenset[int] = frozenset()
    """MSB numbers (0-31) of knobs sent as 14-bit pairs: MSB n, LSB n + 32."""
    knob_mode: KnobMode = "absolute"
    program_channel: int | None = None
    """The channel program changes (snapshot recalls) come on; None = any."""
    sources: tuple[str, ...] = ()
    """Where the numbers came from (a maker's document, an editor dump, `steerpad learn`)."""
    notes: str = ""
    _pads: dict[int, int] = field(init=False, repr=False, compare=False)
    _knobs: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pads", {n: i for i, n in enumerate(self.pad_notes)})
        object.__setattr__(self, "_knobs", {c: i for i, c in enumerate(self.knob_ccs)})

    def pad_for(self, event: Event) -> int | None:
        """The pad index (0 = pad 1) a NoteOn / NoteOff belongs to, or None."""
        if not isinstance(event, (NoteOn, NoteOff)):
            return None
        if self.pad_channel is not None and event.channel != self.pad_channel:
            return None
        return self._pads.get(event.note)

    def knob_for(self, event: Event) -> int | None:
        """The knob index (0 = knob 1) a ControlChange belongs to, or None."""
        if not isinstance(event, ControlChange):
            return None
        if self.knob_channel is not None and event.channel != self.knob_channel:
            return None
        return self._knobs.get(event.control)

    def knob_value(self, previous: float, event: ControlChange) -> float:
        """The knob's new position 0-1: the value sent (absolute), or `previous` moved by the
        signed tick count the encoder sent, 1/127 per tick (relative modes)."""
        if self.knob_mode == "absolute":
            return event.value
        return min(1.0, max(0.0, previous + relative_ticks(self.knob_mode, event.raw) * STEP))


def relative_ticks(mode: str, raw: int) -> int:
    """The signed tick count in a relative encoder's 7-bit value."""
    if mode == "relative_binary_offset":  # 64 = still, 65 = +1, 63 = -1
        return raw - 64
    if mode == "relative_twos_complement":  # 1 = +1, 127 = -1
        return raw - 128 if raw >= 64 else raw
    if mode == "relative_signed_bit":  # 1 = +1, 65 = -1
        return -(raw & 63) if raw & 64 else raw
    raise ValueError(f"not a relative knob mode: {mode!r}")


@dataclass(frozen=True)
class PadSpec:
    """Pad `index` (0 = pad 1): a bundle kit entry (kind "kit", sample = its name) or an audio
    file (kind "file", sample = its absolute Path)."""

    index: int
    kind: Literal["kit", "file"]
    sample: str | Path
    gain_db: float = 0.0
    pan: float = 0.0
    """-1 (left) .. 1 (right)."""
    choke: str | None = None
    """Pads sharing a choke group cut each other off."""
    mode: str | None = None
    """What the pad plays (faithful.MODES); None = the preset's mode."""
    output: str | None = None
    """The pad's group for `steerpad live --outputs groups` (a JACK port pair named after it);
    None = its choke group, else a pair of its own (see `group_name`)."""

    def group_name(self) -> str:
        """The name of the port pair this pad plays into with --outputs groups."""
        if self.output:
            return self.output
        if self.choke:
            return re.sub(r"[^A-Za-z0-9_-]", "_", self.choke)[:24]
        return f"pad{self.index + 1:02d}"


@dataclass(frozen=True)
class KnobSpec:
    """Knob `index` (0 = knob 1) steers `direction` over `range`: its low and high end in shares
    of the direction's calibrated alpha range (-1 = alpha_min, 0 = untouched, +1 = alpha_max)."""

    index: int
    direction: str
    range: tuple[float, float] = (-1.0, 1.0)
    curve: str = "linear"
    initial: float = 0.5
    """The knob position 0-1 at start."""
    affects: str = "ringing"
    """KNOB_AFFECTS: whether a move reaches notes already sounding."""

    def share(self, position: float) -> float:
        """The knob's signed share of the direction's travel at `position` 0-1: -1 (full left)
        .. 0 (untouched) .. 1 (full right), after `range` and `curve`. A direction's KnobScale
        turns it into α for the pad's render mode."""
        lo, hi = self.range
        p = min(1.0, max(0.0, position))
        u_lin = lo + (hi - lo) * p
        u = _SHAPES[self.curve](abs(u_lin))  # the shaped magnitude; u_lin's sign picks the side
        return u if u_lin > 0 else -u


@dataclass(frozen=True)
class CaptureSpec:
    """Live input capture into a pad (the preset's [capture] table; realtime/capture.py). An arm
    press (note `arm_note` or CC `arm_cc` >= 64, on `channel`) arms the last-hit pad; a pad hit
    while armed moves the arm to that pad; the next onset on the input is captured into it."""

    arm_note: int | None = None
    arm_cc: int | None = None
    channel: int | None = None
    """The channel arm presses come on, 0-15; None = any."""
    kit_dir: Path | None = None
    """Where captures are written; None = the default user kit folder (capture.default_kit_dir)."""
    threshold_db: float = -36.0
    """Onset: the first input sample above this peak level, dBFS."""
    pre_roll_ms: float = 15.0
    """Kept before the onset, so the attack is intact."""
    silence_db: float = -60.0
    """End: the input stays below this peak level (dBFS) for hold_ms."""
    hold_ms: float = 100.0


@dataclass
class Preset:
    """A performance: a controller map, what each pad plays, what each knob steers."""

    name: str
    path: Path
    controller: ControllerMap
    pads: list[PadSpec]
    knobs: list[KnobSpec]
    polyphony: int = 32
    velocity_curve: str = "linear"
    snapshots: dict[int, dict[str, float]] = field(default_factory=dict)
    """Program change number -> knob positions by direction name."""
    capture: CaptureSpec = field(default_factory=CaptureSpec)
    mode: str | None = None
    """What its pads play unless a pad says otherwise (faithful.MODES); None = the bundle's
    default mode (render.default_mode: faithful for every bundle steerpad writes)."""

    def pad_mode(self, pad: PadSpec | None, default: str) -> str:
        """The render mode of `pad` (None: a pad the preset leaves empty, e.g. a capture's)."""
        return (pad.mode if pad is not None else None) or self.mode or default

    def files(self) -> list[Path]:
        """The audio files its pads play (not kit entries): what a render reads besides the
        bundle, so what it must never write over."""
        return [Path(p.sample) for p in self.pads if p.kind == "file"]


# ---------------------------------------------------------------- reading TOML


class _Reader:
    """Typed reads of one TOML file's values; each failure is `<file>: <key> <what>`."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, what: str) -> SteerpadError:
        return SteerpadError(f"{self.path}: {key} {what}")

    def read(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
            if not stat.S_ISREG(st.st_mode):
                raise SteerpadError(f"{self.path}: not a regular file; give a .toml file")
            if st.st_size == 0:
                raise SteerpadError(f"{self.path}: {EMPTY}; give a .toml file")
            if st.st_size > MAX_TOML_BYTES:
                raise SteerpadError(f"{self.path}: {st.st_size} bytes, larger than any preset or "
                                    f"controller map (at most {MAX_TOML_BYTES >> 10} KiB)")
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise SteerpadError(f"{self.path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SteerpadError(f"{self.path}: cannot read it as UTF-8 text ({e})") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SteerpadError(f"{self.path}: not valid TOML: {e}; fix the syntax there") from None
        except RecursionError:
            raise SteerpadError(f"{self.path}: its tables or arrays nest too deep; a preset nests "
                                "two levels") from None

    def table(self, value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
              ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {_short(value)}")
        where = f"{key}." if key else ""
        for k in value:
            if k not in allowed:
                raise self.fail(f"{where}{k}", f"is not a known key (allowed: {', '.join(allowed)}); "
                                "check the spelling")
        for k in required:
            if k not in value:
                raise self.fail(f"{where}{k}", "is missing")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {_short(value)}")
        return value

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self.fail(key, f"must be a number from {lo:g} to {hi:g}, got {_short(value)}")
        return float(value)

    def integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"must be a whole number from {lo} to {hi}, got {_short(value)}")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {_short(value)}")
        return value

    def channel(self, value: Any, key: str) -> int | None:
        if value in ("any", 0) and not isinstance(value, bool):
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
            raise self.fail(key, f'must be 1-16 (as printed on the device), or 0 / "any" for any '
                                 f"channel; got {_short(value)}")
        return value - 1

    def numbers(self, value: Any, key: str, what: str) -> tuple[int, ...]:
        """A list of distinct MIDI numbers 0-127 (notes or CCs)."""
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of {what} numbers 0-127, got {_short(value)}")
        seen: dict[int, int] = {}
        for i, v in enumerate(value):
            self.integer(v, f"{key}[{i + 1}]", 0, 127)
            if v in seen:
                raise self.fail(key, f"lists {what} {v} twice (entries {seen[v] + 1} and {i + 1}); "
                                f"each {what} can belong to one control only")
            seen[v] = i
        return tuple(value)


def _short(v: Any) -> str:
    s = json.dumps(v) if isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# ---------------------------------------------------------------- controller maps


def load_controller(path: str | Path) -> ControllerMap:
    """Read and check a controller map TOML."""
    r = _Reader(Path(path))
    data = r.table(r.read(), "", ("name", "sources", "notes", "pads", "knobs", "program"),
                   ("name", "pads", "knobs"))
    name = r.string(data["name"], "name")
    sources = data.get("sources", [])
    if not isinstance(sources, list):
        raise r.fail("sources", f"must be a list of strings, got {_short(sources)}")
    for i, s in enumerate(sources):
        r.string(s, f"sources[{i + 1}]")
    notes = data.get("notes", "")
    if not isinstance(notes, str):
        raise r.fail("notes", f"must be a string, got {_short(notes)}")

    pads = r.table(data["pads"], "pads", ("channel", "notes"), ("notes",))
    pad_channel = r.channel(pads.get("channel", 0), "pads.channel")
    pad_notes = r.numbers(pads["notes"], "pads.notes", "note")

    knobs = r.table(data["knobs"], "knobs", ("channel", "ccs", "cc14", "mode"), ("ccs",))
    knob_channel = r.channel(knobs.get("channel", 0), "knobs.channel")
    knob_ccs = r.numbers(knobs["ccs"], "knobs.ccs", "CC")
    cc14 = r.numbers(knobs.get("cc14", []), "knobs.cc14", "CC")
    mode = r.choice(knobs.get("mode", "absolute"), "knobs.mode", KNOB_MODES)
    for n in cc14:
        if n > 31:
            raise r.fail("knobs.cc14", f"lists {n}, but a 14-bit pair is named by its MSB 0-31 "
                         "(its LSB is that number + 32)")
        if n not in knob_ccs:
            raise r.fail("knobs.cc14", f"lists {n}, which is not one of knobs.ccs; add it there or "
                         "remove it here")
        if n + 32 in knob_ccs:
            raise r.fail("knobs.ccs", f"lists {n + 32}, the LSB of the 14-bit pair {n} in knobs.cc14; "
                         "a pair's LSB cannot be a knob of its own")
    if cc14 and mode != "absolute":
        raise r.fail("knobs.mode", f'is "{mode}", but 14-bit pairs (knobs.cc14) send absolute values; '
                     'use mode = "absolute" or cc14 = []')
    if not pad_notes and not knob_ccs:
        raise r.fail("pads.notes", "and knobs.ccs are both empty; a controller needs a pad or a knob")

    program = r.table(data.get("program", {}), "program", ("channel",))
    program_channel = r.channel(program.get("channel", 0), "program.channel")
    return ControllerMap(name=name, pad_channel=pad_channel, pad_notes=pad_notes,
                         knob_channel=knob_channel, knob_ccs=knob_ccs, cc14=frozenset(cc14),
                         knob_mode=mode, program_channel=program_channel, sources=tuple(sources), notes=notes)


MAX_TOML_BYTES = 1 << 20
"""A preset or controller map larger than this is refused before it is read."""
CONTROLLER_MARKER = "# steerpad controller map"
"""The first line of every controller map `steerpad learn` writes: what `--force` may replace."""


def write_controller(cmap: ControllerMap, path: str | Path) -> None:
    """Write `cmap` as a controller map TOML that load_controller reads back equal."""
    path = Path(path)

    def s(v: str) -> str:  # a TOML basic string: JSON escapes are TOML escapes; TOML also bans raw DEL
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")

    def ch(c: int | None) -> str:
        return '"any"' if c is None else str(c + 1)

    def ints(xs) -> str:
        return "[" + ", ".join(str(x) for x in xs) + "]"

    lines = [
        f"{CONTROLLER_MARKER}: channels are 1-16 as printed on devices (\"any\" = any channel)",
        f"name = {s(cmap.name)}",
        "sources = [" + ", ".join(s(x) for x in cmap.sources) + "]",
        f"notes = {s(cmap.notes)}",
        "",
        "[pads]  # pad 1 first",
        f"channel = {ch(cmap.pad_channel)}",
        f"notes = {ints(cmap.pad_notes)}",
        "",
        "[knobs]  # knob 1 first",
        f"channel = {ch(cmap.knob_channel)}",
        f"ccs = {ints(cmap.knob_ccs)}",
        f"cc14 = {ints(sorted(cmap.cc14))}",
        f"mode = {s(cmap.knob_mode)}",
        "",
        "[program]",
        f"channel = {ch(cmap.program_channel)}",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines))


def controller_ids() -> list[str]:
    """The controller maps shipped in PRESETS_DIR/controllers."""
    return sorted(p.stem for p in (PRESETS_DIR / "controllers").glob("*.toml"))


def find_controller(ref: str, base: Path, where: str = "controller") -> Path | None:
    """A preset's `controller` value -> the map's path: a path (it ends in .toml or has a slash),
    relative to `base`; else an id, looked up in base/controllers, then PRESETS_DIR/controllers."""
    if ref.endswith(".toml") or "/" in ref or "\\" in ref:
        p = user_path(ref, where)
        p = p if p.is_absolute() else base / p
        return p if p.is_file() else None
    for folder in (base / "controllers", PRESETS_DIR / "controllers"):
        if (folder / f"{ref}.toml").is_file():
            return folder / f"{ref}.toml"
    return None


# ---------------------------------------------------------------- presets


def load_preset(path: str | Path) -> Preset:
    """Read and check a preset TOML and its controller map (without a bundle: see check_preset)."""
    path = Path(path)
    r = _Reader(path)
    data = r.table(r.read(), "", ("name", "controller", "mode", "voices", "pads", "knobs", "snapshots",
                                  "capture"), ("controller",))
    name = r.string(data.get("name", path.stem), "name")
    mode = r.choice(data["mode"], "mode", MODES) if "mode" in data else None
    ref = r.string(data["controller"], "controller")
    found = find_controller(ref, path.parent, f"{path}: controller")
    if found is None:
        raise r.fail("controller", f"{_short(ref)} is neither a controller id (shipped: "
                     f"{', '.join(controller_ids()) or 'none'}) nor a .toml file relative to the preset")
    controller = load_controller(found)

    voices = r.table(data.get("voices", {}), "voices", ("polyphony", "velocity_curve"))
    polyphony = r.integer(voices.get("polyphony", 32), "voices.polyphony", 1, 256)
    curve = r.choice(voices.get("velocity_curve", "linear"), "voices.velocity_curve", VELOCITY_CURVES)

    pad_tables = _array_of_tables(r, data.get("pads", []), "pads", len(controller.pad_notes),
                                  controller, "pads")
    pads = [_pad(r, t, i, path.parent) for i, t in enumerate(pad_tables)]
    knob_tables = _array_of_tables(r, data.get("knobs", []), "knobs", len(controller.knob_ccs),
                                   controller, "knobs")
    knobs = [_knob(r, t, i) for i, t in enumerate(knob_tables)]
    seen: dict[str, int] = {}
    for k in knobs:
        if k.direction in seen:
            raise r.fail(f"knobs[{k.index + 1}].direction", f"{_short(k.direction)} is already knob "
                         f"{seen[k.direction] + 1}'s; give each direction one knob")
        seen[k.direction] = k.index
    snapshots = _snapshots(r, data.get("snapshots", {}), [k.direction for k in knobs])
    capture = _capture(r, data.get("capture", {}), controller, len(pads), len(knobs), path.parent)
    return Preset(name=name, path=path, controller=controller, pads=pads, knobs=knobs,
                  polyphony=polyphony, velocity_curve=curve, snapshots=snapshots, capture=capture,
                  mode=mode)


def check_preset(preset: Preset, direction_names, kit_names) -> None:
    """Check `preset` against a bundle's direction and kit entry names, and that its sample files
    exist; raise a SteerpadError naming the preset file and key otherwise."""
    directions, kit = list(direction_names), list(kit_names)
    for k in preset.knobs:
        if k.direction not in directions:
            raise SteerpadError(f"{preset.path}: knobs[{k.index + 1}].direction {_short(k.direction)} is "
                                f"not in the bundle (it has: {', '.join(directions) or 'none'})")
    for p in preset.pads:
        key = f"pads[{p.index + 1}].sample"
        if p.kind == "kit" and p.sample not in kit:
            raise SteerpadError(f"{preset.path}: {key} {_short(KIT_PREFIX + str(p.sample))} is not a kit "
                                f"entry of the bundle (it has: {', '.join(kit) or 'none'})")
        if p.kind == "file" and not Path(p.sample).is_file():
            raise SteerpadError(f"{preset.path}: {key} {p.sample} is not a file; fix the path (relative "
                                "to the preset file) or use kit:<name>")


def _array_of_tables(r: _Reader, value: Any, key: str, limit: int, controller: ControllerMap,
                     what: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise r.fail(key, f"must be [[{key}]] tables, got {_short(value)}")
    if len(value) > limit:
        raise r.fail(key, f"has {len(value)} entries, but controller {_short(controller.name)} has "
                     f"{limit} {what}; remove some or use a controller with more")
    return value


def _pad(r: _Reader, t: dict, i: int, base: Path) -> PadSpec:
    key = f"pads[{i + 1}]"
    r.table(t, key, ("sample", "gain_db", "pan", "choke", "mode", "output"), ("sample",))
    sample = r.string(t["sample"], f"{key}.sample")
    choke = t.get("choke")
    if choke is not None:
        choke = r.string(choke, f"{key}.choke")
    output = t.get("output")
    if output is not None:
        output = r.string(output, f"{key}.output")
        if not OUTPUT_NAME.match(output):
            raise r.fail(f"{key}.output", f"{_short(output)} must be 1-24 letters, digits, _ or - (it "
                         "names JACK ports), e.g. \"hats\"")
    mode = r.choice(t["mode"], f"{key}.mode", MODES) if "mode" in t else None
    common = dict(index=i, gain_db=r.number(t.get("gain_db", 0.0), f"{key}.gain_db", -60, 12),
                  pan=r.number(t.get("pan", 0.0), f"{key}.pan", -1, 1), choke=choke, mode=mode, output=output)
    if sample.startswith(KIT_PREFIX):
        entry = sample[len(KIT_PREFIX):]
        if not KIT_NAME.match(entry):
            raise r.fail(f"{key}.sample", f"{_short(sample)} needs a kit entry name after kit: (letters, "
                         "digits, _ . -)")
        return PadSpec(kind="kit", sample=entry, **common)
    file = user_path(sample, f"{r.path}: {key}.sample")
    # absolute, links left as they are: the engine reads only a regular file at the end of them
    return PadSpec(kind="file", sample=Path(os.path.abspath(base / file)), **common)


def _knob(r: _Reader, t: dict, i: int) -> KnobSpec:
    key = f"knobs[{i + 1}]"
    r.table(t, key, ("direction", "range", "curve", "initial", "affects"), ("direction",))
    direction = r.string(t["direction"], f"{key}.direction")
    rng = t.get("range", [-1.0, 1.0])
    if not isinstance(rng, list) or len(rng) != 2:
        raise r.fail(f"{key}.range", f"must be [low, high] in shares of the alpha range, -1 to 1; got "
                     f"{_short(rng)}")
    lo = r.number(rng[0], f"{key}.range[1]", -1, 1)
    hi = r.number(rng[1], f"{key}.range[2]", -1, 1)
    if lo == hi:
        raise r.fail(f"{key}.range", f"is [{lo:g}, {hi:g}]: the knob would do nothing; make its ends differ")
    curve = r.choice(t.get("curve", "linear"), f"{key}.curve", KNOB_CURVES)
    neutral = (0.0 - lo) / (hi - lo) if lo * hi <= 0 else 0.0  # where alpha is 0, or the low end
    initial = r.number(t.get("initial", neutral), f"{key}.initial", 0, 1)
    affects = r.choice(t.get("affects", "ringing"), f"{key}.affects", KNOB_AFFECTS)
    return KnobSpec(index=i, direction=direction, range=(lo, hi), curve=curve, initial=initial,
                    affects=affects)


def _snapshots(r: _Reader, value: Any, directions: list[str]) -> dict[int, dict[str, float]]:
    if not isinstance(value, dict):
        raise r.fail("snapshots", f"must be a table of program number = {{ direction = position }}, got "
                     f"{_short(value)}")
    out = {}
    for k, positions in value.items():
        if not re.fullmatch(r"\d{1,3}", k) or int(k) > 127:
            raise r.fail(f"snapshots.{k}", "is not a program change number 0-127")
        if not isinstance(positions, dict):
            raise r.fail(f"snapshots.{k}", f"must be {{ direction = position 0-1, ... }}, got "
                         f"{_short(positions)}")
        for d, pos in positions.items():
            if d not in directions:
                raise r.fail(f"snapshots.{k}.{d}", f"is not a knob's direction in this preset (knobs: "
                             f"{', '.join(directions) or 'none'})")
            r.number(pos, f"snapshots.{k}.{d}", 0, 1)
        out[int(k)] = {d: float(pos) for d, pos in positions.items()}
    return out


def _capture(r: _Reader, value: Any, controller: ControllerMap, n_pads: int, n_knobs: int,
             base: Path) -> CaptureSpec:
    t = r.table(value, "capture", ("arm_note", "arm_cc", "channel", "kit_dir", "threshold_db",
                                   "pre_roll_ms", "silence_db", "hold_ms"))
    channel = r.channel(t.get("channel", 0), "capture.channel")
    note = None if "arm_note" not in t else r.integer(t["arm_note"], "capture.arm_note", 0, 127)
    cc = None if "arm_cc" not in t else r.integer(t["arm_cc"], "capture.arm_cc", 0, 127)

    def shares(a: int | None, b: int | None) -> bool:  # two channel settings can meet
        return a is None or b is None or a == b

    # A control nothing plays may be the arm button (pad 16 of a 15-pad preset); a used one may not.
    if note is not None and shares(channel, controller.pad_channel) and note in controller.pad_notes:
        pad = controller.pad_notes.index(note)
        if pad < n_pads:
            raise r.fail("capture.arm_note", f"{note} is pad {pad + 1}'s note, and pads[{pad + 1}] plays a "
                         "sample; pick a note no used pad sends, or a channel the pads do not use")
    if cc is not None and shares(channel, controller.knob_channel):
        lsbs = {n + 32: n for n in controller.cc14}
        if cc in lsbs:
            raise r.fail("capture.arm_cc", f"{cc} is the LSB of knob CC {lsbs[cc]} (a 14-bit pair); "
                         "pick a CC no knob sends")
        if cc in controller.knob_ccs and controller.knob_ccs.index(cc) < n_knobs:
            k = controller.knob_ccs.index(cc)
            raise r.fail("capture.arm_cc", f"{cc} is knob {k + 1}'s CC, and knobs[{k + 1}] steers a "
                         "direction; pick a CC no used knob sends, or a channel the knobs do not use")
    kit_dir = None
    if "kit_dir" in t:
        folder = user_path(r.string(t["kit_dir"], "capture.kit_dir"), f"{r.path}: capture.kit_dir")
        kit_dir = Path(os.path.abspath(base / folder))
    threshold = r.number(t.get("threshold_db", -36.0), "capture.threshold_db", -90, 0)
    silence = r.number(t.get("silence_db", -60.0), "capture.silence_db", -120, 0)
    if silence >= threshold:
        raise r.fail("capture.silence_db", f"({silence:g}) must be below capture.threshold_db "
                     f"({threshold:g}): a hit ends when the input falls below it")
    pre_roll = r.number(t.get("pre_roll_ms", 15.0), "capture.pre_roll_ms", 0, 100)
    hold = r.number(t.get("hold_ms", 100.0), "capture.hold_ms", 5, 2000)
    return CaptureSpec(arm_note=note, arm_cc=cc, channel=channel, kit_dir=kit_dir, threshold_db=threshold,
                       pre_roll_ms=pre_roll, silence_db=silence, hold_ms=hold)
