"""Every CLI verb on hostile inputs (tests/hostile/hostile_inputs.py): each run ends within its
time limit with rc 0, 1 or 2 (the case's own set), prints no traceback, changes no file outside
its output, and leaves no `.tmp` or `.partial` behind."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_inputs import build

TIMEOUT_S = 90


def _snapshot(root: Path, skip: Path | None) -> dict[str, str]:
    """Every entry under root (links not followed) -> what it is: a file's hash, a link's target."""
    out = {}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            p = Path(d) / n
            if skip is not None and (p == skip or skip in p.parents):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = f"mode:{stat.S_IFMT(st.st_mode)}"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return root, build(root)


def _ids():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return [c.id for c in build(Path(d))]


@pytest.mark.parametrize("case_id", _ids())
def test_hostile_input(world, case_id, request):
    root, cases = world
    case = next(c for c in cases if c.id == case_id)
    if case.argv[0] in ("live", "learn", "devices"):
        request.getfixturevalue("jack_server")  # audio and MIDI verbs meet a real JACK server
    before = _snapshot(root, case.out)
    env = {k: v for k, v in os.environ.items() if k != "STEERPAD_DEBUG"}
    try:
        proc = subprocess.run([sys.executable, "-m", "steerpad.offline.cli", *case.argv],
                              capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL, errors="backslashreplace")
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.id}: still running after {TIMEOUT_S} s: {' '.join(case.argv)}")
    said = proc.stderr + proc.stdout
    assert proc.returncode in case.codes, f"{case.id}: rc {proc.returncode}\n{said[-3000:]}"
    assert "Traceback" not in said and "internal error" not in said, f"{case.id}:\n{said[-3000:]}"
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("steerpad: error:")]
        assert len(errors) == 1 or "usage:" in proc.stderr, f"{case.id}: {proc.stderr[-2000:]}"
    after = _snapshot(root, case.out)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"{case.id} changed files outside its output: {changed[:5]}"
    left = [p for p in after if ".tmp" in Path(p).name or ".partial" in Path(p).name]
    assert not left, f"{case.id} left {left}"
