#!/usr/bin/env python3
"""Resynthesises a manifest with BiCodec and scores the reconstructions.

Every file of a JSON-Lines manifest (``{"index", "wav_path"[, "text"]}``,
as written by ``prepare_manifest.py``) is tokenized and decoded again. The
output folder receives:

* ``wavs/<index>.wav``: the resynthesis at the model rate (32-bit float);
* ``tokens/<index>.npz``: its ``global`` (1, 32) and ``semantic`` (1, T) tokens;
* ``metrics.csv``: one row per file and a final ``mean`` row (NaNs skipped);
* ``failed.jsonl``: the files that could not be processed, with the reason;
* ``transcripts.jsonl``: reference text and ASR hypothesis (with ``wer``);
* ``summary.json``: the means, the token bitrate and the codebook usage.

Metrics compare the resynthesis with the reference loaded the way the
tokenizer loads it (model rate, soxr "VHQ", the model's volume
normalisation), cut to the output length: the codec drops up to hop - 1
samples at the end. Signal metrics come from :mod:`bicodec_plugin.evaluation.metrics`
(``si_sdr``, ``stoi``, ``pesq_nb``, ``pesq_wb``, ``mel_distance``);
model-based ones from :mod:`bicodec_plugin.evaluation.scorers`: ``spk_sim``
(speaker cosine), ``mos`` (gives ``mos`` of the resynthesis and ``mos_ref``
of the reference) and ``wer`` (gives ``wer`` and ``cer`` against the
manifest's ``text``, or against the ASR transcript of the reference).

Rerunning resumes: a file whose wav and tokens exist is not synthesised
again (``--overwrite`` forces it); metrics are always recomputed.

Usage::

    python recipes/resynthesize.py --manifest manifests/valid.jsonl \\
        --output results/resynth --release /models/Spark-TTS-0.5B/ \\
        --metrics stoi,pesq_wb,si_sdr,mel_distance,spk_sim,mos,wer --device cuda:0

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import csv
import importlib
import json
import logging
import math
import os
import sys

import numpy as np
import soundfile
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from speechbrain.utils.logger import get_logger

from bicodec_plugin.codec.audio import read_audio_file
from bicodec_plugin.evaluation.metrics import METRICS, codebook_usage, compute_all, token_bitrate
from bicodec_plugin.inference import load_tokenizer
from bicodec_plugin.training.data import read_manifests

logger = get_logger(__name__)

DEFAULT_METRICS = ("stoi", "pesq_nb", "pesq_wb", "si_sdr", "mel_distance")
# Model-based metric -> the CSV columns it fills.
MODEL_METRICS = {"spk_sim": ("spk_sim",), "mos": ("mos", "mos_ref"), "wer": ("wer", "cer")}


def parse_metrics(text):
    """Splits ``"stoi,pesq_wb,mos"`` and checks every name.

    Arguments
    ---------
    text : str
        Comma-separated metric names.

    Returns
    -------
    list of str
        The names, in order, without duplicates.

    Example
    -------
    >>> parse_metrics("stoi, si_sdr,stoi,wer")
    ['stoi', 'si_sdr', 'wer']
    """
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    known = list(METRICS) + list(MODEL_METRICS)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {known}")
    return names


def metric_columns(names):
    """CSV columns filled by the metrics ``names``.

    Example
    -------
    >>> metric_columns(["si_sdr", "mos", "wer"])
    ['si_sdr', 'mos', 'mos_ref', 'wer', 'cer']
    """
    columns = []
    for name in names:
        columns.extend(MODEL_METRICS.get(name, (name,)))
    return columns


def load_scorers(names, device="cpu"):
    """Builds the model-based scorers among ``names`` (each loaded once).

    Raises ImportError (naming ``pip install .[eval]``) before any file is
    processed when a package is missing.

    Arguments
    ---------
    names : list of str
        Metric names; only ``spk_sim``, ``mos`` and ``wer`` load a model.
    device : str
        Device of the models.

    Returns
    -------
    dict
        Metric name -> scorer.
    """
    from bicodec_plugin.evaluation import scorers as eval_models

    classes = {
        "spk_sim": eval_models.SpeakerSimilarity,
        "mos": eval_models.MOSPredictor,
        "wer": eval_models.WERScorer,
    }
    return {name: classes[name](device=device) for name in names if name in classes}


def check_signal_metrics(names):
    """Fails early (ImportError naming the extra) when pesq or pystoi is missing.

    Example
    -------
    >>> check_signal_metrics(["si_sdr", "mel_distance"])  # torch only: always there
    """
    backends = {"stoi": "pystoi", "pesq_nb": "pesq", "pesq_wb": "pesq"}
    for name in names:
        if name in backends:
            try:
                importlib.import_module(backends[name])
            except ImportError as err:
                raise ImportError(
                    f"metric {name} needs the optional package '{backends[name]}': "
                    "install it with `pip install .[eval]`"
                ) from err


def _file_name(index):
    """Manifest index -> a file name without path separators."""
    name = str(index).replace("/", "_").replace("\\", "_")
    return "_" + name if name in ("", ".", "..") else name


def _atomic_write(path, write):
    """Calls ``write(tmp_path)`` then renames, so no half-written file survives a crash."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{ext}"
    write(tmp)
    os.replace(tmp, path)


def _synthesise(tokenizer, wav_path, out_wav, out_tokens, overwrite):
    """Resynthesises one file, or reloads an earlier result.

    Returns ``(waveform (N,) float32 tensor, semantic tokens (T,) int64 array, reused)``.
    """
    if not overwrite and os.path.isfile(out_wav) and os.path.isfile(out_tokens):
        info = soundfile.info(out_wav)
        if info.samplerate == tokenizer.sample_rate:
            audio, _ = soundfile.read(out_wav, dtype="float32", always_2d=True)
            with np.load(out_tokens) as tokens:
                semantic = tokens["semantic"].reshape(-1).astype(np.int64)
            return torch.from_numpy(audio[:, 0]), semantic, True
        logger.warning("%s is at %d Hz, not the model's: redoing it", out_wav, info.samplerate)
    global_tokens, semantic_tokens = tokenizer.encode_file(wav_path)
    wav = tokenizer.decode(global_tokens, semantic_tokens)[0].detach().cpu().float()
    glob_np = global_tokens.detach().cpu().numpy()
    sem_np = semantic_tokens.detach().cpu().numpy()

    def save_tokens(path):
        with open(path, "wb") as fout:
            np.savez(fout, **{"global": glob_np, "semantic": sem_np})

    # Tokens first: the wav is written last and marks the file as done.
    _atomic_write(out_tokens, save_tokens)
    _atomic_write(
        out_wav,
        lambda path: soundfile.write(
            path, wav.numpy(), tokenizer.sample_rate, subtype="FLOAT", format="WAV"
        ),
    )
    return wav, sem_np.reshape(-1).astype(np.int64), False


def score_file(ref, est, sample_rate, names, scorers, text=None):
    """All requested metrics of one resynthesis.

    Arguments
    ---------
    ref : torch.Tensor
        Reference (N,) at ``sample_rate``, already cut to the output length.
    est : torch.Tensor
        Resynthesis (N,).
    sample_rate : int
        Rate of both.
    names : list of str
        Metric names (see ``--metrics``).
    scorers : dict
        Model-based scorers from :func:`load_scorers`.
    text : str, optional
        Transcript of the reference, for ``wer``.

    Returns
    -------
    row : dict
        Column -> float.
    transcript : dict or None
        ``reference_text``, ``reference_source`` and ``hypothesis`` when ``wer`` ran.
    """
    signal = [name for name in names if name in METRICS]
    row = compute_all(ref, est, sample_rate, which=signal) if signal else {}
    transcript = None
    for name in names:
        if name == "spk_sim":
            row["spk_sim"] = scorers["spk_sim"](ref, est, sample_rate)
        elif name == "mos":
            row["mos"] = scorers["mos"](est, sample_rate)
            row["mos_ref"] = scorers["mos"](ref, sample_rate)
        elif name == "wer":
            result = scorers["wer"](ref, est, sample_rate, text=text, return_text=True)
            row["wer"], row["cer"] = result["wer"], result["cer"]
            transcript = {
                "reference_text": result["reference_text"],
                "reference_source": "manifest" if text is not None else "asr",
                "hypothesis": result["hypothesis"],
            }
    return row, transcript


def _mean(values):
    """Mean ignoring NaN (``inf`` stays); NaN when nothing is left."""
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def format_table(means, bitrate, usage, codebook_size, token_rate, num_files):
    """The Markdown summary printed at the end.

    Example
    -------
    >>> usage = {"used_codes": 3, "usage_fraction": 0.75, "perplexity": 2.5, "entropy_bits": 1.3}
    >>> print(format_table({"stoi": 0.5}, 100.0, usage, 4, 50.0, 2))
    | metric | value |
    |---|---:|
    | stoi (mean of 2 files) | 0.5000 |
    | token bitrate (bit/s; 50 tokens/s x log2(4)) | 100.0 |
    | semantic codes used | 3 / 4 (75.0%) |
    | semantic code perplexity | 2.50 |
    """
    lines = ["| metric | value |", "|---|---:|"]
    for name, value in means.items():
        lines.append(f"| {name} (mean of {num_files} files) | {value:.4f} |")
    lines.append(
        f"| token bitrate (bit/s; {token_rate:g} tokens/s x log2({codebook_size})) "
        f"| {bitrate:.1f} |"
    )
    if usage is not None:
        lines.append(
            f"| semantic codes used | {usage['used_codes']} / {codebook_size} "
            f"({100 * usage['usage_fraction']:.1f}%) |"
        )
        lines.append(f"| semantic code perplexity | {usage['perplexity']:.2f} |")
    return "\n".join(lines)


def resynthesize(
    manifest,
    output,
    tokenizer,
    metrics=DEFAULT_METRICS,
    limit=None,
    overwrite=False,
    scorers=None,
    device="cpu",
):
    """Resynthesises and scores every file of one or more manifests.

    Arguments
    ---------
    manifest : str or list of str
        JSON-Lines manifests (see :func:`bicodec_plugin.training.data.read_manifests`).
    output : str
        Output folder (created).
    tokenizer : BiCodecTokenizer
        The codec.
    metrics : list of str
        Metric names (``METRICS`` keys and ``spk_sim``, ``mos``, ``wer``).
    limit : int, optional
        Process only the first ``limit`` files.
    overwrite : bool
        Resynthesise files whose outputs exist.
    scorers : dict, optional
        Already loaded model-based scorers (default: loaded here).
    device : str
        Device of the model-based scorers loaded here.

    Returns
    -------
    dict
        The summary also written to ``summary.json``.
    """
    names = list(metrics)
    check_signal_metrics(names)
    scorers = dict(scorers or {})
    scorers.update(load_scorers([n for n in names if n not in scorers], device))
    entries = read_manifests(manifest, compute_duration=False)
    items = list(entries.items())[: limit if limit is not None else None]

    for sub in ("wavs", "tokens"):
        os.makedirs(os.path.join(output, sub), exist_ok=True)
    sample_rate = tokenizer.sample_rate
    codebook_size = int(tokenizer.codec.quantizer.codebook_size)
    columns = ["index", "duration", "num_tokens"] + metric_columns(names)
    rows, failed, transcripts, all_tokens = [], [], [], []
    seen = {}

    for number, (index, entry) in enumerate(items, start=1):
        name = _file_name(index)
        try:
            if name in seen:
                raise ValueError(f"index {index!r} maps to the same file name as {seen[name]!r}")
            seen[name] = index
            est, semantic, reused = _synthesise(
                tokenizer,
                entry["wav_path"],
                os.path.join(output, "wavs", f"{name}.wav"),
                os.path.join(output, "tokens", f"{name}.npz"),
                overwrite,
            )
            ref = read_audio_file(
                entry["wav_path"], sample_rate, volume_norm=tokenizer.hparams.volume_normalize
            )
            length = min(ref.shape[0], est.shape[0])
            if length == 0:
                raise ValueError("the resynthesis is empty (input shorter than one hop?)")
            ref, est = ref[:length], est[:length]
            scores, transcript = score_file(
                ref, est, sample_rate, names, scorers, text=entry.get("text")
            )
        except Exception as err:  # one bad file must not stop the set
            reason = f"{type(err).__name__}: {err}"
            logger.warning("[%d/%d] %s failed: %s", number, len(items), index, reason)
            failed.append({"index": index, "wav_path": entry.get("wav_path"), "reason": reason})
            continue
        logger.info(
            "[%d/%d] %s %s", number, len(items), index, "(reused)" if reused else "resynthesised"
        )
        rows.append(
            {
                "index": index,
                "duration": length / sample_rate,
                "num_tokens": len(semantic),
                **scores,
            }
        )
        all_tokens.append(semantic)
        if transcript is not None:
            transcripts.append({"index": index, **transcript})

    means = {col: _mean([row[col] for row in rows]) for col in columns[3:]}
    with open(os.path.join(output, "metrics.csv"), "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        if rows:
            writer.writerow(
                {
                    "index": "mean",
                    "duration": _mean([row["duration"] for row in rows]),
                    "num_tokens": _mean([row["num_tokens"] for row in rows]),
                    **means,
                }
            )
    _write_jsonl(os.path.join(output, "failed.jsonl"), failed)
    if "wer" in names:
        _write_jsonl(os.path.join(output, "transcripts.jsonl"), transcripts)

    usage = codebook_usage(np.concatenate(all_tokens), codebook_size) if all_tokens else None
    bitrate = token_bitrate(tokenizer.token_rate, codebook_size)
    summary = {
        "num_files": len(rows),
        "num_failed": len(failed),
        "sample_rate": sample_rate,
        "token_rate": tokenizer.token_rate,
        "codebook_size": codebook_size,
        "token_bitrate": bitrate,
        "codebook_usage": usage,
        "means": means,
    }
    with open(os.path.join(output, "summary.json"), "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=1)
    summary["table"] = format_table(
        means, bitrate, usage, codebook_size, tokenizer.token_rate, len(rows)
    )
    return summary


def _write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as fout:
        for record in records:
            fout.write(json.dumps(record, ensure_ascii=False) + "\n")


def parse_args(argv=None):
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", nargs="+", required=True, help="JSON-Lines manifest(s)")
    parser.add_argument("--output", required=True, help="output folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--release", help="Spark-TTS-style release folder")
    source.add_argument("--hparams", help="folder exported by training (hyperparams.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help="comma-separated: " + ",".join(list(METRICS) + list(MODEL_METRICS)),
    )
    parser.add_argument("--limit", type=int, default=None, help="first N files only")
    parser.add_argument("--overwrite", action="store_true", help="resynthesise files already done")
    args = parser.parse_args(argv)
    try:
        args.metrics = parse_metrics(args.metrics)
    except ValueError as err:
        parser.error(str(err))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(argv=None):
    """Runs the recipe; returns the exit status (1 when no file succeeded)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # a line per transcription
    tokenizer = load_tokenizer(args.release, args.hparams, args.device)
    summary = resynthesize(
        args.manifest,
        args.output,
        tokenizer,
        metrics=args.metrics,
        limit=args.limit,
        overwrite=args.overwrite,
        device=args.device,
    )
    print(summary["table"])
    if summary["num_failed"]:
        print(
            f"\n{summary['num_failed']} file(s) failed: see "
            f"{os.path.join(args.output, 'failed.jsonl')}"
        )
    return 0 if summary["num_files"] else 1


if __name__ == "__main__":
    sys.exit(main())
