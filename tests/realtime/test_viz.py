"""The visualizer page (`steerpad viz`, `steerpad live --viz`) in a real headless browser: Debian's
chromium loads the page from 127.0.0.1, runs its script against /state, and a screenshot is read
back pixel by pixel. The page lights a pad in orange by the velocity of its latest hit
(realtime/viz.html): the test finds which pad cells are lit, so it fails if hits are not drawn,
or drawn on the wrong pad."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import mido
import numpy as np
import pytest
from PIL import Image
from pythonosc.udp_client import SimpleUDPClient
from rig.jackrig import Sender

from steerpad.offline.cli import main
from tests.chainbundle import write_preset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: install it (./scripts/test does)")
pytestmark = pytest.mark.slow


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(url: str, out: Path) -> np.ndarray:
    """The page as headless chromium draws it (960 x 540), RGB [H, W, 3]. The virtual time budget
    lets its script poll /state for ~1.5 s of page time."""
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=960,540", "--virtual-time-budget=1500", f"--screenshot={out}", url],
                         capture_output=True, text=True, timeout=60)
    assert out.is_file(), run.stderr[-2000:]
    return np.asarray(Image.open(out).convert("RGB"))


def lit_pads(image: np.ndarray) -> set[int]:
    """The pads whose cell is orange (viz.html: 4 x 4 cells of 92 px from (20, 60), pad 1 at the
    bottom left), judged on the middle of each cell (its number label stays clear)."""
    lit = set()
    for pad in range(1, 17):
        col, row = (pad - 1) % 4, (pad - 1) // 4
        x, y = 20 + col * 100, 60 + (3 - row) * 100
        r, g, b = image[y + 30:y + 80, x + 30:x + 80].reshape(-1, 3).mean(axis=0)
        if r > 120 and r > 1.4 * g and b < 0.5 * g:
            lit.add(pad)
    return lit


def start_viz(*flags: str) -> tuple[subprocess.Popen, str]:
    viz = subprocess.Popen([sys.executable, "-m", "steerpad.offline.cli", "viz", "--viz-port", "0", *flags],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = viz.stdout.readline()
    found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
    assert found, (line, viz.stderr.read() if viz.poll() is not None else "")
    return viz, found.group(1)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err, err
    return out


@needs_chromium
def test_the_page_draws_the_pads_hit_and_nothing_without_hits(tmp_path):
    osc_port = free_port(socket.SOCK_DGRAM)
    viz, url = start_viz("--osc-port", str(osc_port))
    try:
        quiet = screenshot(url, tmp_path / "quiet.png")
        assert lit_pads(quiet) == set()  # the control: nothing sent, nothing lit
        sending = threading.Event()
        sending.set()

        def perform() -> None:  # as steerpad live --osc sends: hits on pads 6 and 11, a level
            client = SimpleUDPClient("127.0.0.1", osc_port)
            while sending.is_set():
                for pad in (6, 11):
                    client.send_message("/steerpad/pad", [pad, 1.0])
                    client.send_message(f"/steerpad/pad/{pad}", [1.0])
                client.send_message("/steerpad/hits", [6, 11])
                client.send_message("/steerpad/level", [0.6, 0.9])
                client.send_message("/steerpad/knob/brighter", [0.75])
                time.sleep(0.05)

        sender = threading.Thread(target=perform)
        sender.start()
        try:
            time.sleep(0.3)
            hit = screenshot(url, tmp_path / "hits.png")
        finally:
            sending.clear()
            sender.join()
        assert lit_pads(hit) == {6, 11}
        level = hit[60 + 392 - 100:60 + 392 - 20, 455:480].reshape(-1, 3).mean(axis=0)
        assert level[1] > 150 and level[0] < 100  # the level bar (green) is up
        knob = hit[132:142, 800:850].reshape(-1, 3).mean(axis=0)
        assert knob[2] > 120 and knob[0] > 100  # brighter's knob bar (purple) is drawn
    finally:
        stop(viz)


@needs_chromium
def test_live_viz_serves_the_page_fed_directly(jack_server, chain, tmp_path):
    """`steerpad live --viz`: no OSC, the live feed hands its frames to the page; a note into
    steerpad:midi_in lights its pad."""
    preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
    port = free_port()
    live = subprocess.Popen(
        [sys.executable, "-m", "steerpad.offline.cli", "live", "--bundle", str(chain / "bundle"), "--preset",
         str(preset), "--client-name", "steerpad-viz", "--viz", str(port), "--no-status", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = Sender("steerpad-test-viz-midi")
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                sender.connect("steerpad-viz:midi_in")
                break
            except LookupError:
                assert live.poll() is None and time.monotonic() < deadline, live.communicate()
                time.sleep(0.1)
        time.sleep(0.3)
        playing = threading.Event()
        playing.set()

        def perform() -> None:  # pad 3 (the snare), again and again
            while playing.is_set():
                sender.send([0x99, 36 + 2, 120])
                time.sleep(0.25)

        t = threading.Thread(target=perform)
        t.start()
        try:
            state = {}
            # a hit is marked in the frame of its note-on; the level it raises can come a frame later
            while not (state.get("hits") and state["values"].get("level", [0])[0] > 0):
                assert time.monotonic() < deadline, state
                state = json.loads(urllib.request.urlopen(url + "state", timeout=5).read())
                time.sleep(0.05)
            assert {h["pad"] for h in state["hits"]} == {3}
            assert set(state["knobs"]) == {"brighter", "louder"}
            assert lit_pads(screenshot(url, tmp_path / "live.png")) == {3}
        finally:
            playing.clear()
            t.join()
    finally:
        sender.close()
        out = stop(live)
    assert f"visualizer: open {url}" in out and "viz " + url in out  # the closing osc: summary names it


def test_viz_replays_a_bounce_feature_file(chain, tmp_path, capsys):
    """--features: a bounce's frames reach the page in time, without OSC."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track += [mido.Message("note_on", channel=9, note=36 + 3, velocity=100, time=0),
              mido.Message("note_off", channel=9, note=36 + 3, velocity=0, time=240)]
    mid.save(str(tmp_path / "one.mid"))
    preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
    features = tmp_path / "one.jsonl"
    assert main(["render", str(tmp_path / "one.mid"), "--bundle", str(chain / "bundle"), "--preset",
                 str(preset), "--out", str(tmp_path / "one.wav"), "--features", str(features)]) == 0
    viz, url = start_viz("--features", str(tmp_path / "one.jsonl"))
    try:
        deadline = time.monotonic() + 10
        state = {}
        while not state.get("hits"):
            assert time.monotonic() < deadline, state
            state = json.loads(urllib.request.urlopen(url + "state", timeout=5).read())
            time.sleep(0.02)
        assert [h["pad"] for h in state["hits"]] == [4] and state["source"] == "replaying one.jsonl"
    finally:
        stop(viz)
    assert main(["viz", "--features", str(tmp_path / "one.wav")]) == 2
    assert "not a steerpad feature file" in capsys.readouterr().err


def test_a_taken_port_is_refused_in_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["viz", "--viz-port", str(port), "--duration", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--viz-port {port}: cannot serve on 127.0.0.1:{port}" in err
    assert main(["viz", "--viz-port", "70000"]) == 2
    assert "--viz-port 70000: use a port number 0-65535" in capsys.readouterr().err
