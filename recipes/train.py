#!/usr/bin/env python3
"""Trains BiCodec from scratch (GAN) with SpeechBrain.

One GPU, many GPUs or many nodes (torchrun)::

    python recipes/train.py hparams/bicodec_24k.yaml --train_manifest train.jsonl \\
        --valid_manifest valid.jsonl
    torchrun --nproc_per_node=8 recipes/train.py hparams/bicodec_24k.yaml \\
        --train_manifest train.jsonl --precision bf16

Any hparams value can be overridden on the command line. Rerunning the same
command resumes from the newest checkpoint. At the end, the generator is
exported to ``<output_folder>/export`` (SpeechBrain ``hyperparams.yaml`` +
safetensors), loadable with ``BiCodecTokenizer.from_hparams``.

Authors
 * BiCodec plugin authors 2026
"""

import logging
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from bicodec_plugin.brain import BiCodecBrain
from bicodec_plugin.data import build_datasets
from bicodec_plugin.export import export_codec

logger = logging.getLogger(__name__)


def as_list(value):
    """None -> [], a path -> [path], a list -> itself."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def prepare_datasets(hparams):
    """Train and valid DynamicItemDatasets from the jsonl manifests in hparams."""
    train_set, valid_set = build_datasets(
        as_list(hparams["train_manifest"]),
        as_list(hparams["valid_manifest"]),
        sample_rate=hparams["sample_rate"],
        hop_length=hparams["hop_length"],
        segment_duration=hparams["segment_duration"],
        ref_segment_duration=hparams["ref_segment_duration"],
        ssl_context=hparams["ssl_context"],
        max_valid_duration=hparams["max_valid_duration"],
        highpass_cutoff=hparams["highpass_cutoff"],
        min_duration=hparams["min_duration"],
    )
    if valid_set is not None and hparams["max_valid_utterances"]:
        valid_set = valid_set.filtered_sorted(select_n=hparams["max_valid_utterances"])
    return train_set, valid_set


def main(argv):
    """Parses arguments, trains, exports."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    if hparams["batch_size"] < 2:
        # The x-vector head's BatchNorm needs more than one item per process.
        raise SystemExit("train.py: batch_size must be at least 2 per process")
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    train_set, valid_set = prepare_datasets(hparams)
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
        export_codec(hparams["codec"], hparams, hparams["export_folder"])
        logger.info("exported the generator to %s", hparams["export_folder"])
    ddp_barrier()


if __name__ == "__main__":
    main(sys.argv[1:])
