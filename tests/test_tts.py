"""TTS on BiCodec tokens end to end (tiny models, CPU).

The DASB tokenizer has its own tests in ``tests/test_dasb.py``.

Manifest with text -> token store (``recipes/extract_tokens.py``) -> tiny
LM trained by ``recipes/tts/train.py`` until it reproduces its training
tokens -> ``recipes/tts/synthesize.py`` from text + reference wav.
"""

import importlib.util
import json
import os
import sys

import pytest
import torch
from conftest import ROOT, TINY_RELEASE, clip_path

TTS_DIR = os.path.join(ROOT, "recipes", "tts")
TINY_YAML = os.path.join(TTS_DIR, "hparams", "tts_tiny.yaml")
# The golden clips have no transcripts: plausible sentences, one per clip.
TEXTS = {
    "spk1_snt1": "The birch canoe slid on the smooth planks.",
    "spk2_snt1": "Glue the sheet to the dark blue background.",
}
# Measured on CPU (seed 1234, tiny yaml: 5 epochs x 20 steps, batch 2): the
# teacher-forced semantic accuracy of the training utterances was 0.09 after
# 20 steps, 0.80 after 60, 1.00 after 80 and 100 (valid loss 0.016).
MIN_SEMANTIC_ACCURACY = 0.9


def _load(name, filename):
    """Imports a recipe script as a module (recipes/tts on sys.path)."""
    if TTS_DIR not in sys.path:
        sys.path.insert(0, TTS_DIR)
    spec = importlib.util.spec_from_file_location(name, os.path.join(TTS_DIR, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, two threads of tiny ops mostly wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def recipes():
    """The extraction, training and synthesis scripts as modules."""
    sys.path.insert(0, os.path.join(ROOT, "recipes"))
    try:
        spec = importlib.util.spec_from_file_location(
            "extract_tokens", os.path.join(ROOT, "recipes", "extract_tokens.py")
        )
        extract = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(extract)
    finally:
        sys.path.remove(os.path.join(ROOT, "recipes"))
    return {
        "extract": extract,
        "train": _load("tts_train", "train.py"),
        "synthesize": _load("tts_synthesize", "synthesize.py"),
    }


@pytest.fixture(scope="module")
def trained(tiny_tokenizer, recipes, tmp_path_factory):
    """Tokens of two clips extracted, the tiny LM trained on them (100 steps)."""
    folder = tmp_path_factory.mktemp("tts")
    manifest = folder / "train.jsonl"
    with open(manifest, "w", encoding="utf-8") as f:
        for index, text in TEXTS.items():
            line = {"index": index, "wav_path": clip_path(index), "text": text}
            f.write(json.dumps(line) + "\n")
    tokens = str(folder / "tokens")
    summary = recipes["extract"].extract(
        tiny_tokenizer, str(manifest), tokens, progress=False, num_workers=0
    )
    assert summary["done"] == len(TEXTS) and summary["failed"] == 0
    output = str(folder / "run")
    brain = recipes["train"].main(
        [
            TINY_YAML,
            "--train_tokens", tokens,
            "--valid_tokens", tokens,
            "--output_folder", output,
            "--device", "cpu",
            "--noprogressbar",
        ]
    )  # fmt: skip
    return {"tokens": tokens, "output": output, "brain": brain}


@pytest.fixture(scope="module")
def tts(trained, recipes):
    """The trained LM, reloaded from its checkpoint through the saved hparams."""
    hparams = os.path.join(trained["output"], "hyperparams.yaml")
    return recipes["synthesize"].SparkTTS.from_hparams(hparams, device="cpu")


@pytest.mark.slow
def test_training_logs_and_memorises(trained, tts):
    """Teacher-forced semantic accuracy of each training utterance > 0.9."""
    from bicodec_plugin.downstream.token_store import TokenStore

    with open(os.path.join(trained["output"], "train_log.txt"), encoding="utf-8") as f:
        log = f.read().strip().splitlines()
    assert trained["brain"].optimizer_step == 100
    assert len(log) == 5 and "steps: 100" in log[-1] and "valid sem_acc" in log[-1]
    store = TokenStore(trained["tokens"])
    for index, text in TEXTS.items():
        score = tts.score(text, store.global_tokens(index), store.semantic_tokens(index))
        assert score["sem_acc"] > MIN_SEMANTIC_ACCURACY, (index, score)


@pytest.mark.slow
def test_resume(trained, recipes):
    """Rerunning the finished command recovers the checkpoint and trains no further."""
    brain = recipes["train"].main(
        [
            TINY_YAML,
            "--train_tokens", trained["tokens"],
            "--output_folder", trained["output"],
            "--device", "cpu",
            "--noprogressbar",
        ]
    )  # fmt: skip
    assert brain.optimizer_step == 100
    assert brain.hparams.epoch_counter.current == 5
    assert brain.hparams.noam_annealing.n_steps == 100


@pytest.mark.slow
def test_synthesis_from_text_and_reference(trained, tts, tiny_tokenizer, recipes):
    """Greedy decoding of a training text with its own voice says that utterance again."""
    from bicodec_plugin.downstream.token_store import TokenStore

    synthesize = recipes["synthesize"].synthesize
    store = TokenStore(trained["tokens"])
    index = "spk2_snt1"
    target = store.semantic_tokens(index)
    out = synthesize(tts, tiny_tokenizer, TEXTS[index], reference=clip_path(index), temperature=0)
    assert out.sample_rate == tiny_tokenizer.sample_rate == 16000
    assert torch.equal(out.global_tokens, store.global_tokens(index))
    assert out.stop_reason == "end_token"
    assert abs(out.semantic_tokens.numel() - target.numel()) <= 0.1 * target.numel()
    assert out.wav.shape == (tiny_tokenizer.hop_length * out.semantic_tokens.numel(),)
    agree = out.semantic_tokens[: target.numel()] == target[: out.semantic_tokens.numel()]
    assert agree.float().mean() > MIN_SEMANTIC_ACCURACY

    # Sampling (Spark-TTS settings) under a length cap: the cap is respected.
    capped = synthesize(tts, tiny_tokenizer, TEXTS[index], global_tokens=out.global_tokens,
                        max_new_tokens=12, seed=0)  # fmt: skip
    assert capped.semantic_tokens.numel() <= 12 and capped.wav.shape[0] <= 12 * 320
    if capped.semantic_tokens.numel() == 12:
        assert capped.stop_reason == "max_length"


@pytest.mark.slow
def test_synthesis_cli(trained, recipes, tmp_path):
    """The command line: hparams + codec release + text + reference -> a wav file."""
    import soundfile

    output = tmp_path / "out.wav"
    result = recipes["synthesize"].main(
        [
            os.path.join(trained["output"], "hyperparams.yaml"),
            "--release", TINY_RELEASE,
            "--text", TEXTS["spk1_snt1"],
            "--reference", clip_path("spk1_snt1"),
            "--output", str(output),
            "--max_new_tokens", "40",
            "--seed", "0",
        ]
    )  # fmt: skip
    info = soundfile.info(str(output))
    assert info.samplerate == 16000
    assert info.frames == 320 * result.semantic_tokens.numel() <= 320 * 40


@pytest.mark.slow
def test_generated_voice(tts):
    """Without a reference the LM (predict_global) writes the 32 global tokens itself."""
    glob, semantic, reason = tts.generate(TEXTS["spk2_snt1"], temperature=0, max_new_tokens=5)
    assert glob.shape == (32,) and 0 <= int(glob.min()) and int(glob.max()) < 4096
    assert semantic.numel() <= 5 and reason in ("end_token", "max_length")


def test_text_missing_is_refused(recipes, tmp_path):
    """A manifest line without text: refused with its file and line."""
    from bicodec_plugin.downstream.token_store import TokenWriter
    from bicodec_plugin.training.data import ManifestError, read_manifests

    lines = [
        {"index": "a", "wav_path": clip_path("spk1_snt1"), "text": "Hello.", "duration": 2.0},
        {"index": "b", "wav_path": clip_path("spk2_snt1"), "duration": 2.0},
    ]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ManifestError, match=r"train\.jsonl:2: missing required key 'text'"):
        read_manifests(str(manifest), require_keys=("text",))
    # A store extracted from that manifest keeps the fields of each line:
    # training refuses it, naming the index file and line.
    store = tmp_path / "tokens"
    with TokenWriter(str(store)) as writer:
        for line in lines:
            info = {k: v for k, v in line.items() if k != "index"}
            writer.add(line["index"], torch.zeros(32, dtype=torch.long), torch.arange(5), info)
    with pytest.raises(ManifestError, match=r"index-r000\.jsonl:2: missing required key 'text'"):
        recipes["train"].read_tts_index(str(store))
