"""BiCodec behind the DASB ``BaseTokenizer`` contract (discrete-token TTS benchmarks).

DASB (speechbrain/benchmarks) drives every audio tokenizer through three
methods: ``sig_to_tokens`` (audio -> ``(B, N, K)`` ids), ``tokens_to_sig``
(ids -> audio) and ``get_pretrained_embeddings`` (codebooks ->
``(K * C, H)``). BiCodec fits this with **one** codebook (K = 1): its 50 Hz
semantic tokens. Its other output, the 32 global (speaker) tokens per
utterance, has no time axis and so no place in ``(B, N, K)``; it travels as
a side input:

* ``sig_to_tokens(..., return_global=True)`` returns ``(tokens, global_tokens)``,
  and every call stores its global tokens in ``last_global_tokens`` (B, 32)
  (and the valid token counts in ``last_token_lens``), so DASB code that only
  expects the tokens keeps working;
* ``tokens_to_sig(tokens, global_tokens=...)`` needs them back and refuses to
  decode without them (there is no neutral speaker to fall back on).

Token extraction for DASB recipes therefore saves two streams per utterance
(``TokensExtractor`` for the semantic stream, a second save name for the
global one), as the plugin's token store does.

Authors
 * BiCodec plugin authors 2026
"""

import torch
from speechbrain.utils.autocast import AMPConfig, TorchAutocast

from bicodec_plugin.checks import relative_to_samples
from bicodec_plugin.inference import BiCodecTokenizer


class BiCodecDASBTokenizer(torch.nn.Module):
    """DASB-style tokenizer: semantic tokens as ``(B, N, 1)``, global tokens aside.

    The wrapped codec is frozen (no parameter requires grad, so SpeechBrain
    does not wrap it in DDP when it sits in a Brain's ``modules``), stays in
    eval mode whatever ``train()`` is called with, and every method runs
    without gradients.

    Arguments
    ---------
    tokenizer : BiCodecTokenizer
        A loaded BiCodec inference interface.

    Example
    -------
    >>> from bicodec_plugin.testing import tiny_codec
    >>> codec = tiny_codec()  # random weights, no wav2vec2
    >>> tok = BiCodecDASBTokenizer(BiCodecTokenizer(
    ...     modules={"codec": codec},
    ...     hparams={"codec": codec, "volume_normalize": True},
    ...     run_opts={"device": "cpu"},
    ... ))
    >>> tok.sample_rate, tok.training
    (16000, False)
    >>> tokens = torch.randint(0, 64, (2, 10, 1))
    >>> global_tokens = torch.randint(0, 4096, (2, 32))
    >>> tok.tokens_to_sig(tokens, global_tokens=global_tokens).shape
    torch.Size([2, 3200])
    >>> tok.get_pretrained_embeddings().shape
    torch.Size([64, 8])
    >>> tok.get_pretrained_embeddings(projected=True).shape
    torch.Size([64, 32])
    """

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.tokenizer.requires_grad_(False)
        self.last_global_tokens = None
        self.last_token_lens = None
        self.eval()

    @classmethod
    def from_release(cls, folder, run_opts=None, **kwargs):
        """Loads a Spark-TTS-style release folder (see ``BiCodecTokenizer.from_release``).

        Arguments
        ---------
        folder : str
            Folder with ``config.yaml``, ``BiCodec/`` and ``wav2vec2-large-xlsr-53/``.
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cuda:0"}``.
        **kwargs
            Passed to ``BiCodecTokenizer.from_release``.

        Returns
        -------
        BiCodecDASBTokenizer

        Example
        -------
        >>> tok = BiCodecDASBTokenizer.from_release("Spark-TTS-0.5B")  # doctest: +SKIP
        """
        return cls(BiCodecTokenizer.from_release(folder, run_opts=run_opts, **kwargs))

    @classmethod
    def from_hparams(cls, source, **kwargs):
        """Loads a folder exported by training (see ``BiCodecTokenizer.from_hparams``).

        Arguments
        ---------
        source : str
            Folder with ``hyperparams.yaml`` and the codec weights.
        **kwargs
            Passed to ``BiCodecTokenizer.from_hparams`` (``run_opts``, ...).

        Returns
        -------
        BiCodecDASBTokenizer

        Example
        -------
        >>> tok = BiCodecDASBTokenizer.from_hparams("results/export")  # doctest: +SKIP
        """
        return cls(BiCodecTokenizer.from_hparams(source, **kwargs))

    # ---------------------------------------------------------- properties
    @property
    def codec(self):
        """The wrapped :class:`~bicodec_plugin.codec.model.BiCodec`."""
        return self.tokenizer.codec

    @property
    def sample_rate(self):
        """Audio rate of the model (input and output)."""
        return self.tokenizer.sample_rate

    @property
    def hop_length(self):
        """Output samples per semantic token."""
        return self.tokenizer.hop_length

    @property
    def device(self):
        """Device the codec runs on; assigning moves it (DASB sets ``tokenizer.device``)."""
        return self.tokenizer.device

    @device.setter
    def device(self, device):
        device = str(device)
        self.tokenizer.mods.to(device)
        self.tokenizer.device = device
        self.tokenizer.device_type = device.split(":")[0]
        self.tokenizer.inference_ctx = TorchAutocast(
            device_type=self.tokenizer.device_type,
            dtype=AMPConfig.from_name(self.tokenizer.precision).dtype,
        )

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

    # ---------------------------------------------------------- contract
    @torch.no_grad()
    def sig_to_tokens(
        self, signal, lengths=None, num_codebooks=None, return_global=False, **kwargs
    ):
        """Audio -> semantic tokens ``(B, N, 1)`` (+ the global tokens aside).

        Arguments
        ---------
        signal : torch.Tensor
            Audio at :attr:`sample_rate`, (B, T) (or (T,)).
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1], (B,).
        num_codebooks : int, optional
            ``None`` or 1 (BiCodec has one semantic codebook).
        return_global : bool
            Also return the global tokens.
        **kwargs
            ``normalize`` (bool): the reference volume normalisation
            (default: the model's config). Other keys are ignored.

        Returns
        -------
        tokens : torch.Tensor
            (B, N, 1) int64 semantic tokens, 0 past each item's length
            (valid counts in ``self.last_token_lens``).
        global_tokens : torch.Tensor
            (B, 32) int64, only when ``return_global``; always stored in
            ``self.last_global_tokens``.

        Example
        -------
        >>> tok = BiCodecDASBTokenizer.from_release("tiny_release")  # doctest: +SKIP
        >>> tokens, glob = tok.sig_to_tokens(torch.randn(2, 16000), return_global=True)  # doctest: +SKIP
        >>> tokens.shape, glob.shape  # doctest: +SKIP
        (torch.Size([2, 50, 1]), torch.Size([2, 32]))
        """
        self.eval()
        _check_num_codebooks(num_codebooks)
        glob, semantic, semantic_lens = self.tokenizer.encode_batch(
            signal, lengths, normalize=kwargs.get("normalize")
        )
        self.last_global_tokens = glob
        self.last_token_lens = semantic_lens
        tokens = semantic.unsqueeze(-1)  # (B, N) -> (B, N, 1)
        if return_global:
            return tokens, glob
        return tokens

    @torch.no_grad()
    def tokens_to_sig(self, tokens, global_tokens=None, lengths=None, **kwargs):
        """Semantic tokens ``(B, N, 1)`` + global tokens ``(B, 32)`` -> audio ``(B, hop * N)``.

        Arguments
        ---------
        tokens : torch.Tensor
            (B, N, 1) or (B, N) int semantic tokens.
        global_tokens : torch.Tensor
            (B, 32) int (or (B, 1, 32)); required: BiCodec cannot decode
            without a speaker. Take them from ``sig_to_tokens(...,
            return_global=True)`` or ``last_global_tokens``.
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1], (B,); audio past each item's end is 0.
        **kwargs
            Ignored (DASB passes model-specific keys).

        Returns
        -------
        torch.Tensor
            (B, hop * N) at :attr:`sample_rate`.

        Example
        -------
        >>> tok.tokens_to_sig(tokens, global_tokens=glob).shape  # doctest: +SKIP
        torch.Size([2, 16000])
        """
        self.eval()
        if global_tokens is None:
            raise ValueError(
                "BiCodec needs the 32 global (speaker) tokens of each utterance to decode: "
                "pass tokens_to_sig(tokens, global_tokens=...), e.g. the second output of "
                "sig_to_tokens(..., return_global=True) or its last_global_tokens"
            )
        if tokens.dim() == 3:
            if tokens.shape[-1] != 1:
                raise ValueError(
                    f"BiCodec has one codebook: expected tokens (B, N, 1), got {tuple(tokens.shape)}"
                )
            tokens = tokens[..., 0]  # (B, N, 1) -> (B, N)
        global_tokens = torch.as_tensor(global_tokens)
        if global_tokens.dim() == 3:
            global_tokens = global_tokens.flatten(1)  # (B, 1, 32) -> (B, 32)
        semantic_lens = None
        if lengths is not None:
            semantic_lens = relative_to_samples(
                lengths, tokens.shape[0], tokens.shape[1], "lengths"
            )
        wavs, _ = self.tokenizer.decode_batch(global_tokens, tokens, semantic_lens)
        return wavs

    @torch.no_grad()
    def get_pretrained_embeddings(
        self, vocab_size=None, num_codebooks=None, projected=False, **kwargs
    ):
        """The semantic codebook, one row per token id: ``(K * C, H)`` with K = 1.

        Arguments
        ---------
        vocab_size : int, optional
            Expected codebook size C (checked when given).
        num_codebooks : int, optional
            ``None`` or 1.
        projected : bool
            ``False``: the raw codewords (C, codebook_dim), (8192, 8) for the
            release. ``True``: the codewords after the VQ out-projection,
            i.e. what the decoder sees, (C, latent_dim), (8192, 1024).
        **kwargs
            Ignored.

        Returns
        -------
        torch.Tensor
            (C, H) float, on :attr:`device`.
        """
        self.eval()
        _check_num_codebooks(num_codebooks)
        quantizer = self.codec.quantizer
        size = quantizer.codebook_size
        if vocab_size is not None and int(vocab_size) != size:
            raise ValueError(f"BiCodec's semantic codebook has {size} entries, not {vocab_size}")
        if not projected:
            return quantizer.codebook.weight.detach().clone()
        ids = torch.arange(size, device=quantizer.codebook.weight.device).unsqueeze(0)
        return quantizer.detokenize(ids)[0].transpose(0, 1).contiguous()  # (H, C) -> (C, H)


def _check_num_codebooks(num_codebooks):
    """Accepts ``None``, 1 or ``[0]``; BiCodec has a single semantic codebook."""
    if num_codebooks is None or num_codebooks == 1:
        return
    if isinstance(num_codebooks, (list, tuple)) and list(num_codebooks) == [0]:
        return
    raise ValueError(f"BiCodec has one semantic codebook; num_codebooks={num_codebooks!r}")
