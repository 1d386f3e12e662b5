"""Catalogue of bad inputs and faults: each gives a clear error or the correct result.

Every case below is something a new user, a scheduler or a disk did to the
tokenizer or a recipe. The rule: an error names the argument (and the item
of a batch), the file or the manifest line, and is of a consistent kind
(``ValueError`` subclasses of :mod:`bicodec_plugin.errors` for arguments,
``ReleaseLoadError`` for release folders and weight files, ``ManifestError``
for manifest lines, ``TokenStoreError`` for the token store); where a
correct result exists it is returned; interrupted or damaged work is
resumed without losing what was done.

Groups: batch lengths, tokens, LLM strings, release folders, training
checkpoints, manifests, token extraction.

Authors
 * BiCodec plugin authors 2026
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from unittest import mock

import numpy as np
import pytest
import soundfile
import torch
import yaml
from conftest import CLIPS, GOLDEN, ROOT, TINY_RELEASE, clip_path, golden
from safetensors.torch import load_file, save_file

from bicodec_plugin.errors import (
    AudioInputError,
    BiCodecInputError,
    CorruptChunkError,
    LengthsError,
    TokenError,
    TokenStoreError,
    TokenStringError,
    TokenTypeError,
)
from bicodec_plugin.formats.release import ReleaseLoadError, load_release
from bicodec_plugin.inference import llm_string_to_tokens, tokens_to_llm_string

W2V = "wav2vec2-large-xlsr-53"
CODEC_WEIGHTS = os.path.join("BiCodec", "model.safetensors")
W2V_WEIGHTS = os.path.join(W2V, "model.safetensors")


def short_batch(seed=0, batch=2, seconds=0.5):
    """Seeded speech-like noise at 16 kHz, (batch, N)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(16000 * seconds), generator=gen)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# =============================================================== batch lengths
@pytest.mark.parametrize("lens", [[1.0], [1.0, 1.0, 1.0]], ids=["1-for-2", "3-for-2"])
def test_wav_lens_count_must_match_the_batch(tiny_tokenizer, lens):
    """1 or 3 relative lengths for 2 items: refused (was: 1 item returned, 1 ignored)."""
    with pytest.raises(LengthsError, match=rf"wav_lens has {len(lens)} entries for 2 items"):
        tiny_tokenizer.encode_batch(short_batch(), torch.tensor(lens))


@pytest.mark.parametrize(
    "value", [-0.5, 0.0, float("nan"), 1.5, float("inf")], ids=["neg", "zero", "nan", "1.5", "inf"]
)
def test_wav_lens_outside_zero_one_refused(tiny_tokenizer, value):
    """-0.5 (was: w[:-k]), 0 and NaN (were: ZeroDivisionError), 1.5 (was: read as 1)."""
    with pytest.raises(LengthsError, match=r"wav_lens\[1\] = .*: relative lengths must lie in"):
        tiny_tokenizer.encode_batch(short_batch(), torch.tensor([1.0, value]))


def test_absolute_lengths_given_as_wav_lens_get_a_hint(tiny_tokenizer):
    with pytest.raises(LengthsError, match="absolute lengths"):
        tiny_tokenizer.encode_batch(short_batch(), torch.tensor([8000, 4000]))


def test_wav_lens_under_one_sample_refused(tiny_tokenizer):
    with pytest.raises(LengthsError, match=r"wav_lens\[1\] = 1e-09 rounds to 0 of 8000"):
        tiny_tokenizer.encode_batch(short_batch(), [1.0, 1e-9])


def test_wav_lens_list_numpy_and_column_equal_a_tensor(tiny_tokenizer):
    """A list, a numpy array and a (B, 1) tensor mean the same as a (B,) tensor (was: AttributeError)."""
    wavs = short_batch()
    expected = tiny_tokenizer.encode_batch(wavs, torch.tensor([1.0, 0.6]))
    for lens in ([1.0, 0.6], np.array([1.0, 0.6]), torch.tensor([[1.0], [0.6]])):
        assert same(tiny_tokenizer.encode_batch(wavs, lens), expected)
    with pytest.raises(LengthsError, match=r"shape \(2, 2\)"):
        tiny_tokenizer.encode_batch(wavs, torch.ones(2, 2))


def test_padded_item_equals_the_item_alone(tiny_tokenizer):
    """One form of lengths (samples) from the entry: item 1 at 0.6 equals its 4800 samples alone."""
    wavs = short_batch(seed=3)
    glob, sem, lens = tiny_tokenizer.encode_batch(wavs, [1.0, 0.6])
    glob1, sem1, lens1 = tiny_tokenizer.encode_batch(wavs[1, :4800])
    assert torch.equal(glob[1], glob1[0])
    assert int(lens[1]) == int(lens1[0]) and torch.equal(sem[1, : lens[1]], sem1[0])
    assert not sem[1, lens[1] :].any()


def test_waveform_checked_once(tiny_tokenizer, monkeypatch):
    """The tokenizer checks audio at its entry only; the codec does not check it again."""
    import bicodec_plugin.codec.model as model
    import bicodec_plugin.inference as inference

    calls = {"entry": 0, "codec": 0}
    entry, codec_check = inference.waveform_batch, model.check_waveform

    def count(name, func):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return func(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(inference, "waveform_batch", count("entry", entry))
    monkeypatch.setattr(model, "check_waveform", count("codec", codec_check))
    tiny_tokenizer.micro_batch = 1  # two micro-batches: still one check
    try:
        tiny_tokenizer.encode_batch(short_batch(), [1.0, 0.5])
    finally:
        tiny_tokenizer.micro_batch = None
    assert calls == {"entry": 1, "codec": 0}


def test_numpy_list_and_ragged_audio(tiny_tokenizer):
    """numpy and nested lists read as tensors; a list of 1-D utterances is padded for you."""
    wavs = short_batch(seed=1)
    expected = tiny_tokenizer.encode_batch(wavs)
    assert same(tiny_tokenizer.encode_batch(wavs.numpy()), expected)
    assert same(tiny_tokenizer.encode_batch(wavs.tolist()), expected)
    assert same(tiny_tokenizer.encode_batch(wavs[:, None]), expected)  # (B, 1, N)
    glob, sem, lens = tiny_tokenizer.encode_batch([wavs[0].numpy(), wavs[1, :5000]])
    alone = tiny_tokenizer.encode_batch(wavs[1, :5000])
    assert torch.equal(glob[1], alone[0][0]) and torch.equal(sem[1, : lens[1]], alone[1][0])
    with pytest.raises(LengthsError, match="must be None when wavs is a list"):
        tiny_tokenizer.encode_batch([wavs[0], wavs[1]], [1.0, 1.0])


@pytest.mark.parametrize(
    "wavs, message",
    [
        (torch.zeros(1, 2, 8000), r"shape \(1, 2, 8000\)"),
        ((torch.randn(1, 8000) * 1000).to(torch.int16), "int16 .*divide by 32768"),
        (torch.zeros(1, 8000, dtype=torch.bool), "floating-point"),
        ("speech.wav", "not an array"),
        (torch.zeros(0, 8000), "empty"),
    ],
    ids=["stereo", "int16", "bool", "path", "empty"],
)
def test_bad_audio_refused(tiny_tokenizer, wavs, message):
    with pytest.raises(AudioInputError, match=message):
        tiny_tokenizer.encode_batch(wavs)


def test_nan_names_the_item_and_padding_is_ignored(tiny_tokenizer):
    wavs = short_batch()
    wavs[1, 100] = float("nan")
    with pytest.raises(AudioInputError, match="item 1 holds NaN"):
        tiny_tokenizer.encode_batch(wavs)
    wavs = short_batch()
    wavs[1, 6000:] = float("nan")  # padding past wav_lens = 0.5
    glob, sem, _ = tiny_tokenizer.encode_batch(wavs, [1.0, 0.5])
    assert torch.equal(sem[1, :12], tiny_tokenizer.encode_batch(wavs[1, :4000])[1][0])


def test_too_short_item_is_named(tiny_tokenizer):
    with pytest.raises(AudioInputError, match="item 1 is too short: 240 samples"):
        tiny_tokenizer.encode_batch(short_batch(), [1.0, 0.03])


@pytest.mark.parametrize(
    "lens, message",
    [
        ([100, 100], r"semantic_lens\[0\] = 100: must lie in \[0, 24\]"),
        ([-3, 24], r"semantic_lens\[0\] = -3"),
        ([24], "1 entries for 2 items"),
        ([24.0, 12.5], "whole numbers"),
        ([1.0, 0.5], "whole numbers"),
    ],
    ids=["above-T", "negative", "one-for-two", "fraction", "relative"],
)
def test_decode_lengths_refused(tiny_tokenizer, lens, message):
    """Was: lengths beyond the buffer, -960 samples, a zero row, a raw convolution error."""
    glob, sem, _ = tiny_tokenizer.encode_batch(short_batch(seconds=0.5))
    with pytest.raises(LengthsError, match=message):
        tiny_tokenizer.decode_batch(glob, sem, torch.tensor(lens))


def test_decode_length_zero_gives_empty_item(tiny_tokenizer):
    """A length of 0 decodes to 0 samples; the other item is as decoded alone."""
    glob, sem, _ = tiny_tokenizer.encode_batch(short_batch(seconds=0.5))
    wavs, wav_lens = tiny_tokenizer.decode_batch(glob, sem, [0, 10])
    assert wav_lens.tolist() == [0, 3200]
    assert not wavs[0].any()
    alone = tiny_tokenizer.decode(glob[1:], sem[1:, :10])
    assert torch.allclose(wavs[1, :3200], alone[0], atol=1e-6)


def test_other_encode_arguments(tiny_tokenizer):
    with pytest.raises(BiCodecInputError, match="normalize must be True, False or None"):
        tiny_tokenizer.encode_batch(short_batch(), normalize="no")
    with pytest.raises(AudioInputError, match="path must be a file path"):
        tiny_tokenizer.encode_file(None)


def test_dasb_relative_lengths_checked(tiny_tokenizer, tokens):
    """DASB's tokens_to_sig takes relative lengths: NaN or 0 are named as ``lengths``."""
    from bicodec_plugin.downstream.dasb import BiCodecDASBTokenizer

    glob, sem, expected = tokens
    dasb = BiCodecDASBTokenizer(tiny_tokenizer)
    packed = dasb.pack(glob[None], sem[None])  # (1, T, 33): the speaker rides on every frame
    for bad in (float("nan"), 0.0):
        with pytest.raises(LengthsError, match=r"lengths\[0\] = "):
            dasb.tokens_to_sig(packed, lengths=torch.tensor([bad]))
    out = dasb.tokens_to_sig(packed, lengths=torch.tensor([1.0]))
    assert torch.equal(out, expected)


def test_micro_batch_must_be_positive(tiny_tokenizer):
    for value in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="micro_batch"):
            tiny_tokenizer.micro_batch = value
    assert tiny_tokenizer.micro_batch == 1  # CPU default kept


# ====================================================================== tokens
@pytest.fixture(scope="module")
def tokens(tiny_tokenizer):
    """Tokens of golden spk2_snt1 as (32,) and (T,), and their decoding."""
    ref = golden("spk2_snt1")
    glob, sem = ref["global_tokens"].flatten(), ref["semantic_tokens"][0]
    return glob, sem, tiny_tokenizer.decode(glob[None], sem[None])


def test_zero_semantic_tokens_decode_to_no_audio(tiny_tokenizer, tokens):
    """Was: RuntimeError "Calculated padded input size per channel: (0)"."""
    glob, _, _ = tokens
    wavs, lens = tiny_tokenizer.decode_batch(glob[None], torch.zeros(1, 0, dtype=torch.long))
    assert wavs.shape == (1, 0) and lens.tolist() == [0]


def test_bool_tokens_refused(tiny_tokenizer, tokens):
    glob, sem, _ = tokens
    with pytest.raises(TokenTypeError, match="bool"):
        tiny_tokenizer.decode(glob[None].bool(), sem[None])
    with pytest.raises(TypeError):  # also a TypeError, and a ValueError
        tiny_tokenizer.decode(glob[None], sem[None].bool())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_small_integer_dtypes_decode_the_same(tiny_tokenizer, tokens, dtype):
    """uint8 ids (codebook of 64) reach the embedding as int64 (was: embedding error)."""
    glob, sem, expected = tokens
    out = tiny_tokenizer.decode(glob[None].to(torch.int16), sem[None].to(dtype))
    assert torch.equal(out, expected)


def test_store_shapes_are_one_utterance(tiny_tokenizer, tokens):
    """1-D global (32,) and 1-D semantic (T,), as the token store returns them
    (was: "batch sizes differ: 32 global vs 1 semantic")."""
    glob, sem, expected = tokens
    assert torch.equal(tiny_tokenizer.decode(glob, sem), expected)
    assert torch.equal(tiny_tokenizer.decode(glob.numpy(), sem.tolist()), expected)
    with pytest.raises(TokenError, match="batch sizes differ: 1 global vs 2 semantic"):
        tiny_tokenizer.decode(glob, torch.stack([sem, sem]))


def test_padding_ids_past_lengths_are_not_checked(tiny_tokenizer, tokens):
    glob, sem, expected = tokens
    padded = torch.cat([sem, torch.full((5,), -1)])[None]
    wavs, _ = tiny_tokenizer.decode_batch(glob[None], padded, [sem.shape[0]])
    assert torch.equal(wavs[:, : expected.shape[1]], expected)


def test_out_of_range_id_is_located(tiny_tokenizer, tokens):
    glob, sem, _ = tokens
    bad = sem.clone()[None]
    bad[0, 7] = 64
    with pytest.raises(TokenError, match=r"\[0, 64\).*item 0, position 7"):
        tiny_tokenizer.decode(glob[None], bad)


def test_bad_token_shapes(tiny_tokenizer, tokens):
    glob, sem, _ = tokens
    with pytest.raises(TokenError, match="exactly 32 global tokens"):
        tiny_tokenizer.decode(glob[:31], sem)
    with pytest.raises(TokenError, match=r"\(T,\) or \(B, T\)"):
        tiny_tokenizer.decode(glob, sem[None, None])
    with pytest.raises(TokenError, match="empty"):
        tiny_tokenizer.decode(glob[None][:0], sem[None][:0])
    with pytest.raises(TokenTypeError, match="integers"):
        tiny_tokenizer.decode(glob.float(), sem)


def test_tokens_to_llm_string_refuses_floats_and_negatives():
    with pytest.raises(TokenTypeError):
        tokens_to_llm_string(torch.zeros(32), [1])
    with pytest.raises(TokenError, match="non-negative"):
        tokens_to_llm_string(torch.zeros(32, dtype=torch.long), [-1])


def test_errors_are_value_errors():
    for cls in (AudioInputError, LengthsError, TokenError, TokenTypeError, TokenStringError):
        assert issubclass(cls, BiCodecInputError) and issubclass(cls, ValueError)


# ================================================================= LLM strings
GLOBALS = "".join(f"<|bicodec_global_{i}|>" for i in range(32))


@pytest.mark.parametrize(
    "text, message",
    [
        (GLOBALS[: -len("<|bicodec_global_31|>")], "expected 32 global tokens, found 31"),
        ("<|bicodec_semantic_5|>", "found 0 .*num_global=0"),
        (
            GLOBALS + "<|bicodec_semantic_x|>",
            f"malformed BiCodec token at character {len(GLOBALS)}",
        ),
        (GLOBALS + "<|bicodec_semantic_-3|>", "malformed.*'<\\|bicodec_semantic_-3\\|>'"),
        (GLOBALS + "<|bicodec_semantic_12>", "malformed"),
        (GLOBALS + "<|bicodec_semantic_007|>", "malformed"),
        ("<|bicodec_semantic_1|>" + GLOBALS, "global token at character 22 follows semantic"),
        (GLOBALS + "<|bicodec_semantic_" + "9" * 20 + "|>", "does not fit in int64"),
    ],
    ids=["31-global", "0-global", "letters", "negative", "unclosed", "zeros", "order", "overflow"],
)
def test_llm_string_strict_parse(text, message):
    with pytest.raises(TokenStringError, match=message):
        llm_string_to_tokens(text)


def test_llm_string_modes():
    """Semantic-only strings with num_global=0; the old lenient parse is opt-in."""
    g, s = llm_string_to_tokens("<|start_semantic_token|><|bicodec_semantic_5|>", num_global=0)
    assert g.shape == (1, 0) and s.tolist() == [[5]]
    text = "<|bicodec_semantic_1|><|bicodec_global_3|><|bicodec_global_x|>"
    g, s = llm_string_to_tokens(text, strict=False)
    assert g.tolist() == [[3]] and s.tolist() == [[1]]
    with pytest.raises(TokenStringError, match="expected a str"):
        llm_string_to_tokens(b"<|bicodec_global_1|>")


# ============================================================= release folders
@pytest.fixture
def release(reference_dir, tmp_path):
    """A writable copy of the tiny release."""
    folder = tmp_path / "release"
    shutil.copytree(TINY_RELEASE, folder)
    return folder


def edit_yaml(path, edit):
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    edit(data)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)


def edit_safetensors(path, edit):
    state = load_file(path)
    edit(state)
    save_file(state, path)


def truncate(path, fraction=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def test_config_not_a_mapping(release):
    (release / "config.yaml").write_text("- sample_rate\n- 16000\n")
    with pytest.raises(ReleaseLoadError, match=r"config\.yaml: expected a mapping, found list"):
        load_release(str(release), with_ssl=False)


def test_sample_rate_inconsistent_with_the_decoder(release):
    """24000 Hz in both configs with the 16 kHz decoder (hop 320): refused
    (was: loaded, and labelled 0.65 s of audio as 24 kHz)."""
    edit_yaml(release / "config.yaml", lambda c: c.update(sample_rate=24000))
    with pytest.raises(ReleaseLoadError, match=r"config\.yaml: sample_rate 24000 differs from"):
        load_release(str(release), with_ssl=False)
    edit_yaml(
        release / "BiCodec" / "config.yaml",
        lambda c: c["audio_tokenizer"]["mel_params"].update(sample_rate=24000),
    )
    with pytest.raises(ReleaseLoadError, match=r"BiCodec/config\.yaml: sample_rate 24000 does not"):
        load_release(str(release), with_ssl=False)


@pytest.mark.parametrize(
    "key, value", [("volume_normalize", "no"), ("sample_rate", "16k"), ("ref_segment_duration", -6)]
)
def test_config_value_types(release, key, value):
    """A string "no" must not read as True."""
    edit_yaml(release / "config.yaml", lambda c: c.update({key: value}))
    with pytest.raises(ReleaseLoadError, match=rf"config\.yaml: {key} must be"):
        load_release(str(release), with_ssl=False)


def test_nan_in_a_codec_weight(release):
    """Was: loaded, and decoded NaN audio."""

    def poison(state):
        state["decoder.model.0.weight_v"][0, 0, 0] = float("nan")

    edit_safetensors(release / CODEC_WEIGHTS, poison)
    with pytest.raises(
        ReleaseLoadError,
        match=r"(?s)model\.safetensors: .*NaN or infinite.*decoder\.model\.0\.weight_v \(1 of",
    ):
        load_release(str(release), with_ssl=False)


def test_inf_in_a_wav2vec2_weight(release):
    def poison(state):
        key = next(k for k in sorted(state) if k.endswith("k_proj.weight"))
        state[key][0, 0] = float("inf")

    edit_safetensors(release / W2V_WEIGHTS, poison)
    with pytest.raises(ReleaseLoadError, match=rf"{W2V}: NaN or infinite values in \(1\)"):
        load_release(str(release))


@pytest.mark.parametrize("weights", [CODEC_WEIGHTS, W2V_WEIGHTS], ids=["codec", "wav2vec2"])
def test_truncated_safetensors_names_the_file(release, weights):
    """Was, for wav2vec2: a bare SafetensorError without the path."""
    truncate(release / weights)
    with pytest.raises(ReleaseLoadError, match=rf"{weights}: cannot read safetensors file"):
        load_release(str(release))


def test_missing_wav2vec2_config(release):
    """Was: a 50-line size-mismatch report and ignore_mismatched_sizes."""
    os.remove(release / W2V / "config.json")
    with pytest.raises(ReleaseLoadError, match=rf"{W2V}/config\.json: missing"):
        load_release(str(release))


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_corrupt_wav2vec2_json(release, name):
    """A corrupt preprocessor config was read as absent (normalisation guessed)."""
    (release / W2V / name).write_text("{")
    with pytest.raises(ReleaseLoadError, match=rf"{name}: not valid JSON"):
        load_release(str(release))


def test_wav2vec2_config_not_matching_its_weights(release):
    """Mis-shaped tensors are an error naming them, never re-initialised."""
    path = release / W2V / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(ReleaseLoadError, match=r"mis-shaped .*intermediate_dense.*file \(128"):
        load_release(str(release))
    path.write_text(json.dumps({**config, "num_hidden_layers": 12}))
    with pytest.raises(ReleaseLoadError, match=rf"{W2V}: layer 16 requested but .* 12 layers"):
        load_release(str(release))


def test_wav2vec2_weights_missing_or_incomplete(release):
    def drop(state):
        state.pop(next(k for k in sorted(state) if k.endswith("attention.q_proj.weight")))

    edit_safetensors(release / W2V_WEIGHTS, drop)
    with pytest.raises(ReleaseLoadError, match=r"do not fill the model.*missing \[.*q_proj"):
        load_release(str(release))
    os.remove(release / W2V_WEIGHTS)
    with pytest.raises(ReleaseLoadError, match="no wav2vec2 weights"):
        load_release(str(release))


# ======================================================= training checkpoints
def make_checkpointer(folder):
    """A real SpeechBrain Checkpointer over a small model, its optimiser and a counter."""
    from speechbrain.utils.checkpoints import Checkpointer
    from speechbrain.utils.epoch_loop import EpochCounter

    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    checkpointer = Checkpointer(
        folder,
        recoverables={"generator": model, "optimizer_g": optimizer, "counter": EpochCounter(9)},
    )
    return checkpointer, model


def save_three(folder):
    """Checkpoints at steps 1, 2, 3 (weights filled with the step; step 3 has the best mel)."""
    checkpointer, model = make_checkpointer(folder)
    saved = []
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(step)
        saved.append(checkpointer.save_checkpoint(meta={"mel": 4.0 - step, "step": step}))
        time.sleep(0.01)  # distinct unixtime
    return saved


def write_zip_not_torch(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not a torch file")


DAMAGES = {
    "truncated-generator": ("generator.ckpt", lambda p: truncate(p, 0.6)),
    "empty-optimizer": ("optimizer_g.ckpt", lambda p: open(p, "wb").close()),
    "empty-CKPT.yaml": ("CKPT.yaml", lambda p: open(p, "wb").close()),
    "missing-optimizer": ("optimizer_g.ckpt", os.remove),
    "loads-badly": ("generator.ckpt", write_zip_not_torch),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_is_skipped(tmp_path, caplog, damage):
    """Was: every rerun died (PytorchStreamReader failed, EOFError, NoneType).
    Now the newest intact checkpoint loads, and the damaged one is renamed with a warning."""
    from bicodec_plugin.training.checkpoints import recover_newest_intact

    saved = save_three(tmp_path)
    name, spoil = DAMAGES[damage]
    spoil(saved[2].path / name)
    checkpointer, model = make_checkpointer(tmp_path)
    with caplog.at_level(logging.WARNING):
        loaded = recover_newest_intact(checkpointer)
    assert loaded.meta["step"] == 2
    assert torch.all(model.weight == 2)
    assert str(saved[2].path) in caplog.text
    if damage != "loads-badly":  # found by the check before loading: names the file
        assert f"{saved[2].path / name}" in caplog.text
    renamed = saved[2].path.with_name("DAMAGED-" + saved[2].path.name)
    assert renamed.is_dir() and not saved[2].path.exists()  # kept for inspection

    # Only intact checkpoints count towards num_to_keep: the damaged one had the
    # best mel and was kept as "best" while a complete one was deleted.
    with torch.no_grad():
        model.weight.fill_(4)
    checkpointer.save_and_keep_only(meta={"mel": 5.0, "step": 4}, min_keys=["mel"], num_to_keep=1)
    steps = sorted(c.meta["step"] for c in checkpointer.list_checkpoints())
    assert steps == [2, 4]  # best intact mel (step 2) and the newest
    assert renamed.is_dir()


def test_all_checkpoints_damaged_starts_afresh(tmp_path, caplog):
    from bicodec_plugin.training.checkpoints import recover_newest_intact

    for ckpt in save_three(tmp_path):
        open(ckpt.path / "CKPT.yaml", "w").close()
    checkpointer, model = make_checkpointer(tmp_path)
    before = model.weight.clone()
    with caplog.at_level(logging.WARNING):
        assert recover_newest_intact(checkpointer) is None
    assert torch.equal(model.weight, before)
    assert caplog.text.count("skipping damaged checkpoint") == 3


def test_nan_validation_loss_never_ranks_best():
    from bicodec_plugin.training.brain import checkpoint_meta

    assert checkpoint_meta({"mel": float("nan")}, 1.0, 7) == {"mel": float("inf"), "step": 7}
    assert checkpoint_meta({}, 2.5, 3) == {"mel": 2.5, "step": 3}


@pytest.fixture(scope="module")
def train_setup(reference_dir, tmp_path_factory):
    """Golden-clip manifests and a tiny random wav2vec2 for recipe runs."""
    from bicodec_plugin.testing import make_tiny_wav2vec2

    folder = tmp_path_factory.mktemp("train")
    clips = os.path.join(GOLDEN, "clips")
    lines = [
        json.dumps({"index": n[:-4], "wav_path": os.path.join(clips, n)})
        for n in sorted(os.listdir(clips))
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "valid.jsonl").write_text(lines[0] + "\n")
    return {"folder": folder, "w2v": make_tiny_wav2vec2(str(folder / "w2v"))}


def run_train(setup, out, *extra, log):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    args = [
        sys.executable,
        os.path.join(ROOT, "recipes", "train.py"),
        os.path.join(ROOT, "hparams", "bicodec_tiny_wav2vec2.yaml"),
        "--ssl_source",
        setup["w2v"],
        "--train_manifest",
        str(setup["folder"] / "train.jsonl"),
        "--valid_manifest",
        str(setup["folder"] / "valid.jsonl"),
        "--output_folder",
        str(out),
        "--device",
        "cpu",
        "--noprogressbar",
        "--batch_size",
        "2",
        "--segment_duration",
        "0.64",
        "--ref_segment_duration",
        "2",
        "--steps_per_epoch",
        "1",
        "--log_interval",
        "1",
        "--num_samples",
        "0",
        "--max_valid_utterances",
        "1",
        "--use_tensorboard",
        "False",
        *extra,
    ]
    with open(log, "ab") as f:
        proc = subprocess.run(args, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=900)
    text = open(log, encoding="utf-8", errors="replace").read()
    assert proc.returncode == 0, text[-4000:]
    return text


def test_recipe_resumes_past_a_truncated_generator_checkpoint(train_setup, tmp_path):
    """train.py: the newest generator.ckpt truncated; the rerun warns, resumes from the
    previous step and keeps only intact checkpoints (2 steps, then 1 more)."""
    out, log = tmp_path / "run", tmp_path / "train.log"
    run_train(train_setup, out, "--max_steps", "2", log=log)
    ckpts = sorted(p for p in (out / "save").iterdir() if p.name.startswith("CKPT"))
    steps = [yaml.safe_load((p / "CKPT.yaml").read_text())["step"] for p in ckpts]
    assert steps == [1, 2], steps
    truncate(ckpts[1] / "generator.ckpt", 0.5)
    text = run_train(train_setup, out, "--max_steps", "3", log=log)
    rerun = text.split("skipping damaged checkpoint", 1)
    assert len(rerun) == 2 and f"{ckpts[1] / 'generator.ckpt'}: truncated" in rerun[1][:800]
    train_log = (out / "train_log.txt").read_text()
    assert "step: 2 -" in train_log.split("step: 2 -", 1)[1]  # step 2 was trained again
    assert (out / "save" / ("DAMAGED-" + ckpts[1].name)).is_dir()
    kept = [p for p in (out / "save").iterdir() if p.name.startswith("CKPT")]
    assert all((p / "generator.ckpt").stat().st_size > 0 for p in kept)
    assert max(yaml.safe_load((p / "CKPT.yaml").read_text())["step"] for p in kept) == 3


# =================================================================== manifests
def write_manifest(path, entries):
    with open(path, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry) + "\n")
    return str(path)


def test_missing_file_with_duration_caught_up_front(tmp_path):
    """Was: passed the up-front check and crashed at step 2 without the line."""
    from bicodec_plugin.training.data import ManifestError, build_datasets

    soundfile.write(
        tmp_path / "ok.wav", 0.1 * np.random.default_rng(0).standard_normal(32000), 16000
    )
    manifest = write_manifest(
        tmp_path / "train.jsonl",
        [
            {"index": "ok", "wav_path": "ok.wav", "duration": 2.0},
            {"index": "gone", "wav_path": "gone.wav", "duration": 3.0},
        ],
    )
    with pytest.raises(ManifestError, match=r"train\.jsonl:2: no such audio file .*gone\.wav"):
        build_datasets(manifest, None, 16000, 320)


def test_corrupt_file_with_duration_caught_up_front(tmp_path):
    from bicodec_plugin.training.data import ManifestError, build_datasets

    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x01junk, not audio" * 10)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    for name, message in (("bad.wav", "cannot read the audio header"), ("empty.wav", "no samples")):
        manifest = write_manifest(
            tmp_path / "m.jsonl", [{"index": "x", "wav_path": name, "duration": 3.0}]
        )
        with pytest.raises(ManifestError, match=rf"m\.jsonl:1: .*{message}"):
            build_datasets(manifest, None, 16000, 320)


def test_damage_past_the_header_names_the_manifest_line(tmp_path):
    """A FLAC cut in the middle has a good header: the load error names file:line."""
    from bicodec_plugin.codec.audio import AudioLoadError
    from bicodec_plugin.training.data import build_datasets

    soundfile.write(
        tmp_path / "a.flac", 0.1 * np.random.default_rng(0).standard_normal(48000), 16000
    )
    truncate(tmp_path / "a.flac", 0.3)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"index": "a", "wav_path": "a.flac"}])
    train_set, _ = build_datasets(manifest, None, 16000, 320)
    with pytest.raises(AudioLoadError, match=r"m\.jsonl:1: .*a\.flac: cannot read audio"):
        train_set[0]


@pytest.mark.parametrize("duration", [float("nan"), -1.0, float("inf")])
def test_bad_duration_values(tmp_path, duration):
    from bicodec_plugin.training.data import ManifestError, read_manifests

    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"index": "a", "wav_path": "a.wav", "duration": duration}) + "\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: 'duration' must be a finite"):
        read_manifests(str(path))


def test_missing_manifest_file(tmp_path):
    from bicodec_plugin.training.data import ManifestError, read_manifests

    with pytest.raises(ManifestError, match=r"nope\.jsonl: no such manifest file"):
        read_manifests(str(tmp_path / "nope.jsonl"))


# ============================================================ token extraction
import extract_tokens  # noqa: E402  (recipes/ is on sys.path, see conftest)

from bicodec_plugin.downstream.token_store import TokenStore, TokenWriter  # noqa: E402

NO_ENV = {}


def clip_manifest(path, copies=1, clips=CLIPS):
    """Golden clips, each ``copies`` times under distinct indexes ``<clip>#<k>``."""
    entries = [
        {"index": f"{c}#{k}", "wav_path": clip_path(c)} for k in range(copies) for c in clips
    ]
    return write_manifest(path, entries)


def assert_all_golden(folder, manifest):
    store = TokenStore(folder)
    with open(manifest) as f:
        indexes = [json.loads(line)["index"] for line in f]
    assert sorted(store.keys()) == sorted(indexes)
    for index in indexes:
        ref = golden(index.split("#")[0])
        glob_t, sem_t = store.get(index)
        assert torch.equal(glob_t, ref["global_tokens"].flatten()), index
        assert torch.equal(sem_t, ref["semantic_tokens"][0]), index
    assert not store.missing


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_termination_flushes_like_ctrl_c(tiny_tokenizer, tmp_path, capsys, sig, code):
    """SIGTERM (or SIGHUP, or Ctrl-C) at the third batch: the first two batches are stored,
    although the chunk (256) is not full and no time-based flush is due
    (was, for SIGTERM: exit 143 with nothing flushed)."""
    manifest = clip_manifest(tmp_path / "m.jsonl")
    out = str(tmp_path / "tokens")
    real = tiny_tokenizer.tokenize_prepared
    calls = []

    def terminate_third(items):
        calls.append(len(items))
        if len(calls) == 3:
            os.kill(os.getpid(), sig)
        return real(items)

    before = signal.getsignal(sig)
    args = ["--manifest", manifest, "--output", out, "--release", TINY_RELEASE]
    args += ["--max-batch", "1", "--flush-seconds", "3600", "--no-progress", "--num-workers", "0"]
    with mock.patch.object(extract_tokens, "load_tokenizer", return_value=tiny_tokenizer):
        with mock.patch.object(tiny_tokenizer, "tokenize_prepared", side_effect=terminate_third):
            assert extract_tokens.main(args) == code
    assert signal.getsignal(sig) == before  # handler restored
    assert f"stopped by {signal.Signals(sig).name}" in capsys.readouterr().err
    assert len(TokenStore(out)) == 2  # prompt_audio and LJ050-0131 (longest first)
    summary = extract_tokens.extract(tiny_tokenizer, manifest, out, progress=False, env=NO_ENV)
    assert (summary["done"], summary["skipped"]) == (2, 2)
    assert_all_golden(out, manifest)


def start_cli(tmp_path, manifest, out, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    args = [sys.executable, os.path.join(ROOT, "recipes", "extract_tokens.py")]
    args += ["--manifest", manifest, "--output", out, "--release", TINY_RELEASE]
    args += ["--max-batch", "1", "--no-progress", "--num-workers", "0", *extra]
    log = open(tmp_path / "cli.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, tmp_path / "cli.log"


def wait_for(condition, proc, log, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} early:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out:\n{log.read_text()[-3000:]}")


def index_count(out):
    path = os.path.join(out, "index-r000.jsonl")
    return sum(1 for _ in open(path)) if os.path.isfile(path) else 0


def test_sigterm_from_outside(tiny_tokenizer, tmp_path):
    """``docker stop``: SIGTERM mid-run exits 143, the store is consistent, a rerun completes."""
    manifest = clip_manifest(tmp_path / "m.jsonl", copies=8, clips=["spk1_snt1", "spk2_snt1"])
    out = str(tmp_path / "tokens")
    proc, log = start_cli(tmp_path, manifest, out, "--chunk-size", "4", "--flush-seconds", "3600")
    wait_for(lambda: index_count(out) >= 4, proc, log)  # first chunk: tokenizing is under way
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    assert "stopped by SIGTERM" in log.read_text()
    stored = len(TokenStore(out))
    assert stored == index_count(out) >= 4
    summary = extract_tokens.extract(tiny_tokenizer, manifest, out, progress=False, env=NO_ENV)
    assert (summary["done"], summary["skipped"]) == (16 - stored, stored)
    assert_all_golden(out, manifest)


def test_sigkill_loses_at_most_the_flush_interval(tiny_tokenizer, tmp_path):
    """With chunks of 256, a time-based flush (1 s here, 60 s by default) puts work on disk
    before a chunk fills, so a ``kill -9`` loses at most that much."""
    manifest = clip_manifest(tmp_path / "m.jsonl", copies=8, clips=["spk1_snt1", "spk2_snt1"])
    out = str(tmp_path / "tokens")
    proc, log = start_cli(tmp_path, manifest, out, "--flush-seconds", "1")
    wait_for(lambda: index_count(out) >= 1, proc, log)
    proc.kill()
    proc.wait()
    stored = len(TokenStore(out))
    assert 1 <= stored < 16
    summary = extract_tokens.extract(tiny_tokenizer, manifest, out, progress=False, env=NO_ENV)
    assert (summary["done"], summary["skipped"]) == (16 - stored, stored)
    assert_all_golden(out, manifest)


def test_time_based_flush(tmp_path, monkeypatch):
    import bicodec_plugin.downstream.token_store as token_store

    now = [1000.0]
    monkeypatch.setattr(token_store.time, "monotonic", lambda: now[0])
    writer = TokenWriter(tmp_path, chunk_size=256, flush_interval=60.0)
    writer.add("a", torch.zeros(32, dtype=torch.long), torch.tensor([1, 2]))
    assert len(TokenStore(tmp_path)) == 0 and writer.pending == 1
    now[0] += 61.0
    writer.add("b", torch.zeros(32, dtype=torch.long), torch.tensor([3]))
    assert len(TokenStore(tmp_path)) == 2 and writer.pending == 0
    writer.close()
    with pytest.raises(ValueError, match="flush_interval"):
        TokenWriter(tmp_path, flush_interval=-1)


@pytest.fixture
def extracted(tiny_tokenizer, tmp_path):
    """The golden clips extracted one per chunk."""
    manifest = clip_manifest(tmp_path / "m.jsonl")
    out = tmp_path / "tokens"
    extract_tokens.extract(
        tiny_tokenizer, manifest, str(out), chunk_size=1, progress=False, env=NO_ENV
    )
    chunk = TokenStore(out).info("spk1_snt1#0")["chunk"]
    return manifest, out, out / chunk


def test_truncated_chunk_is_named_and_recomputed(tiny_tokenizer, extracted, caplog):
    """Was: a bare "SafetensorError: incomplete metadata", and a rerun did not redo it."""
    manifest, out, chunk = extracted
    truncate(chunk, 0.5)
    with pytest.raises(CorruptChunkError, match=rf"{chunk.name}: cannot read this token chunk"):
        TokenStore(out).get("spk1_snt1#0")
    with caplog.at_level(logging.WARNING):
        summary = extract_tokens.extract(
            tiny_tokenizer, manifest, str(out), progress=False, env=NO_ENV
        )
    assert (summary["set_aside"], summary["done"], summary["skipped"]) == (1, 1, 3)
    assert (
        f"{chunk.name}: unreadable" in caplog.text
        and "1 utterances will be recomputed" in caplog.text
    )
    assert (out / (chunk.name + ".corrupt")).is_file()  # kept, out of the way
    assert_all_golden(out, manifest)
    # The set-aside chunk's number is never reused.
    assert not chunk.exists() or TokenStore(out).info("spk1_snt1#0")["chunk"] != chunk.name


def test_verify_finds_damage_the_header_does_not_show(tiny_tokenizer, extracted):
    """Bytes changed inside the data: the header check passes; --verify's checksum catches it."""
    manifest, out, chunk = extracted
    data = bytearray(chunk.read_bytes())
    data[-4:] = bytes(b ^ 0x07 for b in data[-4:])
    chunk.write_bytes(bytes(data))
    expected = golden("spk1_snt1")["semantic_tokens"][0]
    assert not torch.equal(TokenStore(out).semantic_tokens("spk1_snt1#0"), expected)
    summary = extract_tokens.extract(tiny_tokenizer, manifest, str(out), progress=False, env=NO_ENV)
    assert summary["set_aside"] == 0  # invisible to the cheap check
    summary = extract_tokens.extract(
        tiny_tokenizer, manifest, str(out), progress=False, env=NO_ENV, verify=True
    )
    assert (summary["set_aside"], summary["done"]) == (1, 1)
    assert_all_golden(out, manifest)


def test_deleted_chunk_is_left_out_then_recomputed(tiny_tokenizer, extracted, caplog):
    manifest, out, chunk = extracted
    chunk.unlink()
    with caplog.at_level(logging.WARNING):
        store = TokenStore(out)
    assert "spk1_snt1#0" not in store and store.missing == {"spk1_snt1#0": chunk.name}
    assert "rerun extract_tokens.py" in caplog.text
    summary = extract_tokens.extract(tiny_tokenizer, manifest, str(out), progress=False, env=NO_ENV)
    assert summary["done"] == 1
    assert_all_golden(out, manifest)


def test_corrupt_meta_json_is_named(tiny_tokenizer, extracted):
    manifest, out, _ = extracted
    (out / "meta.json").write_text('{"format": "bicodec-tok')
    with pytest.raises(TokenStoreError, match=r"meta\.json: unreadable"):
        TokenStore(out)
    with pytest.raises(TokenStoreError, match=r"meta\.json: unreadable"):
        extract_tokens.extract(tiny_tokenizer, manifest, str(out), progress=False, env=NO_ENV)


def test_output_is_a_file(tmp_path):
    (tmp_path / "tokens").write_text("")
    with pytest.raises(TokenStoreError, match="tokens: exists and is not a folder"):
        TokenWriter(tmp_path / "tokens")


def test_index_line_that_is_not_an_object_is_skipped(extracted, caplog):
    _, out, _ = extracted
    with open(out / "index-r000.jsonl", "a") as f:
        f.write('["not", "an", "entry"]\n')
    with caplog.at_level(logging.WARNING):
        assert len(TokenStore(out)) == 4
    assert "index-r000.jsonl:5: skipping a line without index and chunk" in caplog.text
