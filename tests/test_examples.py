"""examples/ run as a reader runs them (python examples/NAME.py ...), each checked on what it
made: a steered pad, a bounce, a feed read from a real render, a bundle trained and played."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from drumsynth import write_kits

from steerpad.offline.cli import main
from steerpad.realtime import shipped

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def example(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_every_example_is_tested_here():
    tested = {"play_pad.py", "bounce.py", "osc_receiver.py", "train_tiny.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_play_pad_steers_the_sample_it_plays(tmp_path):
    """Centred, the pad is its own sample (resampled); a knob turned changes it."""
    example("play_pad.py", "--pad", "snare", "--knob", "0.5", "--rate", "44100",
            "--out", str(tmp_path / "c.wav"))
    run = example("play_pad.py", "--pad", "snare", "--knob", "0.95", "--rate", "44100",
                  "--out", str(tmp_path / "b.wav"))
    assert "snare, brighter at 0.95" in run.stdout
    centred, rate = sf.read(tmp_path / "c.wav", dtype="float32")
    bright, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    from steerpad.realtime.bundle import load_bundle

    snare = next(e for e in load_bundle(shipped.default_bundle()).kit if e.name == "snare")
    assert rate == 44100 and np.array_equal(centred, snare.audio.T.astype(np.float32))
    assert centred.shape == bright.shape and np.abs(bright - centred).max() > 0.01


def test_bounce_writes_the_performance(tmp_path):
    run = example("bounce.py", str(ROOT / "presets" / "demo.mid"), str(tmp_path / "demo.wav"))
    audio, rate = sf.read(tmp_path / "demo.wav")
    assert rate == 48000 and audio.shape[0] / rate > 45 and np.abs(audio).max() > 0.1
    assert "359 note-ons" in run.stdout


def test_osc_receiver_reads_a_render_sent_in_time(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for pad in (0, 1, 2):
        track += [mido.Message("note_on", channel=9, note=36 + pad, velocity=100, time=0),
                  mido.Message("note_off", channel=9, note=36 + pad, velocity=0, time=240)]
    mid.save(str(tmp_path / "three.mid"))
    receiver = subprocess.Popen([sys.executable, str(EXAMPLES / "osc_receiver.py"), "--port", "0",
                                 "--hits", "3", "--seconds", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = receiver.stdout.readline().strip().rsplit(":", 1)[1]
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(receiver.stdout))
    reader.start()
    assert main(["render", str(tmp_path / "three.mid"), "--out", str(tmp_path / "three.wav"), "--osc",
                 f"127.0.0.1:{port}"]) == 0
    receiver.wait(60)
    reader.join()
    assert receiver.returncode == 0, receiver.stderr.read()
    assert [line for line in lines if line.startswith("hit:")] == \
        ["hit: pad 1, velocity 0.79\n", "hit: pad 2, velocity 0.79\n", "hit: pad 3, velocity 0.79\n"]
    assert any(line.startswith("level #") for line in lines)


@pytest.mark.slow
def test_train_tiny_makes_a_bundle_steerpad_plays(tmp_path):
    write_kits(tmp_path / "kits", n_kits=4, hits_per_kit=16, seed=3, labels=("hat", "snare", "clap"))
    vae = ROOT / "tests" / "fixtures" / "synth_vae"  # a trained VAE: the tiny run skips that stage
    run = example("train_tiny.py", str(tmp_path / "kits"), "--out", str(tmp_path / "bundle"),
                  "--vae", str(vae), "--knobs", "centroid", timeout=900)  # one knob: quicker
    assert f"bundle: {tmp_path / 'bundle'}" in run.stdout
    from steerpad.realtime.bundle import load_bundle

    bundle = load_bundle(tmp_path / "bundle")
    assert "brighter" in bundle.direction_names()
    files = sorted((tmp_path / "kits" / "synth_kit_1").glob("*.*"))[:16]  # pads 1.. play a kit's files
    preset = tmp_path / "tiny.toml"
    preset.write_text('name = "tiny"\ncontroller = "generic"\n'
                      + "".join(f'[[pads]]\nsample = "{f}"\n' for f in files)
                      + '[[knobs]]\ndirection = "brighter"\n')
    example("bounce.py", str(ROOT / "presets" / "demo.mid"), str(tmp_path / "demo.wav"),
            "--bundle", str(tmp_path / "bundle"), "--preset", str(preset))
    audio, _ = sf.read(tmp_path / "demo.wav")
    assert np.abs(audio).max() > 0.05
