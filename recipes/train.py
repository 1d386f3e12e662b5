#!/usr/bin/env python3
"""Trains BiCodec from scratch (GAN) with SpeechBrain.

One GPU, many GPUs or many nodes (torchrun)::

    python recipes/train.py hparams/bicodec_24k.yaml --train_manifest train.jsonl \\
        --valid_manifest valid.jsonl
    torchrun --nproc_per_node=8 recipes/train.py hparams/bicodec_24k.yaml \\
        --train_manifest train.jsonl --precision bf16
    torchrun --nproc_per_node=2 recipes/train.py hparams/bicodec_tiny.yaml ... --device cpu

Any hparams value can be overridden on the command line. Rerunning the same
command resumes from the newest complete checkpoint. At the end, the
generator is exported to ``<output_folder>/export`` (SpeechBrain
``hyperparams.yaml`` + safetensors), loadable with
``BiCodecTokenizer.from_hparams``. A CPU run under torchrun uses the gloo
backend by itself.

Authors
 * BiCodec plugin authors 2026
"""

import dataclasses
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import ddp_barrier, if_main_process, infer_device
from speechbrain.utils.logger import get_logger

from bicodec_plugin.formats.export import export_codec
from bicodec_plugin.training.brain import BiCodecBrain
from bicodec_plugin.training.data import build_datasets

logger = get_logger(__name__)


def as_list(value):
    """None -> [], a path -> [path], a list -> itself."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_frontend_context(ssl, ssl_context):
    """Refuses windowed front-end input for a front-end whose features depend on position.

    Example
    -------
    >>> class Whisper:
    ...     shift_invariant = False
    >>> check_frontend_context(Whisper(), None)
    >>> check_frontend_context(Whisper(), 1.0)
    Traceback (most recent call last):
    ...
    SystemExit: train.py: ssl_context 1.0: the semantic front-end Whisper is not shift_invariant (its features depend on absolute position); set ssl_context to null (whole utterances), as tokenization runs it
    """
    if ssl_context is not None and not getattr(ssl, "shift_invariant", True):
        raise SystemExit(
            f"train.py: ssl_context {ssl_context}: the semantic front-end "
            f"{type(ssl).__name__} is not shift_invariant (its features depend on absolute "
            "position); set ssl_context to null (whole utterances), as tokenization runs it"
        )


def prepare_datasets(hparams):
    """Train and valid DynamicItemDatasets from the jsonl manifests in hparams."""
    check_frontend_context(hparams["ssl"], hparams["ssl_context"])
    train_set, valid_set = build_datasets(
        as_list(hparams["train_manifest"]),
        as_list(hparams["valid_manifest"]),
        sample_rate=hparams["sample_rate"],
        hop_length=hparams["codec"].hop_length,
        segment_duration=hparams["segment_duration"],
        ref_segment_duration=hparams["ref_segment_duration"],
        ssl_context=hparams["ssl_context"],
        max_valid_duration=hparams["max_valid_duration"],
        highpass_cutoff=hparams["highpass_cutoff"],
        min_duration=hparams["min_duration"],
        volume_normalize=hparams["volume_normalize"],
        valid_reference=hparams["valid_reference"],
    )
    if valid_set is not None and hparams["max_valid_utterances"]:
        valid_set = valid_set.filtered_sorted(select_n=hparams["max_valid_utterances"])
    return train_set, valid_set


def check_train_set_size(train_set, batch_size, world_size):
    """Refuses a training set that cannot fill one batch on every process.

    With ``drop_last`` each epoch would otherwise train zero steps and an
    untrained model would be exported.

    Example
    -------
    >>> check_train_set_size(range(8), 4, 2)
    >>> check_train_set_size(range(4), 4, 2)
    Traceback (most recent call last):
    ...
    SystemExit: train.py: the training set has 4 utterances (after filtering), fewer than one global batch of 8 (batch_size 4 x 2 processes); add data or lower batch_size
    """
    needed = batch_size * world_size
    if len(train_set) < needed:
        raise SystemExit(
            f"train.py: the training set has {len(train_set)} utterances (after filtering), "
            f"fewer than one global batch of {needed} (batch_size {batch_size} x "
            f"{world_size} processes); add data or lower batch_size"
        )


def choose_backend(run_opts):
    """gloo for CPU runs under torchrun (nccl needs GPUs); the user's choice otherwise.

    Returns
    -------
    speechbrain.utils.run_opts.RunOptions
        ``run_opts``, or a copy with ``distributed_backend="gloo"``.
    """
    if os.environ.get("LOCAL_RANK") is None:
        return run_opts
    device = run_opts["device"] or infer_device()
    if not str(device).startswith("cpu") or run_opts["distributed_backend"] == "gloo":
        return run_opts
    if "distributed_backend" in getattr(run_opts, "overridden_args", ()):
        logger.warning(
            "distributed_backend %s needs GPUs: using gloo on the CPU",
            run_opts["distributed_backend"],
        )
    return dataclasses.replace(run_opts, distributed_backend="gloo")


def add_tensorboard(hparams):
    """SpeechBrain's TensorboardLogger when ``use_tensorboard`` (off, with a warning, without the package)."""
    if not hparams["use_tensorboard"]:
        return
    try:
        from speechbrain.utils.train_logger import TensorboardLogger

        hparams["tensorboard_train_logger"] = TensorboardLogger(hparams["tensorboard_folder"])
    except ImportError:
        logger.warning(
            "use_tensorboard is set but the tensorboard package is missing "
            "(pip install tensorboard, or the [train] extra): TensorBoard logging is off"
        )


def main(argv):
    """Parses arguments, trains, exports."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    if hparams["batch_size"] < 2:
        # The x-vector head's BatchNorm needs more than one item per process.
        raise SystemExit("train.py: batch_size must be at least 2 per process")
    run_opts = choose_backend(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    train_set, valid_set = prepare_datasets(hparams)
    check_train_set_size(train_set, hparams["batch_size"], int(os.environ.get("WORLD_SIZE", 1)))
    add_tensorboard(hparams)
    brain = BiCodecBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        train_set,
        valid_set,
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    if if_main_process():
        export_codec(hparams, hparams["export_folder"])
        logger.info("exported the generator to %s", hparams["export_folder"])
    ddp_barrier()


if __name__ == "__main__":
    main(sys.argv[1:])
