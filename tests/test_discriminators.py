"""Tests for the multi-period and multi-band STFT discriminators.

Authors
 * BiCodec plugin authors 2026
"""

import pytest
import torch

from bicodec_plugin.codec.lobes.layers import fold_weight_norm, has_weight_norm
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


# The B.9 layer definitions (docs/bicodec_reference.md), one row per weight-normed
# Conv2d in forward order: (in, out, kernel, stride, padding).
MPD_LAYERS = [
    (1, 32, (5, 1), (3, 1), (2, 0)),
    (32, 128, (5, 1), (3, 1), (2, 0)),
    (128, 512, (5, 1), (3, 1), (2, 0)),
    (512, 1024, (5, 1), (3, 1), (2, 0)),
    (1024, 1024, (5, 1), (1, 1), (2, 0)),
    (1024, 1, (3, 1), (1, 1), (1, 0)),  # post
]
BAND_LAYERS = [
    (2, 32, (3, 9), (1, 1), (1, 4)),
    (32, 32, (3, 9), (1, 2), (1, 4)),
    (32, 32, (3, 9), (1, 2), (1, 4)),
    (32, 32, (3, 9), (1, 2), (1, 4)),
    (32, 32, (3, 3), (1, 1), (1, 1)),
]
MRD_LAYERS = 5 * BAND_LAYERS + [(32, 1, (3, 3), (1, 1), (1, 1))]  # 5 bands + post


def analytic_params(layers):
    """Weights + biases of the layers (weight-norm magnitudes g excluded)."""
    return sum(c_out * c_in * k[0] * k[1] + c_out for c_in, c_out, k, _, _ in layers)


def analytic_gains(layers):
    """Weight-norm magnitudes g: one per output channel (dim 0)."""
    return sum(c_out for _, c_out, _, _, _ in layers)


def count(module, with_gain=False):
    """Parameters, optionally without the weight-norm magnitudes g (original0)."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if with_gain or not name.endswith("original0")
    )


def conv_specs(module):
    """(in, out, kernel, stride, padding) of every Conv2d, in module order."""
    return [
        (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
        for m in module.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]


MPD_PARAMS = analytic_params(MPD_LAYERS)
MPD_GAINS = analytic_gains(MPD_LAYERS)
MRD_PARAMS = analytic_params(MRD_LAYERS)
MRD_GAINS = analytic_gains(MRD_LAYERS)


def test_analytic_counts():
    """The period and band discriminators hold exactly the B.9 layers (weight-normed),
    and the parameters they hold are the counts computed from those definitions:
    the doc's 8,221,154 per MPD and 471,330 per MRD with g (8.218 M / 0.471 M without)."""
    mpd = PeriodDiscriminator(3)
    mrd = BandSTFTDiscriminator(2048, hop_length=512, win_length=1200)
    for module, layers in ((mpd, MPD_LAYERS), (mrd, MRD_LAYERS)):
        assert conv_specs(module) == layers
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(has_weight_norm(conv) for conv in convs)
        # g has one entry per output channel, as the counts assume.
        for conv in convs:
            assert conv.parametrizations.weight.original0.numel() == conv.out_channels
        assert count(module) == analytic_params(layers)
        assert count(module, with_gain=True) == analytic_params(layers) + analytic_gains(layers)
    assert count(mpd, with_gain=True) == 8_221_154  # B.9
    assert count(mrd, with_gain=True) == 471_330  # B.9
    assert round(count(mpd) / 1e6, 3) == 8.218  # table B
    assert round(count(mrd) / 1e6, 3) == 0.471  # table B


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
    """B.9's 42,519,760 counts the weight-norm g and v tensors; table B's 42.50 M is
    the same discriminator with weight norm folded away (``fold_weight_norm``)."""
    disc = BiCodecDiscriminator()
    total = sum(p.numel() for p in disc.parameters())
    gains = sum(p.numel() for name, p in disc.named_parameters() if name.endswith("original0"))
    assert total == 42_519_760  # B.9: g and v
    assert gains == 5 * MPD_GAINS + 3 * MRD_GAINS == 16_008
    num_convs = 5 * len(MPD_LAYERS) + 3 * len(MRD_LAYERS)
    assert fold_weight_norm(disc) == num_convs == 108
    folded = sum(p.numel() for p in disc.parameters())
    assert folded == total - gains == 5 * MPD_PARAMS + 3 * MRD_PARAMS == 42_503_752
    assert round(folded / 1e6, 2) == 42.50  # table B
    assert round(total / 1e6, 2) == 42.52  # not the table's convention


@pytest.mark.slow
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


@pytest.mark.slow
def test_dc_offset_and_gain_do_not_change_output():
    torch.manual_seed(0)
    disc = BiCodecDiscriminator(**TINY)
    x = 0.3 * torch.randn(2, 1, 2000)
    reference = disc(x)
    shifted = disc(2.5 * x + 0.7)
    for ref_maps, maps in zip(reference, shifted):
        for ref, fmap in zip(ref_maps, maps):
            torch.testing.assert_close(fmap, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
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


@pytest.mark.slow
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
