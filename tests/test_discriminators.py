"""Tests for the multi-period and multi-band STFT discriminators.

Authors
 * BiCodec plugin authors 2026
"""

import pytest
import torch

from bicodec_plugin.training.discriminators import (
    BandSTFTDiscriminator,
    BiCodecDiscriminator,
    MultiBandSTFTDiscriminator,
    MultiPeriodDiscriminator,
    PeriodDiscriminator,
    preprocess_waveform,
)

# A small discriminator with the reference layer structure (6 maps per period,
# 26 per STFT resolution) but few channels, for fast behavioural tests.
TINY = {
    "fft_sizes": [256, 128, 64],
    "hop_sizes": [64, 32, 16],
    "win_lengths": [150, 75, 40],
    "period_channels": [2, 4, 4, 8, 8],
    "band_channels": 4,
}


def conv_params(c_in, c_out, kh, kw):
    """Weight + bias of a Conv2d (weight-norm g excluded)."""
    return c_out * c_in * kh * kw + c_out


def count(module, with_gain=False):
    """Parameters, optionally without the weight-norm magnitudes g (original0)."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if with_gain or not name.endswith("original0")
    )


# Exact counts from the B.9 layer definitions.
MPD_PARAMS = (
    conv_params(1, 32, 5, 1)
    + conv_params(32, 128, 5, 1)
    + conv_params(128, 512, 5, 1)
    + conv_params(512, 1024, 5, 1)
    + conv_params(1024, 1024, 5, 1)
    + conv_params(1024, 1, 3, 1)
)
MPD_GAINS = 32 + 128 + 512 + 1024 + 1024 + 1
BAND_PARAMS = conv_params(2, 32, 3, 9) + 3 * conv_params(32, 32, 3, 9) + conv_params(32, 32, 3, 3)
MRD_PARAMS = 5 * BAND_PARAMS + conv_params(32, 1, 3, 3)
MRD_GAINS = 5 * 5 * 32 + 1


def test_analytic_counts():
    assert MPD_PARAMS == 8_218_433
    assert MRD_PARAMS == 470_529


def test_period_discriminator_counts_and_maps():
    disc = PeriodDiscriminator(3)
    assert count(disc) == MPD_PARAMS
    assert count(disc, with_gain=True) == MPD_PARAMS + MPD_GAINS
    # Reference table (B): 8.218 M per period.
    assert round(count(disc) / 1e6, 3) == 8.218

    maps = disc(torch.randn(2, 1, 1000))
    assert len(maps) == 6
    # 1000 + 2 padding -> 334 rows; four (5,1)/(3,1) convs: 112, 38, 13, 5.
    heights = [112, 38, 13, 5, 5, 5]
    channels = [32, 128, 512, 1024, 1024, 1]
    for fmap, c, h in zip(maps, channels, heights):
        assert fmap.shape == (2, c, h, 3)


def test_period_padding_is_never_zero():
    disc = PeriodDiscriminator(4, channels=[2, 2])
    # T a multiple of p is still padded by p: 16 -> 20 samples -> 5 rows.
    maps = disc(torch.randn(1, 1, 16))
    assert maps[0].shape == (1, 2, 2, 4)  # (5 + 4 - 5) // 3 + 1 = 2


def test_column_conv_matches_conv2d():
    """The Conv1d fast path equals the reference Conv2d on the folded image."""
    torch.manual_seed(0)
    disc = PeriodDiscriminator(5, channels=[4, 8, 8])
    x = torch.randn(2, 1, 203)
    maps = disc(x)

    h = torch.nn.functional.pad(x, (0, 5 - 203 % 5), mode="reflect").view(2, 1, -1, 5)
    for conv, fmap in zip(disc.convs, maps):
        h = disc.activation(conv(h))
        torch.testing.assert_close(fmap, h)
    torch.testing.assert_close(maps[-1], disc.conv_post(h))


def test_band_stft_counts_and_maps():
    disc = BandSTFTDiscriminator(2048, hop_length=512, win_length=1200)
    assert count(disc) == MRD_PARAMS
    assert count(disc, with_gain=True) == MRD_PARAMS + MRD_GAINS
    # Reference table (B): 0.471 M per resolution (either convention).
    assert round(count(disc) / 1e6, 3) == 0.471
    assert round(count(disc, with_gain=True) / 1e6, 3) == 0.471

    # 1025 bins split at int(fraction * 1025).
    assert disc.band_slices == [(0, 102), (102, 256), (256, 512), (512, 768), (768, 1025)]
    x = torch.randn(1, 1, 4096)
    spec = disc.spectrogram(x)
    assert spec.shape == (1, 2, 4096 // 512 + 1, 1025)
    maps = disc(x)
    assert len(maps) == 26
    assert maps[0].shape == (1, 32, 9, 102)
    # Band widths after three stride-2 convs: ceil(n / 8).
    assert maps[4].shape == (1, 32, 9, 13)
    assert maps[-1].shape == (1, 1, 9, 13 + 20 + 32 + 32 + 33)


def test_weight_norm_gain_convention_matches_reference_total():
    """The doc's 42.50 M total excludes the weight-norm g tensors."""
    disc = BiCodecDiscriminator()
    without_gain = 5 * MPD_PARAMS + 3 * MRD_PARAMS
    with_gain = without_gain + 5 * MPD_GAINS + 3 * MRD_GAINS
    assert count(disc) == without_gain == 42_503_752
    assert count(disc, with_gain=True) == with_gain == 42_519_760
    assert round(without_gain / 1e6, 2) == 42.50
    assert round(with_gain / 1e6, 2) != 42.50  # 42.52: not the doc's convention


def test_eight_subdiscriminators_full_size():
    disc = BiCodecDiscriminator()
    outputs = disc(torch.randn(2, 1, 4800))
    assert len(outputs) == 8
    assert [len(maps) for maps in outputs] == [6] * 5 + [26] * 3
    for maps, p in zip(outputs[:5], [2, 3, 5, 7, 11]):
        assert maps[-1].shape[:2] == (2, 1) and maps[-1].shape[-1] == p


def test_resolutions_and_swap_flag():
    default = MultiBandSTFTDiscriminator()
    assert [(d.n_fft, d.win_length, d.hop_length) for d in default.discriminators] == [
        (2048, 1200, 512),
        (1024, 600, 256),
        (512, 300, 128),
    ]
    swapped = MultiBandSTFTDiscriminator(swap_hop_and_window=True)
    assert [(d.n_fft, d.win_length, d.hop_length) for d in swapped.discriminators] == [
        (2048, 512, 1200),
        (1024, 256, 600),
        (512, 128, 300),
    ]
    # The effective STFT changes: 2.4 s at 24 kHz gives 113 vs 49 frames.
    x = torch.randn(1, 1, 57600)
    assert default.discriminators[0].spectrogram(x).shape[2] == 113
    assert swapped.discriminators[0].spectrogram(x).shape[2] == 49
    assert swapped.discriminators[0].window.shape == (512,)


def test_invalid_configuration():
    with pytest.raises(ValueError):
        BandSTFTDiscriminator(256, hop_length=64, win_length=512)
    with pytest.raises(ValueError):
        BandSTFTDiscriminator(256, 64, 256, bands=[0.0, 0.5, 0.4, 1.0])
    with pytest.raises(ValueError):
        MultiBandSTFTDiscriminator([256, 128], [64], [256, 128])


def test_preprocess_waveform():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 500)
    y = preprocess_waveform(x)
    assert torch.allclose(y.mean(dim=-1), torch.zeros(3, 1), atol=1e-6)
    assert torch.allclose(y.abs().amax(dim=-1), torch.full((3, 1), 0.8), atol=1e-6)
    # Silence stays finite.
    assert torch.equal(preprocess_waveform(torch.zeros(1, 1, 10)), torch.zeros(1, 1, 10))


def test_dc_offset_and_gain_do_not_change_output():
    torch.manual_seed(0)
    disc = BiCodecDiscriminator(**TINY)
    x = 0.3 * torch.randn(2, 1, 2000)
    reference = disc(x)
    shifted = disc(2.5 * x + 0.7)
    for ref_maps, maps in zip(reference, shifted):
        for ref, fmap in zip(ref_maps, maps):
            torch.testing.assert_close(fmap, ref, atol=1e-4, rtol=1e-4)


def test_batch_items_are_preprocessed_separately():
    torch.manual_seed(0)
    disc = BiCodecDiscriminator(**TINY)
    real, fake = torch.randn(1, 1, 1500), 0.01 * torch.randn(1, 1, 1500) + 0.2
    joint = disc(torch.cat([fake, real]))
    alone = disc(real)
    for joint_maps, maps in zip(joint, alone):
        torch.testing.assert_close(joint_maps[-1][1:], maps[-1], atol=1e-5, rtol=1e-5)


def test_two_dimensional_input_and_autocast():
    disc = BiCodecDiscriminator(**TINY)
    x = torch.randn(2, 1600)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        outputs = disc(x)
        spec = disc.mrd.discriminators[0].spectrogram(x.unsqueeze(1).bfloat16())
    assert spec.dtype == torch.float32
    assert len(outputs) == 8
    assert all(torch.isfinite(maps[-1].float()).all() for maps in outputs)


def test_gradients_reach_input_and_all_parameters():
    disc = BiCodecDiscriminator(**TINY)
    x = torch.randn(1, 1, 1200, requires_grad=True)
    outputs = disc(x)
    sum(maps[-1].mean() for maps in outputs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in disc.parameters())


def test_multi_period_custom_periods():
    mpd = MultiPeriodDiscriminator([2, 7], channels=[2, 2])
    outputs = mpd(torch.randn(1, 1, 100))
    assert [maps[-1].shape[-1] for maps in outputs] == [2, 7]


def test_cpu_bf16_autocast_agrees_with_fp32():
    """Under CPU bf16 autocast the band stacks run in float32: the multi-band maps
    equal fp32 exactly and the period logits stay within bf16 rounding.

    On CPUs with native bf16, oneDNN's bf16 Conv2d gave non-finite maps for
    bands narrower than the (3, 9) kernel's reach (32 of 40 seeds of this
    config); an AVX2-only CPU emulates bf16 and never showed it. The period
    logits' worst relative error measured here over 4 seeds: 0.011 (AVX2).
    """
    torch.manual_seed(0)
    for _ in range(4):
        disc = BiCodecDiscriminator(**TINY)
        x = torch.randn(2, 1, 1600)
        with torch.no_grad():
            ref = disc(x)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                out = disc(x)
        for maps_ref, maps in zip(ref[5:], out[5:]):  # the 3 multi-band discriminators
            assert all(torch.equal(a, b) for a, b in zip(maps_ref, maps))
        for maps_ref, maps in zip(ref[:5], out[:5]):  # the 5 period discriminators
            logits_ref, logits = maps_ref[-1], maps[-1].float()
            assert torch.isfinite(logits).all()
            assert (logits - logits_ref).abs().max() <= 0.05 * logits_ref.abs().max()
