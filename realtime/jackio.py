"""`steerpad live` on a JACK server as a client of its own, with named ports (JACK-Client).

    steerpad:midi_in ──► Engine.process (each event at its own frame) ──► steerpad:main_L/R
                                        └─ pad voices by bus (--outputs) ──► steerpad:pad01_L/R ...
    steerpad:in_1/2 (--input) ──► capture, monitor

PortAudio's JACK host API names its client and ports itself (`PortAudio:out_0`) and wires them
to the system playback, so a DAW can neither tell steerpad apart nor take its outputs. Under a
running JACK server (PipeWire's JACK included) `steerpad live` is this client instead:

- named `steerpad` (`--client-name`); a name already taken is refused, never renamed;
- `main_L`/`main_R` carry the master bus (its limiter included). They are connected only when
  asked: `--connect system` (the first two physical playback ports) or `--connect REGEX` (the
  first two audio inputs whose full name matches), so a DAW can take them instead;
- `--outputs pads` adds a pair per pad (`pad01_L`/`pad01_R` ...), `--outputs groups` a pair per
  group (a pad's preset `output`, else its choke group, else its own `padNN`). They carry the
  pads' voices after pad gain, pan and velocity and *before the master bus*: they bypass its
  limiter (a loud kit can go over 0 dBFS there), delayed by its 0.5 ms lookahead so that they
  line up with main to the sample;
- MIDI arrives on `midi_in`, a JACK MIDI port of the same client, read in the process callback:
  each note starts at the frame it arrived in the previous cycle, a constant one-block delay
  with no jitter and no thread hop. `--midi-port` connects a JACK MIDI output to it (and again
  whenever that port comes back).

The process callback does what LiveStream's does (Engine.process, no lock, no I/O, nothing that
grows with the block; JACK-Client hands each port buffer over as a small numpy view) and counts
an xrun when JACK's frame clock skips a cycle. It runs a larger JACK period than the engine's
block in engine-sized pieces. Closing (quiet_close, shared with the test rig's clients):
jack_deactivate cancels the process thread, and a thread cancelled while it waits for the GIL
takes the GIL down with it, so the callback first ends JACK's process thread itself, and only
then does a helper thread deactivate and close (waits: CLOSE_S for the server to show it cycles,
then SETTLE_S for each step, and SHUT_S for the last, since JACK itself may wait that long).

Shared attributes (one writer each): `callbacks`, `xruns`, `callback_errors`, `last_error`,
`load`, `_ended` (read by quiet_close on the closing thread): the process callback; `_shutdown`:
JACK's shutdown callback; `failure`, `hung`, `_quiet`: the main thread; JackMidi's `received`,
`filtered`, `handler_errors`, `handler_error`: the process callback; its `connected`,
`reconnects`, `last_error`: its watcher thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steerpad.realtime.engine import LOAD_RING, Engine
from steerpad.realtime.errors import RuntimeFailure, SteerpadError
from steerpad.realtime.events import Event
from steerpad.realtime.midiparse import MidiParser
from steerpad.realtime.presets import Preset
from steerpad.realtime.service import Service
from steerpad.realtime.waits import CLOSE_S, SETTLE_S, SHUT_S, exit_soon, finishes

CLIENT_NAME = "steerpad"
OUTPUTS = ("main", "pads", "groups")
STALL_S = 2.0
"""No process cycle for this long while active: the server hangs."""
WATCH_S = 0.5
"""How often the MIDI watcher looks for the --midi-port source to (re)connect."""
_left_behind: list = []
"""Clients that did not close (a server that hangs, or a close that ran out of time): kept
referenced for good, so that no garbage collection runs their close: it would wait forever, or
cancel a process thread that waits for the GIL (see quiet_close)."""


def _jack():
    """The jack module, or SteerpadError saying why it cannot load (no libjack)."""
    try:
        import jack
    except (ImportError, OSError) as e:
        raise SteerpadError(f"JACK is not available here ({e}); install JACK (or PipeWire's JACK), or "
                            "use --audio-backend portaudio") from None
    return jack


def _probe(jack):
    """A short-lived client of the running server, or None if none answers (libjack's own
    "Cannot connect to server socket" lines silenced)."""
    jack.set_error_function(lambda message: None)
    try:
        return jack.Client("steerpad-probe", no_start_server=True)
    except jack.JackOpenError:
        return None
    finally:
        jack.set_error_function(None)


def server_running() -> bool:
    """Whether a JACK server answers (libjack loads and a client opens without starting one)."""
    try:
        probe = _probe(_jack())
    except SteerpadError:
        return False
    if probe is None:
        return False
    probe.close()
    return True


def open_client(name: str = CLIENT_NAME):
    """A JACK client named exactly `name`, not activated; SteerpadError if there is no server or
    the name is taken."""
    if not name or len(name) > 63 or ":" in name:
        raise SteerpadError(f"--client-name {name!r}: give 1-63 characters without ':'")
    jack = _jack()
    jack.set_error_function(lambda message: None)  # libjack's own lines; the error below says it
    try:
        return jack.Client(name, use_exact_name=True, no_start_server=True)
    except jack.JackOpenError as e:
        if e.status.name_not_unique or _taken(jack, name):
            raise SteerpadError(f"JACK client name {name!r} is taken (is steerpad already running?); "
                                "choose another with --client-name") from None
        raise SteerpadError(f"cannot open a JACK client ({e}): start the JACK server (or PipeWire), or "
                            "use --audio-backend portaudio") from None
    finally:
        jack.set_error_function(None)


def _taken(jack, name: str) -> bool:
    """Whether a client named `name` runs (jackd2 refuses an exact name that is taken with a plain
    server error, not NameNotUnique)."""
    probe = _probe(jack)
    if probe is None:
        return False
    try:
        probe.get_uuid_for_client_name(name)
        return True
    except jack.JackError:
        return False
    finally:
        probe.close()


def end_callback(jack) -> None:
    """Called (as `raise`) from a closing client's Python process callback: JACK-Client turns
    jack.CallbackExit into a failed cycle, and JACK then ends the client's process thread from
    inside itself, outside Python (jack2: JackClient::End). See quiet_close."""
    raise jack.CallbackExit


def quiet_close(client, quiet: Callable[[], None], ended: Callable[[], bool], timeout: float = CLOSE_S,
                settle: float = SETTLE_S, shut_s: float = SHUT_S) -> bool:
    """Close a JACK client whose process callback is Python, without taking the GIL down, and
    without stalling the clients around it.

    jack_deactivate (and jack_client_close) stop the client's process thread with a thread
    cancel; a thread cancelled while it waits for the GIL keeps the GIL's mutex for good, and
    every Python thread then waits forever (seen under load: the tests hung in Client.deactivate).
    So the callback ends the thread itself first (end_callback, once `quiet()` set what it
    reads). But a client whose thread ended still sits in JACK's graph, and the clients it feeds
    are not run until the server's client timeout gives up on it: steerpad's own close then waited
    for a cycle that never came (a test's MIDI sender, closed first, still fed it). So, in order:

    0. the server must be cycling: a frame clock that does not move for `timeout` s means it
       hangs (then nothing below can finish, and the watchdog's exit is not held up);
    1. a helper thread disconnects every port of the client and lets two cycles pass (the graph
       switches at a cycle);
    2. `quiet()`, then wait for `ended()` (the callback's last cycle);
    3. deactivate and close on a helper thread.

    Steps 1-2 may take `settle` s each, step 3 `shut_s` (waits.SHUT_S: JACK's own graph waits):
    a server that cycles is slow, not hung (they had `timeout` s each before, and a CI run with
    both cores busy called a live server hung: "JACK client steerpad-cli did not close",
    reproduced once in 3 runs of tests/live/test_live_cli.py under --load). A close left behind
    still waits on the server, and it froze the next test that closed an rtmidi client (rtmidi
    calls JACK holding the GIL): the live learn test, in a CI run that then timed out.

    Returns whether the client closed (False: the server hangs; the client is left behind, in
    `_left_behind`)."""
    import jack

    if not _cycling(client, timeout):
        _left_behind.append(client)
        return False

    def unhook() -> None:
        for ports in (client.inports, client.outports, client.midi_inports, client.midi_outports):
            for port in ports:
                try:
                    port.disconnect()
                except jack.JackError:  # (a connection that went meanwhile)
                    pass
        if _cycling(client, settle):  # two cycles: the graph has switched
            _cycling(client, settle)

    if not finishes(unhook, settle, f"jack-unhook-{client.name}"):
        _left_behind.append(client)
        return False
    quiet()
    deadline = time.monotonic() + settle
    while not ended() and time.monotonic() < deadline:
        time.sleep(0.001)
    if not ended():  # no cycle came: the server hangs (or never ran the client)
        _left_behind.append(client)
        return False

    def shut() -> None:
        client.deactivate()
        client.close()

    if finishes(shut, shut_s, f"jack-close-{client.name}"):
        return True
    _left_behind.append(client)
    return False


def _cycling(client, timeout: float) -> bool:
    """Whether the server runs cycles: its frame clock (JACK's shared memory, no request to the
    server, so a stopped server cannot block this) moves within `timeout` s."""
    seen = client.last_frame_time
    stop_at = time.monotonic() + timeout
    while client.last_frame_time == seen:
        if time.monotonic() >= stop_at:
            return False
        time.sleep(0.001)
    return True


@dataclass(frozen=True)
class Routing:
    """The output buses: `names` (port pair prefixes, bus order) and each pad's bus (-1: none)."""

    names: tuple[str, ...]
    bus_of_pad: tuple[int, ...]


def routing(preset: Preset, outputs: str) -> Routing | None:
    """The per-pad or per-group buses of `--outputs` (None for main only)."""
    if outputs not in OUTPUTS:
        raise SteerpadError(f"--outputs {outputs!r}: use one of {', '.join(OUTPUTS)}")
    if outputs == "main":
        return None
    bus = [-1] * len(preset.controller.pad_notes)
    names: list[str] = []
    for pad in preset.pads:
        name = f"pad{pad.index + 1:02d}" if outputs == "pads" else pad.group_name()
        if name not in names:
            names.append(name)
        bus[pad.index] = names.index(name)
    return Routing(tuple(names), tuple(bus))


class JackMidi(Service):
    """The client's JACK MIDI input `midi_in`, drained by the process callback (drain). Reads as
    a MidiInput does for the status view: api_name, port_name, connected, received, ignored,
    filtered, handler_errors, handler_error (written by the process callback), last_error,
    reconnects (written by the watcher)."""

    api_name = "jack"

    def __init__(self, client, cc14=(), source: str | None = None):
        self.client = client
        self.port = None
        """midi_in, registered when the stream starts (register())."""
        self.source = source
        """--midi-port: part of a JACK MIDI output's name to connect (and reconnect) to midi_in."""
        self._parser = MidiParser(cc14)
        self.port_name = f"{client.name}:midi_in"
        self.connected = source is None
        self.received = self.filtered = self.handler_errors = self.reconnects = 0
        self.handler_error: str | None = None
        self.last_error: str | None = None
        super().__init__()

    thread_name = "steerpad-jack-midi"
    """The watcher: reconnects the --midi-port source when it comes back."""

    @property
    def ignored(self) -> int:
        return self._parser.ignored

    def sources(self) -> list[str]:
        """The JACK MIDI outputs there are (other than ours)."""
        return [p.name for p in self.client.get_ports(is_midi=True, is_output=True)
                if not p.name.startswith(self.client.name + ":")]

    def find_source(self) -> str | None:
        q = (self.source or "").lower()
        return next((p for p in self.sources() if q in p.lower()), None)

    def check_source(self) -> None:
        """SteerpadError (listing the JACK MIDI outputs) if --midi-port matches none now."""
        if self.source is not None and self.find_source() is None:
            raise SteerpadError(f"--midi-port {self.source!r}: no JACK MIDI output matches it; there are: "
                                f"{', '.join(self.sources()) or 'none'} (a hardware port on ALSA shows up "
                                "through a2jmidid, or use --midi-api alsa)")

    def drain(self, handler) -> int:
        """This cycle's MIDI events to handler(event, frame offset); in the process callback."""
        n = 0
        for offset, data in self.port.incoming_midi_events():
            n += 1
            self.received += 1
            event: Event | None = self._parser.feed(bytes(data))
            if event is None:
                continue
            try:
                handler(event, offset)
            except Exception as e:  # noqa: BLE001 - a handler bug must not end MIDI input
                self.handler_errors += 1
                self.handler_error = f"MIDI handler raised {type(e).__name__}: {e}".splitlines()[0]
        return n

    def register(self) -> None:
        """Make the port (JackStream.start, just before the client goes active)."""
        self.port = self.client.midi_inports.register("midi_in")

    def start(self) -> None:
        """Connect the --midi-port source and watch it (after the client is active)."""
        if self.source is None:
            return
        self._link()
        super().start()

    def _link(self) -> None:
        found = self.find_source()
        if found is None:
            if self.connected:
                self.last_error = f"MIDI source {self.source!r} disappeared: waiting for it to return"
            self.connected = False
            return
        if self.port.name not in [p.name for p in self.client.get_all_connections(found)]:
            self.client.connect(found, self.port)
            if not self.connected and self.port_name != self.port.name:
                self.reconnects += 1
        self.port_name, self.connected = f"{self.port.name} ← {found}", True

    def _run(self) -> None:
        while not self._stopping.wait(WATCH_S):
            try:
                self._link()
            except Exception as e:  # noqa: BLE001 - keep watching: the port may come back
                self.last_error = f"MIDI reconnect failed: {type(e).__name__}: {e}".splitlines()[0]

    def stop(self) -> None:
        """Stop watching without waiting (a watcher inside a call to a hung server never returns);
        the port goes with the client, which JackStream closes."""
        super().stop(timeout=0)


class JackStream:
    """An Engine on the JACK client `client` (open_client, not yet active): main_L/R, the buses of
    `route` (routing()), the input ports of engine.input_channels, and `midi` (a JackMidi on the
    same client, or None when MIDI comes through rtmidi). Used like LiveStream: start(), check()
    from the main thread, close()."""

    def __init__(self, engine: Engine, client, route: Routing | None = None, midi: JackMidi | None = None,
                 connect: str | None = None):
        if client.samplerate != engine.sample_rate:
            raise ValueError("the engine must run at the JACK server's rate")
        self.engine, self.client, self.midi = engine, client, midi
        self.connect_to = connect
        self.device_name = f"JACK client {client.name}"
        self.host_api = "JACK"
        self.jack = True
        self.callbacks = self.xruns = self.callback_errors = 0
        self.load = np.zeros(LOAD_RING)
        """The whole process callback's durations in seconds (ports included), a ring indexed by
        `callbacks`; Engine.load times engine.process alone."""
        self.last_error = ""
        self.failure: str | None = None
        self.hung = False
        self._shutdown: str | None = None
        self._quiet = False
        self._ended = False
        """Set by the callback as it ends JACK's process thread for good (quiet_close)."""
        self._jack = _jack()
        self._started = self._closed = False
        self._last_time = self._last_frames = -1
        self._seen, self._seen_at = 0, 0.0
        self._stall_s = max(STALL_S, 4.0 * client.blocksize / client.samplerate)
        self.route = route
        if route is not None:
            engine.route(list(route.bus_of_pad), len(route.names))
        self.main, self.buses, self.inputs = [], [], []
        """The ports, made in start() (a port of a client not yet active cannot be connected, so
        none shows before it can be)."""
        bs = engine.blocksize
        self._out = np.zeros((bs, 2), np.float32)
        self._in = np.zeros((bs, max(1, engine.input_channels)), np.float32)
        self._lag = 0 if engine.master is None else engine.master.latency
        """The bus ports are delayed by the master bus's lookahead, so they line up with main."""
        buses = 0 if route is None else len(route.names)
        self._delay = np.zeros((buses, self._lag + bs, 2), np.float32)
        self._carry = np.zeros((buses, self._lag, 2), np.float32)
        self._targets = self._connect_targets() if connect else []

    # ---------------------------------------------------------------- the process callback

    def _on_shutdown(self, status, reason: str) -> None:
        self._shutdown = reason or "the server shut down"

    def _process(self, frames: int) -> None:
        ports = [p.get_array() for p in self.main]
        buses = [[p.get_array() for p in pair] for pair in self.buses]
        if self._quiet:  # closing: silence, then JACK ends this thread (quiet_close)
            for a in ports:
                a.fill(0.0)
            for pair in buses:
                for a in pair:
                    a.fill(0.0)
            self._ended = True
            end_callback(self._jack)
        t0 = time.perf_counter()
        now = self.client.last_frame_time
        if self._last_time >= 0 and now != (self._last_time + self._last_frames) & 0xFFFFFFFF:
            self.xruns += 1  # JACK's frame clock skipped a cycle
        self._last_time, self._last_frames = now, frames
        ins = [p.get_array() for p in self.inputs]
        engine, bs = self.engine, self.engine.blocksize
        try:
            if self.midi is not None:
                self.midi.drain(engine.handle)
            for start in range(0, frames, bs):
                n = min(bs, frames - start)
                out = self._out[:n]
                inp = None
                if ins:
                    inp = self._in[:n]
                    for c, a in enumerate(ins):
                        inp[:, c] = a[start:start + n]
                engine.process(out, inp)
                lag, delay = self._lag, self._delay
                if buses:  # delay line: the carried tail, then this piece; the new tail carried on
                    delay[:, lag:lag + n] = engine.stems[:, :n]
                for c in range(2):
                    ports[c][start:start + n] = out[:, c]
                    for b, pair in enumerate(buses):
                        pair[c][start:start + n] = delay[b, :n, c]
                if buses and lag:
                    self._carry[:] = delay[:, n:n + lag]
                    delay[:, :lag] = self._carry
        except Exception as e:  # noqa: BLE001 - the callback must never raise: silence this cycle
            for a in ports:
                a.fill(0.0)
            for pair in buses:
                for a in pair:
                    a.fill(0.0)
            self.callback_errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
        self.load[self.callbacks % LOAD_RING] = time.perf_counter() - t0
        self.callbacks += 1

    def load_stats(self) -> dict[str, float]:
        """The whole callback's time p50 / p99 / max in ms (see Engine.load_stats)."""
        n = min(self.callbacks, LOAD_RING)
        if n == 0:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        t = self.load[:n] * 1e3
        p50, p99 = np.percentile(t, [50, 99])
        return {"p50_ms": float(p50), "p99_ms": float(p99), "max_ms": float(t.max())}

    # ---------------------------------------------------------------- main thread

    def _connect_targets(self) -> list[str]:
        """The two playback ports --connect names: 'system' (physical playback) or a regex over
        audio inputs' full names; SteerpadError if none match."""
        own = self.client.name + ":"
        if self.connect_to == "system":
            ports = self.client.get_ports(is_physical=True, is_input=True, is_audio=True)
        else:
            try:
                pattern = re.compile(self.connect_to)
            except re.error as e:
                raise SteerpadError(f"--connect {self.connect_to!r}: not a regular expression ({e}); "
                                    "give 'system' or a pattern of port names, e.g. "
                                    "'ardour:steerpad/audio_in'") from None
            ports = [p for p in self.client.get_ports(is_input=True, is_audio=True) if pattern.search(p.name)]
        names = [p.name for p in ports if not p.name.startswith(own)]
        if not names:
            there = [p.name for p in self.client.get_ports(is_input=True, is_audio=True)
                     if not p.name.startswith(own)]
            raise SteerpadError(f"--connect {self.connect_to!r}: no JACK audio input matches; there are: "
                                f"{', '.join(there) or 'none'}")
        return names[:2] if len(names) > 1 else names * 2  # a mono target takes both sides

    def start(self) -> None:
        client = self.client
        try:
            self.main = [client.outports.register(f"main_{side}") for side in "LR"]
            if self.route is not None:
                self.buses = [[client.outports.register(f"{name}_{side}") for side in "LR"]
                              for name in self.route.names]
            self.inputs = [client.inports.register(f"in_{c + 1}") for c in range(self.engine.input_channels)]
            if self.midi is not None:
                self.midi.register()
            client.set_shutdown_callback(self._on_shutdown)
            client.set_process_callback(self._process)
            client.activate()
            self._seen, self._seen_at = self.callbacks, time.monotonic()
            self._started = True
            for port, target in zip(self.main, self._targets):
                client.connect(port, target)
        except Exception as e:  # noqa: BLE001 - jack.JackError: the server refused
            raise RuntimeFailure(f"JACK client {client.name} would not start ({e}); check the JACK "
                                 "server, then start steerpad live again") from None
        if self.midi is not None:
            self.midi.start()

    def check(self) -> str | None:
        """None while JACK runs the client, else why it stopped (kept from then on); from the main
        thread, a few times a second. Makes no JACK call (one could wait forever)."""
        if self.failure is not None or not self._started:
            return self.failure
        now = time.monotonic()
        if self._shutdown is not None:
            self.failure = (f"audio server gone (JACK stopped, or it dropped steerpad: {self._shutdown}): "
                            "start JACK again, then steerpad live")
        elif self.callbacks != self._seen:
            self._seen, self._seen_at = self.callbacks, now
        elif now - self._seen_at >= self._stall_s:
            self.hung = True
            self.failure = ("audio server gone (JACK stopped answering): no process cycle for "
                            f"{now - self._seen_at:.1f} s; start JACK again, then steerpad live")
        return self.failure

    def _go_quiet(self) -> None:
        self._quiet = True

    def close(self) -> None:
        """Disconnect, silence the callback, wait for its last cycle, then deactivate and close
        (quiet_close); a server that hangs is left alone (exit_soon). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.midi is not None:
            self.midi.stop()
        if self.check() is not None and self.hung:
            _left_behind.append(self.client)
            exit_soon()
            return
        if not self._started or self._shutdown is not None:  # no process thread runs: close only
            closed = finishes(self.client.close, CLOSE_S, "steerpad-jack-close")
        else:
            closed = quiet_close(self.client, self._go_quiet, lambda: self._ended)
        if not closed:
            if self.client not in _left_behind:  # (quiet_close keeps its own)
                _left_behind.append(self.client)
            self.failure = self.failure or (f"JACK client {self.client.name} did not close: the server "
                                            "hangs; start JACK again, then steerpad live")
            self.hung = True
            exit_soon()

    def __enter__(self) -> JackStream:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
