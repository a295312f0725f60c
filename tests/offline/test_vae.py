"""The project's Oobleck VAE: configs, shapes, weight-norm folding, save/load, KL, and the
Stable Audio Open loader's handling of good and bad files (on tiny configs; the parity with
stable-audio-tools itself is tests/offline/test_sao_reference.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from steerpad.offline.sao_weights import load_sao_weights
from steerpad.offline.vae import (
    CONFIGS,
    OobleckConfig,
    OobleckVAE,
    get_config,
    load_vae,
    save_vae,
)
from steerpad.realtime.errors import SteerpadError

TINY = OobleckConfig(name="tiny", audio_channels=2, channels=4, c_mults=[1, 2], strides=[2, 4],
                     latent_dim=3)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (snake alpha/beta and weight-norm gains too), so that folding
    and loading are tested on non-trivial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("original0"):  # weight-norm gain: keep it positive
                p.mul_(0.75 + 0.5 * torch.rand(p.shape, generator=gen))
            elif name.endswith(("alpha", "beta")):
                p.copy_(0.3 * noise)
            else:
                p.add_(0.05 * noise)
    return model


def _audio(config: OobleckConfig, frames: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(2, config.audio_channels, frames * config.hop, generator=gen)


def _sao_state(model: OobleckVAE, prefix: str) -> dict[str, torch.Tensor]:
    """The model's weights spelled as a Stable Audio Open checkpoint: old weight_norm names."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        k = k.replace(".parametrizations.weight.original1", ".weight_v")
        out[prefix + k] = v.clone()
    return out


# -- configs and shapes -------------------------------------------------------------------------

def test_named_configs_have_sao_hop_and_latent_size():
    for name in ("sao", "small", "tiny", "oobleck_small"):
        cfg = get_config(name)
        assert (cfg.hop, cfg.latent_dim, cfg.sample_rate, cfg.audio_channels) == (2048, 64, 44100, 2)
    for name in ("sao", "oobleck_small"):  # waveform Oobleck: SAO's layout
        cfg = get_config(name)
        assert cfg.strides == [2, 4, 4, 8, 8] and cfg.c_mults == [1, 2, 4, 8, 16]
        assert cfg.use_snake and not cfg.final_tanh and cfg.stft_hop == 0
    assert get_config("sao").channels == 128
    assert get_config("oobleck_small").channels < 128
    cfg = get_config("small")
    cfg.c_mults.append(32)  # a copy: the registry is untouched
    assert CONFIGS["small"].c_mults == [2, 4]


def test_sao_module_tree_matches_stable_audio_open():
    sao = OobleckVAE(get_config("sao"))  # built, not run: running it is the reference test's job
    n = sum(p.numel() for p in sao.parameters())
    assert 155e6 < n < 158e6  # SAO 1.0's VAE: ~156 M parameters
    state = sao.state_dict()
    g = ".parametrizations.weight.original0"
    assert state["encoder.layers.0" + g].shape == (128, 1, 1)
    assert state["encoder.layers.7" + g].shape == (128, 1, 1)  # encoder output: mean + scale
    assert state["encoder.layers.1.layers.0.layers.0.alpha"].shape == (128,)
    assert state["decoder.layers.0.parametrizations.weight.original1"].shape == (2048, 64, 7)
    assert state["decoder.layers.1.layers.1" + g].shape == (2048, 1, 1)  # transposed: dim 0 = in
    assert "decoder.layers.7.bias" not in state  # the last conv has no bias
    assert "decoder.layers.7" + g in state


def test_small_shapes_and_hop():
    cfg = get_config("small")
    model = OobleckVAE(cfg).eval()
    x = _audio(cfg, frames=3)
    with torch.no_grad():
        mean, std = model.encode_dist(x)
        z = model.encode(x)
        y = model.decode(z)
    assert mean.shape == std.shape == z.shape == (2, 64, 3)
    assert y.shape == (2, 2, 3 * 2048)
    assert (std > 0).all()


@pytest.mark.parametrize("bad", [{"strides": [2, 3]}, {"strides": [2]}, {"c_mults": [1, 0]},
                                 {"latent_dim": 0}, {"channels": -4}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        replace(TINY, **bad)


def test_config_round_trips_and_names_unknown_fields():
    assert OobleckConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown fields.*'wobble'"):
        OobleckConfig.from_dict({**TINY.to_dict(), "wobble": 1})
    with pytest.raises(SteerpadError, match="sao, small"):
        get_config("huge")


# -- bottleneck ---------------------------------------------------------------------------------

def test_encode_is_the_deterministic_mean_and_kl_is_positive():
    model = _randomise(OobleckVAE(TINY)).eval()
    x = _audio(TINY, frames=4)
    with torch.no_grad():
        a, b = model.encode(x), model.encode(x)
        mean, std = model.encode_dist(x)
        raw = model.encoder(x)
        out = model(x)
    assert torch.equal(a, b) and torch.equal(a, mean)
    assert torch.allclose(std, torch.nn.functional.softplus(raw[:, 3:]) + 1e-4)
    var = std**2
    kl = (mean**2 + var - var.log() - 1).sum(1).mean()
    assert torch.isfinite(out.kl) and out.kl > 0
    assert torch.allclose(out.kl, kl)
    assert torch.equal(out.audio, model.decode(mean).detach())  # eval: no sampling


def test_training_forward_samples_the_posterior_and_backpropagates():
    model = _randomise(OobleckVAE(TINY)).train()
    x = _audio(TINY, frames=2)
    torch.manual_seed(0)
    first = model(x)
    second = model(x)
    assert not torch.equal(first.audio, second.audio)
    (first.audio.square().mean() + first.kl).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# -- folding and saving -------------------------------------------------------------------------

def test_fold_weight_norm_keeps_outputs_and_leaves_plain_convs():
    model = _randomise(OobleckVAE(TINY)).eval()
    x = _audio(TINY, frames=3)
    with torch.no_grad():
        z, y = model.encode(x), model.decode(model.encode(x))
        assert not model.folded
        assert model.fold_weight_norm() is model
        assert model.folded
        assert torch.allclose(model.encode(x), z, atol=1e-6, rtol=0)
        assert torch.allclose(model.decode(z), y, atol=1e-6, rtol=0)
    assert not any("parametrizations" in k for k in model.state_dict())
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    assert convs and all(type(m.weight) is torch.nn.Parameter for m in convs)
    # g and v became one weight, and none was lost from the state dict
    assert len(model.state_dict()) == len(OobleckVAE(TINY).state_dict()) - len(convs)


@pytest.mark.parametrize("fold", [False, True])
def test_save_and_load_round_trip(tmp_path, fold):
    model = _randomise(OobleckVAE(TINY)).eval()
    if fold:
        model.fold_weight_norm()
    save_vae(model, tmp_path / "vae")
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == ["config.json", "model.safetensors"]
    back = load_vae(tmp_path / "vae")
    assert back.config == TINY and back.folded == fold and not back.training
    x = _audio(TINY, frames=2)
    with torch.no_grad():
        assert torch.equal(back.decode(back.encode(x)), model.decode(model.encode(x)))


def test_load_vae_refuses_missing_or_broken_folders(tmp_path):
    with pytest.raises(SteerpadError, match="config.json: missing"):
        load_vae(tmp_path / "nothing")
    save_vae(OobleckVAE(TINY), tmp_path / "vae")
    cfg = tmp_path / "vae" / "config.json"
    meta = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**meta, "config": {**meta["config"], "strides": [3, 4]}}))
    with pytest.raises(SteerpadError, match="config.json: not a valid VAE config.*even"):
        load_vae(tmp_path / "vae")
    cfg.write_text(json.dumps({**meta, "config": {**meta["config"], "channels": 8}}))
    with pytest.raises(SteerpadError, match="model.safetensors: does not fit.*wrong shape"):
        load_vae(tmp_path / "vae")


# -- Stable Audio Open checkpoints --------------------------------------------------------------

@pytest.mark.parametrize("prefix,suffix,wrap", [
    ("pretransform.model.", ".safetensors", False),
    ("pretransform.model.", ".ckpt", True),
    ("autoencoder.", ".ckpt", False),
    ("", ".safetensors", False),
])
def test_load_sao_weights_maps_old_weight_norm_names(tmp_path, prefix, suffix, wrap):
    source = _randomise(OobleckVAE(TINY), seed=3).eval()
    state = _sao_state(source, prefix)
    state["model.model.transformer.layers.0.weight"] = torch.zeros(3, 3)  # diffusion: ignored
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        if prefix:
            save_file(state, str(path))
        else:  # a VAE-only file holds nothing else
            save_file({k: v for k, v in state.items() if not k.startswith("model.")}, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 7} if wrap else state, path)
    x = _audio(TINY, frames=2)
    with torch.no_grad():
        want = source.decode(source.encode(x))
        for fold in (False, True):
            model = OobleckVAE(TINY).eval()
            if fold:
                model.fold_weight_norm()
            assert load_sao_weights(model, path) is model
            assert torch.allclose(model.decode(model.encode(x)), want, atol=1e-6, rtol=0)


def test_load_sao_weights_takes_folded_weights_into_a_weight_normed_model(tmp_path):
    source = _randomise(OobleckVAE(TINY), seed=5).eval().fold_weight_norm()
    save_vae(source, tmp_path / "vae")  # VAE-only file: top-level encoder.* / decoder.* keys
    model = load_sao_weights(OobleckVAE(TINY).eval(), tmp_path / "vae" / "model.safetensors")
    assert not model.folded
    x = _audio(TINY, frames=2)
    with torch.no_grad():
        assert torch.allclose(model.decode(model.encode(x)), source.decode(source.encode(x)),
                              atol=1e-5, rtol=0)


def test_load_sao_weights_reads_a_legacy_format_ckpt(tmp_path):
    source = _randomise(OobleckVAE(TINY), seed=4)
    path = tmp_path / "old.ckpt"  # pre-zip torch.save format: cannot be memory-mapped
    torch.save({"state_dict": _sao_state(source, "pretransform.model.")}, path,
               _use_new_zipfile_serialization=False)
    model = load_sao_weights(OobleckVAE(TINY), path)
    want = source.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())


def test_load_sao_weights_refuses_a_foreign_safetensors(tmp_path):
    path = tmp_path / "random.safetensors"
    save_file({"foo.weight": torch.randn(4, 4), "bar.bias": torch.randn(4)}, str(path))
    with pytest.raises(SteerpadError) as e:
        load_sao_weights(OobleckVAE(TINY), path)
    msg = str(e.value)
    assert str(path) in msg and "no Oobleck VAE weights" in msg and "2 keys:" in msg and "foo.weight" in msg


def test_load_sao_weights_names_missing_keys(tmp_path):
    state = _sao_state(OobleckVAE(TINY), "pretransform.model.")
    gone = sorted(k for k in state if k.startswith("pretransform.model.decoder.layers.1."))
    for k in gone:
        del state[k]
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(SteerpadError) as e:
        load_sao_weights(OobleckVAE(TINY), path)
    msg = str(e.value)
    assert str(path) in msg and f"{len(gone)} missing keys (pretransform.model.decoder.layers.1." in msg
    assert "unexpected" not in msg


def test_load_sao_weights_names_unexpected_keys(tmp_path):
    state = _sao_state(OobleckVAE(TINY), "pretransform.model.")
    state["pretransform.model.encoder.layers.9.weight_g"] = torch.ones(4, 1, 1)
    state["pretransform.model.bottleneck.scale"] = torch.ones(1)
    path = tmp_path / "extra.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(SteerpadError) as e:
        load_sao_weights(OobleckVAE(TINY), path)
    msg = str(e.value)
    assert str(path) in msg and "2 unexpected keys (" in msg
    assert "pretransform.model.encoder.layers.9.weight_g" in msg and "missing" not in msg


def test_load_sao_weights_refuses_the_wrong_config(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_sao_state(OobleckVAE(replace(TINY, channels=8)), "pretransform.model."), str(path))
    with pytest.raises(SteerpadError, match=r"does not fit the 'tiny'.*keys of the wrong shape"):
        load_sao_weights(OobleckVAE(TINY), path)


@pytest.mark.parametrize("name,content", [
    ("model.ckpt", b"this is not a checkpoint\n"),
    ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1"),  # torn header
    ("notes.txt", b"just some words"),
])
def test_load_sao_weights_refuses_a_non_checkpoint(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SteerpadError, match=rf"{path}: not a readable"):
        load_sao_weights(OobleckVAE(TINY), path)
    with pytest.raises(SteerpadError, match="no such file"):
        load_sao_weights(OobleckVAE(TINY), tmp_path / "absent.ckpt")


def test_load_sao_weights_refuses_a_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.ckpt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(SteerpadError, match="holds a list, not a state dict"):
        load_sao_weights(OobleckVAE(TINY), path)


def _drum_batch(n: int = 12, seconds: float = 0.4) -> torch.Tensor:
    """Synthetic one-shots of every kind, stereo, [n, 2, frames * 2048]."""
    import numpy as np
    from drumsynth import LABELS, random_params, render

    rng = np.random.default_rng(3)
    length = int(seconds * 44100) // 2048 * 2048
    out = np.zeros((n, 2, length), np.float32)
    for i in range(n):
        kind = LABELS[i % len(LABELS)]
        x = render(kind, random_params(kind, rng), seed=i)[:length]
        out[i, :, : len(x)] = x
    return torch.from_numpy(out)


def test_data_init_makes_a_fresh_model_carry_its_input():
    """Default init: latents hardly differ between clips and the decoder ignores them (why the
    posterior collapsed in training). After data_init_: the latents spread about as much as
    their own size, the posterior is narrow, and the decoder's output follows its input."""
    x = _drum_batch()

    def spread(t: torch.Tensor) -> float:  # across clips, relative to the RMS
        return float((t - t.mean(0)).pow(2).mean().sqrt() / t.pow(2).mean().sqrt())

    wave = OobleckConfig(name="wave_tiny", channels=8)  # waveform Oobleck (the spectral front
    # end of `tiny` carries its input from the start; tests/offline/test_spectral.py checks its init)
    torch.manual_seed(0)
    plain = OobleckVAE(wave).eval()
    torch.manual_seed(0)
    init = OobleckVAE(wave).data_init_(x[:8]).eval()
    with torch.no_grad():
        z0, z1 = plain.encode(x), init.encode(x)
        y0, y1 = plain.decode(z0), init.decode(z1)
        _, std = init.encode_dist(x)
    assert spread(z0) < 0.05 and spread(y0) < 0.05, (spread(z0), spread(y0))
    assert spread(z1) > 0.3 and spread(y1) > 0.3, (spread(z1), spread(y1))
    assert 0.1 < float(std.mean()) < 0.6  # softplus(SCALE_BIAS_INIT) = 0.31 to start
    # the decoder's output level is the audio's, not orders of magnitude off
    ratio = float(y1.pow(2).mean().sqrt() / x.pow(2).mean().sqrt())
    assert 0.1 < ratio < 10, ratio
    with pytest.raises(ValueError, match="weight-normed"):
        OobleckVAE(wave).fold_weight_norm().data_init_(x)
