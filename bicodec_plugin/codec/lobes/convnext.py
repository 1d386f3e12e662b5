"""ConvNeXt (Vocos-style) backbone, adaptive layer norm and the sampling block.

These are the building blocks of BiCodec's semantic encoder, prenet and
postnet. Attribute names follow the reference checkpoint layout.

Authors
 * BiCodec plugin authors 2026
"""

import torch
from torch import nn
from torch.nn import functional as F


class AdaLayerNorm(nn.Module):
    """Affine-free layer norm followed by a condition-driven scale and shift.

    ``y = LN(x) * scale(c) + shift(c)``: the scale is used as is (not
    ``1 + scale``), as in the reference.

    Arguments
    ---------
    condition_dim : int
        Size of the condition vector.
    dim : int
        Normalised (last) dimension of the input.
    eps : float
        Layer-norm epsilon.

    Example
    -------
    >>> norm = AdaLayerNorm(6, 4)
    >>> norm(torch.randn(2, 10, 4), torch.randn(2, 6)).shape
    torch.Size([2, 10, 4])
    """

    def __init__(self, condition_dim, dim, eps=1e-6):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = nn.Linear(condition_dim, dim)
        self.shift = nn.Linear(condition_dim, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x, condition):
        """Normalises ``x`` under ``condition``.

        Arguments
        ---------
        x : torch.Tensor
            (B, T, C).
        condition : torch.Tensor
            (B, condition_dim).

        Returns
        -------
        torch.Tensor
            (B, T, C).
        """
        scale = self.scale(condition).unsqueeze(1)
        shift = self.shift(condition).unsqueeze(1)
        return F.layer_norm(x, (self.dim,), eps=self.eps) * scale + shift


def _make_norm(dim, condition_dim):
    if condition_dim is None:
        return nn.LayerNorm(dim, eps=1e-6)
    return AdaLayerNorm(condition_dim, dim, eps=1e-6)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise conv, (Ada)LayerNorm, MLP, layer scale, residual.

    Arguments
    ---------
    dim : int
        Channels C.
    intermediate_dim : int
        Hidden width of the MLP.
    layer_scale_init_value : float
        Initial layer-scale gamma.
    condition_dim : int, optional
        If given, the norm is an :class:`AdaLayerNorm` on a condition vector.

    Example
    -------
    >>> block = ConvNeXtBlock(8, 16, 0.5)
    >>> block(torch.randn(2, 8, 20)).shape
    torch.Size([2, 8, 20])
    """

    def __init__(self, dim, intermediate_dim, layer_scale_init_value, condition_dim=None):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = _make_norm(dim, condition_dim)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x, condition=None, mask=None):
        """Applies the block.

        Arguments
        ---------
        x : torch.Tensor
            (B, C, T).
        condition : torch.Tensor, optional
            (B, condition_dim), required when built with ``condition_dim``.
        mask : torch.Tensor, optional
            (B, 1, T), 1 on valid frames: padded frames are zeroed before the
            convolution, so each item is computed as if it were alone.

        Returns
        -------
        torch.Tensor
            (B, C, T).
        """
        residual = x
        if mask is not None:
            x = x * mask
        x = self.dwconv(x).transpose(1, 2)  # (B, C, T) -> (B, T, C)
        x = self.norm(x) if condition is None else self.norm(x, condition)
        x = self.pwconv2(self.act(self.pwconv1(x)))
        x = (self.gamma * x).transpose(1, 2)  # (B, T, C) -> (B, C, T)
        return residual + x


class VocosBackbone(nn.Module):
    """Embedding conv, norm, a stack of ConvNeXt blocks and a final layer norm.

    Input is channel-first, output channel-last, as in the reference.

    Arguments
    ---------
    input_channels : int
        Input channels.
    dim : int
        Hidden channels.
    intermediate_dim : int
        MLP width of each block.
    num_layers : int
        Number of ConvNeXt blocks; layer scale starts at ``1 / num_layers``.
    condition_dim : int, optional
        Makes the input norm and every block norm adaptive on a condition.

    Example
    -------
    >>> net = VocosBackbone(6, 8, 16, 2)
    >>> net(torch.randn(2, 6, 20)).shape
    torch.Size([2, 20, 8])
    """

    def __init__(self, input_channels, dim, intermediate_dim, num_layers, condition_dim=None):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = _make_norm(dim, condition_dim)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers, condition_dim)
            for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        # Reference init; it also overwrites AdaLayerNorm's ones/zeros.
        self.apply(_init_weights)

    def forward(self, x, condition=None, mask=None):
        """Runs the backbone.

        Arguments
        ---------
        x : torch.Tensor
            (B, input_channels, T).
        condition : torch.Tensor, optional
            (B, condition_dim).
        mask : torch.Tensor, optional
            (B, 1, T), 1 on valid frames (see :class:`ConvNeXtBlock`).

        Returns
        -------
        torch.Tensor
            (B, T, dim).
        """
        if mask is not None:
            x = x * mask
        x = self.embed(x).transpose(1, 2)  # (B, C, T) -> (B, T, C)
        x = self.norm(x) if condition is None else self.norm(x, condition)
        x = x.transpose(1, 2)  # (B, T, C) -> (B, C, T)
        for block in self.convnext:
            x = block(x, condition, mask)
        return self.final_layer_norm(x.transpose(1, 2))


def _init_weights(module):
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.constant_(module.bias, 0)


class SamplingBlock(nn.Module):
    """Temporal up/down-sampling between backbones.

    With both ratios 1 (the only setting BiCodec uses) it has no parameters
    and returns ``3 * x``: the reference sums three identical identity
    branches, and the released weights depend on that factor. Ratios above
    1 are provided for experiments; BiCodec never uses them, so they are
    not checked against the reference.

    Arguments
    ---------
    dim : int
        Channels C.
    upsample_scale : int
        Upsampling ratio (repeat + depthwise transposed conv branch).
    downsample_scale : int
        Downsampling ratio (strided depthwise conv + average-pool branches).

    Example
    -------
    >>> x = torch.randn(2, 10, 4)
    >>> torch.equal(SamplingBlock(4)(x), 3 * x.transpose(1, 2))
    True
    >>> SamplingBlock(4, upsample_scale=2)(x).shape
    torch.Size([2, 4, 20])
    >>> SamplingBlock(4, downsample_scale=2)(x).shape
    torch.Size([2, 4, 5])
    """

    def __init__(self, dim, upsample_scale=1, downsample_scale=1):
        super().__init__()
        self.upsample_scale = upsample_scale
        self.downsample_scale = downsample_scale
        if upsample_scale > 1:
            r = upsample_scale
            self.de_conv_upsample = nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    dim,
                    dim,
                    2 * r,
                    stride=r,
                    padding=r // 2 + r % 2,
                    output_padding=r % 2,
                    groups=dim,
                ),
            )
        if downsample_scale > 1:
            r = downsample_scale
            self.conv_downsample = nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.Conv1d(dim, dim, 2 * r, stride=r, padding=r // 2 + r % 2, groups=dim),
            )

    def forward(self, x):
        """Resamples.

        Arguments
        ---------
        x : torch.Tensor
            (B, T, C).

        Returns
        -------
        torch.Tensor
            (B, C, T') with T' = T * up / down.
        """
        x = x.transpose(1, 2)  # (B, T, C) -> (B, C, T)
        if self.upsample_scale > 1:
            repeat = torch.repeat_interleave(x, self.upsample_scale, dim=2)
            x = repeat + self.de_conv_upsample(x)
        if self.downsample_scale > 1:
            r = self.downsample_scale
            conv = self.conv_downsample(x)
            avg = F.avg_pool1d(x, r, r)
            return conv + avg + avg
        # x + x + x, as the reference: bit-identical to 3 * x.
        return x + x + x
