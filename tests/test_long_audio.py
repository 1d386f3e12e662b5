"""Long audio: windowed wav2vec2 keeps memory bounded and tokens close to exact."""

import pytest
import torch
from conftest import CLIPS, golden


def _long_signal(seconds):
    """The golden clips (already normalised) repeated to ``seconds`` of audio."""
    clips = torch.cat([golden(c)["wav"][0] for c in CLIPS])
    n = int(seconds * 16000)
    return clips.repeat(n // clips.shape[0] + 1)[:n]


@pytest.mark.slow
def test_windowed_features_match_on_the_frame_grid(tiny_tokenizer):
    """Windows start on the frame grid: with full context the features are exact."""
    ssl = tiny_tokenizer.codec.ssl
    wav = _long_signal(12)[None]
    with torch.no_grad():
        full = ssl(wav)
        windowed = ssl.forward_windowed(wav, window_seconds=4, context_seconds=12)
    assert windowed.shape == full.shape
    assert torch.allclose(windowed, full, atol=1e-4)


@pytest.mark.slow
def test_sixty_seconds_token_agreement(tiny_tokenizer):
    """60 s input: windowed tokens agree with the one-pass tokens (measured ~99%)."""
    codec = tiny_tokenizer.codec
    wav = _long_signal(60)[None]
    with torch.no_grad():
        windowed = codec.tokenize(wav)
        threshold = codec.ssl_window_threshold
        codec.ssl_window_threshold = None
        try:
            exact = codec.tokenize(wav)
        finally:
            codec.ssl_window_threshold = threshold
    assert torch.equal(windowed[0], exact[0])  # global tokens: first 6 s only
    assert windowed[1].shape == exact[1].shape == (1, 2999)
    agreement = float((windowed[1] == exact[1]).float().mean())
    print(f"60 s semantic token agreement, windowed vs one pass: {agreement:.4f}")
    assert agreement > 0.95


@pytest.mark.slow
def test_ten_minutes_without_full_attention(tiny_tokenizer):
    """A 10-minute input is tokenized while wav2vec2 never sees more than one window."""
    codec = tiny_tokenizer.codec
    seen = []
    hook = codec.ssl.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0].shape[-1] if args else 0),
        with_kwargs=True,
    )
    try:
        wav = _long_signal(600)
        glob, sem, lens = tiny_tokenizer.encode_batch(wav[None], normalize=False)
    finally:
        hook.remove()
    assert glob.shape == (1, 32) and int(lens[0]) == sem.shape[1] == 29999
    window = (codec.ssl_window_seconds + 2 * codec.ssl_context_seconds) * 16000 + 400
    assert len(seen) == 20 and max(seen) <= window
