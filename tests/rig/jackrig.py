"""A JACK rig for the tests and the live benchmarks: a dummy JACK server, a MIDI sender and an
audio recorder, both real JACK clients (JACK-Client), so a test can play notes into steerpad's
MIDI port at known frame times and record what steerpad's audio output made of them on the same
JACK frame clock.

    Sender  "steerpad-test-midi:out"  ──JACK MIDI──►  steerpad's MIDI input (rtmidi)
    steerpad's output (PortAudio)  ──JACK audio──►  Recorder "steerpad-test-rec:in_1/2"
    Player "steerpad-test-play:out_N"  ──JACK audio──►  steerpad's input (PortAudio:in_0 ...)

That is live_rig's default backend; with backend="jack" steerpad is a JACK client of its own
(jackio.JackStream) named PORT, and the rig wires the same clients to its ports: the Sender to
PORT:midi_in, PORT:main_L/R to the Recorder, the Player to PORT:in_N. `plain_client` is a plain
JACK client (a pass-through) whose xruns are the baseline steerpad's are compared with.

`ensure_jackd()` starts `jackd -d dummy` (no sound card needed) unless a server runs. Start it
before sounddevice is imported (PortAudio scans host APIs once, at import) and stop it only
after the process exits, which a watchdog process does: it waits for this process to end and
then stops the server it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

RATE = 48000
PERIOD = 128


def jack_tool(*args: str, server: str | None = None) -> subprocess.CompletedProcess:
    """Run one of JACK's own command-line clients (jack_lsp, jack_wait ...) on `server`, default
    $JACK_DEFAULT_SERVER, and capture its output. The server goes in $JACK_DEFAULT_SERVER, never
    as `-s NAME`: JACK2's tools copy that NAME into a buffer one byte short (`malloc(strlen)`),
    and jack_lsp aborts in malloc when the name is 24 characters long (measured; a CI machine's
    pytest PID of 879 made "steerpad-hardening-879-0" and failed every test that asked it)."""
    env = dict(os.environ, JACK_DEFAULT_SERVER=server) if server else None
    return subprocess.run(list(args), capture_output=True, text=True, env=env)


def jack_running(server: str | None = None) -> bool:
    """Whether the JACK server `server` (default: $JACK_DEFAULT_SERVER, else "default") runs."""
    return shutil.which("jack_wait") is not None and \
        jack_tool("jack_wait", "-c", server=server).stdout.strip() == "running"


def jackd_command(name: str, rate: int = RATE, period: int = PERIOD) -> list[str]:
    """The command line of the rig's dummy JACK server `name`, with realtime scheduling, as a
    performer runs JACK: its driver thread and every client's process thread (steerpad's stream,
    the rig's sender and recorder) then run SCHED_FIFO and preempt other work on the machine.
    Without it they are time-shared with whatever else runs: with both cores busy, cycles came
    late and whole periods went missing (a hit sounded two blocks late; two recordings of the same
    hit were misaligned), which is what failed the JACK tests under load. Where the system refuses
    realtime scheduling, jackd says so and runs without it."""
    return ["jackd", "-n", name, "--realtime", "-d", "dummy", "-r", str(rate), "-p", str(period)]


def ensure_jackd(rate: int = RATE, period: int = PERIOD, server: str | None = None,
                 log: Path | None = None) -> bool:
    """Make the JACK server `server` run, a dummy one (no sound card) started here unless it runs
    already; False if jackd is not installed or did not start. With a name, this process (and
    the sounddevice, rtmidi and JACK-Client clients it opens) uses that server from now on
    ($JACK_DEFAULT_SERVER), so parallel runs on one machine never share one. A process that
    already uses a running server keeps it: libjack holds on to the first server a process talked
    to (once PortAudio has a client on server A, a client opened for server B sees A's ports and
    not its own: measured, the bench's MIDI port went missing inside the test run)."""
    current = os.environ.get("JACK_DEFAULT_SERVER")
    if server and current and current != server and jack_running(current):
        server = current
    if server:
        os.environ["JACK_DEFAULT_SERVER"] = server
    name = server or os.environ.get("JACK_DEFAULT_SERVER") or "default"
    if jack_running(name):
        return True
    if shutil.which("jackd") is None:
        return False
    out = open(log or os.devnull, "ab")
    server_proc = subprocess.Popen(
        jackd_command(name, rate, period),
        stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    subprocess.Popen(["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                                  f"kill {server_proc.pid} 2>/dev/null"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server_proc.poll() is not None:
            return False
        if jack_running(name):
            return True
        time.sleep(0.1)
    return False


_HOG = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
"""A busy loop that ends when the process that started it does, however that ends (it is then
re-parented)."""


def start_cpu_load() -> list[subprocess.Popen]:
    """One busy loop per core this process may run on, each pinned to its core (taskset, when
    there is one): other work on a performer's laptop. Kill them with stop_cpu_load; they also
    end with this process."""
    pin = shutil.which("taskset") is not None
    return [subprocess.Popen([*(["taskset", "-c", str(core)] if pin else []), sys.executable, "-c", _HOG],
                             stdin=subprocess.DEVNULL, start_new_session=True)
            for core in sorted(os.sched_getaffinity(0))]


def stop_cpu_load(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


@contextmanager
def cpu_load() -> Iterator[int]:
    """start_cpu_load for the `with` block; gives the number of busy loops."""
    hogs = start_cpu_load()
    try:
        yield len(hogs)
    finally:
        stop_cpu_load(hogs)


class _RigClient:
    """A JACK-Client client of the rig, whose process callback is Python. Closing one is where a
    test run hung for good: jack_deactivate stops the client's process thread with a thread
    cancel, and a thread cancelled while it waits for (or holds) the GIL takes the GIL down with
    it, so every Python thread waits forever (seen under load, twice). close() runs steerpad's
    jackio.quiet_close: the client's ports are disconnected first (a client whose thread ended
    would stall the ones it feeds), then `_quiet`, read first thing in every callback, makes the
    next cycle call `_end()`, which ends JACK's process thread from inside itself, and only then
    does a thread of its own deactivate and close. live_rig closes these last, after steerpad's
    stream, MIDI and render worker."""

    client: Any
    _quiet = False
    _ended = False

    def _end(self) -> None:
        """From the callback once `_quiet` is set: this was the client's last cycle."""
        import jack

        from steerpad.realtime.jackio import end_callback

        self._ended = True
        end_callback(jack)

    def close(self, timeout: float = 5.0) -> bool:
        """Whether the client closed (False: left behind, its close still waiting on the server)."""
        from steerpad.realtime.jackio import quiet_close

        return quiet_close(self.client, lambda: setattr(self, "_quiet", True), lambda: self._ended, timeout)


class Sender(_RigClient):
    """Sends queued MIDI messages at the start of the next JACK cycle; records each message's
    JACK frame time."""

    def __init__(self, name: str = "steerpad-test-midi"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.midi_outports.register("out")
        self._queue: deque[bytes] = deque()
        self.sent: list[tuple[int, bytes]] = []
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        self.port.clear_buffer()
        if self._quiet:
            self._end()
        t = self.client.last_frame_time
        while self._queue:
            msg = self._queue.popleft()
            self.port.write_midi_event(0, msg)
            self.sent.append((t, msg))

    def send(self, *messages: bytes | list[int], wait: float = 1.0) -> int:
        """Queue messages for the next cycle; returns that cycle's frame time once sent."""
        n = len(self.sent)
        for m in messages:
            self._queue.append(bytes(m))
        deadline = time.monotonic() + wait
        while len(self.sent) < n + len(messages):
            if time.monotonic() > deadline:
                raise TimeoutError("the JACK sender did not run")
            time.sleep(0.001)
        return self.sent[-1][0]

    def connect(self, port_name_part: str) -> str:
        """Connect to the first MIDI input port whose name contains port_name_part."""
        ports = [p.name for p in self.client.get_ports(is_midi=True, is_input=True)
                 if port_name_part.lower() in p.name.lower()]
        if not ports:
            raise LookupError(f"no JACK MIDI input port like {port_name_part!r}")
        self.client.connect(self.port, ports[0])
        return ports[0]


class Recorder(_RigClient):
    """Records two input ports into a preallocated buffer, with the JACK frame time of its
    first sample."""

    def __init__(self, seconds: float = 30.0, name: str = "steerpad-test-rec"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.rate, self.period = self.client.samplerate, self.client.blocksize
        self.ports = [self.client.inports.register(f"in_{i + 1}") for i in range(2)]
        self.buffer = np.zeros((int(seconds * self.rate), 2), np.float32)
        self.written = 0
        self.start_frame: int | None = None
        self.gaps = 0
        """Cycles whose frame time did not follow the previous one (JACK skipped us)."""
        self._next: int | None = None
        self._lock = threading.Lock()
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        if self._quiet:
            self._end()
        t = self.client.last_frame_time
        if self.start_frame is None:
            self.start_frame = t
        elif t != self._next:
            self.gaps += 1
        self._next = t + frames
        i = t - self.start_frame
        if 0 <= i and i + frames <= self.buffer.shape[0]:
            self.buffer[i:i + frames, 0] = self.ports[0].get_array()
            self.buffer[i:i + frames, 1] = self.ports[1].get_array()
            self.written = max(self.written, i + frames)

    def output_ports(self, client_name_part: str) -> list[str]:
        """The audio output ports whose name contains client_name_part, in JACK's order."""
        return [p.name for p in self.client.get_ports(is_audio=True, is_output=True)
                if client_name_part.lower() in p.name.lower()]

    def connect_from(self, client_name_part: str, exclude: set[str] = frozenset()) -> list[str]:
        """Connect the first two audio output ports whose name contains client_name_part and that
        are not in `exclude` (ports of an earlier client still registered under a like name)."""
        outs = [p for p in self.output_ports(client_name_part) if p not in exclude][:2]
        if not outs:
            raise LookupError(f"no JACK audio output ports like {client_name_part!r}")
        for src, dst in zip(outs, self.ports):
            self.client.connect(src, dst)
        return outs

    def audio_since(self, frame: int) -> np.ndarray:
        """Recorded audio from JACK frame time `frame` on (a view)."""
        i = max(0, frame - (self.start_frame or 0))
        return self.buffer[i:self.written]


class Player(_RigClient):
    """Plays audio into other clients' input ports (steerpad's live input): play() starts a
    buffer at the next JACK cycle and returns that cycle's frame time."""

    def __init__(self, channels: int = 1, name: str = "steerpad-test-play"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.rate = self.client.samplerate
        self.ports = [self.client.outports.register(f"out_{i + 1}") for i in range(channels)]
        self._pending: np.ndarray | None = None
        self._audio: np.ndarray | None = None
        self._i = 0
        self.started: list[int] = []
        """The JACK frame time each play() started at."""
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        if self._quiet:
            for port in self.ports:
                port.get_array().fill(0.0)
            self._end()
        if self._pending is not None:
            self._audio, self._i, self._pending = self._pending, 0, None
            self.started.append(self.client.last_frame_time)
        audio = self._audio
        for c, port in enumerate(self.ports):
            buf = port.get_array()
            chunk = audio[self._i:self._i + frames, c] if audio is not None else audio
            n = 0 if chunk is None else chunk.shape[0]
            if n:
                buf[:n] = chunk
            buf[n:] = 0.0
        if audio is not None:
            self._i += frames
            if self._i >= audio.shape[0]:
                self._audio = None

    def play(self, audio: np.ndarray, wait: float = 1.0) -> int:
        """Queue audio [T] or [T, C] (a mono buffer goes to every port) for the next cycle;
        returns that cycle's frame time once it started."""
        a = np.asarray(audio, np.float32)
        a = np.repeat(a[:, None], len(self.ports), axis=1) if a.ndim == 1 else a
        assert a.shape[1] == len(self.ports), (a.shape, len(self.ports))
        n = len(self.started)
        self._pending = np.ascontiguousarray(a)
        deadline = time.monotonic() + wait
        while len(self.started) == n:
            if time.monotonic() > deadline:
                raise TimeoutError("the JACK player did not run")
            time.sleep(0.001)
        return self.started[-1]

    def connect_to(self, client_name_part: str) -> list[str]:
        """Connect out_1, out_2 ... to the first audio input ports whose name contains
        client_name_part (in port order)."""
        ins = [p.name for p in self.client.get_ports(is_audio=True, is_input=True)
               if client_name_part.lower() in p.name.lower()][:len(self.ports)]
        if not ins:
            raise LookupError(f"no JACK audio input ports like {client_name_part!r}")
        for src, dst in zip(self.ports, ins):
            self.client.connect(src, dst)
        return ins


def first_onset(audio: np.ndarray, threshold: float = 1e-3) -> int | None:
    """Index of the first sample whose absolute value (either channel) exceeds threshold."""
    hot = np.flatnonzero(np.abs(audio).max(axis=1) > threshold)
    return int(hot[0]) if hot.size else None


@dataclass
class LiveRig:
    engine: Any
    stream: Any
    midi: Any
    sender: Sender
    recorder: Recorder
    player: Player | None = None
    """Plays into steerpad's input (live_rig with input_channels > 0)."""

    def hit(self, pad: int, velocity: int = 110, listen: float = 0.3) -> tuple[int, np.ndarray]:
        """Send a note-on to pad (generic map: note 36 + pad, channel 10); return the frame it
        was sent at and the audio recorded from that frame on, `listen` seconds later.
        The dummy JACK server drops MIDI when it xruns (rarely, at realtime priority): a hit
        that did not sound while the stream saw an xrun or the recorder lost a period is sent
        again, at most twice."""
        for _ in range(3):
            xruns, gaps = self.stream.xruns, self.recorder.gaps
            t = self.sender.send([0x99, 36 + pad, velocity])
            time.sleep(listen)
            audio = self.recorder.audio_since(t).copy()
            if first_onset(audio) is not None or (self.stream.xruns == xruns and self.recorder.gaps == gaps):
                break
        return t, audio

    def silent_before(self, frame: int, frames: int = 256, threshold: float = 1e-3) -> bool:
        i = frame - (self.recorder.start_frame or 0)
        return bool(np.abs(self.recorder.buffer[max(0, i - frames):i]).max(initial=0.0) < threshold)


def centroids(x: np.ndarray, rate: int, win: int = 1024, hop: int = 128) -> np.ndarray:
    """Spectral centroid (Hz) of audio [T, C] (channels averaged), one per hop: the shared
    descriptor (steerpad.realtime.descriptors) on `win`-sample frames."""
    from steerpad.realtime.descriptors import SPECTRAL_NAMES, spectral_features

    frames = np.lib.stride_tricks.sliding_window_view(x.mean(axis=1), win)[::hop]
    return spectral_features(frames, rate)[:, SPECTRAL_NAMES.index("centroid")]


@dataclass
class RingingTurn:
    """A knob turned while a note rings, as recorded on the JACK output (turn_while_ringing)."""

    plain: np.ndarray
    """The hit with the knob left alone, [T, 2] from its onset."""
    moved: np.ndarray
    """The same hit with the knob turned, [T, 2] from its onset."""
    cc: int
    """Frames from the moved hit's onset to the cycle its CC was sent in."""
    followed: bool
    """Whether the ringing voice took a fresh render (the engine's follow counter moved)."""
    rate: int
    WIN: int = 1024
    HOP: int = 128

    @cached_property
    def centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """The plain and the moved hit's centroid tracks, over their common length."""
        n = min(len(self.plain), len(self.moved))
        return (centroids(self.plain[:n], self.rate, self.WIN, self.HOP),
                centroids(self.moved[:n], self.rate, self.WIN, self.HOP))

    def aligned(self, rtol: float = 0.02) -> bool:
        """Whether the two recordings are the same hit up to the CC (no period lost or late)."""
        a, b = self.centroids
        before = (self.cc - self.WIN // 2) // self.HOP - 8
        return before > 0 and bool(np.allclose(a[:before], b[:before], rtol=rtol))

    def delay_ms(self, change: float = 0.05) -> float | None:
        """From the CC to the centre of the first analysis window (entirely after the CC's
        half-window) whose centroid differs from the plain hit's by more than `change`; None if
        it never does."""
        a, b = self.centroids
        first = (self.cc - self.WIN // 2) // self.HOP
        moved_at = next((i for i in range(max(first, 0), len(a)) if abs(b[i] - a[i]) > change * a[i]), None)
        if moved_at is None:
            return None
        return ((moved_at * self.HOP + self.WIN // 2) - self.cc) / self.rate * 1e3

    def clicks(self) -> tuple[float, float]:
        """(largest sample-to-sample step over the 100 ms after the CC, the signal's own: the
        largest step of the plain hit over that span and of the moved hit after it)."""
        span = slice(self.cc, self.cc + self.rate // 10)
        step = float(np.abs(np.diff(self.moved[span], axis=0)).max())
        after = self.moved[self.cc + self.rate // 10:]
        own = max(np.abs(np.diff(self.plain[span], axis=0)).max(), np.abs(np.diff(after, axis=0)).max())
        return step, float(own)


def turn_while_ringing(rig: LiveRig, pad: int, cc: int, value: int, centre: int = 64,
                       turn_after: float = 0.15, listen: float = 0.6, channel: int = 0) -> RingingTurn:
    """Hit `pad` (generic map: note 36 + pad on channel 10) twice, each on silence: once with the
    knobs as they are, once with CC `cc` on `channel` set to `value` `turn_after` s after the
    note-on; then the CC goes back to `centre` and its renders are waited for. A pair that is
    no measurement (the voice did not follow, or the two recordings differ before the CC) while
    the stream saw an xrun or the recorder lost a period is tried again, at most twice (the dummy
    server may drop MIDI or periods when it xruns); without one, it is what the engine did."""
    engine, rate = rig.engine, rig.recorder.rate
    if not engine.worker.wait_fresh(60):  # every pad rendered (under load the first renders take seconds)
        raise AssertionError("the engine's first renders did not finish in 60 s")

    def hit(turn: bool) -> tuple[np.ndarray, int]:
        while engine.sounding():
            time.sleep(0.01)
        t = rig.sender.send([0x99, 36 + pad, 110])
        sent = t
        if turn:
            time.sleep(turn_after)
            sent = rig.sender.send([0xB0 | channel, cc, value])
        time.sleep(listen)
        audio = rig.recorder.audio_since(t).copy()
        onset = first_onset(audio)
        if onset is None:
            raise AssertionError(f"pad {pad + 1} did not sound: {engine.played} hits played, "
                                 f"{getattr(rig.midi, 'received', '?')} MIDI messages received, recorded "
                                 f"{len(audio)} frames peaking at {float(np.abs(audio).max(initial=0)):.3g}, "
                                 f"{rig.stream.xruns} xruns, {rig.recorder.gaps} recorder gaps")
        return audio[onset:], sent - t - onset

    for _ in range(3):
        xruns, gaps = rig.stream.xruns, rig.recorder.gaps
        plain, _ = hit(False)
        followed = engine.mixer.followed
        moved, at = hit(True)
        turn = RingingTurn(plain, moved, at, engine.mixer.followed > followed, rate)
        rig.sender.send([0xB0 | channel, cc, centre])
        time.sleep(0.05)
        engine.worker.wait_fresh(10)
        if (turn.followed and turn.aligned()) or (rig.stream.xruns == xruns and rig.recorder.gaps == gaps):
            break
    return turn


@contextmanager
def live_rig(bundle, preset, port: str, seconds: float = 60.0, input_channels: int = 0,
             backend: str = "portaudio", outputs: str = "main") -> Iterator[LiveRig]:
    """steerpad live on the running JACK server, its output recorded by a Recorder, its MIDI fed
    by a Sender, and with input_channels a full-duplex stream whose input a Player feeds.
    backend "portaudio": an Engine on a PortAudio stream, MIDI on a virtual JACK port `port`
    (rtmidi); "jack": steerpad's own JACK client named `port` (jackio.JackStream, `outputs`),
    MIDI on `port`:midi_in."""
    from steerpad.realtime import jackio
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.live import LiveStream
    from steerpad.realtime.midi import MidiInput

    rec = Recorder(seconds=seconds)
    engine = midi = stream = sender = player = client = None
    try:
        if backend == "jack":
            client = jackio.open_client(port)
            engine = Engine(bundle, preset, client.samplerate, client.blocksize,
                            input_channels=input_channels)
            midi = jackio.JackMidi(client, preset.controller.cc14)
            stream = jackio.JackStream(engine, client, jackio.routing(preset, outputs), midi)
            engine.start(wait=None)
            stream.start()
            sender = Sender()
            sender.connect(f"{port}:midi_in")
            rec.connect_from(f"{port}:main")
            inputs = f"{port}:in_"
        else:
            engine = Engine(bundle, preset, rec.rate, rec.period, input_channels=input_channels)
            engine.start(wait=None)
            midi = MidiInput(None, virtual=port, api="jack").start()
            engine.attach_midi(midi)
            before = set(rec.output_ports("PortAudio"))  # a stream still closing keeps its ports a while
            stream = LiveStream(engine)
            stream.start()
            sender = Sender()
            sender.connect(port)
            rec.connect_from("PortAudio", exclude=before)
            inputs = "PortAudio:in"
        if input_channels:
            player = Player(input_channels)
            player.connect_to(inputs)
        time.sleep(0.3)
        yield LiveRig(engine, stream, midi, sender, rec, player)
    finally:
        # steerpad first (its stream stops calling Python before the client deactivates, and its
        # render worker stops), then the rig's own clients (see _RigClient)
        if stream is None and client is not None:
            client.close()
        for closing in (stream, midi, engine):
            if closing is not None:
                (closing.stop if closing is midi else closing.close)()
        # a rig client left behind still waits on the server: say so here, not as a later test's hang
        stuck = [c.client.name for c in (player, sender, rec) if c is not None and not c.close()]
        if stuck:
            raise RuntimeError(f"the rig's JACK clients {stuck} did not close")


def plain_client(seconds: float, name: str = "steerpad-bench-plain") -> int:
    """A plain JACK client (a one-channel pass-through) for `seconds`: the xruns it was told of.
    Run it in a process of its own (`python tests/rig/jackrig.py plain SECONDS`): a Python
    JACK xrun callback in a process that opens rtmidi ports can deadlock."""
    import jack

    client = jack.Client(name, no_start_server=True)
    xruns = [0]
    client.set_xrun_callback(lambda usecs: xruns.__setitem__(0, xruns[0] + 1))
    pin, pout = client.inports.register("in"), client.outports.register("out")

    def process(frames: int) -> None:
        pout.get_array()[:] = pin.get_array()

    client.set_process_callback(process)
    with client:
        time.sleep(seconds)
    return xruns[0]


if __name__ == "__main__":
    import json

    if len(sys.argv) == 3 and sys.argv[1] == "plain":
        print(json.dumps({"xruns": plain_client(float(sys.argv[2]))}))
    else:
        sys.exit("usage: python tests/rig/jackrig.py plain SECONDS")
