#!/usr/bin/env python3
"""Text + reference voice -> speech, with a trained TTS LM and BiCodec.

1. The reference wav is tokenized by the codec; its 32 global tokens (first
   6 s of audio, as Spark-TTS) give the voice.
2. The LM continues the Spark-TTS prompt ``<|task_tts|> <|start_content|>
   text <|end_content|> <|start_global_token|> 32 global
   <|end_global_token|> <|start_semantic_token|>`` one semantic token at a
   time (temperature, top-k, top-p sampling; temperature 0 is greedy) until
   it writes ``<|end_semantic_token|>`` or reaches ``max_new_tokens``
   (default 3000 = 60 s). Only ids allowed at each point of the layout are
   sampled (semantic ids or the end token), so the output always decodes.
   Without a reference, a model trained with ``predict_global: True`` first
   writes the 32 global tokens itself.
3. BiCodec decodes (global, semantic) tokens into audio at its sample rate.

Usage (``hyperparams.yaml`` is the one train.py saved in its output folder)::

    python recipes/tts/synthesize.py results/tts_base/1234/hyperparams.yaml \\
        --release /models/Spark-TTS-0.5B --text "Hello there." --reference voice.wav \\
        --output hello.wav

The LM recomputes the whole sequence at every step (SpeechBrain's
``TransformerLM`` has no key/value cache): generation costs grow with the
square of the length.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import logging
import os
import sys
from dataclasses import dataclass

import sentencepiece
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import write_audio
from speechbrain.utils.checkpoints import Checkpointer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spark_prompt import END_GLOBAL, END_SEMANTIC, START_SEMANTIC, vocab_from_hparams
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


@dataclass
class SynthesisResult:
    """What :func:`synthesize` returns.

    Attributes
    ----------
    wav : torch.Tensor
        (N,) audio at ``sample_rate`` (N = hop * number of semantic tokens).
    sample_rate : int
        Codec sample rate.
    global_tokens : torch.Tensor
        (32,) the voice's global tokens (given or generated).
    semantic_tokens : torch.Tensor
        (T,) generated semantic tokens.
    stop_reason : str
        ``"end_token"`` or ``"max_length"``.
    """

    wav: torch.Tensor
    sample_rate: int
    global_tokens: torch.Tensor
    semantic_tokens: torch.Tensor
    stop_reason: str


class SparkTTS:
    """A trained LM with its vocabulary and text tokenizer (no codec).

    Arguments
    ---------
    lm_model : torch.nn.Module
        Causal LM: ids (1, L) -> logits (1, L, V).
    vocab : SparkTTSVocab
        Id layout.
    text_tokenizer : sentencepiece.SentencePieceProcessor
        Text -> piece ids.
    predict_global : bool
        Whether the LM was trained to write global tokens.
    max_length : int
        Longest sequence the LM takes (positional encoding size).
    """

    def __init__(self, lm_model, vocab, text_tokenizer, predict_global=True, max_length=4096):
        self.lm_model = lm_model.eval()
        self.vocab = vocab
        self.text_tokenizer = text_tokenizer
        self.predict_global = predict_global
        self.max_length = int(max_length)

    @property
    def device(self):
        """Device of the LM's parameters."""
        return next(self.lm_model.parameters()).device

    @classmethod
    def from_hparams(cls, hparams_file, overrides=None, device="cpu", ckpt="loss"):
        """Loads the LM of a training run from its (saved) hparams file.

        Arguments
        ---------
        hparams_file : str
            The ``hyperparams.yaml`` that train.py saved (or the recipe yaml
            with the same overrides).
        overrides : dict or str, optional
            HyperPyYAML overrides.
        device : str
            Where the LM runs.
        ckpt : str
            ``"loss"``: the checkpoint of lowest loss (valid loss when the
            run validated); ``"latest"``: the newest.

        Returns
        -------
        SparkTTS
        """
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
        vocab = vocab_from_hparams(hparams)
        model_dir = hparams["text_tokenizer"].keywords["model_dir"]
        model_type = hparams["text_tokenizer"].keywords["model_type"]
        sp_path = os.path.join(model_dir, f"{hparams['text_vocab_size']}_{model_type}.model")
        if not os.path.isfile(sp_path):
            raise FileNotFoundError(f"{sp_path}: no text tokenizer; has train.py run?")
        text_tokenizer = sentencepiece.SentencePieceProcessor(model_file=sp_path)
        model = hparams["lm_model"]
        checkpointer = Checkpointer(
            hparams["checkpointer"].checkpoints_dir, recoverables={"lm_model": model}
        )
        found = checkpointer.recover_if_possible(min_key="loss" if ckpt == "loss" else None)
        if found is None:
            raise FileNotFoundError(
                f"{checkpointer.checkpoints_dir}: no checkpoint to load the LM from"
            )
        logger.info("LM loaded from %s", found.path)
        return cls(
            model.to(device),
            vocab,
            text_tokenizer,
            predict_global=hparams["predict_global"],
            max_length=hparams["max_length"],
        )

    def text_ids(self, text):
        """Text -> SentencePiece ids (list of int)."""
        return self.text_tokenizer.encode(text)

    @torch.no_grad()
    def score(self, text, global_tokens, semantic_tokens):
        """Teacher-forced scores of an utterance's semantic tokens.

        Arguments
        ---------
        text : str
            Its text.
        global_tokens : torch.Tensor
            (32,) its global tokens.
        semantic_tokens : torch.Tensor
            (T,) its semantic tokens.

        Returns
        -------
        dict
            ``sem_acc``: share of semantic tokens that are the LM's argmax
            given the true history; ``loss``: their mean cross-entropy.
        """
        self.lm_model.eval()
        tokens, _ = self.vocab.training_sequence(
            self.text_ids(text), global_tokens, semantic_tokens, predict_global=False
        )
        tokens = tokens.to(self.device)
        logits = self.lm_model(tokens[:-1].unsqueeze(0))[0].float()  # (L - 1, V)
        targets = tokens[1:]
        semantic = self.vocab.is_semantic(targets)
        return {
            "sem_acc": float((logits.argmax(-1) == targets)[semantic].float().mean()),
            "loss": float(torch.nn.functional.cross_entropy(logits[semantic], targets[semantic])),
        }

    @torch.no_grad()
    def next_logits(self, sequence):
        """Logits of the token after ``sequence`` (L,) -> (V,)."""
        return self.lm_model(sequence.unsqueeze(0))[0, -1].float()

    @torch.no_grad()
    def generate(
        self,
        text,
        global_tokens=None,
        temperature=0.8,
        top_k=50,
        top_p=0.95,
        max_new_tokens=3000,
        generator=None,
    ):
        """Text (+ the voice's global tokens) -> (global, semantic, stop reason).

        Arguments
        ---------
        text : str
            What to say.
        global_tokens : torch.Tensor, optional
            (32,) global tokens of the voice; ``None``: generated (needs a
            model trained with ``predict_global``).
        temperature, top_k, top_p : float, int, float
            Sampling (Spark-TTS: 0.8, 50, 0.95); ``temperature <= 0``: greedy.
        max_new_tokens : int
            Most semantic tokens (50 per second).
        generator : torch.Generator, optional
            Random source on the LM's device.

        Returns
        -------
        global_tokens : torch.Tensor
            (32,) int64.
        semantic_tokens : torch.Tensor
            (T,) int64.
        stop_reason : str
            ``"end_token"`` or ``"max_length"``.
        """
        self.lm_model.eval()
        vocab, device = self.vocab, self.device
        sample = {
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "generator": generator,
        }
        if global_tokens is None and not self.predict_global:
            raise ValueError(
                "this LM was trained with predict_global: False; give a reference voice "
                "(reference wav or its global tokens)"
            )
        sequence = vocab.prompt(self.text_ids(text), global_tokens).to(device)
        if global_tokens is None:
            lo, hi = vocab.global_range
            for _ in range(vocab.token_num):
                logits = self.next_logits(sequence)
                token = sample_next_token(restrict(logits, lo, hi), **sample)
                sequence = torch.cat([sequence, token.view(1)])
            global_tokens = sequence[-vocab.token_num :] - vocab.global_offset
            sequence = torch.cat([sequence, sequence.new_tensor([END_GLOBAL, START_SEMANTIC])])
        prompt_length = sequence.numel()
        # The LM sees at most max_length positions; the last prediction needs
        # prompt + (n - 1) tokens of input.
        limit = min(int(max_new_tokens), self.max_length - prompt_length + 1)
        if limit < max_new_tokens:
            logger.warning(
                "max_new_tokens %d capped to %d by the LM's max_length %d",
                max_new_tokens,
                limit,
                self.max_length,
            )
        lo, hi = vocab.semantic_range
        stop_reason = "max_length"
        for _ in range(max(limit, 0)):
            logits = self.next_logits(sequence)
            token = sample_next_token(restrict(logits, lo, hi, extra=END_SEMANTIC), **sample)
            if int(token) == END_SEMANTIC:
                stop_reason = "end_token"
                break
            sequence = torch.cat([sequence, token.view(1)])
        semantic = sequence[prompt_length:] - vocab.semantic_offset
        return global_tokens.reshape(-1).long().cpu(), semantic.long().cpu(), stop_reason


def restrict(logits, lo, hi, extra=None):
    """Keeps the logits of ids in [lo, hi) (and ``extra``); others get -inf.

    Example
    -------
    >>> restrict(torch.zeros(5), 1, 3, extra=4).tolist()
    [-inf, 0.0, 0.0, -inf, 0.0]
    """
    out = torch.full_like(logits, float("-inf"))
    out[lo:hi] = logits[lo:hi]
    if extra is not None:
        out[extra] = logits[extra]
    return out


def sample_next_token(logits, temperature=0.8, top_k=50, top_p=0.95, generator=None):
    """Samples one id from (V,) logits: temperature, then top-k, then top-p (nucleus).

    Arguments
    ---------
    logits : torch.Tensor
        (V,) unnormalised scores (-inf for forbidden ids).
    temperature : float
        Divides the logits; ``<= 0`` takes the argmax (greedy).
    top_k : int
        Keep the k best ids (0 or None: all).
    top_p : float
        Keep the smallest set of best ids whose probability reaches p (1: all).
    generator : torch.Generator, optional
        Random source.

    Returns
    -------
    torch.Tensor
        () int64.

    Example
    -------
    >>> logits = torch.tensor([0.0, 3.0, 1.0, float("-inf")])
    >>> int(sample_next_token(logits, temperature=0))
    1
    >>> int(sample_next_token(logits, top_k=1))
    1
    >>> int(sample_next_token(logits, top_p=0.5))
    1
    """
    if temperature is None or temperature <= 0:
        return logits.argmax()
    logits = logits / temperature
    if top_k:
        k = min(int(top_k), logits.numel())
        kth = torch.topk(logits, k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the better ids
        remove = before >= top_p  # the best id is always kept
        logits = logits.masked_fill(
            torch.zeros_like(remove).scatter(0, order, remove), float("-inf")
        )
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[0]


def synthesize(
    tts,
    codec,
    text,
    reference=None,
    global_tokens=None,
    temperature=0.8,
    top_k=50,
    top_p=0.95,
    max_new_tokens=3000,
    seed=None,
):
    """Text + reference voice -> waveform.

    Arguments
    ---------
    tts : SparkTTS
        The trained LM (:meth:`SparkTTS.from_hparams`).
    codec : bicodec_plugin.inference.BiCodecTokenizer
        The codec whose tokens the LM was trained on.
    text : str
        What to say.
    reference : str, optional
        Audio file of the voice (its first 6 s give the global tokens).
    global_tokens : torch.Tensor, optional
        (32,) global tokens instead of ``reference``; neither: the LM
        writes them (``predict_global`` models).
    temperature, top_k, top_p : float, int, float
        Sampling; ``temperature=0``: greedy.
    max_new_tokens : int
        Most semantic tokens (3000 = 60 s).
    seed : int, optional
        Seed of the sampling (reproducible output).

    Returns
    -------
    SynthesisResult

    Example
    -------
    >>> tts = SparkTTS.from_hparams("results/tts_tiny/1234/hyperparams.yaml")  # doctest: +SKIP
    >>> codec = BiCodecTokenizer.from_release("tiny_release")  # doctest: +SKIP
    >>> out = synthesize(tts, codec, "Hello there.", reference="voice.wav")  # doctest: +SKIP
    >>> out.wav.shape[0] == codec.hop_length * out.semantic_tokens.numel()  # doctest: +SKIP
    True
    """
    if reference is not None and global_tokens is not None:
        raise ValueError("give a reference wav or global tokens, not both")
    if reference is not None:
        global_tokens, _ = codec.encode_file(reference)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=tts.device).manual_seed(int(seed))
    glob, semantic, stop_reason = tts.generate(
        text,
        global_tokens=global_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        generator=generator,
    )
    if semantic.numel() == 0:
        logger.warning("the LM ended at once: empty audio")
        wav = torch.zeros(0)
    else:
        wav = codec.decode(glob.unsqueeze(0), semantic.unsqueeze(0))[0].cpu()
    return SynthesisResult(wav, int(codec.sample_rate), glob, semantic, stop_reason)


def parse_args(argv=None):
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams", help="hyperparams.yaml saved by train.py")
    parser.add_argument("--text", required=True, help="what to say")
    parser.add_argument("--reference", help="audio of the voice (else the LM invents one)")
    parser.add_argument("--output", required=True, help="output wav")
    codec = parser.add_mutually_exclusive_group(required=True)
    codec.add_argument("--release", help="Spark-TTS release folder of the codec")
    codec.add_argument("--codec_hparams", help="codec folder exported by recipes/train.py")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    parser.add_argument("--top_k", type=int, default=50)
    parser.add_argument("--top_p", type=float, default=0.95)
    parser.add_argument("--max_new_tokens", type=int, default=3000, help="3000 = 60 s")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ckpt", choices=["loss", "latest"], default="loss")
    return parser.parse_args(argv)


def main(argv=None):
    """Loads LM and codec, synthesises, writes the wav; returns the result."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from bicodec_plugin.inference import load_tokenizer

    tts = SparkTTS.from_hparams(args.hparams, device=args.device, ckpt=args.ckpt)
    codec = load_tokenizer(args.release, args.codec_hparams, args.device)
    result = synthesize(
        tts,
        codec,
        args.text,
        reference=args.reference,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    write_audio(args.output, result.wav, result.sample_rate)
    print(
        f"{args.output}: {result.wav.shape[0] / result.sample_rate:.2f} s, "
        f"{result.semantic_tokens.numel()} semantic tokens, stopped by {result.stop_reason}"
    )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
