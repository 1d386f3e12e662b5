"""Quantisers: factorised VQ (semantic tokens) and (residual) FSQ (global tokens).

Authors
 * BiCodec plugin authors 2026
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from bicodec_plugin.codec.lobes.layers import wn_conv1d


@dataclass
class VQOutput:
    """What :meth:`FactorizedVectorQuantize.forward` returns.

    Attributes
    ----------
    z_q : torch.Tensor
        Quantised latent after the out-projection, (B, D, T).
    indices : torch.Tensor
        Token ids, (B, T) int64.
    vq_loss : torch.Tensor
        Commitment + codebook loss, batch mean (0 in eval mode).
    commit_loss : torch.Tensor
        Weighted commitment loss, batch mean.
    codebook_loss : torch.Tensor
        Weighted codebook loss, batch mean.
    perplexity : torch.Tensor
        exp(entropy) of the batch's code usage.
    active_num : torch.Tensor
        Codes whose usage EMA exceeds the dead-code threshold.
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    vq_loss: torch.Tensor
    commit_loss: torch.Tensor
    codebook_loss: torch.Tensor
    perplexity: torch.Tensor
    active_num: torch.Tensor


class FactorizedVectorQuantize(nn.Module):
    """Factorised VQ: project to a small space, cosine nearest codeword, project back.

    The search L2-normalises the projected frames and the codewords; the
    quantised value is the *raw* codeword (straight-through). In training
    the usage EMA ``cluster_size`` is updated (statistics only; no code is
    ever replaced).

    Arguments
    ---------
    input_dim : int
        Latent channels D.
    codebook_size : int
        Number of codes K.
    codebook_dim : int
        Code dimension.
    commitment : float
        Weight of the commitment loss.
    codebook_loss_weight : float
        Weight of the codebook loss.
    decay : float
        Decay of the usage EMA.
    threshold_ema_dead_code : float
        Usage above which a code counts as active.
    **kwargs
        Other reference config keys (``use_l2_normlize``, ``momentum``), which
        the reference ignores too.

    Example
    -------
    >>> vq = FactorizedVectorQuantize(16, 32, 4, 0.25)
    >>> out = vq(torch.randn(2, 16, 10))
    >>> out.z_q.shape, out.indices.shape
    (torch.Size([2, 16, 10]), torch.Size([2, 10]))
    >>> vq.eval()(torch.randn(1, 16, 5)).indices.dtype
    torch.int64
    """

    def __init__(
        self,
        input_dim=1024,
        codebook_size=8192,
        codebook_dim=8,
        commitment=0.25,
        codebook_loss_weight=2.0,
        decay=0.99,
        threshold_ema_dead_code=0.2,
        **kwargs,
    ):
        super().__init__()
        unknown = set(kwargs) - {"use_l2_normlize", "momentum"}
        if unknown:
            raise TypeError(f"unknown quantizer options: {sorted(unknown)}")
        self.input_dim = input_dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.commitment = commitment
        self.codebook_loss_weight = codebook_loss_weight
        self.decay = decay
        self.threshold_ema_dead_code = threshold_ema_dead_code
        if input_dim != codebook_dim:
            self.in_project = wn_conv1d(input_dim, codebook_dim, kernel_size=1)
            self.out_project = wn_conv1d(codebook_dim, input_dim, kernel_size=1)
        else:
            self.in_project = nn.Identity()
            self.out_project = nn.Identity()
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))

    # Frames per block of the nearest-code search (a block's distances: 128 MB
    # at 8192 codes); shorter inputs (82 s at 50 Hz) run as one block.
    search_rows = 4096

    def nearest_codes(self, z_e):
        """Cosine nearest codeword of each frame.

        The distance is written as the reference writes it, so that ties and
        rounding resolve the same way and tokens are identical.

        Arguments
        ---------
        z_e : torch.Tensor
            Projected latent, (B, codebook_dim, T).

        Returns
        -------
        torch.Tensor
            Indices, (B, T) int64.
        """
        batch = z_e.shape[0]
        # Always in float32: a reduced-precision search would change tokens.
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            enc = F.normalize(z_e.float().transpose(1, 2).reshape(-1, z_e.shape[1]))
            codebook = F.normalize(self.codebook.weight.float())
            code_norms = codebook.pow(2).sum(1, keepdim=True).t()
            # Rows in blocks: a (frames x codebook) distance matrix of a long
            # utterance would take gigabytes (30,000 frames: 1 GB per copy).
            rows = self.search_rows
            indices = [
                (-(block.pow(2).sum(1, keepdim=True) - 2 * block @ codebook.t() + code_norms)).max(
                    1
                )[1]
                for block in enc.split(rows)
            ]
            return torch.cat(indices).reshape(batch, -1)

    def tokenize(self, z):
        """Latent (B, D, T) -> token ids (B, T)."""
        return self.nearest_codes(self.in_project(z))

    def check_indices(self, indices):
        """Raises ``ValueError`` for ids outside [0, codebook_size)."""
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"semantic token ids must lie in [0, {self.codebook_size}); got "
                f"min {int(indices.min())}, max {int(indices.max())}"
            )

    def detokenize(self, indices):
        """Token ids (B, T) -> quantised latent (B, D, T)."""
        self.check_indices(indices)
        codes = self.codebook(indices).transpose(1, 2)  # (B, T, d) -> (B, d, T)
        return self.out_project(codes)

    def forward(self, z):
        """Quantises, with losses and usage statistics in training mode.

        Arguments
        ---------
        z : torch.Tensor
            (B, D, T).

        Returns
        -------
        VQOutput
        """
        z_e = self.in_project(z)
        indices = self.nearest_codes(z_e)
        z_q = self.codebook(indices).transpose(1, 2)  # raw codeword, (B, d, T)

        onehot = F.one_hot(indices, self.codebook_size).type(z_e.dtype)
        onehot = onehot.reshape(-1, self.codebook_size)
        avg_probs = onehot.mean(0)
        perplexity = torch.exp(-torch.sum(avg_probs * torch.log(avg_probs + 1e-10)))

        zero = z_e.new_zeros(())
        commit_loss = codebook_loss = zero
        if self.training:
            commit_loss = (
                F.mse_loss(z_e, z_q.detach(), reduction="none").mean([1, 2]) * self.commitment
            ).mean()
            codebook_loss = (
                F.mse_loss(z_q, z_e.detach(), reduction="none").mean([1, 2])
                * self.codebook_loss_weight
            ).mean()
            z_q = z_e + (z_q - z_e).detach()  # straight-through estimator
            with torch.no_grad():
                counts = onehot.sum(0)
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    torch.distributed.all_reduce(counts)
                self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        active_num = (self.cluster_size > self.threshold_ema_dead_code).sum()
        return VQOutput(
            z_q=self.out_project(z_q),
            indices=indices,
            vq_loss=commit_loss + codebook_loss,
            commit_loss=commit_loss,
            codebook_loss=codebook_loss,
            perplexity=perplexity,
            active_num=active_num,
        )


class FSQ(nn.Module):
    """Finite scalar quantisation (no projections): bound, round, index.

    Each dimension d is squashed to ``L_d`` levels; the index of a code is
    little-endian over dimensions (dim 0 is the least significant digit).
    Quantisation always runs in float32 with autocast off.

    Arguments
    ---------
    levels : list of int
        Levels per dimension.

    Example
    -------
    >>> fsq = FSQ([4, 4, 4])
    >>> codes, idx = fsq(torch.randn(2, 5, 3))
    >>> idx.shape, fsq.codebook_size
    (torch.Size([2, 5]), 64)
    >>> torch.equal(fsq.indices_to_codes(idx), codes)
    True
    """

    def __init__(self, levels):
        super().__init__()
        levels_t = torch.tensor(levels, dtype=torch.int64)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1]), dtype=torch.int64), 0)
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.dim = len(levels)
        self.codebook_size = int(levels_t.prod())

    def bound(self, z, eps=1e-3):
        """Squashes ``z`` to the level range: tanh with a half-level offset for even L."""
        levels = self.levels.to(z.dtype)
        half_l = (levels - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z):
        """Codes in [-1, 1] with straight-through rounding."""
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (self.levels // 2).to(z.dtype)

    def codes_to_indices(self, codes):
        """(..., dim) codes -> (...) int64 indices."""
        half_width = (self.levels // 2).to(codes.dtype)
        digits = (codes * half_width + half_width).round().long()
        return (digits * self.basis).sum(dim=-1)

    def indices_to_codes(self, indices):
        """(...) int64 indices -> (..., dim) float codes."""
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"global token ids must lie in [0, {self.codebook_size}); got "
                f"min {int(indices.min())}, max {int(indices.max())}"
            )
        digits = (indices.unsqueeze(-1) // self.basis) % self.levels
        half_width = self.levels // 2
        return ((digits - half_width) / half_width).float()

    def forward(self, z):
        """Quantises the last dimension.

        Arguments
        ---------
        z : torch.Tensor
            (..., dim).

        Returns
        -------
        codes : torch.Tensor
            (..., dim), float32.
        indices : torch.Tensor
            (...), int64.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            codes = self.quantize(z.float())
            return codes, self.codes_to_indices(codes)


class ResidualFSQ(nn.Module):
    """Residual FSQ with input/output projections, channel-first.

    Stage q quantises ``residual / (L - 1)^-q``; BiCodec uses one stage.

    Arguments
    ---------
    levels : list of int
        FSQ levels (the code dimension is ``len(levels)``).
    num_quantizers : int
        Number of residual stages.
    dim : int
        Channels of the input.

    Example
    -------
    >>> rfsq = ResidualFSQ([4, 4, 4, 4, 4, 4], 1, dim=16)
    >>> zq, idx = rfsq(torch.randn(2, 16, 32))
    >>> zq.shape, idx.shape
    (torch.Size([2, 16, 32]), torch.Size([2, 1, 32]))
    >>> torch.allclose(rfsq.indices_to_output(idx), zq)
    True
    >>> rfsq.indices_to_codes(idx).shape  # levels in [-1, 1] per code dimension
    torch.Size([2, 32, 6])
    """

    def __init__(self, levels=(4, 4, 4, 4, 4, 4), num_quantizers=1, dim=128):
        super().__init__()
        codebook_dim = len(levels)
        if dim != codebook_dim:
            self.project_in = nn.Linear(dim, codebook_dim)
            self.project_out = nn.Linear(codebook_dim, dim)
        else:
            self.project_in = nn.Identity()
            self.project_out = nn.Identity()
        self.layers = nn.ModuleList(FSQ(list(levels)) for _ in range(num_quantizers))
        levels_t = torch.tensor(levels, dtype=torch.float32)
        scales = torch.stack([(levels_t - 1) ** -q for q in range(num_quantizers)])
        self.register_buffer("scales", scales, persistent=False)
        self.num_quantizers = num_quantizers
        self.codebook_size = self.layers[0].codebook_size

    def forward(self, x):
        """Quantises channel-first latents.

        Arguments
        ---------
        x : torch.Tensor
            (B, dim, N).

        Returns
        -------
        quantized : torch.Tensor
            (B, dim, N).
        indices : torch.Tensor
            (B, num_quantizers, N) int64.
        """
        x = self.project_in(x.transpose(1, 2))  # (B, dim, N) -> (B, N, d)
        with torch.autocast(device_type=x.device.type, enabled=False):
            residual = x.float()
            quantized_out = 0.0
            all_indices = []
            for layer, scale in zip(self.layers, self.scales):
                codes, indices = layer(residual / scale)
                quantized = codes * scale
                residual = residual - quantized.detach()
                quantized_out = quantized_out + quantized
                all_indices.append(indices)
        out = self.project_out(quantized_out).transpose(1, 2)  # -> (B, dim, N)
        return out, torch.stack(all_indices, dim=1)

    def indices_to_codes(self, indices):
        """Token ids (B, num_quantizers, N) -> FSQ codes (B, N, len(levels)), stages summed.

        Each code dimension takes one of its levels (in [-1, 1], scaled per
        stage): the space in which two token sequences are compared level by
        level.
        """
        if indices.dim() != 3 or indices.shape[1] != self.num_quantizers:
            raise ValueError(
                f"expected indices of shape (B, {self.num_quantizers}, N), "
                f"got {tuple(indices.shape)}"
            )
        codes = 0.0
        for q, (layer, scale) in enumerate(zip(self.layers, self.scales)):
            codes = codes + layer.indices_to_codes(indices[:, q]) * scale
        return codes

    def indices_to_output(self, indices):
        """Token ids (B, num_quantizers, N) -> quantised latents (B, dim, N)."""
        codes = self.indices_to_codes(indices)
        return self.project_out(codes).transpose(1, 2)  # (B, N, dim) -> (B, dim, N)
