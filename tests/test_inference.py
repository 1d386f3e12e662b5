"""The inference interface: batching, token strings and bad input."""

import numpy as np
import pytest
import soundfile
import torch
from conftest import CLIPS, clip_path, exact_fsq_indices, exact_vq_indices, golden

from bicodec_plugin.codec.audio import AudioLoadError
from bicodec_plugin.inference import llm_string_to_tokens, tokens_to_llm_string


def test_properties(tiny_tokenizer):
    """Rates of the tiny release."""
    assert tiny_tokenizer.sample_rate == 16000
    assert tiny_tokenizer.token_rate == 50
    assert tiny_tokenizer.hop_length == 320


@pytest.mark.slow
@pytest.mark.parametrize("micro_batch", [100, 1, 3])
def test_batch_equals_single_and_reference(tiny_tokenizer, micro_batch):
    """A padded batch of the four clips gives each clip's reference tokens,
    all at once (padding + masks: 100) or in micro-batches."""
    wavs = [golden(c)["wav"][0] for c in CLIPS]
    n = max(len(w) for w in wavs)
    batch = torch.zeros(len(wavs), n)
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    rel = torch.tensor([len(w) / n for w in wavs])
    tiny_tokenizer.micro_batch = micro_batch
    try:
        glob, sem, lens = tiny_tokenizer.encode_batch(batch, rel, normalize=False)
    finally:
        tiny_tokenizer.micro_batch = None
    assert glob.shape == (4, 32) and sem.shape[0] == 4
    for i, clip in enumerate(CLIPS):
        ref = golden(clip)
        assert torch.equal(glob[i], ref["global_tokens"].flatten())
        assert int(lens[i]) == ref["semantic_tokens"].shape[1]
        assert torch.equal(sem[i, : lens[i]], ref["semantic_tokens"][0])
        assert int(sem[i, lens[i] :].abs().sum()) == 0


class DetokenizeSpy:
    """Calls ``codec.detokenize`` and records the batch size of each call."""

    def __init__(self, codec):
        self.detokenize = codec.detokenize
        self.batch_sizes = []

    def __call__(self, global_tokens, semantic_tokens, semantic_lens=None):
        self.batch_sizes.append(int(semantic_tokens.shape[0]))
        return self.detokenize(global_tokens, semantic_tokens, semantic_lens)


# Max abs difference between an item decoded in a batch and alone: measured
# 1.2e-7..1.5e-7 (equal lengths, batch of 4; unequal lengths, one masked batch of 4).
# Decoding a short item with its padding gives 0.17.
BATCH_DECODE_MAX_ABS = 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("lengths", ["equal", "unequal"])
def test_decode_batch_equals_single(tiny_tokenizer, monkeypatch, lengths):
    """A padded batch decoded with ``micro_batch`` covering every item equals
    each item decoded alone; audio past an item's end is zero.

    equal: the four clips' tokens cut to the shortest clip, one batch of 4.
    unequal: spk1, spk2, spk1 cut to spk2's length and spk2's voice on spk1's
    content, padded to spk1's length: one batch of 4, the padding masked.
    """
    refs = {c: golden(c) for c in CLIPS}
    sem = {c: r["semantic_tokens"][0] for c, r in refs.items()}
    glob = {c: r["global_tokens"].flatten() for c, r in refs.items()}
    if lengths == "equal":
        t = min(s.shape[0] for s in sem.values())
        items = [(glob[c], sem[c][:t]) for c in CLIPS]
        expected_calls = [4]
    else:
        t_short = sem["spk2_snt1"].shape[0]
        items = [
            (glob["spk1_snt1"], sem["spk1_snt1"]),
            (glob["spk2_snt1"], sem["spk2_snt1"]),
            (glob["spk1_snt1"], sem["spk1_snt1"][:t_short]),
            (glob["spk2_snt1"], sem["spk1_snt1"]),
        ]
        expected_calls = [4]
    lens = torch.tensor([s.shape[0] for _, s in items])
    batch_sem = torch.zeros(len(items), int(lens.max()), dtype=torch.long)
    for i, (_, s) in enumerate(items):
        batch_sem[i, : s.shape[0]] = s
    batch_glob = torch.stack([g for g, _ in items])

    spy = DetokenizeSpy(tiny_tokenizer.codec)
    monkeypatch.setattr(tiny_tokenizer.codec, "detokenize", spy)
    tiny_tokenizer.micro_batch = len(items)
    try:
        wavs, wav_lens = tiny_tokenizer.decode_batch(batch_glob, batch_sem, lens)
    finally:
        tiny_tokenizer.micro_batch = None
    assert spy.batch_sizes == expected_calls  # the batch really ran
    assert wavs.shape == (len(items), tiny_tokenizer.hop_length * int(lens.max()))
    spy.batch_sizes.clear()
    for i, (g, s) in enumerate(items):
        alone = tiny_tokenizer.decode(g[None], s[None])[0]
        assert int(wav_lens[i]) == alone.shape[0] == tiny_tokenizer.hop_length * s.shape[0]
        err = float((wavs[i, : wav_lens[i]] - alone).abs().max())
        print(f"decode batch ({lengths}) item {i}: max abs {err:.2e} from alone")
        assert err < BATCH_DECODE_MAX_ABS, (i, err)
        assert int((wavs[i, wav_lens[i] :] != 0).sum()) == 0
    assert spy.batch_sizes == [1] * len(items)


# Max abs difference of convert_voice against decode(B's global, A's semantic):
# measured 0.0. Decoding A with its own global tokens (5 of 32 differ from B's in
# the tiny random model) differs by 0.018 max abs (the peak is 0.16).
VOICE_CONVERSION_MAX_ABS = 1e-6
VOICE_MIN_DIFFERENCE = 0.005


@pytest.mark.slow
def test_voice_conversion(tiny_tokenizer):
    """convert_voice(A, B) is decode(B's global tokens, A's semantic tokens)."""
    a, b = golden("spk1_snt1"), golden("spk2_snt1")
    wav = tiny_tokenizer.convert_voice(clip_path("spk1_snt1"), clip_path("spk2_snt1"))
    expected = tiny_tokenizer.decode(b["global_tokens"].reshape(1, -1), a["semantic_tokens"])
    own_voice = tiny_tokenizer.decode(a["global_tokens"].reshape(1, -1), a["semantic_tokens"])
    assert wav.shape == expected.shape == (1, 320 * a["semantic_tokens"].shape[1])
    err = float((wav - expected).abs().max())
    assert err < VOICE_CONVERSION_MAX_ABS, err
    # The speaker tokens matter: A's own voice is far from the conversion.
    difference = float((own_voice - expected).abs().max())
    print(f"voice conversion: max abs {err:.2e} from expected, {difference:.3f} from A's own voice")
    assert difference > VOICE_MIN_DIFFERENCE


def test_llm_strings_roundtrip():
    """Tokens -> Spark-TTS LLM string -> tokens."""
    glob = torch.arange(32) * 100
    sem = torch.tensor([0, 8191, 5])
    text = tokens_to_llm_string(glob, sem)
    assert text.startswith("<|bicodec_global_0|><|bicodec_global_100|>")
    assert text.endswith("<|bicodec_semantic_8191|><|bicodec_semantic_5|>")
    g, s = llm_string_to_tokens("<|start_global_token|>" + text + "<|im_end|>")
    assert torch.equal(g[0], glob) and torch.equal(s[0], sem)


def test_unreadable_file(tiny_tokenizer, tmp_path):
    """Missing and corrupt files: errors naming the file."""
    with pytest.raises(AudioLoadError, match="nope.wav: no such audio file"):
        tiny_tokenizer.encode_file(str(tmp_path / "nope.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    with pytest.raises(AudioLoadError, match="bad.wav: cannot read audio"):
        tiny_tokenizer.encode_file(str(bad))


def test_empty_and_nan_file(tiny_tokenizer, tmp_path):
    """An empty file and a file with NaN samples are refused."""
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioLoadError, match="empty.wav: the file holds no samples"):
        tiny_tokenizer.encode_file(str(empty))
    nan = tmp_path / "nan.wav"
    data = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    data[100] = np.nan
    soundfile.write(nan, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="nan.wav: the audio holds NaN"):
        tiny_tokenizer.encode_file(str(nan))


def test_bad_tensors(tiny_tokenizer):
    """NaN tensors, too-short audio and empty batches are clear errors."""
    wav = torch.randn(1, 16000)
    wav[0, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tiny_tokenizer.encode_batch(wav)
    with pytest.raises(ValueError, match="too short"):
        tiny_tokenizer.encode_batch(torch.randn(1, 200))
    with pytest.raises(ValueError, match="empty"):
        tiny_tokenizer.encode_batch(torch.zeros(1, 0))


def test_bad_tokens(tiny_tokenizer):
    """30 global tokens, out-of-range ids and float tokens are refused."""
    sem = torch.zeros(1, 10, dtype=torch.long)
    with pytest.raises(ValueError, match="exactly 32 global tokens"):
        tiny_tokenizer.decode(torch.zeros(1, 30, dtype=torch.long), sem)
    with pytest.raises(ValueError, match=r"global token ids must lie in \[0, 4096\)"):
        tiny_tokenizer.decode(torch.full((1, 32), 4096), sem)
    with pytest.raises(ValueError, match=r"semantic token ids must lie in \[0, 64\)"):
        tiny_tokenizer.decode(torch.zeros(1, 32, dtype=torch.long), sem + 64)
    with pytest.raises(ValueError, match="semantic token ids"):
        tiny_tokenizer.decode(torch.zeros(1, 32, dtype=torch.long), sem - 1)
    with pytest.raises(TypeError, match="integers"):
        tiny_tokenizer.decode(torch.zeros(1, 32), sem)
    with pytest.raises(ValueError, match="batch sizes differ"):
        tiny_tokenizer.decode(torch.zeros(2, 32, dtype=torch.long), sem)


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, subdir", [("bicodec_tiny_wav2vec2.yaml", "wav2vec2"), ("bicodec_tiny.yaml", "whisper")]
)
def test_export_from_hparams_roundtrip(
    tmp_path, tiny_wav2vec2_dir, tiny_whisper_dir, recipe, subdir
):
    """A generator exported like training does loads with from_hparams, same tokens
    (with each front-end; the export carries a copy of the front-end's model)."""
    import os

    from hyperpyyaml import load_hyperpyyaml

    from bicodec_plugin.formats.export import export_codec
    from bicodec_plugin.inference import BiCodecTokenizer

    source = tiny_whisper_dir if subdir == "whisper" else tiny_wav2vec2_dir
    path = os.path.join(os.path.dirname(__file__), "..", "hparams", recipe)
    with open(path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, {"ssl_source": source, "train_manifest": "unused.jsonl"})
    codec = hparams["codec"]
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking usage EMA and non-trivial weights
        codec.quantizer.cluster_size.uniform_()
    folder = export_codec(hparams, str(tmp_path / "export"))
    assert sorted(os.listdir(folder)) == ["codec.safetensors", "hyperparams.yaml", subdir]
    assert sorted(os.listdir(os.path.join(folder, subdir))) == sorted(os.listdir(source))
    tok = BiCodecTokenizer.from_hparams(folder, run_opts={"device": "cpu"})
    assert type(tok.codec.ssl) is type(hparams["ssl"])
    assert torch.equal(tok.codec.quantizer.cluster_size, codec.quantizer.cluster_size)
    codec.ssl = hparams["ssl"]
    codec.eval()
    wav = torch.randn(2, 24000) * 0.1
    rel = torch.tensor([1.0, 0.7])
    with torch.no_grad():
        glob, sem, lens = codec.tokenize(wav, rel)
    glob2, sem2, lens2 = tok.encode_batch(wav, rel, normalize=False)
    assert torch.equal(glob, glob2) and torch.equal(sem, sem2) and torch.equal(lens, lens2)
    with torch.no_grad():
        ref = codec.detokenize(glob[:1], sem[:1, : lens[0]])
    out = tok.decode(glob[:1], sem[:1, : lens[0]])
    assert torch.allclose(out, ref[:, 0], atol=1e-5)


class Capture:
    """Forward hook keeping the last output of a module."""

    def __init__(self, module):
        self.value = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.value = output.detach().clone()


FAST_MIN_AGREEMENT = 0.9  # measured 96.9 % semantic, 97.7 % global (tiny release)


@pytest.mark.slow
def test_fast_mode_agrees_with_exact_on_golden(tiny_tokenizer):
    """bf16 autocast (fast mode) keeps most tokens of exact mode on the golden clips,
    and its quantisers stay exact: each token is the float64 nearest codeword / FSQ
    code of the quantiser's (bf16-computed) input.

    Measured on the golden clips: agreement 96.9 % semantic, 97.7 % global; every
    fast-mode token equals the float64 quantisation of its input (0 of 1122
    semantic, 0 of 128 global differ). With the VQ search under bf16 autocast 15
    semantic tokens differ. The golden clips' FSQ inputs are saturated (none lies
    within 0.02 of a rounding boundary), so the speaker quantiser also runs in fast
    mode on seeded small latents (its inputs then spread over the rounding range,
    std 1.4): 0 of 4,000 indices differ from float64; with FSQ in bf16, 82.
    """
    from conftest import TINY_RELEASE

    import bicodec_plugin.inference as inference

    fast = inference.BiCodecTokenizer.from_release(
        TINY_RELEASE, run_opts={"device": "cpu", "precision": "bf16"}
    )
    vq = fast.codec.quantizer
    rfsq = fast.codec.speaker_encoder.quantizer
    levels = rfsq.layers[0].levels.tolist()
    vq_input, fsq_input = Capture(vq.in_project), Capture(rfsq.project_in)
    same = {"global": 0, "semantic": 0}
    total = {"global": 0, "semantic": 0}
    try:
        for clip in CLIPS:
            wav = golden(clip)["wav"]
            exact_out = tiny_tokenizer.encode_batch(wav, normalize=False)
            fast_out = fast.encode_batch(wav, normalize=False)
            for key, idx in (("global", 0), ("semantic", 1)):
                same[key] += int((exact_out[idx] == fast_out[idx]).sum())
                total[key] += exact_out[idx].numel()
            # The quantisers' inputs were computed in bf16; their search must not be.
            assert vq_input.value.dtype == torch.bfloat16  # autocast really ran
            semantic = exact_vq_indices(vq_input.value, vq.codebook.weight)
            assert torch.equal(fast_out[1], semantic), clip
            glob = exact_fsq_indices(fsq_input.value, levels).reshape(1, -1)
            assert torch.equal(fast_out[0], glob), clip
        # The speaker quantiser in fast mode on inputs near its rounding boundaries.
        generator = torch.Generator().manual_seed(0)
        latents = 0.03 * torch.randn(8, rfsq.project_in.in_features, 500, generator=generator)
        with torch.no_grad(), fast.inference_ctx:
            _, indices = rfsq(latents)
        assert fsq_input.value.dtype == torch.bfloat16
        exact = exact_fsq_indices(fsq_input.value, levels)
        assert torch.equal(indices[:, 0], exact), int((indices[:, 0] != exact).sum())
    finally:
        vq_input.handle.remove()
        fsq_input.handle.remove()
    agreement = {key: same[key] / total[key] for key in same}
    print(f"fast-mode agreement with exact mode on the golden clips: {agreement}")
    assert agreement["semantic"] > FAST_MIN_AGREEMENT
    assert agreement["global"] > FAST_MIN_AGREEMENT
    assert agreement["semantic"] < 1.0 or agreement["global"] < 1.0  # bf16 really ran


def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def hardware_says_native(device_type, precision):
    """torch's own answer (oneDNN's ISA test on CPU, the CUDA runtime on GPU)."""
    if device_type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    if precision == "bf16":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())


HALF_CASES = [("cpu", "bf16"), ("cpu", "fp16")]
if torch.cuda.is_available():
    HALF_CASES += [("cuda", "bf16"), ("cuda", "fp16")]


@pytest.mark.parametrize("device_type, precision", HALF_CASES)
def test_native_half_check_follows_the_hardware(device_type, precision):
    """has_native_half gives torch's answer for this machine, consistent with the CPU
    flags: AVX512-BF16 / AMX-BF16 imply native bf16, no AVX-512 and no AVX-NE-CONVERT
    rule it out (this machine: AMD EPYC, AVX2 only: not native)."""
    from bicodec_plugin.inference import has_native_half

    native = has_native_half(device_type, precision)
    assert native is hardware_says_native(device_type, precision)
    flags = cpu_flags()
    if device_type == "cpu" and precision == "bf16" and flags:
        if flags & {"avx512_bf16", "amx_bf16"}:
            assert native
        if not any(f.startswith("avx512") for f in flags) and "avx_ne_convert" not in flags:
            assert not native


@pytest.mark.parametrize("device_type, precision", HALF_CASES)
def test_emulated_half_precision_warns(reference_dir, caplog, device_type, precision):
    """Asking for half precision logs an 'emulated' warning exactly where the
    hardware (torch's query, not the function under test) has no native support."""
    from conftest import TINY_RELEASE

    import bicodec_plugin.inference as inference

    native = hardware_says_native(device_type, precision)
    with caplog.at_level("WARNING", logger="bicodec_plugin.inference"):
        inference.BiCodecTokenizer.from_release(
            TINY_RELEASE, run_opts={"device": device_type, "precision": precision}
        )
    assert ("emulated" in caplog.text) is (not native), caplog.text


def test_fast_mode_holds_half_weights_with_the_same_features():
    """Fast mode stores wav2vec2's linear and conv weights in bf16 once (autocast would
    cast them at every call): its features equal those of the float32 weights cast
    by autocast, bit for bit; layer norms keep float32."""
    from conftest import TINY_RELEASE

    from bicodec_plugin.inference import BiCodecTokenizer

    fast = BiCodecTokenizer.from_release(
        TINY_RELEASE, run_opts={"device": "cpu", "precision": "bf16"}
    )
    plain = BiCodecTokenizer.from_release(TINY_RELEASE, run_opts={"device": "cpu"})
    model = fast.codec.ssl.model
    linear = model.encoder.layers[0].feed_forward.intermediate_dense
    assert linear.weight.dtype == linear.bias.dtype == torch.bfloat16
    assert model.feature_extractor.conv_layers[0].conv.weight.dtype == torch.bfloat16
    assert model.encoder.layers[0].layer_norm.weight.dtype == torch.float32
    assert plain.codec.ssl.model.encoder.layers[0].feed_forward.intermediate_dense.weight.dtype == (
        torch.float32
    )
    wav = golden("spk1_snt1")["wav"][:, :32000]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        held = fast.codec.ssl(wav)
        cast_each_call = plain.codec.ssl(wav)
    assert torch.equal(held, cast_each_call)
