#!/usr/bin/env python3
"""Checks a DASB token store against BiCodec: stored tokens and their decoding.

For every utterance of DASB's json files, the audio is read and resampled
as DASB's ``TokensExtractor`` does (SpeechBrain ``read_audio``, torchaudio
``Resample``), tokenized by the project's ``BiCodecTokenizer``, and compared
with what DASB's ``TokensLoader`` gives back from the store:

* the semantic codebook equals the semantic tokens;
* every frame's global codebooks give the utterance's 32 global tokens;
* ``tokens_to_sig`` of the stored tokens (what DASB's TTS recipes call)
  equals ``BiCodecTokenizer.decode`` of the global + semantic tokens.

Usage::

    python recipes/dasb/check_tokens.py --dasb /path/to/benchmarks/DASB \\
        --tokens results/bicodec/save/ljspeech --data_folder /path/to/LJSpeech-1.1 \\
        --json results/bicodec/train.json results/bicodec/valid.json \\
        --source /models/Spark-TTS-0.5B

It prints one JSON line per utterance and a summary, and exits with 1 if any
check fails.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import sys

import soundfile
import torch
import torchaudio
from speechbrain.dataio.dataio import read_audio

from bicodec_plugin.downstream.dasb import BiCodecDASBTokenizer


def read_like_dasb(path, sample_rate):
    """Audio as DASB's extractor feeds it to the tokenizer (its ``audio_pipeline``)."""
    sig = read_audio(path)
    rate = soundfile.info(path).samplerate
    return torchaudio.transforms.Resample(rate, sample_rate)(sig)


def check_utterance(dasb, stored, wav):
    """Compares one stored (N, K) token array with the tokenizer's output for ``wav``.

    Arguments
    ---------
    dasb : BiCodecDASBTokenizer
        The tokenizer the store was made with (same ``global_codebooks``).
    stored : torch.Tensor
        (N, K) ids as DASB's ``TokensLoader`` returns them.
    wav : torch.Tensor
        (T,) audio at the tokenizer's rate, as DASB read it.

    Returns
    -------
    dict
        ``frames`` (stored, true), ``semantic_equal``, ``global_equal``,
        ``decode_equal`` and ``max_abs_diff`` of the decoded audio.

    Example
    -------
    >>> dasb = BiCodecDASBTokenizer("tiny_release")  # doctest: +SKIP
    >>> wav = torch.randn(16000)  # doctest: +SKIP
    >>> check_utterance(dasb, dasb.sig_to_tokens(wav[None])[0], wav)["decode_equal"]  # doctest: +SKIP
    True
    """
    glob, semantic, _ = dasb.tokenizer.encode_batch(wav[None])
    stored = stored.to(semantic.device)
    n = min(stored.shape[0], semantic.shape[1])
    voted, _, _ = dasb.split_tokens(stored[None])
    decoded = dasb.tokens_to_sig(stored[None])
    expected = dasb.tokenizer.decode(glob, stored[None, :, dasb.codebooks.index(0)])
    return {
        "frames": [int(stored.shape[0]), int(semantic.shape[1])],
        "semantic_equal": bool(
            stored.shape[0] == semantic.shape[1]
            and torch.equal(stored[:n, dasb.codebooks.index(0)], semantic[0, :n])
        ),
        "global_equal": bool(torch.equal(voted[0], glob[0])),
        "decode_equal": bool(torch.equal(decoded, expected)),
        "max_abs_diff": float((decoded - expected).abs().max()),
    }


def main(argv=None):
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dasb", required=True, help="benchmarks/DASB folder (for its TokensLoader)"
    )
    parser.add_argument(
        "--tokens", required=True, help="folder with tokens.scp (DASB's save_folder/<dataset>)"
    )
    parser.add_argument("--json", nargs="+", required=True, help="DASB's prepared json files")
    parser.add_argument("--data_folder", required=True, help="replaces {data_root} in the json")
    parser.add_argument("--source", required=True, help="BiCodec release or export folder")
    parser.add_argument("--global_codebooks", type=int, default=32, help="as at extraction")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="check the first N utterances")
    args = parser.parse_args(argv)

    sys.path.insert(0, args.dasb)
    from utils.tokens import TokensLoader  # DASB's own loader

    loader = TokensLoader(args.tokens)
    dasb = BiCodecDASBTokenizer(
        args.source, global_codebooks=args.global_codebooks, run_opts={"device": args.device}
    )
    items = {}
    for path in args.json:
        with open(path, encoding="utf-8") as f:
            items.update(json.load(f))
    failed = checked = 0
    for uttid, item in list(items.items())[: args.limit]:
        wav = read_like_dasb(item["wav"].replace("{data_root}", args.data_folder), dasb.sample_rate)
        result = check_utterance(dasb, loader.tokens_by_uttid(uttid), wav.to(dasb.device))
        ok = result["semantic_equal"] and result["global_equal"] and result["decode_equal"]
        failed += not ok
        checked += 1
        print(json.dumps({"uttid": uttid, **result}), flush=True)
    print(json.dumps({"checked": checked, "failed": failed}))
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
