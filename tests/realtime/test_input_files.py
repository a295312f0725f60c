"""Files a user hands steerpad that must not hang it or scramble its one line of error.

A regular file that says it holds 0 bytes is refused before it is opened (errors.EMPTY): a
kernel file says so too (/proc/kmsg), and reading it blocked `steerpad render` inside libsndfile
for 24 minutes, deaf to Ctrl-C and SIGTERM (a hostile pass). Each reader: a pad's sample, a preset,
a MIDI performance, ingest's sources, the config file. And a file name's control characters are
escaped (errors.one_line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from steerpad.realtime.config import load_config
from steerpad.realtime.engine import read_one_shot
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.presets import load_preset

KMSG = Path("/proc/kmsg")


@pytest.fixture(params=["zero-byte file", "/proc/kmsg"])
def empty(request, tmp_path) -> Path:
    if request.param == "/proc/kmsg":
        if not (KMSG.exists() and KMSG.stat().st_size == 0):
            pytest.skip("no /proc/kmsg of 0 bytes here")
        return KMSG
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def test_a_pad_sample_preset_and_config_of_0_bytes_are_never_read(empty):
    with pytest.raises(SteerpadError, match=r"is empty \(0 bytes; .*point it at a WAV"):
        read_one_shot(empty, 1.0, 2)
    with pytest.raises(SteerpadError, match=r"is empty \(0 bytes; .*give a \.toml file"):
        load_preset(empty)
    assert load_config(empty) == {}  # nothing set


def test_render_refuses_a_performance_of_0_bytes_in_one_line(empty, tmp_path):
    run = subprocess.run([sys.executable, "-m", "steerpad.offline.cli", "render", str(empty), "--out",
                          str(tmp_path / "out.wav")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "STEERPAD_CONFIG": str(tmp_path / "none.toml")})
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "is empty (0 bytes" in run.stderr and "MIDI file" in run.stderr
    assert not (tmp_path / "out.wav").exists()


def test_ingest_skips_a_source_of_0_bytes_without_reading_it(empty, tmp_path):
    from steerpad.offline.ingest import IngestConfig, _work

    kit = tmp_path / "kit"
    kit.mkdir()
    sf.write(kit / "kick.wav", np.sin(np.linspace(0, 200, 22050)).astype(np.float32) * 0.5, 44100)
    assert _work((str(empty), IngestConfig())) == {"skip": "empty", "reason": "empty file (0 bytes)"}
    assert "audio" in _work((str(kit / "kick.wav"), IngestConfig()))


def test_a_file_name_with_control_characters_stays_one_inert_line(tmp_path):
    """A name with a newline and an ESC sequence: the error is one line, the ESC escaped (it
    reached the terminal raw and could recolour it: a hostile pass); ingest's skip warnings too."""
    from steerpad.realtime.errors import one_line

    assert one_line("a\nb\x1b[31mc\x07 é \udcff") == "a b\\x1b[31mc\\x07 é \\udcff"
    name = tmp_path / "bad\nname\x1b[31m.mid"
    name.write_bytes(b"not midi")
    run = subprocess.run([sys.executable, "-m", "steerpad.offline.cli", "render", str(name), "--out",
                          str(tmp_path / "out.wav")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "STEERPAD_CONFIG": str(tmp_path / "none.toml")})
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "\x1b" not in run.stderr, run.stderr
    assert "bad name\\x1b[31m.mid: not a readable MIDI file" in run.stderr
