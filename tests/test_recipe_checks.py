"""Every training hparam does what it says (``recipes/train.py`` and ``BiCodecBrain``).

* ``volume_normalize`` reaches the training data;
* gradient accumulation is refused with a clear error, never ignored;
* a training set smaller than one global batch stops with both numbers;
* a CPU run under torchrun picks gloo by itself;
* without the tensorboard package only that logger is switched off, with a warning.

Authors
 * BiCodec plugin authors 2026
"""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile
import torch
import train  # recipes/train.py (recipes/ is on sys.path, see conftest)

from bicodec_plugin.testing import make_tiny_wav2vec2
from bicodec_plugin.training.data import build_datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "hparams", "bicodec_tiny_wav2vec2.yaml")


def write_corpus(folder, count, seconds=1.5, amplitude=0.01):
    """``count`` quiet noise files and their manifest; returns the manifest path."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    lines = []
    for i in range(count):
        path = os.path.join(folder, f"u{i}.wav")
        soundfile.write(path, amplitude * rng.standard_normal(int(16000 * seconds)), 16000)
        lines.append(json.dumps({"index": f"u{i}", "wav_path": path}))
    manifest = os.path.join(folder, "train.jsonl")
    with open(manifest, "w", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    return manifest


def run_recipe(tmp_path, manifest, *extra):
    """Runs recipes/train.py on the tiny config; returns (exit code, output)."""
    w2v = make_tiny_wav2vec2(str(tmp_path / "w2v"))
    args = [
        sys.executable,
        os.path.join(ROOT, "recipes", "train.py"),
        TINY,
        "--ssl_source",
        w2v,
        "--train_manifest",
        manifest,
        "--output_folder",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--noprogressbar",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_volume_normalize_reaches_training_items(tmp_path):
    """A quiet file is normalised (peak raised) with volume_normalize, left as is without it."""
    manifest = write_corpus(str(tmp_path / "c"), 1, seconds=3.0, amplitude=0.005)
    peaks = {}
    for flag in (True, False):
        torch.manual_seed(0)
        train_set, _ = build_datasets(
            manifest, None, 16000, 320, highpass_cutoff=None, volume_normalize=flag
        )
        peaks[flag] = float(train_set[0]["wav"].abs().max())
    raw_peak = 0.005 * 5  # five standard deviations bound the raw noise
    assert peaks[False] < raw_peak
    assert peaks[True] > 4 * peaks[False]  # measured: 1.0 against 0.0237


def test_training_set_smaller_than_a_global_batch_is_refused(tmp_path):
    """4 utterances, batch_size 4, 2 processes: no step could run; both numbers are given."""
    train.check_train_set_size(range(8), 4, 2)  # exactly one global batch: fine
    with pytest.raises(SystemExit, match="4 utterances .* one global batch of 8"):
        train.check_train_set_size(range(4), 4, 2)
    manifest = write_corpus(str(tmp_path / "c"), 3)
    code, log = run_recipe(tmp_path, manifest, "--batch_size", "4")
    assert code != 0
    assert "the training set has 3 utterances" in log and "global batch of 4" in log, log[-2000:]


def test_gradient_accumulation_is_refused(tmp_path):
    """--grad_accumulation_factor 2 stops before training, naming the option."""
    manifest = write_corpus(str(tmp_path / "c"), 4)
    code, log = run_recipe(
        tmp_path, manifest, "--batch_size", "2", "--grad_accumulation_factor", "2"
    )
    assert code != 0
    assert "grad_accumulation_factor 2" in log and "does not accumulate" in log, log[-2000:]
    assert not os.path.isdir(tmp_path / "out" / "export")


def test_cpu_torchrun_picks_gloo(monkeypatch):
    """Under torchrun on the CPU the backend becomes gloo; on a GPU the choice stays."""
    from speechbrain.utils.run_opts import RunOptions

    opts = RunOptions.from_dictionary({"device": "cpu"})
    assert train.choose_backend(opts) is opts  # not under torchrun: untouched
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert train.choose_backend(opts).distributed_backend == "gloo"
    explicit = RunOptions.from_dictionary({"device": "cpu", "distributed_backend": "nccl"})
    assert train.choose_backend(explicit).distributed_backend == "gloo"
    gpu = RunOptions.from_dictionary({"device": "cuda:0"})
    assert train.choose_backend(gpu).distributed_backend == "nccl"


def test_missing_tensorboard_only_disables_that_logger(monkeypatch, caplog, tmp_path):
    """Without the package: a warning, no logger, nothing raised; with it: SpeechBrain's logger."""
    hparams = {"use_tensorboard": True, "tensorboard_folder": str(tmp_path / "tb")}
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with caplog.at_level("WARNING"):
        train.add_tensorboard(hparams)
    assert "tensorboard_train_logger" not in hparams
    assert "TensorBoard logging is off" in caplog.text
    monkeypatch.undo()
    pytest.importorskip("torch.utils.tensorboard")
    train.add_tensorboard(hparams)
    from speechbrain.utils.train_logger import TensorboardLogger

    assert isinstance(hparams["tensorboard_train_logger"], TensorboardLogger)
    hparams = {"use_tensorboard": False, "tensorboard_folder": None}
    train.add_tensorboard(hparams)
    assert "tensorboard_train_logger" not in hparams


def test_brain_logs_to_speechbrain_tensorboard_logger(tmp_path):
    """BiCodecBrain hands finite scalars to the recipe's TensorboardLogger."""
    from bicodec_plugin.training.brain import BiCodecBrain

    calls = []
    logger = types.SimpleNamespace(log_stats=lambda meta, **stats: calls.append((meta, stats)))
    brain = BiCodecBrain.__new__(BiCodecBrain)
    brain.hparams = types.SimpleNamespace(tensorboard_train_logger=logger)
    brain.optimizer_step = 7
    brain._tensorboard("train", {"mel": 1.5, "bad": float("nan"), "text": "x"})
    assert calls == [({"step": 7}, {"train_stats": {"mel": 1.5}})]
