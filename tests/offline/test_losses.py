"""Reconstruction losses: zero on identity, ordered by how wrong the estimate is, gradients flow."""

import math

import numpy as np
import pytest
import torch

from steerpad.offline.losses import (
    MultiResolutionSTFTLoss,
    log_envelope_l1,
    preemphasis,
    snr_db,
    waveform_l1,
)
from steerpad.offline.threads import num_threads
from tests.drumsynth import render_kick, render_snare


def _stereo(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return torch.stack([t, 0.9 * t])[None]  # [1, 2, T]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small FFTs: one thread is as fast, and far faster on a busy machine."""
    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def kick() -> torch.Tensor:
    return _stereo(render_kick(length_s=0.4))


@pytest.mark.parametrize("stereo", ["mid_side", "per_channel", "mono"])
def test_stft_loss_zero_on_identity_and_grows_with_error(kick, stereo):
    loss = MultiResolutionSTFTLoss(stereo=stereo)
    assert float(loss(kick, kick)) == pytest.approx(0.0, abs=1e-6)
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(kick.shape, generator=rng)
    levels = [float(loss(kick + a * noise, kick)) for a in (1e-5, 1e-3, 1e-1)]
    assert 0 < levels[0] < levels[1] < levels[2]
    # A different drum is further away than a faintly noisy copy of the same one.
    snare = _stereo(render_snare(length_s=0.4))
    assert float(loss(snare, kick)) > levels[0]


def test_stft_loss_log_weight_scales_the_log_magnitude_term(kick):
    snare = _stereo(render_snare(length_s=0.4))
    sc_only = float(MultiResolutionSTFTLoss(log_weight=0.0)(snare, kick))
    full = float(MultiResolutionSTFTLoss()(snare, kick))
    half = float(MultiResolutionSTFTLoss(log_weight=0.5)(snare, kick))
    assert 0 < sc_only < half < full
    assert half == pytest.approx((sc_only + full) / 2, rel=1e-5)


def test_stft_loss_sees_a_stereo_image_only_in_mid_side(kick):
    mono_copy = torch.cat([kick[:, :1], kick[:, :1]], 1)
    swapped = mono_copy.flip(1)  # identical channels: swapping changes nothing
    mid_side = MultiResolutionSTFTLoss(stereo="mid_side")
    per_channel = MultiResolutionSTFTLoss(stereo="per_channel")
    assert float(mid_side(swapped, mono_copy)) == pytest.approx(0, abs=1e-6)
    wide = mono_copy * torch.tensor([1.0, -1.0])[None, :, None]  # same magnitudes per channel
    assert float(per_channel(wide, mono_copy)) == pytest.approx(0, abs=1e-5)
    assert float(mid_side(wide, mono_copy)) > 1.0


def test_stft_loss_is_blind_to_polarity_but_waveform_l1_is_not(kick):
    flipped = -kick
    assert float(MultiResolutionSTFTLoss()(flipped, kick)) == pytest.approx(0, abs=1e-5)
    assert float(waveform_l1(flipped, kick)) > 0.01
    assert float(waveform_l1(flipped, kick, 0.9)) > 0.0


def test_preemphasis_is_a_first_difference():
    x = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.allclose(preemphasis(x, 0.5), torch.tensor([[1.0, 1.5, 3.0]]))
    assert preemphasis(x, 0.0) is x


def test_log_envelope_sees_a_soft_attack(kick):
    soft = kick.clone()
    soft[..., :512] *= 0.05  # attack 26 dB too quiet; little energy overall
    env = float(log_envelope_l1(soft, kick))
    # two of the 256-sample windows are off by log(20) ≈ 3.0, out of all windows
    windows = kick.shape[-1] // 256
    assert env == pytest.approx(2 * math.log(20) / windows, rel=0.05)
    assert float(log_envelope_l1(kick, kick)) == 0.0


def test_snr_db_matches_definition(kick):
    noise = 0.01 * torch.randn(kick.shape, generator=torch.Generator().manual_seed(1))
    expected = 10 * math.log10(float(kick.pow(2).sum()) / float(noise.pow(2).sum()))
    assert float(snr_db(kick + noise, kick)[0]) == pytest.approx(expected, rel=1e-4)
    assert float(snr_db(torch.zeros_like(kick), kick)[0]) == pytest.approx(0.0, abs=1e-4)


def test_losses_give_finite_gradients(kick):
    est = (0.5 * kick).clone().requires_grad_(True)
    total = (MultiResolutionSTFTLoss()(est, kick) + waveform_l1(est, kick, 0.9)
             + log_envelope_l1(est, kick))
    total.backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_shape_mismatch_is_refused(kick):
    with pytest.raises(ValueError, match="shape mismatch"):
        MultiResolutionSTFTLoss()(kick[..., :-1], kick)


def test_the_transient_term_weighs_an_error_at_the_attack_above_the_same_error_in_the_tail():
    from steerpad.offline.losses import transient_weighted_l1

    t = torch.arange(8192) / 44100
    hit = (torch.randn(1, 2, 8192, generator=torch.Generator().manual_seed(0)) * torch.exp(-t / 0.05)
           ).float()
    hit[..., :1024] = 0  # silence, then the attack at sample 1024
    assert float(transient_weighted_l1(hit, hit)) == 0.0
    early, late = hit.clone(), hit.clone()
    early[..., 1024:1536] *= 0.5  # the attack 6 dB soft
    late[..., 6144:6656] *= 0.5   # the same 6 dB, in the tail
    assert float(transient_weighted_l1(early, hit)) > 1.5 * float(transient_weighted_l1(late, hit))


def test_the_discriminator_scores_every_scale_and_its_losses_have_gradients():
    from steerpad.offline.discriminator import (
        MultiScaleSTFTDiscriminator,
        feature_matching,
        hinge_discriminator,
        hinge_generator,
    )

    d = MultiScaleSTFTDiscriminator(2, (1024, 512), width=8)
    x, y = torch.randn(2, 2, 4096), torch.randn(2, 2, 4096, requires_grad=True)
    real, fake = d(x), d(y)
    assert len(real) == 2 and all(logits.shape[0] == 2 and len(f) == 5 for logits, f in real)
    loss = hinge_generator(fake) + feature_matching(real, fake)
    loss.backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0
    assert float(hinge_discriminator(real, fake).detach()) > 0
