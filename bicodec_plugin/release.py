"""The Spark-TTS release layout <-> this package.

A release folder (``SparkAudio/Spark-TTS-0.5B``) holds ``config.yaml``,
``BiCodec/config.yaml`` (an ``audio_tokenizer:`` block), ``BiCodec/model.safetensors``
(reference key names, weight norm as ``weight_g``/``weight_v``) and
``wav2vec2-large-xlsr-53/``. This module builds :class:`~bicodec_plugin.model.BiCodec`
from such a config, maps keys both ways, and loads weights strictly: the
weight-norm pair and an already-folded ``weight`` are both accepted, the mel
buffers may be present or not, anything else missing, extra or mis-shaped is
refused with the full list.

Authors
 * BiCodec plugin authors 2026
"""

import copy
import os

import torch
import yaml

from bicodec_plugin.lobes.decoder import FeatureDecoder, WaveGenerator
from bicodec_plugin.lobes.encoder import SemanticEncoder
from bicodec_plugin.lobes.frontends import LinearMelSpectrogram, Wav2Vec2LayerMix
from bicodec_plugin.lobes.layers import fold_weight_norm
from bicodec_plugin.lobes.quantizers import FactorizedVectorQuantize
from bicodec_plugin.lobes.speaker import SpeakerEncoder
from bicodec_plugin.model import BiCodec

WN_G = ".parametrizations.weight.original0"
WN_V = ".parametrizations.weight.original1"
# Buffers a release file may or may not carry (they are recomputed anyway).
OPTIONAL_KEYS = ("mel_transformer.spectrogram.window", "mel_transformer.mel_scale.fb")
SSL_FOLDER = "wav2vec2-large-xlsr-53"
SSL_LAYERS = (11, 14, 16)


class ReleaseLoadError(RuntimeError):
    """A release folder or weight file does not match the model."""


RELEASED_16K = {
    "mel_params": {
        "sample_rate": 16000,
        "n_fft": 1024,
        "win_length": 640,
        "hop_length": 320,
        "mel_fmin": 10,
        "mel_fmax": None,
        "num_mels": 128,
    },
    "encoder": {
        "input_channels": 1024,
        "vocos_dim": 384,
        "vocos_intermediate_dim": 2048,
        "vocos_num_layers": 12,
        "out_channels": 1024,
        "sample_ratios": [1, 1],
    },
    "decoder": {
        "input_channel": 1024,
        "channels": 1536,
        "rates": [8, 5, 4, 2],
        "kernel_sizes": [16, 11, 8, 4],
    },
    "quantizer": {
        "input_dim": 1024,
        "codebook_size": 8192,
        "codebook_dim": 8,
        "commitment": 0.25,
        "codebook_loss_weight": 2.0,
        "use_l2_normlize": True,
        "threshold_ema_dead_code": 0.2,
    },
    "speaker_encoder": {
        "input_dim": 128,
        "out_dim": 1024,
        "latent_dim": 128,
        "token_num": 32,
        "fsq_levels": [4, 4, 4, 4, 4, 4],
        "fsq_num_quantizers": 1,
    },
    "prenet": {
        "input_channels": 1024,
        "vocos_dim": 384,
        "vocos_intermediate_dim": 2048,
        "vocos_num_layers": 12,
        "out_channels": 1024,
        "condition_dim": 1024,
        "sample_ratios": [1, 1],
        "use_tanh_at_final": False,
    },
    "postnet": {
        "input_channels": 1024,
        "vocos_dim": 384,
        "vocos_intermediate_dim": 2048,
        "vocos_num_layers": 6,
        "out_channels": 1024,
        "use_tanh_at_final": False,
    },
    "sample_rate": 16000,
    "ref_segment_duration": 6,
    "latent_hop_length": 320,
    "volume_normalize": True,
}


def released_config():
    """The released 16 kHz ``audio_tokenizer`` config (plus top-level keys), a copy.

    Example
    -------
    >>> released_config()["quantizer"]["codebook_size"]
    8192
    """
    return copy.deepcopy(RELEASED_16K)


def tiny_config():
    """A small config of the same architecture (the sizes of the tiny test release).

    Example
    -------
    >>> tiny_config()["encoder"]["vocos_dim"]
    32
    """
    cfg = released_config()
    cfg["encoder"].update(
        input_channels=64,
        vocos_dim=32,
        vocos_intermediate_dim=64,
        vocos_num_layers=2,
        out_channels=32,
    )
    cfg["decoder"].update(input_channel=32, channels=64)
    cfg["quantizer"].update(input_dim=32, codebook_size=64, codebook_loss_weight=4.0)
    cfg["speaker_encoder"].update(out_dim=32, latent_dim=16)
    cfg["prenet"].update(
        input_channels=32,
        vocos_dim=32,
        vocos_intermediate_dim=64,
        vocos_num_layers=2,
        out_channels=32,
        condition_dim=32,
    )
    cfg["postnet"].update(
        input_channels=32,
        vocos_dim=32,
        vocos_intermediate_dim=64,
        vocos_num_layers=1,
        out_channels=64,
    )
    return cfg


def build_bicodec(config, ssl=None, with_postnet=True):
    """Builds an (untrained) BiCodec from a release-style config dict.

    Arguments
    ---------
    config : dict
        ``audio_tokenizer`` block (``mel_params``, ``encoder``, ``decoder``,
        ``quantizer``, ``speaker_encoder``, ``prenet``, ``postnet``), optionally
        with the top-level keys ``sample_rate`` and ``ref_segment_duration``.
    ssl : torch.nn.Module, optional
        wav2vec2 front-end to attach.
    with_postnet : bool
        Build the postnet (a training aid; inference can skip it).

    Returns
    -------
    BiCodec

    Example
    -------
    >>> codec = build_bicodec(tiny_config())
    >>> codec.hop_length, codec.ref_length
    (320, 96000)
    """
    mel = dict(config["mel_params"])
    sample_rate = int(config.get("sample_rate", mel["sample_rate"]))
    model = BiCodec(
        mel_transformer=LinearMelSpectrogram(**mel),
        encoder=SemanticEncoder(**config["encoder"]),
        quantizer=FactorizedVectorQuantize(**config["quantizer"]),
        speaker_encoder=SpeakerEncoder(**config["speaker_encoder"]),
        prenet=FeatureDecoder(**config["prenet"]),
        decoder=WaveGenerator(**config["decoder"]),
        postnet=FeatureDecoder(**config["postnet"]) if with_postnet else None,
        ssl=ssl,
        sample_rate=sample_rate,
        ref_segment_duration=float(config.get("ref_segment_duration", 6)),
    )
    hop = config.get("latent_hop_length")
    if hop is not None and int(hop) != model.hop_length:
        raise ReleaseLoadError(
            f"latent_hop_length {hop} differs from the decoder's upsampling {model.hop_length}"
        )
    return model


def read_release_config(folder):
    """Reads ``config.yaml`` and ``BiCodec/config.yaml`` of a release folder.

    Returns
    -------
    dict
        The ``audio_tokenizer`` block updated with the top-level keys.
    """
    top_path = os.path.join(folder, "config.yaml")
    codec_path = os.path.join(folder, "BiCodec", "config.yaml")
    for path in (top_path, codec_path):
        if not os.path.isfile(path):
            raise ReleaseLoadError(f"{path}: missing (not a Spark-TTS release folder?)")
    with open(codec_path, encoding="utf-8") as fin:
        codec_cfg = yaml.safe_load(fin) or {}
    if "audio_tokenizer" not in codec_cfg:
        raise ReleaseLoadError(f"{codec_path}: no 'audio_tokenizer' block")
    config = dict(codec_cfg["audio_tokenizer"])
    with open(top_path, encoding="utf-8") as fin:
        top = yaml.safe_load(fin) or {}
    for key in ("sample_rate", "ref_segment_duration", "latent_hop_length", "volume_normalize"):
        if key in top:
            config[key] = top[key]
    return config


# ------------------------------------------------------------------ key mapping
def to_release_key(key):
    """Our state-dict key -> the reference's.

    Example
    -------
    >>> to_release_key("decoder.model.0.parametrizations.weight.original0")
    'decoder.model.0.weight_g'
    """
    if key.endswith(WN_G):
        return key[: -len(WN_G)] + ".weight_g"
    if key.endswith(WN_V):
        return key[: -len(WN_V)] + ".weight_v"
    return key


def release_state_dict(model):
    """The model's weights under the reference's key names (weight-norm form if unfolded).

    Example
    -------
    >>> sd = release_state_dict(build_bicodec(tiny_config()))
    >>> "quantizer.in_project.weight_g" in sd
    True
    """
    return {to_release_key(k): v for k, v in model.codec_state_dict().items()}


def _norm_except_dim0(weight):
    return weight.norm(dim=tuple(range(1, weight.dim())), keepdim=True)


def convert_release_state(model, release_state):
    """Maps a reference state dict onto ``model``'s keys, checking everything.

    ``weight_g``/``weight_v`` pairs feed weight-normed layers directly and are
    folded (``g * v / ||v||``, as the reference's ``remove_weight_norm``) for
    folded layers; a folded ``weight`` feeds folded layers directly and a
    weight-normed layer as ``g = ||w||``, ``v = w``.

    Arguments
    ---------
    model : BiCodec
        Target model (weight norm folded or not).
    release_state : dict
        Reference key -> tensor.

    Returns
    -------
    dict
        State dict for ``model.load_state_dict(..., strict=False)`` (the
        optional mel buffers may be absent).

    Raises
    ------
    ReleaseLoadError
        Listing every missing, unexpected and mis-shaped tensor.
    """
    target = model.codec_state_dict()
    source = dict(release_state)
    used = set()
    converted, missing, shapes = {}, [], []

    def take(name):
        used.add(name)
        return source[name]

    for key, ref in target.items():
        if key.endswith(WN_G) or key.endswith(WN_V):
            base = key[: -len(WN_G)]
            if base + ".weight_g" in source and base + ".weight_v" in source:
                value = take(base + (".weight_g" if key.endswith(WN_G) else ".weight_v"))
            elif base + ".weight" in source:
                weight = take(base + ".weight")
                value = _norm_except_dim0(weight) if key.endswith(WN_G) else weight
            else:
                missing.append(to_release_key(key))
                continue
        elif key.endswith(".weight") and key not in source and key + "_g" in source:
            base = key[: -len(".weight")]
            if base + ".weight_v" not in source:
                missing.append(base + ".weight_v")
                continue
            g, v = take(base + ".weight_g"), take(base + ".weight_v")
            if g.dim() != v.dim():
                shapes.append(f"{base}.weight_g: {tuple(g.shape)} vs weight_v {tuple(v.shape)}")
                continue
            value = torch._weight_norm(v, g, 0)
        elif key in source:
            value = take(key)
        elif key in OPTIONAL_KEYS:
            continue
        else:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(ref.shape):
            shapes.append(
                f"{to_release_key(key)}: file {tuple(value.shape)}, model {tuple(ref.shape)}"
            )
            continue
        converted[key] = value.to(ref.dtype)
    unexpected = sorted(set(source) - used - set(converted))
    if missing or unexpected or shapes:
        lines = []
        if missing:
            lines.append(f"missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        if shapes:
            lines.append(f"mis-shaped tensors ({len(shapes)}): " + "; ".join(shapes))
        raise ReleaseLoadError("weights do not match the model:\n  " + "\n  ".join(lines))
    return converted


def load_release_weights(model, path):
    """Loads ``BiCodec/model.safetensors`` (safetensors only) into ``model``.

    Arguments
    ---------
    model : BiCodec
        Built from the same config.
    path : str
        Path of the ``.safetensors`` file.
    """
    from safetensors.torch import load_file

    if not path.endswith(".safetensors"):
        raise ReleaseLoadError(f"{path}: only .safetensors weight files are loaded")
    if not os.path.isfile(path):
        raise ReleaseLoadError(f"{path}: missing weight file")
    try:
        state = load_file(path)
    except Exception as err:
        raise ReleaseLoadError(f"{path}: cannot read safetensors file ({err})") from err
    if model.postnet is None:
        state = {k: v for k, v in state.items() if not k.startswith("postnet.")}
    try:
        converted = convert_release_state(model, state)
    except ReleaseLoadError as err:
        raise ReleaseLoadError(f"{path}: {err}") from None
    result = model.load_state_dict(converted, strict=False)
    leftover = [
        k for k in result.missing_keys if k not in OPTIONAL_KEYS and not k.startswith("ssl.")
    ]
    if leftover or result.unexpected_keys:
        raise ReleaseLoadError(f"{path}: internal key mismatch {leftover} {result.unexpected_keys}")


def load_release(folder, fold=True, with_ssl=True, with_postnet=False, ssl_truncate=True):
    """Builds BiCodec and loads a Spark-TTS-style release folder.

    Arguments
    ---------
    folder : str
        Release folder (``config.yaml``, ``BiCodec/``, ``wav2vec2-large-xlsr-53/``).
    fold : bool
        Fold weight norm (inference); ``False`` keeps ``g``/``v`` for training.
    with_ssl : bool
        Attach the wav2vec2 front-end from ``wav2vec2-large-xlsr-53/``.
    with_postnet : bool
        Build and load the postnet (training only).
    ssl_truncate : bool
        Run only the wav2vec2 layers needed (``False``: all, a baseline).

    Returns
    -------
    model : BiCodec
        In eval mode.
    config : dict
        The release config.
    """
    if not os.path.isdir(folder):
        raise ReleaseLoadError(f"{folder}: not a folder")
    config = read_release_config(folder)
    ssl = None
    if with_ssl:
        ssl_dir = os.path.join(folder, SSL_FOLDER)
        if not os.path.isdir(ssl_dir):
            raise ReleaseLoadError(f"{ssl_dir}: missing wav2vec2 folder")
        ssl = Wav2Vec2LayerMix(ssl_dir, layers=SSL_LAYERS, truncate=ssl_truncate)
    model = build_bicodec(config, ssl=ssl, with_postnet=with_postnet)
    if fold:
        fold_weight_norm(model)
    load_release_weights(model, os.path.join(folder, "BiCodec", "model.safetensors"))
    return model.eval(), config


def save_release(model, folder, config, ssl_source=None):
    """Writes ``model`` in the release layout (weight-norm form if unfolded).

    Arguments
    ---------
    model : BiCodec
        Model to save.
    folder : str
        Output folder.
    config : dict
        Its release-style config.
    ssl_source : str, optional
        A wav2vec2 folder to copy as ``wav2vec2-large-xlsr-53/``.
    """
    import shutil

    from safetensors.torch import save_file

    os.makedirs(os.path.join(folder, "BiCodec"), exist_ok=True)
    top_keys = ("sample_rate", "ref_segment_duration", "latent_hop_length", "volume_normalize")
    top = {k: config[k] for k in top_keys if k in config}
    block = {k: v for k, v in config.items() if k not in top_keys}
    with open(os.path.join(folder, "config.yaml"), "w", encoding="utf-8") as fout:
        yaml.safe_dump(top, fout, sort_keys=False)
    with open(os.path.join(folder, "BiCodec", "config.yaml"), "w", encoding="utf-8") as fout:
        yaml.safe_dump({"audio_tokenizer": block, **top}, fout, sort_keys=False)
    state = {k: v.detach().contiguous() for k, v in release_state_dict(model).items()}
    save_file(state, os.path.join(folder, "BiCodec", "model.safetensors"))
    if ssl_source is not None:
        shutil.copytree(ssl_source, os.path.join(folder, SSL_FOLDER), dirs_exist_ok=True)
