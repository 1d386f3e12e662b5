"""Fast mode (half-precision autocast) against exact mode and the reference's cost.

What it measures
----------------
1. **Token agreement on the golden clips.** The tiny release of
   ``../shared/reference`` is loaded twice, exact (float32) and fast
   (``run_opts={"precision": ...}``); the four golden clips are tokenized by
   both and the share of equal global and semantic tokens is printed per clip
   and over all clips. Skipped when the fixtures are absent.
2. **Speed at full size.** Three tokenizers are loaded in this process from a
   full-size random-weight release (built by ``bench_codec.build_release``, or
   reused with ``--folder``): ``baseline`` (all 24 wav2vec2 layers, float32, the
   reference's cost), ``exact`` (our defaults) and ``fast`` (our defaults plus
   autocast). Their tokenize calls on one ``--seconds`` clip are interleaved
   (baseline, exact, fast, then the reverse order, ...) after one warm-up each;
   the table gives the median seconds and the ratios to the baseline, and the
   agreement of the fast tokens with the exact ones on that clip.
   ``--detokenize`` also times decoding (fast against exact).

The script first says whether the device runs the half type natively
(:func:`bicodec_plugin.inference.has_native_half`). Where it does not (a CPU
without AVX512-BF16/AMX), autocast emulates the type and fast mode is slower
than exact mode; the numbers are still measured and printed.

Example
-------
    python benchmarks/bench_fast_mode.py --folder /tmp/bench_release --threads 2
    python benchmarks/bench_fast_mode.py --device cuda --precision bf16

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_codec import (  # noqa: E402  (sibling script)
    DEFAULT_CLIP,
    SAMPLE_RATE,
    ensure_release,
    load_signal,
    sync,
)

from bicodec_plugin.inference import BiCodecTokenizer, has_native_half  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(
    os.environ.get("BICODEC_SHARED", os.path.join(ROOT, "..", "shared")), "reference"
)
GOLDEN_CLIPS = ["spk1_snt1", "spk2_snt1", "prompt_audio", "LJ050-0131"]


def agreement(exact, fast):
    """Equal and total counts of (global, semantic) tokens between two encode outputs."""
    counts = {}
    for key, idx in (("global", 0), ("semantic", 1)):
        a, b = exact[idx], fast[idx]
        if a.shape != b.shape:
            counts[key] = (0, max(a.numel(), b.numel()))
        else:
            counts[key] = (int((a == b).sum()), a.numel())
    return counts


def golden_agreement(device, precision):
    """Fast-vs-exact agreement on the golden clips with the tiny release (or None)."""
    from safetensors.torch import load_file

    release = os.path.join(REFERENCE, "tiny_release")
    if not os.path.isdir(release):
        return None
    run_opts = {"device": device}
    exact = BiCodecTokenizer.from_release(release, run_opts=run_opts)
    fast = BiCodecTokenizer.from_release(release, run_opts=dict(run_opts, precision=precision))
    rows = {}
    for clip in GOLDEN_CLIPS:
        wav = load_file(os.path.join(REFERENCE, "golden", f"{clip}.safetensors"))["wav"]
        # The golden "wav" is already volume-normalised: tokenize it as is.
        rows[clip] = agreement(
            exact.encode_batch(wav, normalize=False), fast.encode_batch(wav, normalize=False)
        )
    return rows


def _pct(counts):
    same, total = counts
    return 100.0 * same / max(total, 1)


def time_full_size(args, folder):
    """Interleaved tokenize (and optionally detokenize) timings of the three configurations."""
    run_opts = {"device": args.device}
    toks = {
        "baseline": BiCodecTokenizer.from_release(folder, run_opts=run_opts, ssl_truncate=False),
        "exact": BiCodecTokenizer.from_release(folder, run_opts=run_opts),
        "fast": BiCodecTokenizer.from_release(
            folder, run_opts=dict(run_opts, precision=args.precision)
        ),
    }
    signal, source = load_signal(args.clip, int(args.seconds * SAMPLE_RATE))
    wav = signal.unsqueeze(0)
    steps = ["tokenize"] + (["detokenize"] if args.detokenize else [])
    names = list(toks)
    times = {(name, step): [] for name in names for step in steps}
    outputs = {}

    def run(name, step):
        tok = toks[name]
        sync(args.device)
        start = time.perf_counter()
        if step == "tokenize":
            outputs[name] = tok.encode_batch(wav)
        else:
            tok.decode_batch(*outputs["exact"])
        sync(args.device)
        return time.perf_counter() - start

    for step in steps:
        decode_names = names if step == "tokenize" else ["exact", "fast"]
        for name in decode_names:  # warm-up
            run(name, step)
        for rep in range(args.repeats):
            order = decode_names if rep % 2 == 0 else decode_names[::-1]
            for name in order:
                times[(name, step)].append(run(name, step))
        print(f"  {step}: done", flush=True)
    medians = {key: statistics.median(vals) for key, vals in times.items() if vals}
    return medians, agreement(outputs["exact"], outputs["fast"]), source


def parse_args(argv=None):
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--folder", help="full-size release to reuse (built there if missing)")
    parser.add_argument(
        "--clip", default=DEFAULT_CLIP, help="16 kHz clip to tile ('' = synthetic signal)"
    )
    parser.add_argument("--detokenize", action="store_true", help="also time decoding")
    parser.add_argument("--skip-full", action="store_true", help="golden agreement only")
    return parser.parse_args(argv)


def main(argv=None):
    """Prints the golden agreement, then the full-size timings."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device_type = args.device.split(":")[0]
    native = has_native_half(device_type, args.precision)
    print(
        f"{args.precision} on {args.device}: "
        f"{'native' if native else 'NOT native (emulated: expect fast mode to be slower)'}; "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads"
    )

    rows = golden_agreement(args.device, args.precision)
    if rows is None:
        print("golden clips: ../shared/reference not found, agreement skipped")
    else:
        print(f"\nToken agreement, fast ({args.precision}) vs exact, tiny release, golden clips:\n")
        print("| clip | global % | semantic % |\n|---|---|---|")
        totals = {"global": [0, 0], "semantic": [0, 0]}
        for clip, counts in rows.items():
            print(f"| {clip} | {_pct(counts['global']):.1f} | {_pct(counts['semantic']):.1f} |")
            for key in totals:
                totals[key][0] += counts[key][0]
                totals[key][1] += counts[key][1]
        print(f"| all | {_pct(totals['global']):.1f} | {_pct(totals['semantic']):.1f} |")
    if args.skip_full:
        return

    tmp = tempfile.mkdtemp(prefix="bench_fast_")
    try:
        folder = ensure_release(args.folder or os.path.join(tmp, "release"))
        print(f"\nfull size, {args.seconds:g} s clip, median of {args.repeats} interleaved runs:")
        medians, counts, source = time_full_size(args, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = medians[("baseline", "tokenize")]
    print(f"\nsignal: {source}\n")
    print("| configuration | tokenize s | tokenize / baseline | detokenize s |\n|---|---|---|---|")
    for name in ("baseline", "exact", "fast"):
        tok_s = medians[(name, "tokenize")]
        detok = medians.get((name, "detokenize"))
        detok_text = f"{detok:.2f}" if detok is not None else "-"
        print(f"| {name} | {tok_s:.2f} | {tok_s / base:.3f} | {detok_text} |")
    print(
        f"\nfast vs exact on this clip: global {_pct(counts['global']):.1f} %, "
        f"semantic {_pct(counts['semantic']):.1f} % equal"
    )
    if ("fast", "detokenize") in medians:
        ratio = medians[("fast", "detokenize")] / medians[("exact", "detokenize")]
        print(f"detokenize fast / exact: {ratio:.3f}")


if __name__ == "__main__":
    main()
