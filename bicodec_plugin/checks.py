"""Argument checks of :class:`~bicodec_plugin.inference.BiCodecTokenizer`, done once at its entry.

Each function turns what a user may pass (tensors, numpy arrays, lists) into
one form, or raises an error of :mod:`bicodec_plugin.errors` that names the
argument and the item: :func:`waveform_batch` (audio and ``wav_lens`` ->
samples per item), :func:`token_batch` (global and semantic tokens and
``semantic_lens``) and :func:`parse_llm_string` (Spark-TTS LLM strings).

Authors
 * BiCodec plugin authors 2026
"""

import re

import numpy as np
import torch

from bicodec_plugin.errors import (
    AudioInputError,
    LengthsError,
    TokenError,
    TokenStringError,
    TokenTypeError,
)

INT64_MAX = 2**63 - 1
# Relative lengths computed in float32 may exceed 1 by a rounding error.
REL_TOLERANCE = 1e-6


# ----------------------------------------------------------------------- audio
def waveform_batch(wavs, wav_lens=None):
    """Audio and optional relative lengths -> ``(wavs (B, N), samples per item)``.

    Arguments
    ---------
    wavs : torch.Tensor, numpy.ndarray or list
        Floating-point audio: (N,) one utterance, (B, N) a padded batch,
        (B, 1, N) a batch with a channel axis, or a list of 1-D utterances of
        any lengths (padded here; their sizes give the lengths).
    wav_lens : torch.Tensor, numpy.ndarray or list, optional
        SpeechBrain relative lengths in (0, 1], one per item ((B,) or (B, 1)).

    Returns
    -------
    wavs : torch.Tensor
        (B, N), floating point.
    lengths : list of int
        Valid samples per item, each in [1, N].

    Raises
    ------
    AudioInputError
        Not audio, integer samples, a bad shape, an empty batch, or NaN/inf
        inside an item's valid samples (names the item).
    LengthsError
        ``wav_lens`` of the wrong size, or a value outside (0, 1] (names the item).

    Example
    -------
    >>> wavs, lengths = waveform_batch(torch.zeros(2, 100), [1.0, 0.5])
    >>> tuple(wavs.shape), lengths
    ((2, 100), [100, 50])
    >>> waveform_batch([torch.zeros(30), torch.zeros(20)])[1]
    [30, 20]
    >>> waveform_batch(torch.zeros(2, 100), [1.0])
    Traceback (most recent call last):
    ...
    bicodec_plugin.errors.LengthsError: wav_lens has 1 entries for 2 items: give one relative length per item, shape (2,)
    """
    if _is_list_of_utterances(wavs):
        if wav_lens is not None:
            raise LengthsError(
                "wav_lens must be None when wavs is a list of utterances: their sizes "
                "give the lengths"
            )
        items = [_as_audio(w, f"wavs[{i}]") for i, w in enumerate(wavs)]
        for i, item in enumerate(items):
            if item.dim() != 1:
                raise AudioInputError(
                    f"wavs[{i}] has shape {tuple(item.shape)}: a list of utterances needs "
                    "1-D waveforms"
                )
        lengths = [int(item.shape[0]) for item in items]
        if min(lengths) == 0:
            raise AudioInputError(f"wavs[{lengths.index(0)}] is empty")
        out = items[0].new_zeros(len(items), max(lengths))
        for i, item in enumerate(items):
            out[i, : lengths[i]] = item
        _check_finite(out, lengths)
        return out, lengths
    wavs = _as_audio(wavs, "wavs")
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)
    elif wavs.dim() == 3 and wavs.shape[1] == 1:
        wavs = wavs[:, 0]
    elif wavs.dim() != 2:
        raise AudioInputError(
            f"wavs has shape {tuple(wavs.shape)}: expected (N,), (B, N) or (B, 1, N) "
            "(one channel; mix or pick a channel first)"
        )
    batch, num_samples = wavs.shape
    if batch == 0 or num_samples == 0:
        raise AudioInputError(f"input audio is empty (shape {tuple(wavs.shape)})")
    lengths = relative_to_samples(wav_lens, batch, num_samples)
    _check_finite(wavs, lengths)
    return wavs, lengths


def relative_to_samples(wav_lens, batch, num_samples, name="wav_lens"):
    """SpeechBrain relative lengths -> valid samples per item, checked.

    Arguments
    ---------
    wav_lens : array-like or None
        One value in (0, 1] per item; ``None``: every item is whole.
    batch : int
        Items in the batch.
    num_samples : int
        Padded length N.
    name : str
        Argument name for messages.

    Returns
    -------
    list of int
        ``round(wav_lens * N)``, each in [1, N].

    Example
    -------
    >>> relative_to_samples([1.0, 0.25], 2, 8)
    [8, 2]
    >>> relative_to_samples([1.0, -0.5], 2, 8)
    Traceback (most recent call last):
    ...
    bicodec_plugin.errors.LengthsError: wav_lens[1] = -0.5: relative lengths must lie in (0, 1]
    """
    if wav_lens is None:
        return [num_samples] * batch
    values = _as_per_item(
        wav_lens, batch, name, f"give one relative length per item, shape ({batch},)"
    )
    if values.dtype == torch.bool or values.is_complex():
        raise LengthsError(f"{name} must be real numbers, got {values.dtype}")
    values = values.double()
    lengths = []
    for i, value in enumerate(values.tolist()):
        if not np.isfinite(value) or value <= 0 or value > 1 + REL_TOLERANCE:
            hint = ""
            if np.isfinite(value) and value > 1:
                hint = f" (absolute lengths? divide them by the padded length {num_samples})"
            raise LengthsError(
                f"{name}[{i}] = {value:g}: relative lengths must lie in (0, 1]{hint}"
            )
        samples = min(round(value * num_samples), num_samples)
        if samples < 1:
            raise LengthsError(
                f"{name}[{i}] = {value:g} rounds to 0 of {num_samples} (less than one step)"
            )
        lengths.append(samples)
    return lengths


def _is_list_of_utterances(wavs):
    """A list/tuple whose elements are arrays (not numbers)."""
    if not isinstance(wavs, (list, tuple)) or not wavs:
        return False
    return all(isinstance(w, (torch.Tensor, np.ndarray, list, tuple)) for w in wavs) and any(
        isinstance(w, (torch.Tensor, np.ndarray)) for w in wavs
    )


def _as_audio(wavs, name):
    """Any array-like -> floating tensor, refusing integers, bools and complex numbers."""
    if isinstance(wavs, np.ndarray) and wavs.dtype.kind in "fc" and not wavs.flags.writeable:
        wavs = wavs.copy()  # torch.as_tensor warns on read-only arrays
    try:
        wavs = torch.as_tensor(wavs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise AudioInputError(f"{name} is not an array of audio samples ({err})") from None
    if not wavs.dtype.is_floating_point:
        hint = " (16-bit PCM: divide by 32768)" if wavs.dtype == torch.int16 else ""
        raise AudioInputError(f"{name} must hold floating-point samples, got {wavs.dtype}{hint}")
    return wavs


def _check_finite(wavs, lengths):
    for i, length in enumerate(lengths):
        if not torch.isfinite(wavs[i, :length]).all():
            raise AudioInputError(f"input audio item {i} holds NaN or infinite samples")


# ---------------------------------------------------------------------- tokens
def token_batch(
    global_tokens,
    semantic_tokens,
    semantic_lens=None,
    token_num=32,
    global_codebook_size=4096,
    semantic_codebook_size=8192,
):
    """Tokens and optional counts -> ``(global (B, token_num), semantic (B, T), lens (B,))`` int64.

    Accepts tensors, numpy arrays and lists of any integer dtype; one
    utterance may come as 1-D global ``(token_num,)`` and semantic ``(T,)``
    (the token store's shapes). Semantic ids past an item's length are
    padding and are not checked.

    Arguments
    ---------
    global_tokens : array-like
        ``(token_num,)``, ``(B, token_num)`` or ``(B, 1, token_num)``.
    semantic_tokens : array-like
        ``(T,)`` or ``(B, T)``; T may be 0.
    semantic_lens : array-like, optional
        Valid tokens per item, integers in [0, T], ``(B,)`` or ``(B, 1)``.
    token_num : int
        Global tokens per utterance.
    global_codebook_size, semantic_codebook_size : int
        Ids must lie in [0, size).

    Returns
    -------
    global_tokens : torch.Tensor
        (B, token_num) int64.
    semantic_tokens : torch.Tensor
        (B, T) int64.
    semantic_lens : torch.Tensor
        (B,) int64, on the CPU.

    Raises
    ------
    TokenTypeError
        Non-integer ids (floats, bools).
    TokenError
        Wrong shapes or counts, differing batch sizes, ids out of range.
    LengthsError
        ``semantic_lens`` of the wrong size, not whole numbers, or outside [0, T].

    Example
    -------
    >>> g, s, n = token_batch(torch.zeros(32, dtype=torch.uint8), [5, 6, 7])
    >>> tuple(g.shape), s.tolist(), n.tolist(), g.dtype
    ((1, 32), [[5, 6, 7]], [3], torch.int64)
    >>> token_batch(torch.zeros(2, 32, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), [4, 9])
    Traceback (most recent call last):
    ...
    bicodec_plugin.errors.LengthsError: semantic_lens[1] = 9: must lie in [0, 4] (the semantic tokens hold 4 per item)
    """
    glob = _as_int_tokens(global_tokens, "global_tokens")
    sem = _as_int_tokens(semantic_tokens, "semantic_tokens")
    if sem.dim() == 1:
        sem = sem.unsqueeze(0)
    elif sem.dim() != 2:
        raise TokenError(f"semantic_tokens has shape {tuple(sem.shape)}: expected (T,) or (B, T)")
    if glob.dim() == 1:
        glob = glob.unsqueeze(0)
    elif glob.dim() == 3 and glob.shape[1] == 1:
        glob = glob[:, 0]
    if glob.dim() != 2 or glob.shape[-1] != token_num:
        raise TokenError(
            f"BiCodec needs exactly {token_num} global tokens per utterance, got "
            f"global_tokens of shape {tuple(glob.shape)} (expected ({token_num},), "
            f"(B, {token_num}) or (B, 1, {token_num}))"
        )
    if glob.shape[0] != sem.shape[0]:
        raise TokenError(f"batch sizes differ: {glob.shape[0]} global vs {sem.shape[0]} semantic")
    batch, num_tokens = sem.shape
    if batch == 0:
        raise TokenError("the token batch is empty (0 utterances)")
    lens = token_counts(semantic_lens, batch, num_tokens)
    _check_range(glob, None, global_codebook_size, "global")
    _check_range(sem, lens, semantic_codebook_size, "semantic")
    return glob, sem, lens


def token_counts(semantic_lens, batch, num_tokens, name="semantic_lens"):
    """Valid tokens per item, whole numbers in [0, T], as a CPU int64 tensor (B,).

    Example
    -------
    >>> token_counts(None, 2, 5).tolist(), token_counts([5.0, 2.0], 2, 5).tolist()
    ([5, 5], [5, 2])
    """
    if semantic_lens is None:
        return torch.full((batch,), num_tokens, dtype=torch.long)
    values = _as_per_item(
        semantic_lens, batch, name, f"give one token count per item, shape ({batch},)"
    )
    if values.dtype == torch.bool or values.is_complex():
        raise LengthsError(f"{name} must be whole numbers of tokens, got {values.dtype}")
    values = values.cpu()
    if values.dtype.is_floating_point:
        whole = torch.isfinite(values) & (values == values.round())
        if not whole.all():
            i = int((~whole).nonzero()[0, 0])
            raise LengthsError(
                f"{name}[{i}] = {float(values[i]):g}: token counts must be whole numbers "
                f"(relative lengths? multiply them by T = {num_tokens} and round)"
            )
    values = values.long()
    for i, value in enumerate(values.tolist()):
        if not 0 <= value <= num_tokens:
            raise LengthsError(
                f"{name}[{i}] = {value}: must lie in [0, {num_tokens}] (the semantic "
                f"tokens hold {num_tokens} per item)"
            )
    return values


def _as_per_item(values, batch, name, what):
    """One value per item: (B,) or (B, 1) array-like -> 1-D tensor, or LengthsError."""
    try:
        values = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise LengthsError(f"{name} is not an array of numbers ({err})") from None
    if values.dim() == 0:
        values = values.reshape(1)
    elif values.dim() == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.dim() != 1:
        raise LengthsError(f"{name} has shape {tuple(values.shape)}: {what}")
    if values.shape[0] != batch:
        raise LengthsError(f"{name} has {values.shape[0]} entries for {batch} items: {what}")
    return values


def _as_int_tokens(tokens, name):
    """Any array-like of ids -> int64 tensor, refusing floats, bools and strings."""
    try:
        tokens = torch.as_tensor(tokens)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TokenTypeError(f"{name} is not an array of integer ids ({err})") from None
    if tokens.dtype == torch.bool:
        raise TokenTypeError(f"{name} are bool: token ids must be integers")
    if tokens.dtype.is_floating_point or tokens.is_complex():
        raise TokenTypeError(f"{name} must be integers, got {tokens.dtype}")
    return tokens.long()


def _check_range(tokens, lens, size, kind):
    """Ids in [0, size) (within each item's length when ``lens`` is given)."""
    if tokens.numel() == 0:
        return
    bad = (tokens < 0) | (tokens >= size)
    if lens is not None:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        bad &= positions[None, :] < lens.to(tokens.device)[:, None]
    if bad.any():
        item, pos = (int(x) for x in bad.nonzero()[0])
        values = tokens[bad]
        raise TokenError(
            f"{kind} token ids must lie in [0, {size}); got min {int(values.min())}, "
            f"max {int(values.max())} (first at item {item}, position {pos})"
        )


# ------------------------------------------------------------------ LLM string
_TAG_START = re.compile(r"<\|bicodec_")
_TAG = re.compile(r"<\|bicodec_(global|semantic)_(0|[1-9][0-9]*)\|>")
_LENIENT_TAG = re.compile(r"<\|bicodec_(global|semantic)_(\d+)\|>")


def parse_llm_string(text, num_global=32, strict=True):
    """Global and semantic ids of a Spark-TTS LLM string.

    Text other than ``<|bicodec_...|>`` tags (``<|start_global_token|>``,
    ``<|im_end|>``...) is ignored.

    Arguments
    ---------
    text : str
        The string.
    num_global : int or None
        Global tokens the string must hold (32; 0 for the semantic-only
        output of voice cloning, whose speaker comes from the prompt;
        ``None``: any number).
    strict : bool
        Refuse every ``<|bicodec_`` tag that is not exactly
        ``<|bicodec_global_N|>`` or ``<|bicodec_semantic_N|>`` (N without
        sign or leading zeros), a global token after a semantic one, and a
        global count other than ``num_global``. ``False``: keep the
        well-formed tags wherever they are and skip the rest (the count is
        not checked).

    Returns
    -------
    global_ids : list of int
    semantic_ids : list of int

    Raises
    ------
    TokenStringError
        Naming the character offset of the first problem.

    Example
    -------
    >>> parse_llm_string("<|bicodec_global_3|><|bicodec_semantic_9|>", num_global=1)
    ([3], [9])
    >>> parse_llm_string("<|bicodec_semantic_9|><|bicodec_global_3|>", num_global=1)
    Traceback (most recent call last):
    ...
    bicodec_plugin.errors.TokenStringError: global token at character 22 follows semantic tokens: a Spark-TTS string gives all global tokens first
    """
    if not isinstance(text, str):
        raise TokenStringError(f"expected a str, got {type(text).__name__}")
    glob, sem = [], []
    if not strict:
        for match in _LENIENT_TAG.finditer(text):
            value = _token_id(match.group(2), match.start())
            (glob if match.group(1) == "global" else sem).append(value)
        return glob, sem
    for start in _TAG_START.finditer(text):
        pos = start.start()
        match = _TAG.match(text, pos)
        if match is None:
            end = text.find(">", pos)
            snippet = text[pos : end + 1 if 0 <= end < pos + 60 else pos + 40]
            raise TokenStringError(
                f"malformed BiCodec token at character {pos}: {snippet!r} (expected "
                "<|bicodec_global_N|> or <|bicodec_semantic_N|>, N a non-negative integer "
                "without leading zeros)"
            )
        value = _token_id(match.group(2), pos)
        if match.group(1) == "global":
            if sem:
                raise TokenStringError(
                    f"global token at character {pos} follows semantic tokens: a Spark-TTS "
                    "string gives all global tokens first"
                )
            glob.append(value)
        else:
            sem.append(value)
    if num_global is not None and len(glob) != num_global:
        hint = ""
        if not glob:
            hint = " (a semantic-only string, e.g. voice cloning output: pass num_global=0)"
        raise TokenStringError(f"expected {num_global} global tokens, found {len(glob)}{hint}")
    return glob, sem


def _token_id(digits, pos):
    value = int(digits)
    if value > INT64_MAX:
        raise TokenStringError(f"token id {digits} at character {pos} does not fit in int64")
    return value
