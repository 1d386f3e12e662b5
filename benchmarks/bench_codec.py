"""Speed and memory of BiCodec tokenization and detokenization, ours vs. the reference's cost.

What it measures
----------------
A full-size (released 16 kHz shape, 156 M parameters) BiCodec with random weights and a
full-size random XLS-R-53 wav2vec2 (315 M parameters) are written as a Spark-TTS-style
release folder (timed apart, not part of the results), then two configurations are loaded
from that folder with :meth:`BiCodecTokenizer.from_release`:

* ``baseline``: ``ssl_truncate=False`` -- all 24 wav2vec2 layers run, as in the reference
  tokenizer; the codec's weights copied in at loading (``mmap_weights=False``) and weight
  norm folded, as the reference does; the reference's decoder arithmetic
  (1-D convolutions, out-of-place Snake and residual adds); one utterance at a time (a
  batch of B is B sequential batch-1 calls).
* ``ours``: the defaults -- only the 16 wav2vec2 layers that the 11/14/16 layer mix needs;
  the codec's weight file memory-mapped (a weight is resident once read; the wave
  generator's weight norm is folded on its first use);
  the wave generator on a channels-last 2-D view (oneDNN's faster convolutions), Snake
  and residual adds in place; batches go through ``encode_batch`` / ``decode_batch`` in
  one call (padded, with lengths).

Each configuration lives in its own worker process (``multiprocessing``, ``spawn``), so
that its peak RSS is its own; both stay loaded and the parent interleaves their runs
(baseline, ours, ours, baseline, ...; only one computes at any time) and the batch sizes
(B=1, B=8, B=1, ...), so that a change of machine load hits both configurations and all
batch sizes alike. The input is the golden ``prompt_audio.wav`` clip tiled to
``--seconds`` (a deterministic noise-plus-sines signal when the clip is absent). Times are
``time.perf_counter`` wall-clock seconds (process CPU seconds are kept in the JSON) with
``torch.set_num_threads(--threads)``; B=1 calls get one warm-up and the median of
``--repeats`` runs, B>1 batches the median of ``--batch-repeats`` runs (default 1, no
extra warm-up: the B=1 calls have paged in the weights, and one batch takes minutes):

* tokenize and detokenize of one utterance (B=1), in seconds;
* tokenize and detokenize of a batch of B copies of the clip with slightly different
  lengths (``--seconds`` down to 93 % of it), as seconds per batch and as throughput
  (audio seconds processed per wall-clock second, summed over the batch);
* peak RSS (``VmHWM`` of ``/proc/self/status``, else ``ru_maxrss``) of each worker over
  its whole life (loading included), and per phase, the largest over the phase's runs
  (the kernel's peak counter is reset before each run where ``/proc/self/clear_refs``
  allows it; file-backed weight pages that a run touches count too).

The parent then checks that ``ours`` gives exactly the baseline's tokens (global and
semantic, B=1 and every item of every batch), reports the largest difference between the
two decoded B=1 waveforms (the parity tolerance is 1e-4) and prints Markdown tables.

How to read the ratios
----------------------
* ``time ours / baseline`` (B=1): below 1 means ours is faster. The wav2vec2 forward is
  most of the tokenize cost, so running 16 of 24 layers gives about 0.7 at best;
  detokenize runs the same network in both, so expect about 1 (a measure of the noise).
* ``throughput ours / baseline`` (B=N): above 1 means ours processes more audio per
  second than the reference's one-at-a-time loop (layer truncation plus batching).
* ``throughput ours B=N / ours B=1``: the gain of batching alone. On a few CPU cores the
  matrix products are already compute-bound at B=1, so expect about 1; on a GPU this is
  the number that matters. ``decode_batch`` decodes items of different token lengths apart
  (so that padding never changes a waveform): with all-distinct lengths the batched
  detokenize is a loop too.
* ``peak RSS ours / baseline``: a batch keeps the activations of its B items at once, so
  the batched peak can exceed the baseline's; see the per-phase table.

Optional ``--long-minutes N`` then tokenizes one N-minute signal with ``ours`` in a fresh
worker (time and peak RSS). That worker caps its data segment at 80 % of physical memory
(``RLIMIT_DATA``) so that a too-long signal fails with an allocation error, reported,
instead of waking the out-of-memory killer; a killed worker is reported too.

Timings are wall-clock: other processes on the machine slow them down. The 1-minute load
average before and after is printed and saved; interleaving keeps the ratios fair under a
steady load, but absolute numbers are only meaningful on a quiet machine.

Example
-------
    python benchmarks/bench_codec.py --seconds 10 --repeats 3 --threads 2 \
        --batch-sizes 1 8 --json bench.json

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback

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

    from bicodec_plugin.formats.release import build_bicodec, released_config, save_release

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


def ensure_release(folder):
    """``folder`` as a full-size release: reused when complete, else built there.

    Returns
    -------
    str
        ``folder``.
    """
    if not is_release(folder):
        print(f"building a full-size random release in {folder} ...", flush=True)
        build_release(folder)
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
        from bicodec_plugin.codec.audio import read_audio_file

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


def use_reference_decoder_arithmetic(tokenizer):
    """Baseline only: the decoder computes as the reference does.

    Our inference path runs the wave generator on a channels-last 2-D view,
    computes Snake in one buffer and adds residuals in place; the baseline
    must pay what the reference pays: 1-D convolutions, out-of-place Snake
    and residual adds.
    """
    from bicodec_plugin.codec.lobes.decoder import ResidualUnit
    from bicodec_plugin.codec.lobes.layers import Snake1d

    def reference_snake(self, x):
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)

    def reference_residual(self, x):
        y = self.block(x)
        trim = (x.shape[-1] - y.shape[-1]) // 2
        if trim > 0:
            x = x[..., trim:-trim]
        return x + y

    Snake1d.forward = reference_snake
    ResidualUnit.forward = reference_residual
    tokenizer.codec.decoder.channels_last_inference = False


def use_reference_frontend(tokenizer):
    """Baseline only: the wav2vec2 front-end computes and holds what the reference's does.

    Ours runs the feature encoder's first layers on pieces, releases their
    intermediate tensors early (GELU in place) and keeps only the three hidden
    states it averages (same values, less memory); the reference runs HF's
    layers in one pass and asks for all hidden states.
    """
    ssl = tokenizer.codec.ssl
    ssl.keep_all_hidden_states = True
    ssl.model.feature_extractor.chunk_frames = None  # one pass over the whole signal
    for layer in ssl.model.feature_extractor.conv_layers:
        plain = (
            type(layer).__mro__[2] if type(layer).__name__.startswith("LeanLayerNormConv") else None
        )
        if plain is not None:
            layer.__class__ = plain


def limit_data_segment(fraction):
    """Caps this process's data segment at ``fraction`` of physical memory.

    Returns
    -------
    float or None
        The limit in MiB (``None`` where it cannot be set).
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit = int(fraction * total)
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
        return limit / 2**20
    except (ValueError, OSError, AttributeError):
        return None


class CodecWorker:
    """One configuration, loaded inside its worker process.

    Arguments
    ---------
    settings : dict
        ``folder``, ``device``, ``threads``, ``ssl_truncate``, ``clip``, ``seconds`` and
        ``batch_sizes``.
    """

    def __init__(self, settings):
        from bicodec_plugin.inference import BiCodecTokenizer

        torch.set_num_threads(settings["threads"])
        self.device = settings["device"]
        self.seconds = settings["seconds"]
        self.clip = settings["clip"]
        # The reference's way: a batch is a loop of single utterances.
        self.sequential = not settings["ssl_truncate"]
        start = time.perf_counter()
        self.tok = BiCodecTokenizer.from_release(
            settings["folder"],
            run_opts={"device": self.device},
            fold_weight_norm=True,
            ssl_truncate=settings["ssl_truncate"],
            # The reference copies the codec's weights in at once; ours maps the file.
            mmap_weights=settings["ssl_truncate"],
        )
        if self.sequential:
            use_reference_decoder_arithmetic(self.tok)
            use_reference_frontend(self.tok)
        self.info = {
            "ssl_truncate": settings["ssl_truncate"],
            "threads": torch.get_num_threads(),
            "load_s": time.perf_counter() - start,
            "rss_after_load_mib": current_rss_mib(),
            "ssl_layers_run": len(self.tok.codec.ssl.model.encoder.layers),
        }
        load_peak, self.info["peak_reset_ok"] = read_peak_rss_mib(reset=True)
        self.peaks = {"load": load_peak}
        n_max = max(max(batch_lengths(self.seconds, b)) for b in settings["batch_sizes"])
        self.signal, self.info["signal"] = load_signal(self.clip, n_max)
        self.tokens = {}

    def batch(self, size):
        """(padded audio (B, N), relative lengths or None, sample lengths) of a batch."""
        lengths = batch_lengths(self.seconds, size)
        wavs = torch.zeros(size, max(lengths))
        for i, n in enumerate(lengths):
            wavs[i, :n] = self.signal[:n]
        wav_lens = torch.tensor([n / max(lengths) for n in lengths]) if size > 1 else None
        return wavs, wav_lens, lengths

    def tokenize(self, size):
        """Tokenizes the batch of ``size`` (keeps the tokens for :meth:`detokenize`)."""
        wavs, wav_lens, lengths = self.batch(size)
        if self.sequential:
            out = [self.tok.encode_batch(wavs[i : i + 1, :n]) for i, n in enumerate(lengths)]
        else:
            out = self.tok.encode_batch(wavs, wav_lens)
        self.tokens[size] = out

    def detokenize(self, size):
        """Decodes the tokens of the last :meth:`tokenize` of that batch size."""
        toks = self.tokens[size]
        if self.sequential:
            outs = [self.tok.decode_batch(glob, sem, lens) for glob, sem, lens in toks]
        else:
            outs = [self.tok.decode_batch(*toks)]
        if size == 1:
            wavs, lens = outs[0]
            self.wave_b1 = wavs[0, : int(lens[0])].numpy()

    def timed(self, step, size):
        """Runs ``step`` (``tokenize`` or ``detokenize``) once; wall and CPU seconds.

        The peak RSS of the run is folded into the ``<step>_b<size>`` phase (the
        kernel's counter is reset before the run where that is allowed).
        """
        fn = {"tokenize": self.tokenize, "detokenize": self.detokenize}[step]
        read_peak_rss_mib(reset=True)
        sync(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        fn(size)
        sync(self.device)
        out = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        phase = f"{step}_b{size}"
        self.peaks[phase] = max(self.peaks.get(phase, 0.0), read_peak_rss_mib()[0])
        return out

    def token_items(self, size):
        """Tokens of each item of the batch of ``size``: [(global list, semantic list)]."""
        toks = self.tokens[size]
        if self.sequential:
            return [(g[0].tolist(), s[0, : int(n[0])].tolist()) for g, s, n in toks]
        glob, sem, lens = toks
        return [(glob[i].tolist(), sem[i, : int(lens[i])].tolist()) for i in range(size)]

    def long(self, minutes):
        """Tokenizes one ``minutes``-long signal once (after a 2 s warm-up)."""
        num = int(round(minutes * 60 * SAMPLE_RATE))
        out = {"long_minutes": minutes, "data_limit_mib": limit_data_segment(0.8)}
        signal, _ = load_signal(self.clip, num)
        self.tok.encode_batch(signal[: 2 * SAMPLE_RATE].unsqueeze(0))
        read_peak_rss_mib(reset=True)
        try:
            sync(self.device)
            start = time.perf_counter()
            _, sem, _ = self.tok.encode_batch(signal.unsqueeze(0))
            sync(self.device)
            out["tokenize_s"] = time.perf_counter() - start
            out["semantic_tokens"] = int(sem.shape[1])
            out["tokenize_audio_s_per_s"] = num / SAMPLE_RATE / out["tokenize_s"]
        except (RuntimeError, MemoryError) as err:  # torch raises either on allocation
            out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        out["peak_rss_mib"] = read_peak_rss_mib(reset=True)[0]
        self.peaks["tokenize_long"] = out["peak_rss_mib"]
        return out

    def finish(self):
        """Final memory figures of this worker."""
        self.peaks["end"], _ = read_peak_rss_mib()
        info = dict(self.info, peak_rss_by_phase_mib=self.peaks)
        info["peak_rss_mib"] = max(self.peaks.values())
        if self.device.startswith("cuda"):
            info["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return info


def worker_main(conn, settings):
    """Entry point of a worker process: loads a configuration, then serves requests.

    Requests are dicts with an ``op``: ``time`` (``step``, ``batch``), ``tokens``
    (``batch``), ``wave`` (the last B=1 decoded waveform), ``long``
    (``minutes``) and ``finish``. Each gets ``{"ok": result}`` or ``{"error": text}``.

    Arguments
    ---------
    conn : multiprocessing.connection.Connection
        The worker's end of the pipe.
    settings : dict
        See :class:`CodecWorker`.
    """
    try:
        worker = CodecWorker(settings)
        conn.send({"ok": worker.info})
    except Exception:
        conn.send({"error": traceback.format_exc(limit=4)})
        return
    while True:
        msg = conn.recv()
        try:
            if msg["op"] == "time":
                reply = worker.timed(msg["step"], msg["batch"])
            elif msg["op"] == "tokens":
                reply = worker.token_items(msg["batch"])
            elif msg["op"] == "wave":
                reply = worker.wave_b1
            elif msg["op"] == "long":
                reply = worker.long(msg["minutes"])
            elif msg["op"] == "finish":
                conn.send({"ok": worker.finish()})
                return
            else:
                raise ValueError(f"unknown request {msg['op']!r}")
            conn.send({"ok": reply})
        except Exception:
            conn.send({"error": traceback.format_exc(limit=4)})


# ---------------------------------------------------------------------- parent
class WorkerFailed(RuntimeError):
    """A worker reported an error or died."""


class WorkerHandle:
    """The parent's handle on a worker process (started and loaded on construction).

    Arguments
    ---------
    name : str
        Configuration name (for messages).
    settings : dict
        See :class:`CodecWorker`.
    """

    def __init__(self, name, settings):
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, settings), daemon=True)
        self.proc.start()
        child.close()
        self.info = self.call(None)

    def call(self, msg):
        """Sends a request (``None``: only wait) and returns the worker's result."""
        try:
            if msg is not None:
                self.conn.send(msg)
            reply = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.proc.join(10)
            code = self.proc.exitcode
            why = " (killed by a signal: out of memory?)" if code is not None and code < 0 else ""
            raise WorkerFailed(f"{self.name} worker exited with {code}{why}") from None
        if "error" in reply:
            raise WorkerFailed(f"{self.name} worker: {reply['error'].strip().splitlines()[-1]}")
        return reply["ok"]

    def close(self):
        """Asks for the final figures and ends the worker; returns them (or ``None``)."""
        final = None
        if self.proc.is_alive():
            try:
                final = self.call({"op": "finish"})
            except WorkerFailed:
                pass
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)
        return final


def measure(handles, args, results):
    """Interleaved timing of the loaded configurations.

    For each step (tokenize, then detokenize) every configuration gets one B=1
    warm-up; then rounds run every batch size in turn (B=1, B=8, B=1, B=8, ...)
    and, within each, every configuration (in alternating order). So a drift
    of machine speed hits the configurations and the batch sizes alike, and
    the B=N / B=1 ratios compare runs made side by side.

    Arguments
    ---------
    handles : dict
        Name -> :class:`WorkerHandle`.
    args : argparse.Namespace
        ``seconds``, ``batch_sizes`` (1 first), ``repeats`` (timed B=1 runs, after one
        warm-up) and ``batch_repeats`` (timed B>1 runs).
    results : dict
        Name -> dict, filled in (``"b<B>"`` entries, or ``"error"``).
    """
    active = dict(handles)

    def call(name, msg):
        try:
            return active[name].call(msg)
        except WorkerFailed as err:
            results[name]["error"] = str(err)
            del active[name]
            return None

    def wanted(size):
        return args.repeats if size == 1 else args.batch_repeats

    for step in ("tokenize", "detokenize"):
        runs = {(name, size): [] for name in active for size in args.batch_sizes}
        for name in list(active):
            call(name, {"op": "time", "step": step, "batch": 1})
        for rnd in range(max(wanted(size) for size in args.batch_sizes)):
            for size in args.batch_sizes:
                if rnd >= wanted(size):
                    continue
                order = list(active) if rnd % 2 == 0 else list(active)[::-1]
                for name in order:
                    if name in active:
                        run = call(name, {"op": "time", "step": step, "batch": size})
                        if run is not None:
                            runs[(name, size)].append(run)
        for size in args.batch_sizes:
            lengths = batch_lengths(args.seconds, size)
            audio_s = sum(lengths) / SAMPLE_RATE
            for name in active:
                done = runs[(name, size)]
                if not done:
                    continue
                wall = statistics.median(r["wall_s"] for r in done)
                entry = results[name].setdefault(
                    f"b{size}", {"lengths_s": [n / SAMPLE_RATE for n in lengths]}
                )
                entry["audio_s"] = audio_s
                entry[f"{step}_s"] = wall
                entry[f"{step}_cpu_s"] = statistics.median(r["cpu_s"] for r in done)
                entry[f"{step}_runs_s"] = [r["wall_s"] for r in done]
                entry[f"{step}_audio_s_per_s"] = audio_s / wall
        print(f"  {step}: done", flush=True)


def compare_tokens(tokens):
    """Compares the tokens of ``ours`` with the baseline's.

    Arguments
    ---------
    tokens : dict
        Name -> batch size -> [(global list, semantic list)] per item.

    Returns
    -------
    dict
        ``identical`` (bool), ``agreement_pct`` and ``compared`` (token count) over the
        global and the valid semantic tokens of every item of every batch, and
        ``distinct_semantic`` (distinct semantic ids in the baseline's output).
    """
    same = total = 0
    shapes_ok = True
    distinct = set()
    for size, base_items in tokens["baseline"].items():
        for (g_b, s_b), (g_o, s_o) in zip(base_items, tokens["ours"][size]):
            distinct.update(s_b)
            for ref, new in ((g_b, g_o), (s_b, s_o)):
                shapes_ok = shapes_ok and len(ref) == len(new)
                same += sum(int(a == b) for a, b in zip(ref, new))
                total += max(len(ref), len(new))
    return {
        "identical": shapes_ok and same == total,
        "agreement_pct": 100.0 * same / max(total, 1),
        "compared": total,
        "distinct_semantic": len(distinct),
    }


def ratios(results, batch_sizes):
    """Ours / baseline ratios (and ours' batching gain) from the measured results."""
    base, ours = results.get("baseline", {}), results.get("ours", {})
    if "error" in base or "error" in ours or "b1" not in base or "b1" not in ours:
        return {}
    out = {}
    for step in ("tokenize", "detokenize"):
        out[f"{step}_time_b1_ours_over_baseline"] = (
            ours["b1"][f"{step}_s"] / base["b1"][f"{step}_s"]
        )
        out[f"{step}_cpu_time_b1_ours_over_baseline"] = (
            ours["b1"][f"{step}_cpu_s"] / base["b1"][f"{step}_cpu_s"]
        )
    for size in batch_sizes[1:]:
        key = f"b{size}"
        for step in ("tokenize", "detokenize"):
            tput = f"{step}_audio_s_per_s"
            out[f"{step}_throughput_{key}_ours_over_baseline"] = ours[key][tput] / base[key][tput]
            out[f"{step}_throughput_ours_{key}_over_b1"] = ours[key][tput] / ours["b1"][tput]
    if "peak_rss_mib" in base and "peak_rss_mib" in ours:
        out["peak_rss_ours_over_baseline"] = ours["peak_rss_mib"] / base["peak_rss_mib"]
    return out


RATIO_LABELS = {
    "tokenize_time_b1_ours_over_baseline": "tokenize time, B=1 (ours / baseline)",
    "detokenize_time_b1_ours_over_baseline": "detokenize time, B=1 (ours / baseline)",
    "tokenize_cpu_time_b1_ours_over_baseline": "tokenize CPU time, B=1 (ours / baseline)",
    "detokenize_cpu_time_b1_ours_over_baseline": "detokenize CPU time, B=1 (ours / baseline)",
    "peak_rss_ours_over_baseline": "worker peak RSS (ours / baseline)",
}


def _ratio_label(key):
    if key in RATIO_LABELS:
        return RATIO_LABELS[key]
    step, _, rest = key.partition("_throughput_")
    if rest.startswith("ours_"):
        size = rest.split("_")[1][1:]
        return f"{step} throughput, ours B={size} / ours B=1"
    return f"{step} throughput, B={rest.split('_')[0][1:]} (ours / baseline)"


def _load_average():
    """1-minute load average (None where unknown)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _fmt(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_tables(results, ratio, batch_sizes):
    """The Markdown tables (results, per-phase memory, ratios) as one string."""
    multi = batch_sizes[1:]
    head = ["configuration", "tokenize s (B=1)", "detokenize s (B=1)"]
    for size in multi:
        head += [
            f"tokenize s/batch (B={size})",
            f"detokenize s/batch (B={size})",
            f"tokenize audio-s/s (B={size})",
            f"detokenize audio-s/s (B={size})",
        ]
    head.append("peak RSS MiB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    phases = [(s, b) for b in batch_sizes for s in ("tokenize", "detokenize")]
    mem_head = ["configuration", "load s", "RSS after load MiB"]
    mem_head += [f"{s} B={b} peak MiB" for s, b in phases]
    mem = ["| " + " | ".join(mem_head) + " |", "|" + "---|" * len(mem_head)]
    for name in CONFIGS:
        res = results.get(name, {})
        b1 = res.get("b1", {})
        row = [name, _fmt(b1.get("tokenize_s")), _fmt(b1.get("detokenize_s"))]
        for size in multi:
            r = res.get(f"b{size}", {})
            row += [
                _fmt(r.get("tokenize_s")),
                _fmt(r.get("detokenize_s")),
                _fmt(r.get("tokenize_audio_s_per_s")),
                _fmt(r.get("detokenize_audio_s_per_s")),
            ]
        row.append(_fmt(res.get("peak_rss_mib"), 0))
        if "error" in res:
            row[0] += f" (failed: {res['error']})"
        lines.append("| " + " | ".join(row) + " |")
        peaks = res.get("peak_rss_by_phase_mib", {})
        mrow = [name, _fmt(res.get("load_s"), 1), _fmt(res.get("rss_after_load_mib"), 0)]
        mrow += [_fmt(peaks.get(f"{s}_b{b}"), 0) for s, b in phases]
        mem.append("| " + " | ".join(mrow) + " |")
    text = "\n".join(lines) + "\n\nPeak RSS per phase (MiB; the weights are resident in all):\n\n"
    text += "\n".join(mem) + "\n"
    if ratio:
        text += "\n| ratio | value |\n|---|---|\n"
        text += "\n".join(f"| {_ratio_label(k)} | {v:.3f} |" for k, v in ratio.items()) + "\n"
    return text


def parse_args(argv=None):
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (B=1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed B=1 runs (median)")
    parser.add_argument(
        "--batch-repeats", type=int, default=1, help="timed runs of each B>1 batch (median)"
    )
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
    args = parser.parse_args(argv)
    # B=1 is the reference point of the ratios and warms the workers up: always first.
    args.batch_sizes = [1] + sorted(set(args.batch_sizes) - {1})
    if args.repeats < 1 or args.batch_repeats < 1:
        parser.error("--repeats and --batch-repeats must be at least 1")
    return args


def run_long(args, folder):
    """Tokenizes one ``--long-minutes`` signal with ``ours`` in a fresh worker."""
    settings = _settings(args, folder, ssl_truncate=True, batch_sizes=[1])
    handle = None
    try:
        handle = WorkerHandle("long", settings)
        out = handle.call({"op": "long", "minutes": args.long_minutes})
    except WorkerFailed as err:
        out = {"long_minutes": args.long_minutes, "error": str(err)}
    if handle is not None:
        handle.close()
    return out


def _settings(args, folder, ssl_truncate, batch_sizes):
    return {
        "folder": folder,
        "device": args.device,
        "threads": args.threads,
        "ssl_truncate": ssl_truncate,
        "clip": args.clip,
        "seconds": args.seconds,
        "batch_sizes": batch_sizes,
    }


def main(argv=None):
    """Builds (or reuses) the release, runs the workers, prints and saves the results."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_codec_")
    try:
        folder = args.folder or os.path.join(tmp, "release")
        build_s = None
        if is_release(folder):
            print(f"reusing release folder {folder}")
        else:
            print(f"building a full-size random release in {folder} ...", flush=True)
            start = time.perf_counter()
            build_release(folder)
            build_s = time.perf_counter() - start
            print(f"built in {build_s:.1f} s (not part of the results)")

        load_before = _load_average()
        start = time.perf_counter()
        results = {name: {} for name in CONFIGS}
        handles = {}
        for name, truncate in CONFIGS.items():  # loaded one after the other
            print(f"loading {name} ...", flush=True)
            try:
                handles[name] = WorkerHandle(
                    name, _settings(args, folder, truncate, args.batch_sizes)
                )
                results[name].update(handles[name].info)
            except WorkerFailed as err:
                results[name]["error"] = str(err)
        measure(handles, args, results)
        tokens, waves = {}, {}
        for name, handle in handles.items():
            if "error" not in results[name]:
                try:
                    tokens[name] = {
                        b: handle.call({"op": "tokens", "batch": b}) for b in args.batch_sizes
                    }
                    waves[name] = handle.call({"op": "wave"})
                except WorkerFailed as err:
                    results[name]["error"] = str(err)
            final = handle.close()
            if final is not None:
                results[name].update(final)
        check = compare_tokens(tokens) if len(tokens) == len(CONFIGS) else None
        wave_diff = None
        if len(waves) == len(CONFIGS) and check is not None and check["identical"]:
            base_wave, ours_wave = waves["baseline"], waves["ours"]
            if base_wave.shape == ours_wave.shape:
                wave_diff = float(abs(base_wave - ours_wave).max())
        long = None
        if args.long_minutes > 0 and not args.skip_long:
            print(f"tokenizing {args.long_minutes:g} min with ours ...", flush=True)
            long = run_long(args, folder)
        measure_s = time.perf_counter() - start
        load_after = _load_average()

        ratio = ratios(results, args.batch_sizes)
        signal = next((r["signal"] for r in results.values() if "signal" in r), "?")
        print()
        print(
            f"BiCodec full size, random weights; {args.seconds:g} s of {signal}; device "
            f"{args.device}, {args.threads} threads; B=1 median of {args.repeats}, B>1 median "
            f"of {args.batch_repeats}; torch {torch.__version__}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
            f"load average {_fmt(load_before)} before, {_fmt(load_after)} after; "
            f"measuring took {measure_s:.0f} s"
        )
        print()
        print(format_tables(results, ratio, args.batch_sizes))
        if check is not None:
            print(
                f"identical tokens: {'yes' if check['identical'] else 'no'} "
                f"(agreement {check['agreement_pct']:.2f} % of {check['compared']} tokens; "
                f"{check['distinct_semantic']} distinct semantic ids)"
            )
        else:
            print("identical tokens: not checked (a worker failed)")
        if wave_diff is not None:
            print(
                f"decoded waveform, B=1: max abs difference ours - baseline {wave_diff:.2e} "
                "(parity tolerance 1e-4)"
            )
        if long is not None:
            outcome = (
                f"failed ({long['error']})"
                if "error" in long
                else f"tokenize {_fmt(long['tokenize_s'])} s "
                f"({_fmt(long['tokenize_audio_s_per_s'])} audio-s/s)"
            )
            print(
                f"long audio ({args.long_minutes:g} min, ours): {outcome}, "
                f"peak RSS {_fmt(long.get('peak_rss_mib'), 0)} MiB"
            )
        if args.json:
            payload = {
                "settings": vars(args),
                "torch": torch.__version__,
                "cpus": os.cpu_count(),
                "build_s": build_s,
                "measure_s": measure_s,
                "load_average_before_after": [load_before, load_after],
                "results": results,
                "ratios": ratio,
                "tokens": check,
                "waveform_max_abs_diff_b1": wave_diff,
                "long": long,
            }
            with open(args.json, "w", encoding="utf-8") as fout:
                json.dump(payload, fout, indent=2)
            print(f"results written to {args.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
