"""Manifests and per-item pipelines that feed BiCodec training.

JSON-Lines manifests become the ``{index: entry}`` dict of a SpeechBrain
``DynamicItemDataset``. A dynamic item then turns each file into what the
reference trainer (SparkVox ``BicodecDataset``) gives its model: a hop-aligned
target segment, a 6 s speaker reference with the target hidden, and a 16 kHz
window for wav2vec2 with one second of real context on each side.

With ``ssl_context=None`` the 16 kHz input is the whole utterance instead and
the target starts on the hop grid: a front-end whose features depend on
absolute position (Whisper's encoder) then sees the target at the positions
that tokenization gives it (see
:class:`~bicodec_plugin.codec.lobes.frontends.SemanticFrontend`).

Authors
 * BiCodec plugin authors 2026
"""

import json
import math
import os

import soundfile
import torch
import torchaudio
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import DynamicItem, provides, takes

from bicodec_plugin.codec.audio import (
    SSL_HOP,
    SSL_RECEPTIVE_FIELD,
    SSL_SAMPLE_RATE,
    AudioLoadError,
    read_audio_file,
    reference_clip,
    reference_clip_length,
    resample,
)

# wav2vec2 emits one frame per 20 ms; BiCodec emits one token per hop.
SSL_FRAME_RATE = SSL_SAMPLE_RATE // SSL_HOP
ITEM_KEYS = ["wav", "ref_wav", "ssl_wav", "ssl_drop_frames", "num_frames"]
OUTPUT_KEYS = ["id"] + ITEM_KEYS


class ManifestError(ValueError):
    """Raised for an unusable manifest line; the message starts with ``<file>:<line>:``."""


def read_manifests(paths, require_keys=(), compute_duration=True, origins=None, check_files=False):
    """Reads JSON-Lines manifests into the dict a ``DynamicItemDataset`` takes.

    Each non-blank line is an object with a unique ``index`` and a
    ``wav_path`` (relative paths resolve against the manifest's folder);
    other keys are kept. ``index`` becomes the dict key (SpeechBrain's
    ``id``), so a key named ``id`` is refused.

    Arguments
    ---------
    paths : str or list of str
        One or more manifest files; indices must be unique across all.
    require_keys : tuple of str
        Keys every line must hold (e.g. ``("text",)`` for TTS).
    compute_duration : bool
        Fill a missing ``duration`` (seconds) from the audio header.
    origins : dict, optional
        Filled with ``{index: "<file>:<line>"}``, to name the line of a file
        that fails later.
    check_files : bool
        Read the header of every file, ``duration`` given or not, so that a
        missing, unreadable or empty file is refused here, naming its line,
        rather than when a batch first needs it (training does this).

    Returns
    -------
    dict
        ``{index: {"wav_path": absolute path, "duration": float, ...}}``.

    Raises
    ------
    ManifestError
        For a bad line, a duplicate index or an unreadable file, naming
        ``<file>:<line>`` (both places for a duplicate).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "train.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"index": "a", "wav_path": "a.wav", "duration": 1.5}\\n')
    >>> data = read_manifests(path)
    >>> data["a"]["wav_path"] == os.path.join(folder, "a.wav"), data["a"]["duration"]
    (True, 1.5)
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if isinstance(require_keys, str):
        require_keys = (require_keys,)
    data = {}
    origin = {}  # index -> "file:line", to name both places of a duplicate
    for path in map(os.fspath, paths):
        if not os.path.isfile(path):
            raise ManifestError(f"{path}: no such manifest file")
        folder = os.path.dirname(os.path.abspath(path))
        # utf-8-sig: tolerate a byte-order mark written by some editors.
        with open(path, encoding="utf-8-sig") as manifest:
            for line_number, line in enumerate(manifest, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_number}"
                index, entry = _parse_line(line, where, require_keys)
                if index in origin:
                    raise ManifestError(
                        f"{where}: duplicate index {index!r} (first at {origin[index]})"
                    )
                wav_path = os.path.expanduser(entry["wav_path"])
                entry["wav_path"] = os.path.normpath(os.path.join(folder, wav_path))
                if "duration" in entry:
                    entry["duration"] = _check_duration(entry["duration"], where)
                    if check_files:
                        _file_duration(entry["wav_path"], where)  # exists and reads
                elif compute_duration:
                    entry["duration"] = _file_duration(entry["wav_path"], where)
                origin[index] = where
                data[index] = entry
    if origins is not None:
        origins.update(origin)
    return data


def _parse_line(line, where, require_keys):
    """Decodes and checks one manifest line; returns ``(index, entry)``."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: invalid JSON ({err})") from None
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if "id" in entry:
        raise ManifestError(
            f"{where}: the key 'id' is reserved by SpeechBrain; name the utterance 'index'"
        )
    index = entry.pop("index", None)
    if isinstance(index, bool) or not isinstance(index, (str, int)) or not str(index).strip():
        raise ManifestError(f"{where}: missing or empty 'index' (a string)")
    wav_path = entry.get("wav_path")
    if not isinstance(wav_path, str) or not wav_path.strip():
        raise ManifestError(f"{where}: missing or empty 'wav_path' (a string)")
    for key in require_keys:
        if entry.get(key) is None:
            raise ManifestError(f"{where}: missing required key {key!r}")
    return str(index), entry


def _check_duration(duration, where):
    """Returns a manifest ``duration`` as a float, refusing non-numbers."""
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise ManifestError(f"{where}: 'duration' must be a number of seconds")
    if not math.isfinite(duration) or duration < 0:
        raise ManifestError(f"{where}: 'duration' must be a finite number >= 0, got {duration}")
    return float(duration)


def _file_duration(path, where):
    """Seconds of audio in ``path``, from its header only; a missing, unreadable or empty file is refused."""
    if not os.path.isfile(path):
        raise ManifestError(f"{where}: no such audio file {path}")
    try:
        info = soundfile.info(path)
    except Exception as err:  # soundfile raises several types
        raise ManifestError(f"{where}: cannot read the audio header of {path} ({err})") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise ManifestError(f"{where}: {path} holds no samples")
    return info.frames / info.samplerate


def segment_length(sample_rate, hop_length, duration):
    """Samples in ``duration`` seconds rounded down to the hop: floor(sr*d/hop)*hop.

    Example
    -------
    >>> segment_length(16000, 320, 2.4), segment_length(24000, 480, 2.4)
    (38400, 57600)
    """
    # The tolerance keeps e.g. 2.4 s from losing a hop to float rounding.
    return math.floor(sample_rate * duration / hop_length + 1e-6) * hop_length


def check_ssl_alignment(sample_rate, hop_length, ssl_context=1.0):
    """Raises ``ValueError`` unless 16 kHz wav2vec2 frames line up with the hops.

    One 20 ms wav2vec2 frame must cover exactly one hop (``sr = 50 * hop``),
    and the context must be whole frames, so that dropping
    ``ssl_context * 50`` frames lands exactly on the target's start
    (``None``, the whole utterance, always does).

    Example
    -------
    >>> check_ssl_alignment(24000, 480, 1.0)
    >>> check_ssl_alignment(24000, 480, None)
    >>> check_ssl_alignment(24000, 320)
    Traceback (most recent call last):
    ...
    ValueError: hop_length 320 at 24000 Hz is not one 20 ms wav2vec2 frame (need 480)
    """
    if sample_rate != SSL_FRAME_RATE * hop_length:
        raise ValueError(
            f"hop_length {hop_length} at {sample_rate} Hz is not one 20 ms wav2vec2 "
            f"frame (need {sample_rate // SSL_FRAME_RATE})"
        )
    if ssl_context is None:
        return
    frames = ssl_context * SSL_FRAME_RATE
    if ssl_context < 0 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"ssl_context {ssl_context} s is not a whole number of 20 ms frames")


def load_utterance(path, sample_rate, hop_length, highpass_cutoff=40.0, volume_normalize=True):
    """Loads a file as the reference trainer does before cropping.

    Model-rate load with volume normalisation, length trimmed to a multiple
    of 4 hops, then a biquad high-pass (removes DC and rumble).

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int
        Model rate.
    hop_length : int
        Samples per token.
    highpass_cutoff : float or None
        Cutoff in Hz; ``None`` or 0 skips the filter.
    volume_normalize : bool
        Loudness normalisation (SparkVox always applies it; the recipes'
        ``volume_normalize`` sets it for training and inference alike).

    Returns
    -------
    torch.Tensor
        Waveform, shape (N,), N a positive multiple of ``4 * hop_length``.

    Raises
    ------
    AudioLoadError
        When the file cannot be read or is shorter than 4 hops.

    Example
    -------
    >>> import tempfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> soundfile.write(path, 0.1 * numpy.random.randn(5000), 16000)
    >>> load_utterance(path, 16000, 320).shape
    torch.Size([3840])
    """
    wav = read_audio_file(path, sample_rate, volume_norm=volume_normalize)
    chunk = 4 * hop_length
    usable = wav.shape[0] // chunk * chunk
    if usable == 0:
        raise AudioLoadError(
            f"{path}: shorter than 4 hops ({chunk} samples at {sample_rate} Hz); "
            "drop such files from the manifest or set min_duration"
        )
    wav = wav[:usable]
    if highpass_cutoff:
        wav = torchaudio.functional.highpass_biquad(wav, sample_rate, highpass_cutoff)
    return wav


def to_ssl_rate(wav, sample_rate):
    """Resamples a whole waveform (N,) to 16 kHz with soxr VHQ (identity at 16 kHz).

    Example
    -------
    >>> to_ssl_rate(torch.zeros(24000), 24000).shape
    torch.Size([16000])
    """
    if sample_rate == SSL_SAMPLE_RATE:
        return wav
    audio = resample(wav.double().numpy(), sample_rate, SSL_SAMPLE_RATE)
    return torch.from_numpy(audio).float()


def _window(wav, begin, end):
    """``wav[begin:end]`` with zeros wherever the range leaves the signal."""
    out = wav.new_zeros(end - begin)
    lo, hi = max(begin, 0), min(end, wav.shape[0])
    if hi > lo:
        out[lo - begin : hi - begin] = wav[lo:hi]
    return out


def _randint(high, generator):
    """A uniform integer in [0, high], from torch so that SpeechBrain seeding covers it."""
    return int(torch.randint(0, high + 1, (1,), generator=generator))


def _random_reference(source, ref_length, generator):
    """SparkVox's speaker clip: ``1 + ref_length // len`` copies when short, then a random crop."""
    if source.shape[0] < ref_length:
        source = source.repeat(ref_length // source.shape[0] + 1)
    ref_start = _randint(source.shape[0] - ref_length, generator)
    return source[ref_start : ref_start + ref_length]


def train_example(
    wav,
    sample_rate,
    hop_length,
    segment_duration=2.4,
    ref_segment_duration=6.0,
    ssl_context=1.0,
    generator=None,
):
    """Crops one training example from a loaded utterance (reference rules).

    Arguments
    ---------
    wav : torch.Tensor
        Processed utterance (see :func:`load_utterance`), shape (N,).
    sample_rate : int
        Model rate.
    hop_length : int
        Samples per token.
    segment_duration : float
        Target length in seconds, rounded down to the hop.
    ref_segment_duration : float
        Speaker reference length in seconds.
    ssl_context : float or None
        Seconds of real context on each side of the 16 kHz window; ``None``:
        the whole utterance, with the target starting on the hop grid.
    generator : torch.Generator, optional
        Source of randomness (tests); the global torch RNG otherwise.

    Returns
    -------
    dict
        ``wav`` (S,), ``ref_wav`` (int(sr * ref_segment_duration),),
        ``ssl_wav`` (S * 16000 / sr + 2 * context samples,; with ``None``
        the utterance at 16 kHz and 80 zeros, so that its last hop has a
        frame), ints ``ssl_drop_frames`` (the frames before the target) and
        ``num_frames`` (S // hop), and ``start``, the target's first sample
        in the utterance.

    Example
    -------
    >>> item = train_example(torch.randn(24000 * 3), 24000, 480)
    >>> [tuple(item[k].shape) for k in ("wav", "ref_wav", "ssl_wav")]
    [(57600,), (144000,), (70400,)]
    >>> item["ssl_drop_frames"], item["num_frames"]
    (50, 120)
    >>> item = train_example(torch.randn(24000 * 3), 24000, 480, ssl_context=None)
    >>> item["ssl_wav"].shape, item["ssl_drop_frames"] == item["start"] // 480
    (torch.Size([48080]), True)
    """
    num_samples = wav.shape[0]
    seg = segment_length(sample_rate, hop_length, segment_duration)
    if num_samples >= seg and ssl_context is None:
        # The whole utterance's frame grid: the target starts on a hop.
        start = hop_length * _randint((num_samples - seg) // hop_length, generator)
    elif num_samples >= seg:
        # Any sample may start the target, as in SparkVox.
        start = _randint(num_samples - seg, generator)
    else:
        # SparkVox pads the utterance itself: the speaker clip below tiles
        # the padded waveform, silence gaps included.
        start = 0
        wav = torch.nn.functional.pad(wav, (0, seg - num_samples))
        num_samples = seg
    target = wav[start : start + seg]

    source = wav
    if num_samples > 2 * seg:
        # Hide the target from the speaker branch so it cannot leak content.
        source = wav.clone()
        source[start : start + seg] = 0
    ref = _random_reference(source, int(sample_rate * ref_segment_duration), generator)

    if ssl_context is None:
        whole = to_ssl_rate(wav, sample_rate)
        ssl = torch.nn.functional.pad(whole, (0, SSL_RECEPTIVE_FIELD - SSL_HOP))
        return {
            "wav": target,
            "ref_wav": ref,
            "ssl_wav": ssl,
            "ssl_drop_frames": start // hop_length,
            "num_frames": seg // hop_length,
            "start": start,
        }
    # Resample the whole utterance, then map the crop (C.3): with sr = 50 * hop
    # the mapped start is a whole 320-sample frame and the length is fixed.
    drop_frames = round(ssl_context * SSL_FRAME_RATE)
    context = drop_frames * SSL_HOP
    ssl_begin = start * SSL_SAMPLE_RATE // sample_rate - context
    ssl_end = (start + seg) * SSL_SAMPLE_RATE // sample_rate + context
    ssl = _window(to_ssl_rate(wav, sample_rate), ssl_begin, ssl_end)
    return {
        "wav": target,
        "ref_wav": ref,
        "ssl_wav": ssl,
        "ssl_drop_frames": drop_frames,
        "num_frames": seg // hop_length,
        "start": start,
    }


def valid_example(
    wav,
    sample_rate,
    hop_length,
    ref_segment_duration=6.0,
    max_valid_duration=12.0,
    valid_reference="first",
    generator=None,
):
    """Builds one validation example: the utterance from 0.

    Length is min(whole seconds, ``max_valid_duration``) rounded down to the
    hop; an utterance under one second is kept whole (the reference would
    give an empty item). The speaker clip is the first 6 s, tiled if short
    (the inference rule, repeatable), or with ``valid_reference="random"`` a
    random crop as SparkVox takes; the 16 kHz window has no context.

    Arguments
    ---------
    wav : torch.Tensor
        Processed utterance (see :func:`load_utterance`), shape (N,).
    sample_rate : int
        Model rate.
    hop_length : int
        Samples per token.
    ref_segment_duration : float
        Speaker reference length in seconds (rounded down to the hop).
    max_valid_duration : float
        Longest validation item in seconds.
    valid_reference : str
        ``"first"`` (first 6 s) or ``"random"`` (SparkVox's random crop).
    generator : torch.Generator, optional
        Source of randomness for ``"random"``.

    Returns
    -------
    dict
        Same keys as :func:`train_example`; ``ssl_drop_frames`` is 0.

    Example
    -------
    >>> item = valid_example(torch.randn(16000 * 3 + 700), 16000, 320)
    >>> item["wav"].shape, item["ssl_wav"].shape, item["num_frames"]
    (torch.Size([48000]), torch.Size([48000]), 150)
    """
    num_samples = wav.shape[0]
    seconds = min(num_samples // sample_rate, max_valid_duration)
    length = int(seconds * sample_rate) if seconds > 0 else num_samples
    length = max(min(length, num_samples) // hop_length, 1) * hop_length
    target = _window(wav, 0, length)
    if valid_reference == "first":
        ref_length = reference_clip_length(sample_rate, hop_length, ref_segment_duration)
        ref = reference_clip(wav, ref_length)
    elif valid_reference == "random":
        ref = _random_reference(wav, int(sample_rate * ref_segment_duration), generator)
    else:
        raise ValueError(f"valid_reference must be 'first' or 'random', got {valid_reference!r}")
    ssl = _window(to_ssl_rate(wav, sample_rate), 0, length * SSL_SAMPLE_RATE // sample_rate)
    return {
        "wav": target,
        "ref_wav": ref,
        "ssl_wav": ssl,
        "ssl_drop_frames": 0,
        "num_frames": length // hop_length,
        "start": 0,
    }


def train_pipeline(
    sample_rate,
    hop_length,
    segment_duration=2.4,
    ref_segment_duration=6.0,
    ssl_context=1.0,
    highpass_cutoff=40.0,
    generator=None,
    volume_normalize=True,
):
    """Dynamic item ``wav_path`` -> ``wav, ref_wav, ssl_wav, ssl_drop_frames, num_frames``.

    See :func:`load_utterance` and :func:`train_example` for the arguments.
    Pass a ``generator`` only with ``num_workers=0``: each DataLoader worker
    would get a copy of it and draw the same crops.

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        To give to ``DynamicItemDataset(dynamic_items=[...])``.

    Example
    -------
    >>> list(train_pipeline(16000, 320).provides)
    ['wav', 'ref_wav', 'ssl_wav', 'ssl_drop_frames', 'num_frames']
    """

    @takes("wav_path")
    @provides(*ITEM_KEYS)
    def pipeline(wav_path):
        wav = load_utterance(wav_path, sample_rate, hop_length, highpass_cutoff, volume_normalize)
        item = train_example(
            wav,
            sample_rate,
            hop_length,
            segment_duration,
            ref_segment_duration,
            ssl_context,
            generator,
        )
        return tuple(item[key] for key in ITEM_KEYS)

    return pipeline


def valid_pipeline(
    sample_rate,
    hop_length,
    ref_segment_duration=6.0,
    max_valid_duration=12.0,
    highpass_cutoff=40.0,
    volume_normalize=True,
    valid_reference="first",
):
    """Dynamic item like :func:`train_pipeline`, with :func:`valid_example` crops.

    Example
    -------
    >>> list(valid_pipeline(24000, 480).takes)
    ['wav_path']
    """

    @takes("wav_path")
    @provides(*ITEM_KEYS)
    def pipeline(wav_path):
        wav = load_utterance(wav_path, sample_rate, hop_length, highpass_cutoff, volume_normalize)
        item = valid_example(
            wav, sample_rate, hop_length, ref_segment_duration, max_valid_duration, valid_reference
        )
        return tuple(item[key] for key in ITEM_KEYS)

    return pipeline


def build_datasets(
    train_manifests,
    valid_manifests,
    sample_rate,
    hop_length,
    segment_duration=2.4,
    ref_segment_duration=6.0,
    ssl_context=1.0,
    max_valid_duration=12.0,
    highpass_cutoff=40.0,
    min_duration=None,
    generator=None,
    volume_normalize=True,
    valid_reference="first",
):
    """Training and validation datasets from manifests (SparkVox item rules).

    Output keys: ``id, wav, ref_wav, ssl_wav, ssl_drop_frames, num_frames``.
    Train items have fixed shapes and stack; validation items vary in
    length and are padded by the default ``PaddedBatch`` collation.

    Arguments
    ---------
    train_manifests : str or list of str
        JSON-Lines manifests (see :func:`read_manifests`).
    valid_manifests : str or list of str or None
        Same for validation; ``None`` or empty gives no validation set.
    sample_rate : int
        Model rate (16000 or 24000 for the released configurations).
    hop_length : int
        Samples per token (``sample_rate / 50``).
    segment_duration : float
        Training target, seconds.
    ref_segment_duration : float
        Speaker reference, seconds.
    ssl_context : float or None
        Front-end context per side for training items, seconds; ``None``:
        the whole utterance (position-dependent front-ends such as Whisper).
    max_valid_duration : float
        Longest validation item, seconds.
    highpass_cutoff : float or None
        High-pass cutoff in Hz; ``None`` skips the filter.
    min_duration : float, optional
        Drop manifest entries shorter than this many seconds (both sets).
    generator : torch.Generator, optional
        For reproducible crops in tests (``num_workers=0`` only).
    volume_normalize : bool
        Loudness-normalise every utterance (SparkVox: always).
    valid_reference : str
        Validation speaker clip: ``"first"`` 6 s or ``"random"`` crop.

    Returns
    -------
    train_set : speechbrain.dataio.dataset.DynamicItemDataset
    valid_set : speechbrain.dataio.dataset.DynamicItemDataset or None

    Example
    -------
    >>> import tempfile, numpy
    >>> folder = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(folder, "a.wav"), 0.1 * numpy.random.randn(48000), 16000)
    >>> manifest = os.path.join(folder, "train.jsonl")
    >>> with open(manifest, "w") as f:
    ...     _ = f.write('{"index": "a", "wav_path": "a.wav"}\\n')
    >>> train_set, valid_set = build_datasets(manifest, None, 16000, 320)
    >>> item = train_set[0]
    >>> item["id"], item["wav"].shape, item["ssl_wav"].shape, valid_set
    ('a', torch.Size([38400]), torch.Size([70400]), None)
    """
    check_ssl_alignment(sample_rate, hop_length, ssl_context)
    train_items = train_pipeline(
        sample_rate,
        hop_length,
        segment_duration,
        ref_segment_duration,
        ssl_context,
        highpass_cutoff,
        generator,
        volume_normalize,
    )
    train_set = _make_dataset(train_manifests, train_items, min_duration)
    valid_set = None
    if valid_manifests:
        valid_items = valid_pipeline(
            sample_rate,
            hop_length,
            ref_segment_duration,
            max_valid_duration,
            highpass_cutoff,
            volume_normalize,
            valid_reference,
        )
        valid_set = _make_dataset(valid_manifests, valid_items, min_duration)
    return train_set, valid_set


def _make_dataset(manifests, dynamic_item, min_duration):
    """A ``DynamicItemDataset`` over manifests, optionally without short items."""
    origins = {}
    data = read_manifests(manifests, origins=origins, check_files=True)
    if not data:
        # DynamicItemDataset cannot be built from an empty dict.
        raise ManifestError(f"{manifests}: no items in the manifest(s)")
    lines = {entry["wav_path"]: origins[index] for index, entry in data.items()}
    dynamic_item = _naming_manifest_line(dynamic_item, lines)
    dataset = DynamicItemDataset(data, dynamic_items=[dynamic_item], output_keys=OUTPUT_KEYS)
    if min_duration is not None:
        dataset = dataset.filtered_sorted(key_min_value={"duration": min_duration})
    return dataset


def _naming_manifest_line(dynamic_item, lines):
    """The same dynamic item, whose audio errors also name the manifest line.

    The up-front check reads only headers; a file that is damaged further in
    (or deleted since) fails when a batch needs it, and the error then says
    ``<manifest>:<line>: <file>: <problem>``.
    """
    func = dynamic_item.func

    def pipeline(wav_path):
        try:
            return func(wav_path)
        except AudioLoadError as err:
            raise AudioLoadError(f"{lines.get(wav_path, '?')}: {err}") from err

    return DynamicItem(takes=dynamic_item.takes, func=pipeline, provides=dynamic_item.provides)
