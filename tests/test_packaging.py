"""The distribution: both halves install as steerpad.realtime / steerpad.offline (editable and
wheel), and the realtime half and the CLI never load torch."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(folder: str) -> list[str]:
    return sorted(f"steerpad.{folder}.{p.stem}" for p in (ROOT / folder).glob("*.py")
                  if p.stem != "__init__")


def _run(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kw)


def test_editable_install_maps_both_halves():
    out = _run("import steerpad.realtime, steerpad.offline;"
               "print(steerpad.realtime.__file__); print(steerpad.offline.__file__)", cwd="/")
    assert out.returncode == 0, out.stderr
    realtime, offline = out.stdout.split()
    assert Path(realtime) == ROOT / "realtime" / "__init__.py"
    assert Path(offline) == ROOT / "offline" / "__init__.py"


@pytest.mark.slow
def test_wheel_holds_every_module_and_imports_from_site(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("steerpad-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("realtime", "offline"):
        for p in (ROOT / folder).glob("*.py"):
            assert f"steerpad/{folder}/{p.name}" in names, f"{p} missing from the wheel"
    assert not any(n.startswith(("tests/", "realtime/", "offline/")) for n in names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    out = _run("import steerpad.realtime, steerpad.offline.cli as c; print(c.__file__)",
               cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(site)


def test_realtime_and_cli_never_import_torch():
    mods = _modules("realtime") + ["steerpad.offline.cli", "steerpad.offline"]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "from steerpad.offline.cli import main\n"
            "main(['--help'])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'librosa'))\n"
            "print('LOADED', bad)\n")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_realtime_sources_never_import_offline_or_torch():
    for p in (ROOT / "realtime").glob("*.py"):
        for line in p.read_text().splitlines():
            s = line.strip()
            assert not s.startswith(("import torch", "from torch", "from steerpad.offline",
                                     "import steerpad.offline")), f"{p}: {s}"


def test_cli_unknown_command_is_one_clear_line():
    from steerpad.offline.cli import main
    assert main(["frobnicate"]) == 2
