#!/usr/bin/env python3
"""The embedded demo: build a corpus offline, train a tiny BiCodec, resynthesise.

1. synthesises a small English corpus with an offline TTS voice (``.[demo]``),
2. builds a tiny random wav2vec2 (no weights can be downloaded here),
3. trains ``hparams/bicodec_tiny.yaml`` on it with ``recipes/train.py`` (CPU),
4. loads the exported model with ``BiCodecTokenizer.from_hparams``, tokenizes
   a held-out clip and resynthesises it, writing wavs, a spectrogram PNG and
   the reconstruction metrics.

Usage::

    python recipes/demo.py [--output demo_output] [--steps 150]

Rerunning resumes training from its last checkpoint.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "recipes"))

from demo_corpus import build_demo_corpus  # noqa: E402

from bicodec_plugin.testing import make_tiny_wav2vec2  # noqa: E402


def main(argv=None):
    """Runs the four stages and prints where the outputs are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output)

    corpus = build_demo_corpus(os.path.join(out, "corpus"), args.utterances, sample_rate=16000)
    print(
        f"corpus: {corpus['num_train']} train / {corpus['num_valid']} valid utterances, "
        f"{corpus['total_duration']:.0f} s of speech"
    )
    ssl_dir = make_tiny_wav2vec2(os.path.join(out, "wav2vec2"))

    import train  # recipes/train.py

    run = os.path.join(out, "run")
    train.main(
        [
            os.path.join(REPO, "hparams", "bicodec_tiny.yaml"),
            "--ssl_source",
            ssl_dir,
            "--train_manifest",
            corpus["train_manifest"],
            "--valid_manifest",
            corpus["valid_manifest"],
            "--output_folder",
            run,
            "--max_steps",
            str(args.steps),
            "--steps_per_epoch",
            str(max(args.steps // 3, 1)),
            "--device",
            args.device,
            "--noprogressbar",
        ]
    )

    import soundfile

    from bicodec_plugin.codec.audio import read_audio_file
    from bicodec_plugin.evaluation.metrics import compute_all
    from bicodec_plugin.inference import BiCodecTokenizer
    from bicodec_plugin.training.plots import save_spectrogram_comparison

    tokenizer = BiCodecTokenizer.from_hparams(
        os.path.join(run, "export"), run_opts={"device": args.device}
    )
    with open(corpus["valid_manifest"], encoding="utf-8") as fin:
        item = json.loads(fin.readline())
    clip = os.path.join(os.path.dirname(corpus["valid_manifest"]), item["wav_path"])
    global_tokens, semantic_tokens = tokenizer.encode_file(clip)
    wav = tokenizer.decode(global_tokens, semantic_tokens)[0].cpu()
    reference = read_audio_file(clip, tokenizer.sample_rate)[: wav.shape[0]]
    results = os.path.join(out, "resynthesis")
    os.makedirs(results, exist_ok=True)
    soundfile.write(
        os.path.join(results, "reference.wav"), reference.numpy(), tokenizer.sample_rate
    )
    soundfile.write(os.path.join(results, "resynthesis.wav"), wav.numpy(), tokenizer.sample_rate)
    save_spectrogram_comparison(
        reference, wav, tokenizer.sample_rate, os.path.join(results, "spectrogram.png")
    )
    metrics = compute_all(reference, wav, tokenizer.sample_rate, which=["si_sdr", "mel_distance"])
    print(f"text: {item.get('text', '')}")
    print(f"global tokens {tuple(global_tokens.shape)}: {global_tokens[0, :8].tolist()} ...")
    print(f"semantic tokens {tuple(semantic_tokens.shape)}: {semantic_tokens[0, :12].tolist()} ...")
    print("metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    print(
        f"wrote {results}/reference.wav, resynthesis.wav, spectrogram.png; "
        f"training log {run}/train_log.txt; samples {run}/samples"
    )
    return torch.tensor(0)


if __name__ == "__main__":
    main()
