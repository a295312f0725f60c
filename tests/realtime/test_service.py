"""The service-thread base (realtime/service.py) the capture, key reader, OSC feed and render
worker share: start, stop (waking the loop), restart, and a loop that raises."""

from __future__ import annotations

import threading
import time

from steerpad.realtime.service import Service


class Ticker(Service):
    thread_name = "steerpad-test-ticker"

    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.ticks, self.fail_at = 0, fail_at

    def _run(self) -> None:
        while not self._stopping.wait(0.001):
            self.ticks += 1
            if self.ticks == self.fail_at:
                raise RuntimeError("tick\nsecond line")


class Sleeper(Service):
    """Waits on a Condition, not on _stopping: stop() must wake it through _wake()."""

    def __init__(self):
        super().__init__()
        self.cond = threading.Condition()

    def _run(self) -> None:
        with self.cond:
            while not self._stopping.is_set():
                self.cond.wait()

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


def test_start_stop_restart():
    t = Ticker()
    assert t.stop() and not t.running  # before start: nothing to stop
    assert t.start() is t and t.running
    assert any(threading.current_thread() is not th and th.name == "steerpad-test-ticker"
               for th in threading.enumerate())
    time.sleep(0.05)
    assert t.stop(timeout=5) and not t.running and t.ticks > 0
    seen = t.ticks
    with t:  # again, as a context manager
        time.sleep(0.05)
    assert t.ticks > seen and not t.running and t.crash is None


def test_a_loop_that_raises_ends_its_thread_with_the_reason_kept():
    t = Ticker(fail_at=3).start()
    deadline = time.monotonic() + 5
    while t.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not t.running and t.crash == "RuntimeError: tick"
    assert t.stop()


def test_stop_wakes_a_loop_waiting_elsewhere():
    s = Sleeper().start()
    time.sleep(0.02)
    t0 = time.monotonic()
    assert s.stop(timeout=5) and time.monotonic() - t0 < 1
