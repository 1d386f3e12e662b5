"""Decoder side: the ConvNeXt prenet/postnet and the DAC-style wave generator.

Authors
 * BiCodec plugin authors 2026
"""

import math

import torch
from torch import nn

from bicodec_plugin.codec.lobes.convnext import SamplingBlock, VocosBackbone
from bicodec_plugin.codec.lobes.layers import (
    Snake1d,
    init_weight_norm_direction,
    wn_conv1d,
    wn_conv_transpose1d,
)


class FeatureDecoder(nn.Module):
    """ConvNeXt feature-to-feature network, optionally conditioned (AdaLN).

    Used twice in BiCodec (reference class ``Decoder``): as the *prenet*
    (quantised latent -> decoder input, conditioned on the d-vector) and as
    the *postnet* (prenet output -> predicted wav2vec2 features, training
    only).

    Arguments
    ---------
    input_channels : int
        Input channels.
    vocos_dim : int
        Backbone width.
    vocos_intermediate_dim : int
        MLP width.
    vocos_num_layers : int
        Blocks of the main backbone.
    out_channels : int
        Output channels.
    condition_dim : int, optional
        Size of the condition vector; ``None`` for the postnet.
    sample_ratios : list of int
        One sampling stage (plus a 2-block backbone) per entry.
    use_tanh_at_final : bool
        Applies tanh to the output.

    Example
    -------
    >>> prenet = FeatureDecoder(12, 8, 16, 2, 12, condition_dim=6)
    >>> prenet(torch.randn(2, 12, 30), torch.randn(2, 6)).shape
    torch.Size([2, 12, 30])
    """

    def __init__(
        self,
        input_channels=1024,
        vocos_dim=384,
        vocos_intermediate_dim=2048,
        vocos_num_layers=12,
        out_channels=1024,
        condition_dim=None,
        sample_ratios=(1, 1),
        use_tanh_at_final=False,
    ):
        super().__init__()
        self.linear_pre = nn.Linear(input_channels, vocos_dim)
        self.downsample = nn.Sequential(
            *[
                nn.Sequential(
                    SamplingBlock(vocos_dim, upsample_scale=ratio),
                    VocosBackbone(vocos_dim, vocos_dim, vocos_intermediate_dim, 2),
                )
                for ratio in sample_ratios
            ]
        )
        self.vocos_backbone = VocosBackbone(
            vocos_dim,
            vocos_dim,
            vocos_intermediate_dim,
            vocos_num_layers,
            condition_dim=condition_dim,
        )
        self.linear = nn.Linear(vocos_dim, out_channels)
        self.use_tanh_at_final = use_tanh_at_final

    def forward(self, x, condition=None, mask=None):
        """Maps features.

        Arguments
        ---------
        x : torch.Tensor
            (B, input_channels, T).
        condition : torch.Tensor, optional
            (B, condition_dim).
        mask : torch.Tensor, optional
            (B, 1, T), 1 on valid frames of a padded batch.

        Returns
        -------
        torch.Tensor
            (B, out_channels, T).
        """
        x = self.linear_pre(x.transpose(1, 2))  # (B, C, T) -> (B, T, C)
        for sampling, backbone in self.downsample:
            if sampling.upsample_scale > 1 or sampling.downsample_scale > 1:
                mask = None  # frame masks do not survive resampling
            x = backbone(sampling(x), mask=mask)  # (B, T, C) -> (B, C, T) -> (B, T, C)
        x = self.vocos_backbone(x.transpose(1, 2), condition, mask)  # (B, T, C)
        x = self.linear(x).transpose(1, 2)  # (B, T, C) -> (B, C, T)
        if self.use_tanh_at_final:
            x = torch.tanh(x)
        return x


class ResidualUnit(nn.Module):
    """Snake, dilated 7-tap WN conv, Snake, 1x1 WN conv, residual add.

    Arguments
    ---------
    dim : int
        Channels.
    dilation : int
        Dilation of the 7-tap convolution.

    Example
    -------
    >>> ResidualUnit(4, 3)(torch.randn(1, 4, 50)).shape
    torch.Size([1, 4, 50])
    """

    def __init__(self, dim, dilation=1):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            wn_conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim),
            wn_conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x):
        """(B, C, T) -> (B, C, T)."""
        y = self.block(x)
        trim = (x.shape[-1] - y.shape[-1]) // 2
        if trim > 0:
            x = x[..., trim:-trim]
        if torch.is_grad_enabled():
            return x + y
        return y.add_(x)  # inference: y is a fresh buffer, skip one allocation


class DecoderBlock(nn.Module):
    """Snake, WN transposed conv (x``stride``), then residual units (dilation 1, 3, 9).

    Arguments
    ---------
    input_dim : int
        Input channels.
    output_dim : int
        Output channels.
    kernel_size : int
        Transposed-conv kernel.
    stride : int
        Upsampling factor.

    Example
    -------
    >>> DecoderBlock(8, 4, 16, 8)(torch.randn(1, 8, 5)).shape
    torch.Size([1, 4, 40])
    """

    def __init__(self, input_dim, output_dim, kernel_size, stride):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            wn_conv_transpose1d(
                input_dim,
                output_dim,
                kernel_size=kernel_size,
                stride=stride,
                padding=(kernel_size - stride) // 2,
            ),
            ResidualUnit(output_dim, dilation=1),
            ResidualUnit(output_dim, dilation=3),
            ResidualUnit(output_dim, dilation=9),
        )

    def forward(self, x):
        """(B, C_in, T) -> (B, C_out, T * stride)."""
        return self.block(x)


class WaveGenerator(nn.Module):
    """DAC-style generator: latent frames -> waveform in [-1, 1].

    Arguments
    ---------
    input_channel : int
        Channels of the input latent.
    channels : int
        Channels after the first conv; halved in each upsampling block.
    rates : list of int
        Upsampling factor of each block; their product is the hop length.
    kernel_sizes : list of int
        Transposed-conv kernel of each block.
    d_out : int
        Output channels.

    Attributes
    ----------
    channels_last_inference : bool
        Without gradients on CPU, run the network on the channels-last 2-D
        view of the signal (see :mod:`bicodec_plugin.codec.lobes.layers`): same
        weights, outputs within float32 rounding, and faster with oneDNN
        (``benchmarks/bench_codec.py``). ``False`` keeps the 1-D layout.

    Example
    -------
    >>> gen = WaveGenerator(8, 16, [4, 2], [8, 4])
    >>> x = torch.randn(2, 8, 10)
    >>> gen(x).shape
    torch.Size([2, 1, 80])
    >>> gen.hop_length
    8
    >>> with torch.no_grad():
    ...     fast = gen(x)
    ...     gen.channels_last_inference = False
    ...     plain = gen(x)
    >>> torch.allclose(fast, plain, atol=1e-5)
    True
    """

    def __init__(
        self,
        input_channel=1024,
        channels=1536,
        rates=(8, 5, 4, 2),
        kernel_sizes=(16, 11, 8, 4),
        d_out=1,
    ):
        super().__init__()
        if len(rates) != len(kernel_sizes):
            raise ValueError("rates and kernel_sizes must have the same length")
        for kernel, stride in zip(kernel_sizes, rates):
            if (kernel - stride) % 2:
                raise ValueError(f"kernel {kernel} and stride {stride} do not upsample exactly")
        self.hop_length = math.prod(rates)
        layers = [wn_conv1d(input_channel, channels, kernel_size=7, padding=3)]
        for i, (kernel, stride) in enumerate(zip(kernel_sizes, rates)):
            layers.append(DecoderBlock(channels // 2**i, channels // 2 ** (i + 1), kernel, stride))
        out_dim = channels // 2 ** len(rates)
        layers += [
            Snake1d(out_dim),
            wn_conv1d(out_dim, d_out, kernel_size=7, padding=3),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)
        self.channels_last_inference = True
        self._init_weights()

    def _init_weights(self):
        # The reference's init is a no-op on weight-normed convs (it only
        # zeroes biases); we do what it intends: truncated normal on the
        # Conv1d weights (not the transposed ones), zero biases.
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                if isinstance(module, nn.Conv1d):
                    init_weight_norm_direction(module)
                nn.init.zeros_(module.bias)

    def forward(self, x, lengths=None):
        """Generates audio.

        Arguments
        ---------
        x : torch.Tensor
            (B, input_channel, T).
        lengths : torch.Tensor, optional
            Valid frames per item, (B,). Padding is zeroed before every
            convolution with a reach in time, so each item's waveform equals
            its waveform alone (within float rounding) and a padded batch runs
            as one batch; samples past an item's end are not meaningful.

        Returns
        -------
        torch.Tensor
            (B, 1, T * hop_length).
        """
        view = self.channels_last_inference and x.device.type == "cpu"
        view = view and not torch.is_grad_enabled()
        if view:
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        if lengths is None or bool((lengths >= x.shape[-1]).all()):
            out = self.model(x)
        else:
            out = self._masked(x, lengths.to(x.device))
        return out.squeeze(2).contiguous() if view else out

    def _masked(self, x, lengths):
        """The layers of ``self.model`` with padding zeroed before each reaching convolution."""

        def masked(h, rate):
            steps = torch.arange(h.shape[-1], device=h.device)
            keep = steps[None, :] < (lengths * rate)[:, None]  # (B, T)
            keep = keep.view(keep.shape[0], *([1] * (h.dim() - 2)), keep.shape[1])
            return h * keep.to(h.dtype)

        def run_residual(unit, h, rate):
            snake1, conv, snake2, conv1x1 = unit.block
            return h + conv1x1(snake2(conv(masked(snake1(h), rate))))

        rate = 1
        for layer in self.model:
            if isinstance(layer, DecoderBlock):
                snake, up, *units = layer.block
                x = up(masked(snake(x), rate))
                rate *= up.stride[0]
                for unit in units:
                    x = run_residual(unit, x, rate)
            elif isinstance(layer, nn.Conv1d) and layer.kernel_size[0] > 1:
                x = layer(masked(x, rate))
            else:
                x = layer(x)
        return x
