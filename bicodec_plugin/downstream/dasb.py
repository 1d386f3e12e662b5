"""BiCodec behind DASB's tokenizer contract, with the speaker inside the token tensor.

DASB (speechbrain/benchmarks) drives every audio tokenizer through
``sig_to_tokens`` (audio -> ``(B, N, K)`` ids), ``tokens_to_sig`` (ids ->
audio) and ``get_pretrained_embeddings`` (``(K * C, H)``); its extractor
stores only what ``sig_to_tokens`` returns, cropped per item, and its TTS
recipes call ``tokens_to_sig(tokens, **kwargs_from_yaml)``. BiCodec needs two
streams to decode: 50 Hz semantic tokens and 32 global (speaker) tokens per
utterance. So the global tokens travel in the token tensor, as extra
codebooks on every frame:

* codebook 0: the semantic token of frame ``t``;
* codebook ``1 + g`` (``g < G``): the global token at position
  ``g * P + (t mod P)``, with ``P = 32 / G``.

With the default ``G = 32`` (``K = 33``, ``P = 1``) every frame repeats all 32
global tokens, so any single frame of an utterance gives its speaker. A
smaller ``G`` (4: ``K = 5``, each global codebook cycles through 8
positions) makes the TTS model's output layer ``33 / 5`` times smaller but
needs at least ``P`` frames to carry the whole speaker.

Decoding reads each item's speaker from its own frames, by a vote per
position (the id seen most often wins; ties go to the earliest frame), so
frames that disagree, such as the silence frames DASB's Tokotron pads its
targets with, are outvoted. Every id in ``[0, C)`` decodes, ``C`` being the
larger of the two codebook sizes: a global id ``>= 4096`` only counts
(folded into range, ``id mod 4096``) where a position has no in-range vote,
and a semantic id ``>= 8192`` (only possible when the global codebook is the
larger one) is folded the same way. A position that no frame carries (fewer
than ``P`` frames) takes the fixed ``speaker`` when one is given, else the
all-zero FSQ code.

With ``num_codebooks=1`` and a fixed ``speaker`` (a reference wav or 32 ids)
the tokens are the semantic stream alone, for single-speaker corpora.

Authors
 * BiCodec plugin authors 2026
"""

import numbers
import os

import torch
from speechbrain.utils.autocast import AMPConfig, TorchAutocast
from speechbrain.utils.logger import get_logger

from bicodec_plugin.checks import relative_to_samples
from bicodec_plugin.inference import BiCodecTokenizer

logger = get_logger(__name__)


class BiCodecDASBTokenizer(torch.nn.Module):
    """DASB tokenizer: ``(B, N, K)`` ids, semantic codebook first, then global codebooks.

    The wrapped codec is frozen (no parameter requires grad, so SpeechBrain
    does not wrap it in DDP when it sits in a Brain's ``modules``), stays in
    eval mode whatever ``train()`` is called with, keeps no state between
    calls, and follows ``.to(device)``.

    Arguments
    ---------
    source : BiCodecTokenizer or str
        A loaded BiCodec inference interface, or a folder: a Spark-TTS-style
        release (``config.yaml`` + ``BiCodec/``) or a training export
        (``hyperparams.yaml``).
    global_codebooks : int
        Codebooks that carry the 32 global tokens (a divisor of 32): 32
        gives ``K = 33`` (every frame holds the whole speaker), 4 gives
        ``K = 5`` (each codebook cycles through 8 positions).
    num_codebooks : int or list of int, optional
        Codebooks returned by default (DASB's convention: ``n`` means the
        first ``n``, a list picks indices); ``None``: all ``1 + G``.
    speaker : str or sequence of int, optional
        A fixed speaker, used where the tokens carry none (``num_codebooks=1``,
        or positions no frame carries): a wav file (its global tokens) or
        the 32 global token ids.
    run_opts : dict, optional
        SpeechBrain run options when ``source`` is a folder (default CPU;
        DASB moves the tokenizer where it runs).

    Example
    -------
    >>> from bicodec_plugin.testing import tiny_codec
    >>> codec = tiny_codec()  # random weights, no wav2vec2
    >>> tok = BiCodecDASBTokenizer(BiCodecTokenizer(
    ...     modules={"codec": codec},
    ...     hparams={"codec": codec, "volume_normalize": True},
    ...     run_opts={"device": "cpu"},
    ... ))
    >>> tok.num_codebooks, tok.vocab_size, tok.sample_rate
    (33, 4096, 16000)
    >>> glob = torch.randint(0, 4096, (2, 32))
    >>> tokens = tok.pack(glob, torch.randint(0, 64, (2, 10)))
    >>> tokens.shape
    torch.Size([2, 10, 33])
    >>> tok.tokens_to_sig(tokens).shape
    torch.Size([2, 3200])
    >>> torch.equal(tok.split_tokens(tokens)[0], glob)
    True
    >>> tok.get_pretrained_embeddings().shape, tok.vocabulary.shape
    (torch.Size([135168, 32]), torch.Size([33, 4096, 32]))
    """

    def __init__(
        self, source, global_codebooks=32, num_codebooks=None, speaker=None, run_opts=None
    ):
        super().__init__()
        self.tokenizer = _load_source(source, run_opts)
        self.tokenizer.requires_grad_(False)
        codec = self.tokenizer.codec
        self.token_num = int(codec.token_num)
        quantizer = codec.speaker_encoder.quantizer
        if quantizer.num_quantizers != 1:
            raise ValueError("the DASB layout expects one FSQ stage for the global tokens")
        global_codebooks = _as_int(global_codebooks, "global_codebooks")
        if global_codebooks < 1 or self.token_num % global_codebooks:
            raise ValueError(
                f"global_codebooks must divide the {self.token_num} global tokens, "
                f"got {global_codebooks}"
            )
        self.global_codebooks = global_codebooks
        self.period = self.token_num // global_codebooks
        self.semantic_size = int(codec.quantizer.codebook_size)
        self.global_size = int(codec.speaker_encoder.codebook_size)
        self.vocab_size = max(self.semantic_size, self.global_size)
        self.total_codebooks = 1 + global_codebooks
        self.codebooks = self._select(num_codebooks, default=list(range(self.total_codebooks)))
        # The all-zero FSQ code: middle level in every dimension.
        fsq = quantizer.layers[0]
        self.neutral_global_id = int(((fsq.levels // 2) * fsq.basis).sum())
        self.register_buffer("speaker_tokens", self._speaker(speaker), persistent=False)
        self.eval()

    @classmethod
    def from_release(cls, folder, run_opts=None, **kwargs):
        """Loads a Spark-TTS-style release folder.

        Arguments
        ---------
        folder : str
            Folder with ``config.yaml``, ``BiCodec/`` and ``wav2vec2-large-xlsr-53/``.
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cuda:0"}``.
        **kwargs
            Constructor options (``global_codebooks``, ``num_codebooks``, ``speaker``).

        Returns
        -------
        BiCodecDASBTokenizer

        Example
        -------
        >>> tok = BiCodecDASBTokenizer.from_release("Spark-TTS-0.5B")  # doctest: +SKIP
        """
        return cls(BiCodecTokenizer.from_release(folder, run_opts=run_opts), **kwargs)

    @classmethod
    def from_hparams(cls, source, run_opts=None, **kwargs):
        """Loads a folder exported by training (see ``BiCodecTokenizer.from_hparams``).

        Arguments
        ---------
        source : str
            Folder with ``hyperparams.yaml`` and the codec weights.
        run_opts : dict, optional
            SpeechBrain run options.
        **kwargs
            Constructor options (``global_codebooks``, ``num_codebooks``, ``speaker``).

        Returns
        -------
        BiCodecDASBTokenizer

        Example
        -------
        >>> tok = BiCodecDASBTokenizer.from_hparams("results/export")  # doctest: +SKIP
        """
        return cls(BiCodecTokenizer.from_hparams(source, run_opts=run_opts), **kwargs)

    # ---------------------------------------------------------- properties
    @property
    def codec(self):
        """The wrapped :class:`~bicodec_plugin.codec.model.BiCodec`."""
        return self.tokenizer.codec

    @property
    def num_codebooks(self):
        """K: codebooks returned by default."""
        return len(self.codebooks)

    @property
    def sample_rate(self):
        """Audio rate of the model (input and output)."""
        return self.tokenizer.sample_rate

    @property
    def hop_length(self):
        """Output samples per frame."""
        return self.tokenizer.hop_length

    @property
    def device(self):
        """Device the codec runs on; assigning moves the tokenizer (DASB sets it)."""
        return self.tokenizer.device

    @device.setter
    def device(self, device):
        self.to(device)

    @property
    def vocabulary(self):
        """Embeddings of the default codebooks, (K, C, H): what Tokotron's
        ``audio_emb_pretrained`` copies into its token embeddings."""
        table = self.codebook_embeddings()
        logger.info("BiCodec DASB vocabulary: (K, C, H) = %s", tuple(table.shape))
        return table

    def train(self, mode=True):
        """Keeps eval mode whatever ``mode`` says (the codec is frozen).

        Arguments
        ---------
        mode : bool
            Ignored.

        Returns
        -------
        BiCodecDASBTokenizer
            ``self``.
        """
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        """Moves/casts like any module, then points the inference interface at the new device."""
        super()._apply(fn, *args, **kwargs)
        param = next(self.tokenizer.mods.parameters(), None)
        if param is not None and str(param.device) != str(self.tokenizer.device):
            tok = self.tokenizer
            tok.device = str(param.device)
            tok.device_type = param.device.type
            tok.inference_ctx = TorchAutocast(
                device_type=tok.device_type, dtype=AMPConfig.from_name(tok.precision).dtype
            )
        return self

    # ---------------------------------------------------------- contract
    @torch.no_grad()
    def sig_to_tokens(self, signal, lengths=None, num_codebooks=None, **kwargs):
        """Audio -> tokens ``(B, N, K)``: semantic codebook, then global codebooks.

        Each item's tokens equal its tokens encoded alone. Frames past an
        item's length repeat its last semantic token and carry its global
        tokens, so a crop of the padded batch that keeps a frame too many
        still holds only that utterance.

        Arguments
        ---------
        signal : torch.Tensor
            Audio at :attr:`sample_rate`, (B, T) (or (T,)).
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1], (B,) (``length=`` is accepted too).
        num_codebooks : int or list of int, optional
            Codebooks to return (first ``n``, or these indices); default:
            the constructor's.
        **kwargs
            ``length`` (alias of ``lengths``); ``normalize`` (bool): the
            reference volume normalisation (default: the model's config).
            Other keys are ignored.

        Returns
        -------
        torch.Tensor
            (B, N, K) int64, N = semantic frames of the longest item.

        Example
        -------
        >>> tok = BiCodecDASBTokenizer("tiny_release")  # doctest: +SKIP
        >>> tok.sig_to_tokens(torch.randn(2, 16000)).shape  # doctest: +SKIP
        torch.Size([2, 49, 33])
        """
        self.eval()
        lengths = _lengths_alias(lengths, kwargs)
        codebooks = self._select(num_codebooks)
        glob, semantic, semantic_lens = self.tokenizer.encode_batch(
            signal, lengths, normalize=kwargs.get("normalize")
        )
        return self.pack(glob, semantic, semantic_lens, codebooks)

    @torch.no_grad()
    def tokens_to_sig(self, tokens, lengths=None, num_codebooks=None, **kwargs):
        """Tokens ``(B, N, K)`` -> audio ``(B, hop * N)``, each item's speaker from its own frames.

        Arguments
        ---------
        tokens : torch.Tensor
            (B, N, K) int ids in [0, :attr:`vocab_size`) (or (B, N) when K = 1).
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1], (B,) (``length=`` too): only frames
            inside an item vote for its speaker, and its audio is 0 past its end.
            Without it every frame counts.
        num_codebooks : int or list of int, optional
            Which codebooks the K columns are (first ``n``, or these
            indices); default: the constructor's when K matches, else the first K.
        **kwargs
            ``length`` (alias of ``lengths``); other keys (DASB passes
            model-specific ones from yaml) are ignored.

        Returns
        -------
        torch.Tensor
            (B, hop * N) float at :attr:`sample_rate`, on :attr:`device`.

        Example
        -------
        >>> tok.tokens_to_sig(tok.sig_to_tokens(torch.randn(2, 16000))).shape  # doctest: +SKIP
        torch.Size([2, 15680])
        """
        self.eval()
        lengths = _lengths_alias(lengths, kwargs)
        glob, semantic, semantic_lens = self.split_tokens(tokens, lengths, num_codebooks)
        wavs, _ = self.tokenizer.decode_batch(glob, semantic, semantic_lens)
        return wavs

    @torch.no_grad()
    def get_pretrained_embeddings(self, vocab_size=None, num_codebooks=None, **kwargs):
        """The codebooks as one table, ``(K * C, H)``: row ``k * C + i`` embeds id ``i`` of codebook ``k``.

        See :meth:`codebook_embeddings` for what each row holds.

        Arguments
        ---------
        vocab_size : int, optional
            Expected C (checked when given).
        num_codebooks : int or list of int, optional
            Codebooks to embed; default: the constructor's.
        **kwargs
            Ignored.

        Returns
        -------
        torch.Tensor
            (K * C, H) float32, on :attr:`device`.
        """
        if vocab_size is not None and _as_int(vocab_size, "vocab_size") != self.vocab_size:
            raise ValueError(
                f"vocab_size={vocab_size}, but BiCodec's DASB codebooks have "
                f"C = {self.vocab_size} ids each (semantic {self.semantic_size}, "
                f"global {self.global_size})"
            )
        emb = self.codebook_embeddings(num_codebooks)
        return emb.reshape(-1, emb.shape[-1])

    # ---------------------------------------------------------- layout
    @torch.no_grad()
    def codebook_embeddings(self, num_codebooks=None):
        """Embedding of every id of every codebook, in the decoder's space: (K, C, H).

        * semantic codebook: the codeword after the VQ out-projection, i.e.
          the latent the decoder reads for that token (H = 1024 for the release);
        * global codebook ``1 + g``: the token's additive share of the
          speaker d-vector (H = 1024): the d-vector is a linear map of the
          32 projected FSQ codes, ``d = b + sum_p W_p code_p``, so the row of
          id ``i`` at position ``p`` is ``W_p code(i) + b / 32``; the 32 rows
          of an utterance's global tokens sum to its d-vector. A codebook
          that cycles through several positions gets their mean.

        Ids past a codebook's size embed as the id decoding uses for them
        (``id mod size``). If the two spaces differ in size, the smaller is
        zero-padded.

        Arguments
        ---------
        num_codebooks : int or list of int, optional
            Codebooks to embed; default: the constructor's.

        Returns
        -------
        torch.Tensor
            (K, C, H) float32, on :attr:`device`.
        """
        codebooks = self._select(num_codebooks)
        codec = self.codec
        ids = torch.arange(self.vocab_size, device=codec.quantizer.codebook.weight.device)
        semantic = codec.quantizer.detokenize((ids % self.semantic_size)[None])[0].T.float()
        spk = codec.speaker_encoder
        codes = spk.quantizer.indices_to_output((ids % self.global_size).view(1, 1, -1))
        codes = codes[0].T.float()  # (C, latent): projected FSQ code of each id
        weight = spk.project.weight.float()  # (D, latent * 32), channel-major columns
        bias = spk.project.bias.float() / self.token_num
        tables = []
        for index in codebooks:
            if index == 0:
                tables.append(semantic)
                continue
            positions = self._codebook_positions(index - 1)
            share = torch.stack([codes @ weight[:, p :: self.token_num].T for p in positions])
            tables.append(share.mean(0) + bias)
        size = max(t.shape[-1] for t in tables)
        tables = [torch.nn.functional.pad(t, (0, size - t.shape[-1])) for t in tables]
        return torch.stack(tables)

    def pack(self, global_tokens, semantic_tokens, semantic_lens=None, num_codebooks=None):
        """Global (B, 32) + semantic (B, N) tokens -> the DASB tensor (B, N, K).

        Arguments
        ---------
        global_tokens : torch.Tensor
            (B, 32) int.
        semantic_tokens : torch.Tensor
            (B, N) int.
        semantic_lens : torch.Tensor, optional
            (B,) valid frames per item; frames past it repeat the item's
            last semantic token.
        num_codebooks : int or list of int, optional
            Codebooks to return; default: the constructor's.

        Returns
        -------
        torch.Tensor
            (B, N, K) int64.
        """
        codebooks = self._select(num_codebooks)
        semantic_tokens = torch.as_tensor(semantic_tokens).long()
        global_tokens = torch.as_tensor(global_tokens).long().to(semantic_tokens.device)
        if global_tokens.dim() == 3:
            global_tokens = global_tokens.flatten(1)  # (B, 1, 32) -> (B, 32)
        batch, frames = semantic_tokens.shape
        if global_tokens.shape != (batch, self.token_num):
            raise ValueError(
                f"expected global tokens of shape ({batch}, {self.token_num}), "
                f"got {tuple(global_tokens.shape)}"
            )
        if semantic_lens is not None:
            lens = torch.as_tensor(semantic_lens, device=semantic_tokens.device).long()
            lens = lens.clamp(1, frames)
            last = semantic_tokens.gather(1, (lens - 1)[:, None])
            inside = torch.arange(frames, device=lens.device)[None] < lens[:, None]
            semantic_tokens = torch.where(inside, semantic_tokens, last)
        positions = self._frame_positions(frames, semantic_tokens.device)  # (N, G)
        columns = [semantic_tokens[..., None], global_tokens[:, positions]]
        return torch.cat(columns, dim=-1)[..., codebooks]

    def split_tokens(self, tokens, lengths=None, num_codebooks=None):
        """The DASB tensor -> (global tokens, semantic tokens, semantic lengths) for decoding.

        Arguments
        ---------
        tokens : torch.Tensor
            (B, N, K) (or (B, N) when K = 1) int ids in [0, :attr:`vocab_size`).
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1], (B,); only frames inside vote.
        num_codebooks : int or list of int, optional
            Which codebooks the K columns are (see :meth:`tokens_to_sig`).

        Returns
        -------
        global_tokens : torch.Tensor
            (B, 32) int64, the vote of each item's frames.
        semantic_tokens : torch.Tensor
            (B, N) int64 in [0, semantic size).
        semantic_lens : torch.Tensor or None
            (B,) valid frames per item (``None`` without ``lengths``).
        """
        tokens = torch.as_tensor(tokens)
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integers, got {tokens.dtype}")
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(-1)  # (B, N) -> (B, N, 1)
        if tokens.dim() != 3 or tokens.shape[1] == 0:
            raise ValueError(
                f"expected tokens of shape (B, N, K) with N > 0, got {tuple(tokens.shape)}"
            )
        tokens = tokens.long()
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.vocab_size}); got min {int(tokens.min())}, "
                f"max {int(tokens.max())}"
            )
        codebooks = self._columns(tokens.shape[-1], num_codebooks)
        if 0 not in codebooks:
            raise ValueError(
                f"tokens hold codebooks {codebooks}: the semantic codebook 0 is needed to decode"
            )
        batch, frames, _ = tokens.shape
        semantic_lens, valid = None, torch.ones(batch, frames, dtype=torch.bool)
        if lengths is not None:
            semantic_lens = torch.tensor(relative_to_samples(lengths, batch, frames, "lengths"))
            valid = torch.arange(frames)[None] < semantic_lens[:, None]
        semantic = tokens[..., codebooks.index(0)] % self.semantic_size
        glob = self._vote(tokens, codebooks, valid.to(tokens.device))
        return glob, semantic, semantic_lens

    # ---------------------------------------------------------- helpers
    def _codebook_positions(self, g):
        """Global positions that global codebook ``g`` carries, in frame order."""
        return [g * self.period + r for r in range(self.period)]

    def _frame_positions(self, frames, device):
        """(N, G): the global position each global codebook carries on each frame."""
        t = torch.arange(frames, device=device)[:, None]
        g = torch.arange(self.global_codebooks, device=device)[None]
        return g * self.period + t % self.period

    def _vote(self, tokens, codebooks, valid):
        """Per item and position, the global id its valid frames carry most often.

        In-range ids outvote any number of out-of-range ones (folded ids only
        count where a position has no in-range vote); ties go to the earliest frame.
        """
        batch, frames, _ = tokens.shape
        size, device = self.global_size, tokens.device
        columns = [i for i, c in enumerate(codebooks) if c > 0]
        result = torch.full((batch, self.token_num), -1, dtype=torch.long, device=device)
        if columns:
            ids = tokens[..., columns]  # (B, N, G')
            positions = self._frame_positions(frames, device)[
                :, [codebooks[i] - 1 for i in columns]
            ]
            weight = torch.where(ids < size, frames + 1, 1) * valid[..., None]
            slot = (positions[None] * size + ids % size).flatten(1)  # (B, N * G')
            counts = torch.zeros(batch, self.token_num * size, dtype=torch.long, device=device)
            counts.scatter_add_(1, slot, weight.flatten(1))
            frame = torch.arange(frames, device=device)[None, :, None].expand_as(ids)
            frame = torch.where(valid[..., None], frame, frames).flatten(1)
            first = torch.full_like(counts, frames)
            first.scatter_reduce_(1, slot, frame, reduce="amin")
            score = (counts * (frames + 1) + (frames - first)).view(batch, self.token_num, size)
            best = score.max(-1)
            result = torch.where(best.values > 0, best.indices, result)
        missing = result < 0
        if missing.any():
            carried = {p for c in codebooks if c > 0 for p in self._codebook_positions(c - 1)}
            if self.speaker_tokens is None and len(carried) < self.token_num:
                raise ValueError(
                    f"tokens hold codebooks {codebooks}, which carry {len(carried)} of the "
                    f"{self.token_num} global tokens: give the tokenizer a fixed speaker "
                    "(speaker: a wav path or 32 ids) or keep all global codebooks"
                )
            fill = self.speaker_tokens
            if fill is None:  # positions no frame reached (fewer than P frames)
                fill = torch.full((self.token_num,), self.neutral_global_id, device=device)
            result = torch.where(missing, fill.to(device)[None], result)
        return result

    def _select(self, num_codebooks, default=None):
        """``None`` / int / list -> list of codebook indices (DASB's convention)."""
        if num_codebooks is None:
            return list(self.codebooks if default is None else default)
        total = self.total_codebooks
        if isinstance(num_codebooks, numbers.Integral) and not isinstance(num_codebooks, bool):
            if not 1 <= int(num_codebooks) <= total:
                raise ValueError(f"num_codebooks={num_codebooks}: BiCodec's layout has {total}")
            return list(range(int(num_codebooks)))
        if isinstance(num_codebooks, (list, tuple)):
            indices = [_as_int(i, "num_codebooks") for i in num_codebooks]
            if not indices or len(set(indices)) != len(indices):
                raise ValueError(f"num_codebooks={num_codebooks}: give distinct indices")
            if any(not 0 <= i < total for i in indices):
                raise ValueError(f"num_codebooks={num_codebooks}: indices must lie in [0, {total})")
            return indices
        raise ValueError(
            f"num_codebooks must be None, an int or a list of indices, got {num_codebooks!r}"
        )

    def _columns(self, count, num_codebooks):
        """Which codebooks the ``count`` columns of a token tensor are."""
        if num_codebooks is not None:
            codebooks = self._select(num_codebooks)
        elif count == len(self.codebooks):
            codebooks = list(self.codebooks)
        elif count <= self.total_codebooks:
            codebooks = list(range(count))
        else:
            raise ValueError(
                f"tokens have {count} codebooks; BiCodec's layout has {self.total_codebooks}"
            )
        if len(codebooks) != count:
            raise ValueError(f"tokens have {count} codebooks but num_codebooks names {codebooks}")
        return codebooks

    def _speaker(self, speaker):
        """The fixed speaker as (32,) int64 ids, or None."""
        if speaker is None:
            return None
        if isinstance(speaker, (str, os.PathLike)):
            glob, _ = self.tokenizer.encode_file(os.fspath(speaker))
            logger.info("Fixed BiCodec speaker from %s", os.fspath(speaker))
            return glob[0].long()
        ids = torch.as_tensor(speaker)
        if ids.dtype.is_floating_point or ids.numel() != self.token_num:
            raise ValueError(
                f"speaker must be a wav path or {self.token_num} integer global token ids, "
                f"got {tuple(ids.shape)} {ids.dtype}"
            )
        ids = ids.flatten().long()
        if int(ids.min()) < 0 or int(ids.max()) >= self.global_size:
            raise ValueError(f"speaker token ids must lie in [0, {self.global_size})")
        return ids.to(self.tokenizer.device)


def _load_source(source, run_opts):
    """A BiCodecTokenizer from an instance, a release folder or an exported folder."""
    if isinstance(source, BiCodecTokenizer):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a BiCodecTokenizer or a folder, got {type(source)}")
    folder = os.fspath(source)
    run_opts = run_opts or {"device": "cpu"}
    if os.path.isfile(os.path.join(folder, "config.yaml")) and os.path.isdir(
        os.path.join(folder, "BiCodec")
    ):
        return BiCodecTokenizer.from_release(folder, run_opts=run_opts)
    if os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        return BiCodecTokenizer.from_hparams(folder, run_opts=run_opts)
    raise ValueError(
        f"source {folder!r} is neither a release folder (config.yaml + BiCodec/) "
        "nor a training export (hyperparams.yaml)"
    )


def _lengths_alias(lengths, kwargs):
    """``length=`` (DASB's spelling in some tokenizers) as an alias of ``lengths``."""
    length = kwargs.pop("length", None)
    if length is not None:
        if lengths is not None:
            raise ValueError("give lengths or length, not both")
        return length
    return lengths


def _as_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)
