"""Shared fixtures: the reference fixtures in ../shared, tiny models built on the fly."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("BICODEC_SHARED", os.path.join(ROOT, "..", "shared"))
REFERENCE = os.path.join(SHARED, "reference")
TINY_RELEASE = os.path.join(REFERENCE, "tiny_release")
GOLDEN = os.path.join(REFERENCE, "golden")
CLIPS = ["spk1_snt1", "spk2_snt1", "prompt_audio", "LJ050-0131"]
# Recipe modules (recipes/ is not a package) import as top-level modules in tests.
sys.path.insert(0, os.path.join(ROOT, "recipes"))


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


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory):
    """A random tiny wav2vec2 (18 layers) saved with ``save_pretrained`` (+ preprocessor config)."""
    from bicodec_plugin.testing import make_tiny_wav2vec2

    return make_tiny_wav2vec2(str(tmp_path_factory.mktemp("w2v")), seed=0, num_layers=18)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A random Whisper in CTranslate2 format, 384 wide like tiny.en, 2 encoder layers."""
    from bicodec_plugin.testing import make_tiny_whisper

    return make_tiny_whisper(str(tmp_path_factory.mktemp("whisper")), width=384)
