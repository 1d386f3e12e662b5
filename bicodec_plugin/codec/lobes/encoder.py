"""The semantic encoder: wav2vec2 features -> latent ``z`` at 50 Hz.

Authors
 * BiCodec plugin authors 2026
"""

import torch  # noqa: F401 (doctest namespace)
from torch import nn

from bicodec_plugin.codec.lobes.convnext import SamplingBlock, VocosBackbone


class SemanticEncoder(nn.Module):
    """ConvNeXt stack, sampling stages, then a linear projection.

    Reference class ``Encoder``; defaults are the released configuration.

    Arguments
    ---------
    input_channels : int
        SSL feature size (1024 for XLS-R).
    vocos_dim : int
        Backbone width.
    vocos_intermediate_dim : int
        MLP width.
    vocos_num_layers : int
        Blocks of the main backbone.
    out_channels : int
        Latent size.
    sample_ratios : list of int
        One sampling stage (plus a 2-block backbone) per entry.

    Example
    -------
    >>> enc = SemanticEncoder(16, 8, 16, 2, 12)
    >>> enc(torch.randn(2, 16, 30)).shape
    torch.Size([2, 12, 30])
    """

    def __init__(
        self,
        input_channels=1024,
        vocos_dim=384,
        vocos_intermediate_dim=2048,
        vocos_num_layers=12,
        out_channels=1024,
        sample_ratios=(1, 1),
    ):
        super().__init__()
        self.encoder = VocosBackbone(
            input_channels, vocos_dim, vocos_intermediate_dim, vocos_num_layers
        )
        self.downsample = nn.Sequential(
            *[
                nn.Sequential(
                    SamplingBlock(vocos_dim, downsample_scale=ratio),
                    VocosBackbone(vocos_dim, vocos_dim, vocos_intermediate_dim, 2),
                )
                for ratio in sample_ratios
            ]
        )
        self.project = nn.Linear(vocos_dim, out_channels)

    def forward(self, x, mask=None):
        """Encodes SSL features.

        Arguments
        ---------
        x : torch.Tensor
            (B, input_channels, T).
        mask : torch.Tensor, optional
            (B, 1, T), 1 on valid frames of a padded batch.

        Returns
        -------
        torch.Tensor
            (B, out_channels, T).
        """
        x = self.encoder(x, mask=mask)  # (B, T, C)
        for sampling, backbone in self.downsample:
            if sampling.upsample_scale > 1 or sampling.downsample_scale > 1:
                mask = None  # frame masks do not survive resampling
            x = backbone(sampling(x), mask=mask)  # (B, C, T) -> (B, T, C)
        return self.project(x).transpose(1, 2)  # (B, T, C) -> (B, C, T)
