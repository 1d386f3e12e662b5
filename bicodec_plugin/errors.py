"""Errors raised for bad arguments, so that callers can catch them by kind.

Every argument error is a ``ValueError`` (dtype errors are also a
``TypeError``) whose message names the argument and, in a batch, the item.
Files and folders have their own errors, each naming the file:
:class:`~bicodec_plugin.formats.weights.ReleaseLoadError` (release and exported
folders, weight files), :class:`~bicodec_plugin.codec.audio.AudioLoadError`
(audio files), :class:`~bicodec_plugin.training.data.ManifestError`
(``<file>:<line>`` of a manifest) and :class:`TokenStoreError` (token store).

Example
-------
>>> issubclass(LengthsError, ValueError), issubclass(TokenTypeError, TypeError)
(True, True)

Authors
 * BiCodec plugin authors 2026
"""


class BiCodecInputError(ValueError):
    """An argument the tokenizer cannot use; the message names it."""


class AudioInputError(BiCodecInputError):
    """A waveform argument of the wrong type, shape, dtype or content."""


class LengthsError(BiCodecInputError):
    """``wav_lens`` or ``semantic_lens`` that do not describe the batch."""


class TokenError(BiCodecInputError):
    """Token ids of the wrong shape, count or range."""


class TokenTypeError(TokenError, TypeError):
    """Token ids that are not integers (floats, bools, strings)."""


class TokenStringError(TokenError):
    """A Spark-TTS LLM token string that does not parse (names the character offset)."""


class TokenStoreError(RuntimeError):
    """A token-store file (``meta.json``, a chunk) that cannot be read (names it)."""


class CorruptChunkError(TokenStoreError):
    """A token-store chunk file that cannot be read back (names the chunk)."""
