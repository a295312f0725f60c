"""`steerpad render` on hostile or heavy input (issue #13): a decoder gone bad, performances dense
with knob moves, long or broken MIDI files, a full or read-only disk, pad samples that are not
plain files or far longer than a one-shot. Each ends in the bounce it asks for or in one line
naming what to fix, never a traceback, a hang, a silent WAV or a lost file.

Plays the shipped bundle (models/default) with presets/default.toml: pads 1-16 = notes 36-51 on
channel 10, knobs 1-8 = CC 70-77 on channel 1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import tracemalloc
from dataclasses import replace
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from steerpad.offline.cli import main
from steerpad.realtime.bounce import bounce, bounce_to_files, read_performance
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import encode_file, load_file_sound
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, NoteOn
from steerpad.realtime.presets import load_preset

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models" / "default"
PRESET = ROOT / "presets" / "default.toml"
RATE = 48000


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


@pytest.fixture(scope="module")
def preset():
    return load_preset(PRESET)


def hit(pad: int, velocity: int = 100) -> NoteOn:
    return NoteOn(9, 36 + pad, velocity)


def knob(index: int, raw: int) -> ControlChange:
    return ControlChange(0, 70 + index, raw / 127, raw)


def write_mid(path: Path, notes_at_s: list[float], ticks_per_beat: int = 480, kind: int = 1) -> Path:
    """A MIDI file at 120 bpm with a note-on (pad 2) at each time in seconds."""
    mid = mido.MidiFile(type=kind, ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    last = 0
    for t in notes_at_s:
        tick = int(round(t * 2 * max(ticks_per_beat, 1)))
        track.append(mido.Message("note_on", channel=9, note=37, velocity=100, time=tick - last))
        last = tick
    mid.save(path)
    return path


def render(tmp_path: Path, mid: Path, out: Path, *extra: str) -> int:
    return main(["render", str(mid), "--bundle", str(BUNDLE), "--preset", str(PRESET), "--out", str(out),
                 *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("steerpad: error: "), err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------- renders that fail

def nan_bundle(folder: Path) -> Path:
    """A copy of the default bundle whose decoder adds NaN to every sample it outputs (as one
    trained to divergence would), with the manifest's hash of it updated."""
    import onnx
    from onnx import helper, numpy_helper

    copy = folder / "nan_bundle"
    shutil.copytree(BUNDLE, copy)
    path = copy / "decoder.onnx"
    model = onnx.load(str(path))
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{out}_finite" if o == out else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    model.graph.node.append(helper.make_node("Add", [f"{out}_finite", "nan"], [out]))
    onnx.save(model, str(path))
    manifest = json.loads((copy / "manifest.json").read_text())
    data = path.read_bytes()
    manifest["files"]["decoder.onnx"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("mode", ["resynth", "faithful"])
def test_a_decoder_that_outputs_nan_fails_the_render(tmp_path, capsys, mode):
    """In resynth mode a pad plays the decoder's output; in faithful mode it plays its source
    while the knobs are centred (no decoder at all), so there the performance turns a knob first."""
    bad = nan_bundle(tmp_path)
    mid = write_mid(tmp_path / "perf.mid", [0.0, 0.5])
    if mode == "faithful":
        perf = mido.MidiFile(mid)
        perf.tracks[0].insert(0, mido.Message("control_change", channel=0, control=70, value=127, time=0))
        perf.save(mid)
    preset = tmp_path / "preset.toml"
    preset.write_text(f'mode = "{mode}"\n' + PRESET.read_text())
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["render", str(mid), "--bundle", str(bad), "--preset", str(preset),
               "--out", str(out / "perf.wav"), "--features", str(out / "perf.jsonl")])
    err = one_line_error(capsys)
    assert rc == 1, err  # a runtime failure, not bad input
    assert "pad 2" in err and "non-finite" in err and "wrote nothing" in err
    assert list(out.iterdir()) == []  # no silent WAV, no partial files


# ---------------------------------------------------------------- dense knob moves

def test_knob_moves_between_hits_cost_one_render_per_hit(bundle, preset):
    """Hundreds of CCs between hits render only the knob state each hit hears, for the pad it
    hits; the audio is bit for bit that of the same hits after only the final knob values."""
    gap = RATE // 4
    dense, sparse = [(0, hit(0))], [(0, hit(0))]
    for i in range(300):  # two knobs swept back and forth, one CC every ~0.8 ms
        dense.append((1 + i * 40, knob(i % 2, (i * 7) % 128)))
    final = {k: [e for _, e in dense if isinstance(e, ControlChange) and e.control == 70 + k][-1]
             for k in (0, 1)}
    sparse += [(gap - 2, final[0]), (gap - 1, final[1])]
    for events in (dense, sparse):
        events += [(gap, hit(1)), (2 * gap, hit(1)), (3 * gap - 1, knob(0, 3)), (3 * gap, hit(0))]
    a, counted = bounce(bundle, preset, dense, RATE)
    b, _ = bounce(bundle, preset, sparse, RATE)
    assert np.array_equal(a, b)
    # kick at the start, snare after the sweep (twice: one render), kick after one more move
    assert counted["renders"] == 3 and counted["render_errors"] == 0 and counted["silent_hits"] == 0
    assert np.abs(a).max() > 0.01


def test_the_wav_on_disk_is_the_bounce_bit_for_bit(bundle, preset, tmp_path):
    events = [(1000, hit(0)), (9000, knob(2, 120)), (20_011, hit(3)), (30_000, hit(4))]
    audio, counters = bounce(bundle, preset, events, RATE, blocksize=128)
    streamed, _ = bounce_to_files(bundle, preset, events, tmp_path / "b.wav", RATE, blocksize=128)
    written, rate = sf.read(str(tmp_path / "b.wav"), dtype="float32")
    assert rate == RATE and np.array_equal(written, audio)
    assert streamed["frames"] == audio.shape[0] and streamed["peak"] == float(np.abs(audio).max())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav"]  # no temporary file left
    assert sf.info(str(tmp_path / "b.wav")).extra_info.count("steerpad")  # its software tag


# ---------------------------------------------------------------- long performances

def test_a_long_bounce_streams_to_disk_in_flat_memory(bundle, preset, tmp_path):
    """Two minutes of audio (46 MB as stereo float) go to disk block by block."""
    seconds = 120
    events = [(int(t * RATE), hit(t % 4)) for t in range(0, seconds, 4)]
    tracemalloc.start()
    try:
        counters, _ = bounce_to_files(bundle, preset, events, tmp_path / "long.wav", RATE, blocksize=2048,
                                      features=tmp_path / "long.jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = counters["frames"] * 2 * 4
    assert counters["frames"] >= (seconds - 4) * RATE
    assert sf.info(str(tmp_path / "long.wav")).frames == counters["frames"]
    assert peak < size / 3, (peak, size)


def test_a_performance_past_the_limit_is_refused_up_front(tmp_path, capsys):
    day = write_mid(tmp_path / "day.mid", [0.0, 24 * 3600.0])
    rc = render(tmp_path, day, tmp_path / "day.wav")
    err = one_line_error(capsys)
    assert rc == 2 and "day.mid" in err and "--max-duration" in err and "24:00:00" in err
    assert not (tmp_path / "day.wav").exists()

    short = write_mid(tmp_path / "short.mid", [0.0, 3.0])
    assert render(tmp_path, short, tmp_path / "s.wav", "--max-duration", "2") == 2
    assert "--max-duration 4" in one_line_error(capsys)
    assert render(tmp_path, short, tmp_path / "s.wav", "--max-duration", "5") == 0
    assert sf.info(str(tmp_path / "s.wav")).duration > 3.0
    for bad in ("0", "-1", "nan", "inf"):
        assert render(tmp_path, short, tmp_path / "x.wav", "--max-duration", bad) == 2
        assert "--max-duration" in one_line_error(capsys)


def test_audio_options_out_of_range_are_refused(tmp_path, capsys):
    mid = write_mid(tmp_path / "p.mid", [0.0])
    for option, value in (("--blocksize", "8"), ("--blocksize", "1000000"), ("--sample-rate", "0"),
                          ("--sample-rate", "10000000")):
        assert render(tmp_path, mid, tmp_path / "x.wav", option, value) == 2
        assert option in one_line_error(capsys)
    assert not (tmp_path / "x.wav").exists()


# ---------------------------------------------------------------- hostile MIDI files

def _slow_tempo(path: Path) -> Path:
    """Ticks-per-beat 1 at the slowest tempo MIDI allows (16.7 s a beat): a few ticks are hours."""
    mid = mido.MidiFile(ticks_per_beat=1)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=0xFFFFFF, time=0))
    track.append(mido.Message("note_on", channel=9, note=37, velocity=100, time=0))
    track.append(mido.Message("note_on", channel=9, note=37, velocity=100, time=800))
    mid.save(path)
    return path


def _truncated(path: Path) -> Path:
    data = write_mid(path, [0.0, 0.5, 1.0]).read_bytes()
    path.write_bytes(data[:-7])
    return path


@pytest.mark.parametrize("make, says", [
    (lambda p: write_mid(p, [0.0, 1.0], ticks_per_beat=0), "0 ticks per beat"),
    (lambda p: write_mid(p, [0.0, 1.0], kind=2), "type 2"),
    (_truncated, "truncated"),
    (_slow_tempo, "--max-duration"),
    (lambda p: (p.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff\xff\xff\xff\x90"), p)[1],
     "not a readable MIDI file"),
], ids=["ticks-per-beat-0", "type-2", "truncated", "slow-tempo", "garbage-track"])
def test_hostile_midi_files_get_one_line(tmp_path, capsys, make, says):
    mid = make(tmp_path / "hostile.mid")
    with pytest.raises(SteerpadError, match=says):
        read_performance(mid, RATE)
    assert render(tmp_path, mid, tmp_path / "x.wav") == 2
    err = one_line_error(capsys)
    assert "hostile.mid" in err and says in err
    assert not (tmp_path / "x.wav").exists()


# ---------------------------------------------------------------- where the output goes

def test_files_named_like_its_temporary_files_are_left_alone(tmp_path):
    """The outputs are written to new temporary files: a user's `perf.wav.tmp` survives."""
    mid = write_mid(tmp_path / "perf.mid", [0.0])
    mine = {tmp_path / "perf.wav.tmp": b"my take", tmp_path / "perf.jsonl.tmp": b"my notes"}
    for path, data in mine.items():
        path.write_bytes(data)
    assert render(tmp_path, mid, tmp_path / "perf.wav", "--features", str(tmp_path / "perf.jsonl")) == 0
    assert all(path.read_bytes() == data for path, data in mine.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["perf.mid", "perf.wav", "perf.jsonl", "perf.wav.tmp", "perf.jsonl.tmp"])


@pytest.mark.parametrize("full", ["--out", "--features"])
def test_a_full_disk_gives_one_line_and_leaves_nothing(tmp_path, capsys, mount_tmpfs, full):
    disk = mount_tmpfs("size=64k")
    mid = write_mid(tmp_path / "perf.mid", [0.0, 1.0, 2.0])  # 3 s: 1.1 MB of WAV, 25 KB of frames
    roomy = tmp_path / "roomy"
    wav = (disk if full == "--out" else roomy) / "perf.wav"
    frames = (disk if full == "--features" else roomy) / "perf.jsonl"
    if full == "--features":  # fill the disk so the frames cannot fit
        (disk / "ballast").write_bytes(b"\0" * (56 << 10))
    rc = render(tmp_path, mid, wav, "--features", str(frames))
    err = one_line_error(capsys)
    assert rc == 1, err
    assert full in err and "No space left on device" in err
    assert sorted(p.name for p in disk.iterdir()) == ([] if full == "--out" else ["ballast"])
    assert not roomy.exists() or list(roomy.iterdir()) == []


def test_a_read_only_place_gives_one_line(tmp_path, capsys, mount_tmpfs):
    place = mount_tmpfs("ro,size=64k")
    mid = write_mid(tmp_path / "perf.mid", [0.0])
    rc = render(tmp_path, mid, place / "perf.wav")
    err = one_line_error(capsys)
    assert rc == 2 and "--out" in err and "Read-only file system" in err
    assert list(place.iterdir()) == []


# ---------------------------------------------------------------- pad samples

def test_pad_samples_that_are_not_regular_files_are_refused(bundle, tmp_path):
    """A link loop, a FIFO (opening it would wait for a writer forever) and a folder named
    *.wav: one line naming the preset key and the file, at once."""
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "folder.wav").mkdir()
    where = "my.toml: pads[3].sample"
    for name, says in (("a.wav", "cannot open it"), ("fifo.wav", "not a regular file"),
                       ("folder.wav", "not a regular file")):
        raised: list[str] = []

        def encode(path=tmp_path / name, raised=raised):
            try:
                encode_file(bundle, path, where)
            except SteerpadError as e:
                raised.append(str(e))

        worker = threading.Thread(target=encode, daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), f"{name}: still reading"
        (message,) = raised
        assert message.startswith(f"{where} {tmp_path / name}: {says}"), message


def test_a_long_pad_sample_is_read_only_as_far_as_it_is_used(bundle, tmp_path):
    """Ten minutes of 8 kHz audio as a pad sample: loading reads the one-shot's length of it,
    and gives the same sound (source audio and latents) as a file holding only its first 10 s."""
    rng = np.random.default_rng(0)
    t = np.arange(600 * 8000) / 8000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-(t % 1.0) * 4) + 0.01 * rng.standard_normal(t.size))
    sf.write(str(tmp_path / "long.wav"), audio.astype(np.float32), 8000, subtype="PCM_16")
    sf.write(str(tmp_path / "head.wav"), audio[:10 * 8000].astype(np.float32), 8000, subtype="PCM_16")
    tracemalloc.start()
    try:
        long = load_file_sound(bundle, tmp_path / "long.wav", "faithful")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16e6, peak  # the whole file, resampled to 44.1 kHz, would be ~100 MB
    head = load_file_sound(bundle, tmp_path / "head.wav", "faithful")
    assert np.array_equal(long.latents, head.latents) and np.array_equal(long.audio, head.audio)
    assert long.mode == "faithful" and long.rate == 8000  # it plays the file as read, at its own rate
    assert long.audio.shape == (int(np.ceil(bundle.max_frames * bundle.hop * 8000 / bundle.sample_rate)),
                                bundle.channels)
    assert np.array_equal(long.latents, encode_file(bundle, tmp_path / "head.wav"))  # the latents alone


def test_a_pad_sample_with_a_broken_header_is_refused(bundle, tmp_path, preset):
    sf.write(str(tmp_path / "odd.wav"), np.zeros(1000, np.float32), 100)  # 100 Hz: no one-shot rate
    with pytest.raises(SteerpadError, match=r"odd\.wav: sample rate 100 Hz is out of range"):
        encode_file(bundle, tmp_path / "odd.wav")
    # through the engine: the message names the preset file and key
    from steerpad.realtime.engine import load_pad_sources

    pads = list(preset.pads)
    pads[2] = replace(pads[2], kind="file", sample=tmp_path / "odd.wav")
    with pytest.raises(SteerpadError, match=r"default\.toml: pads\[3\]\.sample .*odd\.wav: sample rate"):
        load_pad_sources(bundle, replace(preset, pads=pads))


def test_an_smpte_timed_midi_file_is_named_as_such(tmp_path):
    """A header dividing time in SMPTE frames (the division's top bit) was reported as '0 ticks
    per beat' (a hostile pass)."""
    path = tmp_path / "smpte.mid"
    track = b"\x00\x99\x24\x64\x00\xff\x2f\x00"  # a note-on, the end of the track
    path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01\xe7\x28"
                     + b"MTrk" + len(track).to_bytes(4, "big") + track)
    with pytest.raises(SteerpadError, match=r"smpte\.mid: its header counts time in SMPTE frames per second"):
        read_performance(path, 48000)


def test_a_delta_time_longer_than_four_bytes_is_a_damaged_file(tmp_path):
    """mido reads a variable-length delta of any length: 50 bytes of it made a performance of
    1e102 s and the advice to pass --max-duration 1e102 (a hostile pass). The longest a standard
    MIDI file can hold is 4 bytes, 0x0FFFFFFF ticks; that one still reads."""
    def midi_file(delta: bytes) -> Path:
        track = delta + b"\x99\x24\x64" + b"\x00\xff\x2f\x00"  # a note-on, the end of the track
        path = tmp_path / f"delta{len(delta)}.mid"
        path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01\x01\xe0"
                         + b"MTrk" + len(track).to_bytes(4, "big") + track)
        return path

    with pytest.raises(SteerpadError, match=r"delta50\.mid: track 1 has a delta time longer than a MIDI "
                                            r"file's 4 bytes .*export a standard MIDI file"):
        read_performance(midi_file(b"\xff" * 49 + b"\x7f"), 48000)
    with pytest.raises(SteerpadError, match=r"delta4\.mid: the performance runs to .*--max-duration"):
        read_performance(midi_file(b"\xff\xff\xff\x7f"), 48000)  # 0x0FFFFFFF ticks: 3.2 days at 120 bpm


def test_an_output_name_too_long_for_the_file_system_is_bad_input(tmp_path, capsys):
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", channel=9, note=36, velocity=100)]))
    midi.save(str(tmp_path / "hit.mid"))
    assert main(["render", "--out", str(tmp_path / ("x" * 300 + ".wav")), str(tmp_path / "hit.mid")]) == 2
    err = capsys.readouterr().err
    assert "too long for the file system" in err and err.count("\n") == 1, err
