"""Offline reconstruction metrics for a speech codec.

Every metric compares a reference waveform with the codec's estimate of it.
Inputs are 1-D ``torch.Tensor`` or ``numpy.ndarray`` signals at one sample
rate; both are cut to the shorter length first, because a codec returns up
to 399 samples less than it was given (BiCodec drops the samples that do not
fill a last wav2vec2 frame).

SI-SDR and the mel distance need only torch. STOI (``pystoi``) and PESQ
(``pesq``) are optional: install them with ``pip install .[eval]``.

The token helpers (``token_bitrate``, ``codebook_usage``) describe the token
stream instead of the audio.

Authors
 * BiCodec plugin authors 2026
"""

import functools
import math
import warnings

import numpy as np
import torch
import torchaudio

from bicodec_plugin.codec.audio import resample

__all__ = [
    "METRICS",
    "codebook_usage",
    "compute_all",
    "mel_distance",
    "pesq_nb",
    "pesq_wb",
    "si_sdr",
    "stoi",
    "token_bitrate",
]

# The rates at which ITU-T P.862 (narrowband) and P.862.2 (wideband) are defined.
PESQ_NB_RATE = 8000
PESQ_WB_RATE = 16000


def _to_numpy(signal):
    """Returns ``signal`` as a float64 1-D array (singleton axes squeezed)."""
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().double().numpy()
    signal = np.squeeze(np.asarray(signal, dtype=np.float64))
    if signal.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {signal.shape}")
    return signal


def _align(ref, est):
    """Converts both signals to float64 arrays cut to the shorter length."""
    ref, est = _to_numpy(ref), _to_numpy(est)
    length = min(len(ref), len(est))
    return ref[:length], est[:length]


def _require(module, metric):
    """Imports an optional metric backend or says which extra installs it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(
            f"{metric} needs the optional package '{module}': install it with `pip install .[eval]`"
        ) from err


def si_sdr(ref, est, zero_mean=True):
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019).

    The estimate is projected on the reference; the ratio of the energy of
    the projection to that of the residual is the SI-SDR. Gain errors of the
    codec are therefore not penalised.

    Arguments
    ---------
    ref : torch.Tensor or numpy.ndarray
        Reference waveform, shape (T,).
    est : torch.Tensor or numpy.ndarray
        Estimated waveform, shape (T',); both are cut to min(T, T').
    zero_mean : bool
        Remove the mean of both signals first (the usual definition).

    Returns
    -------
    float
        SI-SDR in dB: ``inf`` when the estimate is an exact multiple of the
        reference, ``nan`` when the reference is silent.

    Example
    -------
    >>> t = torch.linspace(0, 1, 16000)
    >>> ref = torch.sin(2 * math.pi * 220 * t)
    >>> round(si_sdr(ref, 0.5 * ref + 0.01 * torch.cos(2 * math.pi * 330 * t)), 1)
    34.0
    >>> si_sdr(ref, ref)
    inf
    """
    ref, est = _align(ref, est)
    if zero_mean:
        ref, est = ref - ref.mean(), est - est.mean()
    ref_energy = np.dot(ref, ref)
    if ref_energy == 0:
        return float("nan")
    target = (np.dot(est, ref) / ref_energy) * ref
    residual = est - target
    residual_energy = np.dot(residual, residual)
    target_energy = np.dot(target, target)
    # Rounding leaves a residual of ~1e-32 relative energy for est == ref:
    # call anything at float64 precision a perfect match.
    if residual_energy <= 1e-20 * target_energy:
        return float("inf")
    return float(10 * np.log10(target_energy / residual_energy))


def stoi(ref, est, sample_rate, extended=False):
    """Short-time objective intelligibility (Taal et al. 2011), via ``pystoi``.

    ``pystoi`` resamples to its internal 10 kHz and drops silent frames.

    Arguments
    ---------
    ref : torch.Tensor or numpy.ndarray
        Reference waveform, shape (T,).
    est : torch.Tensor or numpy.ndarray
        Estimated waveform, shape (T',); both are cut to min(T, T').
    sample_rate : int
        Rate of both signals in Hz.
    extended : bool
        Compute extended STOI (Jensen and Taal 2016) instead.

    Returns
    -------
    float
        STOI, in [0, 1] for ordinary speech (1 for identical signals).

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("pystoi")  # the [eval] extra
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.standard_normal(16000) * np.hanning(16000)
    >>> round(stoi(ref, ref, 16000), 3)
    1.0
    """
    pystoi = _require("pystoi", "STOI")
    ref, est = _align(ref, est)
    return float(pystoi.stoi(ref, est, sample_rate, extended=extended))


def _pesq(ref, est, sample_rate, mode, pesq_rate):
    """Runs ``pesq`` at ``pesq_rate``; PESQ's own errors give NaN and a warning."""
    pesq = _require("pesq", "PESQ")
    ref, est = _align(ref, est)
    ref = resample(ref, sample_rate, pesq_rate)
    est = resample(est, sample_rate, pesq_rate)
    try:
        # pesq divides by the common peak, which warns for all-zero input
        # before PESQ itself reports "no utterances".
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(pesq.pesq(pesq_rate, ref, est, mode))
    except pesq.PesqError as err:
        warnings.warn(f"PESQ ({mode}) failed, returning NaN: {err}", RuntimeWarning, stacklevel=2)
        return float("nan")


def pesq_nb(ref, est, sample_rate, pesq_rate=PESQ_NB_RATE):
    """Narrowband PESQ (ITU-T P.862, MOS-LQO), via ``pesq``.

    Signals are resampled with soxr "VHQ" to ``pesq_rate`` unless already
    there. P.862 is defined at 8 kHz (the default) and at 16 kHz; the two
    give slightly different scores, so report which one you used.

    Arguments
    ---------
    ref : torch.Tensor or numpy.ndarray
        Reference waveform, shape (T,).
    est : torch.Tensor or numpy.ndarray
        Estimated waveform, shape (T',); both are cut to min(T, T').
    sample_rate : int
        Rate of both signals in Hz.
    pesq_rate : int
        Rate PESQ runs at, 8000 or 16000.

    Returns
    -------
    float
        MOS-LQO in about [1.0, 4.55]; NaN (with a warning) when PESQ
        rejects the input (silent, or shorter than 1/4 s).

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("pesq")  # the [eval] extra
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.standard_normal(16000) * np.hanning(16000)
    >>> round(pesq_nb(ref, ref, 16000), 2)
    4.55
    """
    if pesq_rate not in (8000, 16000):
        raise ValueError(f"narrowband PESQ runs at 8000 or 16000 Hz, not {pesq_rate}")
    return _pesq(ref, est, sample_rate, "nb", pesq_rate)


def pesq_wb(ref, est, sample_rate):
    """Wideband PESQ (ITU-T P.862.2, MOS-LQO) at 16 kHz, via ``pesq``.

    Signals are resampled with soxr "VHQ" to 16 kHz unless already there.

    Arguments
    ---------
    ref : torch.Tensor or numpy.ndarray
        Reference waveform, shape (T,).
    est : torch.Tensor or numpy.ndarray
        Estimated waveform, shape (T',); both are cut to min(T, T').
    sample_rate : int
        Rate of both signals in Hz.

    Returns
    -------
    float
        MOS-LQO in about [1.0, 4.64]; NaN (with a warning) when PESQ
        rejects the input (silent, or shorter than 1/4 s).

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("pesq")  # the [eval] extra
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.standard_normal(16000) * np.hanning(16000)
    >>> round(pesq_wb(ref, ref, 16000), 2)
    4.64
    """
    return _pesq(ref, est, sample_rate, "wb", PESQ_WB_RATE)


@functools.lru_cache(maxsize=8)
def _mel_transform(sample_rate, n_fft, hop_length, n_mels):
    """Builds (once per setting) the magnitude mel filterbank transform."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        power=1.0,
    )


def mel_distance(ref, est, sample_rate, n_mels=80, n_fft=1024, hop_length=256, clamp_min=1e-5):
    """Mean absolute difference of log10 mel spectrograms.

    The settings follow the HiFi-GAN/Vocos mel (80 bands, 1024-point Hann
    STFT, hop 256, magnitude not power, floor 1e-5 before the log), with
    torchaudio's defaults otherwise: HTK mel scale from 0 Hz to the Nyquist
    rate, unnormalised filters, centred frames. The floor sets how much
    near-silent bins count: differences below -100 dB are ignored. Bands
    span 0 to sample_rate / 2, so compare only numbers at the same rate.

    Arguments
    ---------
    ref : torch.Tensor or numpy.ndarray
        Reference waveform, shape (T,).
    est : torch.Tensor or numpy.ndarray
        Estimated waveform, shape (T',); both are cut to min(T, T').
    sample_rate : int
        Rate of both signals in Hz.
    n_mels : int
        Number of mel bands.
    n_fft : int
        STFT size (also the window length).
    hop_length : int
        STFT hop in samples.
    clamp_min : float
        Floor applied to the mel magnitudes before log10.

    Returns
    -------
    float
        Mean |log10 mel(ref) - log10 mel(est)| over bands and frames
        (0 for identical signals).

    Example
    -------
    >>> ref = torch.sin(2 * math.pi * 220 * torch.linspace(0, 1, 16000))
    >>> mel_distance(ref, ref, 16000)
    0.0
    >>> round(mel_distance(ref, 0.1 * ref, 16000), 3)
    1.0
    """
    ref, est = _align(ref, est)
    mel = _mel_transform(sample_rate, n_fft, hop_length, n_mels)
    signals = torch.from_numpy(np.stack([ref, est])).float()
    with torch.no_grad():
        log_mel = torch.log10(mel(signals).clamp(min=clamp_min))  # (2, n_mels, frames)
    return float((log_mel[0] - log_mel[1]).abs().mean())


# Name -> function taking (ref, est, sample_rate); compute_all's vocabulary.
METRICS = {
    "si_sdr": lambda ref, est, sample_rate: si_sdr(ref, est),
    "stoi": stoi,
    "pesq_nb": pesq_nb,
    "pesq_wb": pesq_wb,
    "mel_distance": mel_distance,
}


def compute_all(ref, est, sample_rate, which=None):
    """Computes several reconstruction metrics at once.

    A metric whose optional package is missing raises ImportError rather
    than vanishing from the result, so tables stay comparable; pass
    ``which`` to run only the torch-only metrics.

    Arguments
    ---------
    ref : torch.Tensor or numpy.ndarray
        Reference waveform, shape (T,).
    est : torch.Tensor or numpy.ndarray
        Estimated waveform, shape (T',); both are cut to min(T, T').
    sample_rate : int
        Rate of both signals in Hz.
    which : list of str, optional
        Names from ``METRICS`` (default: all of them, in that order).

    Returns
    -------
    dict
        Metric name -> float.

    Example
    -------
    >>> ref = torch.sin(2 * math.pi * 220 * torch.linspace(0, 1, 16000))
    >>> compute_all(ref, ref[:-399], 16000, which=["si_sdr", "mel_distance"])
    {'si_sdr': inf, 'mel_distance': 0.0}
    """
    names = list(METRICS) if which is None else list(which)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    # Convert and trim once instead of in every metric.
    ref, est = _align(ref, est)
    return {name: METRICS[name](ref, est, sample_rate) for name in names}


def token_bitrate(token_rate_hz, codebook_size, num_codebooks=1):
    """Bits per second of a token stream with fixed-size codebooks.

    Arguments
    ---------
    token_rate_hz : float
        Tokens per second per codebook (BiCodec semantic tokens: 50).
    codebook_size : int
        Number of codes per codebook (BiCodec semantic codebook: 8192).
    num_codebooks : int
        Parallel codebooks (1 for BiCodec's semantic stream).

    Returns
    -------
    float
        ``token_rate_hz * num_codebooks * log2(codebook_size)``.

    Example
    -------
    >>> token_bitrate(50, 8192)
    650.0
    """
    return float(token_rate_hz * num_codebooks * math.log2(codebook_size))


def codebook_usage(token_ids, codebook_size):
    """Statistics of how evenly a set of tokens covers the codebook.

    Arguments
    ---------
    token_ids : torch.Tensor, numpy.ndarray or list of int
        Token ids of any shape (flattened), each in [0, codebook_size).
    codebook_size : int
        Number of codes in the codebook.

    Returns
    -------
    dict
        ``used_codes`` (int, codes seen at least once), ``usage_fraction``
        (used_codes / codebook_size), ``entropy_bits`` (entropy of the
        empirical code distribution, at most log2(codebook_size)) and
        ``perplexity`` (2 ** entropy_bits, the effective number of codes).

    Example
    -------
    >>> usage = codebook_usage(torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]]), 8)
    >>> usage["used_codes"], usage["usage_fraction"], usage["entropy_bits"]
    (4, 0.5, 2.0)
    >>> usage["perplexity"]
    4.0
    """
    if isinstance(token_ids, torch.Tensor):
        token_ids = token_ids.detach().cpu().numpy()
    ids = np.asarray(token_ids).reshape(-1)
    if ids.size == 0:
        raise ValueError("codebook_usage needs at least one token")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= codebook_size:
        raise ValueError(
            f"token ids must lie in [0, {codebook_size}), got [{ids.min()}, {ids.max()}]"
        )
    counts = np.bincount(ids, minlength=codebook_size)
    probs = counts[counts > 0] / ids.size
    entropy = float(-(probs * np.log2(probs)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    used = int((counts > 0).sum())
    return {
        "used_codes": used,
        "usage_fraction": used / codebook_size,
        "perplexity": float(2.0**entropy),
        "entropy_bits": entropy,
    }
