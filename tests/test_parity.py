"""Parity with the reference implementation (../shared/reference)."""

import pytest
import torch
from conftest import CLIPS, TINY_RELEASE, clip_path, golden

from bicodec_plugin.codec.audio import read_audio_file, reference_clip


def rel_err(a, b):
    """Max abs error relative to the reference tensor's max abs value."""
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("clip", CLIPS)
def test_tokens_identical(tiny_tokenizer, clip):
    """encode_file gives the reference's global and semantic tokens exactly."""
    ref = golden(clip)
    global_tokens, semantic_tokens = tiny_tokenizer.encode_file(clip_path(clip))
    assert global_tokens.dtype == semantic_tokens.dtype == torch.int64
    assert torch.equal(global_tokens, ref["global_tokens"].reshape(1, -1))
    assert torch.equal(semantic_tokens, ref["semantic_tokens"])


@pytest.mark.parametrize("clip", CLIPS)
def test_intermediate_tensors(tiny_tokenizer, clip):
    """wav, ref_wav, feat_mix, ref_mel, z, d_vector within 1e-4 relative."""
    ref = golden(clip)
    codec = tiny_tokenizer.codec
    with torch.no_grad():
        wav = read_audio_file(clip_path(clip), 16000)[None]
        ref_wav = reference_clip(wav, codec.ref_length)
        feats = codec.ssl(wav)
        mel = codec.mel_transformer(ref_wav)
        z = codec.encoder(feats.transpose(1, 2))
        d_vector = codec.speaker_vector(ref["global_tokens"])
    for name, ours in [
        ("wav", wav),
        ("ref_wav", ref_wav),
        ("feat_mix", feats),
        ("ref_mel", mel),
        ("z", z),
        ("d_vector", d_vector),
    ]:
        assert ours.shape == ref[name].shape, name
        assert rel_err(ours, ref[name]) < 1e-4, name


@pytest.mark.parametrize("clip", CLIPS)
def test_decoded_audio(tiny_tokenizer, clip):
    """Decoding the golden tokens gives wav_rec within 1e-4 max abs error."""
    ref = golden(clip)
    wav = tiny_tokenizer.decode(ref["global_tokens"].reshape(1, -1), ref["semantic_tokens"])
    assert wav.shape == ref["wav_rec"].reshape(1, -1).shape
    assert float((wav - ref["wav_rec"].reshape(1, -1)).abs().max()) < 1e-4


def test_stage_tensors(tiny_tokenizer):
    """Stage-by-stage tensors of one clip (to locate any departure)."""
    ref = golden("spk1_snt1")
    codec = tiny_tokenizer.codec
    with torch.no_grad():
        x_vector, frames = codec.speaker_encoder.speaker_encoder(ref["ref_mel"].transpose(1, 2))
        latents = codec.speaker_encoder.perceiver_sampler(frames.transpose(1, 2))
        fsq_zq, _ = codec.speaker_encoder.quantizer(latents.transpose(1, 2))
        zq_semantic = codec.quantizer.detokenize(ref["semantic_tokens"])
        prenet_out = codec.prenet(zq_semantic, ref["d_vector"])
    assert rel_err(frames, ref["ecapa_frames"]) < 1e-4
    assert rel_err(x_vector, ref["x_vector"]) < 1e-4
    assert rel_err(latents.transpose(1, 2), ref["spk_latents"]) < 1e-4
    assert rel_err(fsq_zq, ref["fsq_zq"]) < 1e-4
    assert rel_err(zq_semantic, ref["zq_semantic"]) < 1e-4
    assert rel_err(prenet_out, ref["prenet_out"]) < 1e-4


def test_wav2vec2_layers(tiny_tokenizer):
    """Truncated wav2vec2 gives hidden_states 11/14/16 of the full model."""
    ref = golden("spk2_snt1")
    ssl = tiny_tokenizer.codec.ssl
    assert len(ssl.model.encoder.layers) == 16
    with torch.no_grad():
        out = ssl.model(ref["w2v_input"], output_hidden_states=True)
    for idx in (11, 14, 16):
        assert rel_err(out.hidden_states[idx], ref[f"hidden_{idx}"]) < 1e-4


def test_training_step(reference_dir):
    """One training forward/backward matches the reference's values and gradients."""
    from bicodec_plugin.formats.release import build_bicodec, read_release_config
    from bicodec_plugin.formats.weights import load_codec_weights, to_release_key

    ref = golden("train_step")
    codec = build_bicodec(read_release_config(TINY_RELEASE))
    load_codec_weights(codec, f"{TINY_RELEASE}/BiCodec/model.safetensors")
    codec.train()
    out = codec(ref["in_feat"], ref["in_ref_wav"])
    for name in ("recons", "pred_feat", "x_vector", "d_vector"):
        assert rel_err(getattr(out, name).detach(), ref[name]) < 1e-4, name
    assert out.vq_loss.item() == pytest.approx(float(ref["vq_loss"]), rel=1e-5)
    assert out.perplexity.item() == pytest.approx(float(ref["perplexity"]), rel=1e-5)
    assert int(out.active_num) == int(ref["active_num"])
    assert torch.allclose(codec.quantizer.cluster_size, ref["cluster_size_after"], atol=1e-6)
    loss = (
        out.recons.abs().mean()
        + out.vq_loss
        + (out.pred_feat**2).mean()
        + ((out.x_vector - out.d_vector) ** 2).mean()
    )
    assert loss.item() == pytest.approx(float(ref["loss"]), rel=1e-5)
    loss.backward()
    params = {to_release_key(k): p for k, p in codec.named_parameters()}
    grads = [k for k in ref if k.startswith("grad.")]
    assert len(grads) == 7
    for key in grads:
        assert rel_err(params[key[5:]].grad, ref[key]) < 1e-4, key
