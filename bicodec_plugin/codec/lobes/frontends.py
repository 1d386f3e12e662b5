"""Front-ends: the linear-magnitude mel of the speaker branch, the semantic
front-end contract (:class:`SemanticFrontend`) and its released implementation,
the frozen wav2vec2 layer mix (:class:`Wav2Vec2LayerMix`).

Authors
 * BiCodec plugin authors 2026
"""

import math
import os
from contextlib import contextmanager, nullcontext

import torch
import torchaudio
from speechbrain.utils.logger import get_logger
from torch import nn

from bicodec_plugin.codec.audio import (
    SSL_HOP,
    SSL_RECEPTIVE_FIELD,
    SSL_SAMPLE_RATE,
    ssl_num_frames_tensor,
)
from bicodec_plugin.codec.lobes.layers import skip_parameter_init
from bicodec_plugin.formats.weights import (
    ReleaseLoadError,
    check_finite_parameters,
    check_wav2vec2_folder,
)

logger = get_logger(__name__)


class LinearMelSpectrogram(torchaudio.transforms.MelSpectrogram):
    """Magnitude (power 1, no log) Slaney mel spectrogram, always in float32.

    A ``torchaudio.transforms.MelSpectrogram`` so that its buffers keep the
    reference's state-dict names (``spectrogram.window``, ``mel_scale.fb``).

    Arguments
    ---------
    sample_rate : int
        Audio rate.
    n_fft : int
        FFT size.
    win_length : int
        Window length.
    hop_length : int
        Hop.
    mel_fmin : float
        Lowest mel frequency.
    mel_fmax : float, optional
        Highest mel frequency (Nyquist when ``None``).
    num_mels : int
        Mel bins.

    Example
    -------
    >>> mel = LinearMelSpectrogram()
    >>> mel(torch.randn(2, 96000)).shape
    torch.Size([2, 128, 301])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=1024,
        win_length=640,
        hop_length=320,
        mel_fmin=10,
        mel_fmax=None,
        num_mels=128,
    ):
        super().__init__(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=mel_fmin,
            f_max=mel_fmax,
            n_mels=num_mels,
            power=1,
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wav):
        """Waveform (B, N) -> mel (B, num_mels, 1 + N // hop)."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            return super().forward(wav.float())


def normalize_per_utterance(wavs, lengths=None):
    """Zero mean, unit variance per utterance over its valid samples.

    ``(x - mean) / sqrt(var + 1e-7)`` as the HF ``Wav2Vec2FeatureExtractor``
    computes it (biased variance), padding set back to zero. Statistics are
    taken in float64 so the result does not depend on the batch.

    Arguments
    ---------
    wavs : torch.Tensor
        (B, N).
    lengths : torch.Tensor, optional
        Valid samples per item (absolute, int), (B,).

    Returns
    -------
    torch.Tensor
        (B, N), same dtype as ``wavs``.

    Example
    -------
    >>> x = torch.randn(2, 100) * 3 + 1
    >>> y = normalize_per_utterance(x, torch.tensor([100, 60]))
    >>> round(float(y[1, :60].std(unbiased=False)), 4), float(y[1, 60:].abs().max())
    (1.0, 0.0)
    """
    x = wavs.double()
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    count = lengths.to(x.dtype).clamp(min=1)[:, None]
    mean = (x * mask).sum(1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / count
    out = (x - mean) / torch.sqrt(var + 1e-7)
    return (out * mask).to(wavs.dtype)


class _LeanLayerNormConv:
    """Mixin for wav2vec2's conv + layer norm + GELU layer: same arithmetic, fewer copies.

    HF's layer keeps the convolution's output alive while the layer norm makes
    a contiguous copy of its transpose and writes its own output (three
    tensors of 512 channels at 3.2 kHz for the first layer: 195 MB for 10 s);
    here the convolution's output is released as soon as it is copied and the
    GELU runs in place. The kernels and their inputs are the same, so the
    features are bit-identical. Training (gradients) uses HF's forward.
    """

    def forward(self, hidden_states):
        """(B, C_in, T_in) -> (B, C_out, T_out)."""
        if torch.is_grad_enabled():
            return super().forward(hidden_states)
        out = self.conv(hidden_states).transpose(-2, -1).contiguous()
        out = self.layer_norm(out).transpose(-2, -1)
        if getattr(self.activation, "act", None) is nn.functional.gelu:
            return torch.ops.aten.gelu_(out)
        return self.activation(out)


class _ChunkedFeatureEncoder:
    """Mixin: a wav2vec2 convolutional feature encoder whose first layers run on pieces.

    The first layers (512 channels at 3.2, 1.6 and 0.8 kHz) hold the largest
    tensors of a tokenize. With ``chunk_frames`` set, they run on pieces of
    about that many final frames, cut on their own output grid with their
    receptive field's overlap (the last piece takes the remainder, so no piece
    is short), and the later, smaller layers run once on the joined output.
    Every position is computed from the same samples with the same kernels:
    bit-identical to one pass (``tests/test_bounded_memory.py``). Training
    (gradients) runs in one pass.
    """

    # Leading layers run on pieces (their outputs are the large ones).
    chunk_layers = 3

    def forward(self, input_values):
        """(B, N) samples -> (B, C, frames)."""
        size = self.chunk_frames
        layers = list(self.conv_layers)
        split = min(self.chunk_layers, len(layers))
        if torch.is_grad_enabled() or size is None or split == 0:
            return super().forward(input_values)
        strides = [layer.conv.stride[0] for layer in layers[:split]]
        kernels = [layer.conv.kernel_size[0] for layer in layers[:split]]
        hop = math.prod(strides)
        field = 1
        for kernel, stride in zip(reversed(kernels), reversed(strides)):
            field = (field - 1) * stride + kernel
        total = (input_values.shape[-1] - field) // hop + 1  # outputs of the first layers
        piece = max(size * self.chunk_hop // hop, 1)
        if total < 2 * piece:
            return super().forward(input_values)
        starts = list(range(0, total - piece + 1, piece))  # the last piece takes the rest
        ends = starts[1:] + [total]
        outs = []
        for start, end in zip(starts, ends):
            h = input_values[:, None, start * hop : (end - 1) * hop + field]
            for layer in layers[:split]:
                h = layer(h)
            outs.append(h)
        h = torch.cat(outs, dim=-1)
        del outs
        for layer in layers[split:]:
            h = layer(h)
        return h


def _mix_in(module, mixin):
    """Gives ``module`` (in place) a subclass of its class with ``mixin`` first."""
    cls = module.__class__
    module.__class__ = type(f"{mixin.__name__.strip('_')}{cls.__name__}", (mixin, cls), {})


def _lean_feature_encoder(encoder, config):
    """Installs :class:`_LeanLayerNormConv` and :class:`_ChunkedFeatureEncoder` on ``encoder``."""
    encoder.chunk_hop = math.prod(config.conv_stride)
    encoder.chunk_frames = 200  # 4 s pieces: bit-identical (50-frame pieces are not: 7e-6)
    _mix_in(encoder, _ChunkedFeatureEncoder)
    for layer in encoder.conv_layers:
        if all(hasattr(layer, name) for name in ("conv", "layer_norm", "activation")):
            _mix_in(layer, _LeanLayerNormConv)


def frame_windows(total, window_seconds, context_seconds, frame_rate=50):
    """Windows over ``total`` frames, for front-ends that run long input in pieces.

    Yields
    ------
    start, end : int
        The frames a window contributes (consecutive windows tile ``[0, total)``).
    first, last : int
        The frames it computes: ``[start, end)`` with up to ``context_seconds``
        of real input on each side.

    Example
    -------
    >>> list(frame_windows(120, 1, 0.2))
    [(0, 50, 0, 60), (50, 100, 40, 110), (100, 120, 90, 120)]
    """
    window = max(int(round(window_seconds * frame_rate)), 1)
    context = int(round(context_seconds * frame_rate))
    for start in range(0, total, window):
        end = min(start + window, total)
        yield start, end, max(start - context, 0), min(end + context, total)


class SemanticFrontend(nn.Module):
    """The contract between BiCodec and its frozen semantic front-end.

    The semantic encoder, the training data pipeline
    (:mod:`bicodec_plugin.training.data`, ``BiCodecBrain.ssl_features``) and
    tokenization (``BiCodec.tokenize``) rely on exactly this, whatever model
    computes the features:

    * **Input**: 16 kHz audio ``wavs`` (B, N), float, and optionally
      ``lengths`` (B,), the valid samples of each item (absolute ints).
      ``N`` must be at least 400 (one frame); a shorter input is an error.
    * **Output**: features (B, T, C) in float32 with ``C = output_size`` and
      ``T = floor((N - 400) / 320) + 1``, wav2vec2's frame count
      (:func:`~bicodec_plugin.codec.audio.ssl_num_frames`); frame t describes
      the samples around ``320 * t + 200`` (the centre of wav2vec2's window
      ``[320 t, 320 t + 400)``), so frame t lines up with hop t of the codec at
      any model rate of 50 hops per second.
    * **Padding**: with ``lengths``, each item's frames are its features
      alone (an item never sees another's padding), and frames at or past
      ``num_frames(lengths)`` are zero.
    * **Grid shifts**: cutting the input at a multiple of 320 samples shifts
      the frame grid by whole frames (frame counts and alignment, always).
      Whether the feature *values* survive the cut too is the class
      attribute ``shift_invariant``. Training relies on it: with
      ``shift_invariant`` the data pipeline hands the front-end the target
      segment with ``ssl_context`` seconds (a whole number of frames) of
      real audio on each side and drops the context frames (wav2vec2's
      convolutional positions make its features local); without it
      (Whisper's absolute positions: the same audio 1 s later gives features
      of cosine ~0.7) the recipe must set ``ssl_context: null``, the whole
      utterance, so that training sees each frame at the position
      tokenization gives it.
    * **Long input**: :meth:`forward_windowed` computes one utterance in
      windows with context, same T, memory bounded by the window.
    * **Frozen**: eval mode (no dropout or masking), no gradients, and
      ``train()`` does not change that. It is kept out of the trained
      modules and checkpoints; ``.to(device)`` puts it on a device (one
      instance per DDP process, on the process's device).

    Subclasses implement :meth:`forward` and :meth:`forward_windowed` and set
    ``output_size``; they call :meth:`freeze` at the end of ``__init__``.
    """

    sample_rate = SSL_SAMPLE_RATE
    hop_length = SSL_HOP
    receptive_field = SSL_RECEPTIVE_FIELD
    output_size = None
    shift_invariant = True

    def freeze(self):
        """Eval mode and no gradients, for good."""
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode=True):
        """Keeps the front-end in eval mode whatever ``mode`` is."""
        return super().train(False)

    def num_frames(self, lengths):
        """Frames for absolute sample lengths (tensor): floor((N - 400) / 320) + 1."""
        return ssl_num_frames_tensor(lengths)

    def check_input(self, wavs):
        """Raises ``ValueError`` unless ``wavs`` is (B, N) with N >= 400."""
        if wavs.dim() != 2:
            raise ValueError(f"expected 16 kHz audio of shape (B, N), got {tuple(wavs.shape)}")
        if wavs.shape[1] < SSL_RECEPTIVE_FIELD:
            raise ValueError(
                f"audio too short for the semantic front-end: {wavs.shape[1]} samples "
                f"(at least {SSL_RECEPTIVE_FIELD} at 16 kHz)"
            )

    def hold_autocast_weights(self, dtype):
        """Stores the weights that autocast would cast to ``dtype`` in ``dtype`` (fast mode).

        Autocast caches its casts of trainable weights only; a frozen model's
        weights are cast again at every call (on a CPU with native bf16 that
        copying was 38 % of a fast-mode tokenize). A front-end used only under
        autocast may hold them cast once: same values, same results. The
        default does nothing.
        """

    def zero_past_lengths(self, feats, lengths):
        """Zeroes the frames at or past each item's ``num_frames(lengths)``."""
        frames = self.num_frames(lengths).to(feats.device)
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None]
        return feats * valid.unsqueeze(-1)

    def forward(self, wavs, lengths=None):
        """(B, N) 16 kHz audio, optional (B,) lengths -> (B, T, C) features."""
        raise NotImplementedError

    def forward_windowed(self, wav, window_seconds=30.0, context_seconds=5.0):
        """(1, N) audio of one utterance -> (1, T, C), in windows with context."""
        raise NotImplementedError


class Wav2Vec2LayerMix(SemanticFrontend):
    """Frozen wav2vec2 returning the mean of some hidden states (BiCodec: 11, 14, 16).

    Loads a HF ``transformers`` model from a local folder or a hub id, and
    keeps only the transformer layers needed: with the XLS-R stable-layer-norm
    encoder, ``hidden_states[k]`` is the raw output of layer k, so the
    encoder's final layer norm is dropped too; the result equals the full
    model's ``hidden_states[k]`` exactly, for 2/3 of the cost (16 of 24
    layers). We call ``transformers`` directly rather than SpeechBrain's
    ``Wav2Vec2`` wrapper: the wrapper normalises with ``layer_norm``
    (eps 1e-5, over the padded length) instead of the feature extractor's
    formula, and cannot truncate the encoder; both change the tokens.

    The model is always in eval mode (no dropout, LayerDrop or masking),
    never receives gradients, and ``train()`` does not change that.

    Arguments
    ---------
    source : str or transformers.Wav2Vec2Config
        Local folder or hub id of a ``Wav2Vec2Model``; a config builds a
        randomly initialised model (tests, benchmarks).
    layers : list of int
        Hidden-state indices to average (0 = transformer input).
    save_path : str, optional
        HF cache folder for hub ids.
    normalize : bool, optional
        Per-utterance normalisation; default from the folder's
        ``preprocessor_config.json`` (``do_normalize``), else True.
    truncate : bool
        Drop the layers after ``max(layers)``; ``False`` runs the full
        model (a baseline for benchmarks).
    init_weights : bool
        With a config as ``source``: ``False`` leaves the weights
        uninitialised (no random init, which takes seconds at full size),
        for weights loaded right after, as an exported folder's pretrainer
        does.

    Example
    -------
    >>> from transformers import Wav2Vec2Config
    >>> cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
    ...     intermediate_size=32, conv_dim=[8] * 7, do_stable_layer_norm=True,
    ...     feat_extract_norm="layer", num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    >>> ssl = Wav2Vec2LayerMix(cfg, layers=[1, 2])
    >>> ssl(torch.randn(2, 16000)).shape
    torch.Size([2, 49, 16])
    """

    # True: ask the model for all hidden states (the reference's way; same values).
    keep_all_hidden_states = False

    def __init__(
        self,
        source,
        layers=(11, 14, 16),
        save_path=None,
        normalize=None,
        truncate=True,
        init_weights=True,
    ):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        self.layers = [int(i) for i in layers]
        if isinstance(source, Wav2Vec2Config):
            config = source
            config = Wav2Vec2Config.from_dict(config.to_dict())
            self._disable_stochastic(config)
            if init_weights:
                model = Wav2Vec2Model(config)
            else:
                with skip_parameter_init():
                    model = Wav2Vec2Model(config)
        else:
            # Truncated: the layers past the deepest one used are never read
            # from the file (their pages never become this process's memory).
            keep = max(self.layers) if truncate else None
            model, config, file_layers = _load_pretrained(
                source, save_path, self._disable_stochastic, keep
            )
            if normalize is None:
                normalize = self._read_do_normalize(source, save_path)
        self.normalize = True if normalize is None else bool(normalize)
        depth = max(self.layers)
        if isinstance(source, Wav2Vec2Config):
            file_layers = config.num_hidden_layers
        if depth > file_layers:
            where = "" if isinstance(source, Wav2Vec2Config) else f"{source}: "
            error = ValueError if isinstance(source, Wav2Vec2Config) else ReleaseLoadError
            raise error(f"{where}layer {depth} requested but the model has {file_layers} layers")
        if truncate:
            model.encoder.layers = model.encoder.layers[:depth]
            if config.do_stable_layer_norm:
                # hidden_states[depth] must stay the raw residual stream.
                model.encoder.layer_norm = nn.Identity()
        self.truncated = truncate
        self.model = model
        self.output_size = config.hidden_size
        if config.feat_extract_norm == "layer":
            _lean_feature_encoder(model.feature_extractor, config)
        self.freeze()

    @staticmethod
    def _disable_stochastic(config):
        config.layerdrop = 0.0
        config.apply_spec_augment = False
        config.mask_time_prob = 0.0
        config.mask_feature_prob = 0.0

    @staticmethod
    def _read_do_normalize(source, save_path):
        from transformers import Wav2Vec2FeatureExtractor

        try:
            return Wav2Vec2FeatureExtractor.from_pretrained(
                source, cache_dir=save_path
            ).do_normalize
        except OSError:
            logger.warning(
                "%s has no preprocessor_config.json: normalising inputs per utterance",
                source if isinstance(source, str) else "model",
            )
            return True

    def hold_autocast_weights(self, dtype):
        """Linear and convolution weights and biases of wav2vec2 in ``dtype``, once.

        Autocast runs these layers in ``dtype`` and casts their weights at
        every call (frozen weights escape its cache); held in ``dtype`` they
        are the same values without the copies. Normalisation layers keep
        their float32 parameters (autocast does not cast them), and the
        weight-normed positional convolution is left as it is. Only for a
        front-end that runs under autocast from now on.
        """
        for module in self.model.modules():
            if not isinstance(module, (nn.Linear, nn.Conv1d)):
                continue
            if torch.nn.utils.parametrize.is_parametrized(module) or hasattr(module, "weight_g"):
                continue
            for name in ("weight", "bias"):
                param = getattr(module, name, None)
                if param is not None and param.is_floating_point():
                    param.data = param.data.to(dtype)

    def _layer_mix(self, inputs, attention_mask=None):
        """Mean of the selected hidden states, summed in the reference's order.

        ``hidden_states[k]`` (k >= 1) is the output of transformer layer
        ``k - 1``: forward hooks keep just those, instead of all 17 hidden
        states that ``output_hidden_states`` would hold.
        """
        if 0 in self.layers or self.keep_all_hidden_states:
            hidden = self.model(
                inputs, attention_mask=attention_mask, output_hidden_states=True
            ).hidden_states
        else:
            hidden = {}
            layers = self.model.encoder.layers

            def keep(index):
                def hook(module, args, output):
                    hidden[index] = output[0] if isinstance(output, tuple) else output

                return hook

            handles = [layers[k - 1].register_forward_hook(keep(k)) for k in set(self.layers)]
            try:
                self.model(inputs, attention_mask=attention_mask)
            finally:
                for handle in handles:
                    handle.remove()
        mix = hidden[self.layers[0]]
        for idx in self.layers[1:]:
            mix = mix + hidden[idx]
        return (mix / len(self.layers)).float()

    @torch.no_grad()
    def forward_windowed(self, wav, window_seconds=30.0, context_seconds=5.0):
        """Layer mix of one long utterance in windows: memory bounded by the window.

        The utterance is normalised as a whole, then wav2vec2 runs on windows
        of ``window_seconds`` with ``context_seconds`` of real audio on each
        side, and the centre frames are stitched. Windows start on the 320-
        sample frame grid, so the convolutional features are exactly those of
        the whole-file pass; only attention is limited to the window and its
        context.

        Arguments
        ---------
        wav : torch.Tensor
            16 kHz audio of one utterance, (1, N).
        window_seconds : float
            Centre part of each window.
        context_seconds : float
            Context on each side.

        Returns
        -------
        torch.Tensor
            (1, T, C), T = floor((N - 400) / 320) + 1.
        """
        if wav.dim() != 2 or wav.shape[0] != 1:
            raise ValueError(f"expected one utterance of shape (1, N), got {tuple(wav.shape)}")
        if wav.shape[1] < SSL_RECEPTIVE_FIELD:
            raise ValueError(f"audio too short for wav2vec2: {wav.shape[1]} samples")
        total = int(ssl_num_frames_tensor(torch.tensor(wav.shape[1])))
        inputs = normalize_per_utterance(wav) if self.normalize else wav
        pieces = []
        for start, end, first, last in frame_windows(total, window_seconds, context_seconds):
            chunk = inputs[:, first * SSL_HOP : (last - 1) * SSL_HOP + SSL_RECEPTIVE_FIELD]
            mix = self._layer_mix(chunk)
            pieces.append(mix[:, start - first : end - first])
        return torch.cat(pieces, dim=1)

    @torch.no_grad()
    def forward(self, wavs, lengths=None):
        """Computes the layer mix.

        Arguments
        ---------
        wavs : torch.Tensor
            16 kHz audio, (B, N).
        lengths : torch.Tensor, optional
            Valid samples per item (absolute ints), (B,). With padding, an
            attention mask keeps each item's features equal to its features
            alone; ``None`` means no padding.

        Returns
        -------
        torch.Tensor
            (B, T, C) float32, T = floor((N - 400) / 320) + 1; frames past an
            item's own length are zero.
        """
        self.check_input(wavs)
        padded = lengths is not None and bool((lengths < wavs.shape[1]).any())
        inputs = normalize_per_utterance(wavs, lengths) if self.normalize else wavs
        mask = None
        if padded:
            mask = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None]
            mask = mask.long()
        mix = self._layer_mix(inputs, mask)
        if padded:
            mix = self.zero_past_lengths(mix, lengths)
        return mix


@contextmanager
def _quiet_transformers():
    """``transformers`` logs errors only, for the time of the block."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load_pretrained(source, save_path, adjust_config, keep_layers=None):
    """``Wav2Vec2Model.from_pretrained``, strictly: every weight loaded, all finite.

    With ``keep_layers``, only the first ``keep_layers`` transformer layers
    are built and read (the file's deeper layers are skipped, unread).

    A local folder is checked first
    (:func:`~bicodec_plugin.formats.weights.check_wav2vec2_folder`), and any
    failure is a ``ReleaseLoadError`` naming the folder or file.

    Returns
    -------
    model : transformers.Wav2Vec2Model
    config : transformers.Wav2Vec2Config
    file_layers : int
        Transformer layers in the file's config.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    if os.path.isdir(source):
        check_wav2vec2_folder(source)
    try:
        config = Wav2Vec2Config.from_pretrained(source, cache_dir=save_path)
        adjust_config(config)
        file_layers = config.num_hidden_layers
        if keep_layers is not None and keep_layers < file_layers:
            config.num_hidden_layers = keep_layers
        # Mis-shaped tensors are reported below as an error, never re-initialised;
        # the skipped deeper layers are the file's expected extra keys, not news.
        quiet = _quiet_transformers() if config.num_hidden_layers < file_layers else nullcontext()
        with quiet:
            model, info = Wav2Vec2Model.from_pretrained(
                source,
                config=config,
                cache_dir=save_path,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
    except ReleaseLoadError:
        raise
    except Exception as err:  # transformers raises OSError, RuntimeError, ValueError...
        raise ReleaseLoadError(f"{source}: cannot load the wav2vec2 model ({err})") from err
    # masked_spec_embed only serves SpecAugment masking, which stays off.
    missing = sorted(k for k in info["missing_keys"] if k != "masked_spec_embed")
    mismatched = [
        f"{key}: file {tuple(file_shape)}, config {tuple(model_shape)}"
        for key, file_shape, model_shape in sorted(info.get("mismatched_keys", []))
    ]
    if missing or mismatched:
        raise ReleaseLoadError(
            f"{source}: the wav2vec2 weights do not fill the model of its config.json: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"mis-shaped {mismatched[:3]}{' ...' if len(mismatched) > 3 else ''} "
            f"({len(mismatched)}); is config.json the one these weights were saved with?"
        )
    check_finite_parameters(model, source)
    return model, config, file_layers
