"""`steerpad live` raises its scheduling priority before it starts threads (live.raise_priority)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from steerpad.realtime import live


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no setpriority on this platform")
def test_raise_priority_lowers_nice_for_the_threads_started_after_it():
    """In a process and a session of its own (a nice value, once lowered, stays, and the session's
    scheduling group is raised too): the thread that asked and a thread it starts afterwards both
    run at NICE, where the system allows it."""
    code = ("import os, threading\n"
            "from steerpad.realtime.live import raise_priority\n"
            "said = raise_priority()\n"
            "seen = []\n"
            "t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))\n"
            "t.start(); t.join()\n"
            "print(said, os.getpriority(os.PRIO_PROCESS, 0), seen[0], sep='|')\n"
            "print(open('/proc/self/autogroup').read().split()[-1] if os.path.exists('/proc/self/autogroup')"
            " else '-')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         start_new_session=True).stdout
    first, group = out.strip().splitlines()
    said, mine, child = first.split("|")
    if "session's scheduling group" in said:
        assert group == str(live.NICE)
    if "not allowed" in said:  # an unprivileged run: nothing changed, and it says how to allow it
        assert int(mine) == int(child) == os.getpriority(os.PRIO_PROCESS, 0)
        assert "limits.d" in said
    else:
        assert said.startswith(f"priority: nice {live.NICE}") and int(mine) == int(child) == live.NICE


def test_raise_priority_says_when_it_is_not_allowed(monkeypatch):
    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "getpriority", lambda *args: 0)
    monkeypatch.setattr(os, "setpriority", refuse)
    said = live.raise_priority()
    assert said.startswith("priority: nice 0 (not allowed") and "limits.d" in said
    monkeypatch.setattr(os, "getpriority", lambda *args: -15)  # already higher: left as it is
    assert live.raise_priority() == "priority: nice -15"
