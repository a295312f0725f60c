"""The live engine's benchmarks (registered in bench.py): knob -> fresh render in each render mode
(live_render), the audio callback's load (live_callback), a knob move heard (live_modulation),
on a real JACK server trigger latency and xruns beside a plain JACK client (live_jack), the
visualizer feed's cost beside the callback (live_oscfeed), capture -> playable (live_capture),
and `steerpad render`'s bounce of a CC-dense performance (bounce_cc_dense) and its memory over
10 minutes (bounce_10min).

All but live_modulation play a bundle exported from random weights (random_bundle: the `small`
VAE, a 4096/k32 SAE, 5 directions, 32 kit entries, 16 of 1 s and 16 of 0.1 s, each with a source
one-shot; --quick: `tiny`, 512/k16), so they measure the engine and the model size, not a
trained sound. live_modulation plays the shipped bundle and preset (models/default,
presets/default.toml).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
"""The source tree (models/default, presets/)."""
N_PADS = 16
DIRECTIONS = ("brighter", "boomier", "punchier", "louder", "higher")


def random_bundle(folder: Path, config: str = "small", n_features: int = 4096, k: int = 32) -> Path:
    """Export a playable bundle with random weights and 2 x N_PADS kit entries: `long1..16` of
    1 s and `short1..16` of 0.1 s (0.1 s rounds up to one latent frame, 2048 samples)."""
    from safetensors.torch import save_file

    from steerpad.offline.export import export_bundle, load_steering
    from steerpad.offline.sae import SAEConfig, TopKSAE
    from steerpad.offline.vae import OobleckVAE, get_config

    torch.manual_seed(0)
    cfg = get_config(config)
    vae = OobleckVAE(cfg).eval()
    sae = TopKSAE(SAEConfig(d_in=cfg.latent_dim, n_features=n_features, k=k)).eval()
    g = torch.Generator().manual_seed(1)
    d = torch.randn(len(DIRECTIONS), n_features, generator=g)
    steering_dir = folder / "steering"
    steering_dir.mkdir(parents=True)
    tensors = {"directions": d / d.norm(dim=1, keepdim=True)}
    for name in DIRECTIONS:
        tensors[f"probe.{name}.weight"] = torch.zeros(4, n_features)
        tensors[f"probe.{name}.bias"] = torch.zeros(4)
        tensors[f"probe.{name}.edges"] = torch.linspace(0, 1, 5)
    save_file(tensors, str(steering_dir / "directions.safetensors"))
    (steering_dir / "directions.json").write_text(json.dumps({
        "directions": [{"name": n, "descriptor": n, "unit": "", "alpha_min": -2.0, "alpha_max": 2.0,
                        "polarity": 1} for n in DIRECTIONS],
        "probes": {n: {"binning": "quantile", "n_bins": 4} for n in DIRECTIONS},
        "descriptors": {n: {"unit": "", "mean": 0.0, "std": 1.0} for n in DIRECTIONS}}))
    kit = []
    for kind, seconds in (("long", 1.0), ("short", 0.1)):
        frames = -(-int(seconds * cfg.sample_rate) // cfg.hop)
        n = frames * cfg.hop  # each carries a source one-shot too (a decaying noise burst): faithful mode
        burst = torch.randn(cfg.audio_channels, n, generator=g) * \
            torch.exp(-torch.arange(n) / (0.2 * cfg.sample_rate))
        kit += [{"name": f"{kind}{i + 1}", "label": f"{kind} {i + 1}",
                 "latents": torch.randn(cfg.latent_dim, frames, generator=g).numpy(),
                 "audio": (0.3 * burst).numpy()} for i in range(N_PADS)]
    return export_bundle(folder / "bundle", vae, sae, load_steering(steering_dir), metrics={},
                         provenance={"data": "random weights (benchmark)"}, kit=kit)


_BUNDLES: dict[bool, Path] = {}


def _setup(quick: bool, kind: str = "long", mode: str | None = None) -> tuple[Any, Any]:
    """The benchmark bundle (exported once per process) and a preset playing its `kind` kit
    entries on the generic controller's 16 pads in render `mode` (None: the bundle's default,
    faithful), with a knob per direction."""
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.presets import load_preset

    if quick not in _BUNDLES:
        folder = Path(tempfile.mkdtemp(prefix="steerpad-bench-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _BUNDLES[quick] = random_bundle(folder, "tiny" if quick else "small", 512 if quick else 4096,
                                        16 if quick else 32)
    path = _BUNDLES[quick]
    lines = ['name = "bench"', 'controller = "generic"', *([f'mode = "{mode}"'] if mode else []), ""]
    for i in range(N_PADS):
        lines += ["[[pads]]", f'sample = "kit:{kind}{i + 1}"', ""]
    for name in DIRECTIONS:
        lines += ["[[knobs]]", f'direction = "{name}"', ""]
    preset = path.parent / f"{kind}-{mode}.toml"
    preset.write_text("\n".join(lines))
    return load_bundle(path), load_preset(preset)


def bench_live_render(o) -> dict[str, float]:
    """Knob move -> fresh render of one 1 s one-shot, `small` model, onnxruntime on the CPU: the
    render worker's measured latency, in each render mode. faithful (the default, the plain
    keys): steer + decode + the change applied to the source (two STFTs and an inverse) +
    resample to 48 kHz; resynth: steer + decode + resample. The knob moves on both sides."""
    from steerpad.realtime.engine import Engine

    repeats = 3 if o.quick else 20
    out: dict[str, float] = {}
    for mode in ("faithful", "resynth"):
        bundle, preset = _setup(o.quick, mode=mode)
        with Engine(bundle, preset, 48000, 128, master=False) as engine:
            engine.worker.sources[1:] = [None] * (N_PADS - 1)  # one pad: its latency alone
            assert engine.worker.sources[0].mode == mode
            engine.start(wait=None)
            lat, compute = [], []
            for i in range(repeats):
                engine.set_knob(0, 0.5 + 0.4 * ((i % 2) * 2 - 1) * (i + 1) / repeats)
                engine.worker.wait_fresh()
                lat.append(engine.worker.latency_ms[0])
                compute.append(engine.worker.stats.last_ms)
            seconds = engine.worker.slots[0].shape[0] / 48000
        key = "render" if mode == "faithful" else f"render/{mode}"
        out |= {f"{key}/knob_to_fresh_p50_ms": float(np.median(lat)),
                f"{key}/knob_to_fresh_p90_ms": float(np.percentile(lat, 90)),
                f"{key}/compute_p50_ms": float(np.median(compute))}
    return out | {"render/one_shot_s": seconds,
                  "render/provider_cpu": float(bundle.provider.startswith("CPU"))}


def bench_live_modulation(o) -> dict[str, float]:
    """A knob move heard, on the shipped default bundle and preset (models/default,
    presets/default.toml: 16 pads, faithful), 2 cores:
    `knob_to_all_pads_ms`: from the move until all 16 pads' renders hold it
    (RenderWorker.wait_fresh), the knob swept across both sides;
    `knob_to_ringing_ms`: live on a JACK server (dummy driver, 48 kHz, 128 frames), a crash
    cymbal (pad 9, a 1.5 s ring and more) hit through steerpad's MIDI port, `brighter` turned to
    one end 150 ms into its ring: from the cycle the CC was sent in until the recorded output's
    spectral centroid leaves the same hit's with the knob left alone by 5 % (the centre of the
    first 1024-sample window that does; jackrig.turn_while_ringing)."""
    from rig.jackrig import PERIOD, RATE, ensure_jackd, live_rig, turn_while_ringing

    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.presets import load_preset

    repeats = 3 if o.quick else 15
    bundle, preset = load_bundle(ROOT / "models" / "default"), load_preset(ROOT / "presets" / "default.toml")
    all_pads = []
    with Engine(bundle, preset, RATE, PERIOD) as engine:
        engine.start(wait=None)
        for i in range(repeats):
            t0 = time.perf_counter()
            engine.set_knob(0, 0.5 + 0.45 * ((i % 2) * 2 - 1) * (i + 1) / repeats)
            engine.worker.wait_fresh()
            all_pads.append((time.perf_counter() - t0) * 1e3)
        pads = sum(src is not None for src in engine.worker.sources)
    if not ensure_jackd(RATE, PERIOD, server=f"steerpad-bench-{os.getpid()}"):
        raise RuntimeError("no JACK server: install jackd2 (./scripts/bench does)")
    ringing, unaligned = [], 0
    # each turn: two hits of a 1.5 s crash, waited out, and the renders (~5 s a turn under --load)
    with live_rig(bundle, preset, "steerpad-bench-ringing", seconds=30 + 8 * repeats) as rig:
        for i in range(repeats):
            turn = turn_while_ringing(rig, pad=8, cc=70, value=(127, 0)[i % 2])  # crash, brighter
            delay = turn.delay_ms() if turn.followed else None
            if not turn.aligned():
                unaligned += 1  # a period was lost or late in one of the two recordings
            elif delay is not None:
                ringing.append(delay)
    out: dict[str, float] = {}
    for key, v in (("knob_to_all_pads_ms", all_pads), ("knob_to_ringing_ms", ringing)):
        out[f"live_modulation.{key}/p50"] = float(np.median(v)) if v else float("nan")
        out[f"live_modulation.{key}/p90"] = float(np.percentile(v, 90)) if v else float("nan")
    return out | {"live_modulation/pads": float(pads),
                  "live_modulation/ringing_measured": float(len(ringing)),
                  "live_modulation/ringing_unaligned": float(unaligned),
                  "live_modulation/ringing_tries": float(repeats)}


def bench_live_callback(o) -> dict[str, float]:
    """The audio callback's body (Engine.process) at 48 kHz / 128 frames with 16 voices sounding
    and the master bus: time per block, p50 / p99, and p99 as a share of the block period."""
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.events import NoteOn

    blocks = 300 if o.quick else 5000
    bundle, preset = _setup(o.quick)
    with Engine(bundle, preset, 48000, 128) as engine:
        engine.start(wait=None)
        out = np.zeros((128, 2), np.float32)
        voices = []
        for _ in range(blocks):
            if engine.mixer.active < 16:
                for p in range(16 - engine.mixer.active):
                    engine.handle(NoteOn(9, 36 + p, 100))
            engine.process(out)
            voices.append(engine.mixer.active)
        stats = engine.load_stats()
    return {"callback/p50_ms": stats["p50_ms"], "callback/p99_ms": stats["p99_ms"],
            "callback/max_ms": stats["max_ms"], "callback/p99_load": stats["p99_load"],
            "callback/block_ms": 128 / 48000 * 1e3, "callback/mean_voices": float(np.mean(voices))}


def bench_live_jack(o) -> dict[str, float]:
    """On a JACK server (dummy driver, 48 kHz, 128 frames): note-on -> first output sample, and
    xruns over the run (60 s; --quick: 5 s) seen by steerpad and by a plain JACK client started
    beside it; hits of 0.1 s one-shots, each on silence, each after a knob move, so the render
    worker renders all 16 pads while play goes on; recorded by a JACK client on the same frame
    clock. Twice: `jack/*` through PortAudio's JACK host API with MIDI from rtmidi (a virtual
    JACK port); `jack_client/*` as steerpad's own JACK client (realtime/jackio.py: MIDI on its
    midi_in port, read in the process callback; --outputs pads: 34 ports), the callback's whole
    time (ports included) as `jack_client/callback_p50_ms`, `_p99_ms`."""
    from rig import jackrig
    from rig.jackrig import PERIOD, RATE, ensure_jackd, first_onset, live_rig

    if not ensure_jackd(RATE, PERIOD, server=f"steerpad-bench-{os.getpid()}"):
        raise RuntimeError("no JACK server: install jackd2 (./scripts/bench does)")
    seconds = 5.0 if o.quick else 60.0
    bundle, preset = _setup(o.quick, "short")
    out: dict[str, float] = {}
    for backend, group in (("portaudio", "jack"), ("jack", "jack_client")):
        latencies, late = [], 0
        with live_rig(bundle, preset, "steerpad-bench", seconds=seconds + 10, backend=backend,
                      outputs="pads") as rig:
            plain = subprocess.Popen([sys.executable, jackrig.__file__, "plain", str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)  # the plain client is up
            xruns0 = rig.stream.xruns
            t_end = time.monotonic() + seconds - 1.0
            while time.monotonic() < t_end:
                rig.sender.send([0xB0, 70, 32 + 64 * (len(latencies) % 2)])  # the worker renders meanwhile
                t, audio = rig.hit(len(latencies) % N_PADS, listen=0.2)
                if not rig.silent_before(t, threshold=1e-5):
                    late += 1  # the last hit still sounded: no clean onset to measure
                    continue
                onset = first_onset(audio[:RATE // 10], 1e-5)
                if onset is not None:
                    latencies.append(onset)
            plain_out, _ = plain.communicate(timeout=seconds + 30)
            xruns, plain_x = rig.stream.xruns - xruns0, json.loads(plain_out)["xruns"]
            callback = rig.stream.load_stats() if backend == "jack" else None
        lat = np.asarray(latencies, float)
        p50 = float(np.median(lat))
        got = {"trigger_p50_frames": p50, "trigger_p99_frames": float(np.percentile(lat, 99)),
               "trigger_max_frames": float(lat.max()), "trigger_p50_ms": p50 / RATE * 1e3,
               "within_one_block": float(np.mean(lat < 2 * PERIOD)), "hits": float(lat.size),
               "skipped_hits": float(late), "block_frames": float(PERIOD), "xruns_steerpad": float(xruns),
               "xruns_plain_client": float(plain_x), "seconds": seconds}
        if callback is not None:
            got.update(callback_p50_ms=callback["p50_ms"], callback_p99_ms=callback["p99_ms"])
        out.update({f"{group}/{k}": v for k, v in got.items()})
    return out


def bench_live_capture(o) -> dict[str, float]:
    """Capture -> playable: a synthetic hit fed through the engine's input path (Engine.process
    at real-time pace, 48 kHz / 128 frames, master bus on) into an armed pad. From the end
    detected (the input silent for the 100 ms hold) to the latents handed to the render worker
    (WAV saved, resampled, encoded, .npy saved) and to the pad's first render published
    (playable); and the audio callback's time per block meanwhile."""
    from steerpad.realtime.capture import Capture
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.presets import CaptureSpec

    takes, rate, block = (2 if o.quick else 10), 48000, 128
    bundle, preset = _setup(o.quick)
    folder = Path(tempfile.mkdtemp(prefix="steerpad-bench-capture-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    t = np.arange(int(0.4 * rate)) / rate
    noise = np.random.default_rng(0).uniform(-1, 1, t.size)
    hit = np.exp(-t / 0.05) * (0.6 * np.cos(2 * np.pi * 150 * t) + 0.3 * noise)
    signal = np.concatenate([np.zeros(rate // 10), hit, np.zeros(rate * 3 // 10)]).astype(np.float32)[:, None]
    spec = CaptureSpec()
    with Engine(bundle, preset, rate, block, input_channels=1) as engine:
        engine.worker.sources[1:] = [None] * (N_PADS - 1)  # one pad: its latency alone
        engine.start(wait=None)
        cap = Capture(engine, spec, folder).start()
        out = np.zeros((block, 2), np.float32)
        try:
            for i in range(takes):
                cap.arm(0)
                t0 = time.perf_counter()
                for k, j in enumerate(range(0, signal.shape[0] - block + 1, block)):
                    engine.process(out, signal[j:j + block])
                    delay = t0 + (k + 1) * block / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                if not cap.wait_completed(i + 1, 60):
                    raise RuntimeError(f"capture {i + 1} did not finish: {cap.last_error}")
            load = engine.load_stats()
        finally:
            cap.stop()
    done = [r for r in cap.results if not r.error]
    if len(done) < takes:
        raise RuntimeError(f"{takes - len(done)} captures failed: {cap.last_error}")
    source = np.array([r.end_to_source_ms for r in done])
    playable = np.array([r.end_to_playable_ms for r in done])
    return {"capture/end_to_playable_p50_ms": float(np.median(playable)),
            "capture/end_to_playable_max_ms": float(playable.max()),
            "capture/end_to_source_p50_ms": float(np.median(source)),
            "capture/encode_p50_ms": float(np.median([r.encode_ms for r in done])),
            "capture/hold_ms": spec.hold_ms, "capture/take_s": float(np.median([r.seconds for r in done])),
            "capture/takes": float(len(done)), "capture/callback_p99_ms": load["p99_ms"],
            "capture/callback_max_ms": load["max_ms"], "capture/callback_p99_load": load["p99_load"]}


def bench_live_oscfeed(o) -> dict[str, float]:
    """The visualizer feed's cost beside the audio callback: Engine.process (48 kHz, 128 frames,
    16 voices, master bus) paced in real time on this thread, first alone, then with a LiveFeed
    at 60 Hz sending to a UDP socket on loopback. Per phase: the callback's time p50 / p99 and how
    late each block started (a feed holding the GIL would show there); and the feed thread's CPU
    time per second, frames and messages per second."""
    import socket

    from steerpad.realtime.engine import Engine
    from steerpad.realtime.events import NoteOn
    from steerpad.realtime.oscfeed import LiveFeed, OscSender

    blocks = 300 if o.quick else 4000
    rate, size = 48000, 128
    period = size / rate
    bundle, preset = _setup(o.quick)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows, as for a slow receiver
    metrics: dict[str, float] = {}
    with Engine(bundle, preset, rate, size) as engine:
        engine.start(wait=None)
        out = np.zeros((size, 2), np.float32)

        def play() -> tuple[np.ndarray, np.ndarray]:
            took, late = np.zeros(blocks), np.zeros(blocks)
            t0 = time.perf_counter()
            for b in range(blocks):
                due = t0 + b * period
                while (now := time.perf_counter()) < due:
                    time.sleep(min(0.0005, due - now))
                if engine.mixer.active < 16:
                    for p in range(16 - engine.mixer.active):
                        engine.handle(NoteOn(9, 36 + p, 100))
                start = time.perf_counter()
                engine.process(out)
                took[b], late[b] = time.perf_counter() - start, start - due
            return took * 1e3, late * 1e3

        for phase in ("off", "on"):
            feed = LiveFeed(engine, OscSender(*sink.getsockname()), 60.0) if phase == "on" else None
            if feed is not None:
                feed.start()
            t0 = time.perf_counter()
            took, late = play()
            wall = time.perf_counter() - t0
            if feed is not None:
                feed.stop()
                metrics.update({"oscfeed/feed_cpu_ms_per_s": feed.cpu_s / wall * 1e3,
                                "oscfeed/frames_per_s": feed.frames / wall,
                                "oscfeed/messages_per_s": feed.sender.sent / wall,
                                "oscfeed/send_errors": float(feed.sender.errors + feed.errors)})
            metrics.update({f"oscfeed/callback_p50_ms_{phase}": float(np.median(took)),
                            f"oscfeed/callback_p99_ms_{phase}": float(np.percentile(took, 99)),
                            f"oscfeed/late_p99_ms_{phase}": float(np.percentile(late, 99))})
    sink.close()
    metrics["oscfeed/block_ms"] = period * 1e3
    return metrics


def _performance(path: Path, seconds: float, hits_per_s: float, ccs_per_s: float) -> tuple[int, int]:
    """Write a MIDI file (120 bpm, 960 ticks a second): hits cycling over the 16 pads and knob
    sweeps over the DIRECTIONS' knobs (CC 70..), evenly spread. Returns (hits, control changes)."""
    import mido

    events = [(round(i * 960 / hits_per_s), mido.Message("note_on", channel=9, note=36 + i % N_PADS,
                                                          velocity=100))
              for i in range(int(seconds * hits_per_s))]
    ccs = int(seconds * ccs_per_s)
    events += [(round(i * 960 / ccs_per_s) + 1, mido.Message("control_change", channel=0,
                                                             control=70 + i % len(DIRECTIONS),
                                                             value=(i * 7) % 128)) for i in range(ccs)]
    events.sort(key=lambda e: e[0])
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    last = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    mid.save(path)
    return len(events) - ccs, ccs


_PEAK_RSS = ("import sys\nfrom steerpad.offline.cli import main\nrc = main(sys.argv[1:])\n"
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
             "print('peak_rss_kib', hwm[0].split()[1] if hwm else -1, file=sys.stderr)\nsys.exit(rc)")
"""`steerpad` in a fresh process that reports its own peak RSS (VmHWM: the high-water mark of
its memory since exec; getrusage's ru_maxrss would include the forking parent's)."""


def _render_process(mid: Path, bundle: Path, preset: Path, out: Path) -> tuple[float, float, str]:
    """`steerpad render` in a process of its own (with --features): (wall s, peak RSS MB, stdout)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, "render", str(mid), "--bundle", str(bundle),
                           "--preset", str(preset), "--out", str(out), "--features",
                           str(out.with_suffix(".jsonl"))], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"steerpad render failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    kib = float(done.stderr.rsplit("peak_rss_kib", 1)[1].split()[0])
    return wall, kib / 1024, done.stdout


def bench_bounce_cc_dense(o) -> dict[str, float]:
    """`steerpad render`'s bounce of a performance dense with knob moves: 8 hits a second over 16
    pads (1 s one-shots) and 1000 CCs a second over 5 knobs, `small` model, 48 kHz / 256 frames,
    written to a WAV. Real-time factor = wall time / audio time (target < 3 on 2 cores)."""
    from steerpad.realtime.bounce import bounce_to_files, read_performance

    seconds = 2.0 if o.quick else 20.0
    bundle, preset = _setup(o.quick)
    folder = Path(tempfile.mkdtemp(prefix="steerpad-bench-bounce-"))
    try:
        hits, ccs = _performance(folder / "dense.mid", seconds, 8.0, 1000.0)
        events = read_performance(folder / "dense.mid", 48000, preset.controller.cc14)
        t0 = time.perf_counter()
        counters, _ = bounce_to_files(bundle, preset, events, folder / "dense.wav", 48000, 256)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    audio = counters["frames"] / 48000
    return {"bounce/realtime_factor": wall / audio, "bounce/wall_s": wall, "bounce/audio_s": audio,
            "bounce/hits": float(hits), "bounce/control_changes": float(ccs),
            "bounce/renders": float(counters["renders"]),
            "bounce/renders_per_hit": counters["renders"] / max(hits, 1)}


def bench_bounce_memory(o) -> dict[str, float]:
    """`steerpad render --features` of a 10-minute performance (--quick: 20 s) and of one a tenth
    as long, each in a process of its own: peak RSS of both (flat: the bounce streams to disk),
    and the long one's wall time per audio second. 2 hits a second over 16 pads, 20 CCs a
    second, `small` model, 48 kHz / 256 frames."""
    seconds = 20.0 if o.quick else 600.0
    bundle, preset = _setup(o.quick)
    folder = Path(tempfile.mkdtemp(prefix="steerpad-bench-memory-"))
    metrics: dict[str, float] = {}
    try:
        for name, length in (("short", seconds / 10), ("long", seconds)):
            _performance(folder / f"{name}.mid", length, 2.0, 20.0)
            wall, rss, _ = _render_process(folder / f"{name}.mid", bundle.path, preset.path,
                                           folder / f"{name}.wav")
            audio = sf_frames(folder / f"{name}.wav") / 48000
            if name == "long":
                metrics.update({"bounce/peak_rss_mb": rss, "bounce/audio_s": audio, "bounce/wall_s": wall,
                                "bounce/realtime_factor": wall / audio})
            else:
                metrics.update({"bounce/peak_rss_mb_short": rss, "bounce/audio_s_short": audio})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    metrics["bounce/rss_growth_mb"] = metrics["bounce/peak_rss_mb"] - metrics["bounce/peak_rss_mb_short"]
    return metrics


def sf_frames(path: Path) -> int:
    import soundfile as sf

    return sf.info(str(path)).frames
