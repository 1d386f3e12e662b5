"""The BiCodec model: built lobes in, tokens and waveforms out.

Data flows one way: audio -> front-ends (wav2vec2 layer mix; linear mel of
the 6 s reference) -> semantic encoder / speaker encoder -> quantisers ->
prenet + d-vector -> wave generator.

Authors
 * BiCodec plugin authors 2026
"""

from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

from bicodec_plugin.codec.audio import (
    SSL_SAMPLE_RATE,
    check_waveform,
    reference_clip,
    reference_clip_length,
)


@dataclass
class BiCodecOutput:
    """What :meth:`BiCodec.forward` (the training forward) returns.

    Attributes
    ----------
    recons : torch.Tensor
        Reconstructed waveform, (B, 1, hop * T).
    pred_feat : torch.Tensor
        Postnet prediction of the wav2vec2 features, (B, C_ssl, T).
    x_vector : torch.Tensor
        ECAPA-TDNN embedding, (B, D).
    d_vector : torch.Tensor
        Speaker vector rebuilt from the quantised global latents, (B, D).
    vq_loss, commit_loss, codebook_loss : torch.Tensor
        Semantic VQ losses (batch means).
    perplexity, active_num : torch.Tensor
        Semantic codebook usage statistics.
    semantic_tokens : torch.Tensor
        (B, T).
    global_tokens : torch.Tensor
        (B, token_num).
    """

    recons: torch.Tensor
    pred_feat: torch.Tensor
    x_vector: torch.Tensor
    d_vector: torch.Tensor
    vq_loss: torch.Tensor
    commit_loss: torch.Tensor
    codebook_loss: torch.Tensor
    perplexity: torch.Tensor
    active_num: torch.Tensor
    semantic_tokens: torch.Tensor
    global_tokens: torch.Tensor


class BiCodec(nn.Module):
    """BiCodec: global (speaker) tokens + 50 Hz semantic tokens <-> waveform.

    Attribute names are those of the reference checkpoint, so
    :mod:`bicodec_plugin.formats.release` maps keys one to one. The wav2vec2 front-end
    is optional (``ssl``): training keeps it outside the model (it is frozen
    and large), inference attaches it so that :meth:`tokenize` takes audio;
    its weights are never part of the codec's checkpoint.

    Arguments
    ---------
    mel_transformer : torch.nn.Module
        Linear mel front-end of the speaker branch
        (:class:`~bicodec_plugin.codec.lobes.frontends.LinearMelSpectrogram`).
    encoder : torch.nn.Module
        Semantic encoder.
    quantizer : torch.nn.Module
        Factorised VQ of the semantic branch.
    speaker_encoder : torch.nn.Module
        Global tokenizer (:class:`~bicodec_plugin.codec.lobes.speaker.SpeakerEncoder`).
    prenet : torch.nn.Module
        Feature decoder conditioned on the d-vector.
    decoder : torch.nn.Module
        Wave generator.
    postnet : torch.nn.Module, optional
        Feature decoder predicting wav2vec2 features (training aid).
    ssl : torch.nn.Module, optional
        wav2vec2 layer mix (:class:`~bicodec_plugin.codec.lobes.frontends.Wav2Vec2LayerMix`).
    sample_rate : int
        Audio rate of the model.
    ref_segment_duration : float
        Seconds of audio that drive the global tokens.

    Example
    -------
    >>> from bicodec_plugin.testing import tiny_codec
    >>> codec = tiny_codec().eval()
    >>> feats, ref = torch.randn(1, 20, 64), torch.randn(1, 96000)
    >>> glob, sem = codec.tokenize_features(feats, ref)
    >>> glob.shape, sem.shape
    (torch.Size([1, 32]), torch.Size([1, 20]))
    >>> codec.detokenize(glob, sem).shape
    torch.Size([1, 1, 6400])
    """

    def __init__(
        self,
        mel_transformer,
        encoder,
        quantizer,
        speaker_encoder,
        prenet,
        decoder,
        postnet=None,
        ssl=None,
        sample_rate=16000,
        ref_segment_duration=6.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.speaker_encoder = speaker_encoder
        self.prenet = prenet
        self.postnet = postnet
        self.decoder = decoder
        self.mel_transformer = mel_transformer
        self.ssl = ssl
        self.sample_rate = int(sample_rate)
        self.hop_length = int(decoder.hop_length)
        self.ref_segment_duration = float(ref_segment_duration)
        self.ref_length = reference_clip_length(
            self.sample_rate, self.hop_length, self.ref_segment_duration
        )
        self.token_num = speaker_encoder.token_num
        # Long audio: wav2vec2 runs in windows of 30 s with 5 s of context per
        # side for utterances above 40 s (shorter ones: one exact pass).
        self.ssl_window_threshold = 40.0
        self.ssl_window_seconds = 30.0
        self.ssl_context_seconds = 5.0

    # ------------------------------------------------------------------ encode
    def encode_global(self, ref_wav):
        """Reference clips (B, ref_length) -> global tokens (B, token_num)."""
        mel = self.mel_transformer(ref_wav)  # (B, n_mels, T')
        tokens = self.speaker_encoder.tokenize(mel.transpose(1, 2))  # (B, Q, N)
        return tokens.reshape(tokens.shape[0], -1)

    def encode_semantic(self, feats, feat_lens=None):
        """wav2vec2 features (B, T, C) -> semantic tokens (B, T).

        ``feat_lens`` (absolute frames, (B,)) masks padding so that each
        item's tokens equal its tokens alone.
        """
        mask = None
        if feat_lens is not None:
            frames = torch.arange(feats.shape[1], device=feats.device)
            mask = (frames[None, :] < feat_lens[:, None]).unsqueeze(1).to(feats.dtype)
        z = self.encoder(feats.transpose(1, 2), mask=mask)  # (B, C, T) -> (B, D, T)
        return self.quantizer.tokenize(z)

    def tokenize_features(self, feats, ref_wav, feat_lens=None):
        """Tokens from precomputed wav2vec2 features and reference clips.

        Arguments
        ---------
        feats : torch.Tensor
            wav2vec2 layer mix, (B, T, C).
        ref_wav : torch.Tensor
            Reference clips, (B, ref_length).
        feat_lens : torch.Tensor, optional
            Valid frames per item, (B,).

        Returns
        -------
        global_tokens : torch.Tensor
            (B, token_num) int64.
        semantic_tokens : torch.Tensor
            (B, T) int64.
        """
        return self.encode_global(ref_wav), self.encode_semantic(feats, feat_lens)

    def reference_clips(self, wav, lengths):
        """First ``ref_length`` samples of each item (tiled when shorter).

        Arguments
        ---------
        wav : torch.Tensor
            (B, N) at the model rate.
        lengths : torch.Tensor
            Valid samples per item (absolute), (B,).

        Returns
        -------
        torch.Tensor
            (B, ref_length).
        """
        return torch.stack(
            [reference_clip(w[: int(n)], self.ref_length) for w, n in zip(wav, lengths)]
        )

    def ssl_features(self, ssl_wav, ssl_lengths, padded=True):
        """wav2vec2 layer mix; utterances longer than ``ssl_window_threshold`` s run windowed.

        Arguments
        ---------
        ssl_wav : torch.Tensor
            16 kHz audio, (B, N).
        ssl_lengths : torch.Tensor
            Valid samples per item, (B,).
        padded : bool
            Whether the batch may hold padding (attention masks are used).

        Returns
        -------
        torch.Tensor
            (B, T, C), zero past each item's frames.
        """
        threshold = self.ssl_window_threshold
        if threshold is None or int(ssl_lengths.max()) <= threshold * SSL_SAMPLE_RATE:
            return self.ssl(ssl_wav, ssl_lengths if padded else None)
        # Long audio: one item at a time, windowed when long, bounded memory.
        feats = []
        for wav, length in zip(ssl_wav, ssl_lengths.tolist()):
            item = wav[None, :length]
            if length > threshold * SSL_SAMPLE_RATE:
                feats.append(
                    self.ssl.forward_windowed(
                        item, self.ssl_window_seconds, self.ssl_context_seconds
                    )[0]
                )
            else:
                feats.append(self.ssl(item)[0])
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)

    def tokenize(self, wav, wav_lens=None, ssl_wav=None):
        """Audio -> (global tokens, semantic tokens, semantic lengths).

        Arguments
        ---------
        wav : torch.Tensor
            Volume-normalised audio at ``sample_rate``, (B, N).
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths in (0, 1], (B,).
        ssl_wav : torch.Tensor, optional
            The same audio at 16 kHz for wav2vec2 (B, N16), with the same
            relative lengths; resampled with torchaudio when omitted and the
            model rate is not 16 kHz (file loaders pass a soxr copy instead).

        Returns
        -------
        global_tokens : torch.Tensor
            (B, token_num) int64.
        semantic_tokens : torch.Tensor
            (B, T_max) int64, padded with 0 past each item's length.
        semantic_lens : torch.Tensor
            (B,) number of valid semantic tokens per item.
        """
        if self.ssl is None:
            raise RuntimeError("tokenize needs a wav2vec2 front-end: build BiCodec with ssl=...")
        if wav.dim() != 2:
            raise ValueError(f"expected audio of shape (B, N), got {tuple(wav.shape)}")
        check_waveform(wav, "input audio")
        if ssl_wav is None:
            ssl_wav = wav
            if self.sample_rate != SSL_SAMPLE_RATE:
                ssl_wav = torchaudio.functional.resample(wav, self.sample_rate, SSL_SAMPLE_RATE)
        if wav_lens is None:
            return self.tokenize_absolute(wav, ssl_wav)
        lengths = _absolute_lengths(wav_lens, wav.shape).to(wav.device)
        ssl_lengths = _absolute_lengths(wav_lens, ssl_wav.shape).to(ssl_wav.device)
        return self.tokenize_absolute(wav, ssl_wav, lengths, ssl_lengths)

    def tokenize_absolute(self, wav, ssl_wav, lengths=None, ssl_lengths=None):
        """:meth:`tokenize` for checked audio with absolute lengths (no second check).

        Arguments
        ---------
        wav : torch.Tensor
            Finite audio at ``sample_rate``, (B, N).
        ssl_wav : torch.Tensor
            The same audio at 16 kHz, (B, N16).
        lengths, ssl_lengths : torch.Tensor, optional
            Valid samples per item of each, (B,); ``None`` (both): no padding.

        Returns
        -------
        global_tokens, semantic_tokens, semantic_lens
            As :meth:`tokenize`.
        """
        padded = lengths is not None
        if not padded:
            lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long)
            ssl_lengths = torch.full((ssl_wav.shape[0],), ssl_wav.shape[1], dtype=torch.long)
        lengths, ssl_lengths = lengths.to(wav.device), ssl_lengths.to(ssl_wav.device)
        feat_lens = self.ssl.num_frames(ssl_lengths)
        if int(feat_lens.min()) <= 0:
            raise ValueError("audio shorter than one wav2vec2 frame (400 samples at 16 kHz)")
        feats = self.ssl_features(ssl_wav, ssl_lengths, padded=padded)
        ref = self.reference_clips(wav, lengths)
        global_tokens = self.encode_global(ref)
        semantic = self.encode_semantic(feats, feat_lens if padded else None)
        valid = torch.arange(semantic.shape[1], device=semantic.device)[None] < feat_lens[:, None]
        return global_tokens, semantic * valid, feat_lens

    # ------------------------------------------------------------------ decode
    def check_global_tokens(self, global_tokens):
        """Returns global tokens as (B, Q, token_num), or raises a clear error."""
        if global_tokens.dim() == 2:
            global_tokens = global_tokens.unsqueeze(1)
        if global_tokens.dim() != 3 or global_tokens.shape[-1] != self.token_num:
            raise ValueError(
                f"BiCodec needs exactly {self.token_num} global tokens per utterance, "
                f"got a tensor of shape {tuple(global_tokens.shape)}"
            )
        if global_tokens.dtype.is_floating_point:
            raise TypeError("global tokens must be integers")
        return global_tokens

    def speaker_vector(self, global_tokens):
        """Global tokens (B, token_num) -> d-vector (B, D)."""
        return self.speaker_encoder.detokenize(self.check_global_tokens(global_tokens))

    def decode_latents(self, z_q, d_vector, mask=None, lengths=None):
        """Quantised semantic latent (B, D, T) and d-vector (B, D) -> waveform.

        ``lengths`` (valid frames per item, (B,)) decodes a padded batch as one
        batch, each item as if alone (``mask`` is then derived from it).
        """
        if lengths is not None:
            frames = torch.arange(z_q.shape[-1], device=z_q.device)
            mask = (frames[None, :] < lengths[:, None]).unsqueeze(1).to(z_q.dtype)
        x = self.prenet(z_q, d_vector, mask=mask)
        return self.decoder(x + d_vector.unsqueeze(-1), lengths=lengths)

    def detokenize(self, global_tokens, semantic_tokens, semantic_lens=None):
        """Tokens -> waveform.

        Arguments
        ---------
        global_tokens : torch.Tensor
            (B, token_num) or (B, 1, token_num) int.
        semantic_tokens : torch.Tensor
            (B, T) int.
        semantic_lens : torch.Tensor, optional
            (B,) valid tokens per item of a padded batch: each item's waveform
            (its first ``hop_length * len`` samples) equals its waveform alone.

        Returns
        -------
        torch.Tensor
            (B, 1, hop_length * T).
        """
        if semantic_tokens.dim() != 2:
            raise ValueError(
                f"expected semantic tokens of shape (B, T), got {tuple(semantic_tokens.shape)}"
            )
        if semantic_tokens.dtype.is_floating_point:
            raise TypeError("semantic tokens must be integers")
        d_vector = self.speaker_vector(global_tokens)
        if d_vector.shape[0] != semantic_tokens.shape[0]:
            raise ValueError(
                f"batch sizes differ: {d_vector.shape[0]} global vs "
                f"{semantic_tokens.shape[0]} semantic"
            )
        z_q = self.quantizer.detokenize(semantic_tokens)
        if semantic_lens is not None:
            semantic_lens = torch.as_tensor(semantic_lens, device=z_q.device).long()
            if bool((semantic_lens >= semantic_tokens.shape[1]).all()):
                semantic_lens = None  # nothing padded
        return self.decode_latents(z_q, d_vector, lengths=semantic_lens)

    # ---------------------------------------------------------------- training
    def forward(self, feats, ref_wav, condition="d_vector"):
        """Training forward (the reference ``BiCodec.forward``).

        Arguments
        ---------
        feats : torch.Tensor
            wav2vec2 layer mix of the target segment, (B, T, C).
        ref_wav : torch.Tensor
            Reference clips, (B, ref_length).
        condition : str
            ``"d_vector"`` (default, inference path) or ``"x_vector"`` (the
            reference's warm-up phase): the speaker vector that conditions
            the prenet and is added before the wave generator.

        Returns
        -------
        BiCodecOutput
        """
        if condition not in ("d_vector", "x_vector"):
            raise ValueError(f"condition must be 'd_vector' or 'x_vector', got {condition!r}")
        mel = self.mel_transformer(ref_wav)  # (B, n_mels, T')
        x_vector, d_vector, global_tokens = self.speaker_encoder(mel.transpose(1, 2))
        z = self.encoder(feats.transpose(1, 2))  # (B, T, C) -> (B, C, T)
        vq = self.quantizer(z)
        cond = d_vector if condition == "d_vector" else x_vector
        x = self.prenet(vq.z_q, cond)
        pred_feat = self.postnet(x) if self.postnet is not None else None
        recons = self.decoder(x + cond.unsqueeze(-1))
        # The speaker vector that does not condition the decoder only feeds a
        # detached target (or nothing); detaching it here keeps DDP's
        # unused-parameter detection right.
        if condition == "d_vector":
            x_vector = x_vector.detach()
        else:
            d_vector = d_vector.detach()
        return BiCodecOutput(
            recons=recons,
            pred_feat=pred_feat,
            x_vector=x_vector,
            d_vector=d_vector,
            vq_loss=vq.vq_loss,
            commit_loss=vq.commit_loss,
            codebook_loss=vq.codebook_loss,
            perplexity=vq.perplexity,
            active_num=vq.active_num,
            semantic_tokens=vq.indices,
            global_tokens=global_tokens.reshape(global_tokens.shape[0], -1),
        )

    def codec_state_dict(self):
        """State dict without the (separately stored) wav2vec2 front-end."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("ssl.")}


def _absolute_lengths(wav_lens: torch.Tensor | None, shape):
    """Relative SpeechBrain lengths -> absolute sample counts (B,)."""
    batch, n = shape[0], shape[-1]
    if wav_lens is None:
        return torch.full((batch,), n, dtype=torch.long)
    if wav_lens.shape != (batch,):
        raise ValueError(f"wav_lens must have shape ({batch},), got {tuple(wav_lens.shape)}")
    if (wav_lens <= 0).any() or (wav_lens > 1 + 1e-6).any():
        raise ValueError("wav_lens are relative lengths and must lie in (0, 1]")
    return torch.round(wav_lens.cpu().double() * n).long().clamp(1, n)
