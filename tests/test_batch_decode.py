"""Batched detokenization: a padded batch decodes in one call, each item as if alone."""

import torch
from conftest import CLIPS, golden


def test_padded_batch_equals_items_alone(tiny_tokenizer):
    """Golden tokens of four lengths: one codec call, waveforms equal the single decodes.

    Measured max difference 1.5e-7 on the tiny release (float rounding of the
    convolutions on other lengths); the padding past each item stays zero.
    """
    items = [golden(c) for c in CLIPS]
    glob = torch.cat([ref["global_tokens"].reshape(1, -1) for ref in items])
    lens = torch.tensor([ref["semantic_tokens"].shape[1] for ref in items])
    sem = torch.zeros(len(items), int(lens.max()), dtype=torch.long)
    for i, ref in enumerate(items):
        sem[i, : lens[i]] = ref["semantic_tokens"][0]
    calls = []
    hook = tiny_tokenizer.codec.decoder.register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0])
    )
    tiny_tokenizer.micro_batch = len(items)  # everything at once, as on a GPU
    try:
        wavs, wav_lens = tiny_tokenizer.decode_batch(glob, sem, lens)
    finally:
        tiny_tokenizer.micro_batch = None  # back to the device default
        hook.remove()
    assert calls == [len(items)]
    hop = tiny_tokenizer.hop_length
    assert torch.equal(wav_lens, lens * hop)
    for i in range(len(items)):
        alone = tiny_tokenizer.decode(glob[i : i + 1], sem[i : i + 1, : lens[i]])[0]
        n = int(lens[i]) * hop
        assert float((wavs[i, :n] - alone).abs().max()) < 1e-6
        assert not wavs[i, n:].any()


def test_masked_generator_matches_unpadded():
    """The wave generator's length mask: both layouts (1-D and channels-last) agree."""
    from bicodec_plugin.testing import tiny_codec

    codec = tiny_codec(seed=0).eval()
    gen = codec.decoder
    torch.manual_seed(0)
    x = torch.randn(2, 32, 30)
    lengths = torch.tensor([30, 17])
    with torch.no_grad():
        batch = gen(x, lengths=lengths)
        alone = gen(x[1:, :, :17])
        gen.channels_last_inference = False
        batch_1d = gen(x, lengths=lengths)
    hop = gen.hop_length
    assert float((batch[1, :, : 17 * hop] - alone[0]).abs().max()) < 1e-6
    assert float((batch_1d - batch).abs().max()) < 1e-5
