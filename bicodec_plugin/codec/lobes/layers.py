"""Small shared layers: weight-normed convolutions and the Snake activation.

The convolutions and Snake also accept a *channels-last 2-D view* of a
(B, C, T) signal: a (B, C, 1, T) tensor in ``torch.channels_last`` memory
format (laid out as (B, T, C)). On CPU, oneDNN runs these 2-D convolutions
faster than the 1-D ones; :class:`~bicodec_plugin.codec.lobes.decoder.WaveGenerator`
uses the view for inference. Parameters keep their 1-D shapes and names.

Weight norm uses ``torch.nn.utils.parametrizations.weight_norm`` (dim 0):
parameters ``parametrizations.weight.original0`` (the magnitude ``g``) and
``original1`` (the direction ``v``). :mod:`bicodec_plugin.formats.release` maps these
to the reference's ``weight_g``/``weight_v`` names.

Authors
 * BiCodec plugin authors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize


def _check_2d_view(module, x):
    if x.shape[2] != 1:
        raise ValueError(f"expected (B, C, T) or (B, C, 1, T), got {tuple(x.shape)}")
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise ValueError("the 2-D view supports integer zero padding only")


class Conv1d(nn.Conv1d):
    """``torch.nn.Conv1d`` that also takes the channels-last 2-D view (B, C, 1, T).

    Example
    -------
    >>> conv = Conv1d(4, 6, kernel_size=3, dilation=2, padding=2)
    >>> x = torch.randn(2, 4, 20)
    >>> x2d = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    >>> torch.allclose(conv(x2d).squeeze(2), conv(x), atol=1e-6)
    True
    """

    def forward(self, x):
        """(B, C_in, T) -> (B, C_out, T'); (B, C_in, 1, T) -> (B, C_out, 1, T')."""
        if x.dim() != 4:  # the usual 1-D input, batched or not
            return super().forward(x)
        _check_2d_view(self, x)
        return F.conv2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),
            dilation=(1, self.dilation[0]),
            groups=self.groups,
        )


class ConvTranspose1d(nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` that also takes the channels-last 2-D view.

    Example
    -------
    >>> conv = ConvTranspose1d(4, 2, kernel_size=4, stride=2, padding=1)
    >>> x = torch.randn(1, 4, 5)
    >>> x2d = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    >>> torch.allclose(conv(x2d).squeeze(2), conv(x), atol=1e-6)
    True
    """

    def forward(self, x, output_size=None):
        """(B, C_in, T) -> (B, C_out, T'); (B, C_in, 1, T) -> (B, C_out, 1, T')."""
        if x.dim() != 4:  # the usual 1-D input, batched or not
            return super().forward(x, output_size)
        _check_2d_view(self, x)
        if output_size is not None:
            raise ValueError("output_size is not supported with the 2-D view")
        return F.conv_transpose2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),
            output_padding=(0, self.output_padding[0]),
            groups=self.groups,
            dilation=(1, self.dilation[0]),
        )


def wn_conv1d(*args, **kwargs):
    """A :class:`Conv1d` with weight norm over dim 0.

    Example
    -------
    >>> conv = wn_conv1d(4, 8, kernel_size=3, padding=1)
    >>> conv(torch.randn(2, 4, 10)).shape
    torch.Size([2, 8, 10])
    """
    return parametrizations.weight_norm(Conv1d(*args, **kwargs))


def wn_conv_transpose1d(*args, **kwargs):
    """A :class:`ConvTranspose1d` with weight norm over dim 0.

    For a transposed convolution dim 0 is the input-channel axis, as in the
    reference, so ``g`` has shape (C_in, 1, 1).

    Example
    -------
    >>> conv = wn_conv_transpose1d(4, 2, kernel_size=4, stride=2, padding=1)
    >>> conv(torch.randn(1, 4, 5)).shape
    torch.Size([1, 2, 10])
    """
    return parametrizations.weight_norm(ConvTranspose1d(*args, **kwargs))


def wn_conv2d(*args, **kwargs):
    """A ``torch.nn.Conv2d`` with weight norm over dim 0.

    Example
    -------
    >>> wn_conv2d(1, 4, (3, 1))(torch.randn(1, 1, 8, 2)).shape
    torch.Size([1, 4, 6, 2])
    """
    return parametrizations.weight_norm(nn.Conv2d(*args, **kwargs))


def has_weight_norm(module):
    """True when ``module.weight`` is weight-norm parametrised.

    Example
    -------
    >>> has_weight_norm(wn_conv1d(1, 1, 1)), has_weight_norm(nn.Conv1d(1, 1, 1))
    (True, False)
    """
    return parametrize.is_parametrized(module, "weight")


def fold_weight_norm(model):
    """Replaces every weight-norm parametrisation by the plain folded weight.

    ``weight = g * v / ||v||`` computed once, as the reference's
    ``remove_weight_norm`` does; outputs are unchanged and inference is
    cheaper. Works in place.

    Arguments
    ---------
    model : torch.nn.Module
        Any module tree.

    Returns
    -------
    int
        Number of layers folded.

    Example
    -------
    >>> net = nn.Sequential(wn_conv1d(2, 2, 3), nn.ReLU(), wn_conv1d(2, 1, 1))
    >>> x = torch.randn(1, 2, 9)
    >>> y = net(x)
    >>> fold_weight_norm(net)
    2
    >>> torch.allclose(net(x), y, atol=1e-6)
    True
    """
    folded = 0
    for module in model.modules():
        if has_weight_norm(module):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            folded += 1
    return folded


def defer_weight_norm_fold(module):
    """Folds ``module``'s weight norm just before its first forward instead of now.

    Until then its ``g`` and ``v`` are only read when the module runs, so a
    process that never runs it (e.g. one that only tokenizes, for the wave
    generator) never pays the folded weights' memory. :func:`fold_deferred`
    folds at once (for code that reads the weights without calling forward).

    Example
    -------
    >>> net = nn.Sequential(wn_conv1d(2, 2, 3))
    >>> defer_weight_norm_fold(net)
    >>> has_weight_norm(net[0])
    True
    >>> _ = net(torch.randn(1, 2, 9))
    >>> has_weight_norm(net[0])
    False
    """

    def hook(mod, args):
        fold_deferred(mod)

    module._deferred_fold = module.register_forward_pre_hook(hook)


def fold_deferred(module):
    """Folds now what :func:`defer_weight_norm_fold` deferred (no-op otherwise)."""
    handle = module.__dict__.pop("_deferred_fold", None)
    if handle is not None:
        handle.remove()
        with torch.no_grad():
            fold_weight_norm(module)


def init_weight_norm_direction(module, std=0.02):
    """Truncated-normal init of a weight-normed layer, ``g`` reset to ``||v||``.

    Initialising ``module.weight`` directly is lost with weight norm; this
    sets the direction and magnitude so the effective weight is the sample.

    Example
    -------
    >>> conv = wn_conv1d(8, 8, 7)
    >>> init_weight_norm_direction(conv)
    >>> bool(conv.weight.std() < 0.05)
    True
    """
    weight_norm = module.parametrizations.weight
    with torch.no_grad():
        v = weight_norm.original1
        nn.init.trunc_normal_(v, std=std)
        dims = tuple(range(1, v.dim()))
        weight_norm.original0.copy_(v.norm(dim=dims, keepdim=True))


class Snake1d(nn.Module):
    """Snake activation ``x + sin^2(alpha x) / (alpha + 1e-9)``, alpha per channel.

    Arguments
    ---------
    channels : int
        Number of channels C.

    Example
    -------
    >>> Snake1d(4)(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    """

    def __init__(self, channels):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x):
        """Applies the activation.

        Arguments
        ---------
        x : torch.Tensor
            (B, C, T), or the channels-last 2-D view (B, C, 1, T).

        Returns
        -------
        torch.Tensor
            Same shape (and memory format) as ``x``.
        """
        alpha = self.alpha.unsqueeze(-1) if x.dim() == 4 else self.alpha
        inv_alpha = (alpha + 1e-9).reciprocal()
        if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad):
            return x + inv_alpha * torch.sin(alpha * x).pow(2)
        # Inference: same arithmetic in one buffer (the decoder's activations
        # are large; this saves four allocations and passes over memory).
        out = torch.mul(x, alpha).sin_()
        return out.mul_(out).mul_(inv_alpha).add_(x)


def skip_parameter_init():
    """A context in which modules are built without initialising their parameters.

    For parameters that a strict loader fills next: the random values would
    be computed only to be dropped, and writing them makes the allocations
    resident. ``transformers``' context (``transformers.initialization`` from
    v5, ``transformers.modeling_utils`` before).

    Example
    -------
    >>> with skip_parameter_init():
    ...     layer = torch.nn.Linear(4, 3)
    >>> layer.weight.shape
    torch.Size([3, 4])
    """
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()
