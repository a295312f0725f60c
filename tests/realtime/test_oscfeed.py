"""The visualizer feed: feature frames (realtime/features.py) over OSC and into JSON lines
(realtime/oscfeed.py), received by a real python-osc server on loopback.

The fast tests measure synthetic signals and a stub engine; the slow ones play the chain bundle
in a bounce and live on a JACK server, and check that what arrives tracks what was played."""

from __future__ import annotations

import json
import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.features import BAND_NAMES, AudioMeter, Frame, Measure, db01, hz01
from steerpad.realtime.oscfeed import LiveFeed, OscSender, parse_target
from steerpad.realtime.ring import AudioRing

SR = 48000


class Receiver:
    """A python-osc server on 127.0.0.1 (a free port) in a thread, keeping (arrival time,
    address, args) of every message. One serving thread (BlockingOSCUDPServer), not a thread per
    datagram (ThreadingOSCUDPServer): the feed sends hundreds of messages a second."""

    def __init__(self):
        self.messages: list[tuple[float, str, list]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.append(
            (time.monotonic(), address, list(args))))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def get(self, address: str, since: float = 0.0) -> list[list]:
        return [args for t, a, args in list(self.messages) if a == address and t >= since]

    def wait_for(self, address: str, since: float, test=lambda args: True, timeout: float = 2.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [args for args in self.get(address, since) if test(args)]
            if hits:
                return hits[0]
            time.sleep(0.01)
        recent = [(round(t - since, 3), args) for t, a, args in self.messages if a == address][-3:]
        raise AssertionError(f"no {address} matching the test arrived within {timeout} s; "
                             f"{len([m for m in self.messages if m[0] >= since])} messages arrived, "
                             f"the last of this address (s after since, args): {recent}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def until(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def frames_of(audio: np.ndarray, block: int, rate: float = 60.0) -> list[Measure]:
    meter = AudioMeter(SR, rate)
    out = []
    for i in range(0, audio.shape[0], block):
        out += meter.push(audio[i:i + block])
    return out


# ---------------------------------------------------------------- fast: the meter, the sender


def test_meter_measures_a_tone_burst_on_its_own_timeline():
    t = np.arange(SR) / SR
    audio = np.zeros((SR, 2), np.float32)
    start = 24_000 + 37  # not on a frame or chunk boundary
    audio[start:] = (0.5 * np.sin(2 * np.pi * 1000 * t[start:]))[:, None]
    frames = frames_of(audio, 128)
    assert len(frames) == 60 and [f.index for f in frames] == list(range(60))
    assert frames[-1].time == pytest.approx(1.0)
    # Whatever the block size, the same frames (the timeline is the samples', not the blocks').
    assert frames_of(audio, 1000) == frames and frames_of(audio, SR) == frames
    hit = start * 60 // SR  # the frame whose samples include the burst's start
    assert [f.index for f in frames if f.onset] == [hit]
    for _, _, rms, peak, centroid, bands, _ in frames[:hit]:
        assert rms == peak == centroid == 0.0 and bands == (0.0,) * 4
    _, _, rms, peak, centroid, bands, _ = frames[-1]
    assert rms == pytest.approx(db01(10 * math.log10(0.125)), abs=1e-3)  # -9.03 dBFS
    assert peak == pytest.approx(db01(20 * math.log10(0.5)), abs=1e-3)
    assert centroid == pytest.approx(hz01(1000), abs=0.01)
    sub, low_mid, high_mid, air = bands
    assert min(low_mid, high_mid) > 0.6 and max(sub, air) < 0.3  # 1 kHz is their border


def test_the_meter_spectrum_is_the_descriptors_one():
    from steerpad.realtime.descriptors import SPECTRAL_NAMES, spectral_features

    meter = AudioMeter(SR, 60)
    frames = np.random.default_rng(1).standard_normal((3, meter.window)) * [[1.0], [1e-3], [0.0]]
    want = spectral_features(frames, SR)
    for x, w in zip(frames, want):
        centroid, bands = meter.spectrum(x)
        assert centroid == pytest.approx(w[SPECTRAL_NAMES.index("centroid")], rel=1e-9, abs=1e-9)
        assert bands == pytest.approx([w[SPECTRAL_NAMES.index(f"band_{b}")] for b in BAND_NAMES], abs=1e-12)


def test_onsets_mark_each_hit_even_over_a_decaying_tail():
    rng = np.random.default_rng(0)
    audio = np.zeros((SR, 2), np.float32)
    starts = [4000, 10_000, 16_000, 22_000, 40_000]  # 125 ms apart, then a gap
    for i, s in enumerate(starts):
        n = SR - s
        level = 0.5 if i != 3 else 0.35  # one softer hit, 3 dB down, on the tail
        env = level * np.exp(-np.arange(n) / (0.08 * SR))
        audio[s:] += (env * rng.standard_normal(n))[:, None].astype(np.float32)
    frames = frames_of(audio, 256)
    got = [f.index for f in frames if f.onset]
    assert got == [s * 60 // SR for s in starts]
    # The rising half of a slow swell is no hit.
    swell = np.zeros((SR, 2), np.float32)
    swell[:, 0] = swell[:, 1] = 0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR) * np.linspace(0.01, 1, SR)
    assert sum(f.onset for f in frames_of(swell, 256)[10:]) == 0


def test_meter_refuses_a_rate_it_cannot_frame():
    with pytest.raises(ValueError, match="rate"):
        AudioMeter(SR, 0)
    with pytest.raises(ValueError, match="rate"):
        AudioMeter(SR, SR)


def test_parse_target():
    assert parse_target("127.0.0.1:9001") == ("127.0.0.1", 9001)
    assert parse_target("9002") == ("127.0.0.1", 9002)
    assert parse_target("studio.local") == ("studio.local", 9000)
    assert parse_target("[::1]:7000") == ("::1", 7000)
    for bad in ("", "host:", "host:0", "host:70000", "host:port", "::1", "a b:9000"):
        with pytest.raises(SteerpadError, match="not a HOST:PORT"):
            parse_target(bad)


@pytest.mark.parametrize("command", ["render", "live"])
@pytest.mark.parametrize("option, message", [(["--osc", "studio:0"], "--osc 'studio:0': not a HOST:PORT"),
                                             (["--osc-rate", "0"], "--osc-rate 0.0: must be more than 0")])
def test_the_cli_refuses_a_bad_target_or_rate_in_one_line(command, option, message, tmp_path, capsys):
    from steerpad.offline.cli import main

    (tmp_path / "perf.mid").write_bytes(b"")
    where = [str(tmp_path / "perf.mid"), "--out", str(tmp_path / "x.wav")] if command == "render" else []
    rc = main([command, *where, "--bundle", str(tmp_path / "nope"), "--preset", str(tmp_path / "nope.toml"),
               *option])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_frames_reach_a_python_osc_server_as_the_readme_says(receiver):
    frame = Frame(3, 0.0667, 0.5, 0.75, 0.25, (0.1, 0.2, 0.3, 0.4), 1, voices=2, pads=[(3, 0.8), (1, 1.0)],
                  knobs={"brighter": 0.5, "louder": 1.0}, probe={"centroid": 0.75},
                  features=[(17, 2.5), (3, 1.25)])
    sender = OscSender("127.0.0.1", receiver.port)
    sender.send(frame.messages())
    want = [("/steerpad/level", [0.5, 0.75]), ("/steerpad/centroid", [0.25]),
            ("/steerpad/bands", [0.1, 0.2, 0.3, 0.4]), ("/steerpad/onset", [1]), ("/steerpad/voices", [2]),
            ("/steerpad/hits", [3, 1]), ("/steerpad/pad", [3, 0.8]), ("/steerpad/pad/3", [0.8]),
            ("/steerpad/pad", [1, 1.0]), ("/steerpad/pad/1", [1.0]), ("/steerpad/knob/brighter", [0.5]),
            ("/steerpad/knob/louder", [1.0]), ("/steerpad/probe/centroid", [0.75]),
            ("/steerpad/features", [17, 2.5, 3, 1.25])]
    deadline = time.monotonic() + 2
    while len(receiver.messages) < len(want) and time.monotonic() < deadline:
        time.sleep(0.01)
    got = [(a, args) for _, a, args in receiver.messages]
    assert [a for a, _ in got] == [a for a, _ in want]
    for (_, g), (_, w) in zip(got, want):
        assert [type(x) for x in g] == [type(x) for x in w]  # ints stay ints, floats floats
        assert g == pytest.approx(w, abs=1e-6)  # OSC floats are float32
    assert sender.sent == len(want) and sender.errors == 0
    line = json.loads(json.dumps(frame.to_json()))
    assert line["frame"] == 3 and [m[0] for m in line["messages"]] == [a for a, _ in want]


def test_osc_monitor_prints_what_arrives_and_replays_a_feature_file(receiver, tmp_path):
    """steerpad-osc-monitor (scripts/osc_monitor): the example receiver prints each message;
    --replay sends a features file at its frames' pace."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "steerpad-osc-monitor"  # the console script
    with socket_nobody_listens() as port:
        monitor = subprocess.Popen([script, "--port", str(port), "--count", "2",
                                    "--only", "/steerpad/pad"], stdout=subprocess.PIPE, text=True)
        try:
            assert "listening" in monitor.stdout.readline()
            OscSender("127.0.0.1", port).send([("/steerpad/level", [0.5, 0.5]), ("/steerpad/pad", [3, 0.5]),
                                               ("/steerpad/pad", [1, 1.0])])
            out, _ = monitor.communicate(timeout=10)
        finally:
            monitor.kill()
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].split()[1:] == ["/steerpad/pad", "3", "0.500"], out
    frames = [Frame(k, (k + 1) / 10, 0.5, 0.5, 0.0, (0.0,) * 4, int(k == 2)).to_json() for k in range(4)]
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(f) + "\n" for f in frames))
    t0 = time.monotonic()
    subprocess.run([script, "--replay", tmp_path / "f.jsonl",
                    "--to", f"127.0.0.1:{receiver.port}"], check=True, timeout=10)
    assert time.monotonic() - t0 >= 0.4  # paced by the frames' times, 0.1 s apart
    assert until(lambda: len(receiver.get("/steerpad/onset")) == 4)
    assert receiver.get("/steerpad/onset") == [[0], [0], [1], [0]]


def test_a_sender_to_nowhere_counts_and_never_raises():
    bogus = OscSender("no-such-host.invalid", 9000)
    t0 = time.monotonic()
    bogus.send([("/steerpad/onset", [1])] * 3)
    bogus.send([("/steerpad/onset", [0])])  # within the retry wait: no second lookup
    assert bogus.errors == 4 and bogus.sent == 0 and "no-such-host.invalid" in bogus.last_error
    assert time.monotonic() - t0 < 15
    with socket_nobody_listens() as port:
        closed = OscSender("127.0.0.1", port)
        for _ in range(50):
            closed.send([("/steerpad/level", [0.5, 0.5])])
        assert closed.sent + closed.errors == 50  # sent into the void, or refused: counted either way
        closed.close()


class socket_nobody_listens:
    """A UDP port that was free a moment ago and has no listener."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def __exit__(self, *exc) -> None:
        pass


def stub_engine(ring: AudioRing) -> SimpleNamespace:
    """What the feed reads of an Engine, for the fast LiveFeed test (the slow ones use the real one)."""
    knob = SimpleNamespace(direction="louder")
    return SimpleNamespace(out_ring=ring, sample_rate=SR, hits=[], knobs=[0.25],
                           preset=SimpleNamespace(knobs=[knob]), sounding=lambda: [],
                           worker=SimpleNamespace(analysis=[]))


def test_render_sends_its_frames_in_real_time_unless_told_to_hurry(receiver, tmp_path):
    """`render --osc` sends each frame at its time in the audio (a visualizer sees the bounce at
    the pace it plays); `--osc-fast` as fast as it renders. (Before the module's live rig opens:
    a render opens the process's one master bus.) Every hit arrives at its own
    /steerpad/pad/<n> address and in /steerpad/hits."""
    import mido
    import soundfile as sf

    from steerpad.offline.cli import main

    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: pads 1 and 3 together, then pad 2
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track += [mido.Message("note_on", channel=9, note=36, velocity=100, time=0),
              mido.Message("note_on", channel=9, note=38, velocity=64, time=0),
              mido.Message("note_on", channel=9, note=37, velocity=127, time=480)]
    mid.save(str(tmp_path / "p.mid"))
    target = f"127.0.0.1:{receiver.port}"
    took = {}
    for fast in (False, True):
        out = tmp_path / f"x{int(fast)}.wav"
        since = time.monotonic()
        assert main(["render", str(tmp_path / "p.mid"), "--out", str(out), "--osc", target,
                     *(["--osc-fast"] if fast else [])]) == 0
        took[fast] = time.monotonic() - since
        assert until(lambda since=since: len(receiver.get("/steerpad/pad/2", since)) == 1)
        assert receiver.get("/steerpad/pad/1", since) == [[pytest.approx(100 / 127, abs=1e-3)]]
        assert sorted(map(tuple, filter(None, receiver.get("/steerpad/hits", since)))) == [(1, 3), (2,)]
    seconds = sf.info(str(tmp_path / "x0.wav")).duration
    assert took[False] >= seconds - 0.1 > took[True], (took, seconds)


def test_the_read_out_follows_the_newest_voice_and_merges_features():
    """EngineTap.sounding on a stub engine: the probe of the newest analysed voice at its current
    latent frame; features merged over voices, each at its largest magnitude, strongest first."""
    from steerpad.realtime.features import EngineTap

    def analysis(bins, index, value, frames=4):
        return SimpleNamespace(probe={"centroid": np.asarray(bins, np.float32)}, frame_s=0.05,
                               top_index=np.tile(np.asarray(index), (frames, 1)),
                               top_value=np.tile(np.asarray(value, np.float32), (frames, 1)))

    voices = [(0, 0.12), (1, 0.01), (2, 0.02), (3, 0.5)]  # pad 1 has no analysis; pad 3 ran past its end
    engine = stub_engine(AudioRing(16))
    engine.sounding = lambda: voices
    engine.worker.analysis = [analysis([0, 0.25, 0.5, 0.75], [5, 9], [3.0, 1.0]), None,
                              analysis([1, 0, 0, 0], [9, 7], [2.0, 0.5]),
                              analysis([0.5] * 4, [1], [99.0])]
    n, probe, features = EngineTap(engine).sounding()
    assert n == 4
    assert probe == {"centroid": 1.0}  # pad 2's frame 0: the newest voice with an analysis
    assert features == [(5, 3.0), (9, 2.0), (7, 0.5)]
    voices[:] = [(0, 0.12)]
    assert EngineTap(engine).sounding() == (1, {"centroid": 0.5}, [(5, 3.0), (9, 1.0)])  # frame 2
    voices[:] = []
    assert EngineTap(engine).sounding() == (0, {}, [])


def test_live_feed_follows_the_ring_and_folds_a_stall_into_one_frame(receiver):
    ring = AudioRing(2 * SR, 2)
    engine = stub_engine(ring)
    block = np.full((800, 2), 0.1, np.float32)
    with LiveFeed(engine, OscSender("127.0.0.1", receiver.port), rate=60) as feed:
        t0 = time.monotonic()
        for i in range(30):  # half a second of audio in real time
            ring.write(block)
            time.sleep(max(0.0, t0 + (i + 1) / 60 - time.monotonic()))
        assert until(lambda: feed.frames == 30) and feed.skipped == 0
        assert until(lambda: len(receiver.get("/steerpad/level")) == 30)
        levels = receiver.get("/steerpad/level")
        assert levels[-1][0] == pytest.approx(db01(-20), abs=1e-4)
        assert receiver.get("/steerpad/knob/louder")[-1] == [0.25]
        # A stall: a second of audio at once, with a hit in it. One frame goes out, with the onset.
        burst = np.zeros((SR, 2), np.float32)
        burst[30_000:] = 0.5
        since = time.monotonic()
        ring.write(burst)
        assert until(lambda: feed.frames == 31) and feed.skipped == 59
        assert until(lambda: receiver.get("/steerpad/onset", since) == [[1]])
        assert feed.errors == 0 and feed.lost == 0 and feed.running
    assert not feed.running and feed.cpu_s > 0


# ---------------------------------------------------------------- slow: the chain bundle played

SNARE = 2  # pad 3 on the generic map (note 38); 1-based on the wire
BRIGHTER, LOUDER = 0, 1  # knobs 1 and 2: CC 70 and 71 on channel 1


def args_of(frame: dict, address: str) -> list[list]:
    return [m[1:] for m in frame["messages"] if m[0] == address]


def performance(path):
    """Snare hits 0.5 s apart with knob moves between them: centre, louder up, louder down,
    centre, brighter up, brighter down."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks a second
    track = mido.MidiTrack()
    mid.tracks.append(track)
    moves = [None, (LOUDER, 127), (LOUDER, 0), (LOUDER, 64), (BRIGHTER, 127), (BRIGHTER, 0)]
    last = 0
    for i, move in enumerate(moves):
        at = i * 480
        if move is not None:
            track.append(mido.Message("control_change", channel=0, control=70 + move[0], value=move[1],
                                      time=at - 48 - last))
            last = at - 48
        track.append(mido.Message("note_on", channel=9, note=36 + SNARE, velocity=100, time=at - last))
        last = at
    mid.save(path)
    return [i * 0.5 for i in range(len(moves))]


def after(frames: list[dict], t: float, address: str, seconds: float = 0.1) -> np.ndarray:
    """The first argument of `address` in the frames starting in [t, t + seconds)."""
    return np.array([args_of(f, address)[0][0] for f in frames if t <= f["time"] - 1 / 60 < t + seconds])


def level_db(rms01: np.ndarray) -> float:
    """The mean power of frames given as RMS 0-1 (-60..0 dBFS), in dBFS."""
    return float(10 * np.log10(np.mean(10 ** ((rms01 * 60 - 60) / 10))))


@pytest.fixture(scope="module")
def bounced(chain, tmp_path_factory):
    """The performance rendered twice by `steerpad render --features`, once also sent over OSC:
    (hit times, the first file's frames, both files' bytes, the OSC messages received)."""
    from steerpad.offline.cli import main
    from tests.chainbundle import write_preset

    folder = tmp_path_factory.mktemp("oscbounce")
    preset = write_preset(folder, chain / "kits" / "synth_kit_6")
    hits = performance(folder / "perf.mid")
    receiver = Receiver()
    files = []
    try:
        for i, osc in enumerate(([f"--osc=127.0.0.1:{receiver.port}"], [])):
            files.append(folder / f"features{i}.jsonl")
            rc = main(["render", str(folder / "perf.mid"), "--bundle", str(chain / "bundle"),
                       "--preset", str(preset), "--out", str(folder / f"perf{i}.wav"),
                       "--features", str(files[-1]), *osc])
            assert rc == 0
        time.sleep(0.3)
    finally:
        receiver.close()
    frames = [json.loads(line) for line in files[0].read_text().splitlines()]
    return hits, frames, [f.read_bytes() for f in files], receiver.messages


@pytest.mark.slow
def test_a_bounce_writes_the_same_feature_file_every_time(bounced):
    hits, frames, (first, second), received = bounced
    assert first == second
    assert [f["frame"] for f in frames] == list(range(len(frames)))
    assert frames[-1]["time"] == pytest.approx(len(frames) / 60, abs=1e-6)
    # ... and it is what went out over OSC while rendering, as fast as it rendered: in order, and
    # all of it unless the receiving thread fell behind (UDP drops then; a loaded machine).
    written = [m for f in frames for m in f["messages"]]
    i = 0
    for _, address, args in received:  # each is the next written message, or a later one
        while i < len(written) and not (written[i][0] == address and args == pytest.approx(written[i][1:])):
            i += 1
        assert i < len(written), f"{address} {args} arrived but was not written (or out of order)"
        i += 1
    assert len(received) > 0.9 * len(written)


@pytest.mark.slow
def test_bounce_frames_show_each_hit_as_an_onset_and_a_pad_event(bounced):
    hits, frames, _, _ = bounced
    onsets = [f["frame"] for f in frames if args_of(f, "/steerpad/onset") == [[1]]]
    starts = [round(t * 60) for t in hits]  # hits start on frame boundaries here
    assert set(starts) <= set(onsets)
    # No second onset in a hit's first 100 ms; any other is a faint blip the decoder made.
    for k in set(onsets) - set(starts):
        assert not any(0 < k - s <= 6 for s in starts), (k, starts)
        assert args_of(frames[k], "/steerpad/level")[0][0] < db01(-40), k
    pads = [(f["frame"], args) for f in frames for args in args_of(f, "/steerpad/pad")]
    assert [args for _, args in pads] == [[SNARE + 1, pytest.approx(100 / 127, abs=1e-4)]] * len(hits)
    for (frame, _), t in zip(pads, hits):
        assert abs(frame - t * 60) <= 1  # the first frame completed after the block that played it
    for f in frames:
        for address in ("/steerpad/level", "/steerpad/centroid", "/steerpad/bands"):
            (args,) = args_of(f, address)
            assert all(0.0 <= v <= 1.0 for v in args)


@pytest.mark.slow
def test_bounce_level_follows_the_louder_knob(bounced):
    hits, frames, _, _ = bounced
    knob = {round(f["time"] * 60): args_of(f, "/steerpad/knob/louder")[0][0] for f in frames}
    assert [knob[round(t * 60) + 1] for t in hits[:4]] == [0.5, 1.0, 0.0, pytest.approx(64 / 127, abs=1e-4)]
    centre, up, down = (level_db(after(frames, t, "/steerpad/level")) for t in hits[:3])
    assert up > centre + 1.0 > down + 2.0, (down, centre, up)


@pytest.mark.slow
def test_bounce_probe_and_features_read_what_sounds(bounced, chain):
    """While a voice sounds: every probe's read-out (0-1) and the strongest SAE features; the
    loudness read-out follows the louder knob; nothing of the kind when nothing sounds."""
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.probes import ProbeReader

    hits, frames, _, _ = bounced
    bundle = load_bundle(chain / "bundle")
    descriptors = set(ProbeReader(bundle).descriptors)
    assert "loudness" in descriptors
    for f in frames:
        probe = {m[0].rsplit("/", 1)[1]: m[1] for m in f["messages"] if m[0].startswith("/steerpad/probe/")}
        features = args_of(f, "/steerpad/features")
        if args_of(f, "/steerpad/voices") == [[0]]:
            assert not probe and not features
            continue
        assert set(probe) == descriptors and all(0.0 <= v <= 1.0 for v in probe.values())
        (flat,) = features
        index, value = flat[0::2], flat[1::2]
        assert 0 < len(index) <= 8 and len(set(index)) == len(index)
        assert all(isinstance(i, int) and 0 <= i < bundle.n_features for i in index)
        assert value == sorted(value, reverse=True)
    def read_out(t: float) -> float:  # the loudness bin over the hit's first 0.4 s, mean
        return float(np.mean([a[0][0] for f in frames if t <= f["time"] - 1 / 60 < t + 0.4
                              and (a := args_of(f, "/steerpad/probe/loudness"))]))

    centre, up, down = (read_out(t) for t in hits[:3])
    assert up >= centre >= down and up > down, (down, centre, up)


@pytest.mark.slow
def test_bounce_centroid_follows_the_brighter_knob(bounced):
    hits, frames, _, _ = bounced
    centre, up, down = (float(np.mean(after(frames, t, "/steerpad/centroid"))) for t in hits[3:6])
    assert up > centre > down, (down, centre, up)


# ---------------------------------------------------------------- slow: live on JACK

PORT = "steerpad-osc-test"


@pytest.fixture(scope="module")
def live(jack_server, chain, tmp_path_factory):
    """steerpad live on JACK (tests/rig/jackrig.live_rig) with a LiveFeed at 60 Hz to a Receiver."""
    from rig.jackrig import live_rig

    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.presets import load_preset
    from tests.chainbundle import write_preset

    bundle = load_bundle(chain / "bundle")
    preset = load_preset(write_preset(tmp_path_factory.mktemp("osclive"), chain / "kits" / "synth_kit_6"))
    receiver = Receiver()
    try:
        with live_rig(bundle, preset, PORT) as rig:
            with LiveFeed(rig.engine, OscSender("127.0.0.1", receiver.port), rate=60) as feed:
                yield rig, feed, receiver
    finally:
        receiver.close()


def set_knob(rig, knob: int, value: int) -> None:
    """Turn a knob (a short sweep from where it is, as a hand does) and wait for the re-renders.
    The last value is sent again until it arrives: an overloaded JACK server can lose MIDI."""
    engine = rig.engine
    now = round(engine.knobs[knob] * 127)
    for v in np.linspace(now, value, 6).round().astype(int):
        rig.sender.send([0xB0, 70 + knob, int(v)])
    assert until(lambda: abs(engine.knobs[knob] - value / 127) < 1e-6 or rig.sender.send(
        [0xB0, 70 + knob, value]) < 0, timeout=10)
    assert engine.worker.wait_fresh(60)


def hit(rig, listen: float) -> tuple[int, np.ndarray]:
    """rig.hit(SNARE), sent again if the engine never played it (MIDI lost on an overloaded JACK
    server is the rig's trouble, not the feed's)."""
    for _ in range(3):
        played = rig.engine.played
        t, audio = rig.hit(SNARE, listen=listen)
        if until(lambda played=played: rig.engine.played > played, timeout=0.2):
            return t, audio
    raise AssertionError("three note-ons in a row never reached the engine")


def received_frames(receiver, since: float) -> list[dict[str, list]]:
    """The messages received since `since`, grouped into frames (each starts with /steerpad/level)."""
    frames: list[dict[str, list]] = []
    for t, address, args in list(receiver.messages):
        if t >= since and (frames or address == "/steerpad/level"):
            if address == "/steerpad/level":
                frames.append({})
            frames[-1][address] = args
    return frames


def live_hit(rig, receiver, address: str = "/steerpad/level", listen: float = 0.4) -> list[list]:
    """Hit the snare; `address`'s args in the 6 frames (100 ms) from the hit's onset frame on."""
    since = time.monotonic()
    hit(rig, listen)
    time.sleep(0.05)  # the last frames' way out
    frames = received_frames(receiver, since)
    onsets = [i for i, f in enumerate(frames) if f.get("/steerpad/onset") == [1]]
    assert onsets, "no onset arrived after the hit"
    return [f[address] for f in frames[onsets[0]:onsets[0] + 6]]


@pytest.mark.slow
def test_live_hit_arrives_as_onset_pad_and_level(live):
    rig, feed, receiver = live
    since = time.monotonic()
    hit(rig, listen=0.0)
    pad = receiver.wait_for("/steerpad/pad", since, timeout=1.0)
    onset = receiver.wait_for("/steerpad/onset", since, lambda args: args == [1], timeout=1.0)
    assert pad == [SNARE + 1, pytest.approx(110 / 127, abs=1e-4)] and onset == [1]
    arrived = max(t for t, a, args in receiver.messages if t >= since and (a, args) in (
        ("/steerpad/pad", pad), ("/steerpad/onset", [1])))
    assert arrived - since < 0.25  # ~25 ms (a frame, a poll, JACK's cycles); a loaded machine, more
    time.sleep(0.4)
    levels = live_hit(rig, receiver)
    assert max(rms for rms, _ in levels) > 0.3 and max(peak for _, peak in levels) > 0.4
    knobs = receiver.get("/steerpad/knob/louder", since)
    assert knobs and knobs[-1] == [pytest.approx(rig.engine.knobs[LOUDER], abs=1e-4)]
    assert rig.stream.callback_errors == 0 and feed.errors == 0 and feed.sender.errors == 0


@pytest.mark.slow
def test_live_level_follows_the_louder_knob(live):
    rig, feed, receiver = live
    try:
        levels = {}
        for value in (64, 127, 0):
            set_knob(rig, LOUDER, value)
            since = time.monotonic()
            want = pytest.approx(value / 127, abs=1e-4)
            receiver.wait_for("/steerpad/knob/louder", since, lambda args, want=want: args[0] == want)
            levels[value] = level_db(np.array([rms for rms, _ in live_hit(rig, receiver)]))
        assert levels[127] > levels[64] + 1.0 > levels[0] + 2.0, levels
    finally:
        set_knob(rig, LOUDER, 64)
    assert rig.stream.callback_errors == 0


@pytest.mark.slow
def test_live_centroid_follows_the_brighter_knob(live):
    rig, feed, receiver = live
    try:
        centroid = {}
        for value in (64, 127, 0):
            set_knob(rig, BRIGHTER, value)
            centroid[value] = float(np.mean(live_hit(rig, receiver, "/steerpad/centroid")))
        assert centroid[127] > centroid[64] > centroid[0], centroid
    finally:
        set_knob(rig, BRIGHTER, 64)


@pytest.mark.slow
def test_an_unreachable_visualizer_never_disturbs_playback(live):
    from rig.jackrig import first_onset

    rig, _, _ = live
    with socket_nobody_listens() as port:
        feeds = [LiveFeed(rig.engine, OscSender("127.0.0.1", port)).start(),
                 LiveFeed(rig.engine, OscSender("no-such-visualizer.invalid", 9000)).start()]
        try:
            for _ in range(4):
                _, audio = hit(rig, listen=0.35)
                assert first_onset(audio) is not None
        finally:
            for f in feeds:
                f.stop()
    closed, bogus = feeds
    assert min(f.frames + f.skipped for f in feeds) > 60  # both kept making frames
    assert closed.errors == bogus.errors == 0  # ... with no trouble of their own
    assert bogus.sender.sent == 0 and bogus.sender.errors > 0
    assert "no-such-visualizer" in bogus.sender.last_error
    assert rig.stream.callback_errors == 0

