"""The visualizer feed: feature frames (realtime/features.py) sent over OSC (UDP) and/or written
as JSON lines.

    audio callback ──writes──► engine.out_ring ──read by──► LiveFeed thread ──► OscSender ──► UDP
    bounce ──each rendered block──► BounceFeed ──► FeatureFile (JSON lines) and/or OscSender

The audio callback does nothing for the feed: it already writes every output block to the
engine's lock-free ring. The LiveFeed thread reads the ring on its own clock, makes frames on the
audio's timeline and sends them; a visualizer that is down, slow or unreachable costs only
counted errors (a non-blocking socket, a host name resolved in this thread, never raised).
In a bounce the frames are made from the rendered blocks themselves, on the bounce's timeline,
so the same bounce writes the same file.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
from pathlib import Path

from pythonosc.osc_message_builder import OscMessageBuilder

from steerpad.realtime.errors import RuntimeFailure, SteerpadError
from steerpad.realtime.features import FeatureStream, Frame
from steerpad.realtime.outputs import claim_output, os_reason, replace_claimed
from steerpad.realtime.service import Service

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
DEFAULT_RATE = 60.0
MAX_RATE = 240.0
"""Frames per second at most (a display refreshes at most this often; the meter needs 64 samples)."""
RESOLVE_RETRY_S = 2.0
"""After a failed host lookup, wait this long before trying again."""
POLLS_PER_FRAME = 2
"""The live feed reads the ring this many times per frame: a frame goes out at most half a frame
after its last sample was played (4 polls a frame cost ~20 % more CPU: bench_live)."""
MAX_BURST = 4
"""A live feed more than this many frames behind (a stall) sends only the newest frame, carrying
the skipped frames' onsets and hits."""


def parse_target(text: str) -> tuple[str, int]:
    """'HOST:PORT', 'HOST', 'PORT' or '[IPV6]:PORT' -> (host, port); defaults 127.0.0.1 and 9000."""
    t = text.strip()
    host, port = DEFAULT_HOST, str(DEFAULT_PORT)
    if t.startswith("[") and "]" in t:  # [::1] or [::1]:9000
        host, _, rest = t[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (port if not rest else "")
    elif t.isdigit():
        port = t
    elif t.count(":") <= 1:
        host, colon, given = t.partition(":")
        port = given if colon else port
    else:
        host = ""
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise SteerpadError(f"--osc {text!r}: not a HOST:PORT; give e.g. 127.0.0.1:{DEFAULT_PORT}, "
                            f"myhost:9001 or [::1]:{DEFAULT_PORT} (port 1-65535)")
    return host, int(port)


def check_rate(rate: float) -> float:
    if not (math.isfinite(rate) and 0 < rate <= MAX_RATE):
        raise SteerpadError(f"--osc-rate {rate}: must be more than 0 and at most {MAX_RATE:g} frames "
                            f"per second (visualizers expect {DEFAULT_RATE:g})")
    return float(rate)


def encode(address: str, args: list) -> bytes:
    """One OSC message (python-osc): ints as i, floats as f."""
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a, "i" if isinstance(a, int) else "f")
    return builder.build().dgram


class OscSender:
    """Sends OSC messages to host:port over UDP from one thread; never blocks, never raises.

    The host name is looked up at the first send (again every RESOLVE_RETRY_S while it fails),
    the socket is non-blocking (a full send buffer drops the message), and every message that
    could not go is counted in `errors`, the reason in `last_error`."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, int(port)
        self.sent = 0
        self.errors = 0
        self.last_error = ""
        self._sock: socket.socket | None = None
        self._addr = None
        self._retry_at = 0.0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def _open(self) -> bool:
        if self._sock is not None:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)  # x.x.x.255 works too
        except (OSError, UnicodeError) as e:
            self._retry_at = now + RESOLVE_RETRY_S
            self.last_error = f"{self}: cannot resolve or open ({e})"
            return False
        self._sock, self._addr = sock, addr
        return True

    def send(self, messages: list[tuple[str, list]]) -> None:
        if not self._open():
            self.errors += len(messages)
            return
        for address, args in messages:
            try:
                self._sock.sendto(encode(address, args), self._addr)
                self.sent += 1
            except OSError as e:  # buffer full, network down, refused: drop it
                self.errors += 1
                self.last_error = f"{self}: {type(e).__name__}: {e}"

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def create_beside(path: Path, option: str, kind: str) -> tuple[int, Path]:
    """Create a new, empty temporary file next to `path` (in the same folder, so os.replace can
    move it over `path`), never opening anything that exists: (a write-only descriptor, its
    path). SteerpadError, one line naming `option`, when `path` exists and is not a steerpad
    output of `kind` (realtime/outputs.py), or when the place is not writable."""
    path = Path(path)
    claim_output(path, kind, option=option, force=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name[:100]}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise SteerpadError(f"{option} {path}: cannot write in {path.parent} ({os_reason(e)}); "
                                "choose a writable place") from None
    raise SteerpadError(f"{option} {path}: cannot create a temporary file in {path.parent}; "
                        "choose another place")


class FeatureFile:
    """Frames as JSON lines ({"frame", "time", "messages": [[address, args...], ...]}), written
    to a temporary file next to PATH and moved to PATH by close(); abort() removes it. A write
    the system refuses (a full disk) is one line (RuntimeFailure) and leaves nothing behind."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fd, self._tmp = create_beside(self.path, "--features", "features")
        try:
            self._file = open(fd, "w", encoding="utf-8")
        except BaseException:  # (a SIGTERM raised here too: the file is ours to remove)
            os.close(fd)
            self._tmp.unlink(missing_ok=True)
            raise
        self.frames = 0

    def _failed(self, e: OSError) -> RuntimeFailure:
        self.abort()
        return RuntimeFailure(f"--features {self.path}: writing it failed ({os_reason(e)}); free some "
                              "space or choose another place; nothing was written")

    def write(self, frame: Frame) -> None:
        try:
            self._file.write(json.dumps(frame.to_json(), separators=(",", ":")) + "\n")
        except OSError as e:
            raise self._failed(e) from None
        self.frames += 1

    def close(self) -> None:
        try:
            self._file.close()
            replace_claimed(self._tmp, self.path, "features", "--features")
        except OSError as e:
            raise self._failed(e) from None

    def abort(self) -> None:
        try:
            self._file.close()
        except OSError:  # the buffered rest could not be written: it is being thrown away
            pass
        self._tmp.unlink(missing_ok=True)


class BounceFeed:
    """The feature stream of a bounce: `bounce(..., on_block=feed)` calls it after each rendered
    block; frames go to `file` and/or `sender` as they complete. With `realtime` (render --osc's
    default), each frame is sent no sooner than its time in the audio after the first one, so a
    visualizer sees the bounce at the pace it plays (the render waits for it); the file is
    written as fast as the render goes either way."""

    def __init__(self, rate: float = DEFAULT_RATE, file: FeatureFile | None = None,
                 sender: OscSender | None = None, realtime: bool = False):
        self.rate, self.file, self.sender = check_rate(rate), file, sender
        self.realtime = realtime
        self.frames = 0
        self._stream: FeatureStream | None = None
        self._start: float | None = None
        """perf_counter() at audio time 0 (set by the first frame sent in real time)."""

    def __call__(self, engine, block) -> None:
        if self._stream is None:
            self._stream = FeatureStream(engine, self.rate, past_hits=True)  # the first block's too
        for frame in self._stream.push(block):
            if self.file is not None:
                self.file.write(frame)
            if self.sender is not None:
                if self.realtime:
                    if self._start is None:
                        self._start = time.perf_counter() - frame.time
                    wait = self._start + frame.time - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                self.sender.send(frame.messages())
            self.frames += 1


class LiveFeed(Service):
    """Sends the live engine's feature frames to `sender` from a thread of its own.

    Counters (read from any thread): `frames` sent, `skipped` frames folded into a later one after
    a stall, `lost` output samples the ring overwrote before the feed read them, `errors` in the
    feed itself (the sender counts its own), `cpu_s` the thread's CPU time."""

    def __init__(self, engine, sender: OscSender, rate: float = DEFAULT_RATE):
        self.engine, self.sender, self.rate = engine, sender, check_rate(rate)
        self.frames = self.skipped = self.lost = self.errors = 0
        self.last_error = ""
        self.cpu_s = 0.0
        self._position = 0
        super().__init__()

    thread_name = "steerpad-oscfeed"

    def start(self) -> LiveFeed:
        if not self.running:
            self._position = self.engine.out_ring.written  # from now on: nothing before start() is sent
        return super().start()

    def stop(self) -> None:
        super().stop()
        self.sender.close()

    def summary(self) -> str:
        s = self.sender
        return (f"{s} · {self.rate:g} Hz · {self.frames} frames, {s.sent} messages"
                + (f" · {s.errors} not sent ({s.last_error})" if s.errors else "")
                + (f" · {self.errors} feed errors ({self.last_error})" if self.errors else ""))

    def _run(self) -> None:
        position = self._position
        ring = self.engine.out_ring
        stream = FeatureStream(self.engine, self.rate, yield_gil=True)
        poll = 1.0 / (self.rate * POLLS_PER_FRAME)
        cpu0 = time.thread_time()
        wake = time.monotonic()
        while True:
            wake += poll
            delay = wake - time.monotonic()
            if delay < -MAX_BURST * poll * POLLS_PER_FRAME:
                wake = time.monotonic()  # stalled: start the clock again, do not race to catch up
            if self._stopping.wait(max(0.0, delay)):
                return
            try:
                block, position, lost = ring.read(position)
                self.lost += lost
                frames = stream.push(block)
                if frames:
                    time.sleep(0)  # let a waiting audio callback have the GIL (see FeatureStream)
                if len(frames) > MAX_BURST:
                    for older in reversed(frames[:-1]):  # newest first: hits stay in order
                        frames[-1].absorb(older)
                    self.skipped += len(frames) - 1
                    frames = frames[-1:]
                for frame in frames:
                    self.sender.send(frame.messages())
                    self.frames += 1
            except Exception as e:  # noqa: BLE001 - the feed must never stop the instrument
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
            self.cpu_s = time.thread_time() - cpu0
