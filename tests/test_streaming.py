"""Streaming detokenization: the stream equals the whole-sequence decode."""

import pytest
import torch
from conftest import golden

from bicodec_plugin.codec.streaming import StreamingDecoder


def _tokens(clip="prompt_audio"):
    ref = golden(clip)
    return ref["global_tokens"].reshape(1, -1), ref["semantic_tokens"]


def _pieces(total, seed):
    """Random piece sizes (1-12 tokens) that sum to ``total``, as an LLM loop would push."""
    gen = torch.Generator().manual_seed(seed)
    sizes, done = [], 0
    while done < total:
        size = min(int(torch.randint(1, 13, (1,), generator=gen)), total - done)
        sizes.append(size)
        done += size
    return sizes


def _run(stream, semantic, sizes):
    """Pushes the tokens in pieces; returns the chunks and the tokens received at each chunk."""
    chunks, received_at, start = [], [], 0
    for size in sizes:
        out = stream.push(semantic[:, start : start + size])
        start += size
        chunks += out
        received_at += [start] * len(out)
    tail = stream.finish()
    return chunks + tail, received_at + [start] * len(tail)


@pytest.mark.parametrize("mode", ["cached", "window"])
@pytest.mark.parametrize("chunk_frames", [10, 25, 50])
def test_stream_equals_decode(tiny_tokenizer, mode, chunk_frames):
    """Golden tokens pushed in random pieces: the chunks concatenate to ``decode`` exactly.

    Measured max |stream - decode| on the tiny release: 1.3e-7 or less, for
    samples of up to 0.16 in magnitude.
    """
    glob, sem = _tokens()
    whole = tiny_tokenizer.decode(glob, sem)
    stream = tiny_tokenizer.stream_decoder(glob, chunk_frames=chunk_frames, mode=mode)
    assert stream.lookahead == stream.exact_lookahead == 37  # the tiny prenet has 2 blocks
    chunks, _ = _run(stream, sem, _pieces(sem.shape[1], seed=chunk_frames))
    hop = tiny_tokenizer.hop_length
    assert all(c.shape == (1, chunk_frames * hop) for c in chunks[:-1])
    audio = torch.cat(chunks, dim=-1)
    assert audio.shape == whole.shape
    assert float((audio - whole).abs().max()) < 1e-6


@pytest.mark.parametrize("mode", ["cached", "window"])
def test_growing_chunk_schedule(tiny_tokenizer, mode):
    """``chunk_frames=(5, 10, 20)``: chunks of 5, 10, then 20 frames; still equal to ``decode``."""
    glob, sem = _tokens()
    total = sem.shape[1]
    whole = tiny_tokenizer.decode(glob, sem)
    stream = tiny_tokenizer.stream_decoder(glob, chunk_frames=(5, 10, 20), mode=mode)
    chunks, received_at = _run(stream, sem, _pieces(total, seed=3))
    frames = [c.shape[-1] // tiny_tokenizer.hop_length for c in chunks]
    expected = [5, 10] + [20] * ((total - 15) // 20)
    if sum(expected) < total:
        expected.append(total - sum(expected))
    assert frames == expected
    assert float((torch.cat(chunks, dim=-1) - whole).abs().max()) < 1e-6
    ends = torch.tensor(expected).cumsum(0).tolist()
    # no chunk comes out before its last token and the lookahead have arrived
    assert all(got >= min(end + stream.lookahead, total) for got, end in zip(received_at, ends))


def test_chunks_wait_for_exactly_the_lookahead(tiny_tokenizer):
    """One token at a time: each chunk comes out when its last token + lookahead have arrived."""
    glob, sem = _tokens("spk1_snt1")
    total = sem.shape[1]
    stream = tiny_tokenizer.stream_decoder(glob, chunk_frames=10)
    _, received_at = _run(stream, sem, [1] * total)
    ends = list(range(10, total, 10)) + [total]
    assert received_at == [min(end + stream.exact_lookahead, total) for end in ends]


def test_receptive_field_is_tight():
    """The derived context is exactly the decoder's dependency span (autograd, float64).

    The gradient of a chunk's last sample with respect to the latent frames is
    non-zero up to ``lookahead`` frames past the chunk and zero beyond; the
    same on the left for its first sample. Float64 keeps the far taps (products
    of many small random weights) from vanishing.
    """
    from bicodec_plugin.testing import tiny_codec

    torch.manual_seed(0)
    codec = tiny_codec(seed=0).eval().double()
    left, right = StreamingDecoder.receptive_field(codec)
    hop, frames, first, end = codec.hop_length, 120, 50, 60  # chunk = frames [50, 60)
    z_q = torch.randn(1, 32, frames, dtype=torch.float64, requires_grad=True)
    d_vector = torch.randn(1, 32, dtype=torch.float64)
    wav = codec.decode_latents(z_q, d_vector)[0, 0]
    (grad_last,) = torch.autograd.grad(wav[end * hop - 1], z_q, retain_graph=True)
    (grad_first,) = torch.autograd.grad(wav[first * hop], z_q)
    reach_last = grad_last.abs().sum(1)[0].nonzero().flatten()
    reach_first = grad_first.abs().sum(1)[0].nonzero().flatten()
    assert int(reach_last.max()) == end - 1 + right
    assert int(reach_first.min()) == first - left


@pytest.mark.parametrize("lookahead", [0, 10])
def test_too_little_lookahead_differs(tiny_tokenizer, lookahead):
    """Below the exact lookahead each chunk's tail is decoded as a prefix: detectably different.

    Measured max |stream - decode| on the golden clip (|decode| up to 0.16): 0.146
    (lookahead 0), 3.5e-2 (5), 5.8e-3 (10), then below 1e-6 from 18 on: the far
    taps of the tiny random model are products of many small weights and vanish
    in float32 (``test_receptive_field_is_tight`` shows that they exist). The
    exact lookahead (37) gives 1.3e-7. Cached and window modes give the same
    approximate stream (both decode the prefix received so far).
    """
    glob, sem = _tokens()
    whole = tiny_tokenizer.decode(glob, sem)
    audio = {}
    for mode in ("cached", "window"):
        stream = tiny_tokenizer.stream_decoder(
            glob, chunk_frames=25, lookahead=lookahead, mode=mode
        )
        chunks, _ = _run(stream, sem, [1] * sem.shape[1])
        audio[mode] = torch.cat(chunks, dim=-1)
    diff = float((audio["cached"] - whole).abs().max())
    print(f"lookahead {lookahead}: max |stream - decode| = {diff:.2e}")
    assert diff > 1e-3
    assert float((audio["cached"] - audio["window"]).abs().max()) < 1e-6


def test_batch_and_single_pieces(tiny_tokenizer):
    """A batch of two utterances streams like each alone; 1-D pieces work for B=1."""
    glob_a, sem_a = _tokens("spk1_snt1")
    glob_b, sem_b = _tokens("spk2_snt1")
    n = min(sem_a.shape[1], sem_b.shape[1])
    glob, sem = torch.cat([glob_a, glob_b]), torch.cat([sem_a[:, :n], sem_b[:, :n]])
    whole = tiny_tokenizer.decode(glob, sem)
    stream = tiny_tokenizer.stream_decoder(glob, chunk_frames=25)
    chunks, _ = _run(stream, sem, _pieces(n, seed=1))
    assert float((torch.cat(chunks, dim=-1) - whole).abs().max()) < 1e-6
    single = tiny_tokenizer.stream_decoder(glob_a[0], chunk_frames=25)
    out = list(single.stream(piece for piece in sem_a[0].split(7)))
    assert float((torch.cat(out, dim=-1) - tiny_tokenizer.decode(glob_a, sem_a)).abs().max()) < 1e-6


def test_bad_input(tiny_tokenizer):
    """Clear errors name the argument."""
    glob, sem = _tokens("spk1_snt1")
    for bad in (0, [], [10, 0], 2.5, True):
        with pytest.raises(ValueError, match="chunk_frames"):
            tiny_tokenizer.stream_decoder(glob, chunk_frames=bad)
    with pytest.raises(ValueError, match="lookahead"):
        tiny_tokenizer.stream_decoder(glob, lookahead=-1)
    with pytest.raises(ValueError, match="mode"):
        tiny_tokenizer.stream_decoder(glob, mode="fast")
    with pytest.raises(ValueError, match="32 global tokens"):
        tiny_tokenizer.stream_decoder(glob[:, :31])
    stream = tiny_tokenizer.stream_decoder(glob)
    with pytest.raises(TypeError, match="semantic_tokens"):
        stream.push(sem.float())
    with pytest.raises(ValueError, match="semantic_tokens"):
        stream.push(torch.cat([sem, sem])[:, :5])
    with pytest.raises(ValueError, match="semantic token ids"):
        stream.push(torch.full((1, 30), 10**6))
    stream = tiny_tokenizer.stream_decoder(glob)
    assert stream.push(sem[:, :0]) == [] and stream.finish() == []
    with pytest.raises(RuntimeError, match="finish"):
        stream.push(sem[:, :3])
