"""Bounded-memory inference paths compute exactly what the one-pass paths compute."""

import torch
from conftest import TINY_RELEASE, golden

from bicodec_plugin.codec.lobes.frontends import normalize_per_utterance
from bicodec_plugin.codec.lobes.layers import has_weight_norm


def test_lean_front_end_is_bit_identical(tiny_tokenizer):
    """Lean feature-encoder layers + three hooked layers == HF's layers with all hidden states."""
    ssl = tiny_tokenizer.codec.ssl
    layers = ssl.model.feature_extractor.conv_layers
    wav = golden("prompt_audio")["wav"]
    classes = [type(layer) for layer in layers]
    assert all(cls.__name__.startswith("LeanLayerNormConv") for cls in classes)
    with torch.no_grad():
        ours = ssl(wav)
        for layer, cls in zip(layers, classes):
            layer.__class__ = cls.__mro__[2]  # HF's own class
        ssl.keep_all_hidden_states = True
        try:
            reference = ssl(wav)
            hidden = ssl.model(normalize_per_utterance(wav), output_hidden_states=True)
        finally:
            ssl.keep_all_hidden_states = False
            for layer, cls in zip(layers, classes):
                layer.__class__ = cls
    assert torch.equal(ours, reference)
    states = hidden.hidden_states
    assert torch.equal(ours, ((states[11] + states[14] + states[16]) / 3).float())


def test_windowed_feature_pieces_are_close(tiny_tokenizer):
    """In windows the feature encoder runs on pieces: within 1e-5 of one pass (measured 1.3e-6)."""
    encoder = tiny_tokenizer.codec.ssl.model.feature_extractor
    x = normalize_per_utterance(golden("prompt_audio")["wav"])
    with torch.no_grad():
        whole = encoder(x)
        encoder.chunk_frames = 100
        try:
            pieces = encoder(x)
        finally:
            encoder.chunk_frames = None
    assert pieces.shape == whole.shape
    assert float((pieces - whole).abs().max()) < 1e-5


def test_nearest_code_search_in_blocks(tiny_tokenizer):
    """The code search in row blocks gives the one-block tokens."""
    quantizer = tiny_tokenizer.codec.quantizer
    torch.manual_seed(0)
    z = torch.randn(2, 32, 700)
    with torch.no_grad():
        whole = quantizer.tokenize(z)
        quantizer.search_rows = 128
        try:
            blocks = quantizer.tokenize(z)
        finally:
            quantizer.search_rows = 4096
    assert torch.equal(whole, blocks)


def test_mapped_weights_equal_copied_weights():
    """A release loaded with mapped weights tokenizes and decodes as one copied in.

    The wave generator keeps its weight norm until its first forward (a
    tokenize-only process never folds it) and is folded then.
    """
    from bicodec_plugin.inference import BiCodecTokenizer

    mapped = BiCodecTokenizer.from_release(TINY_RELEASE, run_opts={"device": "cpu"})
    copied = BiCodecTokenizer.from_release(
        TINY_RELEASE, run_opts={"device": "cpu"}, mmap_weights=False
    )
    decoder = mapped.codec.decoder
    assert any(has_weight_norm(m) for m in decoder.modules())
    assert not any(has_weight_norm(m) for m in mapped.codec.quantizer.modules())
    wav = golden("spk1_snt1")["wav"]
    tokens = mapped.encode_batch(wav, normalize=False)
    assert all(torch.equal(a, b) for a, b in zip(tokens, copied.encode_batch(wav, normalize=False)))
    assert any(has_weight_norm(m) for m in decoder.modules())  # tokenizing did not fold it
    out = mapped.decode(tokens[0], tokens[1])
    assert not any(has_weight_norm(m) for m in decoder.modules())
    assert torch.equal(out, copied.decode(tokens[0], tokens[1]))
