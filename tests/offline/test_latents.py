"""The latent store: latents equal the VAE's own encoding, mean/std are the train split's, an
interrupted encode resumes without redoing finished shards and ends equal to an uninterrupted
one, mismatched stores and VAEs are refused, and `steerpad encode` works from a VAE folder, a
training run folder and a Stable Audio Open style checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from steerpad.offline import vae as vae_mod
from steerpad.offline.cli import main
from steerpad.offline.ingest import IngestStore
from steerpad.offline.latents import LatentStore, encode_store, shard_path
from steerpad.offline.threads import num_threads
from steerpad.offline.vae import OobleckVAE, load_vae, save_vae
from steerpad.realtime.errors import SteerpadError
from tests.tinystore import make_store, tiny_config


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions: one thread is faster, and far faster on a busy machine."""
    with num_threads(1):
        yield


def _vae(seed: int = 0, **changes) -> OobleckVAE:
    torch.manual_seed(seed)
    return OobleckVAE(tiny_config(**changes))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return IngestStore.open(make_store(tmp_path_factory.mktemp("latents")))


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    return save_vae(_vae(), tmp_path_factory.mktemp("vae") / "vae")


@pytest.fixture(scope="module")
def full(store, vae_dir, tmp_path_factory):
    """An uninterrupted encode (shards of 6 clips: 4 shards for 20 clips)."""
    out = tmp_path_factory.mktemp("full") / "latents"
    latents = encode_store(store, load_vae(vae_dir), out, batch=4, shard_size=6, progress=False)
    assert latents is not None
    return latents


def test_latents_are_the_folded_vae_encoding_of_each_clip(full, store, vae_dir):
    vae = load_vae(vae_dir).fold_weight_norm()
    assert len(full) == len(store) == 20
    for record in full.records:
        source = store.records[record.id]
        for name in ("path", "kit", "label", "split", "group", "sha256", "instrument", "peak_db"):
            assert getattr(record, name) == getattr(source, name)
        assert record.frames == source.frames  # same hop: sounding frames carry over
        assert record.latent_frames == store.config.frames
    for i in (0, 13, 19):
        with torch.inference_mode():
            want = vae.encode(torch.from_numpy(store.audio(i))[None])[0].numpy()
        got = full.latents(i)
        assert got.dtype == np.float32 and got.shape == (8, 16)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    assert full.meta["hop"] == 256 and full.meta["latent_dim"] == 8
    assert full.meta["sample_rate"] == 22050 and full.meta["vae"]["name"] == "tiny"
    with pytest.raises(SteerpadError, match="no clip with id 99"):
        full.latents(99)


def test_frames_and_standardisation_stats(full, store):
    train, val = full.frames("train"), full.frames("val")
    assert train.shape == (sum(r.frames for r in store.records if r.split == "train"), 8)
    assert val.shape == (sum(r.frames for r in store.records if r.split == "val"), 8)
    assert len(full.frames(None)) == len(train) + len(val)
    first = full.records[0]
    np.testing.assert_array_equal(train[:first.frames], full.latents(first.id)[:, :first.frames].T)
    np.testing.assert_allclose(full.mean, train.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full.std, train.astype(np.float64).std(0), rtol=1e-4, atol=1e-6)
    assert full.mean.dtype == full.std.dtype == np.float32 and full.mean.shape == (8,)
    # the stats are the train split's, not everything's
    assert not np.allclose(full.mean, full.frames(None).mean(0), atol=1e-7)


def test_interrupted_encode_resumes_without_redoing_finished_shards(full, store, vae_dir, tmp_path):
    out = tmp_path / "latents"
    assert encode_store(store, load_vae(vae_dir), out, batch=4, shard_size=6, max_shards=2,
                        progress=False) is None
    with pytest.raises(SteerpadError, match="interrupted"):
        LatentStore.open(out)
    before = {k: shard_path(out, k).stat().st_mtime_ns for k in (0, 1)}
    assert not shard_path(out, 2).exists()

    def crash(k):
        if k == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a crash right after shard 2 is written
        encode_store(store, load_vae(vae_dir), out, batch=4, shard_size=6, on_shard=crash,
                     progress=False)
    encoded: list[int] = []
    latents = encode_store(store, load_vae(vae_dir), out, batch=4, shard_size=6,
                           on_shard=encoded.append, progress=False)
    assert encoded == [3]  # shards 0-2 were finished and kept
    assert {k: shard_path(out, k).stat().st_mtime_ns for k in (0, 1)} == before
    for r in full.records:
        np.testing.assert_array_equal(latents.latents(r.id), full.latents(r.id))
    np.testing.assert_array_equal(latents.mean, full.mean)
    np.testing.assert_array_equal(latents.std, full.std)
    assert latents.records == full.records
    # a finished store is returned as it is
    again = encode_store(store, load_vae(vae_dir), out, batch=4, shard_size=6,
                         on_shard=encoded.append, progress=False)
    assert again is not None and encoded == [3]


def test_mismatches_are_refused(store, vae_dir, full, tmp_path):
    with pytest.raises(SteerpadError, match="sample_rate=22050.*sample_rate=44100"):
        encode_store(store, _vae(sample_rate=44100), tmp_path / "a", progress=False)
    with pytest.raises(SteerpadError, match="hop=256.*hop=512"):
        encode_store(store, _vae(strides=[8, 8, 8]), tmp_path / "b", progress=False)
    with pytest.raises(SteerpadError, match="channels=2.*audio_channels=1"):
        encode_store(store, _vae(audio_channels=1), tmp_path / "c", progress=False)
    # resuming into a store made by other weights
    with pytest.raises(SteerpadError, match="different vae"):
        encode_store(store, _vae(seed=1), full.path, batch=4, shard_size=6, progress=False)
    with pytest.raises(SteerpadError, match="different shard size"):
        encode_store(store, load_vae(vae_dir), full.path, batch=4, shard_size=5, progress=False)
    with pytest.raises(SteerpadError, match="not a latent store"):
        LatentStore.open(tmp_path)


def test_cli_encodes_from_a_vae_folder_a_run_folder_and_sao_weights(store, vae_dir, full, tmp_path,
                                                                   monkeypatch, capsys):
    out = tmp_path / "from_dir"
    assert main(["encode", str(store.path), "--vae", str(vae_dir), "--out", str(out),
                 "--shard-size", "6", "--batch", "4", "--no-progress"]) == 0
    assert "20 clips" in capsys.readouterr().out
    np.testing.assert_array_equal(LatentStore.open(out).frames("train"), full.frames("train"))
    # a `steerpad train vae` output folder holds the model as vae/
    assert main(["encode", str(store.path), "--vae", str(vae_dir.parent), "--out",
                 str(tmp_path / "from_run"), "--no-progress"]) == 0

    # --vae sao reads a full Stable Audio Open checkpoint (VAE under pretransform.model.); the
    # registry's "sao" entry is swapped for the tiny shape so the test stays small.
    monkeypatch.setitem(vae_mod.CONFIGS, "sao", tiny_config(name="sao"))
    vae = load_vae(vae_dir)
    state = {f"pretransform.model.{k}": v.contiguous() for k, v in vae.state_dict().items()}
    state["model.model.transformer.weight"] = torch.zeros(3)  # the diffusion model's keys
    ckpt = tmp_path / "model.safetensors"
    save_file(state, str(ckpt))
    sao_out = tmp_path / "from_sao"
    assert main(["encode", str(store.path), "--vae", "sao", "--vae-weights", str(ckpt), "--out",
                 str(sao_out), "--no-progress"]) == 0
    sao = LatentStore.open(sao_out)
    np.testing.assert_allclose(sao.latents(7), full.latents(7), atol=1e-6)
    assert sao.meta["vae"]["name"] == "sao" and json.loads((sao_out / "meta.json").read_text())

    assert main(["encode", str(store.path), "--vae", "sao", "--out", str(tmp_path / "x")]) == 2
    assert "--vae-weights" in capsys.readouterr().err
    assert main(["encode", str(store.path), "--vae", str(vae_dir), "--vae-weights", str(ckpt),
                 "--out", str(tmp_path / "y")]) == 2
    assert main(["encode", str(store.path), "--vae", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "z")]) == 2
    assert "config.json" in capsys.readouterr().err
