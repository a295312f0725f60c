"""How fast the Oobleck VAE encodes and decodes in torch eager on this machine.

`decode_rtf("small")` times a folded, eval-mode model on N seconds of audio and returns a flat
metrics dict; `python bench/vae_bench.py --channels 8 16 32` prints a table for
other widths (this is how the `small` config's width was chosen).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace

import torch

from steerpad.offline.vae import OobleckConfig, OobleckVAE, get_config


def decode_rtf(config: str | OobleckConfig = "small", seconds: float = 1.0,
               threads: int | None = None, repeats: int = 5,
               model: OobleckVAE | None = None, device: str = "cpu") -> dict[str, float]:
    """Median (and min) wall time of `encode` and `decode` on `seconds` of audio (rounded up to
    whole frames, batch 1), with `threads` torch threads (None = torch's current setting), on a
    folded eval-mode copy of `model` (random weights if None: weights do not change the cost),
    on torch `device` (CUDA timings wait for the GPU to finish).
    Returns
    {"time/encode_ms", "time/decode_ms" (medians), "time/encode_min_ms", "time/decode_min_ms",
    "rtf/encode", "rtf/decode" (compute time / audio time),
    "params/encoder", "params/decoder", "audio/seconds", "audio/frames", "torch/threads"}."""
    cfg = get_config(config) if isinstance(config, str) else config
    model = (OobleckVAE(cfg).fold_weight_norm().eval() if model is None
             else model.folded_copy()).to(device)  # the caller's model is untouched
    frames = max(1, math.ceil(seconds * cfg.sample_rate / cfg.hop - 1e-9))
    audio = 0.1 * torch.randn(1, cfg.audio_channels, frames * cfg.hop,
                              generator=torch.Generator().manual_seed(0)).to(device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            z = model.encode(audio)
            sync = torch.cuda.synchronize if audio.is_cuda else (lambda: None)
            enc, enc_min = _time_ms(lambda: model.encode(audio), repeats, sync)
            dec, dec_min = _time_ms(lambda: model.decode(z), repeats, sync)
            used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    audio_s = frames * cfg.hop / cfg.sample_rate
    return {
        "time/encode_ms": enc, "time/decode_ms": dec,
        "time/encode_min_ms": enc_min, "time/decode_min_ms": dec_min,
        "rtf/encode": enc / 1000 / audio_s, "rtf/decode": dec / 1000 / audio_s,
        "params/encoder": float(sum(p.numel() for p in model.encoder.parameters())),
        "params/decoder": float(sum(p.numel() for p in model.decoder.parameters())),
        "audio/seconds": audio_s, "audio/frames": float(frames), "torch/threads": float(used_threads),
    }


def _time_ms(fn, repeats: int, sync=lambda: None) -> tuple[float, float]:
    """(median, min) wall time of `fn()` in ms, after one warm-up call; `sync()` waits for
    asynchronous (GPU) work before each clock read."""
    fn()  # warm-up: first-call allocations and kernel selection
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time Oobleck VAE encode/decode in torch eager")
    parser.add_argument("--config", default="small", help="base config name (default: small)")
    parser.add_argument("--channels", type=int, nargs="*", help="base widths to try instead")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    base = get_config(args.config)
    widths = args.channels or [base.channels]
    print(f"{'channels':>8} {'enc params':>11} {'dec params':>11} {'encode ms':>10} "
          f"{'decode ms':>10} {'dec min':>8} {'dec RTF':>8}")
    for c in widths:
        m = decode_rtf(replace(base, channels=c), args.seconds, args.threads, args.repeats)
        print(f"{c:>8} {m['params/encoder'] / 1e6:>10.2f}M {m['params/decoder'] / 1e6:>10.2f}M "
              f"{m['time/encode_ms']:>10.1f} {m['time/decode_ms']:>10.1f} "
              f"{m['time/decode_min_ms']:>8.1f} {m['rtf/decode']:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
