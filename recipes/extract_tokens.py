"""Tokenizes the audio of JSON-Lines manifests into a BiCodec token store.

The store (see :mod:`bicodec_plugin.downstream.token_store`) is what downstream recipes read:
chunked safetensors of global and semantic tokens, an index with each
utterance's manifest fields (``text``...), ``failed.jsonl`` and ``meta.json``.

Utterances are sorted longest first and batched so that a batch holds at
most ``--batch-seconds`` of padded audio and ``--max-batch`` items. Each file
is loaded exactly as :meth:`BiCodecTokenizer.encode_file` loads it, so the
stored tokens equal ``encode_file``'s. A file that cannot be loaded or
tokenized goes to ``failed.jsonl``; a failing batch is retried item by item.
Rerunning the same command resumes: stored indexes are skipped, and so are
failed ones unless ``--retry-failed``.

Interruptions: Ctrl-C (SIGINT), SIGTERM (a scheduler, ``docker stop``) and
SIGHUP (a closed terminal) flush what was tokenized and exit (130, 143,
129); a ``kill -9`` loses at most
``--chunk-size`` utterances or ``--flush-seconds`` of work. A stored chunk
found damaged when the run starts (its header; every tensor with
``--verify``) is set aside as ``<chunk>.corrupt`` and its utterances are
recomputed.

Usage::

    python recipes/extract_tokens.py --manifest manifests/train.jsonl manifests/valid.jsonl \\
        --output tokens/ --release /models/Spark-TTS-0.5B --device cuda
    # 8 GPUs: each rank takes every 8th utterance and writes its own files
    torchrun --nproc_per_node=8 recipes/extract_tokens.py --manifest ... --output tokens/ \\
        --release /models/Spark-TTS-0.5B --device cuda
    # or independent jobs (e.g. on a cluster), one per shard
    python recipes/extract_tokens.py ... --num-shards 4 --shard-id 2

Ranks need no collective calls and no final merge: each writes
``index-r{rank:03d}.jsonl`` and readers read all ``index*.jsonl``.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import concurrent.futures
import contextlib
import logging
import os
import signal
import sys
import time

import soundfile
import torch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from bicodec_plugin.codec.audio import (
    SSL_RECEPTIVE_FIELD,
    AudioLoadError,
)
from bicodec_plugin.downstream.token_store import TokenWriter, tokenizer_meta
from bicodec_plugin.inference import load_tokenizer
from bicodec_plugin.training.data import ManifestError, read_manifests

logger = get_logger(__name__)


def shard_of(shard_id=0, num_shards=1, env=None):
    """This process's shard: ``--shard-id/--num-shards`` combined with torchrun's ranks.

    Under torchrun (``RANK``/``WORLD_SIZE`` set) each of the ``num_shards``
    jobs is split again between its ranks.

    Arguments
    ---------
    shard_id : int
        Shard of this job, in [0, num_shards).
    num_shards : int
        Independent jobs.
    env : dict, optional
        Environment (default ``os.environ``).

    Returns
    -------
    shard : int
        Index of this process, also the writer rank in file names.
    shards : int
        Total number of processes.

    Example
    -------
    >>> shard_of(1, 2, env={})
    (1, 2)
    >>> shard_of(1, 2, env={"RANK": "3", "WORLD_SIZE": "4"})
    (7, 8)
    """
    env = os.environ if env is None else env
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"--shard-id must lie in [0, {num_shards}), got {shard_id}")
    rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    return shard_id * world + rank, num_shards * world


def plan(data, shard=0, shards=1):
    """This shard's utterances: every ``shards``-th of the list sorted longest first.

    The split is made on the whole manifest, before skipping done items, so
    that every process computes the same split whatever the others did.

    Arguments
    ---------
    data : dict
        ``{index: entry}`` with ``duration`` (``None`` when unknown).
    shard, shards : int
        See :func:`shard_of`.

    Returns
    -------
    list of (str, dict)

    Example
    -------
    >>> data = {"a": {"duration": 1.0}, "b": {"duration": 3.0}, "c": {"duration": None}}
    >>> [k for k, _ in plan(data, 0, 2)], [k for k, _ in plan(data, 1, 2)]
    (['b', 'c'], ['a'])
    """
    items = sorted(data.items(), key=lambda kv: (-(kv[1]["duration"] or 0.0), kv[0]))
    return items[shard::shards]


def make_batches(items, batch_seconds=120.0, max_batch=16):
    """Groups length-sorted items: padded seconds (items x longest) <= ``batch_seconds``.

    An item longer than ``batch_seconds`` is a batch of its own.

    Example
    -------
    >>> items = [(k, {"duration": d}) for k, d in zip("abcd", [5.0, 4.0, 3.0, 1.0])]
    >>> [[k for k, _ in b] for b in make_batches(items, batch_seconds=10, max_batch=3)]
    [['a', 'b'], ['c', 'd']]
    """
    batches, batch, longest = [], [], 0.0
    for item in items:
        duration = item[1]["duration"] or 0.0
        new_longest = max(longest, duration)
        if batch and (len(batch) >= max_batch or new_longest * (len(batch) + 1) > batch_seconds):
            batches.append(batch)
            batch, new_longest = [], duration
        batch.append(item)
        longest = new_longest
    if batch:
        batches.append(batch)
    return batches


def load_item(tokenizer, path):
    """Loads one file exactly as ``encode_file`` does: (model-rate, 16 kHz) tensors.

    Raises
    ------
    AudioLoadError
        Unreadable, empty or non-finite audio, or shorter than one wav2vec2 frame.
    """
    wav, ssl = tokenizer.load_file(path)
    if ssl.shape[0] < SSL_RECEPTIVE_FIELD:
        # Checked here: inside a batch it would fail every other item.
        raise AudioLoadError(f"{path}: shorter than one wav2vec2 frame (25 ms)")
    return wav, ssl


def tokenize(tokenizer, loaded):
    """Tokenizes loaded items as one padded batch.

    Uses ``BiCodecTokenizer.tokenize_prepared``, the step ``encode_file`` uses
    after ``load_file``, so that the tokens equal ``encode_file``'s.

    Returns
    -------
    list of (torch.Tensor, torch.Tensor)
        Global (32,) and semantic (T_i,) tokens per item.
    """
    glob_t, sem_t, lens = tokenizer.tokenize_prepared(loaded)
    glob_t, sem_t, lens = glob_t.cpu(), sem_t.cpu(), lens.cpu()
    return [(glob_t[i], sem_t[i, : int(lens[i])]) for i in range(len(loaded))]


def _try_load(tokenizer, path):
    try:
        return load_item(tokenizer, path)
    except Exception as err:  # any failure is recorded, the run goes on
        return err


def _loaded_batches(tokenizer, batches, num_workers):
    """Yields ``(batch, loaded)``; threads load the next batch during tokenization."""
    if num_workers <= 0:
        for batch in batches:
            yield batch, [_try_load(tokenizer, e["wav_path"]) for _, e in batch]
        return
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        previous = None
        for batch in batches:
            futures = [pool.submit(_try_load, tokenizer, e["wav_path"]) for _, e in batch]
            if previous is not None:
                yield previous[0], [f.result() for f in previous[1]]
            previous = (batch, futures)
        if previous is not None:
            yield previous[0], [f.result() for f in previous[1]]


def _header_duration(path):
    """Seconds from the audio header, ``None`` if unreadable (it fails later, recorded)."""
    try:
        info = soundfile.info(path)
        return info.frames / info.samplerate
    except Exception:  # soundfile raises several types
        return None


def extract(
    tokenizer,
    manifests,
    output,
    batch_seconds=120.0,
    max_batch=16,
    shard_id=0,
    num_shards=1,
    chunk_size=256,
    retry_failed=False,
    source=None,
    num_workers=2,
    progress=True,
    env=None,
    flush_seconds=60.0,
    verify=False,
):
    """Tokenizes the manifests' audio into the store ``output`` (resumable).

    Arguments
    ---------
    tokenizer : BiCodecTokenizer
        The model.
    manifests : str or list of str
        JSON-Lines manifests (see :func:`~bicodec_plugin.training.data.read_manifests`).
    output : str
        Store folder.
    batch_seconds : float
        Most padded audio seconds per batch.
    max_batch : int
        Most utterances per batch.
    shard_id, num_shards : int
        Independent jobs (combined with torchrun ranks, see :func:`shard_of`).
    chunk_size : int
        Utterances per chunk file.
    retry_failed : bool
        Retry indexes listed in ``failed.jsonl``.
    source : str, optional
        Model folder, recorded in ``meta.json``.
    num_workers : int
        Threads loading audio ahead (0: load in the main thread).
    progress : bool
        Show a progress bar.
    env : dict, optional
        Environment for ``RANK``/``WORLD_SIZE`` (default ``os.environ``).
    flush_seconds : float or None
        Write a chunk at least this often (``None``: only full chunks).
    verify : bool
        Read every stored chunk in full before resuming; damaged ones are
        set aside and their utterances recomputed (the header is always checked).

    Returns
    -------
    dict
        ``shard``, ``shards``, ``done``, ``skipped``, ``failed``,
        ``set_aside`` (damaged chunks), ``audio_seconds`` (tokenized),
        ``elapsed`` (s), ``utt_per_s``, ``audio_s_per_s``.
    """
    shard, shards = shard_of(shard_id, num_shards, env)
    # Read everything first: a bad manifest line stops us before anything is written.
    data = read_manifests(manifests, compute_duration=False)
    for entry in data.values():
        if entry.get("duration") is None:
            entry["duration"] = _header_duration(entry["wav_path"])
    mine = plan(data, shard, shards)
    start = time.perf_counter()
    summary = {"shard": shard, "shards": shards, "done": 0, "failed": 0, "audio_seconds": 0.0}
    writer = TokenWriter(
        output,
        shard,
        chunk_size,
        tokenizer_meta(tokenizer, source),
        flush_interval=flush_seconds,
        verify=verify,
    )
    with writer:
        summary["set_aside"] = len(writer.set_aside)
        done = writer.done_indexes(include_failed=not retry_failed)
        todo = [item for item in mine if item[0] not in done]
        summary["skipped"] = len(mine) - len(todo)
        logger.info(
            "tokenizing %d utterances (%d already done) into %s",
            len(todo),
            len(mine) - len(todo),
            output,
        )
        batches = make_batches(todo, batch_seconds, max_batch)
        bar = tqdm(
            total=sum(e["duration"] or 0.0 for _, e in todo),  # seconds, shown in hours
            unit="h",
            unit_scale=1 / 3600,
            disable=not progress or not todo,
            bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} h audio [{elapsed}<{remaining}{postfix}]",
            desc=f"tokens {shard}/{shards}" if shards > 1 else "tokens",
        )
        with bar:
            for batch, loaded in _loaded_batches(tokenizer, batches, num_workers):
                _process(tokenizer, writer, batch, loaded, summary)
                bar.update(sum(e["duration"] or 0.0 for _, e in batch))
                elapsed = time.perf_counter() - start
                bar.set_postfix_str(
                    f"{summary['done'] / elapsed:.2f} utt/s, "
                    f"{summary['audio_seconds'] / elapsed:.1f} audio-s/s, "
                    f"{summary['failed']} failed"
                )
    elapsed = time.perf_counter() - start
    summary["elapsed"] = elapsed
    summary["utt_per_s"] = summary["done"] / elapsed if elapsed > 0 else 0.0
    summary["audio_s_per_s"] = summary["audio_seconds"] / elapsed if elapsed > 0 else 0.0
    return summary


def _process(tokenizer, writer, batch, loaded, summary):
    """Stores one batch; load and tokenization failures go to ``failed.jsonl``."""
    good = []
    for (index, entry), item in zip(batch, loaded):
        if isinstance(item, Exception):
            _record_failure(writer, index, entry, item, summary)
        else:
            good.append((index, entry, item))
    if not good:
        return
    try:
        results = tokenize(tokenizer, [item for _, _, item in good])
    except Exception as err:
        _release_memory(tokenizer)
        if len(good) == 1:
            _record_failure(writer, good[0][0], good[0][1], err, summary)
            return
        logger.warning("a batch of %d failed (%s); retrying one by one", len(good), err)
        results = []
        for index, entry, item in good:
            try:
                results.append(tokenize(tokenizer, [item])[0])
            except Exception as item_err:
                _release_memory(tokenizer)
                _record_failure(writer, index, entry, item_err, summary)
                results.append(None)
    for (index, entry, item), result in zip(good, results):
        if result is None:
            continue
        duration = item[0].shape[0] / tokenizer.sample_rate
        info = {"duration": round(duration, 6), "wav_path": entry["wav_path"], **entry}
        info["duration"] = round(duration, 6)  # the audio's, not the manifest's
        writer.add(index, result[0], result[1], info)
        summary["done"] += 1
        summary["audio_seconds"] += duration


def _record_failure(writer, index, entry, err, summary):
    logger.warning("failed %s: %s", index, err)
    writer.fail(index, entry["wav_path"], err)
    summary["failed"] += 1


def _release_memory(tokenizer):
    if str(tokenizer.device).startswith("cuda"):
        torch.cuda.empty_cache()


def parse_args(argv=None):
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", nargs="+", required=True, help="JSON-Lines manifest(s)")
    parser.add_argument("--output", required=True, help="token store folder")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--release", help="Spark-TTS release folder (e.g. Spark-TTS-0.5B)")
    model.add_argument("--hparams", help="folder exported by recipes/train.py")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (LOCAL_RANK's GPU)")
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio per batch")
    parser.add_argument("--max-batch", type=int, default=16, help="utterances per batch")
    parser.add_argument("--num-shards", type=int, default=1, help="independent jobs")
    parser.add_argument("--shard-id", type=int, default=0, help="this job's shard")
    parser.add_argument("--chunk-size", type=int, default=256, help="utterances per chunk file")
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=60.0,
        help="write a chunk at least this often, so a kill -9 loses at most this much work "
        "(0: after every batch)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every stored chunk in full first; damaged ones are recomputed",
    )
    parser.add_argument("--num-workers", type=int, default=2, help="audio loading threads")
    parser.add_argument("--retry-failed", action="store_true", help="retry failed.jsonl entries")
    parser.add_argument(
        "--require-keys",
        nargs="*",
        default=[],
        help="manifest keys every line must have (e.g. text for the TTS recipe)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0 <= args.shard_id < args.num_shards:
        parser.error(f"--shard-id must lie in [0, {args.num_shards})")
    if args.max_batch < 1 or args.batch_seconds <= 0 or args.chunk_size < 1:
        parser.error("--max-batch, --batch-seconds and --chunk-size must be positive")
    if not args.flush_seconds >= 0:
        parser.error("--flush-seconds must be >= 0")
    return args


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C raises ``KeyboardInterrupt`` (same clean-up).

    Arguments
    ---------
    signum : int
        The signal.
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def termination_as_interrupt():
    """Turns SIGTERM and SIGHUP into :class:`Terminated` in the main thread while the block runs.

    The store's writer then flushes on the way out exactly as for Ctrl-C.
    Outside the main thread nothing changes.
    """

    def handler(signum, frame):
        raise Terminated(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in TERMINATING_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv=None):
    """Runs the extraction; prints one summary line."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Read the manifests before the (slow) model load: bad lines fail fast.
    try:
        read_manifests(args.manifest, require_keys=tuple(args.require_keys), compute_duration=False)
    except ManifestError as err:
        print(f"extract_tokens: {err}", file=sys.stderr)
        return 2
    source = args.release or args.hparams
    with termination_as_interrupt():
        try:
            tokenizer = load_tokenizer(args.release, args.hparams, args.device)
            summary = extract(
                tokenizer,
                args.manifest,
                args.output,
                batch_seconds=args.batch_seconds,
                max_batch=args.max_batch,
                shard_id=args.shard_id,
                num_shards=args.num_shards,
                chunk_size=args.chunk_size,
                retry_failed=args.retry_failed,
                source=source,
                num_workers=args.num_workers,
                progress=not args.no_progress,
                flush_seconds=args.flush_seconds,
                verify=args.verify,
            )
        except KeyboardInterrupt as err:
            signum = err.signum if isinstance(err, Terminated) else signal.SIGINT
            print(
                f"extract_tokens: stopped by {signal.Signals(signum).name}; every utterance "
                f"tokenized so far is stored in {args.output}; rerun the same command to resume",
                file=sys.stderr,
            )
            return 128 + signum
    shard = f"[shard {summary['shard']}/{summary['shards']}] " if summary["shards"] > 1 else ""
    print(
        f"{shard}done {summary['done']} ({summary['audio_seconds'] / 3600:.3f} h audio), "
        f"skipped {summary['skipped']} already done, failed {summary['failed']}"
        + (f", {summary['set_aside']} damaged chunks recomputed" if summary["set_aside"] else "")
        + f"; {summary['utt_per_s']:.2f} utt/s, {summary['audio_s_per_s']:.1f} audio-s/s "
        f"-> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
