"""Tests for the offline reconstruction metrics (CPU, a few seconds in all).

Tests that need the [eval] extra (pesq, pystoi) are skipped without it.

Authors
 * BiCodec plugin authors 2026
"""

import math
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import clip_path, require_module

from bicodec_plugin.evaluation import metrics

SNRS_DB = (10.0, 0.0)


def _read(name):
    path = clip_path(name)
    audio, sample_rate = soundfile.read(path, dtype="float64")
    return audio, sample_rate


def _add_noise(clean, snr_db, seed=0):
    """White noise scaled to exactly ``snr_db`` over the whole clip."""
    noise = np.random.default_rng(seed).standard_normal(len(clean))
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + noise


@pytest.fixture(scope="module")
def speech():
    return _read("spk1_snt1.wav")


@pytest.fixture(scope="module")
def speech_22k():
    return _read("LJ050-0131.wav")


# ---------------------------------------------------------------- torch-only metrics


def test_si_sdr_ideal_and_scale_invariant(speech):
    clean, _ = speech
    assert metrics.si_sdr(clean, clean) == math.inf
    # A pure gain is not a distortion.
    assert metrics.si_sdr(clean, 0.3 * clean) > 100
    assert math.isnan(metrics.si_sdr(np.zeros(100), np.ones(100)))


@pytest.mark.parametrize("snr_db", SNRS_DB)
def test_si_sdr_matches_added_snr(speech, snr_db):
    clean, _ = speech
    assert abs(metrics.si_sdr(clean, _add_noise(clean, snr_db)) - snr_db) < 0.5


def test_inputs_are_trimmed_and_converted(speech):
    clean, sample_rate = speech
    # Codec output is up to 399 samples short; torch and numpy mix freely.
    est = torch.from_numpy(clean[:-399]).float()
    assert metrics.si_sdr(clean, est) > 60
    assert metrics.mel_distance(torch.from_numpy(clean)[None], est, sample_rate) < 1e-3
    with pytest.raises(ValueError, match="1-D"):
        metrics.si_sdr(np.zeros((2, 100)), np.zeros(100))


def test_mel_distance_ideal_and_monotone(speech):
    clean, sample_rate = speech
    assert metrics.mel_distance(clean, clean, sample_rate) == 0.0
    distances = [
        metrics.mel_distance(clean, _add_noise(clean, snr), sample_rate) for snr in SNRS_DB
    ]
    assert 0 < distances[0] < distances[1]


def test_compute_all_names():
    ref = torch.sin(torch.linspace(0, 2000, 16000))
    out = metrics.compute_all(ref, ref, 16000, which=["mel_distance", "si_sdr"])
    assert list(out) == ["mel_distance", "si_sdr"]
    assert all(isinstance(v, float) for v in out.values())
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.compute_all(ref, ref, 16000, which=["mos"])


@pytest.mark.parametrize("module, func", [("pesq", "pesq_wb"), ("pystoi", "stoi")])
def test_missing_extra_names_the_install(monkeypatch, module, func):
    # A None entry in sys.modules makes ``import module`` fail.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install \.\[eval\]"):
        getattr(metrics, func)(np.zeros(8000), np.zeros(8000), 16000)


# ------------------------------------------------------------------- token statistics


def test_token_bitrate():
    assert metrics.token_bitrate(50, 8192) == 650.0
    assert metrics.token_bitrate(75, 1024, num_codebooks=8) == 6000.0


def test_codebook_usage_exact():
    usage = metrics.codebook_usage([0, 0, 0, 1], codebook_size=4)
    entropy = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert usage["used_codes"] == 2
    assert usage["usage_fraction"] == 0.5
    assert usage["entropy_bits"] == pytest.approx(entropy, abs=1e-12)
    assert usage["perplexity"] == pytest.approx(2**entropy, abs=1e-12)

    # Every code once: perplexity equals the codebook size.
    uniform = metrics.codebook_usage(torch.arange(16).reshape(4, 4), codebook_size=16)
    assert uniform == {
        "used_codes": 16,
        "usage_fraction": 1.0,
        "perplexity": 16.0,
        "entropy_bits": 4.0,
    }
    single = metrics.codebook_usage(np.full(10, 3), codebook_size=8)
    assert single["entropy_bits"] == 0.0 and single["perplexity"] == 1.0

    with pytest.raises(ValueError, match="lie in"):
        metrics.codebook_usage([0, 4], codebook_size=4)


# ------------------------------------------------------------ metrics from the extra


@pytest.fixture(scope="module")
def eval_extra():
    # Skips without the [eval] extra; importing pystoi (scipy.signal) takes ~2 s once.
    require_module("pesq", "pip install .[eval]")
    require_module("pystoi", "pip install .[eval]")


def test_pesq_stoi_ideal(speech, eval_extra):
    clean, sample_rate = speech
    assert metrics.stoi(clean, clean, sample_rate) == pytest.approx(1.0, abs=1e-6)
    assert metrics.pesq_nb(clean, clean, sample_rate) == pytest.approx(4.549, abs=0.01)
    assert metrics.pesq_wb(clean, clean, sample_rate) == pytest.approx(4.644, abs=0.01)


def test_every_metric_drops_with_noise(speech, eval_extra):
    clean, sample_rate = speech
    results = [metrics.compute_all(clean, clean, sample_rate)]
    results += [metrics.compute_all(clean, _add_noise(clean, s), sample_rate) for s in SNRS_DB]
    for name in ("si_sdr", "stoi", "pesq_nb", "pesq_wb"):
        values = [r[name] for r in results]
        assert values[0] > values[1] > values[2], (name, values)
    values = [r["mel_distance"] for r in results]
    assert values[0] < values[1] < values[2], values


def test_other_sample_rate(speech_22k, eval_extra):
    clean, sample_rate = speech_22k
    assert sample_rate == 22050
    ideal = metrics.compute_all(clean, clean[:-399], sample_rate)
    assert ideal["si_sdr"] > 60 and ideal["mel_distance"] < 1e-3
    assert ideal["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert ideal["pesq_nb"] == pytest.approx(4.549, abs=0.01)
    assert ideal["pesq_wb"] == pytest.approx(4.644, abs=0.01)

    noisy = metrics.compute_all(clean, _add_noise(clean, 10.0), sample_rate)
    assert abs(noisy["si_sdr"] - 10.0) < 0.5
    assert noisy["stoi"] < ideal["stoi"] and noisy["pesq_wb"] < ideal["pesq_wb"]
    # PESQ of the 22.05 kHz pair is PESQ of the pair resampled to 16 kHz.
    ref_16k = metrics.resample(clean, sample_rate, 16000)
    est_16k = metrics.resample(_add_noise(clean, 10.0), sample_rate, 16000)
    assert noisy["pesq_wb"] == pytest.approx(metrics.pesq_wb(ref_16k, est_16k, 16000))


def test_pesq_bad_input_is_nan_with_warning():
    require_module("pesq", "pip install .[eval]")
    with pytest.warns(RuntimeWarning, match="PESQ"):
        assert math.isnan(metrics.pesq_wb(np.zeros(16000), np.zeros(16000), 16000))
    short = np.random.default_rng(0).standard_normal(1600)  # 0.1 s < PESQ's 1/4 s
    with pytest.warns(RuntimeWarning, match="PESQ"):
        assert math.isnan(metrics.pesq_nb(short, short, 16000))
