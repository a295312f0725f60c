"""VAE training: the objective overfits a tiny batch, crops are onset-biased, the run writes its
checkpoint / curves / metrics / model, `--resume` reproduces an uninterrupted run bit for bit,
and the CLI trains, resumes and refuses a store that does not fit the VAE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from steerpad.offline import vae as vae_mod
from steerpad.offline.checkpoint import load_checkpoint
from steerpad.offline.cli import main
from steerpad.offline.ingest import IngestStore
from steerpad.offline.threads import num_threads
from steerpad.offline.vae import OobleckVAE, load_vae
from steerpad.offline.vae_train import VAELoss, VAETrainConfig, sample_crops, train_vae
from tests.tinystore import make_store, tiny_config

FFT = (512, 256, 128, 64)  # crops of 4 x 256 samples fit a 512-point STFT


def _config(**kw) -> VAETrainConfig:
    # decay_from=1: a constant rate after the warm-up, so a run extended to more steps follows
    # the curve of one planned that long (a decay's shape depends on the planned length)
    base = {"steps": 6, "batch": 2, "crop_frames": 4, "lr": 3e-3, "warmup_steps": 2, "decay_from": 1.0,
            "fft_sizes": FFT, "ckpt_every": 2, "eval_every": 3, "eval_clips": 2, "threads": 1}
    return VAETrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("vae_train"))


@pytest.fixture(scope="module")
def store(store_path):
    return IngestStore.open(store_path)


@pytest.fixture(scope="module")
def run_a(store, tmp_path_factory):
    """An uninterrupted 6-step run; the reference for the resume tests."""
    out = tmp_path_factory.mktemp("run_a")
    metrics = train_vae(store, out, _config(), model_config=tiny_config(), progress=False)
    return out, metrics


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        VAETrainConfig(steps=0)
    with pytest.raises(ValueError, match="betas"):
        VAETrainConfig(betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="kl_weight"):
        VAETrainConfig(kl_weight=-1.0)
    with pytest.raises(ValueError, match="stereo"):
        VAETrainConfig(stereo="left")


def test_learning_rate_warms_up_holds_then_decays_to_its_floor():
    from steerpad.offline.vae_train import lr_at

    c = VAETrainConfig(steps=1000, lr=1e-3, warmup_steps=10, decay_from=0.6, final_lr=0.1)
    lrs = [lr_at(c, s) for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == lrs[600] == pytest.approx(1e-3)
    tail = lrs[600:]
    assert all(a >= b for a, b in zip(tail, tail[1:]))  # monotone down
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert lr_at(VAETrainConfig(steps=100, decay_from=1.0), 99) == VAETrainConfig().lr
    with pytest.raises(ValueError, match="final_lr"):
        VAETrainConfig(final_lr=0.0)


def test_crops_start_at_the_onset_or_early_in_the_sound():
    rng = np.random.default_rng(0)
    n, t, crop = 4, 8192, 1024
    clips = np.tile(np.arange(t, dtype=np.float32), (n, 2, 1))  # sample value = its index
    sounding = np.array([8192, 8192, 2048, 0])
    at_onset = sample_crops(clips, sounding, 64, crop, 1.0, rng)
    assert (at_onset[:, :, 0] == 0).all()
    starts = sample_crops(clips, sounding, 4000, crop, 0.0, np.random.default_rng(1))[:, 0, 0]
    assert starts.min() >= 0 and starts.max() <= t - crop
    # biased towards the start: u^2 has mean 1/3 of the range, uniform would be 1/2
    assert starts.mean() < 0.42 * (t - crop)
    # crops of a clip with 2048 sounding samples keep >= a quarter crop of sound
    short = sample_crops(clips[2:3], sounding[2:3], 500, crop, 0.0, np.random.default_rng(2))
    assert short[:, 0, 0].max() <= 2048 - crop // 4
    # a clip with no sounding frames is cropped at its start
    assert (sample_crops(clips[3:], sounding[3:], 20, crop, 0.0, rng)[:, 0, 0] == 0).all()


def test_objective_overfits_a_tiny_batch(store):
    """30 AdamW steps on one fixed batch of two onsets: the loss must fall clearly."""
    x = torch.from_numpy(np.stack([store.audio(i)[:, :1024] for i in (3, 13)]))
    with num_threads(1):
        torch.manual_seed(0)
        model = OobleckVAE(tiny_config())
        loss_fn = VAELoss(_config())
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.8, 0.99))
        losses = []
        for _ in range(30):
            out = model(x)
            loss, metrics = loss_fn(out.audio, out.kl, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(metrics["loss/train"])
    assert set(metrics) == {"loss/train", "stft/train", "wave/train", "env/train", "kl/train",
                            "transient/train"}
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_run_writes_checkpoint_curves_metrics_and_a_foldable_model(run_a, store):
    out, metrics = run_a
    for name in ("checkpoint.pt", "curves.png", "metrics.json", "history.json",
                 "vae/config.json", "vae/model.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["run/steps"] == 6
    assert np.isfinite(saved["stft/val"]) and np.isfinite(saved["snr_db/val"])
    assert saved == pytest.approx(metrics)
    history = json.loads((out / "history.json").read_text())
    assert [s for s, _ in history["loss/train"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in history["stft/val"]] == [3, 6]  # eval_every=3, and not twice at the end
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 6 and ckpt["train_config"]["batch"] == 2
    assert ckpt["model_config"]["name"] == "tiny"

    # The saved model reloads, folds its weight norm and reconstructs as the trained one did.
    trained = OobleckVAE(tiny_config())
    trained.load_state_dict(ckpt["model"])
    trained.eval()
    folded = load_vae(out / "vae").fold_weight_norm()
    assert folded.folded
    x = torch.from_numpy(store.audio(store.ids("val")[0])[None])
    with torch.inference_mode():
        want = trained.decode(trained.encode(x))
        torch.testing.assert_close(folded.decode(folded.encode(x)), want, atol=1e-5, rtol=1e-4)


def test_resume_after_an_interruption_is_bit_identical(run_a, store, tmp_path):
    ref_out, _ = run_a

    def interrupt(step, metrics):
        if step == 5:  # after the checkpoint at step 4: step 5's work is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae(store, tmp_path, _config(), model_config=tiny_config(), on_step=interrupt,
                  progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4
    assert not (tmp_path / "vae").exists()
    train_vae(store, tmp_path, _config(), resume=True, progress=False)  # model config from ckpt

    ref = json.loads((ref_out / "history.json").read_text())
    assert json.loads((tmp_path / "history.json").read_text()) == ref  # every logged value
    a = load_file(str(ref_out / "vae" / "model.safetensors"))
    b = load_file(str(tmp_path / "vae" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_transient_term_and_the_discriminator_train_and_resume_bit_identically(store, tmp_path):
    """With the onset-weighted term and the multi-scale STFT discriminator (joining at step 2):
    their losses are logged, the discriminator's state is checkpointed, and a run resumed after an
    interruption ends exactly where an uninterrupted one does."""
    cfg = _config(transient_weight=0.5, adv_weight=0.1, feature_weight=1.0, adv_start=2, eval_every=0)
    ref = tmp_path / "ref"
    train_vae(store, ref, cfg, model_config=tiny_config(), progress=False)
    history = json.loads((ref / "history.json").read_text())
    assert [s for s, _ in history["disc/train"]] == [3, 4, 5, 6]  # from adv_start on
    assert {"transient/train", "adv/train", "fm/train"} <= set(history)
    assert "discriminator" in load_checkpoint(ref / "checkpoint.pt")

    def interrupt(step, metrics):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae(store, tmp_path / "b", cfg, model_config=tiny_config(), on_step=interrupt, progress=False)
    train_vae(store, tmp_path / "b", cfg, resume=True, progress=False)
    assert json.loads((tmp_path / "b" / "history.json").read_text()) == history


def test_resume_extends_a_finished_run_along_the_same_curve(run_a, store, tmp_path):
    ref = json.loads((run_a[0] / "history.json").read_text())["loss/train"]
    train_vae(store, tmp_path, _config(steps=4, eval_every=0), model_config=tiny_config(),
              progress=False)
    train_vae(store, tmp_path, _config(steps=6, eval_every=0), resume=True, progress=False)
    assert json.loads((tmp_path / "history.json").read_text())["loss/train"] == ref


def test_cli_trains_resumes_and_refuses_a_mismatched_store(store_path, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setitem(vae_mod.CONFIGS, "tiny", tiny_config())
    out = tmp_path / "run"
    args = ["train", "vae", str(store_path), "--out", str(out), "--config", "tiny", "--steps", "2",
            "--batch", "1", "--crop-frames", "8", "--eval-every", "0", "--eval-clips", "1",
            "--threads", "1", "--no-progress"]
    assert main(args) == 0
    assert "train vae: 2 steps" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    # resume to 3 steps: the saved options (batch 1, crop 8, tiny) are kept
    assert main(["train", "vae", str(store_path), "--out", str(out), "--resume", "--steps", "3",
                 "--no-progress"]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 3 and ckpt["train_config"]["crop_frames"] == 8
    assert load_vae(out / "vae").config.name == "tiny"

    # `small` is 44.1 kHz; the test store is 22.05 kHz
    assert main(["train", "vae", str(store_path), "--out", str(tmp_path / "bad"), "--steps", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sample_rate=22050" in err and "sample_rate=44100" in err
    assert main(args) == 2  # the run exists: continuing it needs --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "vae", str(store_path), "--out", str(tmp_path / "none"), "--resume",
                 "--no-progress"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
