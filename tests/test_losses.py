"""Tests for the BiCodec training losses.

Authors
 * BiCodec plugin authors 2026
"""

import pytest
import torch
from torch.nn import functional as F

from bicodec_plugin.training.discriminators import BiCodecDiscriminator
from bicodec_plugin.training.losses import (
    DiscriminatorAdversarialLoss,
    FeatureMatchingLoss,
    FeatureReconstructionLoss,
    GeneratorAdversarialLoss,
    MultiScaleMelLoss,
    SpeakerLoss,
    weighted_sum,
)


@pytest.fixture(scope="module")
def mel_loss():
    return MultiScaleMelLoss(24000)


def test_mel_transforms_follow_the_reference(mel_loss):
    assert len(mel_loss.mels) == 7
    for mel, bins, window in zip(
        mel_loss.mels, [5, 10, 20, 40, 80, 160, 320], [32, 64, 128, 256, 512, 1024, 2048]
    ):
        assert mel.n_mels == bins
        assert (mel.n_fft, mel.win_length, mel.hop_length) == (window, window, window // 4)
        assert mel.power == 1.0 and mel.spectrogram.center
        assert mel.mel_scale.norm == "slaney" and mel.mel_scale.mel_scale == "slaney"
        assert (mel.f_min, mel.f_max) == (0.0, 12000.0)  # Nyquist by default
    # Built once: the same transform objects serve every call.
    before = [id(mel) for mel in mel_loss.mels]
    mel_loss(torch.randn(1, 1, 4096), torch.randn(1, 1, 4096))
    assert [id(mel) for mel in mel_loss.mels] == before


def test_mel_loss_zero_for_identical_and_grows_with_noise(mel_loss):
    torch.manual_seed(0)
    y = 0.1 * torch.randn(2, 1, 8000)
    assert mel_loss(y, y).item() == 0.0
    noise = torch.randn_like(y)
    values = [mel_loss(y + scale * noise, y).item() for scale in (0.001, 0.01, 0.1)]
    assert 0 < values[0] < values[1] < values[2]


def test_mel_loss_matches_formula():
    import torchaudio

    torch.manual_seed(0)
    loss = MultiScaleMelLoss(16000, n_mels=[10], window_lengths=[64], clamp_eps=1e-5)
    y_hat, y = torch.randn(1, 1, 3200), torch.randn(1, 1, 3200)
    mel = torchaudio.transforms.MelSpectrogram(
        16000,
        n_fft=64,
        win_length=64,
        hop_length=16,
        n_mels=10,
        power=1.0,
        norm="slaney",
        mel_scale="slaney",
        f_max=8000.0,
    )
    expected = (mel(y_hat).clamp(min=1e-5).log10() - mel(y).clamp(min=1e-5).log10()).abs().mean()
    torch.testing.assert_close(loss(y_hat, y), expected)


def test_mel_loss_is_float32_under_autocast(mel_loss):
    y = torch.randn(1, 1, 4000)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        value = mel_loss(y.bfloat16(), y)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_mel_loss_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        MultiScaleMelLoss(16000, n_mels=[5, 10], window_lengths=[32])


def test_generator_adversarial_known_values():
    loss = GeneratorAdversarialLoss()
    scores = [torch.tensor([0.0, 2.0]), torch.tensor([[0.5]])]
    # mean((s-1)^2): 1.0 and 0.25.
    assert loss(scores).item() == pytest.approx(1.25)
    # Lists of feature maps: only the last map (the logits) counts.
    as_maps = [[torch.full((3,), 9.0), s] for s in scores]
    assert loss(as_maps).item() == pytest.approx(1.25)


def test_discriminator_adversarial_known_values():
    loss = DiscriminatorAdversarialLoss()
    fake = [torch.tensor([0.0, 2.0]), torch.tensor([[0.5]])]
    real = [torch.tensor([1.0, 0.0]), torch.tensor([[3.0]])]
    total, real_part, fake_part = loss(fake, real)
    # fake: mean(s^2) = 2.0 + 0.25; real: mean((1-s)^2) = 0.5 + 4.0.
    assert fake_part.item() == pytest.approx(2.25)
    assert real_part.item() == pytest.approx(4.5)
    # Parts are counted once (no doubling), and the total is their sum.
    assert total.item() == pytest.approx(6.75)
    with pytest.raises(ValueError):
        loss(fake, real[:1])


def test_feature_matching_values_and_term_count():
    disc = BiCodecDiscriminator(
        fft_sizes=[128, 64, 32],
        hop_sizes=[32, 16, 8],
        win_lengths=[128, 64, 32],
        period_channels=[2, 2, 2, 2, 2],
        band_channels=2,
    )
    outputs = disc(torch.randn(1, 1, 800))
    ones = [[torch.ones_like(m) for m in maps] for maps in outputs]
    zeros = [[torch.zeros_like(m) for m in maps] for maps in outputs]
    # Every non-logit map contributes mean|1 - 0| = 1: 5 * 5 + 3 * 25 = 100 terms.
    assert FeatureMatchingLoss()(ones, zeros).item() == pytest.approx(100.0)
    with pytest.raises(ValueError):
        FeatureMatchingLoss()(ones, zeros[:7])


def test_feature_matching_detaches_real_side():
    fake = [[torch.randn(2, 3, requires_grad=True), torch.randn(2, requires_grad=True)]]
    real = [[torch.randn(2, 3, requires_grad=True), torch.randn(2, requires_grad=True)]]
    FeatureMatchingLoss()(fake, real).backward()
    assert fake[0][0].grad is not None and fake[0][0].grad.abs().sum() > 0
    assert fake[0][1].grad is None  # logits are not matched
    assert real[0][0].grad is None and real[0][1].grad is None


def test_speaker_loss_detaches_x_vector():
    x_vector = torch.randn(3, 8, requires_grad=True)
    d_vector = torch.randn(3, 8, requires_grad=True)
    value = SpeakerLoss()(x_vector, d_vector)
    torch.testing.assert_close(value, F.mse_loss(d_vector, x_vector))
    value.backward()
    assert x_vector.grad is None and d_vector.grad is not None


def test_feature_reconstruction_mask():
    torch.manual_seed(0)
    loss = FeatureReconstructionLoss()
    pred, target = torch.randn(2, 16, 10), torch.randn(2, 16, 10)
    torch.testing.assert_close(loss(pred, target), F.mse_loss(pred, target))
    torch.testing.assert_close(loss(pred, target, torch.ones(2)), F.mse_loss(pred, target))

    lengths = torch.tensor([1.0, 0.6])
    expected = torch.cat(
        [
            (pred[0] - target[0]).pow(2).flatten(),
            (pred[1, :, :6] - target[1, :, :6]).pow(2).flatten(),
        ]
    ).mean()
    torch.testing.assert_close(loss(pred, target, lengths), expected)
    # Padded frames do not count, whatever they hold.
    padded = pred.clone()
    padded[1, :, 6:] = 1e3
    torch.testing.assert_close(loss(padded, target, lengths), expected)
    with pytest.raises(ValueError):
        loss(pred, target[..., :9])


def test_weighted_sum_uses_shared_keys_only():
    terms = {
        "mel": torch.tensor(2.0, requires_grad=True),
        "adv": torch.tensor(3.0),
        "d_real": torch.tensor(7.0),  # logged, not weighted
    }
    weights = {"mel": 15.0, "adv": 1.0, "fm": 2.0, "spk": 1.0}  # fm/spk absent: ignored
    total, log = weighted_sum(terms, weights)
    assert total.item() == pytest.approx(33.0)
    assert log == {"mel": 2.0, "adv": 3.0, "d_real": 7.0, "loss": 33.0}
    assert all(isinstance(value, float) for value in log.values())
    total.backward()
    assert terms["mel"].grad.item() == pytest.approx(15.0)

    empty_total, empty_log = weighted_sum({"vq": torch.tensor(1.0)}, {"mel": 1.0})
    assert empty_total.item() == 0.0 and empty_log == {"vq": 1.0, "loss": 0.0}
    with pytest.raises(ValueError):
        weighted_sum({"loss": torch.tensor(1.0)}, {"loss": 1.0})


@pytest.mark.slow
def test_full_discriminator_and_losses_forward_backward(mel_loss):
    """One GAN step's worth of losses on a 2.4 s, 24 kHz segment (batch 1)."""
    torch.manual_seed(0)
    disc = BiCodecDiscriminator(swap_hop_and_window=True)
    y = 0.1 * torch.randn(1, 1, 57600)
    y_hat = (y + 0.05 * torch.randn_like(y)).requires_grad_()
    x_vector = torch.randn(1, 512, requires_grad=True)
    d_vector = torch.randn(1, 512, requires_grad=True)
    pred_feat = torch.randn(1, 1024, 119, requires_grad=True)
    feat = torch.randn(1, 1024, 119)

    # Fake and real in one pass (items are preprocessed independently). A
    # training D step would run on the detached fake; here one backward
    # through every term checks that all of them are differentiable.
    outputs = disc(torch.cat([y_hat, y]))
    fake, real = ([[m[i : i + 1] for m in maps] for maps in outputs] for i in range(2))
    loss_d, d_real, d_fake = DiscriminatorAdversarialLoss()(fake, real)
    terms = {
        "mel": mel_loss(y_hat, y),
        "adv": GeneratorAdversarialLoss()(fake),
        "fm": FeatureMatchingLoss()(fake, real),
        "vq": torch.tensor(0.5),
        "spk": SpeakerLoss()(x_vector, d_vector),
        "feat": FeatureReconstructionLoss()(pred_feat, feat),
    }
    weights = {"mel": 15, "adv": 1, "fm": 2, "vq": 1, "spk": 1, "feat": 1}
    loss_g, log = weighted_sum(terms, weights)
    (loss_g + loss_d).backward()

    assert set(log) == {"mel", "adv", "fm", "vq", "spk", "feat", "loss"}
    assert all(torch.isfinite(torch.tensor(value)) for value in log.values())
    assert torch.isfinite(loss_d) and d_real > 0 and d_fake > 0
    assert y_hat.grad is not None and torch.isfinite(y_hat.grad).all()
    assert d_vector.grad is not None and pred_feat.grad is not None
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())
