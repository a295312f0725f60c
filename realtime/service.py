"""One small base for steerpad's service threads (the capture, the key reader, the OSC feed, the
render worker, JACK MIDI's port watcher; MidiInput's reader and watcher as `Loop`s): start, stop,
join, and the errors their loops catch.

    service.start()   # runs service._run() on a daemon thread named service.thread_name
    service.stop()    # sets service._stopping, wakes the loop (_wake), joins the thread

A loop checks `self._stopping` (a threading.Event: `wait(timeout)` doubles as its sleep) and
catches what it can survive itself, in its own counters; an exception that escapes `_run` ends
the thread, never the process, and is kept in `crash` (written by the service's thread only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Service:
    thread_name = "steerpad-service"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.crash: str | None = None
        """Why the loop ended on an exception (one line), or None."""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def on_own_thread(self) -> bool:
        """Whether the caller is this service's own thread (a handler its loop calls)."""
        return self._thread is threading.current_thread()

    def start(self):
        """Start the thread (again after a stop); a running service is left as it is."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to end, wake it and wait up to `timeout` s (None: until it ends); whether
        it ended. Safe to call twice, and before start()."""
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def _main(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - a service must never take the process down
            self.crash = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]

    def _run(self) -> None:
        """The loop; return when `self._stopping` is set."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake a loop that waits on something other than `_stopping` (a Condition, a queue)."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Loop(Service):
    """A service whose loop is a function given to it, body(stopping): for an object that runs
    more than one thread (MidiInput's reader and port watcher)."""

    def __init__(self, name: str, body: Callable[[threading.Event], None]) -> None:
        super().__init__()
        self.thread_name = name
        self._body = body

    def _run(self) -> None:
        self._body(self._stopping)
