"""One prepared run on a lent accelerator machine: every GPU and native-bf16 CPU figure.

Run it from the repository root with nothing else prepared::

    python benchmarks/device_check.py --out DIR            # about 4-5 minutes on one H100
    python benchmarks/device_check.py --out DIR --device cpu --quick   # a small dry run

It builds a full-size random-weight release in a temporary folder (as
``bench_codec.py`` does) and measures, each section in its own ``try`` with its
own time box, so that one failure or a slow section does not lose the rest:

1. ``environment``: the machine kind (``benchmarks/machine.py``), GPU, CPU flags,
   library versions, TF32 settings.
2. ``codec``: tokenize and detokenize on the device in float32, B=1 (one 10 s
   clip) and B=8 (lengths 10 s down to 9.3 s, one padded batch): seconds and
   throughput (audio seconds per second), B=8 throughput / B=1 (the goal is at
   least 3), the reference's tokenize cost (all 24 wav2vec2 layers) for the ratio,
   and whether batched items equal the B=1 results.
3. ``fast``: bf16 autocast tokenize (and detokenize) time and its token agreement
   with float32 (global and semantic), B=1 and B=8.
4. ``stream``: streaming detokenization with the exact lookahead, chunks of 10, 25
   and 50 frames and the default schedule (10, 25, 50, 100): first-chunk latency,
   total time, real-time factor, ratio to the whole decode, max |stream - decode|.
5. ``training``: ``BiCodecBrain.fit_batch`` steps of ``hparams/bicodec_16k.yaml``
   (random audio, batch 8 of 2.4 s, random wav2vec2 features, a few warm-up
   steps) in fp32 and bf16, plus the frozen full-size wav2vec2 forward of such a
   batch, and the throughput of both together.
6. ``cpu``: whether the CPU has native bf16; where it has (or with ``--quick``):
   the full-size discriminator (16 and 24 kHz inputs) under CPU bf16 autocast
   against float32 (max abs difference relative to max |fp32| per
   sub-discriminator, all finite?) as built and with its band stacks left in
   bf16, the same for one ``Conv2d(4, 4, (3, 9), stride=(1, 2), padding=(1, 4))``
   on inputs of width 1 to 8, and the CPU tokenize of the reference's cost
   (24 layers), exact and fast (bf16) modes, interleaved, with per-run ratios and
   fast-vs-exact agreement.
7. ``profile``: where the CPU tokenize time goes, for the reference's cost, exact
   and fast modes: seconds of each stage (wav2vec2, speaker path, semantic path)
   and the top operators of one ``torch.profiler`` run.

Results go to ``DIR/device_check.json`` (rewritten after every section) and a
summary table is printed at the end.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from machine import cpu_flags, cpu_kind, describe, machine_kind, native_bf16_cpu  # noqa: E402

SAMPLE_RATE = 16000


class Budget:
    """A section's time box: ``more()`` is False once its seconds are spent."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = time.perf_counter()

    def more(self):
        """Whether there is time left for one more optional run."""
        return time.perf_counter() - self.start < self.seconds

    def elapsed(self):
        """Seconds since the section started."""
        return time.perf_counter() - self.start


def sync(device):
    """Waits for queued CUDA work."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    """(result, wall seconds) of ``fn()``."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def repeat(fn, device, budget, runs, warmup=1):
    """Median seconds of up to ``runs`` timed calls (after ``warmup``) within ``budget``."""
    out = None
    for _ in range(warmup):
        out, _ = timed(fn, device)
    times = []
    while len(times) < runs and (not times or budget.more()):
        out, seconds = timed(fn, device)
        times.append(seconds)
    return out, statistics.median(times), times


def agreement(a, b):
    """Share of equal tokens (None when the shapes differ)."""
    if a.shape != b.shape:
        return None
    return float((a.cpu() == b.cpu()).float().mean())


# --------------------------------------------------------------------- sections
def section_environment(ctx):
    """Machine kind, versions and precision settings."""
    info = machine_kind(ctx.device)
    info["python"] = platform.python_version()
    versions = {}
    for name in (
        "transformers",
        "speechbrain",
        "torchaudio",
        "hyperpyyaml",
        "soxr",
        "soundfile",
        "safetensors",
    ):
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as err:  # a missing library is a finding, not a crash
            versions[name] = f"MISSING ({type(err).__name__})"
    info["versions"] = versions
    flags = cpu_flags()
    info["cpu_flags_bf16"] = sorted(f for f in flags if "bf16" in f or f.startswith("amx"))
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu_memory_GiB"] = torch.cuda.get_device_properties(0).total_memory / 2**30
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        info["gpu_bf16"] = torch.cuda.is_bf16_supported()
    ctx.kind = info["kind"]
    ctx.lines.append(describe(info))
    ctx.lines.append(f"versions: {versions}")
    return info


def section_release(ctx):
    """Builds the full-size (or, with --quick, tiny) random release."""
    folder = os.path.join(ctx.tmp, "release")
    start = time.perf_counter()
    if ctx.args.quick:
        build_tiny_release(folder)
    else:
        from bench_codec import build_release

        build_release(folder)
    ctx.folder = folder
    seconds = time.perf_counter() - start
    ctx.lines.append(f"release built in {seconds:.1f} s ({'tiny' if ctx.args.quick else 'full'})")
    return {"build_s": seconds, "size": "tiny" if ctx.args.quick else "full"}


def build_tiny_release(folder):
    """A tiny random release (TINY_ARCH + a tiny wav2vec2), for --quick dry runs."""
    from bicodec_plugin.arch import build_codec
    from bicodec_plugin.formats.release import arch_to_release, save_release
    from bicodec_plugin.testing import TINY_ARCH, make_tiny_wav2vec2

    torch.manual_seed(0)
    model = build_codec(TINY_ARCH)
    w2v = make_tiny_wav2vec2(os.path.join(os.path.dirname(folder), "w2v"), num_layers=18)
    save_release(model, folder, arch_to_release(TINY_ARCH), ssl_source=w2v)


def _signal(seconds):
    from bench_codec import DEFAULT_CLIP, load_signal

    signal, _ = load_signal(DEFAULT_CLIP, int(round(seconds * SAMPLE_RATE)))
    return signal


def _batch(seconds, size):
    """(padded (B, N) audio, relative lengths, sample lengths), 10 s down to 9.3 s."""
    from bench_codec import batch_lengths

    lengths = batch_lengths(seconds, size)
    signal = _signal(seconds)
    wavs = torch.zeros(size, max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, :n] = signal[:n]
    rel = torch.tensor([n / max(lengths) for n in lengths])
    return wavs, rel, lengths


def _tokenizer(ctx, precision=None, ssl_truncate=True):
    from bicodec_plugin.inference import BiCodecTokenizer

    run_opts = {"device": ctx.device}
    if precision:
        run_opts["precision"] = precision
    return BiCodecTokenizer.from_release(ctx.folder, run_opts=run_opts, ssl_truncate=ssl_truncate)


def section_codec(ctx, budget):
    """Float32 tokenize / detokenize, B=1 and B=8, and the reference's tokenize cost."""
    args, dev = ctx.args, ctx.device
    tok = _tokenizer(ctx)
    ctx.exact = tok
    size = args.batch
    one = _signal(args.seconds)[None]
    wavs, rel, lengths = _batch(args.seconds, size)
    audio_1, audio_b = one.shape[1] / SAMPLE_RATE, sum(lengths) / SAMPLE_RATE
    out = {"seconds": args.seconds, "batch": size}
    tokens_1, out["tokenize_b1_s"], out["tokenize_b1_runs"] = repeat(
        lambda: tok.encode_batch(one), dev, budget, args.runs
    )
    tokens_b, out[f"tokenize_b{size}_s"], _ = repeat(
        lambda: tok.encode_batch(wavs, rel), dev, budget, max(1, args.runs - 1)
    )
    ctx.tokens_1, ctx.tokens_b = tokens_1, tokens_b
    glob, sem, lens = tokens_b
    out["batched_item0_tokens_equal_b1"] = bool(
        torch.equal(glob[:1].cpu(), tokens_1[0].cpu())
        and torch.equal(sem[0, : int(lens[0])].cpu(), tokens_1[1][0].cpu())
    )
    wav_1, out["detokenize_b1_s"], out["detokenize_b1_runs"] = repeat(
        lambda: tok.decode_batch(*tokens_1), dev, budget, args.runs
    )
    wav_b, out[f"detokenize_b{size}_s"], _ = repeat(
        lambda: tok.decode_batch(*tokens_b), dev, budget, max(1, args.runs - 1)
    )
    n = int(wav_1[1][0])
    out["batched_item0_decode_max_abs_diff"] = float(
        (wav_b[0][0, :n].cpu() - wav_1[0][0, :n].cpu()).abs().max()
    )
    for step in ("tokenize", "detokenize"):
        tput_1 = audio_1 / out[f"{step}_b1_s"]
        tput_b = audio_b / out[f"{step}_b{size}_s"]
        out[f"{step}_b1_audio_s_per_s"] = tput_1
        out[f"{step}_b{size}_audio_s_per_s"] = tput_b
        out[f"{step}_b{size}_over_b1_throughput"] = tput_b / tput_1
    if budget.more():
        base = _tokenizer(ctx, ssl_truncate=False)
        _, out["reference_tokenize_b1_s"], _ = repeat(
            lambda: base.encode_batch(one), dev, budget, args.runs
        )
        out["tokenize_b1_ours_over_reference"] = (
            out["tokenize_b1_s"] / out["reference_tokenize_b1_s"]
        )
        del base
    if dev.startswith("cuda"):
        out["cuda_max_allocated_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    ctx.lines.append(
        f"[{ctx.kind}] fp32 tokenize B=1 {out['tokenize_b1_s']:.3f} s, B={size} "
        f"{out[f'tokenize_b{size}_s']:.3f} s (throughput x{out[f'tokenize_b{size}_over_b1_throughput']:.2f}); "
        f"detokenize B=1 {out['detokenize_b1_s']:.3f} s, B={size} {out[f'detokenize_b{size}_s']:.3f} s "
        f"(throughput x{out[f'detokenize_b{size}_over_b1_throughput']:.2f}); "
        f"ours/reference tokenize {out.get('tokenize_b1_ours_over_reference', float('nan')):.3f}"
    )
    return out


def section_fast(ctx, budget):
    """bf16 autocast: time and agreement with float32."""
    args, dev = ctx.args, ctx.device
    fast = _tokenizer(ctx, precision="bf16")
    one = _signal(args.seconds)[None]
    wavs, rel, _ = _batch(args.seconds, args.batch)
    out = {}
    toks_1, out["tokenize_b1_s"], _ = repeat(lambda: fast.encode_batch(one), dev, budget, args.runs)
    exact_1 = ctx.tokens_1
    out["global_agreement_b1"] = agreement(toks_1[0], exact_1[0])
    out["semantic_agreement_b1"] = agreement(toks_1[1], exact_1[1])
    if "tokenize_b1_s" in ctx.results.get("codec", {}):
        out["tokenize_b1_fast_over_exact"] = (
            out["tokenize_b1_s"] / ctx.results["codec"]["tokenize_b1_s"]
        )
        ref = ctx.results["codec"].get("reference_tokenize_b1_s")
        if ref:
            out["tokenize_b1_fast_over_reference"] = out["tokenize_b1_s"] / ref
    if budget.more():
        toks_b, out[f"tokenize_b{args.batch}_s"], _ = repeat(
            lambda: fast.encode_batch(wavs, rel), dev, budget, 1
        )
        g_e, s_e, l_e = ctx.tokens_b
        same = total = 0
        for i in range(args.batch):
            n = int(l_e[i])
            same += int((toks_b[1][i, :n].cpu() == s_e[i, :n].cpu()).sum())
            total += n
        out[f"semantic_agreement_b{args.batch}"] = same / max(total, 1)
        out[f"global_agreement_b{args.batch}"] = agreement(toks_b[0], g_e)
    if budget.more():
        _, out["detokenize_b1_s"], _ = repeat(
            lambda: fast.decode_batch(*exact_1), dev, budget, args.runs
        )
    ctx.lines.append(
        f"[{ctx.kind}] bf16 tokenize B=1 {out['tokenize_b1_s']:.3f} s "
        f"(fast/exact {out.get('tokenize_b1_fast_over_exact', float('nan')):.3f}, "
        f"fast/reference {out.get('tokenize_b1_fast_over_reference', float('nan')):.3f}); "
        f"agreement with fp32: global {out['global_agreement_b1']}, semantic "
        f"{out['semantic_agreement_b1']}"
    )
    return out


def section_stream(ctx, budget):
    """Streaming detokenization with the exact lookahead."""
    from bench_streaming import chunk_label, run_stream, run_whole, snr_db

    tok, dev = ctx.exact, ctx.device
    gen = torch.Generator().manual_seed(0)
    frames = int(round(ctx.args.seconds * tok.token_rate))
    glob = torch.randint(0, 4096, (1, 32), generator=gen)
    sem = torch.randint(0, tok.codec.quantizer.codebook_size, (1, frames), generator=gen)
    audio_s = frames * tok.hop_length / tok.sample_rate
    run_whole(tok, glob, sem, dev)  # warm-up
    whole, whole_res = run_whole(tok, glob, sem, dev)
    out = {"whole_decode_s": whole_res["wall_s"], "audio_s": audio_s, "chunks": {}}
    for chunk in (10, 25, 50, (10, 25, 50, 100)):  # the last: the default schedule
        if not budget.more():
            break
        warm = 3 * (max(chunk) if isinstance(chunk, tuple) else chunk) + 80
        run_stream(tok, glob, sem[:, :warm], chunk, device=dev)  # warm-up
        audio, res = run_stream(tok, glob, sem, chunk, device=dev)
        res["rtf"] = res["wall_s"] / audio_s
        res["over_whole"] = res["wall_s"] / whole_res["wall_s"]
        res["max_abs_diff"] = float((audio.cpu() - whole.cpu()).abs().max())
        res["snr_db"] = snr_db(whole.cpu(), audio.cpu())
        out["chunks"][chunk_label(chunk)] = res
        ctx.lines.append(
            f"[{ctx.kind}] stream C={chunk_label(chunk)}: first chunk after "
            f"{res['first_chunk_tokens']} tokens, "
            f"{res['first_chunk_s']:.3f} s (last push {res['first_chunk_last_push_s']:.3f} s); "
            f"total {res['wall_s']:.3f} s, RTF {res['rtf']:.4f}, x{res['over_whole']:.2f} of "
            f"the whole decode; max diff {res['max_abs_diff']:.1e}"
        )
    return out


def section_training(ctx, budget):
    """Training-step throughput (16 kHz config) in fp32 and bf16, plus the frozen wav2vec2."""
    import bench_training
    from bench_codec import XLSR53_SIZES
    from transformers import Wav2Vec2Config

    from bicodec_plugin.codec.lobes.frontends import Wav2Vec2LayerMix
    from bicodec_plugin.testing import make_tiny_wav2vec2

    args, dev = ctx.args, ctx.device
    config = "tiny" if args.quick else "16k"
    batch = 2 if args.quick else 8
    out = {"config": config, "batch": batch, "segment_s": 2.4}
    workdir = os.path.join(ctx.tmp, "training")
    ssl_source = make_tiny_wav2vec2(os.path.join(workdir, "w2v"))
    sizes = dict(XLSR53_SIZES)
    if args.quick:
        sizes.update(
            hidden_size=64,
            num_hidden_layers=16,
            num_attention_heads=2,
            intermediate_size=128,
            conv_dim=[32] * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        )
    ssl = Wav2Vec2LayerMix(Wav2Vec2Config(**sizes)).to(dev)
    audio = 0.1 * torch.randn(
        batch, int(2.4 * SAMPLE_RATE), generator=torch.Generator().manual_seed(0)
    )
    audio = audio.to(dev)
    for precision in ("fp32", "bf16"):
        if not budget.more():
            break
        bench_args = argparse.Namespace(
            segment_duration=2.4,
            tiny_batch_size=batch,
            full_batch_size=batch,
            device=dev,
            precision=precision,
            condition="d_vector",
            warmup=1 if args.quick else 2,
            steps=2 if args.quick else 3,
        )
        row = bench_training.bench_config(config, bench_args, ssl_source, workdir)
        autocast = (
            torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16)
            if precision == "bf16"
            else contextlib.nullcontext()
        )

        def ssl_forward(ctx_manager=autocast):
            with ctx_manager:
                return ssl(audio)

        _, ssl_s, _ = repeat(ssl_forward, dev, budget, 3)
        row["wav2vec2_forward_s"] = ssl_s
        row["with_wav2vec2_audio_s_per_s"] = batch * 2.4 / (row["seconds_per_step"] + ssl_s)
        out[precision] = row
        ctx.lines.append(
            f"[{ctx.kind}] training {config} {precision} B={batch}x2.4 s: "
            f"{row['seconds_per_step']:.3f} s/step ({row['audio_seconds_per_second']:.1f} audio-s/s); "
            f"+ frozen wav2vec2 {ssl_s:.3f} s -> {row['with_wav2vec2_audio_s_per_s']:.1f} audio-s/s; "
            f"peak GPU {row.get('peak_gpu_GiB')}"
        )
    return out


def _relative_diff(ref, test):
    ref, test = ref.float(), test.float()
    scale = float(ref.abs().max())
    finite = bool(torch.isfinite(test).all())
    diff = float((test - ref).abs().max()) if finite else math.inf
    return {"rel_max_abs_diff": diff / scale if scale > 0 else diff, "finite": finite}


def _discriminator_check(seconds_rate_pairs, quick):
    """Full-size discriminator: bf16 autocast vs fp32 on CPU, as built and band stacks in bf16."""
    from bicodec_plugin.arch import load_arch
    from bicodec_plugin.training.discriminators import BandSTFTDiscriminator

    torch.manual_seed(0)
    disc = load_arch("discriminator")["discriminator"].eval()
    results = {}
    plain_forward = BandSTFTDiscriminator.forward

    def bf16_band_stacks(self, x):  # the workaround off: band stacks under autocast
        return self._band_maps(self.spectrogram(x))

    for rate, seconds in seconds_rate_pairs:
        x = 0.3 * torch.randn(2, 1, int(rate * seconds), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = disc(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                built = disc(x)
            BandSTFTDiscriminator.forward = bf16_band_stacks
            try:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    raw = disc(x)
            finally:
                BandSTFTDiscriminator.forward = plain_forward
        for name, outs in (("as_built", built), ("band_stacks_bf16", raw)):
            per_sub = [_relative_diff(r[-1], o[-1]) for r, o in zip(ref, outs)]
            maps = [_relative_diff(rm, om) for r, o in zip(ref, outs) for rm, om in zip(r, o)]
            results[f"{rate}Hz_{name}"] = {
                "logits_rel_max_abs_diff": [p["rel_max_abs_diff"] for p in per_sub],
                "all_maps_finite": all(m["finite"] for m in maps),
                "worst_map_rel_diff": max(m["rel_max_abs_diff"] for m in maps),
            }
    return results


def _conv_width_check():
    """One Conv2d(4, 4, (3, 9), stride (1, 2), padding (1, 4)) under CPU bf16 autocast, widths 1-8."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, (3, 9), stride=(1, 2), padding=(1, 4)).eval()
    rows = {}
    for width in range(1, 9):
        x = torch.randn(2, 4, 16, width)
        with torch.no_grad():
            ref = conv(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                test = conv(x)
        rows[width] = _relative_diff(ref, test)
    return rows


def _cpu_tokenize(ctx, budget):
    """CPU tokenize: reference cost (24 layers), exact and fast (bf16), interleaved."""
    from bicodec_plugin.inference import BiCodecTokenizer

    threads = ctx.args.cpu_threads
    torch.set_num_threads(threads)
    toks = {
        "reference": BiCodecTokenizer.from_release(
            ctx.folder, run_opts={"device": "cpu"}, ssl_truncate=False, mmap_weights=False
        ),
        "exact": BiCodecTokenizer.from_release(ctx.folder, run_opts={"device": "cpu"}),
        "fast": BiCodecTokenizer.from_release(
            ctx.folder, run_opts={"device": "cpu", "precision": "bf16"}
        ),
    }
    one = _signal(ctx.args.seconds)[None]
    times = {name: [] for name in toks}
    outputs = {}
    for name, tok in toks.items():  # warm-up
        outputs[name] = tok.encode_batch(one)
    rounds = 0
    while rounds < ctx.args.runs and (rounds == 0 or budget.more()):
        names = list(toks) if rounds % 2 == 0 else list(toks)[::-1]
        for name in names:
            outputs[name], seconds = timed(lambda t=toks[name]: t.encode_batch(one), "cpu")
            times[name].append(seconds)
        rounds += 1
    ref_runs = times["reference"]
    out = {
        "threads": threads,
        "seconds": ctx.args.seconds,
        "times_s": times,
        "exact_over_reference_per_round": [e / r for e, r in zip(times["exact"], ref_runs)],
        "fast_over_reference_per_round": [f / r for f, r in zip(times["fast"], ref_runs)],
        "fast_global_agreement": agreement(outputs["fast"][0], outputs["exact"][0]),
        "fast_semantic_agreement": agreement(outputs["fast"][1], outputs["exact"][1]),
        "exact_equals_reference": bool(
            torch.equal(outputs["exact"][0], outputs["reference"][0])
            and torch.equal(outputs["exact"][1], outputs["reference"][1])
        ),
    }
    return out


def section_cpu(ctx, budget):
    """Native bf16 on the CPU: discriminator and conv checks, CPU tokenize timings."""
    native = native_bf16_cpu()
    out = {"cpu": cpu_kind(), "native_bf16": native}
    ctx.lines.append(f"CPU: {cpu_kind()}, native bf16: {native}")
    if not native and not ctx.args.quick:
        out["skipped"] = "no native bf16 on this CPU: the bf16 checks would only test emulation"
        return out
    torch.set_num_threads(os.cpu_count() or 1)
    seconds = 0.5 if ctx.args.quick else 2.4
    try:
        out["discriminator"] = _discriminator_check(
            [(16000, seconds), (24000, seconds)], ctx.args.quick
        )
        for key, row in out["discriminator"].items():
            ctx.lines.append(
                f"[CPU {cpu_kind()}] discriminator {key}: finite {row['all_maps_finite']}, logits rel "
                f"diff {[f'{v:.1e}' for v in row['logits_rel_max_abs_diff']]}, worst map "
                f"{row['worst_map_rel_diff']:.1e}"
            )
    except Exception:
        out["discriminator_error"] = traceback.format_exc(limit=3)
    try:
        out["conv2d_width"] = _conv_width_check()
        ctx.lines.append(
            f"[CPU {cpu_kind()}] Conv2d(4,4,(3,9),s(1,2),p(1,4)) bf16 vs fp32 by width: "
            + ", ".join(
                f"{w}: {r['rel_max_abs_diff']:.1e}{'' if r['finite'] else ' NON-FINITE'}"
                for w, r in out["conv2d_width"].items()
            )
        )
    except Exception:
        out["conv2d_error"] = traceback.format_exc(limit=3)
    out["tokenize"] = _cpu_tokenize(ctx, budget)  # one round at least, more while in budget
    if "times_s" in out["tokenize"]:
        tk = out["tokenize"]
        ctx.lines.append(
            f"[CPU {cpu_kind()}, {tk['threads']} threads] tokenize exact/reference per round "
            f"{[f'{v:.3f}' for v in tk['exact_over_reference_per_round']]}, fast/reference "
            f"{[f'{v:.3f}' for v in tk['fast_over_reference_per_round']]}; fast vs exact: global "
            f"{tk['fast_global_agreement']}, semantic {tk['fast_semantic_agreement']}; exact tokens "
            f"= reference: {tk['exact_equals_reference']}"
        )
    return out


def _stage_times(tok, one):
    """Seconds of each tokenize stage of one clip: wav2vec2, speaker path, semantic path."""
    codec = tok.codec
    wav = one.to(tok.device)
    lengths = torch.tensor([wav.shape[-1]])
    with torch.inference_mode(), tok.inference_ctx:
        feats, t_ssl = timed(lambda: codec.ssl(wav), "cpu")
        ref = codec.reference_clips(wav, lengths)
        _, t_global = timed(lambda: codec.encode_global(ref), "cpu")
        _, t_semantic = timed(lambda: codec.encode_semantic(feats), "cpu")
    return {"ssl": t_ssl, "global": t_global, "semantic": t_semantic}


def section_profile(ctx, budget):
    """Where CPU tokenize time goes: per-stage seconds and the top operators.

    For the reference's cost (24 layers), exact and fast (bf16) tokenizers at
    ``--cpu-threads`` threads: stage times (interleaved, 2 rounds) and one
    ``torch.profiler`` run of ``encode_batch`` (top operators by self CPU time).
    """
    from torch.profiler import ProfilerActivity, profile

    from bicodec_plugin.inference import BiCodecTokenizer

    torch.set_num_threads(ctx.args.cpu_threads)
    toks = {
        "reference": BiCodecTokenizer.from_release(
            ctx.folder, run_opts={"device": "cpu"}, ssl_truncate=False, mmap_weights=False
        ),
        "exact": BiCodecTokenizer.from_release(ctx.folder, run_opts={"device": "cpu"}),
    }
    if native_bf16_cpu() or ctx.args.quick:
        toks["fast"] = BiCodecTokenizer.from_release(
            ctx.folder, run_opts={"device": "cpu", "precision": "bf16"}
        )
    one = _signal(ctx.args.seconds)[None]
    out = {"threads": ctx.args.cpu_threads, "stages_s": {name: [] for name in toks}}
    for tok in toks.values():
        _stage_times(tok, one)  # warm-up
    for round_ in range(2):
        for name in list(toks) if round_ == 0 else list(toks)[::-1]:
            out["stages_s"][name].append(_stage_times(toks[name], one))
    out["top_ops"] = {}
    for name, tok in toks.items():
        if not budget.more():
            break
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tok.encode_batch(one)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in rows) or 1.0
        out["top_ops"][name] = [
            {
                "op": e.key,
                "self_s": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in rows[:12]
        ]
    for name, runs in out["stages_s"].items():
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        ctx.lines.append(
            f"[CPU {cpu_kind()}, {ctx.args.cpu_threads} threads] {name} stages (best of 2): "
            + ", ".join(f"{k} {v:.3f} s" for k, v in best.items())
        )
    for name, rows in out["top_ops"].items():
        ctx.lines.append(
            f"[CPU {cpu_kind()}] {name} top ops: "
            + ", ".join(f"{r['op']} {100 * r['share']:.0f}%" for r in rows[:6])
        )
    return out


# -------------------------------------------------------------------------- main
class Context:
    """What the sections share."""

    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.device = args.device
        self.results = {}
        self.lines = []
        self.kind = "?"
        self.folder = None
        self.exact = None
        self.tokens_1 = self.tokens_b = None


def parse_args(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for device_check.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny model, short clips (dry run)")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 10)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--cpu-threads", type=int, default=2, help="threads of the CPU tokenize")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["codec", "fast", "stream", "training", "cpu", "profile"],
        help="which sections to run (environment and release always run)",
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 10.0
    if args.batch is None:
        args.batch = 2 if args.quick else 8
    return args


# Seconds each section may spend on optional repeats (the first run always happens).
BUDGETS = {"codec": 45, "fast": 25, "stream": 30, "training": 60, "cpu": 75, "profile": 60}


def main(argv=None):
    """Runs the sections, writes the JSON after each, prints the summary."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "device_check.json")
    tmp = tempfile.mkdtemp(prefix="device_check_")
    ctx = Context(args, tmp)
    start = time.perf_counter()
    sections = [("environment", section_environment), ("release", section_release)]
    funcs = {
        "codec": section_codec,
        "fast": section_fast,
        "stream": section_stream,
        "training": section_training,
        "cpu": section_cpu,
        "profile": section_profile,
    }
    sections += [(name, funcs[name]) for name in args.sections]
    try:
        for name, fn in sections:
            budget = Budget(BUDGETS.get(name, 0))
            print(f"== {name} ({time.perf_counter() - start:.0f} s in)", flush=True)
            try:
                if name in BUDGETS:
                    ctx.results[name] = fn(ctx, budget)
                else:
                    ctx.results[name] = fn(ctx)
            except Exception:
                text = traceback.format_exc(limit=6)
                ctx.results[name] = {"error": text}
                ctx.lines.append(f"{name}: FAILED ({text.strip().splitlines()[-1]})")
                print(text, file=sys.stderr, flush=True)
            ctx.results.setdefault(name, {})["section_s"] = budget.elapsed()
            ctx.results["total_s"] = time.perf_counter() - start
            with open(path, "w", encoding="utf-8") as fout:
                json.dump(ctx.results, fout, indent=2, default=str)
            if name == "release" and ctx.folder is None:
                print("no release: stopping", file=sys.stderr)
                break
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nBiCodec device check ({time.perf_counter() - start:.0f} s); {ctx.kind}\n")
    print("| figure |\n|---|")
    for line in ctx.lines:
        print(f"| {line} |")
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
