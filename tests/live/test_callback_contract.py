"""The audio callback's contract, instrumented while it plays: a few seconds of blocks through
Engine.process with the shipped bundle and preset, real MIDI over JACK (notes on every pad, knob
sweeps, a program change), the render worker running, the live input monitored (mono): the
callback thread takes no lock (sys.setprofile on it: no lock or Condition call, nothing in
threading) and allocates nothing that grows with the block: at 1024-frame blocks (8 KiB of
output), tracemalloc's peak over each block in which the render worker was idle throughout stays
under half of one (numpy's reductions, the master bus meter's max, cost ~1 KiB whatever the
block size; a block-sized temporary would be 8 KiB)."""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rtmidi

from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.midi import MidiInput
from steerpad.realtime.presets import load_preset

ROOT = Path(__file__).resolve().parents[2]
RATE, BLOCK = 48000, 1024
BLOCK_BYTES = BLOCK * 2 * 4
SECONDS = 3.0
LOCKISH = {"acquire", "release", "__enter__", "__exit__", "wait", "wait_for", "notify", "notify_all"}


def _play(engine: Engine, out: rtmidi.MidiOut, stop: threading.Event) -> None:
    """A performer: notes on every pad; the first knobs swept for 0.2 s of every 1.2 s (the render
    worker then catches up and idles, so blocks can be measured alone); a program change now and
    then."""
    i = 0
    t0 = time.monotonic()
    while not stop.is_set():
        out.send_message([0x99, 36 + i % 16, 40 + i % 80])
        if (time.monotonic() - t0) % 1.2 < 0.2:
            out.send_message([0xB0, 70 + i % 4, (i * 9) % 128])
        if i % 50 == 49:
            out.send_message([0xC0, 0])
        i += 1
        time.sleep(0.004)


def _blocks(engine: Engine, seconds: float, each) -> None:
    """Run process() at the block rate for `seconds`, calling each(run_one) per block."""
    out = np.zeros((BLOCK, 2), np.float32)
    inp = np.zeros((BLOCK, 1), np.float32)
    inp[:, 0] = 0.01 * np.sin(np.arange(BLOCK) / 7)
    period = BLOCK / RATE
    t = time.perf_counter()
    for _ in range(int(seconds / period)):
        each(lambda: engine.process(out, inp))
        t += period
        time.sleep(max(0.0, t - time.perf_counter()))


def test_the_callback_takes_no_lock_and_allocates_nothing_block_sized(jack_server):
    bundle = load_bundle(ROOT / "models" / "default")
    preset = load_preset(ROOT / "presets" / "default.toml")
    name = f"sp-contract-{os.getpid()}"
    sender = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
    sender.open_virtual_port("pads")
    with Engine(bundle, preset, RATE, BLOCK, input_channels=1) as engine:
        engine.start(wait=None)
        engine.monitor = True
        midi = MidiInput(None, port=f"{name}:pads", api="jack").start()
        engine.attach_midi(midi)
        stop = threading.Event()
        player = threading.Thread(target=_play, args=(engine, sender, stop), daemon=True)
        player.start()
        try:
            calls: list[str] = []

            def profile(frame, event, arg):
                if event == "c_call" and getattr(arg, "__name__", "") in LOCKISH and \
                        "lock" in type(getattr(arg, "__self__", None)).__name__.lower():
                    calls.append(f"{type(arg.__self__).__name__}.{arg.__name__}")
                elif event == "call" and frame.f_code.co_filename.endswith("threading.py"):
                    calls.append(f"threading.{frame.f_code.co_name}")

            def locks(run):
                sys.setprofile(profile)
                try:
                    run()
                finally:
                    sys.setprofile(None)

            played = engine.played
            _blocks(engine, SECONDS, locks)
            assert engine.played - played > 100 and engine.knob_serial > 20, "MIDI did not play"
            assert calls == [], sorted(set(calls))

            peaks: list[int] = []
            worker = engine.worker.stats

            def allocations(run):
                busy = worker.busy
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                run()
                peak = tracemalloc.get_traced_memory()[1] - before
                if busy % 2 == 0 and worker.busy == busy:  # the render worker stayed idle
                    peaks.append(peak)

            tracemalloc.start()
            try:
                _blocks(engine, 2 * SECONDS, allocations)
            finally:
                tracemalloc.stop()
            assert engine.mixer.followed > 0  # ringing notes took fresh renders meanwhile
            assert len(peaks) > 30, len(peaks)
            assert max(peaks) < BLOCK_BYTES // 2, (max(peaks), np.percentile(peaks, [50, 99]))
        finally:
            stop.set()
            player.join()
            midi.stop()
            sender.delete()


@pytest.fixture(autouse=True)
def _no_profile():
    yield
    sys.setprofile(None)
