"""Offline stand-in for DASB's Tokotron evaluators (UTMOS and Whisper come from the HF hub).

Same call as DASB's ``utils.eval.SpeechEvaluator.evaluate``; it reports what needs no
model: duration, RMS level and whether every sample is finite. Used by
``hparams/eval.yaml`` in the end-to-end check only.

Authors
 * BiCodec plugin authors 2026
"""

from collections import namedtuple

import torch

SpeechEvaluationResult = namedtuple("SpeechEvaluationResult", ["score", "details"])


class SignalStats:
    """Per-item duration (s), RMS and finiteness of generated speech.

    Arguments
    ---------
    run_opts : dict, optional
        Passed by DASB's evaluator (unused).

    Example
    -------
    >>> result = SignalStats().evaluate(torch.ones(2, 16000), torch.tensor([1.0, 0.5]))
    >>> result.details["duration"].tolist(), result.details["rms"].tolist()
    ([1.0, 0.5], [1.0, 1.0])
    """

    def __init__(self, run_opts=None):
        self.run_opts = run_opts or {}

    def evaluate(self, wavs, length, text=None, wavs_ref=None, length_ref=None, **kwargs):
        """Evaluates a batch of generated waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            (B, T) audio.
        length : torch.Tensor
            (B,) relative lengths.
        text, wavs_ref, length_ref
            Ignored (DASB passes them).
        **kwargs
            ``sample_rate`` (default 16000); others ignored.

        Returns
        -------
        SpeechEvaluationResult
            ``score``: RMS; ``details``: duration, rms, finite, each (B,).
        """
        sample_rate = kwargs.get("sample_rate") or 16000
        n = (length * wavs.shape[1]).round().long()
        inside = torch.arange(wavs.shape[1], device=wavs.device)[None] < n[:, None]
        rms = ((wavs * inside) ** 2).sum(1).div(n.clamp(min=1)).sqrt()
        details = {
            "duration": n.float() / sample_rate,
            "rms": rms,
            "finite": torch.isfinite(wavs).all(dim=1).float(),
        }
        return SpeechEvaluationResult(score=rms, details=details)
