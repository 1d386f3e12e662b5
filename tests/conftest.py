"""Shared fixtures: the reference fixtures folder, tiny models built on the fly, markers.

The reference fixtures (tiny release, golden tensors and clips) live in ONE
folder, named by ``BICODEC_SHARED`` (default: ``../shared`` beside the
repository). Every test file takes the paths from here.

* A developer without that folder gets skips that say where it was looked for.
* CI sets ``BICODEC_REQUIRE_SHARED=1``: a missing folder is then an error of
  the whole run (nothing is skipped). It also sets ``BICODEC_REQUIRE_EXTRAS=1``:
  a missing optional package (eval scorers, piper, tensorboard) fails the tests
  that need it instead of skipping them (see :func:`require_module`).

Every test (and every module's fixtures) starts from the same random state
(``seeded_test``/``seeded_module``); tests that draw also seed themselves.

Tests that run over ~10 s are marked ``slow``; ``pytest tests -m "not slow"``
is the fast suite.
"""

import importlib
import os
import random
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("BICODEC_SHARED") or os.path.join(ROOT, "..", "shared"))
REQUIRE_SHARED = os.environ.get("BICODEC_REQUIRE_SHARED", "0") not in ("", "0")
REQUIRE_EXTRAS = os.environ.get("BICODEC_REQUIRE_EXTRAS", "0") not in ("", "0")
REFERENCE = os.path.join(SHARED, "reference")
TINY_RELEASE = os.path.join(REFERENCE, "tiny_release")
GOLDEN = os.path.join(REFERENCE, "golden")
GOLDEN_CLIPS = os.path.join(GOLDEN, "clips")
CLIPS = ["spk1_snt1", "spk2_snt1", "prompt_audio", "LJ050-0131"]
# Recipe modules (recipes/ is not a package) import as top-level modules in tests.
sys.path.insert(0, os.path.join(ROOT, "recipes"))


def shared_problem():
    """Why the reference fixtures cannot be used (``None`` when they can)."""
    for path in (TINY_RELEASE, GOLDEN_CLIPS):
        if not os.path.isdir(path):
            return (
                f"reference fixtures not found: {path} is missing (BICODEC_SHARED="
                f"{os.environ.get('BICODEC_SHARED', '<unset>')}, looked in {SHARED}); set "
                "BICODEC_SHARED to the folder that holds reference/"
            )
    return None


def require_shared():
    """Skips the calling test without the fixtures; fails it when CI requires them."""
    problem = shared_problem()
    if problem is None:
        return
    if REQUIRE_SHARED:
        pytest.fail(f"BICODEC_REQUIRE_SHARED is set and {problem}", pytrace=False)
    pytest.skip(problem)


def require_module(name, extra):
    """Imports an optional package: skip without it, or fail when CI requires extras.

    Arguments
    ---------
    name : str
        Module to import.
    extra : str
        What installs it (named in the message).

    Returns
    -------
    module
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        message = f"optional package {name!r} is missing ({err}); install it with {extra}"
        if REQUIRE_EXTRAS:
            pytest.fail(f"BICODEC_REQUIRE_EXTRAS is set and {message}", pytrace=False)
        pytest.skip(message)


def pytest_configure(config):
    """Registers the ``slow`` marker; stops a CI run whose fixtures are missing."""
    config.addinivalue_line(
        "markers", "slow: runs over ~10 s (deselect with -m 'not slow'; CI runs all)"
    )
    problem = shared_problem()
    if REQUIRE_SHARED and problem is not None:
        raise pytest.UsageError(f"BICODEC_REQUIRE_SHARED is set and {problem}")


def pytest_addoption(parser):
    """Adds SpeechBrain's ``--device`` option."""
    parser.addoption("--device", action="store", default="cpu")


@pytest.fixture
def device(request):
    """Device to run on (``--device``, default cpu)."""
    return request.config.getoption("--device")


def _seed_everything(seed=0):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope="module", autouse=True)
def seeded_module():
    """Module-scoped fixtures start from one random state (whatever ran before)."""
    _seed_everything()


@pytest.fixture(autouse=True)
def seeded_test():
    """Every test starts from one random state: what it draws (initialisations,
    inputs) does not depend on which tests ran before it or were selected."""
    _seed_everything()


@pytest.fixture(scope="session")
def reference_dir():
    """The ``reference`` folder of ``BICODEC_SHARED`` (skips/fails without it)."""
    require_shared()
    return REFERENCE


@pytest.fixture(scope="session")
def tiny_tokenizer(reference_dir):
    """The tiny release loaded through ``BiCodecTokenizer.from_release``."""
    from bicodec_plugin.inference import BiCodecTokenizer

    return BiCodecTokenizer.from_release(TINY_RELEASE, run_opts={"device": "cpu"})


def golden(clip):
    """Reference tensors of a clip."""
    from safetensors.torch import load_file

    require_shared()
    return load_file(os.path.join(GOLDEN, f"{clip}.safetensors"))


def clip_path(clip):
    """Path of a golden input clip (``clip`` without or with ``.wav``)."""
    require_shared()
    name = clip if clip.endswith(".wav") else f"{clip}.wav"
    return os.path.join(GOLDEN_CLIPS, name)


# ------------------------------------------------ quantiser references (float64)
def exact_vq_indices(z_e, codebook):
    """Cosine-nearest codeword of each frame of ``z_e`` (B, D, T), in float64."""
    enc = torch.nn.functional.normalize(z_e.double().transpose(1, 2), dim=-1)
    words = torch.nn.functional.normalize(codebook.double(), dim=-1)
    return (enc @ words.t()).argmax(-1)


def exact_fsq_indices(z, levels):
    """FSQ index of each vector of ``z`` (..., d) in float64, from the definition:
    bound (tanh, half-level offset for even L, eps 1e-3), round, little-endian digits."""
    z = z.double()
    levels = torch.tensor(levels, dtype=torch.float64)
    half_l = (levels - 1) * (1 + 1e-3) / 2
    offset = torch.where(levels % 2 == 0, 0.5, 0.0).double()
    bounded = torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset
    digits = bounded.round() + torch.div(levels, 2, rounding_mode="floor")
    basis = torch.cumprod(torch.cat([torch.ones(1).double(), levels[:-1]]), 0)
    return (digits * basis).sum(-1).round().long()


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
