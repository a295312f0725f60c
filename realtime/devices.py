"""`steerpad devices`: the audio devices (sounddevice) and MIDI ports (every rtmidi API) there are.

Names shown here are what `steerpad live --audio-device / --midi-port` take (a MIDI port by any
part of its name). sounddevice is imported inside run(): PortAudio finds its host APIs at import,
so a JACK server started before `steerpad devices` runs is listed.
"""

from __future__ import annotations

import argparse
import os
import sys

import rtmidi
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.midi import API_NAMES, list_input_ports, list_output_ports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything found is listed."""
    parser.add_argument("--asio", action="store_true", default=None,
                        help="Windows: list ASIO devices too (default: the config file's asio)")
    parser.epilog = "MIDI APIs not built into python-rtmidi are not listed."


def enable_asio(wanted: bool, from_flag: bool) -> None:
    """ASIO on Windows: PortAudio loads its ASIO host API only with SD_ENABLE_ASIO set before
    sounddevice is imported. --asio elsewhere is refused; the config key elsewhere does nothing."""
    if not wanted:
        return
    if sys.platform != "win32":
        if from_flag:
            raise SteerpadError("--asio: ASIO drivers exist only on Windows; leave it out")
        return
    if "sounddevice" in sys.modules and not os.environ.get("SD_ENABLE_ASIO"):
        raise SteerpadError("--asio: sounddevice was loaded without ASIO; start steerpad again")
    os.environ["SD_ENABLE_ASIO"] = "1"


def run(args: argparse.Namespace) -> int:
    from steerpad.realtime import config

    from_flag = args.asio is not None
    config.resolve(args, ("asio",))
    enable_asio(args.asio, from_flag)
    console = Console()
    audio = _audio_table()
    if isinstance(audio, str):
        console.print(audio, highlight=False)
    else:
        console.print(audio)
    console.print(_midi_table())
    return 0


def _audio_table() -> Table | str:
    """A table of the audio devices, or one line saying why there is none."""
    try:
        import sounddevice as sd
    except (OSError, ImportError) as e:  # OSError: the PortAudio library is missing
        return f"audio: sounddevice cannot load PortAudio ({e}); install PortAudio (libportaudio2) to list it"
    table = Table(title="Audio devices (default: in = default input, out = default output)")
    for column in ("#", "host API", "name", "in", "out", "rate", "default"):
        table.add_column(column, justify="right" if column in ("#", "in", "out", "rate") else "left")
    hostapis = sd.query_hostapis()
    default_in, default_out = sd.default.device
    for dev in sd.query_devices():
        i = dev["index"]
        default = " ".join(w for w, d in (("in", default_in), ("out", default_out)) if d == i)
        table.add_row(str(i), escape(hostapis[dev["hostapi"]]["name"]), escape(dev["name"]),
                      str(dev["max_input_channels"]), str(dev["max_output_channels"]),
                      f"{dev['default_samplerate']:.0f}", default)
    if not table.row_count:
        return "audio: PortAudio finds no audio devices"
    return table


def _midi_table() -> Table:
    """A table of MIDI input and output ports for each MIDI API python-rtmidi was built with."""
    table = Table(title="MIDI ports (input: play steerpad from it; output: steerpad could send to it)")
    for column in ("API", "direction", "port"):
        table.add_column(column)
    compiled = rtmidi.get_compiled_api()
    for name, api_id in API_NAMES.items():
        if api_id not in compiled:
            continue
        for direction, lister in (("input", list_input_ports), ("output", list_output_ports)):
            try:
                ports = lister(name)
            except SteerpadError as e:
                which = "in + out" if direction == "input" else direction
                table.add_row(name, which, f"[dim]unavailable: {escape(str(e))}[/]")
                break
            for port in ports:
                table.add_row(name, direction, escape(port))
            if not ports:
                table.add_row(name, direction, "[dim](none)[/]")
    return table
