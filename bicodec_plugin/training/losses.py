"""BiCodec training losses: multi-scale mel, LSGAN, feature matching, speaker, SSL features.

Each term is a small module returning a scalar; :func:`weighted_sum` combines
them with a weight dict keyed by the same short names used for logging
(``"mel"``, ``"adv"``, ``"fm"``, ``"vq"``, ``"spk"``, ``"feat"``). The
adversarial terms take the discriminator output format of
:class:`bicodec_plugin.training.discriminators.BiCodecDiscriminator`: one list of
feature maps per sub-discriminator, logits last.

Authors
 * BiCodec plugin authors 2026
"""

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F


class MultiScaleMelLoss(nn.Module):
    """L1 distance between log10 mel spectrograms at several resolutions, summed.

    For each (n_mels, window) pair: n_fft = win_length = window, hop = window
    // 4, magnitude (power 1), centred, Slaney filterbank and scale. The loss
    is ``sum_r mean|log10(max(M_r(y_hat), eps)) - log10(max(M_r(y), eps))|``
    (summed, not averaged, over resolutions, as in the reference). The
    transforms are built once; the loss runs in float32 with autocast off.

    Reference quirks: the reference passes neither its configured mel f_min
    nor f_max (so f_max is Nyquist), and its 24 kHz config builds the
    filterbank for 16 kHz; pass ``sample_rate=16000`` on 24 kHz audio to
    reproduce the latter.

    Arguments
    ---------
    sample_rate : int
        Sample rate the filterbanks are built for.
    n_mels : list of int
        Mel bins of each resolution.
    window_lengths : list of int
        Window (and FFT) length of each resolution.
    clamp_eps : float
        Floor applied before the log.
    f_min : float
        Lowest filterbank frequency.
    f_max : float or None
        Highest filterbank frequency; None means ``sample_rate / 2``.

    Example
    -------
    >>> loss = MultiScaleMelLoss(16000, n_mels=[5, 10], window_lengths=[32, 64])
    >>> y = torch.randn(2, 1, 1600)
    >>> float(loss(y, y))
    0.0
    >>> bool(loss(y + 0.1 * torch.randn_like(y), y) > 0)
    True
    """

    def __init__(
        self,
        sample_rate,
        n_mels=(5, 10, 20, 40, 80, 160, 320),
        window_lengths=(32, 64, 128, 256, 512, 1024, 2048),
        clamp_eps=1e-5,
        f_min=0.0,
        f_max=None,
    ):
        super().__init__()
        if len(n_mels) != len(window_lengths):
            raise ValueError("n_mels and window_lengths must have the same length")
        self.clamp_eps = clamp_eps
        f_max = sample_rate / 2 if f_max is None else f_max
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=window,
                win_length=window,
                hop_length=window // 4,
                f_min=f_min,
                f_max=f_max,
                n_mels=bins,
                power=1.0,
                center=True,
                norm="slaney",
                mel_scale="slaney",
            )
            for bins, window in zip(n_mels, window_lengths)
        )

    def forward(self, y_hat, y):
        """Computes the loss.

        Arguments
        ---------
        y_hat : torch.Tensor
            Generated waveform, (B, 1, T) or (B, T).
        y : torch.Tensor
            Target waveform, same shape.

        Returns
        -------
        torch.Tensor
            Scalar loss, float32.
        """
        loss = 0.0
        with torch.autocast(device_type=y.device.type, enabled=False):
            y_hat, y = y_hat.float(), y.float()
            for mel in self.mels:
                log_hat = mel(y_hat).clamp(min=self.clamp_eps).log10()
                log_ref = mel(y).clamp(min=self.clamp_eps).log10()
                loss = loss + (log_hat - log_ref).abs().mean()
        return loss


def _logits(outputs):
    """Last map of each sub-discriminator (a plain tensor is taken as logits)."""
    return [out[-1] if isinstance(out, (list, tuple)) else out for out in outputs]


class GeneratorAdversarialLoss(nn.Module):
    """LSGAN generator loss: ``sum_k mean((D_k(y_hat) - 1)^2)``.

    Example
    -------
    >>> loss = GeneratorAdversarialLoss()
    >>> loss([torch.zeros(2, 1, 4), torch.full((3,), 2.0)])
    tensor(2.)
    """

    def forward(self, fake_outputs):
        """Computes the loss.

        Arguments
        ---------
        fake_outputs : list
            Discriminator output on generated audio: one list of feature maps
            (logits last) or one logits tensor per sub-discriminator.

        Returns
        -------
        torch.Tensor
            Scalar loss, summed over sub-discriminators.
        """
        return sum((logits - 1).pow(2).mean() for logits in _logits(fake_outputs))


class DiscriminatorAdversarialLoss(nn.Module):
    """LSGAN discriminator loss: ``sum_k mean(D_k(y_hat)^2) + mean((1 - D_k(y))^2)``.

    The fake outputs must come from the discriminator run on the *detached*
    generated audio. Returns the total and its real and fake parts, each
    summed over sub-discriminators once (SpeechBrain's ``DiscriminatorLoss``
    doubles its logged real/fake parts; this does not).

    Example
    -------
    >>> loss = DiscriminatorAdversarialLoss()
    >>> fake = [torch.full((2, 4), 0.5), torch.zeros(3)]
    >>> real = [torch.ones(2, 4), torch.full((3,), 3.0)]
    >>> loss(fake, real)
    (tensor(4.2500), tensor(4.), tensor(0.2500))
    """

    def forward(self, fake_outputs, real_outputs):
        """Computes the loss.

        Arguments
        ---------
        fake_outputs : list
            Discriminator output on detached generated audio (lists of maps
            with logits last, or logits tensors), one per sub-discriminator.
        real_outputs : list
            Discriminator output on real audio, same structure.

        Returns
        -------
        total : torch.Tensor
            ``real + fake``, scalar.
        real : torch.Tensor
            ``sum_k mean((1 - D_k(y))^2)``.
        fake : torch.Tensor
            ``sum_k mean(D_k(y_hat)^2)``.
        """
        fake_logits, real_logits = _logits(fake_outputs), _logits(real_outputs)
        if len(fake_logits) != len(real_logits):
            raise ValueError("fake and real outputs have different sub-discriminator counts")
        real = sum((1 - logits).pow(2).mean() for logits in real_logits)
        fake = sum(logits.pow(2).mean() for logits in fake_logits)
        return real + fake, real, fake


class FeatureMatchingLoss(nn.Module):
    """L1 feature matching: ``sum_k sum_{l < last} mean|f_kl(y_hat) - sg(f_kl(y))|``.

    Every feature map except each sub-discriminator's logits contributes one
    mean absolute difference; the terms are summed (100 terms for BiCodec's
    5 period + 3 STFT discriminators). The real maps are detached, so no
    gradient reaches the discriminator through the real side.

    Example
    -------
    >>> loss = FeatureMatchingLoss()
    >>> fake = [[torch.ones(2, 3), torch.zeros(2)], [torch.ones(4), torch.zeros(1)]]
    >>> real = [[torch.zeros(2, 3), torch.ones(2)], [torch.full((4,), 3.0), torch.ones(1)]]
    >>> loss(fake, real)
    tensor(3.)
    """

    def forward(self, fake_outputs, real_outputs):
        """Computes the loss.

        Arguments
        ---------
        fake_outputs : list of list of torch.Tensor
            Feature maps on generated audio, one list per sub-discriminator.
        real_outputs : list of list of torch.Tensor
            Feature maps on real audio, same structure and shapes.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        if len(fake_outputs) != len(real_outputs):
            raise ValueError("fake and real outputs have different sub-discriminator counts")
        loss = 0.0
        for fake_maps, real_maps in zip(fake_outputs, real_outputs):
            for fake, real in zip(fake_maps[:-1], real_maps[:-1]):
                loss = loss + (fake - real.detach()).abs().mean()
        return loss


class SpeakerLoss(nn.Module):
    """Speaker-consistency loss: ``MSE(sg(x_vector), d_vector)``.

    Pulls the d-vector (from the quantised global tokens) towards the
    x-vector without moving the x-vector.

    Example
    -------
    >>> loss = SpeakerLoss()
    >>> x_vector = torch.ones(2, 4, requires_grad=True)
    >>> value = loss(x_vector, torch.zeros(2, 4))
    >>> value, value.requires_grad
    (tensor(1.), False)
    """

    def forward(self, x_vector, d_vector):
        """Computes the loss.

        Arguments
        ---------
        x_vector : torch.Tensor
            Speaker embedding from the x-vector head, (B, D); detached here.
        d_vector : torch.Tensor
            Speaker embedding from the global tokens, (B, D).

        Returns
        -------
        torch.Tensor
            Scalar mean squared error.
        """
        return F.mse_loss(d_vector, x_vector.detach())


class FeatureReconstructionLoss(nn.Module):
    """MSE between predicted and target wav2vec2 features, padded frames masked out.

    Takes (B, C, T) features and SpeechBrain-style *relative* lengths. The
    mean runs over the valid frames and all channels, so without padding it
    equals ``F.mse_loss``. The target is detached.

    Example
    -------
    >>> loss = FeatureReconstructionLoss()
    >>> target = torch.zeros(2, 3, 4)
    >>> pred = torch.ones(2, 3, 4)
    >>> pred[1, :, 2:] = 10.0  # padding of the second item: ignored
    >>> loss(pred, target, lengths=torch.tensor([1.0, 0.5]))
    tensor(1.)
    """

    def forward(self, pred, target, lengths=None):
        """Computes the loss.

        Arguments
        ---------
        pred : torch.Tensor
            Predicted features (postnet output), (B, C, T).
        target : torch.Tensor
            Target SSL features, (B, C, T).
        lengths : torch.Tensor or None
            Relative valid lengths in [0, 1], (B,); None means no padding.

        Returns
        -------
        torch.Tensor
            Scalar mean squared error over valid frames.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"shape mismatch: pred {tuple(pred.shape)}, target {tuple(target.shape)}"
            )
        error = (pred - target.detach()).pow(2)
        if lengths is None:
            return error.mean()
        frames = pred.shape[-1]
        valid = torch.round(lengths.to(pred.device) * frames).clamp(max=frames)
        mask = torch.arange(frames, device=pred.device) < valid.unsqueeze(1)  # (B, T)
        mask = mask.unsqueeze(1).to(error.dtype)  # (B, T) -> (B, 1, T)
        denominator = (mask.sum() * pred.shape[1]).clamp(min=1)
        return (error * mask).sum() / denominator


def weighted_sum(terms, weights):
    """Weighted sum of loss terms, plus a flat float dict for logging.

    Only names present in both dicts enter the total, as in the reference;
    a term without a weight is still logged, and a weight without a term is
    ignored. The log holds every term's unweighted value under its own name
    and the total under ``"loss"``.

    Arguments
    ---------
    terms : dict of str to torch.Tensor
        Scalar loss terms, e.g. ``{"mel": ..., "adv": ..., "fm": ...}``.
    weights : dict of str to float
        Weight of each term, e.g. ``{"mel": 15, "adv": 1, "fm": 2}``.

    Returns
    -------
    total : torch.Tensor
        Scalar weighted sum (0 when no name is shared).
    log : dict of str to float
        Term values and ``"loss"``.

    Example
    -------
    >>> terms = {"mel": torch.tensor(2.0), "adv": torch.tensor(1.0), "spk": torch.tensor(5.0)}
    >>> total, log = weighted_sum(terms, {"mel": 15, "adv": 1, "fm": 2})
    >>> total
    tensor(31.)
    >>> log
    {'mel': 2.0, 'adv': 1.0, 'spk': 5.0, 'loss': 31.0}
    """
    if "loss" in terms:
        raise ValueError('"loss" is reserved for the total')
    shared = [name for name in terms if name in weights]
    if shared:
        total = sum(weights[name] * terms[name] for name in shared)
    else:
        total = torch.zeros(())
    log = {name: float(torch.as_tensor(value).detach()) for name, value in terms.items()}
    log["loss"] = float(torch.as_tensor(total).detach())
    return total, log
