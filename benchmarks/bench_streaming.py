"""Streaming detokenization at full size: exactness, first-chunk latency, real-time factor.

What it measures
----------------
A full-size (released 16 kHz shape) BiCodec with random weights, the release of
``bench_codec.py`` (built once, or reused with ``--folder``), decodes ``--seconds``
of random tokens (seeded) two ways in one process, interleaved (whole, stream C=10,
C=25, C=50, then the reverse order, ...):

* ``whole``: ``BiCodecTokenizer.decode`` of the whole sequence (the reference point);
* ``stream``: ``tok.stream_decoder(glob, chunk_frames=C)`` fed ``C`` tokens per
  ``push`` (an LLM loop that hands over a chunk's worth of tokens at a time), then
  ``finish``; ``C`` may be a growing schedule such as ``10,25,50`` (chunks of 10,
  25, then 50 frames; fed 10 tokens per push); with the exact lookahead (the default, stream = decode) and, run once
  each, with the smaller ``--approx-lookaheads`` (each chunk's last frames decoded as
  if the sequence ended at the last token received);
* ``--window`` adds the window mode (each chunk re-decoded with its context) at C=25.

For each: the largest |stream - decode| and the SNR of the concatenated stream
against ``decode`` (dB; ``inf`` when identical), the tokens that must exist before
the first chunk comes out (chunk + lookahead), the first-chunk latency (wall-clock
seconds of the ``push`` calls until the first chunk is returned, tokens handed over
at once; and of the last of those calls alone, which is the latency when the LLM
is slower than the decoder), the total wall-clock and CPU seconds, the real-time
factor (total / audio seconds) and the ratio of the total to the whole decode
(CPU seconds, which a shared machine's load disturbs less than wall-clock).

Every figure is printed with the machine kind (``benchmarks/machine.py``) and the
load average.

Example
-------
    python benchmarks/bench_streaming.py --folder /tmp/bench_release --threads 2

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_codec import ensure_release, sync  # noqa: E402  (sibling script)
from machine import describe, load_average, machine_kind  # noqa: E402

from bicodec_plugin.inference import BiCodecTokenizer  # noqa: E402


def snr_db(reference, estimate):
    """SNR of ``estimate`` against ``reference`` in dB (``inf`` when identical).

    Example
    -------
    >>> round(snr_db(torch.ones(10), torch.ones(10) * 1.1), 1)
    20.0
    """
    noise = float(((estimate.double() - reference.double()) ** 2).sum())
    signal = float((reference.double() ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def chunk_spec(text):
    """``"25"`` -> 25; ``"10,25,50"`` -> (10, 25, 50), a growing chunk schedule.

    Example
    -------
    >>> chunk_spec("25"), chunk_spec("10,25,50")
    (25, (10, 25, 50))
    """
    sizes = tuple(int(size) for size in text.split(","))
    return sizes[0] if len(sizes) == 1 else sizes


def chunk_label(chunk):
    """The table's name for a chunk size or schedule."""
    return ",".join(map(str, chunk)) if isinstance(chunk, tuple) else str(chunk)


def run_stream(tok, glob, sem, chunk, lookahead=None, mode="cached", device="cpu"):
    """Feeds the smallest chunk's worth of tokens per push; returns the audio and the timings."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    stream = tok.stream_decoder(glob, chunk_frames=chunk, lookahead=lookahead, mode=mode)
    piece = min(chunk) if isinstance(chunk, tuple) else chunk
    chunks, first, first_push, first_tokens = [], None, None, None
    for start in range(0, sem.shape[1], piece):
        push_start = time.perf_counter()
        out = stream.push(sem[:, start : start + piece])
        if out and first is None:
            sync(device)
            now = time.perf_counter()
            first, first_push, first_tokens = now - wall, now - push_start, stream.received
        chunks += out
    chunks += stream.finish()
    sync(device)
    result = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "first_chunk_s": first,
        "first_chunk_last_push_s": first_push,
        "first_chunk_tokens": first_tokens,
        "lookahead": stream.lookahead,
        "exact_lookahead": stream.exact_lookahead,
        "chunks": len(chunks),
    }
    return torch.cat(chunks, dim=-1), result


def run_whole(tok, glob, sem, device="cpu"):
    """Whole-sequence decode; returns the audio and the timings."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    audio = tok.decode(glob, sem)
    sync(device)
    return audio, {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def measure(tok, args):
    """All runs; returns the rows of the table."""
    gen = torch.Generator().manual_seed(args.seed)
    frames = int(round(args.seconds * tok.token_rate))
    glob = torch.randint(0, 4096, (1, 32), generator=gen)
    sem = torch.randint(0, tok.codec.quantizer.codebook_size, (1, frames), generator=gen)
    audio_s = frames * tok.hop_length / tok.sample_rate
    reference, _ = run_whole(tok, glob, sem, args.device)  # warm-up
    exact = [("cached", c, None) for c in args.chunks]
    configs = [("whole", None, None)] + exact
    timings = {cfg: [] for cfg in configs}
    outputs = {}
    for rep in range(args.repeats):
        for cfg in configs if rep % 2 == 0 else configs[::-1]:
            mode, chunk, lookahead = cfg
            if mode == "whole":
                audio, res = run_whole(tok, glob, sem, args.device)
            else:
                audio, res = run_stream(tok, glob, sem, chunk, lookahead, mode, args.device)
            timings[cfg].append(res)
            outputs[cfg] = audio
        print(f"  round {rep + 1}/{args.repeats} done (load {load_average()})", flush=True)
    once = [("cached", c, la) for c in args.chunks for la in args.approx_lookaheads]
    if args.window:
        once.append(("window", 25, None))
    for cfg in once:
        mode, chunk, lookahead = cfg
        audio, res = run_stream(tok, glob, sem, chunk, lookahead, mode, args.device)
        timings[cfg] = [res]
        outputs[cfg] = audio
        print(f"  {mode} C={chunk_label(chunk)} lookahead={lookahead}: done", flush=True)
    whole_cpu = statistics.median(r["cpu_s"] for r in timings[("whole", None, None)])
    whole_wall = statistics.median(r["wall_s"] for r in timings[("whole", None, None)])
    rows = []
    for cfg, runs in timings.items():
        mode, chunk, _ = cfg
        row = {
            "mode": mode,
            "chunk_frames": chunk_label(chunk) if chunk is not None else None,
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "wall_runs_s": [r["wall_s"] for r in runs],
            "cpu_runs_s": [r["cpu_s"] for r in runs],
            "audio_s": audio_s,
        }
        for key in (
            "lookahead",
            "exact_lookahead",
            "first_chunk_tokens",
            "first_chunk_s",
            "first_chunk_last_push_s",
        ):
            if key in runs[0]:
                row[key] = statistics.median(r[key] for r in runs)
        row["rtf"] = row["wall_s"] / audio_s
        row["cpu_over_whole"] = row["cpu_s"] / whole_cpu
        row["wall_over_whole"] = row["wall_s"] / whole_wall
        if mode != "whole":
            diff = outputs[cfg] - reference
            row["max_abs_diff"] = float(diff.abs().max())
            row["snr_db"] = snr_db(reference, outputs[cfg])
        rows.append(row)
    return rows, frames


def _fmt(value, spec=".3f"):
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def table(rows, token_rate):
    """Markdown table of the rows."""
    head = (
        "| mode | chunk (frames) | lookahead (frames) | tokens before 1st chunk | 1st chunk s "
        "(all pushes / last push) | total s | RTF | CPU time / whole decode | max abs diff "
        "| SNR dB |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        if r["mode"] == "whole":
            lines.append(
                f"| whole decode | - | - | all | - | {_fmt(r['wall_s'], '.2f')} | "
                f"{_fmt(r['rtf'])} | 1 | 0 | inf |"
            )
            continue
        look = r["lookahead"]
        look_text = f"{look} (exact)" if look == r["exact_lookahead"] else str(look)
        tokens = r.get("first_chunk_tokens")
        token_text = "-" if tokens is None else f"{tokens} ({tokens / token_rate:.2f} s)"
        lines.append(
            f"| {r['mode']} | {r['chunk_frames']} | {look_text} | {token_text} | "
            f"{_fmt(r.get('first_chunk_s'), '.2f')} / {_fmt(r.get('first_chunk_last_push_s'), '.2f')}"
            f" | {_fmt(r['wall_s'], '.2f')} | {_fmt(r['rtf'])} | {_fmt(r['cpu_over_whole'])} | "
            f"{_fmt(r['max_abs_diff'], '.1e')} | {_fmt(r['snr_db'], '.1f')} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", help="full-size release to reuse (built there if missing)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length of the tokens")
    parser.add_argument(
        "--chunks",
        type=chunk_spec,
        nargs="+",
        default=[10, 25, 50, (10, 25, 50)],
        help="chunk sizes in frames; a comma list is a growing schedule (10,25,50)",
    )
    parser.add_argument(
        "--approx-lookaheads",
        type=int,
        nargs="*",
        default=[0],
        help="lookaheads below the exact one, measured once per chunk size",
    )
    parser.add_argument("--window", action="store_true", help="also the window mode at C=25")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    return parser.parse_args(argv)


def main(argv=None):
    """Builds (or reuses) the release, measures, prints the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_stream_")
    try:
        folder = ensure_release(args.folder or os.path.join(tmp, "release"))
        tok = BiCodecTokenizer.from_release(folder, run_opts={"device": args.device})
        machine = machine_kind(args.device)
        print(describe(machine), flush=True)
        load_before = load_average()
        rows, frames = measure(tok, args)
        load_after = load_average()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\nStreaming detokenization, full size (random weights), {frames} random tokens "
        f"({args.seconds:g} s); {describe(machine)}; load {load_before} before, "
        f"{load_after} after; exact runs: median of {args.repeats} interleaved rounds\n"
    )
    print(table(rows, tok.token_rate))
    if args.json:
        payload = {"machine": machine, "settings": vars(args), "rows": rows}
        payload["load_before_after"] = [load_before, load_after]
        with open(args.json, "w", encoding="utf-8") as fout:
            json.dump(payload, fout, indent=2, default=str)
    return rows


if __name__ == "__main__":
    main()
