"""steerpad's config file: the performer's defaults for `live`, `render` and `demo`, in the
platform's config folder (platformdirs: ~/.config/steerpad/config.toml on Linux,
~/Library/Application Support/steerpad/config.toml on macOS, %LOCALAPPDATA%\\steerpad\\config.toml
on Windows; $STEERPAD_CONFIG names another file).

    bundle = "~/bundles/mine"            # a bundle folder
    preset = "~/presets/gig.toml"        # a preset TOML
    audio_device = "Scarlett"            # output device: a name (substring) or an index
    midi_port = "MPD218"                 # MIDI input port (substring); unset: a virtual port
    osc = "127.0.0.1:9000"               # send the visualizer feed there (live)
    blocksize = 128                      # frames per audio block (live; JACK sets its own)
    audio_backend = "auto"               # auto (JACK when a server runs), jack or portaudio
    client_name = "steerpad"             # the JACK client's name
    connect = "system"                   # connect main_L/R under JACK: system or a regex
    outputs = "main"                     # JACK port pairs: main, pads or groups
    asio = false                         # Windows: let PortAudio use ASIO drivers

A value comes from the command line first, then this file, then steerpad's own default (the
shipped bundle and preset). A bad file or value is refused like a bad preset: the file, the key
and what is allowed. `steerpad config` shows each value and where it came from.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from steerpad.realtime import shipped
from steerpad.realtime.errors import SteerpadError, user_path
from steerpad.realtime.limits import BLOCKSIZE_MAX, BLOCKSIZE_MIN

MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class Key:
    name: str
    kind: type
    allowed: str
    """What a value may be, as the refusal says it."""
    default: Any = None
    """steerpad's own default (None: none; bundle and preset: the shipped ones)."""
    choices: tuple[str, ...] = ()
    """For a string key: the values it may take (empty: any)."""


KEYS: dict[str, Key] = {k.name: k for k in (
    Key("bundle", Path, "a bundle folder (a string path)"),
    Key("preset", Path, "a preset TOML (a string path)"),
    Key("audio_device", str, "an output device name (string) or index (integer)"),
    Key("midi_port", str, "a MIDI input port name (string)"),
    Key("osc", str, "HOST:PORT (string), e.g. \"127.0.0.1:9000\""),
    Key("blocksize", int, f"an integer, {BLOCKSIZE_MIN} to {BLOCKSIZE_MAX} frames", 128),
    Key("audio_backend", str, "auto, jack or portaudio", "auto", ("auto", "jack", "portaudio")),
    Key("client_name", str, "a JACK client name (string, no ':')", "steerpad"),
    Key("connect", str, "system or a regular expression of JACK port names (string)"),
    Key("outputs", str, "main, pads or groups", "main", ("main", "pads", "groups")),
    Key("asio", bool, "true or false (Windows: PortAudio's ASIO host API)", False),
)}


def config_path() -> Path:
    """$STEERPAD_CONFIG, else config.toml in the platform's config folder for steerpad."""
    given = os.environ.get("STEERPAD_CONFIG")
    if given:
        return user_path(given, "$STEERPAD_CONFIG")
    import platformdirs

    return Path(platformdirs.user_config_dir("steerpad", appauthor=False)) / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's values, checked ({} when there is no file)."""
    path = path or config_path()
    if not path.exists():
        return {}
    if not path.is_file():
        raise SteerpadError(f"config {path}: not a regular file; make it a TOML file or remove it")
    if path.stat().st_size == 0:  # nothing set (and never read: errors.EMPTY)
        return {}
    if path.stat().st_size > MAX_BYTES:
        raise SteerpadError(f"config {path}: larger than {MAX_BYTES // 1024} KiB; it holds a few keys")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SteerpadError(f"config {path}: not valid TOML ({e}); fix it or remove it") from None
    values = {}
    for name, value in data.items():
        key = KEYS.get(name)
        if key is None:
            raise SteerpadError(f"config {path}: unknown key {name!r}; the keys are {', '.join(KEYS)}")
        values[name] = _check(path, key, value)
    return values


def _check(path: Path, key: Key, value: Any) -> Any:
    bad = SteerpadError(f"config {path}: {key.name} = {value!r} is not {key.allowed}")
    if key.name == "audio_device":
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise bad
        return value
    if key.kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if key.kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not (
                BLOCKSIZE_MIN <= value <= BLOCKSIZE_MAX):
            raise bad
        return value
    if not isinstance(value, str) or not value.strip():
        raise bad
    if key.choices and value not in key.choices:
        raise bad
    if key.name == "client_name" and (":" in value or len(value) > 63):
        raise bad
    if key.name == "connect":
        try:
            re.compile(value)
        except re.error:
            raise bad from None
    if key.name == "osc":
        from steerpad.realtime.oscfeed import parse_target

        try:
            parse_target(value)
        except SteerpadError:
            raise bad from None
        return value
    return user_path(value, f"config {path}: {key.name}") if key.kind is Path else value


def resolve(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, tuple[Any, str]]:
    """For each key in `names`: (value, where it came from), the command line's value (an
    attribute of `args` that is not None) first, then the config file's, then steerpad's default.
    Fills `args` with the resolved values too."""
    path = config_path()
    values = load_config(path)
    out = {}
    for name in names:
        flag = getattr(args, name, None)
        if flag is not None:
            out[name] = (flag, "command line")
        elif name in values:
            out[name] = (values[name], f"config {path}")
        elif name == "bundle":
            out[name] = (shipped.default_bundle(), "shipped default")
        elif name == "preset":
            out[name] = (shipped.default_preset(), "shipped default")
        else:
            out[name] = (KEYS[name].default, "default" if KEYS[name].default is not None else "unset")
        setattr(args, name, out[name][0])
    return out


def add_sound_arguments(parser: argparse.ArgumentParser) -> None:
    """--bundle and --preset, defaulting to the config file's, else what steerpad ships."""
    parser.add_argument("--bundle", type=Path, default=None,
                        help="the bundle folder (default: the config file's, else the shipped one)")
    parser.add_argument("--preset", type=Path, default=None,
                        help="a preset TOML (default: the config file's, else the shipped default preset)")


def sound_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(bundle, preset) from add_sound_arguments' flags, the config file, or what steerpad ships."""
    r = resolve(args, ("bundle", "preset"))
    return r["bundle"][0], r["preset"][0]


# ---------------------------------------------------------------- `steerpad config`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", action="store_true", help="print only the config file's path")


def run(args: argparse.Namespace) -> int:
    path = config_path()
    if args.path:
        print(path)
        return 0
    resolved = resolve(argparse.Namespace(), tuple(KEYS))
    print(f"config file: {path}" + ("" if path.exists() else " (none: steerpad's defaults apply)"))
    width = max(len(k) for k in KEYS)
    for name, (value, source) in resolved.items():
        shown = "-" if value is None else str(value)
        print(f"  {name:<{width}}  {shown}  ({source})")
    return 0
