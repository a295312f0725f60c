"""Read steerpad's visualizer feed: a python-osc server that draws a text meter per frame.

    steerpad live --osc                      # (or: steerpad render perf.mid --out x.wav --osc)
    python examples/osc_receiver.py          # listens on 127.0.0.1:9000

Every frame brings /steerpad/level, /steerpad/bands, /steerpad/centroid and the knobs; a hit
brings /steerpad/pad (pad, velocity) and /steerpad/pad/<n>. The README's "Visualizer feed"
table lists every address.
"""

import argparse
import time

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--port", type=int, default=9000)
ap.add_argument("--hits", type=int, default=None, help="stop after this many hits")
ap.add_argument("--seconds", type=float, default=None, help="stop after this long")
args = ap.parse_args()

state = {"level": 0.0, "centroid": 0.0, "hits": 0}


def level(address, rms, peak):
    state["level"] = rms


def centroid(address, value):
    state["centroid"] = value


def bands(address, *values):  # a frame sends level, centroid, then bands: draw the frame
    bars = " ".join("▁▂▃▄▅▆▇█"[min(7, int(b * 8))] for b in values)
    print(f"level {'#' * int(state['level'] * 40):<40} bands {bars}  centroid {state['centroid']:.2f}",
          flush=True)


def pad(address, number, velocity):
    state["hits"] += 1
    print(f"hit: pad {number}, velocity {velocity:.2f}", flush=True)


dispatcher = Dispatcher()
dispatcher.map("/steerpad/level", level)
dispatcher.map("/steerpad/bands", bands)
dispatcher.map("/steerpad/centroid", centroid)
dispatcher.map("/steerpad/pad", pad)  # (/steerpad/pad/<n> carries the same hit)
server = BlockingOSCUDPServer(("127.0.0.1", args.port), dispatcher)
server.timeout = 0.1
print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)  # (--port 0: a free one)
deadline = None if args.seconds is None else time.monotonic() + args.seconds
while (deadline is None or time.monotonic() < deadline) and (args.hits is None or state["hits"] < args.hits):
    server.handle_request()
server.server_close()
