"""The live engine's benchmarks (registered in bench.py): callback load, knob -> fresh render,
and on a real JACK server, trigger latency and xruns beside a plain JACK client.

They play a bundle exported from random weights (the `small` VAE, a 4096/k32 SAE, 5 directions,
16 one-second kit entries), so they measure the engine and the model size, not a trained sound.
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

N_PADS = 16
DIRECTIONS = ("brighter", "boomier", "punchier", "louder", "higher")


def random_bundle(folder: Path, config: str = "small", n_features: int = 4096, k: int = 32) -> Path:
    """Export a playable bundle with random weights and 2 x N_PADS kit entries: `long1..16` of
    1 s and `short1..16` of 0.1 s (0.1 s rounds up to one latent frame, 2048 samples)."""
    from safetensors.torch import save_file

    from steerpad.offline.export import export_bundle, load_steering
    from steerpad.offline.oobleck import OobleckVAE, get_config
    from steerpad.offline.sae import SAEConfig, TopKSAE

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
        kit += [{"name": f"{kind}{i + 1}", "label": f"{kind} {i + 1}",
                 "latents": torch.randn(cfg.latent_dim, frames, generator=g).numpy()} for i in range(N_PADS)]
    return export_bundle(folder / "bundle", vae, sae, load_steering(steering_dir), metrics={},
                         provenance={"data": "random weights (benchmark)"}, kit=kit)


_BUNDLES: dict[bool, Path] = {}


def _setup(quick: bool, kind: str = "long") -> tuple[Any, Any]:
    """The benchmark bundle (exported once per process) and a preset playing its `kind` kit
    entries on the generic controller's 16 pads, with a knob per direction."""
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.presets import load_preset

    if quick not in _BUNDLES:
        folder = Path(tempfile.mkdtemp(prefix="steerpad-bench-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _BUNDLES[quick] = random_bundle(folder, "tiny" if quick else "small", 512 if quick else 4096,
                                        16 if quick else 32)
    path = _BUNDLES[quick]
    lines = ['name = "bench"', 'controller = "generic"', ""]
    for i in range(N_PADS):
        lines += ["[[pads]]", f'sample = "kit:{kind}{i + 1}"', ""]
    for name in DIRECTIONS:
        lines += ["[[knobs]]", f'direction = "{name}"', ""]
    preset = path.parent / f"{kind}.toml"
    preset.write_text("\n".join(lines))
    return load_bundle(path), load_preset(preset)


def bench_live_render(o) -> dict[str, float]:
    """Knob move -> fresh render of one 1 s one-shot (steer + decode + resample to 48 kHz), `small`
    model, onnxruntime on the CPU: the render worker's measured latency."""
    from steerpad.realtime.engine import Engine

    repeats = 3 if o.quick else 20
    bundle, preset = _setup(o.quick)
    with Engine(bundle, preset, 48000, 128, master=False) as engine:
        engine.worker.sources[1:] = [None] * (N_PADS - 1)  # one pad: its latency alone
        engine.start(wait=None)
        lat, compute = [], []
        for i in range(repeats):
            engine.set_knob(0, 0.5 + 0.4 * ((i % 2) * 2 - 1) * (i + 1) / repeats)
            engine.worker.wait_fresh()
            lat.append(engine.worker.latency_ms[0])
            compute.append(engine.worker.stats.last_ms)
        seconds = engine.worker.slots[0].shape[0] / 48000
    return {"render/knob_to_fresh_p50_ms": float(np.median(lat)),
            "render/knob_to_fresh_p90_ms": float(np.percentile(lat, 90)),
            "render/compute_p50_ms": float(np.median(compute)), "render/one_shot_s": seconds,
            "render/provider_cpu": float(bundle.provider.startswith("CPU"))}


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
    """On a JACK server (dummy driver, 48 kHz, 128 frames): note-on -> first output sample through
    steerpad's MIDI port, engine and PortAudio stream, recorded by a JACK client on the same
    frame clock (hits of 0.1 s one-shots, each on silence); and xruns over the run (60 s;
    --quick: 5 s) seen by steerpad's stream and by a plain JACK client started beside it."""
    from steerpad.offline.jackrig import PERIOD, RATE, ensure_jackd, first_onset, live_rig

    if not ensure_jackd(RATE, PERIOD, server=f"steerpad-bench-{os.getpid()}"):
        raise RuntimeError("no JACK server: install jackd2 (./scripts/bench does)")
    seconds = 5.0 if o.quick else 60.0
    latencies, late = [], 0
    bundle, preset = _setup(o.quick, "short")
    with live_rig(bundle, preset, "steerpad-bench", seconds=seconds + 10) as rig:
        plain = subprocess.Popen([sys.executable, "-m", "steerpad.offline.jackrig", "plain",
                                  str(seconds)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the plain client is up
        xruns0 = rig.stream.xruns
        t_end = time.monotonic() + seconds - 1.0
        while time.monotonic() < t_end:
            t, audio = rig.hit(len(latencies) % N_PADS, listen=0.2)
            if not rig.silent_before(t, threshold=1e-5):
                late += 1  # the last hit still sounded: no clean onset to measure
                continue
            onset = first_onset(audio[:RATE // 10], 1e-5)
            if onset is not None:
                latencies.append(onset)
        out, _ = plain.communicate(timeout=seconds + 30)
        xruns, plain_x = rig.stream.xruns - xruns0, json.loads(out)["xruns"]
    lat = np.asarray(latencies, float)
    p50 = float(np.median(lat))
    return {"jack/trigger_p50_frames": p50, "jack/trigger_p99_frames": float(np.percentile(lat, 99)),
            "jack/trigger_max_frames": float(lat.max()), "jack/trigger_p50_ms": p50 / RATE * 1e3,
            "jack/within_one_block": float(np.mean(lat < 2 * PERIOD)), "jack/hits": float(lat.size),
            "jack/skipped_hits": float(late), "jack/block_frames": float(PERIOD),
            "jack/xruns_steerpad": float(xruns), "jack/xruns_plain_client": float(plain_x),
            "jack/seconds": seconds}
