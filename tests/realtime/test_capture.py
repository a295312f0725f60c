"""Live capture (realtime/capture.py, keys.py): onset and end detection on synthetic input, files
that never overwrite, the [capture] preset table, the status-view keys; then with the chain
bundle, a capture through the input ring into a pad (and a failing encoder that keeps the pad's
sound), and on the JACK server a real drum hit played into steerpad's input port, captured into
a pad, played back and steered."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from steerpad.realtime.capture import default_kit_dir, save_latents, save_take
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.keys import DIGIT_S, KeyReader, LiveKeys, split_keys
from steerpad.realtime.onset import HitDetector
from steerpad.realtime.presets import load_preset

RATE = 48000
PRE = 720  # 15 ms at 48 kHz


def hit(seconds: float = 0.2, decay: float = 0.04, seed: int = 0) -> np.ndarray:
    """A drum-like hit [T, 1]: full level on its first sample, decaying tone + noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).uniform(-1, 1, t.size)
    x = np.exp(-t / decay) * (0.6 * np.cos(2 * np.pi * 180 * t) + 0.3 * noise)
    return x.astype(np.float32)[:, None]


def floor(seconds: float, db: float, seed: int = 1) -> np.ndarray:
    """Noise [T, 1] whose peak is `db` dBFS."""
    x = np.random.default_rng(seed).uniform(-1, 1, int(seconds * RATE))
    return (x / np.abs(x).max() * 10 ** (db / 20)).astype(np.float32)[:, None]


def run(detector: HitDetector, signal: np.ndarray, sizes=(128,), seed: int = 0):
    """Feed signal in blocks (sizes cycled, or random sizes up to 2000 if sizes is None): the
    take and the stream position when feed() returned it."""
    rng = np.random.default_rng(seed)
    i, k = 0, 0
    while i < signal.shape[0]:
        n = int(rng.integers(1, 2000)) if sizes is None else sizes[k % len(sizes)]
        k += 1
        take = detector.feed(signal[i:i + n])
        i += n
        if take is not None:
            return take, detector.position
    return None, detector.position


def detector(max_s: float = 1.5, **kw) -> HitDetector:
    return HitDetector(RATE, int(max_s * RATE), **kw)


# ---------------------------------------------------------------- detection


def test_pre_roll_keeps_the_attack_sample_exact():
    h = hit()
    signal = np.concatenate([floor(0.5, -70), h, np.zeros((RATE // 2, 1), np.float32)])
    take, _ = run(detector(), signal)
    assert take is not None and take.onset == PRE and take.onset_at == RATE // 2
    # Everything from 15 ms before the onset, the attack untouched, sample for sample.
    assert np.array_equal(take.audio[:PRE + h.shape[0]], signal[RATE // 2 - PRE:RATE // 2 + h.shape[0]])


def test_ends_on_silence_after_the_hold():
    h = hit()
    signal = np.concatenate([np.zeros((RATE // 4, 1), np.float32), h, np.zeros((RATE, 1), np.float32)])
    d = detector(hold_ms=100)
    take, returned_at = run(d, signal)
    assert take.ended == "silence"
    tail = 240  # TAIL_MS
    assert PRE + h.shape[0] - 50 <= take.audio.shape[0] <= PRE + h.shape[0] + tail
    assert np.all(take.audio[PRE + h.shape[0]:] == 0.0)  # only the silent tail was added
    end = RATE // 4 + h.shape[0]
    assert end + d.hold - 50 <= returned_at < end + d.hold + 128  # known one hold after the last sound


def test_ends_on_silence_over_a_noise_floor():
    """A floor above silence_db (-60) but under the threshold: the end is where the input falls
    back to the floor, not the one-shot length."""
    h = hit()
    quiet = floor(1.5, -45, seed=2)
    signal = np.concatenate([floor(0.3, -45, seed=3), h, quiet])
    take, _ = run(detector(max_s=1.5), signal)
    assert take.ended == "silence"
    assert take.audio.shape[0] < PRE + h.shape[0] + RATE // 10


def test_cuts_at_the_one_shot_length():
    t = np.arange(3 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[:, None]
    signal = np.concatenate([np.zeros((1000, 1), np.float32), tone])
    d = detector(max_s=1.0)
    take, returned_at = run(d, signal)
    start = take.onset_at - PRE
    assert take.ended == "max_length" and take.audio.shape[0] == RATE and 1000 <= take.onset_at < 1010
    assert returned_at - start < RATE + 128  # cut as soon as the length is reached
    assert np.array_equal(take.audio, signal[start:start + RATE])


def test_ignores_noise_below_the_threshold_then_takes_the_hit():
    noise = floor(2.0, -40)  # 4 dB under the -36 dB threshold
    d = detector()
    take, _ = run(d, noise)
    assert take is None and d.state == "listening"
    take, _ = run(d, np.concatenate([hit(), np.zeros((RATE // 2, 1), np.float32)]))
    assert take is not None and take.onset_at == noise.shape[0]
    assert np.array_equal(take.audio[:PRE], noise[-PRE:])  # the pre-roll comes from before


def test_block_sizes_do_not_change_the_take():
    signal = np.concatenate([floor(0.4, -70), hit(0.3), floor(0.5, -70, seed=4)])
    a, _ = run(detector(), signal, sizes=(128,))
    b, _ = run(detector(), signal, sizes=None, seed=5)
    c, _ = run(detector(), signal, sizes=(1, 7, 4096))
    assert a.ended == b.ended == c.ended == "silence"
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.audio, c.audio)


def test_primed_audio_gives_pre_roll_but_never_an_onset():
    d = detector()
    before = np.concatenate([hit(0.05, seed=6), floor(0.1, -70)])  # a hit before arming: ignored
    d.prime(before)
    take, _ = run(d, np.concatenate([hit(), np.zeros((RATE // 2, 1), np.float32)]), sizes=(64,))
    assert take.onset == PRE and np.array_equal(take.audio[:PRE], before[-PRE:])
    assert take.onset_at == before.shape[0]


def test_stereo_input_triggers_on_either_channel():
    h = hit()
    stereo = np.concatenate([np.zeros((5000, 2), np.float32),
                             np.concatenate([np.zeros_like(h), h], axis=1),
                             np.zeros((RATE // 2, 2), np.float32)])
    take, _ = run(detector(), stereo)
    assert take.audio.shape[1] == 2 and take.onset_at == 5000
    assert np.array_equal(take.audio[PRE:PRE + h.shape[0], 1:], h)


# ---------------------------------------------------------------- files


def test_files_are_never_overwritten(tmp_path):
    audio = hit()
    first = save_take(tmp_path, "pad03-x", audio, RATE)
    assert first == tmp_path / "pad03-x.wav"
    data, rate = sf.read(first, dtype="float32", always_2d=True)
    assert rate == RATE and np.array_equal(data, audio)  # 32-bit float: exactly what was captured
    second = save_take(tmp_path, "pad03-x", audio * 0.5, RATE)
    assert second == tmp_path / "pad03-x-2.wav"
    assert np.array_equal(sf.read(first, dtype="float32", always_2d=True)[0], audio)  # untouched
    (tmp_path / "pad03-x-3.npy").write_bytes(b"someone's latents")  # a stray .npy claims -3 too
    assert save_take(tmp_path, "pad03-x", audio, RATE) == tmp_path / "pad03-x-4.wav"
    z = np.ones((64, 4), np.float32)
    npy = save_latents(second, z)
    assert npy == tmp_path / "pad03-x-2.npy" and np.array_equal(np.load(npy), z)
    with pytest.raises(FileExistsError):
        save_latents(second, z * 2)
    assert np.array_equal(np.load(npy), z)
    assert (tmp_path / "pad03-x-3.npy").read_bytes() == b"someone's latents"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_files_without_hard_links_are_never_overwritten_either(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")  # as on FAT

    monkeypatch.setattr(os, "link", no_links)
    audio = hit()
    assert save_take(tmp_path, "p", audio, RATE) == tmp_path / "p.wav"
    assert save_take(tmp_path, "p", audio * 0.5, RATE) == tmp_path / "p-2.wav"
    assert np.array_equal(sf.read(tmp_path / "p.wav", dtype="float32", always_2d=True)[0], audio)
    assert save_latents(tmp_path / "p.wav", np.ones((2, 2), np.float32)) == tmp_path / "p.npy"
    with pytest.raises(FileExistsError):
        save_latents(tmp_path / "p.wav", np.zeros((2, 2), np.float32))
    assert np.load(tmp_path / "p.npy").sum() == 4
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p-2.wav", "p.npy", "p.wav"]


def test_default_kit_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_kit_dir("my set: live/2") == tmp_path / "steerpad" / "kits" / "my_set_live_2"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_kit_dir("x") == Path.home() / ".local" / "share" / "steerpad" / "kits" / "x"


def fake_engine(input_channels: int = 1):
    """What Capture reads of an Engine: an input ring, a bundle (encode: zeros), a preset with no
    pads (their mode: the bundle's), a controller, a render worker that publishes at once."""
    from types import SimpleNamespace

    from steerpad.realtime.bundle import Bundle
    from steerpad.realtime.ring import AudioRing

    n = 16
    bundle = SimpleNamespace(sample_rate=RATE, hop=256, max_frames=100, channels=1, default_mode="faithful",
                             encode=lambda x: np.zeros((1, 8, -(-x.shape[-1] // 256)), np.float32))
    bundle.latents_of = lambda audio, rate: Bundle.latents_of(bundle, audio, rate)  # the real one
    worker = SimpleNamespace(sources=[None] * n, rendered=[None] * n, errors=[""] * n,
                             stats=SimpleNamespace(errors=0))

    def set_source(pad, sound):
        worker.sources[pad], worker.rendered[pad] = sound, (sound, time.perf_counter())

    worker.set_source = set_source
    preset = SimpleNamespace(pads=(), pad_mode=lambda pad, default: default)
    return SimpleNamespace(input_channels=input_channels, in_ring=AudioRing(5 * RATE, 1), sample_rate=RATE,
                           bundle=bundle, preset=preset, worker=worker, monitor=False, capture=None,
                           controller=SimpleNamespace(pad_notes=list(range(36, 36 + n))))


def test_capture_needs_input_and_a_writable_kit_folder(tmp_path):
    from steerpad.realtime.capture import Capture
    from steerpad.realtime.presets import CaptureSpec

    with pytest.raises(SteerpadError, match="--input"):
        Capture(fake_engine(input_channels=0), CaptureSpec(), tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SteerpadError) as e:
        Capture(fake_engine(), CaptureSpec(), blocker / "kit").start()
    assert str(blocker / "kit") in str(e.value) and "--kit-dir" in str(e.value)


def test_a_take_that_cannot_be_saved_still_plays(tmp_path, monkeypatch):
    from steerpad.realtime import capture as capture_mod
    from steerpad.realtime.presets import CaptureSpec

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capture_mod, "save_take", disk_full)
    engine = fake_engine()
    cap = capture_mod.Capture(engine, CaptureSpec(), tmp_path).start()
    try:
        cap.arm(3)
        engine.in_ring.write(np.concatenate([hit(), np.zeros((RATE // 2, 1), np.float32)]))
        assert cap.wait_completed(1, 10)
    finally:
        cap.stop()
    r = cap.results[-1]
    assert r.wav is None and r.npy is None and r.error == ""
    sound = engine.worker.sources[3]
    assert sound is not None and sound.mode == "faithful" and sound.rate == RATE  # it plays ...
    assert sound.audio.shape == (round(r.seconds * RATE), 1) and sound.latents.shape[0] == 8
    assert "not saved" in cap.errors[3] and "No space left" in cap.errors[3]  # ... and says so
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the [capture] table


CONTROLLER = """
name = "Test pads"
[pads]
channel = 10
notes = [36, 37, 38, 39]
[knobs]
channel = 1
ccs = [70, 71, 72]
cc14 = [10]
"""


def preset_with(tmp_path: Path, capture: str, pads: int = 2, knobs: int = 1) -> Path:
    (tmp_path / "controllers").mkdir(exist_ok=True)
    (tmp_path / "controllers" / "t.toml").write_text(CONTROLLER.replace("[70, 71, 72]", "[10, 70, 71, 72]"))
    (tmp_path / "kick.wav").write_bytes(b"")
    body = ['controller = "t"'] + ['[[pads]]\nsample = "kick.wav"'] * pads
    body += [f'[[knobs]]\ndirection = "d{i}"' for i in range(knobs)]
    body += ["[capture]", textwrap.dedent(capture)]
    path = tmp_path / "p.toml"
    path.write_text("\n".join(body))
    return path


def test_capture_table_reads_and_defaults(tmp_path):
    p = load_preset(preset_with(tmp_path, "arm_cc = 20\nkit_dir = 'takes'\npre_roll_ms = 10\nchannel = 1"))
    c = p.capture
    assert (c.arm_cc, c.arm_note, c.channel, c.pre_roll_ms) == (20, None, 0, 10.0)
    assert c.kit_dir == (tmp_path / "takes").resolve()
    assert (c.threshold_db, c.silence_db, c.hold_ms) == (-36.0, -60.0, 100.0)
    # An unused pad's note may be the arm button (pad 4 here: two [[pads]]).
    assert load_preset(preset_with(tmp_path, "arm_note = 39")).capture.arm_note == 39


@pytest.mark.parametrize("table, words", [
    ("arm_note = 36", ["capture.arm_note", "pad 1", "pads[1]"]),
    ("arm_cc = 10", ["capture.arm_cc", "knob 1", "knobs[1]"]),
    ("arm_cc = 42", ["capture.arm_cc", "LSB", "10"]),
    ("threshold_db = -50\nsilence_db = -40", ["capture.silence_db", "below", "threshold_db"]),
    ("arm_key = 3", ["capture.arm_key", "allowed", "arm_cc"]),
    ("arm_cc = 128", ["capture.arm_cc", "0 to 127"]),
    ("channel = 17", ["capture.channel", "1-16"]),
])
def test_capture_table_errors(tmp_path, table, words):
    with pytest.raises(SteerpadError) as e:
        load_preset(preset_with(tmp_path, table))
    message = str(e.value)
    assert "\n" not in message and "p.toml" in message
    for w in words:
        assert w in message, message


def test_arm_note_on_another_channel_than_the_pads_is_fine(tmp_path):
    assert load_preset(preset_with(tmp_path, "arm_note = 36\nchannel = 2")).capture.arm_note == 36


# ---------------------------------------------------------------- keys


class FakeCapture:
    names = [""] * 16

    def __init__(self):
        self.calls = []

    def arm(self, pad=None):
        self.calls.append(("arm", pad))

    def disarm(self):
        self.calls.append(("disarm",))


class FakeEngine:
    monitor = False


def test_keys_arm_by_last_hit_or_number_and_cancel():
    now = [0.0]
    cap, engine = FakeCapture(), FakeEngine()
    keys = LiveKeys(engine, cap, clock=lambda: now[0])
    for k in "r12":
        keys.press(k)
    assert cap.calls == [("arm", None), ("arm", 0), ("arm", 11)]
    cap.calls.clear()
    keys.press("r")
    now[0] += DIGIT_S + 0.1
    keys.press("5")  # too late: not a pad number any more
    keys.press("x")
    assert cap.calls == [("arm", None), ("disarm",)]
    keys.press("r")
    keys.press("9")
    keys.press("9")
    assert cap.calls[-1] == ("arm", 8) and "no pad 99" in keys.message
    keys.press("m")
    assert engine.monitor is True
    keys.press("m")
    assert engine.monitor is False
    off = LiveKeys(engine, None)
    off.press("r")
    assert "--input" in off.message


def test_escape_sequences_are_not_keys():
    assert split_keys("r7\x1b[A") == ["r", "7"]  # an arrow key
    assert split_keys("\x1b[15~x\x1bOPm") == ["x", "m"]  # F5, F1
    assert split_keys("\x1bx") == []  # Alt+x
    assert split_keys("r\x1b") == ["r", "\x1b"]  # Esc alone, last in the read


def test_key_reader_uses_cbreak_and_restores_the_terminal():
    import termios

    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        got = []
        reader = KeyReader(got.append, fd=slave).start()
        assert reader.active
        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: keys arrive at once
        os.write(master, b"r7\x1b[A")  # r, 7, then an arrow key (an escape sequence: ignored)
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        reader.stop()
        assert got == ["r", "7"]
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
    r, w = os.pipe()
    try:
        assert not KeyReader(got.append, fd=r).start().active  # not a terminal: no keys, no change
    finally:
        os.close(r)
        os.close(w)


# ---------------------------------------------------------------- with the chain bundle (slow)

PORT = "steerpad-capture-test"
ARM_CC = 20
LOUDER = 1  # knob 2 = CC 71 on channel 1 in the generic map
CAPTURE_TABLE = f'\n[capture]\narm_cc = {ARM_CC}\nkit_dir = "takes"\n'


@pytest.fixture(scope="module")
def played(chain, tmp_path_factory):
    """The chain bundle, a preset (pads 1-4 from the held-out kit, pads 5-16 empty, knobs
    brighter and louder, [capture] arm_cc = 20) and a real snare from the held-out kit, mono at
    48 kHz [T]."""
    from steerpad.realtime.bundle import load_bundle
    from tests.chainbundle import write_preset

    kit = chain / "kits" / "synth_kit_6"
    path = write_preset(tmp_path_factory.mktemp("capture"), kit)
    path.write_text(path.read_text() + CAPTURE_TABLE)
    audio, rate = sf.read(sorted(kit.glob("*snare_hard_22*"))[0], dtype="float32", always_2d=True)
    snare = soxr.resample(audio.mean(axis=1), rate, RATE).astype(np.float32)
    return load_bundle(chain / "bundle"), load_preset(path), snare


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def feed(engine, audio: np.ndarray, block: int = 128) -> None:
    """Input through the audio callback's path (Engine.process), at twice real time."""
    out = np.zeros((block, 2), np.float32)
    x = audio.reshape(audio.shape[0], -1)
    for i in range(0, x.shape[0] - block + 1, block):
        engine.process(out, x[i:i + block])
        time.sleep(block / RATE / 2)


def padded(snare: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(RATE // 5, np.float32), snare, np.zeros(RATE // 2, np.float32)])


def status_text(engine, midi_crash: str | None = None) -> str:
    from types import SimpleNamespace

    from rich.console import Console

    from steerpad.realtime.status import StatusView

    stream = SimpleNamespace(device_name="test", xruns=0)
    midi = SimpleNamespace(port_name="test", connected=True, received=0, crash=midi_crash)
    console = Console(record=True, width=220, file=open(os.devnull, "w"))
    console.print(StatusView(engine, stream, midi).render())
    return console.export_text()


def test_the_status_view_names_a_service_thread_that_stopped(played):
    from steerpad.realtime.engine import Engine

    bundle, preset, _ = played
    with Engine(bundle, preset, RATE, 128, master=False) as engine:
        assert "stopped" not in status_text(engine)
        text = status_text(engine, midi_crash="RtMidiError: the port went")
    assert "stopped  midi: RtMidiError: the port went" in text, text


@pytest.mark.slow
def test_capture_through_the_ring_arms_by_midi_and_plays(played):
    from steerpad.realtime.capture import Capture
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.events import ControlChange, NoteOn

    bundle, preset, snare = played
    with Engine(bundle, preset, RATE, 128, master=False, input_channels=1) as engine:
        engine.start(wait=None)
        cap = Capture(engine, preset.capture, preset.capture.kit_dir).start()
        try:
            press = [ControlChange(0, ARM_CC, 1.0, 127), ControlChange(0, ARM_CC, 0.0, 0)]
            for e in press * 2:  # arm, then cancel: a second press
                engine.handle(e)
            assert wait_for(lambda: cap._presses == 2) and wait_for(lambda: cap.state == ("idle", None))
            for e in press:  # arm (the last-hit pad: none yet, so pad 1) ...
                engine.handle(e)
            assert wait_for(lambda: cap.state == ("armed", 0))
            engine.handle(NoteOn(9, 36 + 5, 100))  # ... and hit pad 6 (empty): the arm moves there
            assert wait_for(lambda: cap.state == ("armed", 5))
            assert "R" in status_text(engine).split(" 6 ")[1][:12]
            assert engine.unmapped == 0  # the arm CC was consumed, not counted as unmapped
            feed(engine, padded(snare))
            assert cap.wait_completed(1, 60)
            r = cap.results[-1]
            assert r.error == "" and r.ended == "silence" and r.pad == 5
            assert r.wav.parent == preset.capture.kit_dir and r.npy == r.wav.with_suffix(".npy")
            z = np.load(r.npy)
            assert z.shape[0] == bundle.latent_dim and z.shape[1] <= bundle.max_frames
            sound = engine.worker.sources[5]  # the take, in the mode the empty pad plays
            assert np.array_equal(sound.latents, z)
            assert sound.mode == preset.pad_mode(None, bundle.default_mode) and sound.rate == RATE
            assert np.array_equal(sound.audio, sf.read(r.wav, dtype="float32", always_2d=True)[0])
            assert engine.worker.rendered[5][0] is sound
            slot = engine.worker.slots[5]
            assert slot is not None and np.sqrt(np.mean(slot ** 2)) > 1e-3  # it sounds
            assert sound.faithful  # ... as itself: the take, bit-exact (knobs centred, same rate)
            take = sound.audio[:, [0, -1]]  # [T, 2]: mono spread to both sides
            assert slot.shape == take.shape and np.array_equal(slot, take)
            assert 0 < r.end_to_source_ms <= r.end_to_playable_ms < 10_000
            assert "take 1" in status_text(engine)
        finally:
            cap.stop()
    assert engine.capture is None


@pytest.mark.slow
def test_a_failing_encode_keeps_the_pad_and_the_take(played, monkeypatch):
    from steerpad.realtime.capture import Capture
    from steerpad.realtime.engine import Engine

    bundle, preset, snare = played
    with Engine(bundle, preset, RATE, 128, master=False, input_channels=1) as engine:
        engine.start(wait=None)
        cap = Capture(engine, preset.capture, preset.capture.kit_dir).start()
        try:
            snare_pad = 2
            slot, source = engine.worker.slots[snare_pad], engine.worker.sources[snare_pad]

            def explode(audio):
                raise RuntimeError("encoder exploded")

            monkeypatch.setattr(cap, "encode", explode)
            cap.arm(snare_pad)
            assert wait_for(lambda: cap.state == ("armed", snare_pad))
            feed(engine, padded(snare))
            assert cap.wait_completed(1, 60)
            err = cap.errors[snare_pad]
            assert "pad 3" in err and "encoding failed" in err and "encoder exploded" in err
            assert "keeps its previous sound" in err and "\n" not in err
            assert engine.worker.slots[snare_pad] is slot and engine.worker.sources[snare_pad] is source
            r = cap.results[-1]
            assert r.wav.is_file() and r.npy is None  # the take itself is kept
            assert "encoder exploded" in status_text(engine)
        finally:
            cap.stop()


def align(recorded: np.ndarray, played: np.ndarray) -> int:
    """Where `played` starts in `recorded` (cross-correlation peak)."""
    n = 1 << int(np.ceil(np.log2(recorded.size + played.size)))
    c = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(played, n)), n)
    lag = int(np.argmax(c))
    return lag if lag < n // 2 else lag - n


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


@pytest.mark.slow
def test_live_input_flags_and_capture_from_the_command_line(jack_server, chain, played, tmp_path, capsys):
    """`steerpad live --input`: a sequencer hits pad 6 and presses arm, a drum hit is played into
    steerpad's input port, and the take lands in --kit-dir."""
    from rig.jackrig import Player, Sender

    from steerpad.offline.cli import main

    _, preset, snare = played
    rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(preset.path), "--monitor",
               "--duration", "1"])
    assert rc == 2 and "--monitor needs --input" in capsys.readouterr().err
    kit = tmp_path / "cli-takes"
    done = []

    def perform() -> None:
        sender, player = Sender("steerpad-capture-cli-midi"), Player(1, "steerpad-capture-cli-play")
        try:
            deadline = time.monotonic() + 60
            steps = ((sender.connect, "steerpad-capture-cli:midi_in"),
                     (player.connect_to, "steerpad-capture-cli:in_"))
            for connect, name in steps:
                while time.monotonic() < deadline:  # once steerpad's MIDI port, then its stream, is up
                    try:
                        connect(name)
                        break
                    except LookupError:
                        time.sleep(0.1)
            time.sleep(0.3)
            sender.send([0x99, 36 + 5, 100])
            sender.send([0xB0, ARM_CC, 127], [0xB0, ARM_CC, 0])
            time.sleep(0.2)
            player.play(padded(snare))
            done.append(wait_for(lambda: any(kit.glob("pad06-*.npy")), 30))
        finally:
            sender.close()
            player.close()

    t = threading.Thread(target=perform)
    t.start()
    rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(preset.path),
               "--client-name", "steerpad-capture-cli", "--input", "--kit-dir", str(kit),
               "--duration", "7"])
    t.join()
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert done == [True], out
    assert "input" in out and "1 ch" in out and "take 1" in out and str(kit) in out
    assert [p.name[:6] for p in kit.glob("*.wav")] == ["pad06-"]


@pytest.fixture(scope="module")
def live_in(jack_server, played, tmp_path_factory):
    from rig.jackrig import live_rig

    from steerpad.realtime.capture import Capture

    bundle, preset, _ = played
    kit = tmp_path_factory.mktemp("live-takes")
    with live_rig(bundle, preset, PORT, input_channels=1) as rig:
        cap = Capture(rig.engine, preset.capture, kit).start()
        try:
            yield rig, cap, kit
        finally:
            cap.stop()


def matches_what_was_played(wav: np.ndarray, snare: np.ndarray) -> tuple[bool, int, int]:
    """(whether wav holds the snare, aligned, the attack sample-exact and all of it correlated,
    where the snare starts in wav, how many samples of it are compared)."""
    lag = align(wav, snare)
    onset = int(np.flatnonzero(np.abs(snare) > 10 ** (-36 / 20))[0])
    n = min(wav.size - lag, snare.size) - 240  # up to the faded tail
    ok = (lag >= 0 and n > RATE // 10
          and np.allclose(wav[lag + onset:lag + onset + 480], snare[onset:onset + 480], atol=1e-6)
          and np.corrcoef(wav[lag:lag + n], snare[:n])[0, 1] > 0.999)
    return bool(ok), lag, n


@pytest.mark.slow
def test_a_drum_hit_played_into_the_input_becomes_a_steerable_pad(live_in, played):
    from rig.jackrig import first_onset

    rig, cap, kit = live_in
    _, _, snare = played
    pad = 5  # pad 6: no sound in the preset
    onset = int(np.flatnonzero(np.abs(snare) > 10 ** (-36 / 20))[0])
    for attempt in range(1, 4):
        xruns = rig.stream.xruns
        rig.sender.send([0x99, 36 + pad, 100])  # hit pad 6, then press arm: arms the last-hit pad
        rig.sender.send([0xB0, ARM_CC, 127], [0xB0, ARM_CC, 0])
        assert wait_for(lambda: cap.state == ("armed", pad))
        assert wait_for(lambda: not rig.engine.sounding())  # the output is silent while it is played
        t = rig.player.play(padded(snare))
        assert cap.wait_completed(attempt, 60), cap.last_error
        r = cap.results[-1]
        assert r.error == "" and r.pad == pad and r.ended == "silence"
        assert r.wav.parent == kit and r.wav.is_file() and r.npy.is_file()
        wav, rate = sf.read(r.wav, dtype="float32", always_2d=True)
        assert rate == RATE and wav.shape[1] == 1
        # The WAV is exactly what reached steerpad's input (the fades aside) ...
        heard = rig.engine.in_ring.read(r.ring_start, wav.shape[0])[0]
        assert np.array_equal(wav[48:-240], heard[48:-240])
        # ... and that is what was played: aligned, the attack intact after 15 ms of pre-roll.
        ok, lag, n = matches_what_was_played(wav[:, 0], snare)
        if ok or rig.stream.xruns == xruns:
            break
        time.sleep(0.5)  # an xrun dropped a block on its way in (JACK, not capture): play it again
    assert ok, (attempt, lag, n)
    assert lag + onset == PRE  # the onset sits exactly one pre-roll in
    assert rms_db(wav[lag + n:, 0]) < rms_db(snare[:n]) - 40  # it ended on the snare's silence
    stems = sorted(p.name for p in kit.iterdir())
    assert stems == sorted([f.stem + ".npy" for f in kit.glob("*.wav")] + [f.name for f in kit.glob("*.wav")])
    print(f"capture: end -> source {r.end_to_source_ms:.0f} ms, -> playable {r.end_to_playable_ms:.0f} ms")
    # Monitoring is off by default: nothing of the input reached the output.
    assert first_onset(rig.recorder.audio_since(t)[:RATE]) is None

    # The pad now plays it ...
    _, centre = rig.hit(pad, listen=0.6)
    assert first_onset(centre) is not None
    # ... steered: the louder knob turns it up and down.
    engine, sender = rig.engine, rig.sender

    def turn(value: int) -> None:  # the knob, then its renders: the worker has the new alpha, all fresh
        sender.send([0xB0, 70 + LOUDER, value])
        assert wait_for(lambda: engine.knobs[LOUDER] == value / 127)
        assert wait_for(lambda: np.array_equal(engine.worker.alpha, engine.alpha()))
        assert engine.worker.wait_fresh(60)

    turn(127)
    _, up = rig.hit(pad, listen=0.6)
    turn(0)
    _, down = rig.hit(pad, listen=0.6)
    turn(64)
    levels = [rms_db(x[first_onset(x):first_onset(x) + 9600]) for x in (down, centre, up)]
    assert levels[2] > levels[1] + 1.0 > levels[0] + 2.0, levels
    assert rig.stream.callback_errors == 0


@pytest.mark.slow
def test_monitor_mixes_the_input_into_the_output(live_in, played):
    from rig.jackrig import first_onset

    rig, cap, _ = live_in
    _, _, snare = played
    assert cap.state == ("idle", None)
    completed = cap.completed
    rig.engine.monitor = True
    try:
        for _ in range(3):
            xruns = rig.stream.xruns
            t = rig.player.play(snare)
            time.sleep(0.5)
            heard = rig.recorder.audio_since(t)
            lag = align(heard[:, 0], snare)
            c = np.corrcoef(heard[lag:lag + RATE // 5, 0], snare[:RATE // 5])[0, 1]
            if c > 0.99 or rig.stream.xruns == xruns:
                break  # (an xrun drops a block on the way: play it again)
    finally:
        rig.engine.monitor = False
    onset = first_onset(heard)
    assert onset is not None and onset < 3 * rig.recorder.period  # the same cycle, or the next
    assert c > 0.99
    assert cap.completed == completed  # not armed: nothing was captured
