"""`steerpad live`: play a bundle from a MIDI controller through a sound card or a JACK graph.

    rtmidi's queue ──drained at block start──► Engine.process ◄── sounddevice callback ──► output
      (or, as a JACK client, CLIENT:midi_in in the process callback: jackio.JackStream)
                                                 └── RenderWorker thread (onnxruntime, soxr)

Two backends share one play loop (_Backend.perform): _JackBackend, steerpad as a JACK client of
its own with named ports (realtime/jackio.py), when a JACK server runs and no PortAudio device
is named; _PortAudioBackend, a sounddevice stream (LiveStream) on the chosen device, MIDI
through rtmidi. The audio callback calls `Engine.process` (which drains the MIDI input first)
and counts xruns; the terminal status view redraws from the main thread a few times a second.
Ctrl-C stops everything in order: the key reader, the feed, the stream, capture, MIDI, the
collector, the engine (its render worker, then the master bus), the visualizer page.

A device that goes away (the JACK server stopped, killed or hung, a card unplugged) ends the
run: the main thread checks the stream a few times a second (LiveStream.check: PortAudio's
"active" flag, which pa_jack clears when the server shuts down, and a watchdog on the blocks the
callback counts; JackStream.check: JACK's shutdown callback and the same watchdog), shows why in
the status view (MIDI on that JACK server went with it), and `steerpad live` exits 1 with one
line (RuntimeFailure). The main thread never waits on PortAudio or rtmidi for long, so Ctrl-C
always works: with JACK gone, pa_jack's stop, abort and close (and Pa_Terminate at exit, which
closes every open stream) each wait 10 minutes for a process callback the dead server never
runs. So a live stream is stopped on a helper thread with a timeout, a dead one is left alone,
and a second Ctrl-C during the short closing is ignored.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from steerpad.realtime import config, jackio, oscfeed, viz
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.capture import Capture, default_kit_dir
from steerpad.realtime.devices import enable_asio
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import RuntimeFailure, SteerpadError, user_path
from steerpad.realtime.keys import KeyReader, LiveKeys
from steerpad.realtime.limits import (
    BLOCKSIZE_MAX,
    BLOCKSIZE_MIN,
    SAMPLE_RATE_MAX,
    SAMPLE_RATE_MIN,
    check_audio_options,
)
from steerpad.realtime.presets import load_preset
from steerpad.realtime.waits import CLOSE_S, SETTLE_S, exit_soon, finishes

STALL_S = 2.0
"""No audio block for this long (or 4 blocks' time, if longer) while the stream runs: the device
is gone."""


def _exit_portaudio() -> None:
    """sounddevice's exit handler (Pa_Terminate, which closes PortAudio's JACK client), with
    Ctrl-C ignored: a Ctrl-C landing in its JACK calls made PortAudio abort the process (an
    assertion in pa_jack's Terminate) or the handler raise KeyboardInterrupt with a traceback.
    The process is exiting anyway."""
    import sounddevice as sd

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sd._exit_handler()


def _guard_portaudio_exit() -> None:
    """Put _exit_portaudio in place of sounddevice's own exit handler (once is enough)."""
    import sounddevice as sd

    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)
        atexit.unregister(_exit_portaudio)
        atexit.register(_exit_portaudio)


def _forget_portaudio() -> None:
    """Skip PortAudio's exit handler (Pa_Terminate): it closes every open stream, and closing
    one whose JACK server died waits 10 minutes (pa_jack's WaitCondition) for a process callback
    that never comes. The process exits without it; the OS frees what PortAudio held."""
    import sounddevice as sd

    atexit.unregister(_exit_portaudio)
    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


class Collector:
    """When Python's garbage collector may run during play (measured on models/default with the
    engine loaded, 2 cores): a full collection of the start-up heap (~60 000 objects) holds the
    GIL for ~13 ms, five 128-frame blocks at 48 kHz, and an automatic one can start in any
    thread that allocates, the audio callback included (in a process that also holds torch, as
    the tests' does, the first full collection takes far longer: with JACK's dummy driver that
    pause dropped MIDI). So after start-up, before MIDI and audio start, everything is
    collected once and frozen (gc.freeze: the start-up heap is never scanned again; a full
    collection then costs ~1.6 ms with 20 000 new objects, gen 0/1 <= 0.2 ms); gen 0 and 1 keep
    running automatically, and gen 2 runs only from the main thread, at most every FULL_EVERY_S,
    when no voice sounds."""

    FULL_EVERY_S = 10.0
    GEN2_THRESHOLD = 1_000_000
    """gc threshold 2 during play: automatic full collections never come."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.full = 0
        """Full collections run during play."""
        self._last = 0.0
        self._saved: tuple[int, int, int] | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._saved = gc.get_threshold()
        gc.set_threshold(self._saved[0], self._saved[1], self.GEN2_THRESHOLD)
        self._last = time.monotonic()

    def tick(self) -> None:
        """From the main thread, a few times a second."""
        now = time.monotonic()
        if now - self._last >= self.FULL_EVERY_S and not self.engine.mixer.active:
            gc.collect()
            self.full += 1
            self._last = now

    def stop(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None


class LiveStream:
    """An Engine on a sounddevice stream (device, blocksize), with xrun counting: output only, or
    full duplex when the engine takes input (Engine(input_channels=N)); `device` may be one
    name or index, or an (input, output) pair."""

    def __init__(self, engine: Engine, device: str | int | None = None, latency: str | float = "low"):
        import sounddevice as sd  # after any JACK server is up: PortAudio scans at import

        _guard_portaudio_exit()
        self.engine = engine
        self.xruns = 0
        self.callback_errors = 0
        self.last_error = ""
        self.callbacks = 0
        """Blocks the callback was called for (the watchdog's heartbeat)."""
        self.failure: str | None = None
        """Why the device stopped under us (check()), for good; None while it plays."""
        self.hung = False
        """Whether the JACK server hangs (alive but silent): then every JACK call waits forever."""
        self._started = self._closed = False
        self._quiet = False
        """Set by close() (main thread): the callback's next block is its last (it aborts the stream)."""
        self._ended = False
        """Set by the callback's last block (read by close())."""
        self._abort = sd.CallbackAbort
        self._seen, self._seen_at = 0, 0.0
        self._stall_s = max(STALL_S, 4.0 * engine.blocksize / engine.sample_rate)
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
        info = sd.query_devices(out_device)
        self.device_name = info["name"]
        self.host_api = sd.query_hostapis(info["hostapi"])["name"]
        self.jack = "JACK" in self.host_api
        """Whether the stream runs on a JACK server (which MIDI on JACK shares)."""

    def _callback(self, outdata, frames, time_info, status) -> None:
        if self._quiet:
            self._end(outdata)
        self.callbacks += 1
        if status.output_underflow or status.output_overflow:
            self.xruns += 1
        try:
            self.engine.process(outdata)
        except Exception as e:  # noqa: BLE001 - the callback must never raise: silence this block
            outdata.fill(0)
            self.callback_errors += 1
            self.last_error = f"{type(e).__name__}: {e}"

    def _duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        if self._quiet:
            self._end(outdata)
        self.callbacks += 1
        if status.output_underflow or status.output_overflow or status.input_overflow:
            self.xruns += 1
        try:
            self.engine.process(outdata, indata)
        except Exception as e:  # noqa: BLE001 - the callback must never raise: silence this block
            outdata.fill(0)
            self.callback_errors += 1
            self.last_error = f"{type(e).__name__}: {e}"

    def start(self) -> None:
        import sounddevice as sd

        try:
            self.stream.start()
        except sd.PortAudioError as e:
            _forget_portaudio()  # a stream that would not start may not close either
            raise RuntimeFailure(f"audio device {self.device_name!r} ({self.host_api}) would not start "
                                 f"({e}); check it with `steerpad devices`, then start steerpad live "
                                 "again") from None
        self._seen, self._seen_at = self.callbacks, time.monotonic()
        self._started = True

    def check(self) -> str | None:
        """None while the device plays, else why it stopped (kept from then on). Call it from the
        main thread a few times a second: it notices a stream PortAudio reports inactive (pa_jack
        marks it so when the JACK server shuts down or drops the client; other host APIs when
        the device fails) and a callback that stopped coming for STALL_S."""
        if self.failure is not None or not self._started:
            return self.failure
        import sounddevice as sd

        try:
            active = self.stream.active
        except sd.PortAudioError:
            active = False
        now = time.monotonic()
        if active and self.callbacks != self._seen:
            self._seen, self._seen_at = self.callbacks, now
        elif active and now - self._seen_at < self._stall_s:
            pass
        elif self.jack:
            self.hung = active  # still "active", yet no callback: the server hangs rather than died
            what = "stopped answering" if active else "stopped, or it dropped steerpad"
            self.failure = (f"audio server gone (JACK {what}): the output {self.device_name!r} went "
                            "silent; start JACK again, then steerpad live")
        else:
            what = "stopped" if not active else f"sent no audio block for {now - self._seen_at:.1f} s"
            self.failure = (f"audio device {self.device_name!r} ({self.host_api}) {what}: unplugged, "
                            "taken or failed; check it with `steerpad devices`, then start steerpad live "
                            "again")
        return self.failure

    def _end(self, outdata) -> None:
        """The callback's last block, once close() asked: silence, and abort the stream from
        inside (PortAudio stops calling Python before anyone waits on it)."""
        outdata.fill(0)
        self._ended = True
        raise self._abort

    def close(self) -> None:
        """Let the callback end the stream itself (its next block: CLOSE_S at most, else the
        device or its server hangs), then abort and close it on a helper thread, waiting at most
        SETTLE_S (a loaded CPU slows a live server; Ctrl-C is never held up). A device that is
        gone is not waited on (PortAudio's stop would wait for minutes): the stream is left as it
        is and PortAudio's exit handler skipped (_forget_portaudio). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.check() is not None:
            _forget_portaudio()
            if self.hung:
                exit_soon()
            return
        self._quiet = True
        deadline = time.monotonic() + CLOSE_S
        while self._started and not self._ended and time.monotonic() < deadline:
            time.sleep(0.001)
        cycled = self._ended or not self._started  # (no PortAudio call: one could wait forever)
        if not (cycled and finishes(self._abort_and_close, SETTLE_S, "steerpad-audio-close")):
            self.failure = (f"audio device {self.device_name!r} ({self.host_api}) did not stop: the "
                            "device or its server hangs; check it with "
                            "`steerpad devices`, then start steerpad live again")
            _forget_portaudio()

    def _abort_and_close(self) -> None:
        self.stream.abort()  # not stop(): nothing to drain, and it returns at once
        self.stream.close()

    def __enter__(self) -> LiveStream:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_sound_arguments(parser)
    parser.add_argument("--audio-device", default=None,
                        help="output device name (substring) or index (default: the config file's, "
                             "else the system's)")
    parser.add_argument("--audio-backend", choices=("auto", "jack", "portaudio"), default=None,
                        help="jack: a JACK client with named ports (README: Routing); portaudio: "
                             "sounddevice (CoreAudio, WASAPI, ASIO, ALSA); auto (default): jack when a JACK "
                             "server runs and no --audio-device or --input-device is given")
    parser.add_argument("--client-name", default=None,
                        help="JACK: the client's name (default: the config file's, else steerpad)")
    parser.add_argument("--connect", default=None, metavar="system|REGEX",
                        help="JACK: connect main_L/R to the system playback, or to the first two audio "
                             "inputs whose name matches REGEX (default: left unconnected, for a DAW to take)")
    parser.add_argument("--outputs", choices=jackio.OUTPUTS, default=None,
                        help="JACK: main (default) only, or also a port pair per pad (pads) or per pad group "
                             "(groups: a pad's preset `output`, else its choke group); they bypass the "
                             "master limiter")
    parser.add_argument("--asio", action="store_true", default=None,
                        help="Windows: let PortAudio use ASIO drivers (sets SD_ENABLE_ASIO)")
    parser.add_argument("--midi-port", default=None,
                        help="MIDI input port name (substring); default: the config file's, else a virtual "
                             "port (JACK: CLIENT:midi_in); without virtual ports (Windows) the first input")
    parser.add_argument("--midi-port-name", default="steerpad",
                        help="the virtual MIDI port's name through rtmidi, when no --midi-port is given "
                             "(the JACK backend's port is CLIENT:midi_in)")
    parser.add_argument("--midi-api", default=None,
                        help="jack, alsa, coremidi or winmm (default: auto; the JACK backend reads MIDI on "
                             "its own port unless another API is named)")
    parser.add_argument("--blocksize", type=int, default=None,
                        help=f"frames per audio block, {BLOCKSIZE_MIN}-{BLOCKSIZE_MAX} (default: the config "
                             "file's, else 128)")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help=f"Hz, {SAMPLE_RATE_MIN}-{SAMPLE_RATE_MAX} (default: the output device's rate)")
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
    parser.add_argument("--viz", nargs="?", const=viz.DEFAULT_PORT, type=int, default=None, metavar="PORT",
                        help="serve the visualizer page on 127.0.0.1:PORT, fed directly by the feed "
                             f"(README: Visualizer page); --viz alone: {viz.DEFAULT_PORT}")
    parser.add_argument("--osc-rate", type=float, default=oscfeed.DEFAULT_RATE, metavar="HZ",
                        help="feature frames per second (default %(default)g)")


def _calm_closing(closing: contextlib.ExitStack) -> Callable[[], None]:
    """Ctrl-C (and SIGTERM and SIGHUP, which `guarded` turns into the same stop) is ignored from
    the moment play ends (a stop, --duration, the device gone) until `closing` has closed
    everything; then the handlers are back. Call this first (its restore runs last) and push what
    it returns last (it runs first). The closing is bounded: tens of ms as a rule; a JACK client
    whose server is slow to switch its graph may take up to CLOSE_S + 2 * SETTLE_S + SHUT_S
    (jackio.quiet_close), and a server that hangs ends the process EXIT_S after (exit_soon). A
    second stop would only cut it short, and one landing in a JACK call on the main thread breaks
    that call (libjack takes the EINTR of a socket read for a dead server: with two SIGINTs 50 ms
    apart PortAudio aborted the process in Pa_Terminate, or sounddevice's exit handler raised).
    Signal handlers belong to the main thread: elsewhere, and for a handler not set from Python,
    this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signums = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.getsignal(n) for n in signums}
    previous = {n: h for n, h in previous.items() if h is not None}
    for signum, handler in previous.items():
        closing.callback(signal.signal, signum, handler)

    def calm() -> None:
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
    return calm


def check_options(args: argparse.Namespace) -> None:
    """One line naming the option for every value no part of live play can take."""
    check_audio_options(args.sample_rate, args.blocksize, where="live")
    if args.duration is not None and not (args.duration > 0):  # NaN fails too
        raise SteerpadError(f"--duration {args.duration:g}: must be a number of seconds more than 0 "
                            "(leave it out to play until Ctrl-C)")


JACK_ONLY = ("client_name", "connect", "outputs")
"""Options only the JACK backend takes (refused on the command line otherwise; a config file's
value is then unused)."""


def choose_backend(args: argparse.Namespace, given: set[str]) -> str:
    """jack or portaudio for args.audio_backend (auto: jack when a JACK server answers and no
    PortAudio device is named). `given`: the options set on the command line."""
    backend = args.audio_backend
    if backend == "auto":
        named = args.audio_device is not None or args.input_device is not None
        backend = "jack" if not named and jackio.server_running() else "portaudio"
    if backend == "jack":
        for flag, value in (("--audio-device", args.audio_device), ("--input-device", args.input_device)):
            if value is not None:
                raise SteerpadError(f"{flag} names a PortAudio device, and the JACK backend has none: "
                                    "connect steerpad's ports in JACK instead, or pass --audio-backend "
                                    "portaudio")
    else:
        for name in JACK_ONLY:
            if name in given:
                raise SteerpadError(f"--{name.replace('_', '-')} applies to the JACK backend only (this run "
                                    "plays through PortAudio): start a JACK server or leave it out")
    return backend


def default_midi_port(api: str | None) -> str | None:
    """The MIDI port to open when none is named: None (a virtual port) where the API has virtual
    ports; else (WinMM) the first input, said so, or SteerpadError (exit 2) listing what to do."""
    from steerpad.realtime.midi import first_input_without_virtual

    port = first_input_without_virtual(api)
    if port is not None:
        print(f"steerpad live: this MIDI API has no virtual ports; playing from the first input, {port!r} "
              "(choose another with --midi-port)")
    return port


def run(args: argparse.Namespace) -> int:
    given = {name for name in (*JACK_ONLY, "asio") if getattr(args, name, None) is not None}
    # flags, then the config file, then steerpad's defaults (one read of the file)
    config.resolve(args, ("bundle", "preset", "audio_device", "midi_port", "osc", "blocksize",
                          "audio_backend", "client_name", "connect", "outputs", "asio"))
    check_options(args)
    target = None if args.osc is None else oscfeed.parse_target(args.osc)
    osc_rate = oscfeed.check_rate(args.osc_rate)
    needs_input = [f for f, v in (("--input-channels", args.input_channels),
                                  ("--input-device", args.input_device),
                                  ("--monitor", args.monitor or None), ("--kit-dir", args.kit_dir))
                   if v is not None]
    if needs_input and not args.input:
        raise SteerpadError(f"{', '.join(needs_input)} needs --input (live input is off without it)")
    enable_asio(args.asio, "asio" in given)
    if choose_backend(args, given) == "jack":
        return _JackBackend(args).perform(args, target, osc_rate)
    return _PortAudioBackend(args).perform(args, target, osc_rate)


class _Backend:
    """What differs between playing through PortAudio and as a JACK client: the rate and block
    size, the MIDI input, the stream. perform() is the one play loop both share."""

    rate: int
    blocksize: int

    def prepare(self, engine: Engine) -> None:
        """After the engine exists, before its first renders (JACK: ports, connect targets)."""

    def midi_input(self, args: argparse.Namespace, preset):
        """The MIDI input, not started: a MidiInput the audio callback drains (rtmidi)."""
        from steerpad.realtime.midi import MidiInput

        port = args.midi_port or default_midi_port(args.midi_api)
        return MidiInput(None, port=port, virtual=None if port else args.midi_port_name,
                         cc14=preset.controller.cc14, api=args.midi_api)

    def stream(self, engine: Engine, midi):
        raise NotImplementedError

    def perform(self, args: argparse.Namespace, target, osc_rate: float) -> int:
        try:
            return self._perform(args, target, osc_rate)
        finally:
            self.abandon()

    def _perform(self, args: argparse.Namespace, target, osc_rate: float) -> int:
        from steerpad.realtime.status import StatusView

        bundle = load_bundle(args.bundle)
        preset = load_preset(args.preset)
        print(f"steerpad live: {bundle} · preset {preset.name} · {self.rate} Hz, {self.blocksize} frames"
              f"{self.where()}")
        input_channels = (args.input_channels or 1) if args.input else 0
        # the ExitStack leaves in reverse: keys, feed, stream, capture, MIDI, collector, engine (render
        # worker, master bus), viz page; Ctrl-C is ignored meanwhile (_calm_closing)
        with contextlib.ExitStack() as closing:
            calm = _calm_closing(closing)
            senders = [] if target is None else [oscfeed.OscSender(*target)]
            if args.viz is not None:  # the page first: a port in use is refused before anything renders
                state = viz.VizState()
                state.source = f"steerpad live · {preset.name}"
                page = closing.enter_context(viz.VizServer(state, args.viz, option="--viz"))
                senders.append(viz.VizSink(state, page.url))
                print(f"visualizer: open {page.url} in a browser", flush=True)
            engine = closing.enter_context(Engine(bundle, preset, self.rate, self.blocksize,
                                                  input_channels=input_channels))
            self.prepare(engine)
            print("rendering pads ...", flush=True)
            engine.start(wait=None)
            # everything is loaded and nothing plays yet: collect once (a pause that would drop audio
            # and MIDI later), freeze, no automatic full collections from here on
            collector = Collector(engine)
            collector.start()
            closing.callback(collector.stop)
            engine.monitor = args.monitor
            capture = None
            midi = self.midi_input(args, preset)
            midi_closed, stream = [], None

            def stop_midi() -> None:
                if stream is not None and stream.hung and midi.api_name == "jack":
                    midi_closed.append(True)  # rtmidi would wait on the hung server holding the GIL: leave it
                else:
                    midi_closed.append(finishes(midi.stop, CLOSE_S, "steerpad-midi-close"))

            closing.callback(stop_midi)
            if args.input:
                kit_dir = args.kit_dir or preset.capture.kit_dir or default_kit_dir(preset.name)
                capture = Capture(engine, preset.capture, user_path(kit_dir, "--kit-dir")).start()
                closing.callback(capture.stop)
            stream = self.stream(engine, midi)
            closing.callback(stream.close)
            stream.start()
            feed = None
            if senders:
                sender = senders[0] if len(senders) == 1 else viz.Tee(*senders)
                feed = closing.enter_context(oscfeed.LiveFeed(engine, sender, osc_rate))
            view = None if args.no_status else StatusView(engine, stream, midi, feed=feed)
            if view is not None:
                keys = LiveKeys(engine, capture)
                reader = KeyReader(keys.press).start()  # a no-op unless stdin is a terminal
                closing.callback(reader.stop)
                view.keys = keys if reader.active else None
            closing.callback(calm)
            deadline = None if args.duration is None else time.monotonic() + args.duration

            def playing() -> bool:  # until --duration, or the device goes (Ctrl-C: KeyboardInterrupt)
                collector.tick()
                return (deadline is None or time.monotonic() < deadline) and stream.check() is None

            try:
                if view is not None:
                    view.run(playing)
                else:
                    while playing():
                        time.sleep(0.1)
            except KeyboardInterrupt:
                pass
        if feed is not None:
            print(f"osc: {feed.summary()}")
        if stream.failure is not None:  # the device went, or would not stop
            raise RuntimeFailure(stream.failure)
        if midi_closed != [True]:
            raise RuntimeFailure(f"the MIDI input ({midi.api_name}) did not close within {CLOSE_S:g} s: "
                                 "its server hangs; check it (`steerpad devices`), then start steerpad "
                                 "live again")
        print("\nsteerpad live: stopped")
        return 0

    def where(self) -> str:
        return ""

    def abandon(self) -> None:
        """Close what the backend opened if play never started (an error on the way)."""


class _PortAudioBackend(_Backend):
    """A sounddevice stream (LiveStream) on the chosen device; MIDI through rtmidi."""

    def __init__(self, args: argparse.Namespace):
        import sounddevice as sd

        device = args.audio_device
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        if args.input_device is not None:
            in_device = int(args.input_device) if args.input_device.isdigit() else args.input_device
            device = (in_device, device)
        try:
            out_device = device[1] if isinstance(device, tuple) else device
            rate = args.sample_rate or sd.query_devices(out_device, "output")["default_samplerate"]
        except (ValueError, sd.PortAudioError) as e:
            raise SteerpadError(f"audio device {args.audio_device or '(default)'}: {e}; "
                                "see `steerpad devices`") from None
        if not (math.isfinite(rate) and SAMPLE_RATE_MIN <= rate <= SAMPLE_RATE_MAX and rate == int(rate)):
            raise SteerpadError(f"audio device {args.audio_device or '(default)'} runs at {rate:g} Hz, "
                                f"outside {SAMPLE_RATE_MIN} to {SAMPLE_RATE_MAX} Hz: choose another rate "
                                "with --sample-rate or another device with --audio-device")
        self.device, self.rate, self.blocksize = device, int(rate), args.blocksize

    def stream(self, engine: Engine, midi) -> LiveStream:
        midi.start()
        engine.attach_midi(midi)  # the audio callback drains it at every block's start
        return LiveStream(engine, self.device)


class _JackBackend(_Backend):
    """steerpad as the JACK client args.client_name (jackio.JackStream): the server's rate and
    period; MIDI on CLIENT:midi_in unless --midi-api names another API."""

    def __init__(self, args: argparse.Namespace):
        from steerpad.realtime.midi import resolve_api

        self.client = jackio.open_client(args.client_name)
        self._stream = None
        try:
            self.rate = self.client.samplerate
            if args.sample_rate is not None and args.sample_rate != self.rate:
                raise SteerpadError(f"--sample-rate {args.sample_rate}: the JACK server runs at {self.rate} "
                                    "Hz; leave it out, or restart JACK at that rate")
            if not SAMPLE_RATE_MIN <= self.rate <= SAMPLE_RATE_MAX:
                raise SteerpadError(f"the JACK server runs at {self.rate} Hz, outside {SAMPLE_RATE_MIN} to "
                                    f"{SAMPLE_RATE_MAX} Hz: restart it at another rate")
            # the server's period; a longer one than steerpad takes is played in pieces
            self.blocksize = min(max(self.client.blocksize, BLOCKSIZE_MIN), BLOCKSIZE_MAX)
            api = resolve_api(args.midi_api)
            self.jack_midi = api is None or api == resolve_api("jack")
            self.args = args
        except BaseException:
            self.client.close()
            raise

    def where(self) -> str:
        return f" · JACK client {self.client.name}"

    def prepare(self, engine: Engine) -> None:
        args = self.args
        midi = None
        if self.jack_midi:
            midi = jackio.JackMidi(self.client, engine.controller.cc14, source=args.midi_port)
            midi.check_source()
        self._stream = jackio.JackStream(engine, self.client, jackio.routing(engine.preset, args.outputs),
                                         midi, connect=args.connect)

    def abandon(self) -> None:
        if self._stream is None or not self._stream._started:
            self.client.close()

    def midi_input(self, args: argparse.Namespace, preset):
        return self._stream.midi if self.jack_midi else super().midi_input(args, preset)

    def stream(self, engine: Engine, midi):
        if not self.jack_midi:
            midi.start()
            engine.attach_midi(midi)
        return self._stream
