"""TopK sparse autoencoder over standardised VAE latents (docs/design.md, section 1).

    x [N, D] --standardise--> x_s --(- b_dec)--> W_enc, b_enc --> pre [N, F]
      --TopK, ReLU--> sparse code (+ level pair) --RMSNorm (no gain)--> f [N, F], ||f|| = sqrt(F)
    x_hat_s = scale * f @ W_dec / sqrt(F) + b_dec  --unstandardise--> x_hat [N, D]

`scale` is ONE learned scalar, not a per-feature gain: after the RMSNorm every code has the
same length, so the decoder needs one number saying how long sqrt(F) worth of code is in
standardised latent units. Decoder rows (the "columns" of W_dec in the usual [D, F] picture)
are kept at unit norm by the trainer. The mean/std standardisation stats are buffers, saved
with the weights. Internally the code is kept sparse as (values [N, k], indices [N, k]).

The level pair (features 0 and 1, on by default): with every code the same length, the
reconstruction cannot follow the input's magnitude unless some code entries cancel in the
decoder. Left alone, training discovers exactly that (two always-on features with opposite
decoder columns), slowly and at the cost of two TopK slots. The level pair builds it in:
both features are always on at one learned value `level` (outside the TopK), their decoder
columns are v and -v, so they add nothing to the reconstruction but take a share of the
fixed code length; the content features get the rest, so a louder input gets a larger
share. ||f|| = sqrt(F) and unit decoder columns still hold exactly.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from steerpad.realtime.errors import SteerpadError

RMS_EPS = 1e-12


@dataclass
class SAEConfig:
    """Shape and losses of a TopK SAE."""

    d_in: int = 64
    """Latent channels D (the VAE's latent_dim)."""

    n_features: int = 4096
    """Dictionary size F."""

    k: int = 32
    """Active features per vector (TopK)."""

    rmsnorm: bool = True
    """RMS-normalise the sparse code (no gain), so ||f|| = sqrt(F). False only for ablations."""

    level_pair: bool = True
    """Reserve features 0 and 1 as the level pair (see the module docstring) so the input's
    magnitude survives the RMSNorm. Needs rmsnorm; False only for ablations."""

    aux_k: int | None = None
    """Dead features used by the AuxK loss; None = min(256, n_features // 2) (Gao et al.
    2024 use 256-512; d_in // 2 revived deliberately killed features far less here)."""

    aux_coef: float = 1 / 32
    """Weight of the AuxK loss (Gao et al. 2024); 0 turns it off."""

    dead_after: int | None = None
    """A feature is dead once silent for this many training vectors; None = one epoch of the
    training data (the trainer fills it in)."""

    def __post_init__(self):
        if self.d_in < 1 or self.n_features < 1:
            raise ValueError("d_in and n_features must be positive")
        if not 1 <= self.k <= self.n_features - self.reserved:
            raise ValueError(f"k must be in [1, {self.n_features - self.reserved}] (n_features "
                             f"{self.n_features}, {self.reserved} reserved), got {self.k}")
        if self.level_pair and not self.rmsnorm:
            raise ValueError("level_pair needs rmsnorm (it shares the normalised code length)")
        if self.aux_k is not None and not 1 <= self.aux_k <= self.n_features:
            raise ValueError(f"aux_k must be in [1, n_features], got {self.aux_k}")
        if self.aux_coef < 0:
            raise ValueError(f"aux_coef must be >= 0, got {self.aux_coef}")
        if self.dead_after is not None and self.dead_after < 1:
            raise ValueError(f"dead_after must be >= 1 vector, got {self.dead_after}")

    @property
    def reserved(self) -> int:
        """Features at the start of the code that are not dictionary atoms (the level pair)."""
        return 2 if self.level_pair and self.rmsnorm else 0

    @property
    def k_aux(self) -> int:
        return self.aux_k if self.aux_k is not None else max(1, min(256, self.n_features // 2))


class SAEOutput(NamedTuple):
    x_hat: Tensor
    """Reconstruction [N, D], in the units of the input."""
    values: Tensor
    """Content code values [N, k] after ReLU and RMSNorm (zero where fewer than k pre-acts
    are > 0); the level pair's entries are not included."""
    indices: Tensor
    """Feature index of each value [N, k] (int64)."""
    fvu: Tensor
    """Fraction of variance unexplained over the batch, in standardised units (scalar)."""
    aux_loss: Tensor
    """AuxK loss: share of the residual's energy the dead features cannot explain (scalar in
    0..1; 0 without a dead mask or dead features)."""


def rmsnorm(f: Tensor, eps: float = RMS_EPS) -> Tensor:
    """RMS-normalise codes f [N, F] over the feature axis, no gain: ||f|| becomes sqrt(F)
    (an all-zero code stays zero)."""
    return f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + eps)


def _csr_mm(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int],
            dense: Tensor) -> Tensor:
    """CSR(crow, col, values) [shape] @ dense. A plain sparse x dense product: torch's
    "CSR support is in beta" notice is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        s = torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
    return s @ dense


class SparseIndex:
    """Index structure of a sparse code: indices [N, j] (sorted along j) as a CSR matrix
    [N, F] and its transpose [F, N], so the encoder's backward pass costs O(N j D) instead of
    a dense [N, F] x [F, D] product."""

    def __init__(self, idx: Tensor, n_features: int):
        n, j = idx.shape
        self.n, self.j, self.f = n, j, n_features
        self.col = idx.reshape(-1)
        self.crow = torch.arange(0, n * j + 1, j, device=idx.device)
        self._t: tuple[Tensor, Tensor, Tensor] | None = None

    def mm(self, values: Tensor, dense: Tensor) -> Tensor:
        """S(values) [N, F] @ dense [F, D] -> [N, D]."""
        return _csr_mm(self.crow, self.col, values.reshape(-1), (self.n, self.f), dense)

    def t_mm(self, values: Tensor, dense: Tensor) -> Tensor:
        """S(values)^T [F, N] @ dense [N, D] -> [F, D]."""
        if self._t is None:  # stable: row numbers stay sorted within each feature
            order = torch.argsort(self.col, stable=True)
            crow = torch.zeros(self.f + 1, dtype=torch.int64, device=self.col.device)
            torch.cumsum(torch.bincount(self.col, minlength=self.f), 0, out=crow[1:])
            self._t = (order, crow, torch.div(order, self.j, rounding_mode="floor"))
        order, crow, rows = self._t
        return _csr_mm(crow, rows, values.reshape(-1)[order], (self.f, self.n), dense)


class _EncodeSelected(torch.autograd.Function):
    """pre[n, i] = (x[n] . W[idx[n, i]]) + b[idx[n, i]] at the chosen features only. The
    values come from the dense no-grad pass; backward is sparse."""

    @staticmethod
    def forward(ctx, x, w, b, pre, sp):
        ctx.sp = sp
        ctx.save_for_backward(x, w)
        return pre.clone()

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        sp, g = ctx.sp, g.contiguous()
        gx = sp.mm(g, w) if ctx.needs_input_grad[0] else None
        gb = torch.zeros(sp.f, dtype=g.dtype, device=g.device).index_add_(0, sp.col, g.reshape(-1))
        return gx, sp.t_mm(g, x), gb, None, None


class TopKSAE(nn.Module):
    def __init__(self, config: SAEConfig, mean: Tensor | None = None, std: Tensor | None = None,
                 seed: int = 0):
        super().__init__()
        self.config = c = config
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(c.n_features, c.d_in, generator=gen)
        w = w / w.norm(dim=1, keepdim=True)
        # Decoder rows [F, D] at unit norm; the encoder starts as their transpose (Gao et al.).
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.clone())
        if c.reserved:  # the level pair: no encoder, decoder columns v and -v
            self.W_enc.data[:2] = 0.0
            self.W_dec.data[1] = -self.W_dec.data[0]
        self.b_enc = nn.Parameter(torch.zeros(c.n_features))
        self.b_dec = nn.Parameter(torch.zeros(c.d_in))
        # sqrt(D) is the RMS length of a standardised vector, a good start for one unit code.
        self.scale = nn.Parameter(torch.tensor(math.sqrt(c.d_in) if c.rmsnorm else 1.0))
        self.level = nn.Parameter(torch.tensor(1.0))  # the level pair's value, before RMSNorm
        self.register_buffer("mean", torch.zeros(c.d_in) if mean is None else
                             torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.ones(c.d_in) if std is None else
                             torch.as_tensor(std, dtype=torch.float32).clone())

    # --- standardisation ---------------------------------------------------------------
    def standardize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def unstandardize(self, x_s: Tensor) -> Tensor:
        return x_s * self.std + self.mean

    # --- sparse internals (standardised units) -----------------------------------------
    def pre_acts(self, x_s: Tensor) -> Tensor:
        """Encoder pre-activations [N, F - reserved] of the dictionary features."""
        r = self.config.reserved
        return torch.addmm(self.b_enc[r:], x_s - self.b_dec, self.W_enc[r:].t())

    def _topk(self, pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """TopK of pre [N, F'] -> (values, column indices) [N, k], indices sorted per row."""
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        idx, perm = idx.sort(dim=-1)
        return vals.gather(1, perm), idx

    def _selected(self, x_s: Tensor, pre: Tensor, idx: Tensor) -> tuple[Tensor, SparseIndex]:
        """Differentiable pre-activations at idx, from their no-grad values pre [N, j]."""
        sp = SparseIndex(idx, self.config.n_features)
        if not torch.is_grad_enabled():
            return pre, sp
        return _EncodeSelected.apply(x_s - self.b_dec, self.W_enc, self.b_enc, pre, sp), sp

    def encode_sparse(self, x_s: Tensor) -> tuple[Tensor, Tensor, Tensor, SparseIndex]:
        """Standardised x_s [N, D] -> (values [N, k], indices [N, k], gain [N, 1], SparseIndex):
        the ReLU'd TopK pre-activations times `gain`, the RMSNorm factor (1 without it)."""
        with torch.no_grad():
            pre, idx = self._topk(self.pre_acts(x_s), self.config.k)
            idx += self.config.reserved
        pre, sp = self._selected(x_s, pre, idx)
        raw = torch.relu(pre)
        if not self.config.rmsnorm:
            return raw, idx, raw.new_ones(raw.shape[0], 1), sp
        energy = raw.pow(2).sum(-1, keepdim=True) + self.config.reserved * self.level.pow(2)
        gain = torch.rsqrt(energy / self.config.n_features + RMS_EPS)
        return raw * gain, idx, gain, sp

    def decode_sparse(self, values: Tensor, sp: SparseIndex, bias: bool = True) -> Tensor:
        """Sparse code (values [N, j] at sp's indices) -> standardised reconstruction [N, D]."""
        idx = sp.col.view(sp.n, sp.j)  # embedding_bag: fast fused kernels for both passes
        out = F.embedding_bag(idx, self.W_dec, per_sample_weights=values, mode="sum")
        out = out * self._out_gain()
        return out + self.b_dec if bias else out

    def _out_gain(self) -> Tensor:
        return self.scale / math.sqrt(self.config.n_features) if self.config.rmsnorm else self.scale

    # --- public, original latent units --------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Latents x [N, D] -> dense code f [N, F] (TopK, ReLU, RMSNorm: ||f|| = sqrt(F));
        f[:, 0] = f[:, 1] is the level pair's entry when config.level_pair."""
        values, idx, gain, _ = self.encode_sparse(self.standardize(x))
        f = torch.zeros(x.shape[0], self.config.n_features, dtype=values.dtype,
                        device=values.device).scatter(1, idx, values)
        if self.config.reserved:  # added, not written in place: torch.jit.trace would bake the
            # row count of an in-place slice write into the exported steer.pt
            pair = torch.zeros(self.config.n_features, dtype=values.dtype, device=values.device)
            pair[: self.config.reserved] = 1.0
            f = f + self.level.abs() * gain * pair
        return f

    def decode(self, f: Tensor) -> Tensor:
        """Code f [N, F] (any, e.g. a steered rmsnorm(f + a*d)) -> latents x_hat [N, D].
        Equal level-pair entries cancel; a difference between them adds along v."""
        return self.unstandardize(f @ self.W_dec * self._out_gain() + self.b_dec)

    def forward(self, x: Tensor, dead_mask: Tensor | None = None,
                standardized: bool = False) -> SAEOutput:
        """x [N, D] (original units, or already standardised with standardized=True).
        dead_mask [F] bool turns on the AuxK loss for those features."""
        x_s = x if standardized else self.standardize(x)
        values, idx, gain, sp = self.encode_sparse(x_s)
        x_hat_s = self.decode_sparse(values, sp)
        err = x_s - x_hat_s
        total_var = (x_s - x_s.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = err.pow(2).sum() / total_var
        aux = self._aux_loss(x_s, err, dead_mask)
        x_hat = x_hat_s if standardized else self.unstandardize(x_hat_s)
        return SAEOutput(x_hat, values, idx, fvu, aux)

    def _aux_loss(self, x_s: Tensor, err: Tensor, dead_mask: Tensor | None) -> Tensor:
        """AuxK (Gao et al. 2024), made scale-free: per vector, the top aux_k dead features
        (ReLU'd pre-activations through their decoder columns) predict the residual err up
        to the best non-negative scale; the loss is the share of the residual's energy they
        leave unexplained (0..1). Only the dead features' own weights learn from it.

        Why scale-free: with the plain loss ||e_hat - err||^2 and a residual of 1-2% of the
        variance, 256 dead features overshoot it, and the cheapest fix is to lower all their
        pre-activations, which buries them further below the TopK threshold. Measured on
        real-sound latents (tests/offline/test_sae_real.py): 35% of the dictionary dead with the
        plain loss, 14% with no AuxK, 0.1-0.8% with this one."""
        zero = x_s.new_zeros(())
        if dead_mask is None or self.config.aux_coef == 0:
            return zero
        dead_mask = dead_mask.clone()
        dead_mask[: self.config.reserved] = False  # the level pair is never dead
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return zero
        k_aux = min(self.config.k_aux, n_dead)
        dead_idx = dead_mask.nonzero().squeeze(1)
        # Dense over the dead features only: O(N * n_dead * D), cheaper than sparse kernels
        # over N * k_aux entries unless most of the dictionary is dead.
        pre = torch.addmm(self.b_enc[dead_idx], x_s - self.b_dec.detach(), self.W_enc[dead_idx].t())
        with torch.no_grad():
            keep = torch.zeros_like(pre).scatter_(1, pre.topk(k_aux, dim=-1).indices, 1.0)
        e_hat = (torch.relu(pre) * keep) @ self.W_dec[dead_idx]
        err = err.detach()
        fit = (e_hat * err).sum(-1, keepdim=True) / e_hat.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
        return (fit.clamp_min(0.0) * e_hat - err).pow(2).sum() / err.pow(2).sum().clamp_min(1e-12)

    @torch.no_grad()
    def init_from_data_(self, x_s: Tensor, level: float = 10.0) -> None:
        """Data-dependent start on standardised x_s [N, D]: the level pair at `level` times
        the content code's RMS length, then `scale` at its least-squares optimum."""
        if self.config.reserved:
            raw = torch.relu(self.pre_acts(x_s).topk(self.config.k, dim=-1).values)
            self.level.fill_(level * float(raw.pow(2).sum(-1).mean().sqrt()))
        values, _, _, sp = self.encode_sparse(x_s)
        self.scale.fill_(1.0)
        out = self.decode_sparse(values, sp, bias=False)
        target = x_s - self.b_dec
        self.scale.fill_(float((out * target).sum() / out.pow(2).sum().clamp_min(1e-12)))

    # --- decoder norm upkeep (called by the trainer around each optimiser step) ---------
    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each decoder row (Gao et al.)."""
        if self.W_dec.grad is not None:
            par = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
            self.W_dec.grad -= par * self.W_dec

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


def save_sae(model: TopKSAE, out_dir: str | Path, training: dict | None = None) -> Path:
    """Write `model.safetensors` + `config.json` (SAE config, standardisation stats and, if
    given, a JSON-able record of how it was trained)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"))
    meta = {"kind": "topk_sae", "config": asdict(model.config),
            "mean": model.mean.tolist(), "std": model.std.tolist()}
    if training is not None:
        meta["training"] = training
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def load_sae(model_dir: str | Path) -> TopKSAE:
    model_dir = Path(model_dir)
    cfg_path, weights = model_dir / "config.json", model_dir / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise SteerpadError(f"{p}: missing; point at a folder written by `steerpad train sae`")
    try:
        meta = json.loads(cfg_path.read_text())
        known = {f.name for f in fields(SAEConfig)}
        config = SAEConfig(**{k: v for k, v in meta["config"].items() if k in known})
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SteerpadError(f"{cfg_path}: not a valid SAE config ({e}); retrain the SAE") from None
    model = TopKSAE(config)
    state = load_file(str(weights))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch between config.json and the weights
        raise SteerpadError(f"{weights}: does not match {cfg_path} "
                            f"({str(e).splitlines()[-1].strip()}); retrain the SAE") from None
    if missing or unexpected:
        raise SteerpadError(f"{weights}: missing keys {missing}, unexpected keys {unexpected}; "
                            "retrain the SAE")
    return model
