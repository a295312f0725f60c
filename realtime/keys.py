"""Keys in `steerpad live`'s status view: a thread reads single key presses from the terminal (in
cbreak mode while it runs, restored by stop()) and hands each to LiveKeys.

    r            arm the last-hit pad for capture (or, while armed, hit a pad to move the arm there)
    r 5, r 1 2   arm pad 5, pad 12 (the digits typed within DIGIT_S of r, or of the last digit)
    x or Esc     cancel the arm
    m            monitor the input through the master bus, on / off

Nothing happens when stdin is not a terminal (a pipe, a service): KeyReader.start() is then a no-op.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable

from steerpad.realtime.service import Service

DIGIT_S = 1.5
"""How long after `r` (or a digit) another digit still adds to the pad number."""
HELP = "r arm the last-hit pad · r N arm pad N · x cancel · m monitor on/off"


def split_keys(text: str) -> list[str]:
    """The key presses in what one read returned: characters, with escape sequences (arrow and
    function keys: ESC [ ... final, ESC O x, Alt+key) dropped; an ESC last in the read is Esc."""
    keys, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\x1b" or i + 1 == len(text):
            keys.append(ch)
            i += 1
        elif text[i + 1] == "[":  # CSI: ESC [ parameters, then a final byte @ .. ~
            j = i + 2
            while j < len(text) and not "@" <= text[j] <= "~":
                j += 1
            i = j + 1
        else:  # SS3 (ESC O x) or Alt+key (ESC x)
            i += 3 if text[i + 1] == "O" else 2
    return keys


class LiveKeys:
    """What each key does, given the engine and its Capture (None: started without --input)."""

    def __init__(self, engine, capture, clock: Callable[[], float] = time.monotonic):
        self.engine, self.capture, self.clock = engine, capture, clock
        self.help = HELP
        self.message = ""
        """Feedback on the last key that did nothing (for the status view)."""
        self._digits: str | None = None
        self._at = 0.0

    def press(self, key: str) -> None:
        now = self.clock()
        typing = self._digits is not None and now - self._at < DIGIT_S
        if key in "rxm\x1b" and self.capture is None:
            self.message = "live input is off: start steerpad live with --input to capture or monitor"
        elif key == "r":
            self.capture.arm()
            self._digits, self._at, self.message = "", now, ""
        elif key.isdigit() and typing:
            self._digits += key
            self._at = now
            n = int(self._digits)
            if 1 <= n <= len(self.capture.names):
                self.capture.arm(n - 1)
            else:
                self.message = f"no pad {n}: pads are 1-{len(self.capture.names)}"
                self._digits = None
        elif key in ("x", "\x1b"):
            self.capture.disarm()
            self._digits, self.message = None, ""
        elif key == "m":
            self.engine.monitor = not self.engine.monitor
        else:
            self._digits = None


class KeyReader(Service):
    """Reads key presses from the terminal `fd` (default stdin) on a thread and calls
    handler(key) for each character. start() puts the terminal in cbreak mode (keys arrive at
    once, unechoed; Ctrl-C still interrupts); stop() restores its previous settings."""

    def __init__(self, handler: Callable[[str], None], fd: int | None = None):
        self.handler = handler
        self.fd = fd
        """The terminal's file descriptor (None: stdin's, found by start())."""
        self.active = False
        """Whether it runs (False when fd is not a terminal)."""
        self.errors = 0
        self._saved = None
        super().__init__()

    thread_name = "steerpad-keys"

    def start(self) -> KeyReader:
        try:
            import termios
            import tty
        except ImportError:  # not a POSIX terminal (Windows): no keys
            return self
        if self.fd is None:
            try:
                self.fd = sys.stdin.fileno()
            except (AttributeError, OSError, ValueError):  # no stdin, or a stand-in (pytest's)
                return self
        if not os.isatty(self.fd):
            return self
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        self.active = True
        return super().start()

    def stop(self) -> None:
        super().stop()
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
        self.active = False

    def _run(self) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 64)
            except OSError:
                return  # the terminal went away
            if not data:
                return
            for key in split_keys(data.decode("utf-8", errors="ignore")):
                try:
                    self.handler(key)
                except Exception:  # noqa: BLE001 - a key must never end the reader
                    self.errors += 1
