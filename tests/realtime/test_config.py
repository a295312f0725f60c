"""The config file (realtime/config.py): `steerpad config` shows each value and its source, the
command line overrides the file, the file overrides steerpad's defaults, and a bad file or value
is refused in one line naming the file, the key and what is allowed."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import mido
import pytest

from steerpad.offline.cli import main
from steerpad.realtime import config, shipped

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("STEERPAD_CONFIG", str(path))
    path.parent.mkdir()
    return path


def one_hit(path: Path) -> Path:
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track += [mido.Message("note_on", channel=9, note=36, velocity=100, time=0),
              mido.Message("note_off", channel=9, note=36, velocity=0, time=480)]
    mid.save(str(path))
    return path


def test_without_a_file_the_shipped_defaults_apply(cfg, capsys):
    assert main(["config"]) == 0
    out = re.sub(" +", " ", capsys.readouterr().out)  # (columns align to the longest key)
    assert f"config file: {cfg} (none" in out
    assert f"bundle {shipped.default_bundle()} (shipped default)" in out
    assert "blocksize 128 (default)" in out and "midi_port - (unset)" in out
    assert main(["config", "--path"]) == 0 and capsys.readouterr().out.strip() == str(cfg)


def test_the_file_sets_defaults_and_the_command_line_overrides_them(cfg, tmp_path, capsys):
    cfg.write_text(f'bundle = "{tmp_path / "nowhere"}"\nblocksize = 256\nosc = "127.0.0.1:9100"\n'
                   'midi_port = "MPD218"\naudio_device = 3\n')
    assert main(["config"]) == 0
    out = re.sub(" +", " ", capsys.readouterr().out)  # (columns align to the longest key)
    assert f"bundle {tmp_path / 'nowhere'} (config {cfg})" in out
    assert f"blocksize 256 (config {cfg})" in out and f"audio_device 3 (config {cfg})" in out
    args = argparse.Namespace(blocksize=512, bundle=None)
    r = config.resolve(args, ("blocksize", "bundle", "preset"))
    assert r["blocksize"] == (512, "command line") and args.blocksize == 512
    assert r["bundle"] == (tmp_path / "nowhere", f"config {cfg}")
    assert r["preset"] == (shipped.default_preset(), "shipped default")
    # render takes its bundle from the file (and fails on it, naming it) unless --bundle is given
    mid = one_hit(tmp_path / "one.mid")
    assert main(["render", str(mid), "--out", str(tmp_path / "a.wav")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert main(["render", str(mid), "--bundle", str(shipped.default_bundle()),
                 "--out", str(tmp_path / "b.wav")]) == 0
    assert (tmp_path / "b.wav").is_file()


@pytest.mark.parametrize("text, says", [
    ("blocksize = 5\n", "blocksize = 5 is not an integer, 16 to 8192 frames"),
    ("blocksize = true\n", "blocksize = True is not an integer"),
    ('bundle = 3\n', "bundle = 3 is not a bundle folder (a string path)"),
    ('osc = "host:99999"\n', "osc = 'host:99999' is not HOST:PORT"),
    ('audio_device = ""\n', "audio_device = '' is not an output device name"),
    ('colour = "red"\n', "unknown key 'colour'; the keys are bundle, preset, audio_device"),
    ('blocksize = \n', "not valid TOML"),
    ('audio_backend = "coreaudio"\n', "audio_backend = 'coreaudio' is not auto, jack or portaudio"),
    ('outputs = "stems"\n', "outputs = 'stems' is not main, pads or groups"),
    ('connect = "("\n', "connect = '(' is not system or a regular expression"),
    ('client_name = "a:b"\n', "client_name = 'a:b' is not a JACK client name"),
    ('asio = "yes"\n', "asio = 'yes' is not true or false"),
])
def test_a_bad_file_is_refused_in_one_line(cfg, capsys, text, says):
    cfg.write_text(text)
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"config {cfg}" in err and says in err, err


def test_a_folder_in_the_files_place_is_refused(cfg, capsys):
    cfg.mkdir()
    assert main(["config"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_the_jack_and_asio_keys_are_shown_and_used(cfg, capsys):
    cfg.write_text('outputs = "groups"\nconnect = "system"\nclient_name = "drums"\nasio = true\n')
    assert main(["config"]) == 0
    out = re.sub(" +", " ", capsys.readouterr().out)  # (columns align to the longest key)
    assert f"outputs groups (config {cfg})" in out and f"client_name drums (config {cfg})" in out
    assert f"asio True (config {cfg})" in out and "audio_backend auto (default)" in out
    # asio = true does nothing off Windows (a config shared between machines), --asio is refused
    assert main(["devices"]) == 0
    capsys.readouterr()
    assert main(["devices", "--asio"]) == 2
    err = capsys.readouterr().err
    assert err == "steerpad: error: --asio: ASIO drivers exist only on Windows; leave it out\n"


def test_asio_is_enabled_before_portaudio_loads_on_windows():
    """On Windows, --asio sets SD_ENABLE_ASIO before sounddevice is imported (PortAudio's ASIO host
    API is loaded only then); once sounddevice is loaded without it, --asio says to start again."""
    code = """
import os, sys
sys.platform = "win32"
from steerpad.realtime.devices import enable_asio
from steerpad.realtime.errors import SteerpadError
assert "sounddevice" not in sys.modules
enable_asio(True, from_flag=True)
print(os.environ["SD_ENABLE_ASIO"])
del os.environ["SD_ENABLE_ASIO"]
import sounddevice
try:
    enable_asio(True, from_flag=True)
except SteerpadError as e:
    print(e)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["1",
                                       "--asio: sounddevice was loaded without ASIO; start steerpad again"]


def test_a_config_path_with_an_unknown_home_or_a_nul_is_one_line(cfg, tmp_path, monkeypatch, capsys):
    midi = one_hit(tmp_path / "hit.mid")
    cfg.write_text('bundle = "~nosuchuser/b"\n')
    assert main(["render", "--out", str(tmp_path / "x.wav"), str(midi)]) == 2
    err = capsys.readouterr().err
    assert f"config {cfg}: bundle: '~nosuchuser/b' starts with" in err and err.count("\n") == 1, err
    cfg.write_text('preset = "a\\u0000b.toml"\n')
    assert main(["render", "--out", str(tmp_path / "x.wav"), str(midi)]) == 2
    err = capsys.readouterr().err
    assert "preset: 'a<NUL>b.toml' holds a NUL byte" in err and err.count("\n") == 1, err
    monkeypatch.setenv("STEERPAD_CONFIG", "~nosuchuser/c.toml")
    assert main(["render", "--out", str(tmp_path / "x.wav"), str(midi)]) == 2
    err = capsys.readouterr().err
    assert "$STEERPAD_CONFIG: '~nosuchuser/c.toml' starts with" in err and err.count("\n") == 1, err
