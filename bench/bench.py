"""steerpad's benchmarks: `./scripts/bench [--only NAME ...] [--quick] [--json PATH]`.

Also --threads N (torch CPU threads), --device DEV (the VAE benchmarks' torch device), --list
(list the benchmarks and exit) and --load (a busy loop pinned to every core while they run).

Each benchmark is a function in BENCHES returning flat metrics ("group/name": number). The
results print as a table (stderr) and as one JSON object (stdout, and --json PATH): the
machine, the options and every benchmark's metrics, so runs can be compared and diffed.
Speed targets are measured here (compare with docs/architecture.md's budgets), never in timed
unit tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]  # the other benchmarks; the test rigs (tests/rig)

import bench_live  # noqa: E402
from rig.jackrig import cpu_load  # noqa: E402
from rig.planted import planted_latents  # noqa: E402

from steerpad.offline.sae import SAEConfig, TopKSAE  # noqa: E402
from steerpad.offline.sae_train import train_step  # noqa: E402
from steerpad.offline.threads import num_threads  # noqa: E402
from steerpad.offline.vae import OobleckConfig, OobleckVAE, get_config  # noqa: E402
from steerpad.offline.vae_train import VAELoss, VAETrainConfig, crop_samples  # noqa: E402


@dataclass(frozen=True)
class Options:
    quick: bool = False
    """Tiny sizes: checks that every benchmark runs, measures nothing worth reporting."""
    threads: int | None = None
    """torch CPU threads (None: torch's default, all cores)."""
    device: str = "cpu"
    """torch device for the VAE benchmarks ("cuda" on a GPU machine)."""
    load: bool = False
    """Run with a busy loop pinned to every core (jackrig.cpu_load), as a performer's busy laptop."""


def bench_sae_train(o: Options) -> dict[str, float]:
    """TopK SAE training throughput (64 -> 4096, k=32): latent vectors/s, with and without AuxK."""
    return sae_throughput(n_vectors=8192 if o.quick else 65536, batch=1024 if o.quick else 4096)


def _vae_codec(config: str) -> Callable[[Options], dict[str, float]]:
    def bench(o: Options) -> dict[str, float]:
        from vae_bench import decode_rtf

        return decode_rtf(config, seconds=0.1 if o.quick else 1.0, threads=o.threads,
                          repeats=1 if o.quick else 5, device=o.device)

    bench.__doc__ = (f"`{config}` Oobleck VAE, 1 s of audio: encode and decode wall time and "
                     "real-time factor (compute time / audio time), weight norm folded")
    return bench


def bench_vae_train(o: Options) -> dict[str, float]:
    """`small` VAE training step (batch 4 whole 32-frame clips, all losses, AdamW): steps/s."""
    threads = o.threads or torch.get_num_threads()
    steps = 1 if o.quick else 5
    frames = 2 if o.quick else 32
    rate = vae_train_step_rate("small", batch=4, crop_frames=frames, steps=steps,
                               threads=threads, device=o.device)
    return {"vae_train/steps_per_s": rate, "vae_train/batch": 4.0,
            "vae_train/crop_frames": float(frames)}


def bench_export_onnx(o: Options) -> dict[str, float]:
    """`small` VAE decoder, 1 s of audio: torch eager vs onnxruntime (CPU, same threads; the
    exported decoder's frames, overlap-added as Bundle.decode does: realtime/bundle.py
    synthesize); steer.onnx on one one-shot (32 frames, K=5, a 4096/k32 SAE). Random weights;
    always on the CPU."""
    import tempfile

    import numpy as np
    import onnxruntime as ort
    from vae_bench import _time_ms

    from steerpad.offline.export import export_onnx
    from steerpad.offline.steering import SteerModule
    from steerpad.realtime.bundle import synthesize

    threads = o.threads or torch.get_num_threads()
    cfg = get_config("tiny" if o.quick else "small")
    vae = OobleckVAE(cfg).fold_weight_norm().eval()
    sae = TopKSAE(SAEConfig(d_in=cfg.latent_dim, **({"n_features": 512, "k": 16} if o.quick else {}))).eval()
    directions = torch.randn(5, sae.config.n_features, generator=torch.Generator().manual_seed(0))
    directions /= directions.norm(dim=1, keepdim=True)
    frames = 3 if o.quick else -(-cfg.sample_rate // cfg.hop)  # whole frames covering 1 s
    shot = 4 if o.quick else 32
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, cfg.latent_dim, frames, generator=g)
    z_shot, alpha = torch.randn(1, cfg.latent_dim, shot, generator=g), torch.full((5,), 10.0)
    repeats = 1 if o.quick else 10
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = export_onnx(vae, sae, directions, tmp, models=("decoder", "steer"))
        export_s = time.perf_counter() - t0
        decoder, steer = (ort.InferenceSession(str(paths[m]), options, providers=["CPUExecutionProvider"])
                          for m in ("decoder", "steer"))
    z_np, shot_np, alpha_np = z.numpy(), z_shot.numpy(), alpha.numpy()
    head = vae.decoder.head

    def decode():
        return synthesize(decoder.run(None, {"latents": z_np})[0], head.n_fft, head.hop)

    onnx_decode, _ = _time_ms(decode, repeats)
    onnx_steer, _ = _time_ms(lambda: steer.run(None, {"latents": shot_np, "alpha": alpha_np}), repeats)
    steer_module = SteerModule(sae, directions)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            torch_decode, _ = _time_ms(lambda: vae.decode(z), repeats)
            torch_steer, _ = _time_ms(lambda: steer_module(z_shot, alpha), repeats)
            err = float(np.abs(decode() - vae.decode(z).numpy()).max())
    finally:
        torch.set_num_threads(old_threads)
    return {"onnx/decode_ms": onnx_decode, "torch/decode_ms": torch_decode,
            "onnx/steer_ms": onnx_steer, "torch/steer_ms": torch_steer,
            "onnx/decode_speedup": torch_decode / onnx_decode, "onnx/decode_max_abs_error": err,
            "onnx/export_s": export_s, "audio/seconds": frames * cfg.hop / cfg.sample_rate,
            "audio/frames": float(frames), "steer/frames": float(shot), "onnx/threads": float(threads)}


# ---------------------------------------------------------------- training throughput helpers

def sae_throughput(n_vectors: int = 65536, batch: int = 4096,
                   config: SAEConfig | None = None) -> dict[str, float]:
    """Training speed on this machine (planted latents, default SAE): latent vectors per
    second through full optimiser steps, without and with the AuxK pass (10% dead)."""
    config = config or SAEConfig()
    x, _ = planted_latents(max(n_vectors, batch), d_in=config.d_in, seed=0)
    model = TopKSAE(config)
    x_s = torch.from_numpy((x - x.mean(0)) / x.std(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=6.25e-10)
    dead = torch.zeros(config.n_features, dtype=torch.bool)
    dead[torch.randperm(config.n_features)[: max(1, config.n_features // 10)]] = True
    steps = max(2, x_s.shape[0] // batch)
    result: dict[str, float] = {}
    for name, mask in (("", None), ("_auxk", dead)):
        train_step(model, opt, x_s[:batch], mask)  # warm-up: allocator, kernels
        t0 = time.perf_counter()
        for i in range(steps):
            j = (i * batch) % (x_s.shape[0] - batch + 1)
            train_step(model, opt, x_s[j:j + batch], mask)
        seconds = time.perf_counter() - t0
        result[f"sae/vectors_per_s{name}"] = steps * batch / seconds
        result[f"sae/step_ms{name}"] = 1000 * seconds / steps
    result.update({"sae/batch": float(batch), "sae/n_features": float(config.n_features),
                   "sae/k": float(config.k), "sae/threads": float(torch.get_num_threads())})
    return result


def vae_train_step_rate(model: str | OobleckConfig = "small", batch: int = 4, crop_frames: int = 32,
                        steps: int = 5, threads: int = 2, device: str = "cpu") -> float:
    """Benchmark: optimizer steps per second of the full training step (forward, all losses,
    backward, AdamW) on random noise bursts, after one warm-up step."""
    cfg = model if isinstance(model, OobleckConfig) else get_config(model)
    tc = VAETrainConfig(model=cfg.name, batch=batch, crop_frames=crop_frames, threads=threads)
    with num_threads(threads):
        return _step_rate(cfg, tc, steps, device)


def _step_rate(cfg: OobleckConfig, tc: VAETrainConfig, steps: int, device: str) -> float:
    batch = tc.batch
    torch.manual_seed(0)
    vae = OobleckVAE(cfg).to(device)
    loss_fn = VAELoss(tc).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=tc.lr, betas=tc.betas)
    t = crop_samples(tc, cfg)
    env = torch.exp(-torch.arange(t, device=device) / (0.1 * cfg.sample_rate))
    x = 0.5 * torch.randn(batch, cfg.audio_channels, t, device=device) * env

    def one() -> None:
        out = vae(x)
        loss, _ = loss_fn(out.audio, out.kl, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device != "cpu":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


BENCHES: dict[str, Callable[[Options], dict[str, float]]] = {
    "sae_train": bench_sae_train,
    "vae_small": _vae_codec("small"),
    "vae_sao": _vae_codec("sao"),
    "vae_train_small": bench_vae_train,
    "export_onnx": bench_export_onnx,
    "live_render": bench_live.bench_live_render,
    "live_callback": bench_live.bench_live_callback,
    "live_modulation": bench_live.bench_live_modulation,
    "live_jack": bench_live.bench_live_jack,
    "live_oscfeed": bench_live.bench_live_oscfeed,
    "live_capture": bench_live.bench_live_capture,
    "bounce_cc_dense": bench_live.bench_bounce_cc_dense,
    "bounce_10min": bench_live.bench_bounce_memory,
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_benches(names: list[str], options: Options,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run the named benchmarks in order; returns the JSON-ready report."""
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    old_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    results: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            log(f"bench: {name} ...")
            t0 = time.perf_counter()
            results[name] = {k: float(v) for k, v in BENCHES[name](options).items()}
            log(f"bench: {name} done in {time.perf_counter() - t0:.1f} s")
        info = machine()
    finally:
        torch.set_num_threads(old_threads)
    return {"machine": info, "options": asdict(options), "results": results,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def table(report: dict[str, Any]) -> str:
    """The report as a plain-text table: benchmark, metric, value."""
    rows = [(bench, metric, f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}")
            for bench, metrics in report["results"].items() for metric, value in metrics.items()]
    w = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("benchmark", "metric", "value"))]
    lines = [f"{'benchmark':<{w[0]}}  {'metric':<{w[1]}}  {'value':>{w[2]}}", "  ".join("-" * n for n in w)]
    lines += [f"{b:<{w[0]}}  {m:<{w[1]}}  {v:>{w[2]}}" for b, m, v in rows]
    m = report["machine"]
    lines.append(f"on {m['cpu']} ({m['cores']} cores, torch {m['torch']}, "
                 f"{m['torch_threads']} threads{', ' + m['gpu'] if 'gpu' in m else ''})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(BENCHES),
                        help=f"run only these ({', '.join(BENCHES)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device for the VAE benchmarks")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--load", action="store_true",
                        help="run with a busy loop pinned to every core (e.g. --only live_jack --load: xruns "
                             "beside a plain JACK client on a loaded machine)")
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in BENCHES.items():
            print(f"{name:<16} {(fn.__doc__ or '').strip()}")
        return 0
    options = Options(quick=args.quick, threads=args.threads, device=args.device, load=args.load)
    with cpu_load() if args.load else contextlib.nullcontext():
        report = run_benches(args.only or list(BENCHES), options,
                             log=lambda s: print(s, file=sys.stderr, flush=True))
    text = json.dumps(report, indent=2)
    print(table(report), file=sys.stderr)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
