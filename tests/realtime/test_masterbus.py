"""The master bus: the ceiling holds (steady tones, drum transients, single-sample spikes), quiet
signals pass unchanged after the measured lookahead delay, short blocks, one server at a time,
close and reopen, process() on another thread, and no allocation per block."""

from __future__ import annotations

import threading
import tracemalloc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest

from steerpad.realtime.masterbus import MasterBus

CEILING = 10 ** (-0.3 / 20)


@pytest.fixture
def bus() -> Iterator[MasterBus]:
    b = MasterBus(48000, 128)
    yield b
    b.close()


def run(bus: MasterBus, x: np.ndarray) -> np.ndarray:
    """Process a copy of x ([T, C]) block by block, as the callback would."""
    y = np.ascontiguousarray(x, np.float32).copy()
    for start in range(0, len(y), bus.blocksize):
        bus.process(y[start:start + bus.blocksize])
    return y


def drums(rng: np.random.Generator, seconds: float, sr: int = 48000, level: float = 4.0) -> np.ndarray:
    """Drum-like hits at +12 dBFS: a full-scale first sample, then decaying noise, every 50 ms."""
    x = np.zeros((int(seconds * sr), 2), np.float32)
    hit = sr // 20
    for k, start in enumerate(range(0, len(x) - hit, hit)):
        env = level * np.exp(-np.arange(hit) / (0.002 * sr * (1 + k % 4)))
        x[start:start + hit] = rng.uniform(-1, 1, (hit, 2)) * env[:, None]
        x[start] = (level, -level)
    return x


@pytest.mark.parametrize("sr", [44100, 48000])
def test_latency_is_the_lookahead_and_well_under_a_block(sr: int) -> None:
    with MasterBus(sr, 128) as bus:
        assert bus.latency == round(0.0005 * sr) < bus.blocksize // 2
        x = np.zeros((384, 2), np.float32)
        x[5] = (0.1, -0.05)
        y = run(bus, x)
        hits = np.flatnonzero(np.abs(y).sum(axis=1) > 1e-6)
        assert hits.tolist() == [5 + bus.latency]
        np.testing.assert_allclose(y[5 + bus.latency], (0.1, -0.05), rtol=1e-5)


def test_quiet_signal_passes_unchanged(bus: MasterBus) -> None:
    x = (0.1 * np.random.default_rng(0).standard_normal((128 * 40, 2))).astype(np.float32)
    y = run(bus, x)
    d = bus.latency
    np.testing.assert_allclose(y[d:], x[:-d], rtol=0, atol=1e-5)
    assert not y[:d].any()
    assert bus.gain_reduction_db < 1e-4 and bus.clipped == 0
    assert -12 < bus.peak_db < 0


def test_loud_steady_tone_is_limited_under_the_ceiling(bus: MasterBus) -> None:
    t = np.arange(48000) / 48000
    tone = 4.0 * np.sin(2 * np.pi * 100 * t)                  # +12 dBFS
    y = run(bus, np.stack([tone, 0.5 * tone], axis=1))
    assert np.abs(y).max() <= CEILING
    body = np.abs(y[4800:, 0]).max()
    assert 10 ** (-1.5 / 20) < body < 10 ** (-1.0 / 20)       # held ~1 dB under the ceiling
    assert bus.clipped == 0                                   # by the limiter, not the Clip
    assert 12.5 < bus.gain_reduction_db < 14.0
    np.testing.assert_allclose(y[4800:, 1], 0.5 * y[4800:, 0], atol=1e-6)  # linked channels


def test_drum_transients_never_exceed_the_ceiling(bus: MasterBus) -> None:
    y = run(bus, drums(np.random.default_rng(1), 1.0))
    assert np.abs(y).max() <= CEILING
    assert np.abs(y).max() > 10 ** (-2 / 20)                 # limited, not squashed
    assert bus.clipped == 0                                   # the lookahead caught every onset


@pytest.mark.parametrize(("sr", "blocksize"), [(44100, 256), (96000, 256), (48000, 16)])
def test_single_sample_spikes_hold_the_ceiling(sr: int, blocksize: int) -> None:
    x = np.zeros((sr // 10, 2), np.float32)
    x[1000::1500] = (8.0, -8.0)                               # +18 dB, from silence
    with MasterBus(sr, blocksize) as bus:
        assert bus.latency == min(round(0.0005 * sr), blocksize // 2)
        y = run(bus, x)
        assert bus.clipped == 0
    assert np.abs(y).max() <= CEILING


def test_meters_hold_then_fall(bus: MasterBus) -> None:
    run(bus, np.full((1280, 2), 2.0, np.float32))
    assert bus.gain_reduction_db > 5.0
    high = bus.gain_reduction_db
    run(bus, np.zeros((48000, 2), np.float32))
    assert 0.0 <= bus.gain_reduction_db < 1e-4 < high
    assert bus.peak_db < -15.0


def test_short_last_block_is_padded(bus: MasterBus) -> None:
    x = (0.2 * np.random.default_rng(2).standard_normal((128 + 50, 2))).astype(np.float32)
    y = x.copy()
    bus.process(y[:128])
    bus.process(y[128:])                                      # the render's last 50 frames
    d = bus.latency
    np.testing.assert_allclose(y[d:], x[:-d], atol=1e-5)


def test_limiter_off_is_only_the_clip() -> None:
    with MasterBus(48000, 128, limiter=False, ceiling_db=-6.0) as bus:
        assert bus.latency == 0
        x = np.linspace(-1, 1, 256, dtype=np.float32)[:, None].repeat(2, axis=1)
        y = run(bus, x)
    c = 10 ** (-6 / 20)
    assert np.abs(y).max() <= c
    np.testing.assert_allclose(y, np.clip(x, -c, c), atol=2e-4)


def test_one_bus_at_a_time_and_reopen_after_close() -> None:
    first = MasterBus(48000, 128)
    with pytest.raises(RuntimeError, match="already open"):
        MasterBus(48000, 128)
    server = weakref.ref(first._server)
    first.close()
    assert server() is None                                   # pyo's server is freed, not leaked
    first.close()                                             # idempotent
    block = np.ones((128, 2), np.float32)
    first.process(block)
    assert not block.any() and first.dropped == 1            # closed: silence, counted
    for _ in range(3):
        with MasterBus(44100, 64) as again:
            y = run(again, np.full((640, 2), 0.25, np.float32))
            np.testing.assert_allclose(y[again.latency:], 0.25, atol=1e-5)


def test_process_on_another_thread_matches_the_booting_thread() -> None:
    x = drums(np.random.default_rng(3), 0.3)
    with MasterBus(48000, 128) as bus:
        here = run(bus, x)
    result: list[np.ndarray] = []
    with MasterBus(48000, 128) as bus:                        # booted on this thread ...
        worker = threading.Thread(target=lambda: result.append(run(bus, x)))   # ... run on that one
        worker.start()
        worker.join()
    np.testing.assert_array_equal(result[0], here)


def test_process_does_not_allocate() -> None:
    frames = 1024                    # a block-sized temporary would be 8 KiB
    block = np.zeros((frames, 2), np.float32)
    tone = (2.0 * np.sin(np.arange(frames) / 5.0)).astype(np.float32)[:, None].repeat(2, axis=1)
    with MasterBus(48000, frames) as bus:
        bus.process(block)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(1000):
                np.copyto(block, tone)
                bus.process(block)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert peak < 4096, peak


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ceiling_db"):
        MasterBus(48000, 128, ceiling_db=3.0)
    with pytest.raises(ValueError, match="blocksize"):
        MasterBus(48000, 8)
    with MasterBus(48000, 128) as bus, pytest.raises(ValueError, match=r"\[frames, 2\]"):
        bus.process(np.zeros((128, 1), np.float32))
