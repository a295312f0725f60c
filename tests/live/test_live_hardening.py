"""`steerpad live` on hostile input and a vanishing audio server (issue #13).

Options out of range get one line naming the option and its range. The block-size limit is what
pyo's master bus survives on an audio thread's stack (realtime/limits.py). A JACK server that
stops, dies or hangs under a running `steerpad live --input` ends it with rc 1 and one line,
within seconds, and Ctrl-C ends it within 2 s whatever the server does. The end-to-end tests
start a JACK server of their own (never the session's, tests/conftest.py) and run `steerpad
live` as a process against it, with the shipped bundle (models/default).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rig.jackrig import jack_running, jack_tool, jackd_command

from steerpad.offline.cli import main
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.limits import (
    BLOCKSIZE_MAX,
    BLOCKSIZE_MIN,
    SAMPLE_RATE_MAX,
    SAMPLE_RATE_MIN,
    check_audio_options,
)

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models" / "default"
PRESET = ROOT / "presets" / "default.toml"
BLOCKS = f"{BLOCKSIZE_MIN} to {BLOCKSIZE_MAX} frames"
RATES = f"{SAMPLE_RATE_MIN} to {SAMPLE_RATE_MAX} Hz"
REGISTRY = Path("/dev/shm/jack-shm-registry")
"""JACK2's table of running servers (8 slots): a server that dies without unregistering keeps its
slot until a server of the same name starts again."""
_names = itertools.count()


# ------------------------------------------------------------------ options


@pytest.mark.parametrize("option, value, expect", [
    ("--blocksize", "0", BLOCKS), ("--blocksize", "-1", BLOCKS), ("--blocksize", "15", BLOCKS),
    ("--blocksize", "8193", BLOCKS),
    ("--sample-rate", "0", RATES), ("--sample-rate", "1", RATES), ("--sample-rate", "7999", RATES),
    ("--sample-rate", "384001", RATES),
    ("--duration", "-1", "more than 0"), ("--duration", "0", "more than 0"),
    ("--duration", "nan", "more than 0"),
    ("--osc-rate", "nan", "more than 0"), ("--osc-rate", "-1", "more than 0"),
])
def test_live_refuses_an_option_out_of_range_in_one_line(option, value, expect, capsys):
    rc = main(["live", "--bundle", str(BUNDLE), "--preset", str(PRESET), "--duration", "1", option, value])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("steerpad: error: ") and err.count("\n") == 1, err
    assert f"{option} {value}" in err and expect in err


@pytest.mark.parametrize("blocksize", [65536, 100000])
def test_live_refuses_a_block_pyo_would_crash_on(blocksize):
    """These died with SIGSEGV on the audio thread (run as a process: the old crash would take
    pytest down)."""
    run = subprocess.run([sys.executable, "-m", "steerpad.offline.cli", "live", "--bundle", str(BUNDLE),
                          "--preset", str(PRESET), "--duration", "1", "--blocksize", str(blocksize)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr == f"steerpad: error: --blocksize {blocksize} is out of range for steerpad live: " \
                         f"use {BLOCKS} (128 or 256 suit live play)\n"


def test_check_audio_options_takes_the_range_and_nothing_else():
    for rate, block in [(SAMPLE_RATE_MIN, BLOCKSIZE_MIN), (SAMPLE_RATE_MAX, BLOCKSIZE_MAX), (None, 128),
                        (48000.0, 256.0), (np.int64(44100), np.int32(64))]:
        check_audio_options(rate, block)
    nan, inf = float("nan"), float("inf")
    for block in (BLOCKSIZE_MIN - 1, BLOCKSIZE_MAX + 1, 0, -1, 128.5, nan, inf, True, "128"):
        with pytest.raises(SteerpadError, match=f"--blocksize .* for steerpad render: use {BLOCKS}"):
            check_audio_options(48000, block, where="render")
    for rate in (SAMPLE_RATE_MIN - 1, SAMPLE_RATE_MAX + 1, 0, 1, -48000, 44100.5, nan, False):
        with pytest.raises(SteerpadError, match=f"--sample-rate .* for steerpad live: use {RATES}"):
            check_audio_options(rate, 128)


def test_the_largest_block_fits_a_jack_threads_stack():
    """pyo keeps a block's buffers on the calling thread's stack (~12 bytes a frame for the master
    bus). JACK runs PortAudio's callback on a 512 KiB stack: the largest block allowed must limit
    and meter there. In a process of its own: too large a block is a SIGSEGV."""
    code = f"""
import threading, numpy as np
from steerpad.realtime.masterbus import MasterBus
bus = MasterBus(48000, {BLOCKSIZE_MAX})
block = np.full(({BLOCKSIZE_MAX}, 2), 2.0, np.float32)
threading.stack_size(512 * 1024)
t = threading.Thread(target=bus.process, args=(block,)); t.start(); t.join()
assert np.abs(block).max() <= bus.ceiling and bus.gain_reduction_db > 0, (np.abs(block).max(), bus.ceiling)
bus.close()
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "ok\n", (run.returncode, run.stderr[-2000:])


@pytest.mark.parametrize("rate, blocksize", [(SAMPLE_RATE_MIN, BLOCKSIZE_MIN),
                                             (SAMPLE_RATE_MAX, BLOCKSIZE_MAX)])
def test_the_engine_plays_a_hit_at_the_corners_of_the_range(rate, blocksize):
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.presets import load_preset

    with Engine(load_bundle(BUNDLE), load_preset(PRESET), rate, blocksize) as engine:
        assert engine.start(wait=120)
        engine.note_on(0, 127)
        out = np.zeros((blocksize, 2), np.float32)
        peak = 0.0
        for _ in range(max(1, int(0.2 * rate) // blocksize)):
            engine.process(out)
            assert np.isfinite(out).all()
            peak = max(peak, float(np.abs(out).max()))
        assert engine.played == 1 and 0.01 < peak <= engine.master.ceiling


# ------------------------------------------------------------------ a JACK server that goes away


class Server:
    """A dummy JACK server of this test's own."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"steerpad-hardening-{os.getpid()}-{next(_names)}"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen(jackd_command(self.name), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not jack_running(self.name):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"jackd -n {self.name} did not start (JACK's server table may be full)")
            time.sleep(0.1)
        return proc

    def close(self) -> None:
        """Kill it if it still runs (a stopped one takes seconds to terminate), and free its slot
        in JACK's server table if it died without freeing it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if REGISTRY.exists() and f":{self.name}:".encode() in REGISTRY.read_bytes():
            again = self._start()  # takes over the dead one's slot...
            again.terminate()      # ...and frees it on a clean stop
            again.wait(10)


@pytest.fixture
def server():
    if shutil.which("jackd") is None:
        pytest.skip("no jackd: install jackd2 (./scripts/test does)")
    s = Server()
    yield s
    s.close()


def test_the_rig_sees_a_server_whose_name_jack_lsp_s_aborts_on():
    """`jack_lsp -s NAME` aborts when NAME is 24 characters long (jackrig.jack_tool), as
    "steerpad-hardening-879-0" was where pytest ran as PID 879: start_live then never saw the
    stream run. The rig names the server another way, and sees it."""
    if shutil.which("jackd") is None:
        pytest.skip("no jackd: install jackd2 (./scripts/test does)")
    name = f"steerpad-rig-{os.getpid()}"
    server = Server(name + "-" * (24 - len(name)))
    try:
        assert len(server.name) == 24
        lsp = jack_tool("jack_lsp", server=server.name)
        assert lsp.returncode == 0 and "system:playback_1" in lsp.stdout, lsp
    finally:
        server.close()


BACKENDS = {"jack": (["--connect", "system"], "steerpad:main_L\n   "),
            "portaudio": (["--audio-backend", "portaudio"], "PortAudio:out_0\n   ")}
"""How each backend is started here, and the jack_lsp -c line that shows its stream runs (its
output connected)."""


def start_live(server: Server, tmp_path: Path, *extra: str, backend: str = "jack") -> subprocess.Popen:
    """`steerpad live --input` on `server`, once its stream runs (its ports are connected)."""
    env = dict(os.environ, JACK_DEFAULT_SERVER=server.name)
    flags, running = BACKENDS[backend]
    live = subprocess.Popen(
        [sys.executable, "-m", "steerpad.offline.cli", "live", "--bundle", str(BUNDLE),
         "--preset", str(PRESET), "--input", "--kit-dir", str(tmp_path / "kits"), "--midi-api", "jack",
         "--duration", "60", *flags, *extra],
        env=env, stdin=subprocess.DEVNULL, stdout=open(tmp_path / "out.txt", "w"),
        stderr=open(tmp_path / "err.txt", "w"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.monotonic() + 90
    while True:
        done = jack_tool("jack_lsp", "-c", server=server.name)
        lsp = f"{done.stdout}{done.stderr}(rc {done.returncode})"
        if running in done.stdout:  # connected: the stream runs
            break
        if live.poll() is not None or time.monotonic() > deadline:
            still = live.poll() is None
            live.kill()
            live.wait()
            how = "still running after 90 s" if still else f"rc {live.returncode}"
            where = "running" if server.proc.poll() is None else "gone"
            pytest.fail(f"steerpad live did not start ({how}; server {server.name} {where}); "
                        f"stderr: {(tmp_path / 'err.txt').read_text()[-1500:]!r}; stdout: "
                        f"{(tmp_path / 'out.txt').read_text()[-1500:]!r}; jack_lsp -c: {lsp[-1500:]!r}")
        time.sleep(0.1)
    time.sleep(0.5)
    return live


def ended(live: subprocess.Popen, tmp_path: Path, within: float) -> tuple[int, list[str], str]:
    """Wait up to `within` s: rc, steerpad's stderr lines (libjack's own notices left out), stdout."""
    try:
        live.wait(within)
    except subprocess.TimeoutExpired:
        live.kill()
        live.wait()
        pytest.fail(f"steerpad live still ran {within} s on: {(tmp_path / 'err.txt').read_text()[-2000:]}")
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err and "Exception ignored" not in err and "Assertion" not in err, err
    return live.returncode, [line for line in err.splitlines() if "steerpad" in line], \
        (tmp_path / "out.txt").read_text()


@pytest.mark.slow
@pytest.mark.live
@pytest.mark.parametrize("backend", BACKENDS)
def test_live_exits_1_in_one_line_when_the_jack_server_stops(server, tmp_path, backend):
    live = start_live(server, tmp_path, backend=backend)  # with the status view
    server.proc.terminate()
    rc, lines, out = ended(live, tmp_path, within=5)
    assert rc == 1, lines
    assert len(lines) == 1 and lines[0].startswith("steerpad: error: audio server gone (JACK stopped"), lines
    assert "gone with the JACK server" in out  # the status view's MIDI row: its port went too
    assert "steerpad live: stopped" not in out


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_ends_live_within_2_s_after_the_server_died(server, tmp_path, backend):
    live = start_live(server, tmp_path, "--no-status", backend=backend)
    server.proc.kill()
    server.proc.wait()
    time.sleep(0.05)
    live.send_signal(signal.SIGINT)
    rc, lines, _ = ended(live, tmp_path, within=2)
    assert rc in (1, 130, -signal.SIGINT), lines
    assert len(lines) <= 1 and all(line.startswith("steerpad: error: ") for line in lines), lines


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_twice_ends_live_cleanly(server, tmp_path, backend):
    """A second Ctrl-C while live closes must not break the JACK calls it makes (it aborted the
    process in PortAudio, or raised in sounddevice's exit handler)."""
    live = start_live(server, tmp_path, "--no-status", backend=backend)
    live.send_signal(signal.SIGINT)
    time.sleep(0.05)
    live.send_signal(signal.SIGINT)
    rc, lines, _ = ended(live, tmp_path, within=2)
    assert rc in (0, 130, -signal.SIGINT), lines


@pytest.mark.slow
def test_sigterm_ends_play_as_ctrl_c_does(server, tmp_path):
    """SIGTERM (a job manager, `timeout`) stops play as a performer's Ctrl-C does: closed
    cleanly, exit 0, as the exit codes in --help say."""
    live = start_live(server, tmp_path, "--no-status")  # (the JACK client backend)
    live.send_signal(signal.SIGTERM)
    rc, lines, out = ended(live, tmp_path, within=10)
    assert rc == 0 and lines == [], lines
    assert "steerpad live: stopped" in out


@pytest.mark.slow
@pytest.mark.live
@pytest.mark.parametrize("backend", BACKENDS)
def test_live_exits_1_when_the_jack_server_hangs(server, tmp_path, backend):
    """A server that stops answering (SIGSTOP) ends play after the watchdog's 2 s of silence; the
    JACK clients that cannot close are left to the process's end."""
    live = start_live(server, tmp_path, "--no-status", backend=backend)
    server.proc.send_signal(signal.SIGSTOP)
    rc, lines, _ = ended(live, tmp_path, within=8)
    assert rc == 1, lines
    assert len(lines) == 1 and "audio server gone (JACK stopped answering)" in lines[0], lines
