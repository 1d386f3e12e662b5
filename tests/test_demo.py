"""The demo's measure of whether the global tokens carry the voice (``recipes/demo.py``)."""

import pytest
import torch

from bicodec_plugin.testing import tiny_codec

demo = pytest.importorskip("demo")  # recipes/ is on sys.path (conftest)


class _TokensByPath:
    """Stands in for a tokenizer: each path maps to fixed global tokens."""

    def __init__(self, codec, tokens):
        self.codec = codec
        self.tokens = tokens

    def encode_file(self, path):
        return self.tokens[path].reshape(1, 1, -1), torch.zeros(1, 5, dtype=torch.long)


def _clips(tokens_per_voice, seed=0):
    """Clips of two voices whose tokens are a voice pattern with a few random changes."""
    gen = torch.Generator().manual_seed(seed)
    tokens, clips = {}, []
    for voice, pattern in tokens_per_voice.items():
        for num in range(5):
            noisy = pattern.clone()
            where = torch.randint(0, 32, (6,), generator=gen)
            noisy[where] = torch.randint(0, 4096, (6,), generator=gen)
            path = f"{voice}_{num}.wav"
            tokens[path] = noisy
            clips.append({"path": path, "speaker": voice})
    return tokens, clips


def test_voice_identification_counts_nearest_neighbours():
    """Two voices with distinct token patterns: every clip's nearest neighbour shares its voice."""
    codec = tiny_codec(seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    patterns = {v: torch.randint(0, 4096, (32,), generator=gen) for v in ("low", "high")}
    tokens, clips = _clips(patterns)
    result = demo.voice_identification(_TokensByPath(codec, tokens), clips)
    assert result["clips"] == 10
    assert result["correct_by_tokens"] == result["correct_by_codes"] == 10
    assert result["differing_between_voices"] > result["differing_within_voice"]
    # the mean counts are those of the token pairs themselves
    same = [
        float((tokens[a["path"]] != tokens[b["path"]]).sum())
        for i, a in enumerate(clips)
        for b in clips[i + 1 :]
        if a["speaker"] == b["speaker"]
    ]
    assert result["differing_within_voice"] == pytest.approx(sum(same) / len(same))


def test_voice_identification_at_chance_without_voice_information():
    """One shared pattern for both voices: the score drops to about chance, not 10 of 10."""
    codec = tiny_codec(seed=0).eval()
    pattern = torch.randint(0, 4096, (32,), generator=torch.Generator().manual_seed(2))
    tokens, clips = _clips({"low": pattern, "high": pattern}, seed=5)
    result = demo.voice_identification(_TokensByPath(codec, tokens), clips)
    assert result["correct_by_tokens"] < 10 and result["correct_by_codes"] < 10
