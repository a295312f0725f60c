"""Issue 16 study: what makes "a knob -> every pad's fresh render" faster on the CPU, measured
on models/default and presets/default.toml (16 pads, faithful). Not product code: it prints
what it measured and writes JSON for the notes.

    python scripts/render_study.py [--bundle models/default] [--preset presets/default.toml]
        [--repeats 5] [--json out/render_study.json]

It measures, each as the median of --repeats:
- sequential: the 16 pads rendered one after another, as the worker does (RenderWorker.render,
  knob 1 moved), split into onnxruntime (steer + decode) and the rest;
- batched decode: the 16 pads' steered latents decoded in one onnxruntime call (padded to the
  longest) against one call per pad; steer in one call against one call per pad;
- two render threads: the 16 full renders split over two threads, on one session with
  onnxruntime's default threads and on two single-threaded sessions;
- attack-first: the decoder's output for the first n latent frames of a pad, decoded alone,
  against the same frames of the whole decode (relative RMS error per frame), for the longest
  pad: the decoder's receptive field decides how much context a head render needs.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.faithful import MODES
from steerpad.realtime.presets import load_preset
from steerpad.realtime.renderer import Prepared

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() in ms over `repeats` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def in_threads(jobs) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--preset", type=Path, default=REPO / "presets" / "default.toml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    r = args.repeats
    bundle, preset = load_bundle(args.bundle), load_preset(args.preset)
    single = [load_bundle(args.bundle, intra_op_threads=1) for _ in range(2)]
    out: dict[str, float] = {}
    with Engine(bundle, preset, 48000, 128, master=False) as engine:
        worker = engine.worker
        pads = [Prepared(s) for s in worker.sources if s is not None]
        alpha = np.zeros((len(MODES), len(bundle.directions)), np.float32)
        step = [1.0]

        def render_all(items=pads) -> None:  # a fresh alpha each call: no cache can answer
            step[0] += 0.01
            alpha[:, 0] = step[0]
            for p in items:
                worker.render(p, alpha[MODES.index(p.sound.mode)])

        out["pads"] = len(pads)
        out["frames_min"] = min(p.sound.latents.shape[1] for p in pads)
        out["frames_max"] = max(p.sound.latents.shape[1] for p in pads)
        out["sequential_ms"] = timed(render_all, r)
        z = [p.sound.latents[None] for p in pads]
        a = alpha[0]
        out["ort_steer_decode_ms"] = timed(lambda: [bundle.decode(bundle.steer(x, a)) for x in z], r)
        out["decode_one_call_each_ms"] = timed(lambda: [bundle.decode(x) for x in z], r)
        longest = max(x.shape[2] for x in z)
        padded = np.concatenate([np.pad(x, ((0, 0), (0, 0), (0, longest - x.shape[2]))) for x in z])
        out["decode_batched_ms"] = timed(lambda: bundle.decode(padded), r)
        out["steer_one_call_each_ms"] = timed(lambda: [bundle.steer(x, a) for x in z], r)
        frames = np.concatenate([x[0].T for x in z])[:, :, None]  # every frame alone: [F, D, 1]
        out["steer_batched_ms"] = timed(lambda: bundle.steer(frames, a), r)
        out["two_threads_one_session_ms"] = timed(
            lambda: in_threads([lambda: render_all(pads[0::2]), lambda: render_all(pads[1::2])]), r)

        def decode_split() -> None:
            in_threads([lambda b=b, part=z[i::2]: [b.decode(x) for x in part] for i, b in enumerate(single)])

        out["decode_two_threads_single_sessions_ms"] = timed(decode_split, r)
        x = max(z, key=lambda v: v.shape[2])
        full = bundle.decode(x)[0]
        hop = bundle.hop
        for n in (4, 8, 16):
            head = bundle.decode(np.ascontiguousarray(x[:, :, :n]))[0]
            errs = []
            for i in range(n):
                frame = slice(i * hop, (i + 1) * hop)
                err = np.sqrt(np.mean((head[:, frame] - full[:, frame]) ** 2))
                errs.append(float(err / (np.sqrt(np.mean(full[:, frame] ** 2)) + 1e-12)))
            out[f"attack_first_{n}_frames_err_frame0"] = errs[0]
            out[f"attack_first_{n}_frames_err_max"] = max(errs)
    for k, v in out.items():
        print(f"{k:<42} {v:10.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
