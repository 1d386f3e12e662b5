"""Token extraction (``recipes/extract_tokens.py``) and the token store (``bicodec_plugin.downstream.token_store``).

Model-backed tests use the tiny release of ``BICODEC_SHARED`` (skipped without it, an error in CI).
To stay fast they share one extraction: the four golden clips, interrupted
after the first batch and then resumed.

Authors
 * BiCodec plugin authors 2026
"""

import json
import os
import pickle
import shutil
import sys
from unittest import mock

import numpy as np
import pytest
import soundfile
import torch
from conftest import CLIPS, ROOT, clip_path, golden

from bicodec_plugin.downstream.token_store import TokenStore, TokenWriter, write_embeddings
from bicodec_plugin.training.data import ManifestError, read_manifests

sys.path.insert(0, os.path.join(ROOT, "recipes"))
import extract_tokens  # noqa: I001  (recipes/ is not a package)

NO_ENV = {}  # no RANK/WORLD_SIZE, whatever runs pytest


def write_manifest(path, entries):
    """Writes ``[(index, wav_path, extra dict)]`` as JSON Lines; returns the path."""
    with open(path, "w", encoding="utf-8") as f:
        for index, wav_path, extra in entries:
            f.write(json.dumps({"index": index, "wav_path": wav_path, **extra}) + "\n")
    return str(path)


def golden_manifest(path, clips=CLIPS):
    """A manifest of golden clips with a ``text`` key and no durations."""
    return write_manifest(path, [(c, clip_path(c), {"text": f"text of {c}"}) for c in clips])


def chunk_stats(folder):
    """``{chunk file: (inode, mtime_ns)}``, to show files were not rewritten."""
    stats = {}
    for name in os.listdir(folder):
        if name.startswith("chunk-"):
            st = os.stat(os.path.join(folder, name))
            stats[name] = (st.st_ino, st.st_mtime_ns)
    return stats


def index_lines(folder):
    """All index lines of a store, from every ``index*.jsonl``."""
    lines = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("index") and name.endswith(".jsonl"):
            with open(os.path.join(folder, name)) as f:
                lines += [json.loads(line) for line in f if line.strip()]
    return lines


def assert_golden(store, clip):
    """Stored tokens of a clip are the reference tokens, as int64."""
    ref = golden(clip)
    glob_t, sem_t = store.get(clip)
    assert glob_t.dtype == sem_t.dtype == torch.long
    assert torch.equal(glob_t, ref["global_tokens"].flatten())
    assert torch.equal(sem_t, ref["semantic_tokens"][0])


@pytest.fixture(scope="module")
def resumed(tiny_tokenizer, tmp_path_factory):
    """Extracts the golden clips, interrupted (Ctrl-C) at the second batch, then resumed."""
    folder = tmp_path_factory.mktemp("resume")
    manifest = golden_manifest(folder / "clips.jsonl")
    out = str(folder / "tokens")
    real_tokenize = tiny_tokenizer.tokenize_prepared
    calls = []

    def interrupt_second_batch(items):
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_tokenize(items)

    # Longest first with 2 per batch: prompt_audio + LJ050-0131, then the spk clips.
    with mock.patch.object(tiny_tokenizer, "tokenize_prepared", side_effect=interrupt_second_batch):
        with pytest.raises(KeyboardInterrupt):
            extract_tokens.extract(
                tiny_tokenizer, manifest, out, max_batch=2, chunk_size=1, progress=False, env=NO_ENV
            )
    first_chunks, first_index = chunk_stats(out), index_lines(out)
    summary = extract_tokens.extract(tiny_tokenizer, manifest, out, chunk_size=1, env=NO_ENV)
    return {
        "manifest": manifest,
        "out": out,
        "first_chunks": first_chunks,
        "first_index": first_index,
        "summary": summary,
    }


@pytest.mark.slow
def test_golden_tokens(resumed, tiny_tokenizer):
    """Stored tokens equal the reference tokens and ``encode_file``; index lines keep the manifest."""
    store = TokenStore(resumed["out"])
    assert sorted(store.keys()) == sorted(CLIPS)
    for clip in CLIPS:
        assert_golden(store, clip)
        info = store.info(clip)
        assert info["text"] == f"text of {clip}"
        assert info["wav_path"] == os.path.normpath(clip_path(clip))
        assert info["num_semantic"] == golden(clip)["semantic_tokens"].shape[1]
        assert info["duration"] == pytest.approx(soundfile.info(clip_path(clip)).duration, abs=1e-3)
    glob_t, sem_t = tiny_tokenizer.encode_file(clip_path("spk2_snt1"))
    assert torch.equal(store.global_tokens("spk2_snt1"), glob_t[0])
    assert torch.equal(store.semantic_tokens("spk2_snt1"), sem_t[0])
    meta = store.meta
    assert meta["sample_rate"] == 16000 and meta["hop_length"] == 320 and meta["token_rate"] == 50
    assert meta["semantic_codebook_size"] == 64 and meta["global_codebook_size"] == 4096
    assert meta["global_token_num"] == 32 and meta["format_version"] == 1
    with pytest.raises(KeyError, match="not in the token store"):
        store.get("nope")


@pytest.mark.slow
def test_resume_redoes_nothing(resumed):
    """After the interruption the rerun stores only the missing clips, each once."""
    first = resumed["first_chunks"]
    assert sorted(line["index"] for line in resumed["first_index"]) == [
        "LJ050-0131",
        "prompt_audio",
    ]
    assert len(first) == 2
    now = chunk_stats(resumed["out"])
    assert {name: now[name] for name in first} == first  # same files, not rewritten
    assert len(now) == 4
    summary = resumed["summary"]
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 2, 0)
    indexes = [line["index"] for line in index_lines(resumed["out"])]
    assert sorted(indexes) == sorted(CLIPS)  # each exactly once
    assert not [n for n in os.listdir(resumed["out"]) if n.endswith(".tmp")]


def test_failures_are_listed(tiny_tokenizer, tmp_path):
    """Missing, corrupt, too short and untokenizable files go to failed.jsonl; the rest is stored."""
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x01junk, not audio" * 10)
    soundfile.write(tmp_path / "short.wav", np.full(100, 0.1), 16000)
    poison, _ = soundfile.read(clip_path("spk1_snt1"), frames=8000)
    soundfile.write(tmp_path / "poison.wav", poison, 16000)
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            ("spk1_snt1", clip_path("spk1_snt1"), {}),
            ("missing", "missing.wav", {}),
            ("corrupt", "corrupt.wav", {}),
            ("short", "short.wav", {}),
            ("poison", "poison.wav", {}),
            ("spk2_snt1", clip_path("spk2_snt1"), {}),
        ],
    )
    out = str(tmp_path / "tokens")
    real_tokenize = tiny_tokenizer.tokenize_prepared
    calls = []

    def fail_on_poison(items):
        calls.append(len(items))
        if any(wav.shape[0] == 8000 for wav, _ in items):
            raise RuntimeError("poisoned item")
        return real_tokenize(items)

    with mock.patch.object(tiny_tokenizer, "tokenize_prepared", side_effect=fail_on_poison):
        summary = extract_tokens.extract(tiny_tokenizer, manifest, out, env=NO_ENV)
    assert (summary["done"], summary["failed"]) == (2, 4)
    assert calls == [3, 1, 1, 1]  # the batch fails, then its items one by one
    store = TokenStore(out)
    assert sorted(store.keys()) == ["spk1_snt1", "spk2_snt1"]
    for clip in store.keys():
        assert_golden(store, clip)
    errors = {k: v["error"] for k, v in store.failed.items()}
    assert "missing.wav: no such audio file" in errors["missing"]
    assert "corrupt.wav: cannot read audio" in errors["corrupt"]
    assert "short.wav: shorter than one wav2vec2 frame" in errors["short"]
    assert errors["poison"] == "RuntimeError: poisoned item"
    assert store.failed["missing"]["wav_path"] == str(tmp_path / "missing.wav")

    # A rerun skips stored and failed items; --retry-failed tries the failures again.
    again = extract_tokens.extract(tiny_tokenizer, manifest, out, env=NO_ENV)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 6, 0)
    retry = extract_tokens.extract(tiny_tokenizer, manifest, out, retry_failed=True, env=NO_ENV)
    assert (retry["done"], retry["skipped"], retry["failed"]) == (1, 2, 3)
    store.reload()
    assert "poison" in store and sorted(store.failed) == ["corrupt", "missing", "short"]


def test_bad_manifest_writes_nothing(tiny_tokenizer, tmp_path):
    """A bad manifest line is a ManifestError naming file:line, before any output."""
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"index": "a", "wav_path": "a.wav", "duration": 1}\n{"index": \n')
    out = tmp_path / "tokens"
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2: invalid JSON"):
        extract_tokens.extract(tiny_tokenizer, str(manifest), str(out), env=NO_ENV)
    assert not out.exists()
    with pytest.raises(SystemExit):
        extract_tokens.parse_args(
            [
                "--manifest",
                "m",
                "--output",
                "o",
                "--release",
                "r",
                "--num-shards",
                "2",
                "--shard-id",
                "2",
            ]
        )


@pytest.mark.slow
def test_two_shards_equal_one_run(resumed, tiny_tokenizer, tmp_path):
    """``--num-shards 2`` run as shard 0 then shard 1 stores the same tokens as one run."""
    out = str(tmp_path / "tokens")
    summaries = [
        extract_tokens.extract(
            tiny_tokenizer, resumed["manifest"], out, shard_id=i, num_shards=2, env=NO_ENV
        )
        for i in (0, 1)
    ]
    assert [s["done"] for s in summaries] == [2, 2]
    per_rank = {}
    for name in ("index-r000.jsonl", "index-r001.jsonl"):
        with open(os.path.join(out, name)) as f:
            per_rank[name] = {json.loads(line)["index"] for line in f}
    assert not per_rank["index-r000.jsonl"] & per_rank["index-r001.jsonl"]
    one, two = TokenStore(resumed["out"]), TokenStore(out)
    assert sorted(two.keys()) == sorted(one.keys())
    for index in one.keys():
        assert torch.equal(two.global_tokens(index), one.global_tokens(index))
        assert torch.equal(two.semantic_tokens(index), one.semantic_tokens(index))
        assert two.info(index)["text"] == one.info(index)["text"]


@pytest.mark.slow
def test_store_is_lazy_and_feeds_speechbrain(resumed):
    """One read opens one chunk; the dynamic item works in a DynamicItemDataset and batches."""
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.dataio.dataset import DynamicItemDataset

    store = TokenStore(resumed["out"])
    assert len(store) == 4 and store.open_chunks == []
    store.semantic_tokens("spk1_snt1")
    assert store.open_chunks == [store.info("spk1_snt1")["chunk"]]

    dataset = DynamicItemDataset(read_manifests(resumed["manifest"], compute_duration=False))
    dataset.add_dynamic_item(store.dynamic_item())
    dataset.set_output_keys(["id", "text", "global_tokens", "semantic_tokens"])
    items = [dataset[i] for i in range(len(dataset))]
    for item in items:
        assert torch.equal(item["semantic_tokens"], golden(item["id"])["semantic_tokens"][0])
    batch = PaddedBatch(items[:2])
    assert batch.global_tokens.data.shape == (2, 32)
    assert batch.semantic_tokens.data.shape[1] == max(len(i["semantic_tokens"]) for i in items[:2])

    # store.dataset(): static keys from the index; the store survives pickling (workers).
    ds = store.dataset(output_keys=["id", "duration", "semantic_tokens"])
    assert len(ds) == 4 and set(ds[0]) == {"id", "duration", "semantic_tokens"}
    clone = pickle.loads(pickle.dumps(store))
    assert clone.open_chunks == [] and torch.equal(
        clone.global_tokens("spk1_snt1"), store.global_tokens("spk1_snt1")
    )


@pytest.mark.slow
def test_cli_resumes_and_prints_summary(resumed, tiny_tokenizer, tmp_path, monkeypatch, capsys):
    """``main`` on a complete store: nothing redone, one summary line."""
    out = str(tmp_path / "tokens")
    shutil.copytree(resumed["out"], out)
    monkeypatch.setattr(extract_tokens, "load_tokenizer", lambda *a, **k: tiny_tokenizer)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["--manifest", resumed["manifest"], "--output", out, "--release", "x", "--no-progress"]
    assert extract_tokens.main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("done 0 (0.000 h audio), skipped 4 already done, failed 0;")


def test_write_embeddings(tiny_tokenizer, tmp_path):
    """Embedding rows are what the decoder gets for each token id."""
    from safetensors.torch import load_file

    emb = load_file(write_embeddings(tiny_tokenizer, str(tmp_path)))
    codec = tiny_tokenizer.codec
    assert emb["semantic_codebook"].shape == (64, 8) and emb["global_codes"].shape == (4096, 6)
    ids = torch.tensor([[3, 0, 63]])
    with torch.no_grad():
        z_q = codec.quantizer.detokenize(ids)[0].t()  # (D, T) -> (T, D)
        g = codec.speaker_encoder.quantizer.indices_to_output(ids.unsqueeze(1))[0].t()
    assert torch.allclose(emb["semantic_embeddings"][ids[0]], z_q, atol=1e-6)
    assert torch.allclose(emb["global_embeddings"][ids[0]], g, atol=1e-6)


def test_writer_checks(tmp_path):
    """int16 range, duplicates, a truncated index line, and meta of another model."""
    folder = str(tmp_path)
    writer = TokenWriter(
        folder, rank=3, chunk_size=10, meta={"format_version": 1, "sample_rate": 16000}
    )
    with pytest.raises(ValueError, match="int16"):
        writer.add("a", torch.zeros(32, dtype=torch.long), torch.tensor([40000]))
    with pytest.raises(TypeError, match="integers"):
        writer.add("a", torch.zeros(32), torch.tensor([1]))
    writer.add("a", torch.zeros(32, dtype=torch.long), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="added twice"):
        writer.add("a", torch.zeros(32, dtype=torch.long), torch.tensor([1]))
    assert writer.done_indexes() == {"a"}
    writer.close()
    index_path = os.path.join(folder, "index-r003.jsonl")
    with open(index_path, "a") as f:
        f.write('{"index": "b", "chu')  # a writer killed mid-line
    assert TokenStore(folder).keys() == ["a"]
    with TokenWriter(folder, rank=3) as writer:
        writer.add("c", torch.ones(32, dtype=torch.long), torch.tensor([7]))
    store = TokenStore(folder)
    assert store.keys() == ["a", "c"]
    assert store.info("c")["chunk"] == "chunk-r003-000001.safetensors"  # chunk 0 kept
    with pytest.raises(ValueError, match="another model"):
        TokenWriter(folder, meta={"format_version": 1, "sample_rate": 24000})
