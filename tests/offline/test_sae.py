"""TopK SAE: model invariants, sparse kernels, training on planted structure, AuxK, exact
resume, save/load and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from rig.planted import planted_latents

from steerpad.offline.sae import SAEConfig, TopKSAE, load_sae, rmsnorm, save_sae
from steerpad.offline.sae_train import SAETrainConfig, train_sae, train_step
from steerpad.realtime.errors import SteerpadError

# Small enough to train in seconds, big enough to be a real sparse-coding problem:
# 64-dim latents built from 64 planted atoms, ~3 active per vector at varying loudness.
SMALL = SAEConfig(d_in=64, n_features=512, k=8)


def planted(n: int = 16384, n_val: int = 4096, seed: int = 1):
    x, atoms = planted_latents(n + n_val, d_in=64, n_atoms=64, active=3.0, seed=seed)
    return x[:n], x[n:], atoms


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One short run shared by several tests: (metrics, out_dir)."""
    train, val, _ = data
    out = tmp_path_factory.mktemp("sae")
    cfg = SAETrainConfig(sae=SMALL, batch=1024, steps=300, lr=3e-3, eval_every=50,
                         checkpoint_every=100)
    return train_sae(train, val, cfg, out, progress=False), out


def test_rmsnorm_gives_code_length_sqrt_features():
    model = TopKSAE(SAEConfig(), seed=3)  # the default 64 -> 4096, k = 32
    with torch.no_grad():
        model.b_enc.normal_()
        f = model.encode(torch.randn(256, 64) * 3 + 1)
    assert f.shape == (256, 4096)
    assert torch.allclose(f.norm(dim=1), torch.full((256,), 64.0), atol=1e-3)
    # 32 dictionary features + the level pair (features 0 and 1, equal, cancelling)
    assert ((f[:, 2:] > 0).sum(1) <= 32).all() and (f >= 0).all()
    assert torch.equal(f[:, 0], f[:, 1]) and (f[:, 0] > 0).all()
    assert torch.equal(model.W_dec[0], -model.W_dec[1])
    g = torch.rand(5, 4096)
    assert torch.allclose(rmsnorm(g).norm(dim=1), torch.full((5,), 64.0), atol=1e-3)


@pytest.mark.parametrize("level_pair", [True, False])
def test_sparse_kernels_match_dense_autograd(level_pair):
    """The sparse forward/backward (CSR + embedding_bag) equals plain dense autograd:
    losses and every parameter's gradient, AuxK and the level pair included."""
    torch.manual_seed(0)
    cfg = SAEConfig(d_in=8, n_features=64, k=4, aux_k=3, level_pair=level_pair)
    m = TopKSAE(cfg, seed=1)
    with torch.no_grad():
        m.b_enc.normal_()
        m.b_dec.normal_()
        m.scale.fill_(2.3)
        m.level.fill_(0.7)
    x = torch.randn(50, 8)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    out = m(x, dead_mask=dead, standardized=True)
    (out.fvu + out.aux_loss).backward()
    sparse_grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()

    r = 2 if level_pair else 0
    pre = ((x - m.b_dec) @ m.W_enc.t() + m.b_enc)[:, r:]
    v, i = pre.topk(4, dim=-1)
    raw = torch.relu(v)
    gain = torch.rsqrt((raw.pow(2).sum(-1, keepdim=True) + r * m.level**2) / 64 + 1e-12)
    f = torch.zeros(50, 64).scatter(1, i + r, raw * gain)
    f[:, :r] = m.level * gain  # the level pair: cancels in the decoder
    assert torch.allclose(f.norm(dim=1), torch.full((50,), 8.0))
    err = x - (f @ m.W_dec * m.scale / 8 + m.b_dec)
    total = (x - x.mean(0)).pow(2).sum()
    fvu = err.pow(2).sum() / total
    # AuxK: the top 3 dead features, their pre-activations on the detached pre-bias, fit to
    # the residual at the best non-negative scale per vector; only their weights learn.
    pre_aux = ((x - m.b_dec.detach()) @ m.W_enc.t() + m.b_enc)[:, r:]
    va, ia = pre_aux.masked_fill(~dead[r:], -math.inf).topk(3, dim=-1)
    e_hat = torch.zeros(50, 64).scatter(1, ia + r, torch.relu(va)) @ m.W_dec
    e = err.detach()
    fit = ((e_hat * e).sum(-1, keepdim=True) / e_hat.pow(2).sum(-1, keepdim=True)).clamp_min(0)
    aux = (fit * e_hat - e).pow(2).sum() / e.pow(2).sum()
    (fvu + aux).backward()

    assert torch.allclose(out.fvu, fvu, atol=1e-6) and torch.allclose(out.aux_loss, aux, atol=1e-6)
    for name, p in m.named_parameters():
        ref = p.grad if p.grad is not None else torch.zeros_like(p)
        got = sparse_grads[name] if sparse_grads[name] is not None else torch.zeros_like(p)
        if name == "W_dec":  # the level pair's columns are fixed at +v / -v
            assert not got[:r].any()
            got, ref = got[r:], ref[r:]
        assert torch.allclose(got, ref, atol=1e-6), name


def test_recovers_planted_structure(trained):
    metrics, out = trained
    assert metrics["fve/val"] >= 0.95, metrics
    assert metrics["l0/val"] <= SMALL.k
    assert metrics["dead/val"] < 0.5
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["fve/val"] == pytest.approx(metrics["fve/val"])
    assert (out / "curves.png").stat().st_size > 1000
    meta = json.loads((out / "config.json").read_text())
    assert len(meta["mean"]) == 64 and len(meta["std"]) == 64
    assert meta["training"]["config"]["steps"] == 300


def test_decoder_columns_stay_unit_norm(trained):
    _, out = trained
    model = load_sae(out)
    assert torch.allclose(model.W_dec.norm(dim=1), torch.ones(SMALL.n_features), atol=1e-5)
    # and after a few more raw optimiser steps at a large learning rate
    x = torch.randn(512, 64)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):
        train_step(model, opt, x, None)
    assert torch.allclose(model.W_dec.norm(dim=1), torch.ones(SMALL.n_features), atol=1e-5)


def test_auxk_revives_dead_features(data):
    """Kill a quarter of the dictionary from the start (encoder rows shrunk 50x: their
    pre-activations never reach the TopK) and train with the trainer's own step and
    dead-feature bookkeeping. Without AuxK they get no gradient and few come back by chance;
    AuxK trains them on the residual and several times more come back, and the run ends
    with fewer dead features overall."""
    train, _, _ = data
    x_s = torch.from_numpy((train - train.mean(0)) / train.std(0))
    killed = torch.arange(4, 512, 4)  # features 0 and 1 are the level pair
    revived, dead_total = {}, {}
    for coef in (0.0, 1 / 32):
        model = TopKSAE(SAEConfig(d_in=64, n_features=512, k=8, aux_coef=coef), seed=1)
        model.init_from_data_(x_s[:4096])
        with torch.no_grad():
            model.W_enc[killed] *= 0.02
            model.b_enc[killed] = 0.0
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=6.25e-10)
        since_fired = torch.zeros(512, dtype=torch.int64)
        since_fired[killed] = len(x_s)  # dead from the start: silent for one epoch
        for step in range(200):
            dead = since_fired >= len(x_s)
            xb = x_s[(step * 1024) % len(x_s):][:1024]
            _, _, fired = train_step(model, opt, xb, dead if dead.any() else None)
            since_fired += 1024
            since_fired[fired] = 0
        with torch.no_grad():
            values, idx, _, _ = model.encode_sparse(x_s)
        alive = torch.zeros(512, dtype=torch.bool)
        alive[idx[values > 0]] = True
        revived[coef], dead_total[coef] = int(alive[killed].sum()), int((~alive[2:]).sum())
    assert revived[1 / 32] >= 2 * revived[0.0] + 10, revived
    assert dead_total[1 / 32] < dead_total[0.0], dead_total


def test_resume_gives_the_same_curve(data, tmp_path):
    train, val, _ = data
    train = train[:4096]
    # dead_after = one batch: many features count as dead, so AuxK runs on most steps
    cfg = SAETrainConfig(sae=SAEConfig(d_in=64, n_features=256, k=8, dead_after=512),
                         batch=512, steps=30, lr=3e-3, eval_every=4, checkpoint_every=7)
    full = train_sae(train, val, cfg, tmp_path / "full", progress=False)
    train_sae(train, val, cfg, tmp_path / "split", progress=False, stop_after=17)
    resumed = train_sae(train, val, cfg, tmp_path / "split", resume=True, progress=False)
    history = [torch.load(d / "checkpoint.pt", weights_only=True)["history"]
               for d in (tmp_path / "full", tmp_path / "split")]
    assert history[0] == history[1]
    assert any(v > 0 for _, v in history[0]["aux/train"][4:])
    assert full == {**resumed, "speed/vectors_per_s": full["speed/vectors_per_s"]}
    a, b = load_sae(tmp_path / "full"), load_sae(tmp_path / "split")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_resume_refuses_other_settings(data, tmp_path):
    train, val, _ = data
    cfg = SAETrainConfig(sae=SAEConfig(d_in=64, n_features=128, k=4), batch=512, steps=4)
    train_sae(train[:2048], val, cfg, tmp_path, progress=False, stop_after=2)
    other = SAETrainConfig(sae=SAEConfig(d_in=64, n_features=128, k=4), batch=512, steps=5)
    with pytest.raises(SteerpadError, match="checkpoint.pt"):
        train_sae(train[:2048], val, other, tmp_path, resume=True, progress=False)
    with pytest.raises(SteerpadError, match="no checkpoint"):
        train_sae(train[:2048], val, cfg, tmp_path / "empty", resume=True, progress=False)


def test_save_load_round_trip(tmp_path):
    mean, std = torch.randn(64), torch.rand(64) + 0.5
    model = TopKSAE(SAEConfig(n_features=1024, k=16), mean, std, seed=5)
    with torch.no_grad():
        model.b_enc.normal_()
        model.b_dec.normal_()
        model.scale.fill_(3.7)
    save_sae(model, tmp_path / "m")
    loaded = load_sae(tmp_path / "m")
    assert loaded.config == model.config
    x = torch.randn(100, 64) * std + mean
    with torch.no_grad():
        f = model.encode(x)
        assert torch.equal(loaded.encode(x), f)
        assert torch.equal(loaded.decode(f), model.decode(f))
        assert torch.equal(loaded(x).x_hat, model(x).x_hat)
        # forward reconstructs in the input's units, through encode/decode
        assert torch.allclose(model(x).x_hat, model.decode(f), atol=1e-5)


def test_bad_input_gets_steerpad_error(data, tmp_path):
    train, val, _ = data
    cfg = SAETrainConfig(sae=SAEConfig(d_in=64, n_features=128, k=4), batch=256, steps=2)
    with pytest.raises(SteerpadError, match=r"shape \[N, 64\]"):
        train_sae(train[:, :32], val, cfg, tmp_path, progress=False)
    nan = train.copy()
    nan[7, 3] = np.nan
    with pytest.raises(SteerpadError, match="NaN"):
        train_sae(nan, val, cfg, tmp_path, progress=False)
    with pytest.raises(SteerpadError, match="only 100 vectors, need at least 128"):
        train_sae(train[:100], val, cfg, tmp_path, progress=False)
    with pytest.raises(SteerpadError, match="val latents"):
        train_sae(train, val[:0], cfg, tmp_path, progress=False)
    with pytest.raises(SteerpadError, match="config.json"):
        load_sae(tmp_path / "nothing")
    with pytest.raises(ValueError):
        SAEConfig(k=0)
    with pytest.raises(ValueError):
        SAETrainConfig(steps=0)


def test_cli_trains_on_a_latent_store(tmp_path, capsys):
    """`steerpad train sae LATENTS --out DIR` end to end on a real (tiny) latent store:
    synthetic kits -> ingest -> tiny random VAE -> encode -> SAE."""
    from steerpad.offline.cli import main
    from steerpad.offline.ingest import IngestStore
    from steerpad.offline.latents import LatentStore, encode_store
    from steerpad.offline.vae import OobleckVAE
    from tests.tinystore import make_store, tiny_config

    store = IngestStore.open(make_store(tmp_path, frames=32))
    torch.manual_seed(0)
    encode_store(store, OobleckVAE(tiny_config()), tmp_path / "latents", progress=False)
    latents = LatentStore.open(tmp_path / "latents")
    out = tmp_path / "sae"
    rc = main(["train", "sae", str(tmp_path / "latents"), "--out", str(out), "--features", "64",
               "--k", "4", "--steps", "20", "--batch", "64", "--eval-every", "5",
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fve/val" in printed and "l0/val" in printed and "dead/val" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data/train_vectors"] == len(latents.frames("train"))
    assert (out / "curves.png").is_file()
    model = load_sae(out)
    assert model.config.d_in == latents.meta["latent_dim"] == 8
    assert np.allclose(model.mean.numpy(), latents.mean) and np.allclose(model.std.numpy(),
                                                                         latents.std)
    # a bad option comes back as a one-line error, exit status 2
    assert main(["train", "sae", str(tmp_path / "latents"), "--out", str(out), "--k", "0"]) == 2
    assert "train sae options" in capsys.readouterr().err
