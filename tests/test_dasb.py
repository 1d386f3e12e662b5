"""BiCodec behind DASB's tokenizer contract (tiny release, CPU; ``--device cuda`` adds a GPU check).

The calls are the ones DASB makes: its extractor's ``sig_to_tokens(x,
x_lengths, num_codebooks=...)`` on a padded batch, then SpeechBrain's
``undo_padding`` crop of each item; Tokotron's silence-token probe and
silence padding of the targets; ``tokens_to_sig(tokens, **yaml_kwargs)``;
``get_pretrained_embeddings(vocab_size, num_codebooks)`` and the
``vocabulary`` attribute; ``tokenizer.to(device)`` / ``tokenizer.device = ...``.
"""

import pytest
import soundfile
import torch
import torchaudio
from conftest import TINY_RELEASE, clip_path
from speechbrain.dataio.dataio import clean_padding_, read_audio
from speechbrain.utils.data_utils import undo_padding

from bicodec_plugin.downstream.dasb import BiCodecDASBTokenizer
from bicodec_plugin.inference import BiCodecTokenizer
from bicodec_plugin.testing import tiny_codec

CLIPS = ["spk1_snt1", "spk2_snt1", "prompt_audio", "LJ050-0131"]
# Tokotron pads every target with ceil(gate_offset) silence frames,
# gate_offset = ln(max_weight / gamma - 1) / beta = ln(99) / 0.2 = 22.98.
TOKOTRON_SILENCE_FRAMES = 23


def read_clip(clip):
    """A clip as DASB's extractor reads it: SpeechBrain's read_audio, torchaudio resampling."""
    wav = read_audio(clip_path(clip))
    rate = soundfile.info(clip_path(clip)).samplerate
    return torchaudio.functional.resample(wav, rate, 16000) if rate != 16000 else wav


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, two threads of tiny ops mostly wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dasb(tiny_tokenizer):
    """The tiny release behind the DASB contract, default layout (K = 33)."""
    return BiCodecDASBTokenizer(tiny_tokenizer)


@pytest.fixture(scope="module")
def wide():
    """A random tiny codec shaped like the release's vocabulary: 8192 semantic codes, 4096
    global codes, so C = 8192 and global codebooks can receive ids >= 4096."""
    from bicodec_plugin.arch import build_codec
    from bicodec_plugin.testing import TINY_ARCH

    torch.manual_seed(3)
    codec = build_codec({**TINY_ARCH, "codebook_size": 8192}).eval()
    inner = BiCodecTokenizer(
        modules={"codec": codec},
        hparams={"codec": codec, "volume_normalize": True},
        run_opts={"device": "cpu"},
    )
    return BiCodecDASBTokenizer(inner)


@pytest.fixture(scope="module")
def batch():
    """A padded batch of 8 utterances as DASB's extractor builds it (4 clips, whole and cut)."""
    generator = torch.Generator().manual_seed(0)
    wavs = []
    for clip in CLIPS:
        wav = read_clip(clip)
        cut = int(wav.shape[0] * (0.3 + 0.6 * torch.rand(1, generator=generator).item()))
        wavs += [wav, wav[:cut]]
    return (wavs, *pad(wavs))


def pad(wavs):
    """Zero-padded (B, T) batch and relative lengths, as SpeechBrain's PaddedBatch makes them."""
    n = max(w.shape[0] for w in wavs)
    x = torch.zeros(len(wavs), n)
    for i, w in enumerate(wavs):
        x[i, : w.shape[0]] = w
    return x, torch.tensor([w.shape[0] / n for w in wavs])


@pytest.fixture(scope="module")
def extracted(dasb, tiny_tokenizer, batch):
    """DASB's extraction of the batch, and each utterance tokenized alone."""
    wavs, x, rel = batch
    tokens = dasb.sig_to_tokens(x, rel, num_codebooks=None)
    crops = [torch.tensor(c) for c in undo_padding(tokens, rel)]
    alone = [tiny_tokenizer.encode_batch(w[None]) for w in wavs]
    return tokens, crops, [(g[0], s[0]) for g, s, _ in alone]


def test_extraction_keeps_each_speaker(dasb, extracted):
    """Every row of every cropped item holds that item's own 32 global tokens."""
    tokens, crops, alone = extracted
    assert tokens.shape[-1] == 33 and tokens.dtype == torch.long
    for crop, (glob, _) in zip(crops, alone):
        assert torch.equal(crop[:, 1:], glob.expand(crop.shape[0], -1))
        glob_split, _, _ = dasb.split_tokens(crop[None])
        assert torch.equal(glob_split[0], glob)


def test_extraction_crop_semantic(extracted):
    """The crop holds the item's semantic tokens; DASB's rounding may keep one frame more or less.

    Measured on this batch of 8 (crop length - true length): [0, 1, 0, 0, 0, 0, 0, 1].
    """
    _, crops, alone = extracted
    diffs = []
    for crop, (_, semantic) in zip(crops, alone):
        n = min(crop.shape[0], semantic.shape[0])
        assert torch.equal(crop[:n, 0], semantic[:n])
        diff = crop.shape[0] - semantic.shape[0]
        if diff > 0:  # a padding frame repeats the last semantic token
            assert torch.all(crop[n:, 0] == semantic[-1])
        diffs.append(diff)
    assert all(abs(d) <= 1 for d in diffs), diffs
    assert diffs.count(0) >= 6, diffs


def test_extraction_one_per_batch_is_exact(dasb, tiny_tokenizer):
    """Batch size 1 (the yaml default): the stored tokens are exactly the tokenizer's."""
    glob, semantic = tiny_tokenizer.encode_file(clip_path("spk1_snt1"))
    wav = read_clip("spk1_snt1")[None]
    tokens = dasb.sig_to_tokens(wav, torch.ones(1), num_codebooks=33)
    crop = torch.tensor(undo_padding(tokens, torch.ones(1))[0])
    assert torch.equal(crop[:, 0], semantic[0])
    assert torch.equal(crop[:, 1:], glob.expand(crop.shape[0], -1))


def test_decode_from_tokens_alone(dasb, tiny_tokenizer, extracted):
    """tokens_to_sig of each stored item equals BiCodecTokenizer.decode of its global + semantic tokens."""
    _, crops, alone = extracted
    for crop, (glob, _) in zip(crops, alone):
        audio = dasb.tokens_to_sig(crop[None])
        assert audio.shape == (1, dasb.hop_length * crop.shape[0])
        assert torch.equal(audio, tiny_tokenizer.decode(glob[None], crop[None, :, 0]))


def test_decode_padded_batch(dasb, tiny_tokenizer, extracted, batch):
    """A padded batch decodes item by item: with lengths, padding frames neither vote nor sound."""
    tokens, _, alone = extracted
    n = tokens.shape[1]
    lens = torch.tensor([s.shape[0] for _, s in alone])
    rel = lens / n
    audio = dasb.tokens_to_sig(tokens, lengths=rel)
    assert audio.shape == (len(alone), dasb.hop_length * n)
    # Padding frames that claim another speaker change nothing.
    scrambled = tokens.clone()
    generator = torch.Generator().manual_seed(1)
    for i, length in enumerate(lens.tolist()):
        scrambled[i, length:, 1:] = torch.randint(
            0, dasb.vocab_size, (n - length, 32), generator=generator
        )
    assert torch.equal(dasb.tokens_to_sig(scrambled, length=rel), audio)
    for i, (glob, semantic) in enumerate(alone):
        expected = tiny_tokenizer.decode(glob[None], semantic[None])[0]
        assert torch.equal(audio[i, : expected.shape[0]], expected)
        assert not audio[i, expected.shape[0] :].any()
    # Without lengths every frame counts: (B, hop * N), each row its own speaker.
    full = dasb.tokens_to_sig(tokens)
    for i, (glob, _) in enumerate(alone):
        assert torch.equal(full[i], tiny_tokenizer.decode(glob[None], tokens[i : i + 1, :, 0])[0])


def test_no_state_between_calls(dasb, extracted):
    """A call in between (e.g. Tokotron's silence probe) does not change what a batch decodes to."""
    tokens, crops, _ = extracted
    first = dasb.tokens_to_sig(crops[0][None])
    dasb.sig_to_tokens(torch.zeros(1, 100000), torch.ones(1), num_codebooks=33)
    dasb.tokens_to_sig(tokens[3:])
    assert torch.equal(dasb.tokens_to_sig(crops[0][None]), first)
    assert not any(name.startswith("last_") for name in vars(dasb))


def test_silence_padded_targets_keep_the_speaker(dasb, tiny_tokenizer, extracted):
    """Tokotron's probe (mode over the tokens of 100000 zeros) pads targets with a silence
    frame whose global codebooks hold the silence's speaker; the vote keeps the utterance's."""
    _, crops, alone = extracted
    probe = dasb.sig_to_tokens(torch.zeros(1, 100000), torch.ones(1), num_codebooks=33)
    silence = probe.squeeze(0).mode(0).values
    assert silence.shape == (33,)
    crop, (glob, _) = crops[1], alone[1]  # the shortest item
    assert crop.shape[0] > TOKOTRON_SILENCE_FRAMES
    assert not torch.equal(silence[1:], glob)  # the padding claims another speaker
    padded = torch.cat([crop, silence.expand(TOKOTRON_SILENCE_FRAMES, -1)])
    voted, semantic, _ = dasb.split_tokens(padded[None])
    assert torch.equal(voted[0], glob)
    audio = dasb.tokens_to_sig(padded[None])
    assert torch.equal(audio, tiny_tokenizer.decode(glob[None], semantic))


@pytest.mark.parametrize("model", ["dasb", "wide"])
def test_generated_ids_always_decode(model, request):
    """Any id in [0, C) in any codebook gives finite audio of hop * N samples (the tiny release:
    C = 4096 = global size > 64 semantic; the wide model: C = 8192 > 4096 global)."""
    dasb = request.getfixturevalue(model)
    generator = torch.Generator().manual_seed(2)
    cases = [
        torch.randint(0, dasb.vocab_size, (3, 40, 33), generator=generator),
        torch.full((1, 7, 33), dasb.vocab_size - 1),
        torch.zeros(2, 1, 33, dtype=torch.long),
    ]
    for tokens in cases:
        audio = dasb.tokens_to_sig(tokens)
        assert audio.shape == (tokens.shape[0], dasb.hop_length * tokens.shape[1])
        assert torch.isfinite(audio).all()
    tokens = cases[0]
    if model == "dasb":  # semantic ids past the 64 codes fold (id mod 64)
        folded = tokens.clone()
        folded[..., 0] %= dasb.semantic_size
        assert torch.equal(dasb.tokens_to_sig(tokens), dasb.tokens_to_sig(folded))
    else:  # global ids >= 4096 abstain where a position has an in-range vote, else fold
        voted, _, _ = dasb.split_tokens(tokens)
        for b in range(tokens.shape[0]):
            for p in range(32):
                frames = tokens[b, :, 1 + p]
                assert voted[b, p] in frames[frames < dasb.global_size]
        voted, _, _ = dasb.split_tokens(cases[1])
        assert (voted == (dasb.vocab_size - 1) % dasb.global_size).all()


def test_vote_rules(wide):
    """Majority per position; in-range ids beat any number of out-of-range ones; ties go to the
    earliest frame; a position with only out-of-range ids takes them folded (id mod 4096)."""
    dasb = wide
    assert (dasb.vocab_size, dasb.global_size) == (8192, 4096)
    size = dasb.global_size
    tokens = torch.zeros(1, 5, 33, dtype=torch.long)
    tokens[0, :, 1] = torch.tensor([7, 9, 9, 7, 9])  # majority: 9
    tokens[0, :, 2] = torch.tensor([size + 5, size + 5, size + 5, 11, size + 6])  # in range: 11
    tokens[0, :, 3] = torch.tensor([3, 4, 4, 3, 5])  # tie 3 / 4: 3 comes first
    tokens[0, :, 4] = torch.tensor([size + 1, size + 2, size + 2, size + 1, size + 2])  # folded 2
    tokens[0, :, 5:] = torch.arange(28)  # unanimous
    glob, _, _ = dasb.split_tokens(tokens)
    assert glob[0, :4].tolist() == [9, 11, 3, 2]
    assert torch.equal(glob[0, 4:], torch.arange(28))
    # With lengths, only the first two frames vote: 7 and 9 tie, 7 is first.
    glob, _, lens = dasb.split_tokens(tokens, lengths=torch.tensor([0.4]))
    assert glob[0, 0] == 7 and lens.tolist() == [2]


def test_bad_tokens_are_refused(dasb):
    """Ids outside [0, C), float tokens and a missing semantic codebook get clear errors."""
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        dasb.tokens_to_sig(torch.full((1, 3, 33), dasb.vocab_size))
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        dasb.tokens_to_sig(torch.full((1, 3, 33), -1))
    with pytest.raises(TypeError, match="integers"):
        dasb.tokens_to_sig(torch.zeros(1, 3, 33))
    with pytest.raises(ValueError, match="semantic codebook 0"):
        dasb.tokens_to_sig(torch.zeros(1, 3, 2, dtype=torch.long), num_codebooks=[1, 2])
    with pytest.raises(ValueError, match="fixed speaker"):
        dasb.tokens_to_sig(torch.zeros(1, 3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="not both"):
        dasb.tokens_to_sig(
            torch.zeros(1, 3, 33, dtype=torch.long), lengths=torch.ones(1), length=torch.ones(1)
        )


def test_num_codebooks(dasb, extracted, batch):
    """None, an int (first n) or a list of indices, in sig_to_tokens, tokens_to_sig and embeddings."""
    tokens, _, _ = extracted
    x, rel = pad(batch[0][2:4])
    first5 = dasb.sig_to_tokens(x, rel, num_codebooks=5)
    assert torch.equal(first5, dasb.sig_to_tokens(x, rel)[..., :5])
    assert torch.equal(dasb.sig_to_tokens(x, rel, num_codebooks=[3, 0]), first5[..., [3, 0]])
    order = [0, *range(32, 0, -1)]  # semantic first, global codebooks reversed
    reordered = tokens[:2][..., order]
    assert torch.equal(
        dasb.tokens_to_sig(reordered, num_codebooks=order), dasb.tokens_to_sig(tokens[:2])
    )
    emb = dasb.get_pretrained_embeddings(None, [0, 5])
    assert torch.equal(emb.view(2, dasb.vocab_size, -1), dasb.vocabulary[[0, 5]])
    for bad in (0, 34, True, [0, 0], [40], "2", 1.5):
        with pytest.raises(ValueError, match="num_codebooks"):
            dasb.get_pretrained_embeddings(num_codebooks=bad)


def test_pretrained_embeddings(dasb, tiny_tokenizer, extracted):
    """(K * C, H) = the vocabulary (K, C, H); semantic rows are the projected codewords,
    the 32 global rows of an utterance sum to its d-vector."""
    codec = tiny_tokenizer.codec
    emb = dasb.get_pretrained_embeddings(vocab_size=dasb.vocab_size, num_codebooks=33)
    vocabulary = dasb.vocabulary
    assert vocabulary.shape == (33, dasb.vocab_size, 32)
    assert torch.equal(emb, vocabulary.reshape(-1, 32))
    ids = torch.arange(dasb.semantic_size)
    expected = codec.quantizer.detokenize(ids[None])[0].T
    assert torch.allclose(vocabulary[0, : dasb.semantic_size], expected, atol=1e-6)
    # Ids past the semantic codebook embed as the id decoding uses (folded).
    assert torch.equal(
        vocabulary[0, dasb.semantic_size : 2 * dasb.semantic_size],
        vocabulary[0, : dasb.semantic_size],
    )
    _, _, alone = extracted
    for glob, _ in alone[:3]:
        share = vocabulary[torch.arange(1, 33), glob].sum(0)
        # Measured max abs difference 1.2e-07 (float32 sums, d-vectors of size ~1).
        assert torch.allclose(share, codec.speaker_vector(glob[None])[0], atol=1e-5)
    with pytest.raises(ValueError, match="C = 4096"):
        dasb.get_pretrained_embeddings(vocab_size=8192)


def test_pretrained_embeddings_release_shape(wide):
    """C = 8192: global ids >= 4096 embed as their folded id; every semantic id has its own row."""
    vocabulary = wide.vocabulary
    assert vocabulary.shape == (33, 8192, 32)
    assert torch.equal(vocabulary[1:, 4096:], vocabulary[1:, :4096])
    ids = torch.arange(8192)
    expected = wide.codec.quantizer.detokenize(ids[None])[0].T
    assert torch.allclose(vocabulary[0], expected, atol=1e-6)


def test_fixed_speaker_semantic_only(tiny_tokenizer, dasb, extracted):
    """K = 1 with a fixed speaker (32 ids or a reference wav) decodes the semantic stream alone."""
    _, crops, alone = extracted
    glob, _ = tiny_tokenizer.encode_file(clip_path("spk2_snt1"))
    by_ids = BiCodecDASBTokenizer(tiny_tokenizer, num_codebooks=1, speaker=glob[0].tolist())
    by_wav = BiCodecDASBTokenizer(tiny_tokenizer, num_codebooks=1, speaker=clip_path("spk2_snt1"))
    assert torch.equal(by_wav.speaker_tokens, glob[0])
    assert by_ids.num_codebooks == 1 and by_ids.vocabulary.shape == (1, by_ids.vocab_size, 32)
    semantic = crops[0][None, :, :1]
    audio = by_ids.tokens_to_sig(semantic)
    assert torch.equal(audio, tiny_tokenizer.decode(glob, crops[0][None, :, 0]))
    assert torch.equal(by_wav.tokens_to_sig(semantic[..., 0]), audio)
    # The speaker in the tokens, when present, wins over the fixed one.
    assert torch.equal(
        by_ids.tokens_to_sig(crops[0][None], num_codebooks=33), dasb.tokens_to_sig(crops[0][None])
    )
    wav = read_clip("spk1_snt1")[None]
    assert by_ids.sig_to_tokens(wav).shape[-1] == 1
    with pytest.raises(ValueError, match="32 integer"):
        BiCodecDASBTokenizer(tiny_tokenizer, speaker=[1, 2, 3])


def test_cycled_layout(tiny_tokenizer, dasb, extracted, batch):
    """global_codebooks=4 (K = 5): each global codebook cycles through 8 positions."""
    _, _, alone = extracted
    small = BiCodecDASBTokenizer(tiny_tokenizer, global_codebooks=4)
    x, rel = pad(batch[0][:2])
    tokens = small.sig_to_tokens(x, rel)
    assert tokens.shape[-1] == 5 and small.vocabulary.shape == (5, small.vocab_size, 32)
    for i, crop in enumerate(undo_padding(tokens, rel)):
        crop = torch.tensor(crop)
        glob, _, _ = small.split_tokens(crop[None])
        assert torch.equal(glob[0], alone[i][0])
        assert crop[3, 2] == alone[i][0][8 + 3]  # codebook 2 at frame 3: position 8 + 3
    assert torch.equal(small.tokens_to_sig(tokens), dasb.tokens_to_sig(dasb.sig_to_tokens(x, rel)))
    # Fewer than 8 frames: the positions no frame carries take the all-zero FSQ code.
    short = small.pack(alone[0][0][None], alone[0][1][None, :3])
    glob, _, _ = small.split_tokens(short)
    assert torch.equal(glob[0, :3], alone[0][0][:3]) and torch.equal(
        glob[0, 8:11], alone[0][0][8:11]
    )
    assert (glob[0, 3:8] == small.neutral_global_id).all()
    fsq = tiny_tokenizer.codec.speaker_encoder.quantizer.layers[0]
    assert not fsq.indices_to_codes(torch.tensor([small.neutral_global_id])).any()
    assert torch.isfinite(small.tokens_to_sig(short)).all()
    with pytest.raises(ValueError, match="divide"):
        BiCodecDASBTokenizer(tiny_tokenizer, global_codebooks=5)


def test_outputs_are_ordinary_tensors(dasb, extracted):
    """DASB edits the outputs in place (clean_padding_), outside any inference mode."""
    tokens, _, _ = extracted
    out = dasb.sig_to_tokens(read_clip("spk2_snt1")[None])
    clean_padding_(out, torch.ones(1))
    audio = dasb.tokens_to_sig(tokens[:2])
    clean_padding_(audio, torch.tensor([1.0, 0.5]))
    assert not audio[1, audio.shape[1] // 2 :].any()


def test_frozen_and_eval(dasb):
    """train() keeps eval mode; nothing requires grad (no DDP wrap in a Brain)."""
    dasb.train()
    assert not dasb.training and not dasb.tokenizer.training
    assert not any(p.requires_grad for p in dasb.parameters())
    assert dasb.sample_rate == 16000 and dasb.hop_length == 320


def test_device_follows_moves():
    """.to(), a parent module's .to() (Brain's modules) and ``device = ...`` keep weights,
    the fixed speaker and ``device`` together (meta device: no GPU needed)."""
    codec = tiny_codec(seed=0)
    inner = BiCodecTokenizer(
        modules={"codec": codec},
        hparams={"codec": codec, "volume_normalize": True},
        run_opts={"device": "cpu"},
    )
    tok = BiCodecDASBTokenizer(inner, speaker=list(range(32)))
    assert tok.to("cpu") is tok and tok.device == "cpu"
    torch.nn.ModuleDict({"tokenizer": tok}).to("meta")
    assert tok.device == "meta" and tok.tokenizer.device_type == "meta"
    assert next(tok.parameters()).device.type == "meta" and tok.speaker_tokens.device.type == "meta"


def test_device_round_trip(device, tiny_tokenizer):
    """On an accelerator (``--device cuda``): move, decode, move back; same tokens, close audio."""
    if not device.startswith("cuda"):
        pytest.skip("needs --device cuda")
    tok = BiCodecDASBTokenizer(
        BiCodecTokenizer.from_release(TINY_RELEASE, run_opts={"device": "cpu"})
    )
    wav = read_clip("spk1_snt1")[None]
    tokens_cpu = tok.sig_to_tokens(wav)
    audio_cpu = tok.tokens_to_sig(tokens_cpu)
    tok.device = device
    assert tok.device.startswith("cuda") and next(tok.parameters()).is_cuda
    tokens = tok.sig_to_tokens(wav.to(device))
    assert tokens.is_cuda and torch.equal(tokens.cpu(), tokens_cpu)
    audio = tok.tokens_to_sig(tokens)
    assert audio.is_cuda and audio.shape == audio_cpu.shape
    assert torch.allclose(audio.cpu(), audio_cpu, atol=1e-3)
    assert tok.get_pretrained_embeddings().is_cuda
    tok.cpu()
    assert tok.device == "cpu" and torch.equal(tok.tokens_to_sig(tokens_cpu), audio_cpu)


def test_yaml_construction(tmp_path):
    """The tokenizer block of recipes/dasb's yaml: a release folder and options, nothing else."""
    from hyperpyyaml import load_hyperpyyaml

    text = f"""
source: {TINY_RELEASE}
speaker: [{", ".join(str(i) for i in range(32))}]
tokenizer: !new:bicodec_plugin.downstream.dasb.BiCodecDASBTokenizer
    source: !ref <source>
    global_codebooks: 32
    num_codebooks: 1
    speaker: !ref <speaker>
"""
    tok = load_hyperpyyaml(text)["tokenizer"]
    assert tok.num_codebooks == 1 and tok.speaker_tokens.tolist() == list(range(32))
    with pytest.raises(ValueError, match="neither a release folder"):
        BiCodecDASBTokenizer(str(tmp_path))


def test_check_tokens_script(dasb, batch, extracted):
    """recipes/dasb/check_tokens.py passes a faithful store and flags a corrupted one."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "check_tokens", f"{ROOT}/recipes/dasb/check_tokens.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wavs = batch[0]
    _, crops, _ = extracted
    exact = module.check_utterance(dasb, crops[0], wavs[0])
    assert exact["semantic_equal"] and exact["global_equal"] and exact["decode_equal"]
    longer = module.check_utterance(dasb, crops[1], wavs[1])  # the crop kept one frame more
    assert longer["frames"][0] == longer["frames"][1] + 1
    assert not longer["semantic_equal"] and longer["global_equal"] and longer["decode_equal"]
    corrupted = crops[0].clone()
    corrupted[:, 1] = (corrupted[:, 1] + 1) % dasb.global_size  # another speaker, every frame
    bad = module.check_utterance(dasb, corrupted, wavs[0])
    assert bad["semantic_equal"] and not bad["global_equal"] and not bad["decode_equal"]
