"""Shared fixtures: the reference fixtures in ../shared, tiny models built on the fly."""

import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("BICODEC_SHARED", os.path.join(ROOT, "..", "shared"))
REFERENCE = os.path.join(SHARED, "reference")
TINY_RELEASE = os.path.join(REFERENCE, "tiny_release")
GOLDEN = os.path.join(REFERENCE, "golden")
CLIPS = ["spk1_snt1", "spk2_snt1", "prompt_audio", "LJ050-0131"]


def pytest_addoption(parser):
    """Adds SpeechBrain's ``--device`` option."""
    parser.addoption("--device", action="store", default="cpu")


@pytest.fixture
def device(request):
    """Device to run on (``--device``, default cpu)."""
    return request.config.getoption("--device")


@pytest.fixture(scope="session")
def reference_dir():
    """``../shared/reference``; skips when the fixtures are absent."""
    if not os.path.isdir(TINY_RELEASE):
        pytest.skip(f"reference fixtures not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


@pytest.fixture(scope="session")
def tiny_tokenizer(reference_dir):
    """The tiny release loaded through ``BiCodecTokenizer.from_release``."""
    from bicodec_plugin.inference import BiCodecTokenizer

    return BiCodecTokenizer.from_release(TINY_RELEASE, run_opts={"device": "cpu"})


def golden(clip):
    """Reference tensors of a clip."""
    from safetensors.torch import load_file

    return load_file(os.path.join(GOLDEN, f"{clip}.safetensors"))


def clip_path(clip):
    """Path of a golden input clip."""
    return os.path.join(GOLDEN, "clips", f"{clip}.wav")


def tiny_wav2vec2_config(layers=18):
    """A small stable-layer-norm wav2vec2 config (XLS-R layout)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=128,
        conv_dim=[32] * 7,
        conv_bias=False,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory):
    """A random tiny wav2vec2 saved with ``save_pretrained`` (+ preprocessor config)."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("w2v")
    torch.manual_seed(0)
    Wav2Vec2Model(tiny_wav2vec2_config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return str(folder)
