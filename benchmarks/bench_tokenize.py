"""Exact tokenize against the reference's cost: the ratio of every round, and its spread.

What it measures
----------------
Two tokenizers are loaded in this process from a full-size random-weight release
(``bench_codec.build_release``, or reused with ``--folder``):

* ``reference``: the reference's cost -- all 24 wav2vec2 layers, the feature encoder
  in one pass and all hidden states kept (``bench_codec.use_reference_frontend``);
* ``ours``: the defaults (16 layers, the feature encoder's first layers on 4 s pieces).

After one warm-up each, ``--rounds`` rounds each tokenize the same ``--seconds`` clip
once with each tokenizer, the order alternating (reference, ours, then ours,
reference, ...), so that both runs of a round see the same machine load. Each round
gives a ratio ours / reference, in wall-clock and in CPU seconds of the process (CPU
time is less disturbed by other processes on a shared machine; cache and memory
bandwidth contention still show). The table gives every round, the median, the
minimum and the maximum, the ratio of the two medians and of the two fastest runs,
the load average around each round, and whether the tokens of ``ours`` equal the
reference's.

It also gives each round's **layer bound**: forward hooks time the wav2vec2
transformer layers inside our run, and ``ours / (ours + (24 - 16) x one layer's
mean time)`` is the ratio that running 16 of 24 layers gives when everything else
costs the reference what it costs us. The same-kernel rule (identical tokens) leaves
the rest of the tokenize (feature encoder, encoder, speaker path, quantisers) as it
is, so a measured ratio above the bound is the machine's noise or a cost of ours
that the reference does not have, and one below it is the reference's noise.

Example
-------
    python benchmarks/bench_tokenize.py --folder /tmp/bench_release --threads 2 --rounds 6

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import os
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
    use_reference_frontend,
)
from machine import describe, load_average, machine_kind  # noqa: E402

from bicodec_plugin.inference import BiCodecTokenizer  # noqa: E402


def load_pair(folder, device):
    """The reference-cost and our tokenizers."""
    run_opts = {"device": device}
    reference = BiCodecTokenizer.from_release(
        folder, run_opts=run_opts, ssl_truncate=False, mmap_weights=False
    )
    use_reference_frontend(reference)
    ours = BiCodecTokenizer.from_release(folder, run_opts=run_opts)
    return {"reference": reference, "ours": ours}


def one_run(tok, wav, device):
    """(tokens, wall seconds, CPU seconds) of one tokenize."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = tok.encode_batch(wav)
    sync(device)
    return tokens, time.perf_counter() - wall, time.process_time() - cpu


class LayerClock:
    """Wall-clock seconds spent inside a tokenizer's wav2vec2 transformer layers.

    Arguments
    ---------
    tok : BiCodecTokenizer
        Tokenizer with a wav2vec2 front-end.
    device : str
        Synchronised around each layer on a GPU.
    """

    def __init__(self, tok, device):
        self.layers = tok.codec.ssl.model.encoder.layers
        self.seconds, self.started = 0.0, None
        for layer in self.layers:
            layer.register_forward_pre_hook(self._start)
            layer.register_forward_hook(self._stop)
        self.device = device

    def _start(self, module, args):
        sync(self.device)
        self.started = time.perf_counter()

    def _stop(self, module, args, output):
        sync(self.device)
        self.seconds += time.perf_counter() - self.started

    def take(self):
        """Seconds since the last call (resets the clock)."""
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def layer_bound(ours_s, layer_s, ours_layers, reference_layers):
    """Ratio ours / reference if the reference only added its extra layers to our run.

    Example
    -------
    >>> round(layer_bound(3.0, 1.6, 16, 24), 3)  # 0.1 s a layer: 3.0 / 3.8
    0.789
    """
    per_layer = layer_s / ours_layers
    return ours_s / (ours_s + (reference_layers - ours_layers) * per_layer)


def measure(toks, wav, rounds, device):
    """Interleaved rounds; returns per-round rows and the last tokens of each."""
    tokens = {name: one_run(tok, wav, device)[0] for name, tok in toks.items()}  # warm-up
    clock = LayerClock(toks["ours"], device)
    ours_layers = len(toks["ours"].codec.ssl.model.encoder.layers)
    reference_layers = len(toks["reference"].codec.ssl.model.encoder.layers)
    rows = []
    for rnd in range(rounds):
        names = ["reference", "ours"] if rnd % 2 == 0 else ["ours", "reference"]
        row = {"round": rnd + 1, "load_before": load_average()}
        for name in names:
            tokens[name], row[f"{name}_wall_s"], row[f"{name}_cpu_s"] = one_run(
                toks[name], wav, device
            )
        row["load_after"] = load_average()
        row["wall_ratio"] = row["ours_wall_s"] / row["reference_wall_s"]
        row["cpu_ratio"] = row["ours_cpu_s"] / row["reference_cpu_s"]
        row["ours_layers_s"] = clock.take()
        row["layer_bound"] = layer_bound(
            row["ours_wall_s"], row["ours_layers_s"], ours_layers, reference_layers
        )
        rows.append(row)
        print(
            f"  round {rnd + 1}: ours/reference wall {row['wall_ratio']:.3f}, "
            f"CPU {row['cpu_ratio']:.3f}, layer bound {row['layer_bound']:.3f} "
            f"(load {row['load_before']} -> {row['load_after']})",
            flush=True,
        )
    return rows, tokens


def summary(rows):
    """Median, min and max of the wall and CPU ratios and of the layer bound; ratios of
    the medians and of the fastest runs."""
    out = {}
    for key in ("wall_ratio", "cpu_ratio", "layer_bound"):
        values = [r[key] for r in rows]
        out[key] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
    for kind in ("wall", "cpu"):
        ours = [r[f"ours_{kind}_s"] for r in rows]
        reference = [r[f"reference_{kind}_s"] for r in rows]
        out[f"{kind}_ratio_of_medians"] = statistics.median(ours) / statistics.median(reference)
        out[f"{kind}_ratio_of_fastest"] = min(ours) / min(reference)
    return out


def parse_args(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", help="full-size release to reuse (built there if missing)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clip", default=DEFAULT_CLIP)
    parser.add_argument("--json", help="also write the rows here")
    return parser.parse_args(argv)


def main(argv=None):
    """Builds or reuses the release, measures, prints the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_tok_")
    try:
        folder = ensure_release(args.folder or os.path.join(tmp, "release"))
        toks = load_pair(folder, args.device)
        signal, source = load_signal(args.clip, int(args.seconds * SAMPLE_RATE))
        machine = machine_kind(args.device)
        print(describe(machine), flush=True)
        rows, tokens = measure(toks, signal[None], args.rounds, args.device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = all(torch.equal(a, b) for a, b in zip(tokens["ours"], tokens["reference"]))
    stats = summary(rows)
    print(
        f"\nExact tokenize, full size (random weights), {args.seconds:g} s of {source}; "
        f"{describe(machine)}\n"
    )
    print("| round | reference s | ours s | ours / reference (wall) | (CPU) | layer bound | load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['round']} | {r['reference_wall_s']:.2f} | {r['ours_wall_s']:.2f} | "
            f"{r['wall_ratio']:.3f} | {r['cpu_ratio']:.3f} | {r['layer_bound']:.3f} | "
            f"{r['load_before']} -> {r['load_after']} |"
        )
    for key, label in (("wall_ratio", "wall"), ("cpu_ratio", "CPU"), ("layer_bound", "bound")):
        s = stats[key]
        print(
            f"| {label}: median {s['median']:.3f}, min {s['min']:.3f}, max {s['max']:.3f} "
            "| | | | | | |"
        )
    print(
        f"| ratio of the medians: wall {stats['wall_ratio_of_medians']:.3f}, CPU "
        f"{stats['cpu_ratio_of_medians']:.3f}; of the fastest runs: wall "
        f"{stats['wall_ratio_of_fastest']:.3f}, CPU {stats['cpu_ratio_of_fastest']:.3f} "
        "| | | | | | |"
    )
    print(f"\nidentical tokens (ours vs reference): {'yes' if same else 'NO'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fout:
            json.dump(
                {
                    "machine": machine,
                    "settings": vars(args),
                    "rows": rows,
                    "summary": stats,
                    "identical_tokens": same,
                },
                fout,
                indent=2,
            )
    return rows, stats


if __name__ == "__main__":
    main()
