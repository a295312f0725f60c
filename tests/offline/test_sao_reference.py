"""Parity with the reference: stable-audio-tools' own OobleckEncoder / OobleckDecoder, built with
Stable Audio Open 1.0's config and random weights, saved as a fake SAO checkpoint (.safetensors
and .ckpt, keys under `pretransform.model.`, old weight_norm names), loaded through
`load_sao_weights`: the project's `sao` model must give the same latents and audio on 1 s of
stereo 44.1 kHz audio, before and after `fold_weight_norm()`.

stable-audio-tools (installed with --no-deps, tests only) imports several packages at module
level that are not installed and that the Oobleck code never calls; the fixture lends it
stand-ins for exactly those, then puts sys.modules back as it was.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings

import pytest
import torch
from safetensors.torch import save_file

from steerpad.offline.sao_weights import load_sao_weights
from steerpad.offline.vae import OobleckVAE, get_config, kl_divergence

pytestmark = pytest.mark.slow

# Imported at module level by stable_audio_tools(.models.autoencoders) and its imports, but not
# called on the OobleckEncoder / OobleckDecoder / vae_sample paths used here.
NEVER_CALLED = ["huggingface_hub", "torchaudio", "torchaudio.transforms", "alias_free_torch",
                "einops", "einops.layers", "einops.layers.torch", "einops_exts", "k_diffusion"]
TOL = 1e-4


def _stand_in(name: str) -> types.ModuleType:
    """A module whose every attribute is a class that fails loudly if it is ever used."""
    module = types.ModuleType(name)
    module.__path__ = []  # lets `import name.sub` find the sub stand-in

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def fail(*args, **kwargs):
            raise AssertionError(f"test stand-in {name}.{attr} was used by the reference")
        return type(attr, (), {"__init__": fail, "__call__": fail})

    module.__getattr__ = __getattr__
    module.__steerpad_stand_in__ = True
    return module


@pytest.fixture(scope="module")
def reference():
    """stable_audio_tools.models.autoencoders and .bottleneck, imported with stand-ins."""
    if importlib.util.find_spec("stable_audio_tools") is None:
        pytest.fail("stable-audio-tools is not installed: ./scripts/test installs it (--no-deps)")
    missing = [n for n in NEVER_CALLED if importlib.util.find_spec(n.split(".")[0]) is None]
    saved = {n: sys.modules[n] for n in list(sys.modules)
             if n in missing or n.split(".")[0] == "stable_audio_tools"}
    import torch._dynamo  # its models/utils.py changes two dynamo settings on import

    dynamo = {k: getattr(torch._dynamo.config, k) for k in ("cache_size_limit", "suppress_errors")}
    try:
        for name in missing:
            sys.modules[name] = _stand_in(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            autoencoders = importlib.import_module("stable_audio_tools.models.autoencoders")
            bottleneck = importlib.import_module("stable_audio_tools.models.bottleneck")
    finally:
        for n in list(sys.modules):
            if n in missing or n.split(".")[0] == "stable_audio_tools":
                del sys.modules[n]
        sys.modules.update(saved)
        for k, v in dynamo.items():
            setattr(torch._dynamo.config, k, v)
    return autoencoders, bottleneck


@pytest.fixture(scope="module")
def sao_pair(reference, tmp_path_factory):
    """(reference encoder, reference decoder, checkpoint folder) with shared random weights."""
    autoencoders, _ = reference
    cfg = get_config("sao")
    kw = {"channels": cfg.channels, "c_mults": cfg.c_mults, "strides": cfg.strides,
          "use_snake": cfg.use_snake}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its old torch.nn.utils.weight_norm
        encoder = autoencoders.OobleckEncoder(in_channels=2, latent_dim=2 * cfg.latent_dim, **kw)
        decoder = autoencoders.OobleckDecoder(out_channels=2, latent_dim=cfg.latent_dim,
                                              final_tanh=cfg.final_tanh, **kw)
    ref = torch.nn.Module()
    ref.encoder, ref.decoder = encoder, decoder
    with torch.no_grad():  # random snake shapes and weight-norm gains (defaults are 0 and |v|)
        for name, p in ref.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn_like(p))
            elif name.endswith("weight_g"):
                p.mul_(0.8 + torch.rand_like(p))  # x1.3 on average: signals stay O(1)
            elif name.endswith("bias"):
                p.copy_(0.01 * torch.randn_like(p))
    ref.eval()
    state = {"pretransform.model." + k: v.contiguous() for k, v in ref.state_dict().items()}
    assert any(k.endswith(".weight_g") for k in state) and any(k.endswith(".weight_v") for k in state)
    state["model.model.transformer.layers.0.self_attn.to_qkv.weight"] = torch.randn(8, 4)  # the DiT
    state["conditioner.conditioners.seconds_total.embedder.embedding.1.weight"] = torch.randn(4)
    folder = tmp_path_factory.mktemp("sao")
    save_file(state, str(folder / "model.safetensors"))
    torch.save({"state_dict": state, "global_step": 0}, folder / "model.ckpt")
    return encoder, decoder, folder


def test_stand_ins_are_gone_after_import(reference):
    for name in NEVER_CALLED:
        assert not vars(sys.modules.get(name, sys)).get("__steerpad_stand_in__"), name
    assert "stable_audio_tools" not in sys.modules


def test_sao_encoder_and_decoder_match_stable_audio_tools(reference, sao_pair):
    _, bottleneck = reference
    ref_encoder, ref_decoder, folder = sao_pair
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(44100) / 44100
    audio = torch.stack([0.5 * torch.sin(2 * torch.pi * 110 * t) * torch.exp(-6 * t),
                         0.2 * torch.randn(44100, generator=gen)]).unsqueeze(0)  # [1, 2, 44100]
    z = torch.randn(1, 64, 22, generator=gen)  # 22 frames = 45056 samples

    with torch.inference_mode():
        ref_latent = ref_encoder(audio)  # [1, 128, 21]: mean + scale
        ref_audio = ref_decoder(z)
        _, ref_kl = bottleneck.vae_sample(*ref_latent.chunk(2, dim=1))
    assert ref_latent.shape == (1, 128, 21) and ref_audio.shape == (1, 2, 45056)
    # The comparison is meaningful only if the reference's outputs are neither tiny nor huge.
    assert 0.05 < ref_latent.std() < 100 and 0.05 < ref_audio.std() < 100

    model = load_sao_weights(OobleckVAE(get_config("sao")).eval(), folder / "model.safetensors")
    for stage in ("weight norm", "folded"):
        if stage == "folded":
            model.fold_weight_norm()
        with torch.inference_mode():
            mean, std = model.encode_dist(audio)
            out = model.decode(z)
        assert (mean - ref_latent[:, :64]).abs().max() < TOL, stage
        ref_std = torch.nn.functional.softplus(ref_latent[:, 64:]) + 1e-4
        assert (std - ref_std).abs().max() < TOL, stage
        assert (out - ref_audio).abs().max() < TOL, stage
        assert torch.isclose(kl_divergence(mean, std), ref_kl, rtol=1e-4), stage
    with torch.inference_mode():
        assert torch.equal(model.encode(audio), mean)  # deterministic latents = the mean

    # The .ckpt (wrapped in "state_dict"), loaded straight into a folded model, gives the same
    # weights as the .safetensors loaded with weight norm and folded afterwards.
    folded = load_sao_weights(OobleckVAE(get_config("sao")).fold_weight_norm(), folder / "model.ckpt")
    a, b = model.state_dict(), folded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
