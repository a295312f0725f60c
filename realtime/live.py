"""`steerpad live`: play a bundle from a MIDI controller through a sound card.

    MidiInput thread ──engine.handle──► Engine ◄──process── sounddevice callback ──► output
                                          └── RenderWorker thread (onnxruntime, soxr)

The sounddevice callback only calls `Engine.process` and counts xruns; the terminal status view
redraws from the main thread a few times a second. Ctrl-C stops everything in order: MIDI,
audio stream, render worker, master bus.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path

from steerpad.realtime import oscfeed
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.capture import Capture, default_kit_dir
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.keys import KeyReader, LiveKeys
from steerpad.realtime.presets import load_preset


class LiveStream:
    """An Engine on a sounddevice stream (device, blocksize), with xrun counting: output only, or
    full duplex when the engine takes input (Engine(input_channels=N)); `device` may be one
    name or index, or an (input, output) pair."""

    def __init__(self, engine: Engine, device: str | int | None = None, latency: str | float = "low"):
        import sounddevice as sd  # after any JACK server is up: PortAudio scans at import

        self.engine = engine
        self.xruns = 0
        self.callback_errors = 0
        self.last_error = ""
        duplex = engine.input_channels > 0
        try:
            if duplex:
                self.stream = sd.Stream(samplerate=engine.sample_rate, blocksize=engine.blocksize,
                                        device=device, channels=(engine.input_channels, 2), dtype="float32",
                                        latency=latency, callback=self._duplex_callback)
            else:
                self.stream = sd.OutputStream(samplerate=engine.sample_rate, blocksize=engine.blocksize,
                                              device=device, channels=2, dtype="float32", latency=latency,
                                              callback=self._callback)
        except (sd.PortAudioError, ValueError) as e:
            raise SteerpadError(f"audio device {device if device is not None else '(default)'}: "
                                f"cannot open it at {engine.sample_rate} Hz, {engine.blocksize} frames "
                                f"({e}); pick another with --audio-device (see `steerpad devices`)") from None
        out_device = self.stream.device[1] if duplex else self.stream.device
        self.device_name = sd.query_devices(out_device)["name"]

    def _callback(self, outdata, frames, time_info, status) -> None:
        if status.output_underflow or status.output_overflow:
            self.xruns += 1
        try:
            self.engine.process(outdata)
        except Exception as e:  # noqa: BLE001 - the callback must never raise: silence this block
            outdata.fill(0)
            self.callback_errors += 1
            self.last_error = f"{type(e).__name__}: {e}"

    def _duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        if status.output_underflow or status.output_overflow or status.input_overflow:
            self.xruns += 1
        try:
            self.engine.process(outdata, indata)
        except Exception as e:  # noqa: BLE001 - the callback must never raise: silence this block
            outdata.fill(0)
            self.callback_errors += 1
            self.last_error = f"{type(e).__name__}: {e}"

    def start(self) -> None:
        self.stream.start()

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()

    def __enter__(self) -> LiveStream:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--preset", type=Path, required=True, help="a preset TOML (presets/*.toml)")
    parser.add_argument("--audio-device", default=None,
                        help="output device name (substring) or index (default: the system's)")
    parser.add_argument("--midi-port", default=None,
                        help="MIDI input port name (substring); default: a virtual port named steerpad")
    parser.add_argument("--midi-port-name", default="steerpad",
                        help="the virtual MIDI port's name, when no --midi-port is given")
    parser.add_argument("--midi-api", default=None, help="jack, alsa, coremidi or winmm (default: auto)")
    parser.add_argument("--blocksize", type=int, default=128, help="frames per audio block")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="default: the output device's rate")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--no-status", action="store_true", help="no terminal status view")
    parser.add_argument("--input", action="store_true",
                        help="open audio input with the output (full duplex): capture hits into pads")
    parser.add_argument("--input-channels", type=int, choices=(1, 2), default=None,
                        help="input channels with --input (default 1)")
    parser.add_argument("--input-device", default=None,
                        help="input device name (substring) or index, with --input (default: as the output)")
    parser.add_argument("--monitor", action="store_true",
                        help="with --input: hear the input through the master bus (key m toggles it)")
    parser.add_argument("--kit-dir", type=Path, default=None,
                        help="where captures are written (default: the preset's [capture] kit_dir, else "
                             "~/.local/share/steerpad/kits/<preset name>)")
    parser.add_argument("--osc", nargs="?", const=f"{oscfeed.DEFAULT_HOST}:{oscfeed.DEFAULT_PORT}",
                        default=None, metavar="HOST:PORT",
                        help="send the visualizer feed over OSC (README: Visualizer feed); "
                             f"--osc alone: {oscfeed.DEFAULT_HOST}:{oscfeed.DEFAULT_PORT}")
    parser.add_argument("--osc-rate", type=float, default=oscfeed.DEFAULT_RATE, metavar="HZ",
                        help="feature frames per second (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    target = None if args.osc is None else oscfeed.parse_target(args.osc)
    osc_rate = oscfeed.check_rate(args.osc_rate)
    import sounddevice as sd

    from steerpad.realtime.midi import MidiInput
    from steerpad.realtime.status import StatusView

    device = args.audio_device
    if device is not None and device.isdigit():
        device = int(device)
    given = [f for f, v in (("--input-channels", args.input_channels), ("--input-device", args.input_device),
                            ("--monitor", args.monitor or None), ("--kit-dir", args.kit_dir))
             if v is not None]
    if given and not args.input:
        raise SteerpadError(f"{', '.join(given)} needs --input (live input is off without it)")
    if args.input_device is not None:
        in_device = int(args.input_device) if args.input_device.isdigit() else args.input_device
        device = (in_device, device)
    try:
        out_device = device[1] if isinstance(device, tuple) else device
        rate = args.sample_rate or int(sd.query_devices(out_device, "output")["default_samplerate"])
    except (ValueError, sd.PortAudioError) as e:
        raise SteerpadError(f"audio device {args.audio_device or '(default)'}: {e}; "
                            "see `steerpad devices`") from None
    bundle = load_bundle(args.bundle)
    preset = load_preset(args.preset)
    print(f"steerpad live: {bundle} · preset {preset.name} · {rate} Hz, {args.blocksize} frames")
    input_channels = (args.input_channels or 1) if args.input else 0
    with Engine(bundle, preset, rate, args.blocksize, input_channels=input_channels) as engine:
        print("rendering pads ...", flush=True)
        engine.start(wait=None)
        engine.monitor = args.monitor
        capture = reader = None
        midi = MidiInput(None, port=args.midi_port,
                         virtual=None if args.midi_port else args.midi_port_name,
                         cc14=preset.controller.cc14, api=args.midi_api)
        stop = threading.Event()
        feed = None if target is None else oscfeed.LiveFeed(engine, oscfeed.OscSender(*target), osc_rate)
        try:
            if args.input:
                kit_dir = args.kit_dir or preset.capture.kit_dir or default_kit_dir(preset.name)
                capture = Capture(engine, preset.capture, kit_dir.expanduser()).start()
            midi.start()
            engine.attach_midi(midi)  # the audio callback drains it at every block's start
            with LiveStream(engine, device) as stream, feed or contextlib.nullcontext():
                view = None if args.no_status else StatusView(engine, stream, midi, feed=feed)
                if view is not None:
                    keys = LiveKeys(engine, capture)
                    reader = KeyReader(keys.press).start()  # a no-op unless stdin is a terminal
                    view.keys = keys if reader.active else None
                deadline = None if args.duration is None else time.monotonic() + args.duration
                if view is not None:
                    view.run(stop, deadline)
                else:
                    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                        time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            midi.stop()
            for closing in (reader, capture):
                if closing is not None:
                    closing.stop()
    print("\nsteerpad live: stopped")
    if feed is not None:
        print(f"osc: {feed.summary()}")
    return 0
