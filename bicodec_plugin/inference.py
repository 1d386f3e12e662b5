"""``speechbrain.inference`` interface for BiCodec: audio <-> tokens.

Authors
 * BiCodec plugin authors 2026
"""

import contextlib
import os

import numpy as np
import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.logger import get_logger

from bicodec_plugin.checks import parse_llm_string, token_batch, waveform_batch
from bicodec_plugin.codec.audio import (
    SSL_RECEPTIVE_FIELD,
    SSL_SAMPLE_RATE,
    prepare_audio,
    read_audio_array,
    resample,
)
from bicodec_plugin.errors import AudioInputError, BiCodecInputError, TokenError, TokenTypeError
from bicodec_plugin.formats.release import load_release

GLOBAL_TOKEN = "<|bicodec_global_{}|>"
SEMANTIC_TOKEN = "<|bicodec_semantic_{}|>"
logger = get_logger(__name__)


class BiCodecTokenizer(Pretrained):
    """Tokenizes audio into BiCodec global + semantic tokens and back.

    Build it with :meth:`from_release` (a Spark-TTS release folder such as
    ``Spark-TTS-0.5B``) or ``from_hparams`` (a folder exported by training).

    Arguments
    ---------
    *args, **kwargs
        As :class:`speechbrain.inference.interfaces.Pretrained`; ``modules``
        must hold ``codec`` (a :class:`~bicodec_plugin.codec.model.BiCodec` with
        its wav2vec2 front-end attached).

    Example
    -------
    >>> tok = BiCodecTokenizer.from_release(
    ...     "../shared/reference/tiny_release", run_opts={"device": "cpu"}
    ... )  # doctest: +SKIP
    >>> glob, sem = tok.encode_file("speech.wav")  # doctest: +SKIP
    >>> wav = tok.decode(glob, sem)  # doctest: +SKIP
    """

    MODULES_NEEDED = ["codec"]
    HPARAMS_NEEDED = ["volume_normalize"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.precision in ("bf16", "fp16") and not has_native_half(
            self.device_type, self.precision
        ):
            logger.warning(
                "%s autocast was requested but this %s has no native %s support: it is "
                "emulated and many times slower than fp32",
                self.precision,
                self.device_type,
                self.precision,
            )
        if self.precision in ("bf16", "fp16"):
            # This tokenizer runs its front-end under autocast only.
            half = torch.bfloat16 if self.precision == "bf16" else torch.float16
            ssl = getattr(self.mods.codec, "ssl", None)
            if ssl is not None:
                ssl.hold_autocast_weights(half)

    @classmethod
    def from_release(
        cls,
        source,
        run_opts=None,
        fold_weight_norm=True,
        ssl_truncate=True,
        savedir=None,
        revision=None,
        mmap_weights=True,
    ):
        """Loads a Spark-TTS release: a hub id or a local folder.

        For a hub id (``"SparkAudio/Spark-TTS-0.5B"``) only the codec's files
        are fetched (``config.yaml``, ``BiCodec/`` and the wav2vec2 folder,
        not the LLM), through the hub cache; with ``HF_HUB_OFFLINE=1`` they
        come from the cache only.

        Arguments
        ---------
        source : str
            Hub id, or a folder with ``config.yaml``, ``BiCodec/`` and
            ``wav2vec2-large-xlsr-53/`` (loaded in place).
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cuda:0"}``.
        fold_weight_norm : bool
            Fold weight norm into plain weights (faster, same outputs).
        ssl_truncate : bool
            Run only the 16 wav2vec2 layers needed (``False``: all 24, the
            reference's cost; identical tokens).
        savedir : str, optional
            For a hub id: a folder that gets links to the fetched files
            (SpeechBrain's ``savedir``); default: the hub cache only.
        revision : str, optional
            For a hub id: branch, tag or commit.
        mmap_weights : bool
            Map the codec's weight file instead of copying it (see
            :func:`~bicodec_plugin.formats.release.load_release`): a
            tokenize-only process never holds the decoder's weights.
            ``False``: the reference's eager loading.

        Returns
        -------
        BiCodecTokenizer

        Raises
        ------
        ReleaseLoadError
            A file is missing or does not match, or offline and not cached
            (the message names it).
        """
        from bicodec_plugin.formats.hub import fetch_release

        folder = fetch_release(source, savedir=savedir, revision=revision)
        codec, config = load_release(
            folder, fold=fold_weight_norm, ssl_truncate=ssl_truncate, mmap_weights=mmap_weights
        )
        hparams = {
            "codec": codec,
            "volume_normalize": bool(config.get("volume_normalize", True)),
        }
        return cls(modules={"codec": codec}, hparams=hparams, run_opts=run_opts)

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", overrides=None, **kwargs):
        """Loads a folder exported by training: a hub id or a local folder.

        The folder (``hyperparams.yaml``, ``codec.safetensors``, ``wav2vec2/``)
        names its files relative to itself, so it loads the same from a path
        or, once uploaded, from a hub id (through the hub cache, or only from
        it with ``HF_HUB_OFFLINE=1``); plain ``Pretrained.from_hparams`` loads
        it too. Weight norm is folded here.

        Arguments
        ---------
        source : str
            Hub id or local folder written by
            :func:`bicodec_plugin.formats.export.export_codec`.
        hparams_file : str
            Name of the hyperparams file.
        overrides : dict, optional
            HyperPyYAML overrides.
        **kwargs
            Passed to ``Pretrained.from_hparams`` (``run_opts``, ``savedir``,
            ``fetch_config``...).

        Returns
        -------
        BiCodecTokenizer

        Raises
        ------
        ReleaseLoadError
            A file is missing, or offline and not cached (the message names it).
        """
        from bicodec_plugin.codec.lobes.layers import fold_weight_norm
        from bicodec_plugin.formats.hub import fetch_config_for, fetch_model_file

        kwargs["fetch_config"] = fetch_config_for(kwargs.get("fetch_config"))
        folder = os.path.abspath(source) if os.path.isdir(source) else source
        # First the yaml alone: a missing or uncached one is named in the error.
        fetch_model_file(
            folder, hparams_file, kwargs.get("savedir"), fetch_config=kwargs["fetch_config"]
        )
        tokenizer = super().from_hparams(
            folder, hparams_file=hparams_file, overrides=overrides or {}, **kwargs
        )
        fold_weight_norm(tokenizer.mods.codec)
        return tokenizer

    @property
    def codec(self):
        """The underlying :class:`~bicodec_plugin.codec.model.BiCodec`."""
        return self.mods.codec

    @property
    def sample_rate(self):
        """Audio rate of the model (input and output)."""
        return self.codec.sample_rate

    @property
    def token_rate(self):
        """Semantic tokens per second (50)."""
        return self.sample_rate / self.codec.hop_length

    @property
    def hop_length(self):
        """Output samples per semantic token."""
        return self.codec.hop_length

    # ----------------------------------------------------------------- encode
    def _prepare(self, audio, sample_rate, normalize):
        """One utterance (float64 numpy) -> (model-rate tensor, 16 kHz tensor).

        Resampling (soxr VHQ) and volume normalisation run in float64, as
        the reference does; the 16 kHz copy is resampled from the normalised
        model-rate signal.
        """
        audio = prepare_audio(audio, sample_rate, self.sample_rate, normalize)
        model_wav = torch.from_numpy(np.ascontiguousarray(audio)).float()
        if self.sample_rate == SSL_SAMPLE_RATE:
            return model_wav, model_wav
        ssl = resample(audio, self.sample_rate, SSL_SAMPLE_RATE)
        return model_wav, torch.from_numpy(np.ascontiguousarray(ssl)).float()

    def load_file(self, path):
        """Reads a file once: (model-rate wav, 16 kHz wav), ready for :meth:`tokenize_prepared`.

        Raises
        ------
        AudioLoadError
            Missing, unreadable, empty or non-finite audio (names the file).
        """
        if not isinstance(path, (str, os.PathLike)):
            raise AudioInputError(f"path must be a file path, got {type(path).__name__}")
        audio, sample_rate = read_audio_array(path)
        return self._prepare(audio, sample_rate, self.hparams.volume_normalize)

    def encode_batch(self, wavs, wav_lens=None, normalize=None):
        """Tokenizes a padded batch; each item's tokens equal its tokens alone.

        Arguments
        ---------
        wavs : torch.Tensor
            Floating-point audio at :attr:`sample_rate`, (B, N) (or (N,) for
            one utterance, (B, 1, N), or a list of 1-D utterances of any
            lengths); numpy arrays and lists are accepted.
        wav_lens : torch.Tensor, optional
            Relative lengths in (0, 1], (B,) (a list or numpy array too).
        normalize : bool, optional
            Apply the reference volume normalisation to each utterance
            (default: the model's config, True for the release).

        Returns
        -------
        global_tokens : torch.Tensor
            (B, 32) int64.
        semantic_tokens : torch.Tensor
            (B, T_max) int64, 0 past each item's length.
        semantic_lens : torch.Tensor
            (B,) valid semantic tokens per item.

        Raises
        ------
        AudioInputError, LengthsError
            (``ValueError``) naming the argument and the item.
        """
        # Checked once here; from here on lengths are sample counts.
        wavs, lengths = waveform_batch(wavs, wav_lens)
        if normalize is None:
            normalize = self.hparams.volume_normalize
        elif not isinstance(normalize, (bool, np.bool_)):
            raise BiCodecInputError(f"normalize must be True, False or None, got {normalize!r}")
        items = [
            self._prepare(w[:length].detach().cpu().double().numpy(), self.sample_rate, normalize)
            for w, length in zip(wavs, lengths)
        ]
        _check_min_length(items, lengths, self.sample_rate)
        return self.tokenize_prepared(items)

    @property
    def micro_batch(self):
        """Items run together inside ``encode_batch``/``decode_batch``.

        A batch only pays off where the hardware has parallel work to spare:
        on a CPU the matrix products are already compute-bound at one item
        and padding costs extra, so the default there is 1 (items run one
        after another, same results); on accelerators, everything at once.
        Set ``tok.micro_batch = n`` to choose (``None``: the device default).
        """
        if getattr(self, "_micro_batch", None) is not None:
            return self._micro_batch
        return 1 if str(self.device).startswith("cpu") else None

    @micro_batch.setter
    def micro_batch(self, value):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"micro_batch must be a positive integer or None, got {value!r}")
        self._micro_batch = None if value is None else int(value)

    def tokenize_prepared(self, items):
        """Tokenizes (model-rate, 16 kHz) pairs from :meth:`load_file`, in micro-batches.

        Returns
        -------
        global_tokens, semantic_tokens, semantic_lens
            As :meth:`encode_batch`.
        """
        size = self.micro_batch or len(items)
        if size >= len(items):
            return self._tokenize_padded(items)
        parts = [self._tokenize_padded(items[i : i + size]) for i in range(0, len(items), size)]
        glob = torch.cat([p[0] for p in parts])
        lens = torch.cat([p[2] for p in parts])
        sem = torch.zeros(len(items), int(lens.max()), dtype=torch.long, device=glob.device)
        row = 0
        for _, part_sem, _ in parts:
            sem[row : row + part_sem.shape[0], : part_sem.shape[1]] = part_sem
            row += part_sem.shape[0]
        return glob, sem, lens

    def _tokenize_padded(self, items):
        """Pads (model-rate, 16 kHz) pairs and runs the codec on them at once."""
        model_wavs, ssl_wavs = zip(*items)
        wav, lengths = _pad(model_wavs)
        ssl_wav, ssl_lengths = _pad(ssl_wavs)
        wav, ssl_wav = wav.to(self.device), ssl_wav.to(self.device)
        if len(items) == 1:
            lengths = ssl_lengths = None  # nothing padded
        with torch.inference_mode(), self.inference_ctx:
            return self.codec.tokenize_absolute(wav, ssl_wav, lengths, ssl_lengths)

    def encode_file(self, path):
        """Tokenizes one audio file exactly as the reference tokenizer does.

        Arguments
        ---------
        path : str
            Any file soundfile reads; first channel, soxr "VHQ" resampling.

        Returns
        -------
        global_tokens : torch.Tensor
            (1, 32) int64.
        semantic_tokens : torch.Tensor
            (1, T) int64.
        """
        glob, sem, _ = self.tokenize_prepared([self.load_file(path)])
        return glob, sem

    # ----------------------------------------------------------------- decode
    def decode_batch(self, global_tokens, semantic_tokens, semantic_lens=None):
        """Tokens -> waveforms.

        Arguments
        ---------
        global_tokens : torch.Tensor
            (B, 32) int (or (B, 1, 32); (32,) for one utterance). Any integer
            dtype; numpy arrays and lists are accepted.
        semantic_tokens : torch.Tensor
            (B, T_max) int ((T,) for one utterance); T may be 0.
        semantic_lens : torch.Tensor, optional
            (B,) valid tokens per item, whole numbers in [0, T_max]; items run
            in groups of :attr:`micro_batch` padded to their longest, with the
            padding masked so that it never changes a waveform. Ids past an
            item's length are padding: any value.

        Returns
        -------
        wavs : torch.Tensor
            (B, hop * T_max), zero past each item's end (an item of 0 tokens
            is all zeros, length 0).
        wav_lens : torch.Tensor
            (B,) valid samples per item.

        Raises
        ------
        TokenError, TokenTypeError, LengthsError
            (``ValueError``) naming the argument and the item.
        """
        codec = self.codec
        global_tokens, semantic_tokens, semantic_lens = token_batch(
            global_tokens,
            semantic_tokens,
            semantic_lens,
            token_num=codec.token_num,
            global_codebook_size=codec.speaker_encoder.codebook_size,
            semantic_codebook_size=codec.quantizer.codebook_size,
        )
        global_tokens = global_tokens.to(self.device)
        semantic_tokens = semantic_tokens.to(self.device)
        batch, t_max = semantic_tokens.shape
        out = torch.zeros(batch, self.hop_length * t_max, device=self.device)
        # Longest first, in micro-batches padded to their longest item; the
        # codec masks the padding, so each waveform equals its decode alone.
        order = torch.argsort(semantic_lens, descending=True, stable=True)
        size = self.micro_batch or batch
        with torch.inference_mode(), self.inference_ctx:
            for start in range(0, batch, size):
                rows = order[start : start + size]
                rows = rows[semantic_lens[rows] > 0]  # 0 tokens: 0 samples
                if len(rows) == 0:
                    continue
                lens = semantic_lens[rows]
                rows_dev = rows.to(self.device)
                wav = self.codec.detokenize(
                    global_tokens[rows_dev], semantic_tokens[rows_dev, : int(lens.max())], lens
                )
                for item, (row, length) in enumerate(zip(rows.tolist(), lens.tolist())):
                    n = length * self.hop_length
                    out[row, :n] = wav[item, 0, :n].float()
        return out, semantic_lens * self.hop_length

    def decode(self, global_tokens, semantic_tokens):
        """Tokens of equal length -> waveforms (B, hop * T) at :attr:`sample_rate`."""
        wavs, _ = self.decode_batch(global_tokens, semantic_tokens)
        return wavs

    def stream_decoder(
        self, global_tokens, chunk_frames=(10, 25, 50, 100), lookahead=None, mode="cached"
    ):
        """Decoder for semantic tokens that arrive in pieces (an LLM loop): audio chunk by chunk.

        See :class:`~bicodec_plugin.codec.streaming.StreamingDecoder`. With the
        default ``lookahead`` the concatenated chunks equal :meth:`decode` of
        the whole sequence.

        Arguments
        ---------
        global_tokens : torch.Tensor
            (32,) or (B, 32) int.
        chunk_frames : int or sequence of int
            Tokens (frames) of audio per chunk (25 = 0.5 s at 16 kHz), or the
            sizes of the first chunks, the last repeating: the default
            ``(10, 25, 50, 100)`` returns its first chunk early and costs less
            in total than a whole decode (larger steps use the CPU better).
        lookahead : int, optional
            Tokens past a chunk that must have arrived before it is returned
            (default: the exact lookahead of the decoder's receptive field).
        mode : str
            ``"cached"`` or ``"window"``.

        Returns
        -------
        StreamingDecoder
            ``push(tokens)`` and ``finish()`` return lists of (B, samples) chunks.

        Example
        -------
        >>> stream = tok.stream_decoder(global_tokens, chunk_frames=25)  # doctest: +SKIP
        >>> for piece in llm_token_pieces:  # doctest: +SKIP
        ...     for chunk in stream.push(piece):
        ...         play(chunk)
        >>> for chunk in stream.finish():  # doctest: +SKIP
        ...     play(chunk)
        """
        from bicodec_plugin.codec.streaming import StreamingDecoder

        @contextlib.contextmanager
        def context():
            with torch.inference_mode(), self.inference_ctx:
                yield

        return StreamingDecoder(
            self.codec, global_tokens, chunk_frames, lookahead, mode, context=context
        )

    def forward(self, wavs, wav_lens=None):
        """Encodes then decodes (resynthesis), (B, N) -> (B, hop * T)."""
        glob, sem, lens = self.encode_batch(wavs, wav_lens)
        wavs, _ = self.decode_batch(glob, sem, lens)
        return wavs

    # ------------------------------------------------------------ conversions
    def convert_voice(self, content_path, speaker_path):
        """Says the content of one file with the voice of another.

        The semantic tokens of ``content_path`` are decoded with the global
        tokens of ``speaker_path``.

        Returns
        -------
        torch.Tensor
            (1, hop * T) at :attr:`sample_rate`.
        """
        _, semantic = self.encode_file(content_path)
        speaker, _ = self.encode_file(speaker_path)
        return self.decode(speaker, semantic)


def load_tokenizer(release=None, hparams=None, device="cpu"):
    """Loads a :class:`BiCodecTokenizer` from a release folder or a training export.

    Give exactly one of ``release`` and ``hparams``. Under torchrun,
    ``device="cuda"`` means this rank's GPU (``LOCAL_RANK``).

    Arguments
    ---------
    release : str, optional
        Spark-TTS-style release folder (:meth:`BiCodecTokenizer.from_release`).
    hparams : str, optional
        Folder written by training (:meth:`BiCodecTokenizer.from_hparams`).
    device : str
        Device to run on.

    Returns
    -------
    BiCodecTokenizer

    Example
    -------
    >>> load_tokenizer()
    Traceback (most recent call last):
    ...
    ValueError: give exactly one of release and hparams
    """
    if (release is None) == (hparams is None):
        raise ValueError("give exactly one of release and hparams")
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per torchrun rank
    run_opts = {"device": device}
    if release is not None:
        return BiCodecTokenizer.from_release(release, run_opts=run_opts)
    return BiCodecTokenizer.from_hparams(hparams, run_opts=run_opts)


def has_native_half(device_type, precision="bf16"):
    """Whether ``device_type`` runs ``precision`` (``"bf16"``/``"fp16"``) natively.

    On CPU this is oneDNN's own test (AVX512-BF16/AMX or AVX512-FP16 class
    hardware); without it, autocast emulates the half type and is slower
    than float32.

    Example
    -------
    >>> isinstance(has_native_half("cpu"), bool)
    True
    """
    if device_type == "cpu":
        if precision == "bf16":
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    if device_type == "cuda" and precision == "bf16":
        return bool(torch.cuda.is_bf16_supported())
    return True


def tokens_to_llm_string(global_tokens, semantic_tokens=None):
    """Tokens of one utterance -> the Spark-TTS LLM token string.

    Arguments
    ---------
    global_tokens : sequence of int
        32 global ids.
    semantic_tokens : sequence of int, optional
        Semantic ids.

    Returns
    -------
    str

    Example
    -------
    >>> tokens_to_llm_string([1, 2], [7])
    '<|bicodec_global_1|><|bicodec_global_2|><|bicodec_semantic_7|>'
    """
    text = "".join(GLOBAL_TOKEN.format(i) for i in _as_list(global_tokens, "global_tokens"))
    if semantic_tokens is not None:
        ids = _as_list(semantic_tokens, "semantic_tokens")
        text += "".join(SEMANTIC_TOKEN.format(i) for i in ids)
    return text


def llm_string_to_tokens(text, num_global=32, strict=True):
    """Parses ``<|bicodec_global_N|>`` and ``<|bicodec_semantic_N|>`` out of text.

    Other text (``<|start_global_token|>``, ``<|im_end|>``...) is ignored.
    By default the parse is strict: every ``<|bicodec_`` tag must be well
    formed, all global tokens come before the semantic ones and there are
    exactly ``num_global`` of them. See :func:`bicodec_plugin.checks.parse_llm_string`.

    Arguments
    ---------
    text : str
        LLM output or prompt.
    num_global : int or None
        Global tokens expected (32; 0 for a semantic-only string; ``None``: any).
    strict : bool
        ``False``: keep well-formed tags wherever they are, skip the rest.

    Returns
    -------
    global_tokens : torch.Tensor
        (1, G) int64.
    semantic_tokens : torch.Tensor
        (1, S) int64.

    Raises
    ------
    TokenStringError
        (a ``ValueError``) naming the character offset of the problem.

    Example
    -------
    >>> g, s = llm_string_to_tokens("<|bicodec_global_3|>x<|bicodec_semantic_9|>", num_global=1)
    >>> g.tolist(), s.tolist()
    ([[3]], [[9]])
    """
    glob, sem = parse_llm_string(text, num_global=num_global, strict=strict)
    return torch.tensor([glob], dtype=torch.long), torch.tensor([sem], dtype=torch.long)


def _as_list(tokens, name):
    """Token ids as a list of non-negative Python ints (integer dtypes only)."""
    ids = torch.as_tensor(tokens)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TokenTypeError(f"{name} must be integer ids, got {ids.dtype}")
    ids = ids.flatten().tolist()
    if ids and min(ids) < 0:
        raise TokenError(f"{name} must be non-negative, got {min(ids)}")
    return ids


def _pad(tensors):
    """List of (N_i,) tensors -> (B, N_max) zero-padded and their lengths (B,)."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    out = torch.zeros(len(tensors), int(lengths.max()))
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, lengths


def _check_min_length(items, lengths, sample_rate):
    """Each item must give wav2vec2 one frame (25 ms); names the first that does not."""
    for i, (_, ssl) in enumerate(items):
        if ssl.shape[0] < SSL_RECEPTIVE_FIELD:
            raise AudioInputError(
                f"input audio item {i} is too short: {lengths[i]} samples at {sample_rate} Hz; "
                f"one token needs 25 ms ({SSL_RECEPTIVE_FIELD} samples at 16 kHz)"
            )
