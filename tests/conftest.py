"""Shared test setup. When the collected tests include one that plays through JACK (marked `live`),
a dummy JACK server of this run's own is started after collection, before any test imports
sounddevice (PortAudio finds host APIs once, at import), so the realtime tests run on real audio
and MIDI; a run of numpy-only tests starts none."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from rig.jackrig import ensure_jackd, start_cpu_load, stop_cpu_load

JACK_OK = False
"""Whether this run's JACK server runs (started in pytest_collection_modifyitems)."""
# A developer's own config file (realtime/config.py) never reaches the tests: this one is absent.
os.environ["STEERPAD_CONFIG"] = os.path.join(tempfile.gettempdir(), f"steerpad-tests-{os.getpid()}.toml")


def pytest_addoption(parser) -> None:
    parser.addoption("--load", action="store_true",
                     help="run the live (JACK) tests last, with a busy loop pinned to every core while "
                          "they run (./scripts/test --load, CI)")


def pytest_collection_modifyitems(config, items) -> None:
    """Every test that plays through the JACK server is marked `live` (by the jack_server
    fixture, or by hand for a test that starts a server of its own); if there is one, the JACK
    server starts now. With --load they run last, in their collected order, so one run holds the
    idle tests and the loaded ones."""
    global JACK_OK
    for item in items:
        if "jack_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.live)
    if any(item.get_closest_marker("live") is not None for item in items):
        JACK_OK = ensure_jackd(server=f"steerpad-test-{os.getpid()}")  # this run's own server
    if config.getoption("--load"):
        items.sort(key=lambda item: item.get_closest_marker("live") is not None)  # (stable)


@pytest.fixture(autouse=True)
def _cpu_load(request) -> None:
    """With --load, a live test runs with one busy loop per core, each pinned to its core (as
    other work on a performer's laptop; jackrig.start_cpu_load): started before the first live
    test, for the rest of the run."""
    config = request.config
    if not config.getoption("--load") or request.node.get_closest_marker("live") is None:
        return
    if not getattr(config, "_steerpad_hogs", None):
        config._steerpad_hogs = start_cpu_load()
        print(f"\nsteerpad: {len(config._steerpad_hogs)} busy loops pinned one per core from here on")


def pytest_unconfigure(config) -> None:
    stop_cpu_load(getattr(config, "_steerpad_hogs", None) or [])


@pytest.fixture(scope="session")
def jack_server() -> None:
    """A running JACK server (jackd --realtime -d dummy, 48 kHz, 128-frame periods), or skip."""
    if not JACK_OK:
        pytest.skip("no JACK server: install jackd2 (./scripts/test does)")


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """A bundle trained by `steerpad train` on synthetic drums (tests/chainbundle.py): the
    folder holding bundle/, work/ (with work/eval/report.json) and kits/."""
    from chainbundle import build_chain

    # $STEERPAD_TEST_CHAIN: where to keep it, for a later run to use again (`./scripts/test --ci`
    # runs the live tests in a second process; or debugging)
    shared = os.environ.get("STEERPAD_TEST_CHAIN")
    if not shared:
        return build_chain(tmp_path_factory.mktemp("chain"))
    if (Path(shared) / "bundle" / "manifest.json").is_file():
        return Path(shared)
    Path(shared).mkdir(parents=True, exist_ok=True)
    return build_chain(Path(shared))


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(options) -> a fresh tmpfs mounted with `options` (needs root and a kernel that
    lets this process mount; skips otherwise). Unmounted after the test."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root and mount(8)")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)
