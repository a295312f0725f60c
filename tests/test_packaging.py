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


@pytest.mark.slow
def test_a_performer_installs_the_wheel_and_plays_from_any_folder(tmp_path):
    """The wheel, installed with [cpu] into a fresh venv and run from a folder outside the clone,
    carries the presets, controller maps, demo performance and default bundle (its model card
    with the kit's licence notes; not the report pictures), and plays them with no flags."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("steerpad-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("presets/default.toml", "presets/example.toml", "presets/demo.mid",
                    "presets/controllers/generic.toml", "presets/controllers/akai_mpd218.toml",
                    "models/default/manifest.json", "models/default/decoder.onnx",
                    "models/default/MODEL_CARD.md", "models/default/kit/crash.flac", "realtime/viz.html"):
        assert f"steerpad/{shipped}" in names, f"{shipped} missing from the wheel"
    assert not any("/report/" in n for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           f"{wheel}[cpu]"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    stage = tmp_path / "stage"  # the performer's folder: no checkout in sight
    stage.mkdir()
    (stage / "demo.mid").write_bytes((ROOT / "presets" / "demo.mid").read_bytes())
    (stage / "mine.toml").write_text((ROOT / "presets" / "example.toml").read_text())
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(stage), "LANG": "C.UTF-8"}

    def steerpad(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "steerpad"), *args], cwd=stage, env=env,
                              capture_output=True, text=True, timeout=600)

    out = steerpad("--version")
    assert out.returncode == 0 and out.stdout.strip() == "steerpad 0.1.0", out
    out = steerpad("render", "demo.mid", "--out", "x.wav")
    assert out.returncode == 0, out.stderr
    import soundfile as sf

    assert sf.info(str(stage / "x.wav")).duration > 45
    out = steerpad("render", "demo.mid", "--preset", "mine.toml", "--out", "y.wav")  # a preset copied out
    assert out.returncode == 0, out.stderr
    out = steerpad("demo", "--no-play")
    assert out.returncode == 0, out.stderr
    assert (stage / "out" / "demo.wav").is_file() and (stage / "out" / "demo.jsonl").is_file()
    assert "it needs matplotlib" in out.stdout  # [cpu] alone draws no picture, and says so
    out = steerpad("config")  # no config file yet: the shipped defaults, inside the venv
    assert out.returncode == 0, out.stderr
    assert f"config file: {stage / '.config' / 'steerpad' / 'config.toml'} (none" in out.stdout
    assert "(shipped default)" in out.stdout and str(venv) in out.stdout
    viz = subprocess.Popen([str(venv / "bin" / "steerpad"), "viz", "--viz-port", "0", "--features",
                            "out/demo.jsonl", "--duration", "5"], cwd=stage, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # the page, from the wheel, fed by the bounce
    url = viz.stdout.readline().split("open ")[1].split()[0]
    import urllib.request

    assert b"<canvas" in urllib.request.urlopen(url, timeout=10).read()
    assert viz.wait(30) == 0, viz.stderr.read()
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "from steerpad.realtime import shipped; print(shipped.default_bundle())"],
                           cwd=stage, env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(venv), where


def test_version_and_help_name_the_exit_codes(capsys):
    from steerpad.offline.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("steerpad 0.")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--version" in out and "2 bad input" in out and "130 Ctrl-C" in out and "demo" in out


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


SEAM = {
    "steerpad.realtime.bundle": "the bundle contract: what export writes and the player loads",
    "steerpad.realtime.errors": "one-line errors, the same in both halves",
    "steerpad.realtime.descriptors": "the shared descriptors probes are trained on and the feed reports",
    "steerpad.realtime.outputs": "what steerpad may overwrite: the output markers both halves write",
    "steerpad.realtime.limits": "the audio file rates both halves accept",
    "steerpad.realtime.faithful": "the render modes a bundle's manifest names, and their settings",
    "steerpad.realtime.renderer": "knobs are calibrated and evaluated on a pad's render as it plays",
}
"""What the trainer may import from the player: the bundle contract and what it names. Tooling
(the JACK rig, the benchmarks, the model report) lives outside the packages."""


def test_offline_imports_from_realtime_only_the_seam():
    import ast

    found: dict[str, set[str]] = {}
    for p in sorted((ROOT / "offline").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            module = getattr(node, "module", None) or ""
            if isinstance(node, ast.ImportFrom) and module.startswith("steerpad.realtime"):
                names = [node.module] if node.module != "steerpad.realtime" else \
                    [f"steerpad.realtime.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("steerpad.realtime")]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(p.name)
    outside = {m: sorted(files) for m, files in found.items() if m not in SEAM}
    assert not outside, f"offline imports these realtime modules beyond the seam: {outside}"
    assert "steerpad.realtime.bundle" in found  # (the walk sees imports at all)
    tooling = {"jackrig.py", "bench.py", "bench_live.py", "vae_bench.py", "model_report.py"}
    assert not tooling & {p.name for p in (ROOT / "offline").glob("*.py")}


def test_cli_unknown_command_is_one_clear_line():
    from steerpad.offline.cli import main
    assert main(["frobnicate"]) == 2
