"""The Spark-TTS prompt layout over one shared id space (text pieces + BiCodec tokens).

A training sequence reads, as in Spark-TTS (voice cloning without a prompt
transcript)::

    <|task_tts|> <|start_content|> text pieces <|end_content|>
    <|start_global_token|> 32 global tokens <|end_global_token|>
    <|start_semantic_token|> semantic tokens <|end_semantic_token|>

Ids (``SparkTTSVocab``), with V text pieces and K semantic codes::

    0                     <pad>             (never predicted; masks padding)
    1 .. 7                the 7 markers above (7 = <|end_semantic_token|>, EOS)
    8 .. 8+V-1            SentencePiece piece p       -> 8 + p
    8+V .. 8+V+4095       BiCodec global token g      -> 8 + V + g
    8+V+4096 ..           BiCodec semantic token s    -> 8 + V + 4096 + s
    vocab_size            8 + V + 4096 + K

so a prompt maps one to one onto Spark-TTS's token strings
(``<|bicodec_global_g|>``, ``<|bicodec_semantic_s|>``; see :meth:`to_string`).

Authors
 * BiCodec plugin authors 2026
"""

import torch

PAD = 0
TASK_TTS = 1
START_CONTENT = 2
END_CONTENT = 3
START_GLOBAL = 4
END_GLOBAL = 5
START_SEMANTIC = 6
END_SEMANTIC = 7
SPECIAL_TOKENS = [
    "<pad>",
    "<|task_tts|>",
    "<|start_content|>",
    "<|end_content|>",
    "<|start_global_token|>",
    "<|end_global_token|>",
    "<|start_semantic_token|>",
    "<|end_semantic_token|>",
]
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)


class SparkTTSVocab:
    """Id offsets of the shared vocabulary and the prompt layout.

    Arguments
    ---------
    text_vocab_size : int
        Ids reserved for SentencePiece pieces (the trained model may use fewer).
    num_semantic_tokens : int
        BiCodec semantic codebook size K (8192 for the release).
    num_global_tokens : int
        BiCodec global codebook size (4096).
    token_num : int
        Global tokens per utterance (32).

    Example
    -------
    >>> vocab = SparkTTSVocab(text_vocab_size=10, num_semantic_tokens=64)
    >>> vocab.text_offset, vocab.global_offset, vocab.semantic_offset, vocab.vocab_size
    (8, 18, 4114, 4178)
    >>> seq, loss_start = vocab.training_sequence([3, 4], torch.arange(32), torch.tensor([5, 6]))
    >>> seq.shape, loss_start, vocab.to_string(seq[-4:])
    (torch.Size([43]), 5, '<|start_semantic_token|><|bicodec_semantic_5|><|bicodec_semantic_6|><|end_semantic_token|>')
    >>> vocab.training_sequence([3], torch.arange(32), torch.tensor([5]), predict_global=False)[1]
    38
    """

    def __init__(self, text_vocab_size, num_semantic_tokens, num_global_tokens=4096, token_num=32):
        self.text_vocab_size = int(text_vocab_size)
        self.num_semantic_tokens = int(num_semantic_tokens)
        self.num_global_tokens = int(num_global_tokens)
        self.token_num = int(token_num)
        self.text_offset = NUM_SPECIAL_TOKENS
        self.global_offset = self.text_offset + self.text_vocab_size
        self.semantic_offset = self.global_offset + self.num_global_tokens
        self.vocab_size = self.semantic_offset + self.num_semantic_tokens

    # ----------------------------------------------------------- id ranges
    @property
    def global_range(self):
        """``(first, end)`` ids of the global tokens (end excluded)."""
        return self.global_offset, self.semantic_offset

    @property
    def semantic_range(self):
        """``(first, end)`` ids of the semantic tokens (end excluded)."""
        return self.semantic_offset, self.vocab_size

    def is_semantic(self, ids):
        """Boolean mask of semantic-token ids (any shape)."""
        return (ids >= self.semantic_offset) & (ids < self.vocab_size)

    # ---------------------------------------------------------- sequences
    def prompt(self, text_ids, global_tokens=None):
        """The inference prompt (1-D LongTensor).

        Arguments
        ---------
        text_ids : sequence of int
            SentencePiece ids of the text.
        global_tokens : torch.Tensor, optional
            32 BiCodec global ids of the reference speaker. Given: the prompt
            ends with ``<|start_semantic_token|>`` and the LM writes the
            semantic tokens. Absent: it ends with ``<|start_global_token|>``
            and the LM writes the global tokens first.

        Returns
        -------
        torch.Tensor
            (L,) int64.
        """
        text_ids = torch.as_tensor(list(text_ids), dtype=torch.long)
        if text_ids.numel() and (
            int(text_ids.min()) < 0 or int(text_ids.max()) >= self.text_vocab_size
        ):
            raise ValueError(
                f"text piece ids must lie in [0, {self.text_vocab_size}): is the text "
                "tokenizer larger than text_vocab_size?"
            )
        parts = [
            torch.tensor([TASK_TTS, START_CONTENT]),
            text_ids + self.text_offset,
            torch.tensor([END_CONTENT, START_GLOBAL]),
        ]
        if global_tokens is not None:
            parts += [
                self.global_ids(global_tokens),
                torch.tensor([END_GLOBAL, START_SEMANTIC]),
            ]
        return torch.cat(parts).long()

    def global_ids(self, global_tokens):
        """32 BiCodec global ids -> vocabulary ids, (32,)."""
        glob = torch.as_tensor(global_tokens).reshape(-1).long().cpu()
        if glob.numel() != self.token_num:
            raise ValueError(f"expected {self.token_num} global tokens, got {glob.numel()}")
        if int(glob.min()) < 0 or int(glob.max()) >= self.num_global_tokens:
            raise ValueError(f"global token ids must lie in [0, {self.num_global_tokens})")
        return glob + self.global_offset

    def semantic_ids(self, semantic_tokens):
        """BiCodec semantic ids -> vocabulary ids, (T,)."""
        sem = torch.as_tensor(semantic_tokens).reshape(-1).long().cpu()
        if sem.numel() and (int(sem.min()) < 0 or int(sem.max()) >= self.num_semantic_tokens):
            raise ValueError(
                f"semantic token ids must lie in [0, {self.num_semantic_tokens}): do the "
                "tokens come from a codec with another codebook size than num_semantic_tokens?"
            )
        return sem + self.semantic_offset

    def training_sequence(self, text_ids, global_tokens, semantic_tokens, predict_global=True):
        """A full sequence and where its loss starts.

        Arguments
        ---------
        text_ids : sequence of int
            SentencePiece ids.
        global_tokens : torch.Tensor
            (32,) BiCodec global ids.
        semantic_tokens : torch.Tensor
            (T,) BiCodec semantic ids.
        predict_global : bool
            Loss on the global tokens too (the LM can then invent a voice), or
            on the semantic tokens only (global tokens always given).

        Returns
        -------
        tokens : torch.Tensor
            (L,) int64, ending with ``<|end_semantic_token|>``.
        loss_start : int
            Index into the next-token targets ``tokens[1:]`` of the first
            target that is trained: the first global token (``predict_global``)
            or the first semantic token.
        """
        prefix = self.prompt(text_ids)  # ends with <|start_global_token|>
        tokens = torch.cat(
            [
                prefix,
                self.global_ids(global_tokens),
                torch.tensor([END_GLOBAL, START_SEMANTIC]),
                self.semantic_ids(semantic_tokens),
                torch.tensor([END_SEMANTIC]),
            ]
        )
        # targets[j] = tokens[j + 1]; the first global token is tokens[len(prefix)].
        loss_start = len(prefix) - 1
        if not predict_global:
            loss_start += self.token_num + 2
        return tokens, loss_start

    # ------------------------------------------------------------ strings
    def to_string(self, ids, text_tokenizer=None):
        """Vocabulary ids -> the Spark-TTS token string (text pieces as ``<|text_p|>``
        unless a SentencePiece processor is given).

        Arguments
        ---------
        ids : sequence of int
            Vocabulary ids.
        text_tokenizer : sentencepiece.SentencePieceProcessor, optional
            To write text pieces as text.

        Returns
        -------
        str
        """
        out = []
        for i in torch.as_tensor(ids).reshape(-1).tolist():
            if i < self.text_offset:
                out.append(SPECIAL_TOKENS[i])
            elif i < self.global_offset:
                piece = i - self.text_offset
                out.append(
                    text_tokenizer.id_to_piece(piece) if text_tokenizer else f"<|text_{piece}|>"
                )
            elif i < self.semantic_offset:
                out.append(f"<|bicodec_global_{i - self.global_offset}|>")
            else:
                out.append(f"<|bicodec_semantic_{i - self.semantic_offset}|>")
        return "".join(out)


def vocab_from_hparams(hparams):
    """The :class:`SparkTTSVocab` of a recipe's hparams, checked against ``vocab_size``.

    Example
    -------
    >>> hp = {"text_vocab_size": 10, "num_semantic_tokens": 64, "num_global_tokens": 4096,
    ...       "global_token_num": 32, "num_special_tokens": 8, "vocab_size": 4178}
    >>> vocab_from_hparams(hp).semantic_offset
    4114
    """
    vocab = SparkTTSVocab(
        text_vocab_size=hparams["text_vocab_size"],
        num_semantic_tokens=hparams["num_semantic_tokens"],
        num_global_tokens=hparams["num_global_tokens"],
        token_num=hparams["global_token_num"],
    )
    if (
        hparams["num_special_tokens"] != NUM_SPECIAL_TOKENS
        or hparams["vocab_size"] != vocab.vocab_size
    ):
        raise ValueError(
            f"num_special_tokens must be {NUM_SPECIAL_TOKENS} and vocab_size "
            f"{vocab.vocab_size}; got {hparams['num_special_tokens']} and {hparams['vocab_size']}"
        )
    return vocab
