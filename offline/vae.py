"""steerpad's VAE family, written for both training and export: Stable Audio Open's Oobleck
autoencoder (`sao`, and the waveform `oobleck_small`) and the small spectral default (`small`,
`tiny`: a log-magnitude STFT front end and an inverse-STFT head from spectral.py around the same
blocks). `get_config(name)` names them; OobleckVAE builds any of them.

The module tree mirrors stable-audio-tools' `OobleckEncoder` / `OobleckDecoder`
(`encoder.layers.N.layers.M...`), so Stable Audio Open checkpoints map key for key (see
`sao_weights.py`). Convolutions carry weight norm (`torch.nn.utils.parametrizations.weight_norm`)
for training; `fold_weight_norm()` turns them into plain `Conv1d` / `ConvTranspose1d` with the
same outputs, for inference and export. Forward passes have no data-dependent Python control
flow. Audio is `[B, C, T]` with T a multiple of `hop`; latents are `[B, D, F]` with F = T / hop.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from steerpad.offline.sao_weights import load_vae_state
from steerpad.offline.spectral import ISTFTHead, STFTLogMagnitude, head_channels
from steerpad.realtime.errors import SteerpadError


@dataclass
class OobleckConfig:
    """Shape of an Oobleck VAE. Everything needed to rebuild the module tree."""

    name: str = "small"
    """A label for the config (`sao`, `small`, or your own); written with saved models."""

    sample_rate: int = 44100
    """Audio sample rate in Hz the model is trained for (the model itself is rate-agnostic)."""

    audio_channels: int = 2
    """Audio channels in and out (2 = stereo)."""

    channels: int = 128
    """Base width: stage i runs at `channels * c_mults[i]` channels."""

    c_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    """Width multipliers of the down/upsampling stages, finest first (a leading 1 is implied)."""

    strides: list[int] = field(default_factory=lambda: [2, 4, 4, 8, 8])
    """Down/upsampling factor of each stage, finest first; even, so lengths stay exact."""

    latent_dim: int = 64
    """Latent channels D; the encoder outputs 2*D (mean and pre-softplus scale)."""

    use_snake: bool = True
    """SnakeBeta activations (log-scale alpha/beta); False uses ELU."""

    final_tanh: bool = False
    """Squash the decoder output with tanh (SAO 1.0 does not)."""

    stft_hop: int = 0
    """0: Oobleck's waveform stages all the way (SAO). > 0: a spectral model. The encoder starts
    from the log-magnitude STFT (window 4 * stft_hop, hop stft_hop) and the decoder ends in an
    inverse-STFT head that predicts log magnitude and phase per bin (as in Vocos), so the strides
    only span hop / stft_hop. The spectral envelope, what the knobs steer, is then the decoder's
    direct output instead of something a narrow full-rate waveform stack must learn."""

    def __post_init__(self) -> None:
        for name in ("sample_rate", "audio_channels", "channels", "latent_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"OobleckConfig.{name} must be a positive int, "
                                 f"got {getattr(self, name)!r}")
        self.c_mults, self.strides = list(self.c_mults), list(self.strides)
        if not self.strides or len(self.c_mults) != len(self.strides):
            raise ValueError(f"OobleckConfig: c_mults {self.c_mults} and strides {self.strides} "
                             "must be non-empty and of the same length")
        if any(not isinstance(m, int) or m <= 0 for m in self.c_mults):
            raise ValueError(f"OobleckConfig.c_mults must be positive ints, got {self.c_mults}")
        if not isinstance(self.stft_hop, int) or self.stft_hop < 0 or self.stft_hop % 2:
            raise ValueError(f"OobleckConfig.stft_hop must be 0 or an even positive int, "
                             f"got {self.stft_hop!r}")
        if self.stft_hop and self.final_tanh:
            raise ValueError("OobleckConfig: final_tanh does not apply to a spectral model "
                             "(stft_hop > 0)")
        if any(not isinstance(s, int) or s < 2 or s % 2 for s in self.strides):
            raise ValueError(f"OobleckConfig.strides must be even ints >= 2 (kernel 2s, padding "
                             f"s/2 keeps lengths exact), got {self.strides}")

    @property
    def hop(self) -> int:
        """Audio samples per latent frame (the product of the strides, times stft_hop)."""
        return math.prod(self.strides) * max(self.stft_hop, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OobleckConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"OobleckConfig: unknown fields {unknown}; allowed: {sorted(known)}")
        return cls(**d)


CONFIGS: dict[str, OobleckConfig] = {
    # Stable Audio Open 1.0's VAE (stable-audio-tools model_config "pretransform").
    "sao": OobleckConfig(name="sao", channels=128),
    # The default trainable model, spectral (stft_hop 256: a log-magnitude STFT into the
    # encoder, an inverse-STFT head out of the decoder, 1024-point window), the same 2048-sample
    # hop and 64-dim latents as SAO; ELU, since SnakeBeta diverged within 200 steps in this
    # layout. 1.8 M decoder parameters; decoding 1 s of stereo takes ~9 ms in torch on the
    # project's 2 cores (the `sao` decoder ~1 s). Trained from scratch it reproduces spectral
    # shape within minutes, where a narrow waveform Oobleck only learned level.
    "small": OobleckConfig(name="small", channels=64, c_mults=[2, 4], strides=[2, 4],
                           stft_hop=256, use_snake=False),
    # Half the small width: the test fixture model (tests/fixtures/synth_vae) and quick runs.
    "tiny": OobleckConfig(name="tiny", channels=32, c_mults=[2, 4], strides=[2, 4],
                          stft_hop=256, use_snake=False),
    # A narrow waveform Oobleck (SAO's layout at 1/8 of its width, 1.3 M parameters a side),
    # the earlier default: kept for comparison.
    "oobleck_small": OobleckConfig(name="oobleck_small", channels=16),
}


def get_config(name: str) -> OobleckConfig:
    """A fresh copy of a named config; SteerpadError listing the names for an unknown one."""
    if name not in CONFIGS:
        raise SteerpadError(f"unknown VAE config {name!r}; choose one of {', '.join(CONFIGS)}")
    return replace(CONFIGS[name])


SCALE_BIAS_INIT = -1.0
"""Starting bias of the encoder's posterior-scale channels: std softplus(-1) = 0.31 against
latent means of std ~1 after data_init_: enough sampling noise that the decoder learns some
smoothness around each latent, little enough that the means carry the signal. Chosen, not
tuned (0 collapsed; -4 and -1 both trained)."""


class SnakeBeta(nn.Module):
    """x + 1/beta * sin(alpha x)^2 per channel, alpha and beta stored as logs (BigVGAN / SAO)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C, T]
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1).exp()
        beta = self.beta.unsqueeze(0).unsqueeze(-1).exp()
        return x + (1.0 / (beta + 1e-9)) * torch.pow(torch.sin(x * alpha), 2)


def _act(use_snake: bool, channels: int) -> nn.Module:
    return SnakeBeta(channels) if use_snake else nn.ELU()


def _wn_conv(*args: Any, **kwargs: Any) -> nn.Module:
    return weight_norm(nn.Conv1d(*args, **kwargs))


def _wn_conv_t(*args: Any, **kwargs: Any) -> nn.Module:
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


class ResidualUnit(nn.Module):
    """act -> dilated conv k7 -> act -> conv k1, plus the input. [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, dilation: int, use_snake: bool):
        super().__init__()
        self.layers = nn.Sequential(
            _act(use_snake, channels),
            _wn_conv(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation),
            _act(use_snake, channels),
            _wn_conv(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class EncoderBlock(nn.Module):
    """Three residual units, then a strided conv. [B, Cin, T] -> [B, Cout, T / stride]."""

    def __init__(self, c_in: int, c_out: int, stride: int, use_snake: bool):
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualUnit(c_in, d, use_snake) for d in (1, 3, 9)),
            _act(use_snake, c_in),
            _wn_conv(c_in, c_out, kernel_size=2 * stride, stride=stride,
                     padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    """A transposed conv, then three residual units. [B, Cin, F] -> [B, Cout, F * stride]."""

    def __init__(self, c_in: int, c_out: int, stride: int, use_snake: bool):
        super().__init__()
        self.layers = nn.Sequential(
            _act(use_snake, c_in),
            _wn_conv_t(c_in, c_out, kernel_size=2 * stride, stride=stride,
                       padding=math.ceil(stride / 2)),
            *(ResidualUnit(c_out, d, use_snake) for d in (1, 3, 9)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckEncoder(nn.Module):
    """Audio [B, C, T] -> [B, 2D, T / hop] (mean and pre-softplus scale, stacked on channels)."""

    def __init__(self, config: OobleckConfig):
        super().__init__()
        widths = [config.channels * m for m in [1, *config.c_mults]]
        if config.stft_hop:
            front = STFTLogMagnitude(config.audio_channels, config.stft_hop)
            layers: list[nn.Module] = [front, _wn_conv(config.audio_channels * front.bins,
                                                       widths[0], 7, padding=3)]
        else:
            layers = [_wn_conv(config.audio_channels, widths[0], 7, padding=3)]
        for i, stride in enumerate(config.strides):
            layers.append(EncoderBlock(widths[i], widths[i + 1], stride, config.use_snake))
        layers += [_act(config.use_snake, widths[-1]),
                   _wn_conv(widths[-1], 2 * config.latent_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)
        # The posterior scale starts below the usual softplus(0) = 0.69 (SCALE_BIAS_INIT: 0.31),
        # and OobleckVAE.data_init_ sizes the means, so sampling noise does not drown the signal
        # at the start of training (see data_init_ for the collapse it prevents). Loaded
        # weights (Stable Audio Open, a saved model) replace this.
        with torch.no_grad():
            layers[-1].bias[config.latent_dim:] = SCALE_BIAS_INIT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @property
    def front(self) -> STFTLogMagnitude | None:
        """The log-magnitude STFT front of a spectral encoder (stft_hop > 0), else None."""
        first = self.layers[0]
        return first if isinstance(first, STFTLogMagnitude) else None

    def from_spectrum(self, log_magnitude: torch.Tensor) -> torch.Tensor:
        """A spectral encoder after its front: log magnitudes [B, C * bins, T / stft_hop] (the
        front's output) -> [B, 2D, T / hop]. What an exported bundle's encoder.onnx computes
        (realtime/bundle.py makes its input with an FFT)."""
        if self.front is None:
            raise ValueError("from_spectrum: this encoder is not spectral (stft_hop = 0)")
        return self.layers[1:](log_magnitude)


class OobleckDecoder(nn.Module):
    """Latents [B, D, F] -> audio [B, C, F * hop]."""

    def __init__(self, config: OobleckConfig):
        super().__init__()
        widths = [config.channels * m for m in [1, *config.c_mults]]
        layers: list[nn.Module] = [_wn_conv(config.latent_dim, widths[-1], 7, padding=3)]
        for i in range(len(config.strides), 0, -1):
            layers.append(DecoderBlock(widths[i], widths[i - 1], config.strides[i - 1],
                                       config.use_snake))
        layers.append(_act(config.use_snake, widths[0]))
        if config.stft_hop:
            conv = _wn_conv(widths[0], head_channels(config.audio_channels, config.stft_hop), 7,
                            padding=3)
            layers.append(ISTFTHead(conv, config.audio_channels, config.stft_hop))
        else:
            layers += [_wn_conv(widths[0], config.audio_channels, 7, padding=3, bias=False),
                       nn.Tanh() if config.final_tanh else nn.Identity()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)

    @property
    def head(self) -> ISTFTHead | None:
        """The inverse-STFT head of a spectral decoder (stft_hop > 0), else None."""
        last = self.layers[-1]
        return last if isinstance(last, ISTFTHead) else None

    def spectrum(self, z: torch.Tensor) -> torch.Tensor:
        """A spectral decoder's output before its inverse STFT: latents [B, D, F] -> frames
        [B, C, 2, bins, F * hop / stft_hop] (ISTFTHead.complex_spectrum). What an exported
        bundle's decoder.onnx computes (realtime/bundle.py finishes it with an FFT)."""
        head = self.head
        if head is None:
            raise ValueError("spectrum: this decoder is not spectral (stft_hop = 0)")
        return head.complex_spectrum(self.layers[:-1](z))


class VAEOutput(NamedTuple):
    audio: torch.Tensor
    """Reconstruction [B, C, F * hop] (from a posterior sample in training mode, else the mean)."""
    mean: torch.Tensor
    """Posterior mean [B, D, F] (the deterministic latents)."""
    std: torch.Tensor
    """Posterior standard deviation [B, D, F] (softplus(scale) + 1e-4)."""
    kl: torch.Tensor
    """Scalar KL to N(0, I): sum over channels, mean over batch and frames."""


def kl_divergence(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(0, 1)) * 2, as stable-audio-tools computes it: sum over channels of
    (mean^2 + var - log var - 1), averaged over batch and frames. [B, D, F] x2 -> scalar."""
    var = std * std
    return (mean * mean + var - torch.log(var) - 1).sum(1).mean()


class OobleckVAE(nn.Module):
    """Encoder + VAE bottleneck + decoder. See the module docstring for shapes."""

    def __init__(self, config: OobleckConfig):
        super().__init__()
        self.config = config
        self.encoder = OobleckEncoder(config)
        self.decoder = OobleckDecoder(config)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, C, T] -> (mean [B, D, F], std [B, D, F])."""
        mean, scale = self.encoder(x).chunk(2, dim=1)
        return mean, nn.functional.softplus(scale) + 1e-4

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Audio [B, C, T] -> deterministic latents [B, D, F]: the posterior mean."""
        return self.encoder(x)[:, : self.config.latent_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, D, F] -> audio [B, C, F * hop]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """Audio [B, C, T] -> VAEOutput. Samples the posterior in training mode only."""
        mean, std = self.encode_dist(x)
        z = mean + std * torch.randn_like(mean) if self.training else mean
        return VAEOutput(self.decode(z), mean, std, kl_divergence(mean, std))

    @torch.no_grad()
    def data_init_(self, x: torch.Tensor, residual_std: float = 0.3) -> OobleckVAE:
        """Data-dependent init of the weight-normed convs (Salimans & Kingma 2016) on a batch of
        audio x [B, C, T], in place, before training from scratch. In forward order, each conv's
        gain g and bias are set so its output channels have mean 0 and std 1 on x (the last conv
        of each residual unit: `residual_std`, so the skip path dominates at first; the latent
        means: std 1; the decoder's output: the audio's own per-channel std).

        Why: PyTorch's default conv init shrinks the signal by ~0.7 per layer, so a fresh
        Oobleck's latents hardly depend on the input (spread across clips 0.3 % of their RMS on
        drums), its decoder ignores them, and the posterior collapses onto the prior (measured on
        the `tiny` model: after 300 steps every clip decoded to the same sound)."""
        if self.folded:
            raise ValueError("data_init_ needs the weight-normed (training) model")
        targets: dict[nn.Module, torch.Tensor | float] = {}
        for unit in self.modules():
            if isinstance(unit, ResidualUnit):
                targets[unit.layers[3]] = residual_std
        latent_conv, out_conv = self.encoder.layers[-1], self.decoder.layers[-2]
        d = self.config.latent_dim
        audio_std = x.transpose(0, 1).reshape(x.shape[1], -1).std(1).clamp_min(1e-4)
        last = self.decoder.layers[-1]
        head = last if isinstance(last, ISTFTHead) else None
        if head is None:
            targets[out_conv] = audio_std

        def hook(module, _inputs, y):
            mean, std = y.mean((0, 2)), y.std((0, 2)).clamp_min(1e-6)
            target = torch.as_tensor(targets.get(module, 1.0), dtype=y.dtype).expand_as(std).clone()
            extra = torch.zeros_like(mean)
            if module is latent_conv:  # the scale half: near-constant softplus(SCALE_BIAS_INIT)
                target[d:] = 1e-3
                extra[d:] = SCALE_BIAS_INIT
            g = module.parametrizations.weight.original0
            if isinstance(module, nn.ConvTranspose1d):  # g is per input channel: one gain
                scale = (target.pow(2).mean() / std.pow(2).mean()).sqrt().expand_as(std)
                g.mul_(scale[0])
            else:
                scale = target / std
                g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
            if module.bias is None:
                return y * scale.view(1, -1, 1)
            # new output = scale * (W x) + b' = scale * (y - mean) + extra
            module.bias.copy_(scale * (module.bias - mean) + extra)
            return (y - mean.view(1, -1, 1)) * scale.view(1, -1, 1) + extra.view(1, -1, 1)

        handles = [m.register_forward_hook(hook) for m in self.modules()
                   if parametrize.is_parametrized(m, "weight")]
        was_training = self.training
        self.eval()
        try:
            self.decode(self.encode(x))
        finally:
            for h in handles:
                h.remove()
        if head is not None:
            # The head's conv now gives log magnitudes of mean 0: shift them so the output's
            # level per channel is the audio's.
            y = self.decode(self.encode(x))
            y_std = y.transpose(0, 1).reshape(y.shape[1], -1).std(1).clamp_min(1e-8)
            bias = head.conv.bias.view(head.channels, 2, head.bins)
            bias[:, 0] += torch.log(audio_std / y_std).unsqueeze(-1)
        self.train(was_training)
        return self

    def folded_copy(self) -> OobleckVAE:
        """A folded, eval-mode copy with these weights on the CPU; this model is untouched. Not
        copy.deepcopy: a deep copy shares the weight-norm parametrization classes, and folding
        it would break this model too."""
        fresh = OobleckVAE(replace(self.config))
        if self.folded:
            fresh.fold_weight_norm()
        fresh.load_state_dict({k: v.detach().cpu() for k, v in self.state_dict().items()})
        return fresh.fold_weight_norm().eval()

    @property
    def folded(self) -> bool:
        """True once `fold_weight_norm()` has run (no weight-norm parametrizations left)."""
        return not any(parametrize.is_parametrized(m) for m in self.modules())

    def fold_weight_norm(self) -> OobleckVAE:
        """In place: every weight-normed conv becomes a plain conv whose weight is g * v / |v|.
        Outputs are unchanged; the model exports cleanly. Safe under no_grad / inference_mode
        (where `remove_parametrizations` alone would leave an unregistered tensor). Returns self."""
        for module in list(self.modules()):  # a list: the loop edits the module tree
            if parametrize.is_parametrized(module, "weight"):
                v = module.parametrizations.weight.original1
                with torch.inference_mode(False), torch.no_grad():
                    weight = module.weight.clone()
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
                module.weight = nn.Parameter(weight, requires_grad=v.requires_grad)
        return self


def save_vae(model: OobleckVAE, out_dir: str | Path) -> Path:
    """Write `out_dir/config.json` + `out_dir/model.safetensors` (each replaced atomically)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out_dir / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "steerpad-oobleck"})
    os.replace(tmp, out_dir / "model.safetensors")
    meta = {"kind": "oobleck_vae", "folded": model.folded, "config": model.config.to_dict()}
    tmp = out_dir / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out_dir / "config.json")
    return out_dir


def load_vae(model_dir: str | Path) -> OobleckVAE:
    """Rebuild a VAE saved by `save_vae` (eval mode). SteerpadError naming the file if the
    folder is missing, its config is invalid or its weights do not fit the config."""
    model_dir = Path(model_dir)
    cfg_path, weights = model_dir / "config.json", model_dir / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise SteerpadError(f"{p}: missing; a VAE folder holds config.json and "
                                "model.safetensors (written by save_vae / `steerpad train vae`)")
    try:
        meta = json.loads(cfg_path.read_text())
        if meta.get("kind") != "oobleck_vae":
            raise ValueError(f"kind is {meta.get('kind')!r}, not 'oobleck_vae'")
        config = OobleckConfig.from_dict(meta["config"])
        folded = bool(meta.get("folded", False))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SteerpadError(f"{cfg_path}: not a valid VAE config ({e}); re-save the model") from None
    model = OobleckVAE(config)
    if folded:
        model.fold_weight_norm()
    load_vae_state(model, _read_safetensors(weights), source=str(weights))
    return model.eval()


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 -- a torn or foreign file: safetensors raises many types
        raise SteerpadError(f"{path}: not a readable safetensors file ({e.__class__.__name__}); "
                            "re-save the model") from None
