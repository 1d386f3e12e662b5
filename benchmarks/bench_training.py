"""Training speed of BiCodec: seconds per GAN step and audio seconds per second.

What it measures
----------------
For each configuration (``hparams/bicodec_tiny_wav2vec2.yaml``, ``bicodec_16k.yaml``,
``bicodec_24k.yaml``) the hparams file is loaded with HyperPyYAML (the wav2vec2
``ssl_source`` pointed at a small random model built on the fly) and a
:class:`~bicodec_plugin.training.brain.BiCodecBrain` is built from it exactly as
``recipes/train.py`` does (same modules, optimisers, schedules, gradient
clipping, ``--precision`` autocast and GradScaler). One timed step is one call
of the real ``BiCodecBrain.fit_batch``: generator forward, discriminator
forward/backward/AdamW step on the detached audio, then the generator
loss (multi-scale mel, LSGAN, feature matching, VQ, speaker, feature
reconstruction) against the updated discriminator, backward, clipping and
AdamW step.

What it leaves out: the data pipeline and the frozen wav2vec2 front-end. The
batch is random audio and the wav2vec2 features are random ``(B, T, ssl_dim)``
tensors (``ssl_dim`` = 64 for tiny, 1024 for the full configs); on real
training the frozen XLS-R-53 forward (no grad) comes on top of these numbers.
By default the generator runs in its d-vector phase (the one that most of
training uses, with the speaker loss); ``--condition x_vector`` times the
warm-up phase.

Columns: ``s/step`` is the median over ``--steps`` timed steps (after
``--warmup`` untimed ones); ``audio s/s`` is ``batch * segment / (s/step)``,
the seconds of training audio consumed per wall-clock second (per process).

Timings are wall-clock: other processes on the machine slow them down. The
1-minute load average before and after is printed; compare only runs made on
a quiet machine and on the same device. On a shared CPU box, multi-threaded
steps suffer badly from OpenMP oversubscription (measured on 2 cores with
about one core busy elsewhere: tiny 28-36 s/step with 2 threads against
2-5 s/step with ``--threads 1``); use ``--threads 1`` there. ``--precision
bf16`` on a CPU without native bf16 matrix units is about 10x slower than fp32.

Example
-------
    python benchmarks/bench_training.py                       # tiny, 16k, 24k on CPU
    python benchmarks/bench_training.py --configs tiny --precision bf16
    python benchmarks/bench_training.py --device cuda --precision bf16 --full-batch-size 24

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CONFIGS = {
    "tiny": "bicodec_tiny_wav2vec2.yaml",
    "16k": "bicodec_16k.yaml",
    "24k": "bicodec_24k.yaml",
}


class _RandomBatch:
    """The part of a training batch that ``BiCodecBrain.compute_forward`` reads."""

    def __init__(self, wav, ref_wav, feats):
        ones = torch.ones(wav.shape[0], device=wav.device)
        self.wav = (wav, ones)
        self.ref_wav = (ref_wav, ones)
        self.feats = feats

    def to(self, device):
        """Moves the tensors (the ``PaddedBatch.to`` contract)."""
        return _RandomBatch(
            self.wav[0].to(device), self.ref_wav[0].to(device), self.feats.to(device)
        )


def _bench_brain_class():
    """``BiCodecBrain`` with the wav2vec2 front-end replaced by the batch's random features."""
    from bicodec_plugin.training.brain import BiCodecBrain

    class BenchBrain(BiCodecBrain):
        def ssl_features(self, batch):
            return batch.feats

    return BenchBrain


def load_hparams(name, ssl_source, output_folder, overrides=None):
    """Loads a config's hparams with the overrides that a benchmark needs.

    Arguments
    ---------
    name : str
        A key of ``CONFIGS``.
    ssl_source : str
        wav2vec2 folder for the (unused here) ``ssl`` front-end.
    output_folder : str
        Where the train logger may write.
    overrides : dict, optional
        More overrides (e.g. ``segment_duration``).

    Returns
    -------
    dict
    """
    from hyperpyyaml import load_hyperpyyaml

    values = {
        "ssl_source": ssl_source,
        "train_manifest": "unused.jsonl",
        "output_folder": output_folder,
        "tensorboard_folder": None,
        "log_interval": 10**9,
    }
    values.update(overrides or {})
    with open(os.path.join(ROOT, "hparams", CONFIGS[name]), encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, values)


def bench_config(name, args, ssl_source, workdir):
    """Times ``fit_batch`` for one configuration.

    Returns
    -------
    dict
        One table row.
    """
    from bicodec_plugin.training.data import segment_length

    torch.manual_seed(0)
    overrides = {}
    if args.segment_duration is not None:
        overrides["segment_duration"] = args.segment_duration
    hparams = load_hparams(name, ssl_source, os.path.join(workdir, name), overrides)
    batch_size = args.tiny_batch_size if name == "tiny" else args.full_batch_size
    if batch_size is None:
        batch_size = hparams["batch_size"]
    if batch_size < 2:
        # The x-vector head ends in a BatchNorm1d over the batch (as the reference):
        # training mode needs two items per process.
        raise SystemExit(f"{name}: batch size must be at least 2 (got {batch_size})")
    sample_rate, hop = hparams["sample_rate"], hparams["codec"].hop_length
    seg_samples = segment_length(sample_rate, hop, hparams["segment_duration"])
    frames = seg_samples // hop
    segment = seg_samples / sample_rate
    ref_samples = int(sample_rate * hparams["ref_segment_duration"])

    brain = _bench_brain_class()(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts={"device": args.device, "precision": args.precision, "noprogressbar": True},
        checkpointer=None,
    )
    brain.on_fit_start()
    brain.modules.train()
    if args.condition == "d_vector":
        brain.optimizer_step = hparams["d_vector_train_start"] + 1  # past the x-vector phase
    gen_params = sum(p.numel() for p in brain.modules.generator.parameters())
    disc_params = sum(p.numel() for p in brain.modules.discriminator.parameters())

    generator = torch.Generator().manual_seed(0)
    ssl_dim = hparams["arch"]["ssl_dim"]
    on_cuda = str(brain.device).startswith("cuda")

    def make_batch():
        wav = 0.1 * torch.randn(batch_size, seg_samples, generator=generator)
        ref = 0.1 * torch.randn(batch_size, ref_samples, generator=generator)
        feats = torch.randn(batch_size, frames, ssl_dim, generator=generator)
        return _RandomBatch(wav, ref, feats)

    def sync():
        if on_cuda:
            torch.cuda.synchronize()

    times = []
    for index in range(args.warmup + args.steps):
        batch = make_batch()
        sync()
        start = time.perf_counter()
        loss = brain.fit_batch(batch)
        sync()
        elapsed = time.perf_counter() - start
        if not torch.isfinite(loss):
            print(f"warning: {name} step {index}: non-finite generator loss", file=sys.stderr)
        if index >= args.warmup:
            times.append(elapsed)
        print(f"  {name} step {index + 1}: {elapsed:.3f} s", file=sys.stderr, flush=True)
    peak_gpu = None
    if on_cuda:
        peak_gpu = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    per_step = statistics.median(times)
    row = {
        "config": name,
        "generator_params_M": gen_params / 1e6,
        "discriminator_params_M": disc_params / 1e6,
        "device": str(brain.device),
        "precision": args.precision,
        "batch_size": batch_size,
        "segment_s": segment,
        "condition": args.condition,
        "seconds_per_step": per_step,
        "min_seconds_per_step": min(times),
        "audio_seconds_per_second": batch_size * segment / per_step,
        "steps_timed": len(times),
        "peak_gpu_GiB": peak_gpu,
    }
    del brain, hparams
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def markdown_table(rows):
    """The results as a Markdown table."""
    lines = [
        "| config | params G / D (M) | device | precision | batch | segment (s) "
        "| s/step (median) | s/step (min) | audio s/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['generator_params_M']:.1f} / "
            f"{r['discriminator_params_M']:.1f} | {r['device']} | {r['precision']} "
            f"| {r['batch_size']} | {r['segment_s']:.2f} | {r['seconds_per_step']:.3f} "
            f"| {r['min_seconds_per_step']:.3f} | {r['audio_seconds_per_second']:.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:1"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--tiny-batch-size", type=int, default=None, help="default: the yaml's (4)")
    parser.add_argument(
        "--full-batch-size",
        type=int,
        default=None,
        help="16k/24k batch per process (default: 2 on CPU, the yaml's on a GPU)",
    )
    parser.add_argument("--segment-duration", type=float, default=None, help="default: each yaml's")
    parser.add_argument("--condition", choices=["d_vector", "x_vector"], default="d_vector")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per config")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.full_batch_size is None and not args.device.startswith("cuda"):
        args.full_batch_size = 2
    return args


def main(argv=None):
    """Runs the benchmark and prints the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from bicodec_plugin.testing import make_tiny_wav2vec2

    load_before = os.getloadavg()[0]
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: 1-min load average {load_before:.2f} on {os.cpu_count()} CPUs: "
            "timings will be inflated (consider --threads 1)",
            file=sys.stderr,
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_training_") as workdir:
        ssl_source = make_tiny_wav2vec2(os.path.join(workdir, "w2v"))
        for name in args.configs:
            rows.append(bench_config(name, args, ssl_source, workdir))
    load_after = os.getloadavg()[0]
    device_name = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"\nBiCodec training step (fit_batch, random wav2vec2 features), "
        f"torch {torch.__version__}, {device_name}; 1-min load avg {load_before:.2f} "
        f"before, {load_after:.2f} after\n"
    )
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fout:
            json.dump({"rows": rows, "load": [load_before, load_after]}, fout, indent=2)
    return rows


if __name__ == "__main__":
    main()
