"""Train the TopK SAE on latent frames: `steerpad train sae LATENTS --out DIR`.

The output folder is the model folder (`model.safetensors` + `config.json`, readable by
`load_sae(DIR)`) plus `metrics.json`, `curves.png` and `checkpoint.pt` (for --resume).
Resume is exact: each epoch's shuffle comes from (seed, epoch), and the checkpoint holds the
model, optimiser, dead-feature counters, history and RNG states, so an interrupted run
continues along the same curve as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from steerpad.offline.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from steerpad.offline.flags import ConfigFlags
from steerpad.offline.sae import SAEConfig, TopKSAE, save_sae
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.outputs import claim_output, mark_run

MIN_TRAIN_VECTORS = 128
MIN_VAL_VECTORS = 16


@dataclass
class SAETrainConfig:
    """One SAE training run."""

    sae: SAEConfig = field(default_factory=SAEConfig)
    """The model (size, k, AuxK)."""

    batch: int = 4096
    """Latent vectors per optimiser step (smaller datasets use all their vectors)."""

    steps: int = 3000
    """Optimiser steps in the whole run."""

    lr: float | None = None
    """Adam learning rate; None = 1.5e-3 / sqrt(n_features / 2**14): Gao et al.'s scaling
    with the constant raised 7.5x (3e-3 at 4096 features), tuned on planted 64-dim latents."""

    warmup_steps: int = 50
    """Linear learning-rate warm-up."""

    decay_frac: float = 0.2
    """Final fraction of the steps over which the learning rate falls linearly to 0."""

    eval_every: int = 250
    """Steps between validation passes (and curve points)."""

    checkpoint_every: int = 500
    """Steps between checkpoints (one is always written at the end or at --stop-after)."""

    seed: int = 0
    """Seeds the initial weights and every epoch's shuffle."""

    level_init: float = 10.0
    """Start of the level pair's value, in multiples of the initial content code's length.
    Large = the RMSNorm scales every code by nearly the same factor, so reconstructions keep
    the input's magnitude (high FVE) and the level pair holds most of ||f||; small = a
    stronger normalisation that the model must learn around (planted latents, 300 steps:
    FVE 0.77 / 0.85 / 0.93 / 0.97 at 0.3 / 1 / 3 / 10). Adam moves it by about lr a step,
    so it stays near its start."""

    def __post_init__(self):
        if isinstance(self.sae, dict):
            self.sae = SAEConfig(**self.sae)
        if self.batch < 1 or self.steps < 1:
            raise ValueError("batch and steps must be >= 1")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or not 0 <= self.decay_frac <= 1:
            raise ValueError("warmup_steps must be >= 0 and decay_frac in [0, 1]")
        if not self.level_init > 0:
            raise ValueError(f"level_init must be > 0, got {self.level_init}")
        if self.eval_every < 1 or self.checkpoint_every < 1:
            raise ValueError("eval_every and checkpoint_every must be >= 1")

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 1.5e-3 / math.sqrt(self.sae.n_features / 2**14)

    def lr_at(self, step: int) -> float:
        """Warm-up, flat, then linear decay to zero over the last decay_frac of the run."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        decay_start = self.steps * (1 - self.decay_frac)
        decay = 1.0 if step < decay_start else (self.steps - step) / (self.steps - decay_start)
        return self.base_lr * warm * decay


def _check_array(name: str, x: np.ndarray, d_in: int, minimum: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != d_in:
        raise SteerpadError(f"{name} latents: expected shape [N, {d_in}], got {list(x.shape)}; "
                            f"set the SAE's d_in to the VAE's latent size")
    if x.shape[0] < minimum:
        raise SteerpadError(f"{name} latents: only {x.shape[0]} vectors, need at least {minimum}; "
                            "add more clips (or kits for the validation split)")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(1).sum())
        raise SteerpadError(f"{name} latents: {bad} vectors hold NaN or inf; re-encode the store")
    return np.ascontiguousarray(x, dtype=np.float32)


def _stats(train: np.ndarray, mean, std, d_in: int) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(0) if mean is None else np.asarray(mean, dtype=np.float32)
    std = train.std(0) if std is None else np.asarray(std, dtype=np.float32)
    if mean.shape != (d_in,) or std.shape != (d_in,) or not np.isfinite([mean, std]).all():
        raise SteerpadError(f"latent mean/std: need finite arrays of shape [{d_in}]; re-encode")
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _dead_fraction(since_fired: torch.Tensor, dead_after: int, reserved: int) -> float:
    return float((since_fired[reserved:] >= dead_after).float().mean())


def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffle of one epoch depends only on (seed, epoch): resume needs no RNG replay."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def train_step(model: TopKSAE, opt: torch.optim.Optimizer, x_s: torch.Tensor,
               dead_mask: torch.Tensor | None) -> tuple[float, float, torch.Tensor]:
    """One optimiser step on standardised x_s [B, D]; returns (fvu, aux, fired indices)."""
    out = model(x_s, dead_mask=dead_mask, standardized=True)
    loss = out.fvu + model.config.aux_coef * out.aux_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    model.project_decoder_grad()
    opt.step()
    model.normalize_decoder()
    fired = out.indices[out.values > 0]
    return float(out.fvu.detach()), float(out.aux_loss.detach()), fired


@torch.no_grad()
def evaluate(model: TopKSAE, x_s: torch.Tensor, chunk: int = 8192) -> dict[str, float]:
    """FVE, L0 and dead fraction over a whole split (x_s standardised [N, D]). L0 and the
    dead fraction count dictionary features only (not the level pair)."""
    err = 0.0
    fired = torch.zeros(model.config.n_features, dtype=torch.bool)
    l0 = 0
    for i in range(0, x_s.shape[0], chunk):
        xb = x_s[i:i + chunk]
        values, idx, _, sp = model.encode_sparse(xb)
        err += float((xb - model.decode_sparse(values, sp)).double().pow(2).sum())
        live = values > 0
        l0 += int(live.sum())
        fired[idx[live]] = True
    total = float((x_s.double() - x_s.double().mean(0)).pow(2).sum())
    return {"fve": 1.0 - err / max(total, 1e-12), "l0": l0 / x_s.shape[0],
            "dead": 1.0 - float(fired[model.config.reserved:].float().mean())}


def train_sae(train: np.ndarray, val: np.ndarray, config: SAETrainConfig, out_dir: str | Path,
              resume: bool = False, mean: np.ndarray | None = None, std: np.ndarray | None = None,
              stop_after: int | None = None, progress: bool = True,
              source: str | None = None) -> dict[str, float]:
    """Train on train [N, D], validate on val [M, D] (original latent units). mean/std are the
    standardisation stats (default: the train split's). Writes the model folder, metrics.json,
    curves.png and checkpoint.pt into out_dir; returns the final metrics (flat "group/name").
    stop_after=S checkpoints and returns after step S (continue later with resume=True).
    source names the data in config.json's training record."""
    from steerpad.offline.plots import plot_curves

    d_in = config.sae.d_in
    train = _check_array("train", train, d_in, MIN_TRAIN_VECTORS)
    val = _check_array("val", val, d_in, MIN_VAL_VECTORS)
    mean, std = _stats(train, mean, std, d_in)
    n = train.shape[0]
    batch = min(config.batch, n)
    per_epoch = n // batch
    dead_after = config.sae.dead_after or n  # silent for about one epoch
    out_dir = Path(out_dir)
    claim_output(out_dir, "run:sae", resume=True)
    ckpt_path = out_dir / "checkpoint.pt"

    model = TopKSAE(config.sae, torch.from_numpy(mean), torch.from_numpy(std), seed=config.seed)
    x_train = model.standardize(torch.from_numpy(train))
    x_val = model.standardize(torch.from_numpy(val))
    with torch.no_grad():  # start the pre-bias at the data mean (zero once standardised)
        model.b_dec.copy_(x_train.mean(0))
    model.init_from_data_(x_train[_epoch_order(config.seed, -1, n)[:8192]], config.level_init)
    opt = torch.optim.Adam(model.parameters(), lr=config.base_lr, eps=6.25e-10)
    since_fired = torch.zeros(config.sae.n_features, dtype=torch.int64)
    history: dict[str, list[tuple[int, float]]] = {}
    step, seconds = 0, 0.0
    fvu_sum, aux_sum, n_sum = 0.0, 0.0, 0  # running means between curve points
    fingerprint = [n, val.shape[0], float(np.float64(train[:: max(1, n // 997)]).sum())]

    if resume:
        ck = load_checkpoint(ckpt_path)
        if ck.get("config") != asdict(config) or ck.get("data") != fingerprint:
            raise SteerpadError(f"{ckpt_path}: written for other settings or other latents; "
                                "run with the same options and LATENTS, or drop --resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        since_fired, history, step, seconds = (ck["since_fired"], ck["history"], ck["step"],
                                               ck["seconds"])
        fvu_sum, aux_sum, n_sum = ck["acc"]
        set_rng_state(ck["rng"])
    mark_run(out_dir, "sae")

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "config": asdict(config), "data": fingerprint, "since_fired": since_fired,
            "history": history, "seconds": seconds, "acc": [fvu_sum, aux_sum, n_sum],
            "rng": rng_state()})

    def log(name: str, value: float) -> None:
        history.setdefault(name, []).append((step, float(value)))

    end = min(config.steps, stop_after) if stop_after is not None else config.steps
    bar = tqdm(total=config.steps, initial=step, desc="train sae", disable=not progress)
    order, order_epoch = None, -1
    while step < end:
        t0 = time.perf_counter()
        epoch, pos = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _epoch_order(config.seed, epoch, n), epoch
        xb = x_train[order[pos * batch:(pos + 1) * batch]]
        for group in opt.param_groups:
            group["lr"] = config.lr_at(step)
        dead = since_fired >= dead_after
        fvu, aux, fired = train_step(model, opt, xb, dead if dead.any() else None)
        since_fired += batch
        since_fired[fired] = 0
        step += 1
        seconds += time.perf_counter() - t0
        fvu_sum, aux_sum, n_sum = fvu_sum + fvu, aux_sum + aux, n_sum + 1
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            log("loss/train", fvu_sum / n_sum + config.sae.aux_coef * aux_sum / n_sum)
            log("aux/train", aux_sum / n_sum)
            log("fve/train", 1.0 - fvu_sum / n_sum)
            log("dead/train", _dead_fraction(since_fired, dead_after, config.sae.reserved))
            for name, value in evaluate(model, x_val).items():
                log(f"{name}/val", value)
            fvu_sum = aux_sum = 0.0
            n_sum = 0
            bar.set_postfix(fve_val=f"{history['fve/val'][-1][1]:.4f}")
        if step % config.checkpoint_every == 0 or step == end:
            checkpoint()
    bar.close()

    metrics = {f"{k}/val": v for k, v in evaluate(model, x_val).items()}
    metrics.update({f"{k}/train": v for k, v in evaluate(model, x_train).items()})
    metrics.update({"dead/train_tracker": _dead_fraction(since_fired, dead_after,
                                                         config.sae.reserved),
                    "steps/done": float(step), "steps/total": float(config.steps),
                    "speed/vectors_per_s": step * batch / max(seconds, 1e-9),
                    "data/train_vectors": float(n), "data/val_vectors": float(val.shape[0])})
    save_sae(model, out_dir, training={"config": asdict(config), "source": source,
                                       "metrics": metrics})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if history:
        plot_curves(history, out_dir / "curves.png",
                    f"TopK SAE {config.sae.n_features} x k={config.sae.k}")
    return metrics


MODEL_FLAGS = ConfigFlags(SAEConfig, {"n_features": "--features", "k": "--k", "aux_k": "--aux-k",
                                      "aux_coef": "--aux-coef", "dead_after": "--dead-after"})
TRAIN_FLAGS = ConfigFlags(SAETrainConfig, {name: "--" + name.replace("_", "-") for name in (
    "steps", "batch", "lr", "level_init", "eval_every", "checkpoint_every", "seed")})
"""The command line's options: type, default and help from SAEConfig and SAETrainConfig."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("latents", type=Path, help="latent store folder (from `steerpad encode`)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: the SAE (load_sae) + metrics.json, curves.png")
    MODEL_FLAGS.add(parser)
    TRAIN_FLAGS.add(parser)
    parser.add_argument("--no-level-pair", action="store_true",
                        help="ablation: RMSNorm without the level pair (loses input magnitude)")
    parser.add_argument("--no-rmsnorm", action="store_true",
                        help="ablation: plain TopK code without the RMSNorm (nor level pair)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="checkpoint and stop after this step (continue with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from steerpad.offline.latents import LatentStore

    store = LatentStore.open(args.latents)
    claim_output(args.out, "run:sae", inputs=[args.latents], resume=True)
    train, val = store.frames("train"), store.frames("val")
    try:
        model = SAEConfig(d_in=int(train.shape[1]), rmsnorm=not args.no_rmsnorm,
                          level_pair=not (args.no_rmsnorm or args.no_level_pair), **MODEL_FLAGS.given(args))
        config = SAETrainConfig(sae=model, **TRAIN_FLAGS.given(args))
    except ValueError as e:
        raise SteerpadError(f"train sae options: {e}") from None
    metrics = train_sae(train, val, config, args.out, resume=args.resume, mean=store.mean,
                        std=store.std, stop_after=args.stop_after,
                        progress=not args.no_progress, source=str(args.latents))
    for name, value in metrics.items():
        print(f"{name:<24} {value:.6g}")
    print(f"saved {args.out} (model.safetensors, config.json, metrics.json, curves.png)")
    return 0
