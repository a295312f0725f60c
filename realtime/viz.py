"""`steerpad viz`: an example visualizer a VJ can run, a self-contained HTML page served on
127.0.0.1 that draws the feed live: level, bands, centroid, pad hits and knob positions.

    steerpad live --osc ──OSC/UDP──► steerpad viz (python-osc) ──┐
    steerpad live --viz (directly, no OSC) ──────────────────────┼─► VizState ──GET /state──► viz.html
    steerpad viz --features bounce.jsonl (a bounce, in time) ────┘                           (canvas)

The page (realtime/viz.html, no external script or font) asks for /state about 30 times a
second and draws it on a canvas; /state is the newest value of every feed address, the hits of
the last HIT_S seconds with their age, and the knobs. Only 127.0.0.1 is served: the page is a
monitor for the performer's own machine (put a real visualizer on the OSC feed for a show).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from steerpad.realtime.errors import SteerpadError

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
HIT_S = 2.0
"""How long a hit stays on the page (it fades over this time)."""


class VizState:
    """The newest value of each feed address, as the page draws it. One writer (the OSC server
    thread, the live feed thread or the replay thread: apply()); HTTP threads read snapshot()
    under the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, list] = {}
        self._knobs: dict[str, float] = {}
        self._hits: deque[tuple[float, int, float]] = deque(maxlen=256)
        self._onset = -1e9
        self.messages = 0
        self.source = "waiting for the feed"

    def apply(self, address: str, args: list) -> None:
        now = time.monotonic()
        with self._lock:
            self.messages += 1
            if address.startswith("/steerpad/knob/"):
                if args:
                    self._knobs[address[len("/steerpad/knob/"):]] = float(args[0])
            elif address.startswith("/steerpad/pad/"):
                return  # the same hit as /steerpad/pad
            elif address == "/steerpad/pad" and len(args) >= 2:
                self._hits.append((now, int(args[0]), float(args[1])))
            elif address == "/steerpad/onset":
                if args and args[0]:
                    self._onset = now
            elif address.startswith("/steerpad/"):
                self._values[address[len("/steerpad/"):]] = list(args)

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self._lock:
            hits = [{"pad": p, "velocity": v, "age": now - t} for t, p, v in self._hits if now - t < HIT_S]
            return {"values": dict(self._values), "knobs": dict(self._knobs), "hits": hits,
                    "onset_age": now - self._onset, "messages": self.messages, "source": self.source}


class VizSink:
    """Hands the live feed's frames straight to a VizState: a sender for oscfeed.LiveFeed."""

    def __init__(self, state: VizState, url: str):
        self.state, self.url = state, url
        self.sent = self.errors = 0
        self.last_error = ""

    def __str__(self) -> str:
        return f"viz {self.url}"

    def send(self, messages: list[tuple[str, list]]) -> None:
        for address, args in messages:
            self.state.apply(address, args)
            self.sent += 1

    def close(self) -> None:
        pass


class Tee:
    """Several senders as one (the OSC target and the page)."""

    def __init__(self, *senders):
        self.senders = senders
        self.last_error = ""

    def __str__(self) -> str:
        return " + ".join(str(s) for s in self.senders)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.senders)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.senders)

    def send(self, messages: list[tuple[str, list]]) -> None:
        for s in self.senders:
            s.send(messages)
        self.last_error = next((s.last_error for s in self.senders if s.errors), "")

    def close(self) -> None:
        for s in self.senders:
            s.close()


def page() -> bytes:
    return resources.files("steerpad.realtime").joinpath("viz.html").read_bytes()


class VizServer:
    """The page and /state over HTTP on 127.0.0.1:`port` (0: any free port), on a thread."""

    def __init__(self, state: VizState, port: int = DEFAULT_PORT, option: str = "--viz-port"):
        if not 0 <= port <= 65535:
            raise SteerpadError(f"{option} {port}: use a port number 0-65535")
        html = page()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                if path in ("/", "/index.html"):
                    body, kind = html, "text/html; charset=utf-8"
                elif path == "/state":
                    body, kind = json.dumps(state.snapshot()).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # no line per request
                pass

        try:
            self.httpd = ThreadingHTTPServer((HOST, port), Handler)
        except OSError as e:
            raise SteerpadError(f"{option} {port}: cannot serve on {HOST}:{port} ({e.strerror or e}); "
                                "choose another port") from None
        self.httpd.daemon_threads = True
        self.url = f"http://{HOST}:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="steerpad-viz-http", daemon=True)

    def start(self) -> VizServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> VizServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def replay(state: VizState, path: Path, stop: threading.Event, loop: bool = False) -> None:
    """A `steerpad render --features` file into `state` at its own pace (frame times)."""
    while True:
        start = time.monotonic()
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                frame = json.loads(line)
                if stop.wait(max(0.0, start + float(frame["time"]) - time.monotonic())):
                    return
                for address, *args in frame["messages"]:
                    state.apply(address, args)
        if not loop:
            return


def check_features(path: Path) -> None:
    from steerpad.realtime.outputs import kind_of

    if kind_of(path) != "features":
        raise SteerpadError(f"--features {path}: not a steerpad feature file (steerpad render --features "
                            "writes one); give one")


# ---------------------------------------------------------------- `steerpad viz`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--viz-port", type=int, default=DEFAULT_PORT,
                        help=f"serve the page on {HOST}:PORT (default %(default)s; 0: any free port)")
    parser.add_argument("--osc-port", type=int, default=9000,
                        help="listen for the OSC feed on 127.0.0.1:PORT (default %(default)s, as "
                             "`steerpad live --osc` sends)")
    parser.add_argument("--features", type=Path, default=None,
                        help="draw a bounce's feature file (steerpad render --features) in time, no OSC")
    parser.add_argument("--loop", action="store_true", help="with --features: play it again and again")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.osc_port <= 65535:
        raise SteerpadError(f"--osc-port {args.osc_port}: use a port number 0-65535")
    if args.duration is not None and not args.duration > 0:
        raise SteerpadError(f"--duration {args.duration:g}: must be more than 0 seconds")
    state = VizState()
    stop = threading.Event()
    osc = None
    if args.features is not None:
        check_features(args.features)
        state.source = f"replaying {args.features.name}"
        feeder = threading.Thread(target=replay, args=(state, args.features, stop, args.loop),
                                  name="steerpad-viz-replay", daemon=True)
    else:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *a: state.apply(address, list(a)))
        try:
            osc = BlockingOSCUDPServer((HOST, args.osc_port), dispatcher)
        except OSError as e:
            raise SteerpadError(f"--osc-port {args.osc_port}: cannot listen on {HOST}:{args.osc_port} "
                                f"({e.strerror or e}); choose another port") from None
        osc.timeout = 0.1
        state.source = f"OSC {HOST}:{osc.server_address[1]}"

        def listen() -> None:
            while not stop.is_set():
                osc.handle_request()

        feeder = threading.Thread(target=listen, name="steerpad-viz-osc", daemon=True)
    with VizServer(state, args.viz_port) as server:
        feeder.start()
        print(f"steerpad viz: open {server.url} in a browser · fed by {state.source} · Ctrl-C to stop",
              flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            feeder.join(1.0)
            if osc is not None:
                osc.server_close()
    print(f"steerpad viz: stopped ({state.messages} messages)")
    return 0
