"""Global (speaker) branch: ECAPA-TDNN, perceiver resampler, FSQ, d-vector head.

Authors
 * BiCodec plugin authors 2026
"""

import torch
from torch import nn
from torch.nn import functional as F

from bicodec_plugin.codec.lobes.quantizers import ResidualFSQ


class Conv1dReluBn(nn.Module):
    """Conv1d, ReLU, BatchNorm: the reference's order (ReLU before BN).

    Example
    -------
    >>> Conv1dReluBn(4, 8, kernel_size=3, padding=1)(torch.randn(2, 4, 10)).shape
    torch.Size([2, 8, 10])
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, padding=0, dilation=1):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation
        )
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x):
        """(B, C_in, T) -> (B, C_out, T)."""
        return self.bn(F.relu(self.conv(x)))


class Res2Conv1dReluBn(nn.Module):
    """Res2Net convolution: channel splits, each conv sees the previous split's output.

    Arguments
    ---------
    channels : int
        Channels (divisible by ``scale``).
    kernel_size : int
        Kernel of each split convolution.
    padding : int
        Padding.
    dilation : int
        Dilation.
    scale : int
        Number of splits; the last one passes through unchanged.

    Example
    -------
    >>> Res2Conv1dReluBn(16, 3, 2, 2, scale=4)(torch.randn(2, 16, 10)).shape
    torch.Size([2, 16, 10])
    """

    def __init__(self, channels, kernel_size=3, padding=1, dilation=1, scale=8):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by scale {scale}")
        self.width = channels // scale
        self.num_convs = scale - 1 if scale > 1 else 1
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, kernel_size, padding=padding, dilation=dilation)
            for _ in range(self.num_convs)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(self.num_convs))
        self.scale = scale

    def forward(self, x):
        """(B, C, T) -> (B, C, T)."""
        splits = torch.split(x, self.width, dim=1)
        outputs = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i >= 1:
                sp = sp + splits[i]
            sp = bn(F.relu(conv(sp)))
            outputs.append(sp)
        if self.scale != 1:
            outputs.append(splits[self.num_convs])
        return torch.cat(outputs, dim=1)


class SEConnect(nn.Module):
    """Squeeze-excitation: time mean, bottleneck MLP, sigmoid channel gates.

    Example
    -------
    >>> SEConnect(16, 4)(torch.randn(2, 16, 10)).shape
    torch.Size([2, 16, 10])
    """

    def __init__(self, channels, bottleneck=128):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x):
        """(B, C, T) -> (B, C, T)."""
        gates = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gates.unsqueeze(2)


class SERes2Block(nn.Module):
    """1x1 conv, Res2 dilated conv, 1x1 conv, squeeze-excitation, residual add.

    Example
    -------
    >>> SERes2Block(16, 3, 2, 2, scale=4)(torch.randn(2, 16, 10)).shape
    torch.Size([2, 16, 10])
    """

    def __init__(self, channels, kernel_size, padding, dilation, scale=8):
        super().__init__()
        self.se_res2block = nn.Sequential(
            Conv1dReluBn(channels, channels),
            Res2Conv1dReluBn(channels, kernel_size, padding, dilation, scale),
            Conv1dReluBn(channels, channels),
            SEConnect(channels),
        )

    def forward(self, x):
        """(B, C, T) -> (B, C, T)."""
        return x + self.se_res2block(x)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling with global context (mean and std over time).

    Arguments
    ---------
    in_dim : int
        Channels of the frame features.
    bottleneck_dim : int
        Attention bottleneck.

    Example
    -------
    >>> AttentiveStatsPooling(8, 4)(torch.randn(2, 8, 30)).shape
    torch.Size([2, 16])
    """

    def __init__(self, in_dim, bottleneck_dim=128):
        super().__init__()
        self.linear1 = nn.Conv1d(in_dim * 3, bottleneck_dim, kernel_size=1)
        self.linear2 = nn.Conv1d(bottleneck_dim, in_dim, kernel_size=1)

    def forward(self, x):
        """(B, C, T) -> (B, 2C): attention-weighted mean and std."""
        context_mean = x.mean(dim=-1, keepdim=True).expand_as(x)
        # Unbiased variance for the context, as the reference.
        context_std = torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-7).expand_as(x)
        alpha = torch.tanh(self.linear1(torch.cat((x, context_mean, context_std), dim=1)))
        alpha = torch.softmax(self.linear2(alpha), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * x**2, dim=2) - mean**2
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-7))], dim=1)


class ECAPATDNN(nn.Module):
    """ECAPA-TDNN of the reference ("GLOB c512" variant).

    Differs from SpeechBrain's ``ECAPA_TDNN``: conv -> ReLU -> BN order, each
    SE-Res2 block feeds the next (no dense sums), global-context attentive
    statistics pooling, no embedding BN; it also returns the 1536-channel
    frame features that the perceiver reads.

    Arguments
    ---------
    feat_dim : int
        Input features (mel bins).
    embed_dim : int
        x-vector size.
    channels : int
        Block channels.

    Example
    -------
    >>> ecapa = ECAPATDNN(feat_dim=20, embed_dim=8).eval()
    >>> xvec, frames = ecapa(torch.randn(2, 30, 20))
    >>> xvec.shape, frames.shape
    (torch.Size([2, 8]), torch.Size([2, 1536, 30]))
    """

    def __init__(self, feat_dim=128, embed_dim=1024, channels=512):
        super().__init__()
        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel_size=5, padding=2)
        self.layer2 = SERes2Block(channels, 3, padding=2, dilation=2)
        self.layer3 = SERes2Block(channels, 3, padding=3, dilation=3)
        self.layer4 = SERes2Block(channels, 3, padding=4, dilation=4)
        frame_dim = 512 * 3  # fixed in the reference, whatever ``channels`` is
        self.conv = nn.Conv1d(channels * 3, frame_dim, kernel_size=1)
        self.pool = AttentiveStatsPooling(frame_dim)
        self.bn = nn.BatchNorm1d(frame_dim * 2)
        self.linear = nn.Linear(frame_dim * 2, embed_dim)

    def frame_features(self, x):
        """Mel (B, T, F) -> frame features (B, 1536, T)."""
        x = x.transpose(1, 2)  # (B, T, F) -> (B, F, T)
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        return F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))

    def forward(self, x):
        """Computes the x-vector and the frame features.

        Arguments
        ---------
        x : torch.Tensor
            Mel features, (B, T, F).

        Returns
        -------
        x_vector : torch.Tensor
            (B, embed_dim).
        frames : torch.Tensor
            (B, 1536, T).
        """
        frames = self.frame_features(x)
        return self.linear(self.bn(self.pool(frames))), frames


class PerceiverAttention(nn.Module):
    """Cross-attention whose keys/values cover the queries and the context.

    Example
    -------
    >>> attn = PerceiverAttention(16)
    >>> attn(torch.randn(2, 4, 16), torch.randn(2, 9, 16)).shape
    torch.Size([2, 4, 16])
    """

    def __init__(self, dim, dim_head=64, heads=8):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        inner = dim_head * heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents, context):
        """(B, N, D) latents attend to (B, M, D) context -> (B, N, D)."""
        batch, n, _ = latents.shape
        context = torch.cat((latents, context), dim=-2)
        q = self.to_q(latents)
        k, v = self.to_kv(context).chunk(2, dim=-1)

        def split_heads(t):  # (B, L, H*d) -> (B, H, L, d)
            return t.reshape(batch, t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        attn = (torch.einsum("bhid,bhjd->bhij", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        return self.to_out(out.transpose(1, 2).reshape(batch, n, -1))


class GEGLU(nn.Module):
    """Splits the last dim in (x, gate) and returns ``gelu(gate) * x``."""

    def forward(self, x):
        """(..., 2H) -> (..., H)."""
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


class RMSNorm(nn.Module):
    """``normalize(x) * sqrt(dim) * gamma`` over the last dimension.

    Example
    -------
    >>> RMSNorm(8)(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, dim):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        """(..., D) -> (..., D)."""
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class PerceiverResampler(nn.Module):
    """Learned latent queries summarise a variable-length sequence (no pre-norms).

    Arguments
    ---------
    dim : int
        Latent width.
    dim_context : int
        Context width (projected to ``dim``).
    num_latents : int
        Number of output vectors (global tokens).
    depth : int
        Attention + feed-forward layers.
    dim_head : int
        Attention head width.
    heads : int
        Attention heads.
    ff_mult : int
        Feed-forward expansion (GEGLU inner width ``int(dim * ff_mult * 2 / 3)``).

    Example
    -------
    >>> perceiver = PerceiverResampler(16, dim_context=24, num_latents=4)
    >>> perceiver(torch.randn(2, 30, 24)).shape
    torch.Size([2, 4, 16])
    """

    def __init__(
        self, dim=128, dim_context=1536, num_latents=32, depth=2, dim_head=64, heads=8, ff_mult=4
    ):
        super().__init__()
        self.proj_context = nn.Linear(dim_context, dim) if dim_context != dim else nn.Identity()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        inner = int(dim * ff_mult * 2 / 3)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(dim, dim_head, heads),
                    nn.Sequential(nn.Linear(dim, inner * 2), GEGLU(), nn.Linear(inner, dim)),
                ]
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim)

    def forward(self, x):
        """(B, M, dim_context) -> (B, num_latents, dim)."""
        x = self.proj_context(x)
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(latents, x) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class SpeakerEncoder(nn.Module):
    """Mel -> global tokens and the speaker vectors.

    ECAPA-TDNN frame features go through the perceiver (``token_num``
    latents), a residual FSQ gives the global tokens, and a linear layer on
    the flattened (channel-major) quantised latents gives the d-vector.
    The ECAPA x-vector is a training aid (speaker loss, warm-up condition).

    Arguments
    ---------
    input_dim : int
        Mel bins.
    out_dim : int
        Size of the x-vector and d-vector.
    latent_dim : int
        Perceiver width.
    token_num : int
        Global tokens per utterance.
    fsq_levels : list of int
        FSQ levels (codebook size = their product).
    fsq_num_quantizers : int
        Residual FSQ stages.

    Example
    -------
    >>> spk = SpeakerEncoder(input_dim=20, out_dim=8, latent_dim=16, token_num=4).eval()
    >>> mel = torch.randn(2, 50, 20)
    >>> tokens = spk.tokenize(mel)
    >>> tokens.shape
    torch.Size([2, 1, 4])
    >>> spk.detokenize(tokens).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        input_dim=128,
        out_dim=1024,
        latent_dim=128,
        token_num=32,
        fsq_levels=(4, 4, 4, 4, 4, 4),
        fsq_num_quantizers=1,
    ):
        super().__init__()
        self.token_num = token_num
        self.speaker_encoder = ECAPATDNN(feat_dim=input_dim, embed_dim=out_dim)
        self.perceiver_sampler = PerceiverResampler(
            dim=latent_dim, dim_context=512 * 3, num_latents=token_num
        )
        self.quantizer = ResidualFSQ(
            levels=list(fsq_levels), num_quantizers=fsq_num_quantizers, dim=latent_dim
        )
        self.project = nn.Linear(latent_dim * token_num, out_dim)
        self.codebook_size = self.quantizer.codebook_size

    def _quantize(self, frames):
        latents = self.perceiver_sampler(frames.transpose(1, 2))  # (B, N, D)
        return self.quantizer(latents.transpose(1, 2))  # (B, D, N), (B, Q, N)

    def _d_vector(self, zq):
        return self.project(zq.reshape(zq.shape[0], -1))  # channel-major flatten

    def tokenize(self, mel):
        """Mel (B, T, F) -> global tokens (B, num_quantizers, token_num)."""
        _, tokens = self._quantize(self.speaker_encoder.frame_features(mel))
        return tokens

    def detokenize(self, tokens):
        """Global tokens (B, num_quantizers, token_num) -> d-vector (B, out_dim)."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.token_num:
            raise ValueError(
                f"expected {self.token_num} global tokens per utterance, got tensor of "
                f"shape {tuple(tokens.shape)}"
            )
        return self._d_vector(self.quantizer.indices_to_output(tokens))

    def forward(self, mel):
        """Training forward.

        Arguments
        ---------
        mel : torch.Tensor
            (B, T, F).

        Returns
        -------
        x_vector : torch.Tensor
            (B, out_dim).
        d_vector : torch.Tensor
            (B, out_dim).
        tokens : torch.Tensor
            (B, num_quantizers, token_num).
        """
        x_vector, frames = self.speaker_encoder(mel)
        zq, tokens = self._quantize(frames)
        return x_vector, self._d_vector(zq), tokens
