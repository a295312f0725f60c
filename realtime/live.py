"""`steerpad live`: play a bundle from a MIDI controller through a sound card.

    MidiInput thread ──engine.handle──► Engine ◄──process── sounddevice callback ──► output
                                          └── RenderWorker thread (onnxruntime, soxr)

The sounddevice callback only calls `Engine.process` and counts xruns; the terminal status view
redraws from the main thread a few times a second. Ctrl-C stops everything in order: MIDI,
audio stream, render worker, master bus.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.presets import load_preset


class LiveStream:
    """An Engine on a sounddevice output stream (device, blocksize), with xrun counting."""

    def __init__(self, engine: Engine, device: str | int | None = None, latency: str | float = "low"):
        import sounddevice as sd  # after any JACK server is up: PortAudio scans at import

        self.engine = engine
        self.xruns = 0
        self.callback_errors = 0
        self.last_error = ""
        try:
            self.stream = sd.OutputStream(samplerate=engine.sample_rate, blocksize=engine.blocksize,
                                          device=device, channels=2, dtype="float32", latency=latency,
                                          callback=self._callback)
        except (sd.PortAudioError, ValueError) as e:
            raise SteerpadError(f"audio device {device if device is not None else '(default)'}: "
                                f"cannot open it at {engine.sample_rate} Hz, {engine.blocksize} frames "
                                f"({e}); pick another with --audio-device (see `steerpad devices`)") from None
        self.device_name = sd.query_devices(self.stream.device)["name"]

    def _callback(self, outdata, frames, time_info, status) -> None:
        if status.output_underflow or status.output_overflow:
            self.xruns += 1
        try:
            self.engine.process(outdata)
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


def run(args: argparse.Namespace) -> int:
    import sounddevice as sd

    from steerpad.realtime.midi import MidiInput
    from steerpad.realtime.status import StatusView

    device = args.audio_device
    if device is not None and device.isdigit():
        device = int(device)
    try:
        rate = args.sample_rate or int(sd.query_devices(device, "output")["default_samplerate"])
    except (ValueError, sd.PortAudioError) as e:
        raise SteerpadError(f"audio device {args.audio_device or '(default)'}: {e}; "
                            "see `steerpad devices`") from None
    bundle = load_bundle(args.bundle)
    preset = load_preset(args.preset)
    print(f"steerpad live: {bundle} · preset {preset.name} · {rate} Hz, {args.blocksize} frames")
    with Engine(bundle, preset, rate, args.blocksize) as engine:
        print("rendering pads ...", flush=True)
        engine.start(wait=None)
        midi = MidiInput(None, port=args.midi_port,
                         virtual=None if args.midi_port else args.midi_port_name,
                         cc14=preset.controller.cc14, api=args.midi_api)
        stop = threading.Event()
        try:
            midi.start()
            engine.attach_midi(midi)  # the audio callback drains it at every block's start
            with LiveStream(engine, device) as stream:
                view = None if args.no_status else StatusView(engine, stream, midi)
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
    print("\nsteerpad live: stopped")
    return 0
