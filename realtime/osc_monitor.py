"""`steerpad-osc-monitor` (a console script of the realtime install, no torch; also
scripts/osc_monitor in a checkout): an example receiver for steerpad's visualizer feed, a
python-osc server that prints every message that arrives, one line each (seconds since start,
address, arguments).

    steerpad-osc-monitor                          # listen on 127.0.0.1:9000
    steerpad-osc-monitor --port 9001 --only /steerpad/hits /steerpad/onset
    steerpad-osc-monitor --replay bounce.jsonl --to 127.0.0.1:9000   # a bounce's frames, in time

--replay sends a `steerpad render --features` file at its own pace (frame times), so a
visualizer can follow a bounce while the WAV plays.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient


def monitor(host: str, port: int, only: list[str], count: int | None) -> None:
    start = time.monotonic()
    seen = [0]
    done = threading.Event()

    def show(address: str, *args) -> None:
        if only and not any(address.startswith(prefix) for prefix in only):
            return
        values = " ".join(f"{a:.3f}" if isinstance(a, float) else str(a) for a in args)
        print(f"{time.monotonic() - start:9.3f}  {address:<28} {values}", flush=True)
        seen[0] += 1
        if count is not None and seen[0] >= count:
            done.set()

    dispatcher = Dispatcher()
    dispatcher.set_default_handler(show)
    server = BlockingOSCUDPServer((host, port), dispatcher)
    print(f"listening on {host}:{server.server_address[1]} (Ctrl-C to stop)", flush=True)
    server.timeout = 0.1
    try:
        while not done.is_set():
            server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def replay(path: str, target: str) -> None:
    host, _, port = target.rpartition(":")
    client = SimpleUDPClient(host.strip("[]") or "127.0.0.1", int(port))
    start = time.monotonic()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            frame = json.loads(line)
            time.sleep(max(0.0, start + frame["time"] - time.monotonic()))
            for address, *args in frame["messages"]:
                client.send_message(address, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--only", nargs="*", default=[], metavar="PREFIX",
                        help="print only addresses starting with these")
    parser.add_argument("--count", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--replay", metavar="FILE.jsonl", help="send a feature file instead of listening")
    parser.add_argument("--to", default="127.0.0.1:9000", metavar="HOST:PORT", help="where --replay sends")
    args = parser.parse_args()
    if args.replay:
        replay(args.replay, args.to)
    else:
        monitor(args.host, args.port, args.only, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
