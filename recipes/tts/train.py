#!/usr/bin/env python3
"""Trains a Spark-TTS-style decoder-only LM on BiCodec tokens with SpeechBrain.

Each utterance of a token store (``recipes/extract_tokens.py`` run on a
manifest with ``text``) becomes one sequence of the Spark-TTS prompt layout
(:mod:`spark_prompt`)::

    <|task_tts|> <|start_content|> text <|end_content|>
    <|start_global_token|> 32 global <|end_global_token|>
    <|start_semantic_token|> semantic <|end_semantic_token|>

and a causal Transformer LM learns the next token, with the loss on the
global and semantic part (``predict_global: True``) or on the semantic part
only. Teacher-forced token accuracy is logged for every epoch.

One GPU, several GPUs (torchrun), or a CPU::

    python recipes/tts/train.py recipes/tts/hparams/tts_base.yaml --train_tokens tokens/train \\
        --valid_tokens tokens/valid
    torchrun --nproc_per_node=8 recipes/tts/train.py recipes/tts/hparams/tts_base.yaml \\
        --train_tokens tokens/train --valid_tokens tokens/valid --precision bf16

Rerunning the same command resumes from the newest checkpoint.

Authors
 * BiCodec plugin authors 2026
"""

import json
import os
import sys

import speechbrain as sb
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.distributed import run_on_main

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spark_prompt import vocab_from_hparams
from speechbrain.utils.logger import get_logger

from bicodec_plugin.downstream.token_store import TokenStore
from bicodec_plugin.training.data import ManifestError, read_manifests

logger = get_logger(__name__)


class TTSBrain(sb.Brain):
    """Next-token training of the LM; loss and accuracy on the trained targets only.

    Logged per stage: ``loss``, ``acc`` (teacher-forced accuracy of every
    trained target: global tokens if predicted, semantic tokens, markers,
    end token) and ``sem_acc`` (semantic-token targets only).

    Arguments
    ---------
    vocab : SparkTTSVocab
        Id layout (tells semantic targets apart).
    validates : bool
        Whether ``fit`` gets a valid set; if not, logging and checkpoints
        follow the training stage.
    **kwargs
        As :class:`speechbrain.Brain`.
    """

    def __init__(self, vocab, validates=True, **kwargs):
        super().__init__(**kwargs)
        self.vocab = vocab
        self.validates = validates

    def compute_forward(self, batch, stage):
        """Logits of the next token, (B, L - 1, V)."""
        batch = batch.to(self.device)
        tokens, _ = batch.tokens
        return self.modules.lm_model(tokens[:, :-1])

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy on the trained targets (see ``loss_mask``)."""
        tokens, lens = batch.tokens
        targets = tokens[:, 1:]
        mask = loss_mask(batch.loss_start, lens, tokens.shape[1])
        logits = predictions[mask].float()  # (N, V), N trained targets in the batch
        chosen = targets[mask]
        loss = F.cross_entropy(logits, chosen, label_smoothing=self.hparams.label_smoothing)
        with torch.no_grad():
            correct = logits.argmax(-1) == chosen
            semantic = self.vocab.is_semantic(chosen)
            self.counts += torch.stack(
                [
                    correct.sum(),
                    chosen.new_tensor(chosen.numel()),
                    (correct & semantic).sum(),
                    semantic.sum(),
                ]
            ).cpu()
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Steps the Noam schedule after each optimizer step."""
        if should_step:
            self.hparams.noam_annealing(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        """Resets the accuracy counts (correct, total, semantic correct, semantic total)."""
        self.counts = torch.zeros(4, dtype=torch.long)

    def stage_stats(self, stage_loss):
        """``{"loss", "acc", "sem_acc"}`` of the stage, plain floats."""
        correct, total, sem_correct, sem_total = self.counts.tolist()
        return {
            "loss": float(stage_loss),
            "acc": correct / max(total, 1),
            "sem_acc": sem_correct / max(sem_total, 1),
        }

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the stats and saves a checkpoint (on every rank, as DDP needs)."""
        stats = self.stage_stats(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            if self.validates:
                return
        meta = {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"] if hasattr(self, "optimizer") else None,
            "steps": self.optimizer_step,
        }
        if stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(stats_meta=meta, test_stats=stats)
            return
        valid_stats = stats if stage == sb.Stage.VALID else None
        self.hparams.train_logger.log_stats(
            stats_meta=meta, train_stats=self.train_stats, valid_stats=valid_stats
        )
        self.checkpointer.save_and_keep_only(
            meta={"loss": stats["loss"], "acc": stats["acc"], "sem_acc": stats["sem_acc"]},
            min_keys=["loss"],
            num_to_keep=self.hparams.num_checkpoints_to_keep,
        )


def loss_mask(loss_start, lens, length):
    """Which next-token targets are trained, (B, L - 1) bool.

    Arguments
    ---------
    loss_start : torch.Tensor
        (B,) first trained target of each item (see
        ``SparkTTSVocab.training_sequence``).
    lens : torch.Tensor
        (B,) relative lengths of the token sequences (``PaddedBatch``).
    length : int
        Padded sequence length L.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> loss_mask(torch.tensor([1, 0]), torch.tensor([1.0, 0.5]), 4).int()
    tensor([[0, 1, 1],
            [1, 0, 0]], dtype=torch.int32)
    """
    ends = torch.round(lens.float() * length).long() - 1  # targets per item
    positions = torch.arange(length - 1, device=lens.device)
    return (positions >= loss_start.to(lens.device)[:, None]) & (positions < ends[:, None])


def read_tts_index(folder):
    """Index lines of a token store, each required to carry a ``text``.

    The lines are read with :func:`bicodec_plugin.training.data.read_manifests` (they
    hold the manifest fields), so a line without text is refused naming its
    file and line. An index stored by two writers keeps its first line, as
    :class:`~bicodec_plugin.downstream.token_store.TokenStore` does.

    Arguments
    ---------
    folder : str
        Token store.

    Returns
    -------
    dict
        ``{index: entry}`` (``text``, ``num_semantic``, ``duration``, ...).

    Raises
    ------
    ManifestError
        ``<folder>/index-r000.jsonl:<line>: missing required key 'text' ...``.
    """
    store = TokenStore(folder)
    data = {}
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("index") and name.endswith(".jsonl")):
            continue
        try:
            lines = read_manifests(
                os.path.join(folder, name), require_keys=("text",), compute_duration=False
            )
        except ManifestError as err:
            raise ManifestError(
                f"{err} (TTS training needs a 'text' on every line of the manifest the "
                "tokens were extracted from)"
            ) from None
        for index, entry in lines.items():
            if index in store and index not in data:
                data[index] = entry
    if not data:
        raise ValueError(f"{folder}: the token store holds no utterance")
    return data


def check_store(store, hparams):
    """Refuses tokens of a codec whose codebooks differ from the hparams."""
    expected = {
        "semantic_codebook_size": hparams["num_semantic_tokens"],
        "global_codebook_size": hparams["num_global_tokens"],
        "global_token_num": hparams["global_token_num"],
    }
    for key, value in expected.items():
        if key in store.meta and int(store.meta[key]) != int(value):
            raise ValueError(
                f"{store.folder}/meta.json: {key} is {store.meta[key]} but the hparams say "
                f"{value}; set the hparams to the codec's sizes"
            )


def prepare_text_tokenizer(hparams, train_data):
    """Trains the SentencePiece model on the training texts once; loads it.

    Returns
    -------
    speechbrain.tokenizers.SentencePiece.SentencePiece
    """
    model_dir = hparams["text_tokenizer"].keywords["model_dir"]
    annotation = os.path.join(model_dir, "train_text.json")

    def write_texts():
        os.makedirs(model_dir, exist_ok=True)
        if not os.path.isfile(annotation):
            texts = {index: {"text": entry["text"]} for index, entry in train_data.items()}
            with open(annotation, "w", encoding="utf-8") as f:
                json.dump(texts, f, ensure_ascii=False)

    run_on_main(write_texts)
    tokenizer = hparams["text_tokenizer"](annotation_train=annotation)
    size = tokenizer.sp.vocab_size()
    if size > hparams["text_vocab_size"]:
        raise ValueError(
            f"the text tokenizer has {size} pieces, more than text_vocab_size "
            f"{hparams['text_vocab_size']}"
        )
    return tokenizer


def dataio_prepare(hparams, vocab, text_tokenizer, splits):
    """Train / valid ``DynamicItemDataset``s of token sequences.

    Arguments
    ---------
    hparams : dict
        Loaded hparams.
    vocab : SparkTTSVocab
        Id layout.
    text_tokenizer : SentencePiece
        Text -> piece ids.
    splits : dict
        ``{name: (token store folder, index data)}``.

    Returns
    -------
    dict
        ``{name: DynamicItemDataset}`` with ``id``, ``tokens`` (L,) and
        ``loss_start`` per item.
    """
    predict_global = hparams["predict_global"]

    @takes("text", "global_tokens", "semantic_tokens")
    @provides("text_ids", "tokens", "loss_start")
    def sequence_pipeline(text, global_tokens, semantic_tokens):
        text_ids = text_tokenizer.sp.encode_as_ids(text)
        yield torch.LongTensor(text_ids)
        tokens, loss_start = vocab.training_sequence(
            text_ids, global_tokens, semantic_tokens, predict_global
        )
        yield tokens
        yield loss_start

    datasets = {}
    for name, (folder, data) in splits.items():
        store = TokenStore(folder)
        check_store(store, hparams)
        dataset = DynamicItemDataset(
            data,
            dynamic_items=[store.dynamic_item(), sequence_pipeline],
            output_keys=["id", "tokens", "loss_start"],
        )
        sort_key, reverse = None, False
        if name == "train" and hparams["sorting"] in ("ascending", "descending"):
            sort_key, reverse = "num_semantic", hparams["sorting"] == "descending"
        datasets[name] = dataset.filtered_sorted(
            key_max_value={"num_semantic": hparams["max_semantic_tokens"]},
            sort_key=sort_key,
            reverse=reverse,
        )
        if len(datasets[name]) == 0:
            raise ValueError(f"{folder}: no utterance has at most max_semantic_tokens tokens")
    return datasets


def train_loader_kwargs(hparams, train_set):
    """Loader options: fixed batches, or dynamic batches by token count."""
    opts = dict(hparams["train_dataloader_opts"])
    if hparams["sorting"] != "random" and not hparams["dynamic_batching"]:
        opts["shuffle"] = False
    if hparams["dynamic_batching"]:
        opts.pop("batch_size", None)
        opts.pop("shuffle", None)
        opts["batch_sampler"] = DynamicBatchSampler(
            train_set,
            max_batch_length=hparams["max_batch_tokens"],
            num_buckets=hparams["num_buckets"],
            length_func=lambda x: x["num_semantic"] + 40,  # + prompt markers, globals, ~text
            shuffle=True,
            batch_ordering="random",
        )
    return opts


def main(argv):
    """Parses arguments, prepares the data and the text tokenizer, trains.

    Returns
    -------
    TTSBrain
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    vocab = vocab_from_hparams(hparams)
    splits = {"train": (hparams["train_tokens"], read_tts_index(hparams["train_tokens"]))}
    if hparams["valid_tokens"]:
        splits["valid"] = (hparams["valid_tokens"], read_tts_index(hparams["valid_tokens"]))
    text_tokenizer = prepare_text_tokenizer(hparams, splits["train"][1])
    datasets = dataio_prepare(hparams, vocab, text_tokenizer, splits)

    brain = TTSBrain(
        vocab=vocab,
        validates="valid" in datasets,
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets.get("valid"),
        train_loader_kwargs=train_loader_kwargs(hparams, datasets["train"]),
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
