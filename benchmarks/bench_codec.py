"""Speed and memory of BiCodec tokenization and detokenization, ours vs. the reference's cost.

What it measures
----------------
A full-size (released 16 kHz shape, 156 M parameters) BiCodec with random weights and a
full-size random XLS-R-53 wav2vec2 (315 M parameters) are written as a Spark-TTS-style
release folder (timed apart, not part of the results), then two configurations are loaded
from that folder with :meth:`BiCodecTokenizer.from_release`:

* ``baseline``: ``ssl_truncate=False`` -- all 24 wav2vec2 layers run, as in the reference
  tokenizer; weight norm folded as the reference does; one utterance at a time (a batch of
  B is B sequential batch-1 calls).
* ``ours``: the defaults -- only the 16 wav2vec2 layers that the 11/14/16 layer mix needs;
  batches go through ``encode_batch`` / ``decode_batch`` in one call (padded, with lengths).

The input is the golden ``prompt_audio.wav`` clip tiled to ``--seconds`` (a deterministic
noise-plus-sines signal when the clip is absent). For each configuration, in a fresh
subprocess (so that its peak RSS is its own), we time with ``time.perf_counter`` (one
warm-up, then the median of ``--repeats`` runs, ``torch.set_num_threads(--threads)``):

* tokenize and detokenize of one utterance (B=1), in seconds;
* tokenize and detokenize of a batch of B copies of the clip with slightly different
  lengths (``--seconds`` down to 93 % of it), as seconds per batch and as throughput
  (audio seconds processed per wall-clock second, summed over the batch);
* peak RSS (``VmHWM`` of ``/proc/self/status``, else ``ru_maxrss``) over the whole
  subprocess (loading included), and per phase (the kernel's peak counter is reset
  between phases where ``/proc/self/clear_refs`` allows it).

The parent process then checks that ``ours`` gives exactly the baseline's tokens (global
and semantic, B=1 and every item of the batch) and prints two Markdown tables.

How to read the ratios
----------------------
* ``time ours/baseline`` (B=1): below 1 means ours is faster; the wav2vec2 forward is most
  of the tokenize cost, so truncating 24 -> 16 layers gives roughly 0.7 at best;
  detokenize runs the same network in both, so expect about 1.
* ``throughput ours/baseline`` (B=N): above 1 means batching (plus truncation) processes
  more audio per second than the reference's one-at-a-time loop.
* ``throughput ours B=N / ours B=1``: the gain of batching alone. On a 2-core CPU the
  matrix products are already compute-bound at B=1, so do not expect much; on a GPU it is
  the number that matters. ``decode_batch`` decodes items of different token lengths
  apart (so that padding never changes a waveform), so with all-distinct lengths the
  batched detokenize is a loop too.
* ``peak RSS ours/baseline``: the process peak is dominated by loading (both load the
  full 24-layer checkpoint before dropping layers), so look at the per-phase peaks for
  the inference cost.

Optional ``--long-minutes N`` tokenizes one N-minute signal with ``ours`` (time and peak
RSS; an out-of-memory error or a killed worker is reported, not raised).

Example
-------
    python benchmarks/bench_codec.py --seconds 10 --repeats 3 --threads 2 \
        --batch-sizes 1 8 --json bench.json

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SAMPLE_RATE = 16000
DEFAULT_CLIP = os.path.join(
    os.path.dirname(ROOT), "shared", "reference", "golden", "clips", "prompt_audio.wav"
)
# Sizes of facebook/wav2vec2-large-xlsr-53 (the wav2vec2 of Spark-TTS-0.5B).
XLSR53_SIZES = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "conv_dim": [512] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": True,
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "layerdrop": 0.0,
    "mask_time_prob": 0.0,
}
CONFIGS = {"baseline": False, "ours": True}  # name -> ssl_truncate
SHORTEST = 0.93  # the shortest batch item, relative to --seconds


# ---------------------------------------------------------------- release folder
def build_release(folder, seed=0):
    """Writes a full-size random-weight Spark-TTS-style release folder.

    Arguments
    ---------
    folder : str
        Output folder (created).
    seed : int
        Initialisation seed of both networks.

    Returns
    -------
    str
        ``folder``.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from bicodec_plugin.release import build_bicodec, released_config, save_release

    torch.manual_seed(seed)
    config = released_config()
    model = build_bicodec(config)
    with tempfile.TemporaryDirectory(prefix="bench_w2v_") as w2v_dir:
        ssl = Wav2Vec2Model(Wav2Vec2Config(**XLSR53_SIZES))
        ssl.save_pretrained(w2v_dir)
        del ssl
        extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
        extractor.save_pretrained(w2v_dir)
        save_release(model, folder, config, ssl_source=w2v_dir)
    return folder


def is_release(folder):
    """True when ``folder`` looks like a complete release folder."""
    return all(
        os.path.isfile(os.path.join(folder, *p))
        for p in (
            ("config.yaml",),
            ("BiCodec", "model.safetensors"),
            ("wav2vec2-large-xlsr-53", "config.json"),
        )
    )


# ---------------------------------------------------------------------- signals
def synthetic_signal(num_samples, seed=0):
    """A deterministic noise-plus-sines test signal at 16 kHz.

    Arguments
    ---------
    num_samples : int
        Length.
    seed : int
        Noise seed.

    Returns
    -------
    numpy.ndarray
        (num_samples,) float64 in about [-0.6, 0.6].

    Example
    -------
    >>> synthetic_signal(16000).shape
    (16000,)
    """
    t = np.arange(num_samples) / SAMPLE_RATE
    pitch = 140.0 + 40.0 * np.sin(2 * np.pi * 0.5 * t)  # a slowly gliding voice-like tone
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.0 * t))  # ~4 "syllables" per second
    noise = np.random.default_rng(seed).standard_normal(num_samples)
    return 0.25 * envelope * tone + 0.02 * noise


def load_signal(clip, num_samples):
    """The benchmark signal: ``clip`` tiled (or cut) to ``num_samples``, else synthetic.

    Arguments
    ---------
    clip : str or None
        16 kHz audio file; ``None`` or a missing file gives :func:`synthetic_signal`.
    num_samples : int
        Length.

    Returns
    -------
    signal : torch.Tensor
        (num_samples,) float32.
    source : str
        What the signal is made of.
    """
    if clip and os.path.isfile(clip):
        from bicodec_plugin.audio import read_audio_file

        audio = read_audio_file(clip, SAMPLE_RATE, volume_norm=False).double().numpy()
        source = f"{os.path.basename(clip)} tiled"
    else:
        audio = synthetic_signal(num_samples)
        source = "synthetic noise + sines"
    reps = -(-num_samples // audio.shape[0])
    signal = np.tile(audio, reps)[:num_samples]
    return torch.from_numpy(np.ascontiguousarray(signal)).float(), source


def batch_lengths(seconds, batch):
    """Sample lengths of a benchmark batch: ``seconds`` down to ``SHORTEST * seconds``.

    Example
    -------
    >>> batch_lengths(10, 8)[0], batch_lengths(10, 8)[-1]
    (160000, 148800)
    """
    if batch == 1:
        return [int(round(seconds * SAMPLE_RATE))]
    secs = np.linspace(seconds, SHORTEST * seconds, batch)
    return [int(round(s * SAMPLE_RATE)) for s in secs]


# ----------------------------------------------------------------- measurement
def read_peak_rss_mib(reset=False):
    """Peak resident memory of this process in MiB (optionally resetting the counter).

    Arguments
    ---------
    reset : bool
        Reset the kernel's peak counter afterwards (``/proc/self/clear_refs``).

    Returns
    -------
    peak : float
        ``VmHWM`` (Linux) or ``ru_maxrss``.
    was_reset : bool
        Whether the counter could be reset.
    """
    peak = None
    try:
        with open("/proc/self/status", encoding="ascii") as fin:
            for line in fin:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    if peak is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = rss / 1024 if sys.platform != "darwin" else rss / 2**20
    was_reset = False
    if reset:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fout:
                fout.write("5")
            was_reset = True
        except OSError:
            pass
    return peak, was_reset


def current_rss_mib():
    """Current resident memory of this process in MiB (``VmRSS``; ``None`` if unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fin:
            for line in fin:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def sync(device):
    """Waits for queued device work (CUDA) so that wall-clock times are complete."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn, repeats, device, warmup=1):
    """Median wall-clock seconds of ``fn()`` after ``warmup`` untimed calls.

    Arguments
    ---------
    fn : callable
        Work to time (no arguments).
    repeats : int
        Timed calls.
    device : str
        Device, to synchronise around each call.
    warmup : int
        Untimed calls first.

    Returns
    -------
    median : float
        Median seconds.
    times : list of float
        Every timed call.
    result : object
        What the last call returned.
    """
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def run_worker(args):
    """Measures one configuration in this (fresh) process and writes JSON (+ tokens).

    Arguments
    ---------
    args : argparse.Namespace
        Parsed command line; ``args.worker`` names the configuration (``baseline``,
        ``ours`` or ``long``), ``args.out`` the JSON path (tokens go to ``.pt`` beside).
    """
    from bicodec_plugin.inference import BiCodecTokenizer

    torch.set_num_threads(args.threads)
    device = args.device
    name = args.worker
    truncate = CONFIGS.get(name, True)
    res = {"config": name, "ssl_truncate": truncate, "threads": torch.get_num_threads()}
    peaks = {}

    start = time.perf_counter()
    tok = BiCodecTokenizer.from_release(
        args.folder, run_opts={"device": device}, fold_weight_norm=True, ssl_truncate=truncate
    )
    res["load_s"] = time.perf_counter() - start
    res["rss_after_load_mib"] = current_rss_mib()
    res["ssl_layers_run"] = len(tok.codec.ssl.model.encoder.layers)
    peaks["load"], res["peak_reset_ok"] = read_peak_rss_mib(reset=True)
    batch_sizes = sorted(set(args.batch_sizes))
    n_max = max(
        batch_lengths(args.seconds, 1)[0], max(batch_lengths(args.seconds, batch_sizes[-1]))
    )
    signal, res["signal"] = load_signal(args.clip, n_max)

    if name == "long":
        res.update(_measure_long(tok, args, device, peaks))
    else:
        tokens = {}
        for batch in batch_sizes:
            res[f"b{batch}"], tokens[f"b{batch}"] = _measure_batch(
                tok, signal, batch, args, device, sequential=not truncate, peaks=peaks
            )
        torch.save(tokens, os.path.splitext(args.out)[0] + ".pt")
    peaks["end"], _ = read_peak_rss_mib()
    res["peak_rss_by_phase_mib"] = peaks
    res["peak_rss_mib"] = max(peaks.values())
    if device.startswith("cuda"):
        res["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    with open(args.out, "w", encoding="utf-8") as fout:
        json.dump(res, fout, indent=2)


def _measure_batch(tok, signal, batch, args, device, sequential, peaks):
    """Times tokenize + detokenize of one batch; returns (results, tokens per item)."""
    lengths = batch_lengths(args.seconds, batch)
    n_max = max(lengths)
    wavs = torch.zeros(batch, n_max)
    for i, n in enumerate(lengths):
        wavs[i, :n] = signal[:n]
    wav_lens = torch.tensor([n / n_max for n in lengths]) if batch > 1 else None
    audio_s = sum(lengths) / SAMPLE_RATE
    # The baseline's batch is a loop of batch-1 calls whose shapes the B=1 run warmed up.
    warmup = 0 if sequential and batch > 1 else 1

    if sequential:

        def encode():
            return [tok.encode_batch(wavs[i : i + 1, :n]) for i, n in enumerate(lengths)]

        def decode(toks):
            return [tok.decode_batch(g, s, lens) for g, s, lens in toks]

    else:

        def encode():
            return tok.encode_batch(wavs, wav_lens)

        def decode(toks):
            return tok.decode_batch(*toks)

    enc_s, enc_all, toks = time_call(encode, args.repeats, device, warmup)
    peaks[f"tokenize_b{batch}"], _ = read_peak_rss_mib(reset=True)
    dec_s, dec_all, _ = time_call(lambda: decode(toks), args.repeats, device, warmup)
    peaks[f"detokenize_b{batch}"], _ = read_peak_rss_mib(reset=True)

    if sequential:
        items = [(g[0].cpu(), s[0, : int(n[0])].cpu()) for g, s, n in toks]
    else:
        glob, sem, lens = toks
        items = [(glob[i].cpu(), sem[i, : int(lens[i])].cpu()) for i in range(batch)]
    result = {
        "lengths_s": [n / SAMPLE_RATE for n in lengths],
        "audio_s": audio_s,
        "tokenize_s": enc_s,
        "tokenize_runs_s": enc_all,
        "detokenize_s": dec_s,
        "detokenize_runs_s": dec_all,
        "tokenize_audio_s_per_s": audio_s / enc_s,
        "detokenize_audio_s_per_s": audio_s / dec_s,
        "distinct_semantic_tokens": len(set(torch.cat([s for _, s in items]).tolist())),
    }
    return result, items


def _measure_long(tok, args, device, peaks):
    """Tokenizes one ``--long-minutes`` signal once (after a short warm-up)."""
    num = int(round(args.long_minutes * 60 * SAMPLE_RATE))
    signal, _ = load_signal(args.clip, num)
    tok.encode_batch(signal[: SAMPLE_RATE * 2].unsqueeze(0))  # warm-up
    read_peak_rss_mib(reset=True)
    out = {"long_minutes": args.long_minutes}
    try:
        sync(device)
        start = time.perf_counter()
        _, sem, _ = tok.encode_batch(signal.unsqueeze(0))
        sync(device)
        out["tokenize_s"] = time.perf_counter() - start
        out["semantic_tokens"] = int(sem.shape[1])
        out["tokenize_audio_s_per_s"] = num / SAMPLE_RATE / out["tokenize_s"]
    except (RuntimeError, MemoryError) as err:  # torch reports allocation failures as either
        out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    peaks["tokenize_long"], _ = read_peak_rss_mib(reset=True)
    return out


# ---------------------------------------------------------------------- parent
def spawn_worker(name, args, folder, workdir):
    """Runs one configuration in a fresh Python process.

    Arguments
    ---------
    name : str
        ``baseline``, ``ours`` or ``long``.
    args : argparse.Namespace
        Parent command line (forwarded).
    folder : str
        Release folder.
    workdir : str
        Where the worker writes ``<name>.json`` and ``<name>.pt``.

    Returns
    -------
    dict
        The worker's results, or ``{"error": ...}`` when it failed or was killed.
    """
    out = os.path.join(workdir, f"{name}.json")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        name,
        "--out",
        out,
        "--folder",
        folder,
        "--seconds",
        str(args.seconds),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--long-minutes",
        str(args.long_minutes),
        "--clip",
        args.clip or "",
        "--batch-sizes",
        *[str(b) for b in args.batch_sizes],
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not os.path.isfile(out):
        reason = f"worker exited with {proc.returncode}"
        if proc.returncode < 0:
            reason += " (killed by a signal: out of memory?)"
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"config": name, "error": reason + ("; " + " | ".join(tail) if tail else "")}
    with open(out, encoding="utf-8") as fin:
        res = json.load(fin)
    res["worker_wall_s"] = wall
    return res


def compare_tokens(workdir, batch_sizes):
    """Compares the tokens written by the ``baseline`` and ``ours`` workers.

    Returns
    -------
    dict
        ``identical`` (bool), ``agreement_pct`` and ``compared`` (token count), over the
        global and the valid semantic tokens of every batch item.
    """
    base = torch.load(os.path.join(workdir, "baseline.pt"))
    ours = torch.load(os.path.join(workdir, "ours.pt"))
    same = total = 0
    shapes_ok = True
    for batch in sorted(set(batch_sizes)):
        for (g_b, s_b), (g_o, s_o) in zip(base[f"b{batch}"], ours[f"b{batch}"]):
            for ref, new in ((g_b, g_o), (s_b, s_o)):
                if ref.shape != new.shape:
                    shapes_ok = False
                    total += max(ref.numel(), new.numel())
                    continue
                same += int((ref == new).sum())
                total += ref.numel()
    return {
        "identical": shapes_ok and same == total,
        "agreement_pct": 100.0 * same / max(total, 1),
        "compared": total,
    }


def ratios(results, batch_sizes):
    """Ours / baseline ratios (and ours' batching gain) from the worker results."""
    base, ours = results["baseline"], results["ours"]
    out = {}
    if "error" in base or "error" in ours:
        return out
    for step in ("tokenize", "detokenize"):
        out[f"{step}_time_b1_ours_over_baseline"] = (
            ours["b1"][f"{step}_s"] / base["b1"][f"{step}_s"]
        )
    for batch in sorted(set(batch_sizes) - {1}):
        key = f"b{batch}"
        for step in ("tokenize", "detokenize"):
            tput = f"{step}_audio_s_per_s"
            out[f"{step}_throughput_{key}_ours_over_baseline"] = ours[key][tput] / base[key][tput]
            out[f"{step}_throughput_ours_{key}_over_b1"] = ours[key][tput] / ours["b1"][tput]
    out["peak_rss_ours_over_baseline"] = ours["peak_rss_mib"] / base["peak_rss_mib"]
    return out


def _fmt(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_tables(results, ratio, batch_sizes):
    """The Markdown tables (results, per-phase memory, ratios) as one string."""
    multi = sorted(set(batch_sizes) - {1})
    head = ["configuration", "tokenize s (B=1)", "detokenize s (B=1)"]
    for batch in multi:
        head += [
            f"tokenize s/batch (B={batch})",
            f"detokenize s/batch (B={batch})",
            f"tokenize audio-s/s (B={batch})",
            f"detokenize audio-s/s (B={batch})",
        ]
    head.append("peak RSS MiB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mem_head = ["configuration", "load s", "RSS after load MiB"]
    mem_head += [
        f"{s} B={b} peak MiB" for b in sorted(set(batch_sizes)) for s in ("tokenize", "detokenize")
    ]
    mem = ["| " + " | ".join(mem_head) + " |", "|" + "---|" * len(mem_head)]
    for name in CONFIGS:
        res = results[name]
        if "error" in res:
            lines.append(f"| {name} | failed: {res['error']} |")
            continue
        b1 = res.get("b1", {})
        row = [name, _fmt(b1.get("tokenize_s")), _fmt(b1.get("detokenize_s"))]
        for batch in multi:
            r = res[f"b{batch}"]
            row += [
                _fmt(r["tokenize_s"]),
                _fmt(r["detokenize_s"]),
                _fmt(r["tokenize_audio_s_per_s"]),
                _fmt(r["detokenize_audio_s_per_s"]),
            ]
        row.append(_fmt(res["peak_rss_mib"], 0))
        lines.append("| " + " | ".join(row) + " |")
        phases = res["peak_rss_by_phase_mib"]
        mrow = [name, _fmt(res["load_s"], 1), _fmt(res["rss_after_load_mib"], 0)]
        mrow += [
            _fmt(phases.get(f"{s}_b{b}"), 0)
            for b in sorted(set(batch_sizes))
            for s in ("tokenize", "detokenize")
        ]
        mem.append("| " + " | ".join(mrow) + " |")
    text = "\n".join(lines) + "\n\nPer-phase peak RSS (ours vs baseline, inference only):\n\n"
    text += "\n".join(mem) + "\n"
    if ratio:
        labels = {
            "tokenize_time_b1_ours_over_baseline": "tokenize time, B=1 (ours / baseline)",
            "detokenize_time_b1_ours_over_baseline": "detokenize time, B=1 (ours / baseline)",
            "peak_rss_ours_over_baseline": "process peak RSS (ours / baseline)",
        }
        for batch in multi:
            for step in ("tokenize", "detokenize"):
                labels[f"{step}_throughput_b{batch}_ours_over_baseline"] = (
                    f"{step} throughput, B={batch} (ours / baseline)"
                )
                labels[f"{step}_throughput_ours_b{batch}_over_b1"] = (
                    f"{step} throughput, ours B={batch} / ours B=1"
                )
        text += "\n| ratio | value |\n|---|---|\n"
        text += "\n".join(f"| {labels[k]} | {v:.3f} |" for k, v in ratio.items()) + "\n"
    return text


def parse_args(argv=None):
    """Command line of the benchmark (``--worker`` and ``--out`` are internal)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (B=1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--folder", help="release folder to reuse (built there if missing)")
    parser.add_argument(
        "--clip", default=DEFAULT_CLIP, help="16 kHz clip to tile ('' = synthetic signal)"
    )
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=0.0,
        help="also tokenize an N-minute signal with ours (0 = skip)",
    )
    parser.add_argument(
        "--skip-long",
        action="store_true",
        help="skip the long-audio run whatever --long-minutes says",
    )
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if 1 not in args.batch_sizes:
        args.batch_sizes = [1] + args.batch_sizes  # B=1 is the reference point of the ratios
    return args


def main(argv=None):
    """Builds (or reuses) the release, runs the workers, prints and saves the results."""
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    tmp = tempfile.mkdtemp(prefix="bench_codec_")
    try:
        folder = args.folder or os.path.join(tmp, "release")
        build_s = None
        if is_release(folder):
            print(f"reusing release folder {folder}")
        else:
            print(f"building a full-size random release in {folder} ...", flush=True)
            torch.set_num_threads(args.threads)
            start = time.perf_counter()
            build_release(folder)
            build_s = time.perf_counter() - start
            print(f"built in {build_s:.1f} s (not part of the results)")
        results = {}
        names = list(CONFIGS)
        if args.long_minutes > 0 and not args.skip_long:
            names.append("long")
        for name in names:
            print(f"measuring {name} ...", flush=True)
            results[name] = spawn_worker(name, args, folder, tmp)
            if "error" in results[name]:
                print(f"  {name}: {results[name]['error']}")
        check = None
        if all("error" not in results[n] for n in CONFIGS):
            check = compare_tokens(tmp, args.batch_sizes)
        ratio = ratios(results, args.batch_sizes)
        signal = next((r["signal"] for r in results.values() if "signal" in r), "?")
        print()
        print(
            f"BiCodec full size, random weights; {args.seconds:g} s of {signal}; device "
            f"{args.device}, {args.threads} threads; median of {args.repeats} "
            f"(torch {torch.__version__}, {platform.processor() or platform.machine()})"
        )
        print()
        print(format_tables(results, ratio, args.batch_sizes))
        if check is not None:
            print(
                f"identical tokens: {'yes' if check['identical'] else 'no'} "
                f"(agreement {check['agreement_pct']:.2f} % of {check['compared']} tokens)"
            )
            distinct = results["baseline"]["b1"]["distinct_semantic_tokens"]
            print(f"distinct semantic tokens in the B=1 baseline output: {distinct}")
        if "long" in results:
            long = results["long"]
            if "error" in long:
                print(f"long audio ({args.long_minutes:g} min): failed: {long['error']}")
            else:
                print(
                    f"long audio ({args.long_minutes:g} min, ours): tokenize "
                    f"{_fmt(long.get('tokenize_s'))} s, peak RSS "
                    f"{_fmt(long['peak_rss_by_phase_mib'].get('tokenize_long'), 0)} MiB"
                    + (f", error: {long['error']}" if "error" in long else "")
                )
        if args.json:
            payload = {
                "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
                "torch": torch.__version__,
                "build_s": build_s,
                "results": results,
                "ratios": ratio,
                "tokens": check,
            }
            with open(args.json, "w", encoding="utf-8") as fout:
                json.dump(payload, fout, indent=2)
            print(f"results written to {args.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
