"""Tests of manifests, per-item pipelines and manifest preparation (CPU, fast).

Authors
 * BiCodec plugin authors 2026
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import ROOT, clip_path

from bicodec_plugin.codec.audio import AudioLoadError, resample, ssl_num_frames
from bicodec_plugin.training.data import (
    ManifestError,
    build_datasets,
    check_ssl_alignment,
    load_utterance,
    read_manifests,
    train_example,
    valid_example,
)

KEYS = ["id", "wav", "ref_wav", "ssl_wav", "ssl_drop_frames", "num_frames"]


def write_wav(path, seconds, sample_rate=16000, seed=0):
    """Writes low-level noise (a stand-in for speech) and returns the path."""
    rng = np.random.default_rng(seed)
    soundfile.write(path, 0.1 * rng.standard_normal(int(seconds * sample_rate)), sample_rate)
    return str(path)


def write_manifest(path, entries):
    """Writes dicts (or raw strings) one per line and returns the path."""
    with open(path, "w", encoding="utf-8") as f:
        lines = (e if isinstance(e, str) else json.dumps(e) for e in entries)
        f.writelines(line + "\n" for line in lines)
    return str(path)


def one_item_datasets(tmp_path, seconds, sample_rate=16000, hop=320, **kwargs):
    """Train and valid sets over one generated file of ``seconds`` seconds."""
    write_wav(tmp_path / "a.wav", seconds, sample_rate)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"index": "a", "wav_path": "a.wav"}])
    return build_datasets(manifest, manifest, sample_rate, hop, **kwargs)


def ramp(num_samples):
    """1, 2, ..., N: every sample is its own position + 1, so crops reveal their origin."""
    return torch.arange(1, num_samples + 1, dtype=torch.float32)


# Manifests ------------------------------------------------------------------


def test_manifest_relative_paths_extra_keys_and_duration(tmp_path):
    write_wav(tmp_path / "x.wav", 1.5)
    folder = tmp_path / "lists"
    folder.mkdir()
    path = write_manifest(
        folder / "train.jsonl",
        ["", {"index": "x", "wav_path": "../x.wav", "text": "hi"}, "   "],
    )
    data = read_manifests(path)
    assert list(data) == ["x"]
    assert data["x"]["wav_path"] == str(tmp_path / "x.wav")
    assert data["x"]["text"] == "hi"
    assert data["x"]["duration"] == pytest.approx(1.5)
    assert "duration" not in read_manifests(path, compute_duration=False)["x"]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"index": "a", "wav_path": ', "invalid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"wav_path": "a.wav"}', "'index'"),
        ('{"index": "", "wav_path": "a.wav"}', "'index'"),
        ('{"index": "a"}', "'wav_path'"),
        ('{"index": "a", "id": "a", "wav_path": "a.wav"}', "'id'"),
        ('{"index": "a", "wav_path": "a.wav", "duration": "long"}', "'duration'"),
    ],
)
def test_manifest_bad_line_names_file_and_line(tmp_path, line, message):
    good = json.dumps({"index": "ok", "wav_path": "ok.wav", "duration": 1.0})
    path = write_manifest(tmp_path / "m.jsonl", [good, "", line])
    with pytest.raises(ManifestError, match=message) as err:
        read_manifests(path)
    assert str(err.value).startswith(f"{path}:3:")


def test_manifest_duplicate_index_across_files(tmp_path):
    entry = {"index": "a", "wav_path": "a.wav", "duration": 1.0}
    first = write_manifest(tmp_path / "one.jsonl", [entry])
    second = write_manifest(tmp_path / "two.jsonl", [{**entry, "index": "b"}, entry])
    with pytest.raises(ManifestError, match="duplicate index") as err:
        read_manifests([first, second])
    assert str(err.value).startswith(f"{second}:2:")
    assert f"{first}:1" in str(err.value)


def test_manifest_require_keys_and_unreadable_audio(tmp_path):
    path = write_manifest(tmp_path / "m.jsonl", [{"index": "a", "wav_path": "a.wav"}])
    with pytest.raises(ManifestError, match="'text'") as err:
        read_manifests(path, require_keys=("text",), compute_duration=False)
    assert str(err.value).startswith(f"{path}:1:")
    with pytest.raises(ManifestError, match="a.wav") as err:
        read_manifests(path)  # duration needed, file missing
    assert str(err.value).startswith(f"{path}:1:")


# Training items -------------------------------------------------------------


@pytest.mark.parametrize(
    "sample_rate, hop, wav_len, ref_len", [(16000, 320, 38400, 96000), (24000, 480, 57600, 144000)]
)
def test_train_item_shapes(tmp_path, sample_rate, hop, wav_len, ref_len):
    train_set, _ = one_item_datasets(tmp_path, 7.3, sample_rate, hop)
    item = train_set[0]
    assert list(item) == KEYS
    assert item["wav"].shape == (wav_len,)
    assert item["ref_wav"].shape == (ref_len,)
    # 2.4 s at 16 kHz plus 1 s of context per side.
    assert item["ssl_wav"].shape == (38400 + 2 * 16000,)
    assert (item["ssl_drop_frames"], item["num_frames"]) == (50, 120)
    assert all(t.dtype == torch.float32 for t in (item["wav"], item["ref_wav"], item["ssl_wav"]))


def test_ssl_window_yields_enough_frames():
    item = train_example(
        torch.randn(16000 * 5, generator=torch.Generator().manual_seed(5)), 16000, 320
    )
    frames = ssl_num_frames(item["ssl_wav"].shape[0])
    assert frames >= item["num_frames"] + item["ssl_drop_frames"]
    # Without the right context the last target frame would be missing.
    assert ssl_num_frames(16000 + 38400) - 50 < 120


@pytest.mark.parametrize("hop", [320, 480])
def test_segment_starts_at_any_sample(hop):
    """SparkVox draws the target's start uniformly over every sample, not on the hop grid."""
    sample_rate = 50 * hop
    wav = ramp(sample_rate * 5)
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(20):
        item = train_example(wav, sample_rate, hop, generator=generator)
        start = int(item["wav"][0]) - 1
        assert start == item["start"] and 0 <= start <= wav.shape[0] - item["wav"].shape[0]
        assert torch.equal(item["wav"], wav[start : start + item["wav"].shape[0]])
        starts.add(start)
    assert len(starts) > 1  # actually random
    assert any(start % hop for start in starts)  # not rounded to the hop


def test_reference_hides_target_of_long_utterance():
    # 5.2 s > 2 x 2.4 s: masked; < 6 s: tiled, so every crop holds the mask.
    wav = ramp(int(16000 * 5.2))
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        item = train_example(wav, 16000, 320, generator=generator)
        ref = item["ref_wav"]
        target = set(item["wav"].tolist())
        assert not target & set(ref.tolist())
        # Period 5.2 s, mask 2.4 s: any 6 s crop of the tiled signal holds 2.4 s of it.
        assert (ref == 0).sum() >= 38400


def test_short_utterance_is_padded_and_tiled():
    """SparkVox pads a short utterance to the target length and tiles the padded
    waveform (silence gaps included) into the speaker clip."""
    wav = ramp(16000 * 2)  # shorter than the 2.4 s target and the 6 s reference
    item = train_example(wav, 16000, 320, generator=torch.Generator().manual_seed(2))
    assert item["start"] == 0
    assert torch.equal(item["wav"][:32000], wav) and not item["wav"][32000:].any()
    ref = item["ref_wav"]
    assert ref.shape == (96000,)
    tiled = item["wav"].repeat(96000 // 38400 + 1)  # 1 + 96000 // 38400 copies
    crops = [s for s in range(tiled.shape[0] - 96000 + 1) if ref[0] == tiled[s]]
    assert any(torch.equal(ref, tiled[s : s + 96000]) for s in crops)
    assert (ref == 0).sum() >= 6400  # at least one whole silence gap


def test_ssl_window_centre_is_target_at_16k(tmp_path):
    train_set, _ = one_item_datasets(tmp_path, 4.0)
    for _ in range(3):
        item = train_set[0]
        assert torch.equal(item["ssl_wav"][16000 : 16000 + 38400], item["wav"])


def test_ssl_window_context_is_zero_padded_at_edges():
    wav = ramp(16000 * 3)
    item = train_example(wav, 16000, 320, generator=torch.Generator().manual_seed(3))
    ssl, start = item["ssl_wav"], item["start"]
    expected = torch.cat([torch.zeros(16000), wav, torch.zeros(16000)])
    assert torch.equal(ssl, expected[start : start + ssl.shape[0]])


def test_ssl_window_alignment_at_24k():
    rng = np.random.default_rng(4)
    wav = torch.from_numpy(0.1 * rng.standard_normal(24000 * 6)).float()
    item = train_example(wav, 24000, 480, generator=torch.Generator().manual_seed(4))
    alone = torch.from_numpy(resample(item["wav"].double().numpy(), 24000, 16000)).float()
    centre = item["ssl_wav"][16000 : 16000 + 38400]
    assert alone.shape == centre.shape
    # Away from the edges, where resampling the crop alone lacks context.
    error = (centre - alone)[2000:-2000].abs().max() / alone.abs().max()
    assert error < 1e-3


@pytest.mark.parametrize("hop", [320, 480])
def test_whole_utterance_input_puts_the_target_on_its_frames(hop):
    """ssl_context None: the 16 kHz input is the whole utterance (+80 zeros, so the last
    hop has a frame), the target starts on a hop, and its frames start at ssl_drop_frames."""
    sample_rate = 50 * hop
    wav = ramp(sample_rate * 5)
    generator = torch.Generator().manual_seed(5)
    starts = set()
    for _ in range(20):
        item = train_example(wav, sample_rate, hop, ssl_context=None, generator=generator)
        start, frames = item["start"], item["num_frames"]
        assert start % hop == 0 and item["ssl_drop_frames"] == start // hop
        assert torch.equal(item["wav"], wav[start : start + frames * hop])
        whole = resample(wav.double().numpy(), sample_rate, 16000)
        assert item["ssl_wav"].shape[0] == whole.shape[0] + 80
        assert ssl_num_frames(item["ssl_wav"].shape[0]) == wav.shape[0] // hop
        # The target's 16 kHz samples sit at 320 * ssl_drop_frames.
        first = 320 * item["ssl_drop_frames"]
        got = item["ssl_wav"][first : first + 320 * frames].double().numpy()
        error = np.abs(got - whole[first : first + 320 * frames]).max() / np.abs(whole).max()
        assert error < 1e-6  # float32 storage of the same samples
        starts.add(start)
    assert len(starts) > 5
    short = train_example(ramp(sample_rate), sample_rate, hop, ssl_context=None)
    assert short["start"] == 0 and short["ssl_drop_frames"] == 0
    assert ssl_num_frames(short["ssl_wav"].shape[0]) >= short["num_frames"]


def test_hop_must_match_ssl_frames():
    with pytest.raises(ValueError, match="20 ms"):
        check_ssl_alignment(16000, 256)
    with pytest.raises(ValueError, match="ssl_context"):
        check_ssl_alignment(16000, 320, ssl_context=0.01)
    check_ssl_alignment(16000, 320, ssl_context=None)  # whole utterances


# Validation items and loading ----------------------------------------------


def test_valid_item_from_speech_clip(tmp_path):
    path = clip_path("prompt_audio")  # 9.95 s at 16 kHz
    manifest = write_manifest(tmp_path / "v.jsonl", [{"index": "p", "wav_path": path}])
    _, valid_set = build_datasets(manifest, manifest, 16000, 320)
    item = valid_set[0]
    assert item["wav"].shape == (9 * 16000,)
    assert torch.equal(item["ref_wav"], item["wav"][:96000])  # first 6 s, no mask
    assert torch.equal(item["ssl_wav"], item["wav"])  # same span, no context
    assert (item["ssl_drop_frames"], item["num_frames"]) == (0, 450)


def test_valid_item_limits_and_short_reference():
    long = valid_example(
        torch.randn(24000 * 13, generator=torch.Generator().manual_seed(6)), 24000, 480
    )
    assert long["wav"].shape == (12 * 24000,) and long["ssl_wav"].shape == (12 * 16000,)
    short = valid_example(ramp(16000 * 2 + 640), 16000, 320)
    assert short["wav"].shape == (32000,) and short["num_frames"] == 100
    assert torch.equal(short["ref_wav"][:32640], ramp(32640))
    assert torch.equal(short["ref_wav"][32640:65280], ramp(32640))  # tiled
    tiny = valid_example(ramp(3840), 16000, 320)  # under a second: kept whole
    assert tiny["wav"].shape == (3840,) and tiny["num_frames"] == 12


def test_load_trims_to_four_hops_and_high_passes(tmp_path):
    path = write_wav(tmp_path / "a.wav", 1.0, 24000)
    assert load_utterance(path, 24000, 480).shape == (23040,)  # 12 x 4 hops
    soundfile.write(tmp_path / "dc.wav", soundfile.read(path)[0] + 0.3, 24000)
    filtered = load_utterance(str(tmp_path / "dc.wav"), 24000, 480)
    assert abs(float(filtered[-8000:].mean())) < 0.01  # the DC offset is gone
    unfiltered = load_utterance(str(tmp_path / "dc.wav"), 24000, 480, highpass_cutoff=None)
    assert float(unfiltered.mean()) > 0.1


def test_load_errors_name_the_file(tmp_path):
    short = write_wav(tmp_path / "short.wav", 0.05)
    with pytest.raises(AudioLoadError, match="short.wav"):
        load_utterance(short, 16000, 320)
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"index": "gone", "wav_path": "gone.wav", "duration": 3.0}]
    )
    # Refused up front, naming the manifest line, though its duration is given.
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: no such audio file .*gone\.wav"):
        build_datasets(manifest, None, 16000, 320)


def test_min_duration_filters(tmp_path):
    write_wav(tmp_path / "a.wav", 0.05)
    write_wav(tmp_path / "b.wav", 3.0)
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"index": "a", "wav_path": "a.wav"}, {"index": "b", "wav_path": "b.wav"}],
    )
    train_set, _ = build_datasets(manifest, None, 16000, 320, min_duration=0.5)
    assert len(train_set) == 1 and train_set[0]["id"] == "b"


def test_dataloader_batches(tmp_path):
    from speechbrain.dataio.dataloader import make_dataloader

    write_wav(tmp_path / "a.wav", 3.1, seed=1)
    write_wav(tmp_path / "b.wav", 1.1, seed=2)
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"index": "a", "wav_path": "a.wav"}, {"index": "b", "wav_path": "b.wav"}],
    )
    train_set, valid_set = build_datasets(manifest, manifest, 16000, 320)
    batch = next(iter(make_dataloader(train_set, batch_size=2)))
    assert batch.id == ["a", "b"]
    assert batch.wav.data.shape == (2, 38400)
    assert batch.ref_wav.data.shape == (2, 96000)
    assert batch.ssl_wav.data.shape == (2, 70400)
    assert batch.num_frames.tolist() == [120, 120]
    assert batch.ssl_drop_frames.tolist() == [50, 50]
    batch = next(iter(make_dataloader(valid_set, batch_size=2)))
    assert batch.wav.data.shape == (2, 48000)  # padded to the 3 s item
    assert batch.wav.lengths.tolist() == pytest.approx([1.0, 1 / 3])


# Manifest preparation -------------------------------------------------------


def read_lines(path):
    """Lines of a text file."""
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def load_prepare_module():
    """Imports recipes/prepare_manifest.py (recipes is not a package)."""
    path = os.path.join(ROOT, "recipes", "prepare_manifest.py")
    spec = importlib.util.spec_from_file_location("prepare_manifest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_manifest(tmp_path, caplog):
    prepare = load_prepare_module()
    audio = tmp_path / "corpus"
    (audio / "spk" / "ch").mkdir(parents=True)
    write_wav(audio / "a.wav", 1.0)
    (audio / "a.txt").write_text("Hello\n world \n", encoding="utf-8")
    write_wav(audio / "spk" / "ch" / "spk-ch-0001.wav", 0.5)
    soundfile.write(audio / "spk" / "ch" / "spk-ch-0002.flac", np.zeros(8000), 16000)
    (audio / "spk" / "ch" / "spk-ch.trans.txt").write_text(
        "spk-ch-0001 FIRST ONE\nspk-ch-0002 SECOND\n", encoding="utf-8"
    )
    (audio / "broken.wav").write_bytes(b"not audio at all")
    (audio / "notes.md").write_text("ignored")

    with caplog.at_level(logging.WARNING):
        train, valid = prepare.prepare_manifest(audio, audio, valid_count=1, seed=3)
    assert "broken.wav" in caplog.text
    entries = [json.loads(line) for path in (train, valid) for line in read_lines(path)]
    by_index = {entry["index"]: entry for entry in entries}
    assert sorted(by_index) == ["a", "spk_ch_spk-ch-0001", "spk_ch_spk-ch-0002"]
    assert by_index["a"]["text"] == "Hello world"
    assert by_index["spk_ch_spk-ch-0001"]["text"] == "FIRST ONE"
    assert by_index["spk_ch_spk-ch-0002"]["wav_path"] == "spk/ch/spk-ch-0002.flac"
    assert by_index["a"]["duration"] == pytest.approx(1.0)
    assert len(read_lines(valid)) == 1
    # The manifests read back, and the split repeats with the seed.
    assert len(read_manifests([train, valid], require_keys=("text",))) == 3
    first_valid = read_lines(valid)[0]
    outside = tmp_path / "lists"
    _, again = prepare.prepare_manifest(audio, outside, valid_count=1, seed=3, text_from=None)
    again_entry = json.loads(read_lines(again)[0])
    assert again_entry["index"] == json.loads(first_valid)["index"]
    assert os.path.isabs(again_entry["wav_path"]) and "text" not in again_entry


@pytest.mark.slow
def test_prepare_manifest_cli_help():
    script = os.path.join(ROOT, "recipes", "prepare_manifest.py")
    result = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, check=True
    )
    assert "--valid-count" in result.stdout
