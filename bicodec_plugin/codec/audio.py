"""Audio loading and the length arithmetic of BiCodec.

Everything here reproduces what the reference tokenizer does before any
network runs: first channel, soxr "VHQ" resampling, volume normalisation
(numpy, float64, as the reference), and the 6 s reference-clip rule.

Authors
 * BiCodec plugin authors 2026
"""

import math
import os

import numpy as np
import soundfile
import soxr
import torch

# wav2vec2 XLS-R conv stack: receptive field 400 samples, stride 320 at 16 kHz.
SSL_SAMPLE_RATE = 16000
SSL_RECEPTIVE_FIELD = 400
SSL_HOP = 320


class AudioLoadError(RuntimeError):
    """Raised when an audio file cannot be used; the message names the file."""


def resample(audio, orig_sr, target_sr):
    """Resamples a 1-D float array with soxr at "VHQ" quality (as the reference).

    Arguments
    ---------
    audio : numpy.ndarray
        Samples, shape (N,).
    orig_sr : int
        Rate of ``audio``.
    target_sr : int
        Wanted rate.

    Returns
    -------
    numpy.ndarray
        Resampled samples (same dtype as the input).

    Example
    -------
    >>> resample(np.zeros(22050), 22050, 16000).shape
    (16000,)
    """
    if orig_sr == target_sr:
        return audio
    return soxr.resample(audio, orig_sr, target_sr, quality="VHQ")


def volume_normalize(audio, coeff=0.2):
    """Scales speech to a standard loudness, exactly as the reference does.

    The gain comes from the mean of the 90th-99th percentile of the sample
    magnitudes above 0.01 (taken before the optional quiet-signal boost,
    a quirk of the reference that we keep), clipped to [0.1, 10].

    Arguments
    ---------
    audio : numpy.ndarray
        Samples, shape (N,).
    coeff : float
        Target level of the loud part of the signal.

    Returns
    -------
    numpy.ndarray
        Normalised samples, peak at most 1.

    Example
    -------
    >>> x = 0.5 * np.sin(np.linspace(0, 100, 16000))
    >>> y = volume_normalize(x)
    >>> bool(np.abs(y).max() <= 1.0)
    True
    """
    magnitudes = np.sort(np.abs(audio))
    if magnitudes.size == 0:
        return audio
    if magnitudes[-1] < 0.1:
        audio = audio / max(magnitudes[-1], 1e-3) * 0.1
    # Statistics of the signal before the boost above (reference behaviour).
    loud = magnitudes[magnitudes > 0.01]
    count = loud.shape[0]
    if count <= 10:
        return audio
    volume = np.mean(loud[int(0.9 * count) : int(0.99 * count)])
    audio = audio * np.clip(coeff / volume, a_min=0.1, a_max=10)
    peak = np.max(np.abs(audio))
    if peak > 1:
        audio = audio / peak
    return audio


def read_audio_array(path):
    """First channel of a file as float64 numpy, with its rate; checked.

    Arguments
    ---------
    path : str
        Any file soundfile reads.

    Returns
    -------
    audio : numpy.ndarray
        (N,) float64.
    sample_rate : int
        Rate of the file.

    Raises
    ------
    AudioLoadError
        When the file is missing, unreadable, empty or holds NaN/inf.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> soundfile.write(path, np.zeros((800, 2)), 8000)
    >>> audio, sr = read_audio_array(path)
    >>> audio.shape, audio.dtype, sr
    ((800,), dtype('float64'), 8000)
    """
    if not os.path.isfile(path):
        raise AudioLoadError(f"{path}: no such audio file")
    try:
        audio, sr = soundfile.read(path, dtype="float64", always_2d=True)
    except Exception as err:  # soundfile raises several types
        raise AudioLoadError(f"{path}: cannot read audio ({err})") from err
    audio = audio[:, 0]
    if audio.size == 0:
        raise AudioLoadError(f"{path}: the file holds no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioLoadError(f"{path}: the audio holds NaN or infinite samples")
    return audio, sr


def read_audio_file(path, sample_rate, volume_norm=True):
    """Loads a file as the reference tokenizer does.

    First channel only, soxr "VHQ" resampling to ``sample_rate`` and, when
    ``volume_norm``, volume normalisation. Computation is in float64 and
    the result is float32, like the reference.

    Arguments
    ---------
    path : str
        Audio file readable by soundfile.
    sample_rate : int
        Rate of the returned signal.
    volume_norm : bool
        Whether to apply :func:`volume_normalize`.

    Returns
    -------
    torch.Tensor
        Waveform, shape (N,), float32.

    Raises
    ------
    AudioLoadError
        When the file is missing, unreadable, empty or holds NaN/inf.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> soundfile.write(path, 0.1 * np.random.randn(8000), 8000)
    >>> read_audio_file(path, 16000).shape
    torch.Size([16000])
    """
    audio, sr = read_audio_array(path)
    audio = prepare_audio(audio, sr, sample_rate, volume_norm)
    return torch.from_numpy(np.ascontiguousarray(audio)).float()


def prepare_audio(audio, sample_rate, target_rate, volume_norm=True):
    """The reference's input processing: soxr "VHQ" resampling, then volume normalisation.

    Arguments
    ---------
    audio : numpy.ndarray
        (N,) float64.
    sample_rate : int
        Rate of ``audio``.
    target_rate : int
        Rate of the result.
    volume_norm : bool
        Whether to apply :func:`volume_normalize`.

    Returns
    -------
    numpy.ndarray
        (N',) float64.

    Example
    -------
    >>> prepare_audio(0.1 * np.ones(8000), 8000, 16000).shape
    (16000,)
    """
    audio = resample(audio, sample_rate, target_rate)
    return volume_normalize(audio) if volume_norm else audio


def check_waveform(wav, name="waveform"):
    """Raises ``ValueError`` if a waveform is empty or not finite.

    Arguments
    ---------
    wav : torch.Tensor
        Any shape.
    name : str
        How to call it in the message.

    Example
    -------
    >>> check_waveform(torch.zeros(3))
    """
    if wav.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(wav).all():
        raise ValueError(f"{name} holds NaN or infinite samples")


def reference_clip_length(sample_rate, hop_length, duration=6.0):
    """Samples in the speaker reference clip: ``duration`` s rounded down to the hop.

    Example
    -------
    >>> reference_clip_length(16000, 320)
    96000
    >>> reference_clip_length(24000, 480)
    144000
    """
    return int(sample_rate * duration) // hop_length * hop_length


def reference_clip(wav, length):
    """The first ``length`` samples, the whole signal tiled first if shorter.

    Works on the last axis, so (N,) and (B, N) both work.

    Arguments
    ---------
    wav : torch.Tensor
        Waveform, shape (..., N).
    length : int
        Wanted length.

    Returns
    -------
    torch.Tensor
        Shape (..., length).

    Example
    -------
    >>> reference_clip(torch.arange(4.0), 10)
    tensor([0., 1., 2., 3., 0., 1., 2., 3., 0., 1.])
    """
    n = wav.shape[-1]
    if n == 0:
        raise ValueError("cannot build a reference clip from an empty waveform")
    if length > n:
        # floor(length / n) + 1 copies, as the reference tokenizer.
        repeats = [1] * (wav.dim() - 1) + [length // n + 1]
        wav = wav.repeat(*repeats)
    return wav[..., :length]


def ssl_num_frames(num_samples):
    """wav2vec2 frames for ``num_samples`` 16 kHz samples: floor((N-400)/320)+1.

    Example
    -------
    >>> ssl_num_frames(16000)
    49
    >>> ssl_num_frames(399)
    0
    """
    if num_samples < SSL_RECEPTIVE_FIELD:
        return 0
    return (num_samples - SSL_RECEPTIVE_FIELD) // SSL_HOP + 1


def ssl_num_frames_tensor(num_samples):
    """Vectorised :func:`ssl_num_frames` for a tensor of lengths.

    Example
    -------
    >>> ssl_num_frames_tensor(torch.tensor([16000, 399]))
    tensor([49,  0])
    """
    frames = torch.div(num_samples - SSL_RECEPTIVE_FIELD, SSL_HOP, rounding_mode="floor") + 1
    return frames.clamp(min=0)


def duration_of(num_samples, sample_rate):
    """Seconds in ``num_samples`` samples, rounded up to the microsecond.

    Example
    -------
    >>> duration_of(24000, 16000)
    1.5
    """
    return math.ceil(num_samples / sample_rate * 1e6) / 1e6
