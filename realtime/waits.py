"""Waiting on an audio or MIDI server that may hang, without hanging with it.

A JACK server that stops answering (SIGSTOP, a stuck driver) makes every call into it wait
forever: PortAudio's stop and close, rtmidi's and JACK-Client's close, even the ones the
interpreter makes as it exits. So `steerpad live` closes them on helper threads it waits for a
bounded time (finishes), and once it knows a server hangs it arranges for the process to end
shortly after its one-line error whatever still waits (exit_soon).
"""

from __future__ import annotations

import faulthandler
import os
import threading
from collections.abc import Callable

CLOSE_S = 1.0
"""How long closing waits for the audio stream or the MIDI port to close before leaving it
behind (a JACK server that hangs never answers)."""
SETTLE_S = 5.0
"""How long a JACK server that still runs process cycles gets to deactivate and close a client
(jackio.quiet_close): a loaded CPU slows it past CLOSE_S, and only a server that stopped cycling
is taken to hang."""
SHUT_S = 15.0
"""How long deactivating and closing a client (the last step of jackio.quiet_close) may take on a
server that was cycling just before. JACK2 waits for the graph to switch at each change, up to
ten client timeouts (2 s with jackd's defaults), and a client whose process thread just ended
can keep the graph from finishing that long: measured 2.0 s and 4.1 s (and, once in ten runs,
past SETTLE_S: "did not close: the server hangs") when a test's MIDI sender closed beside a
playing steerpad, two busy loops per core (tests/realtime/test_capture.py). A server that hangs
is caught before this step, by its frame clock."""
EXIT_S = 2.0
"""With a JACK server that hangs, the process ends this long after play stopped (exit_soon)."""
_devnull = None


def finishes(work: Callable[[], None], timeout: float, name: str) -> bool:
    """Run work() on a daemon thread; whether it finished within `timeout` s. What hangs (a JACK
    call to a server that stopped answering) is left behind; the main thread stays free for
    Ctrl-C, and the process can still exit."""
    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


def exit_soon() -> None:
    """With a JACK server that hangs, anything closing a JACK client waits on it forever: rtmidi
    and JACK-Client do so when their objects are freed, holding the GIL, at the latest as the
    interpreter shuts down. So after the one-line error the process ends EXIT_S from now whatever
    still waits: faulthandler's watchdog (a C thread, no GIL needed) calls _exit(1), its dump
    discarded."""
    global _devnull
    _devnull = _devnull or open(os.devnull, "w")
    faulthandler.dump_traceback_later(EXIT_S, exit=True, file=_devnull)
