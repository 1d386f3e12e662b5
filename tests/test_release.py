"""Release layout: full-size key parity, parameter count, strict loading."""

import os
import shutil

import pytest
import torch
from conftest import REFERENCE, TINY_RELEASE, clip_path
from safetensors.torch import load_file, save_file

from bicodec_plugin.formats.release import (
    ReleaseLoadError,
    build_bicodec,
    load_release,
    release_state_dict,
    released_config,
)

WEIGHTS = os.path.join("BiCodec", "model.safetensors")


@pytest.fixture(scope="module")
def full_model():
    """The released-size 16 kHz model with random weights."""
    torch.manual_seed(0)
    return build_bicodec(released_config())


@pytest.mark.slow
def test_full_size_keys_and_shapes(full_model, reference_dir):
    """Keys, shapes and dtypes equal bicodec_16k_state_dict.tsv after mapping."""
    with open(os.path.join(REFERENCE, "bicodec_16k_state_dict.tsv"), encoding="utf-8") as fin:
        rows = [line.rstrip("\n").split("\t") for line in fin][1:]
    expected = {key: (shape, dtype) for key, shape, dtype in rows}
    ours = {
        key: ("x".join(map(str, t.shape)) or "scalar", str(t.dtype).replace("torch.", ""))
        for key, t in release_state_dict(full_model).items()
    }
    assert len(expected) == 842
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


@pytest.mark.slow
def test_full_size_parameter_count(full_model, reference_dir):
    """156,330,380 parameters in weight-norm form, per module as the reference."""
    with open(os.path.join(REFERENCE, "bicodec_16k_params.tsv"), encoding="utf-8") as fin:
        rows = dict(line.rstrip("\n").split("\t") for line in fin)
    assert sum(p.numel() for p in full_model.parameters()) == 156_330_380
    for module in ("encoder", "decoder", "quantizer", "speaker_encoder", "prenet", "postnet"):
        count = sum(p.numel() for p in getattr(full_model, module).parameters())
        assert count == int(rows[module]), module


@pytest.mark.slow
def test_hparams_build_released_architecture(full_model, tiny_wav2vec2_dir):
    """hparams/bicodec_16k.yaml builds the same keys and shapes as the release."""
    from hyperpyyaml import load_hyperpyyaml

    path = os.path.join(os.path.dirname(__file__), "..", "hparams", "bicodec_16k.yaml")
    with open(path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(
            fin, {"ssl_source": tiny_wav2vec2_dir, "train_manifest": "unused.jsonl"}
        )
    ours = {k: tuple(v.shape) for k, v in release_state_dict(hparams["codec"]).items()}
    ref = {k: tuple(v.shape) for k, v in release_state_dict(full_model).items()}
    assert ours == ref


def _copy_release(tmp_path):
    folder = tmp_path / "release"
    shutil.copytree(TINY_RELEASE, folder)
    return str(folder)


def _edit_weights(folder, edit):
    path = os.path.join(folder, WEIGHTS)
    state = load_file(path)
    edit(state)
    save_file(state, path)


def _tokens(folder):
    model, _ = load_release(folder)
    from bicodec_plugin.codec.audio import read_audio_file

    wav = read_audio_file(clip_path("spk2_snt1"), 16000)[None]
    with torch.no_grad():
        return model.tokenize(wav)


def test_missing_tensor_refused(reference_dir, tmp_path):
    """A release without one tensor is refused, naming it."""
    folder = _copy_release(tmp_path)
    _edit_weights(folder, lambda s: s.pop("prenet.linear.weight"))
    with pytest.raises(ReleaseLoadError, match=r"missing keys \(1\): prenet\.linear\.weight"):
        load_release(folder)


@pytest.mark.slow
def test_extra_tensor_refused(reference_dir, tmp_path):
    """An unexpected tensor is refused, naming it."""
    folder = _copy_release(tmp_path)
    _edit_weights(folder, lambda s: s.update({"decoder.extra.weight": torch.zeros(2)}))
    with pytest.raises(ReleaseLoadError, match=r"unexpected keys \(1\): decoder\.extra\.weight"):
        load_release(folder)


def test_misshaped_tensor_refused(reference_dir, tmp_path):
    """A tensor of the wrong shape is refused with both shapes."""
    folder = _copy_release(tmp_path)
    _edit_weights(folder, lambda s: s.update({"quantizer.codebook.weight": torch.zeros(65, 8)}))
    with pytest.raises(ReleaseLoadError, match=r"quantizer\.codebook\.weight: file \(65, 8\)"):
        load_release(folder)


def test_missing_weight_v_refused(reference_dir, tmp_path):
    """Half a weight-norm pair is refused too."""
    folder = _copy_release(tmp_path)
    _edit_weights(folder, lambda s: s.pop("decoder.model.6.weight_v"))
    with pytest.raises(ReleaseLoadError, match=r"decoder\.model\.6\.weight_v"):
        load_release(folder)
    with pytest.raises(ReleaseLoadError, match=r"decoder\.model\.6\.weight_v"):
        load_release(folder, fold=False)


@pytest.mark.slow
def test_folded_weights_and_no_mel_buffers_accepted(tiny_tokenizer, tmp_path):
    """Folded ``weight`` tensors and a file without mel buffers give the same tokens."""
    folder = _copy_release(tmp_path)

    def fold(state):
        for key in [k for k in state if k.endswith(".weight_g")]:
            base = key[: -len("_g")]
            state[base] = torch._weight_norm(state[base + "_v"], state.pop(key), 0)
            state.pop(base + "_v")
        state.pop("mel_transformer.spectrogram.window")
        state.pop("mel_transformer.mel_scale.fb")

    _edit_weights(folder, fold)
    expected = _tokens(TINY_RELEASE)
    got = _tokens(folder)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
    # The weight-norm model (training) accepts folded weights too.
    model, _ = load_release(folder, fold=False, with_ssl=False)
    assert model.decoder.model[0].parametrizations.weight.original1.shape == (64, 32, 7)


@pytest.mark.slow
def test_roundtrip_save_release(reference_dir, tmp_path):
    """save_release writes a folder that loads back to the same tokens."""
    from bicodec_plugin.formats.release import read_release_config, save_release

    model, config = load_release(TINY_RELEASE, fold=False, with_ssl=False, with_postnet=True)
    out = str(tmp_path / "saved")
    save_release(
        model, out, config, ssl_source=os.path.join(TINY_RELEASE, "wav2vec2-large-xlsr-53")
    )
    assert read_release_config(out) == read_release_config(TINY_RELEASE)
    assert set(load_file(os.path.join(out, WEIGHTS))) == set(
        load_file(os.path.join(TINY_RELEASE, WEIGHTS))
    )
    for a, b in zip(_tokens(TINY_RELEASE), _tokens(out)):
        assert torch.equal(a, b)


def test_not_a_release(tmp_path):
    """A folder without the release files is refused with the missing path."""
    with pytest.raises(ReleaseLoadError, match="config.yaml"):
        load_release(str(tmp_path))


def test_only_safetensors(reference_dir, tmp_path):
    """Weights load from safetensors only."""
    from bicodec_plugin.formats.release import load_codec_weights, read_release_config

    model = build_bicodec(read_release_config(TINY_RELEASE))
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ReleaseLoadError, match="only .safetensors"):
        load_codec_weights(model, str(bad))
