"""The Spark-TTS release layout <-> this package.

A release folder (``SparkAudio/Spark-TTS-0.5B``) holds ``config.yaml``,
``BiCodec/config.yaml`` (an ``audio_tokenizer:`` block), ``BiCodec/model.safetensors``
(reference key names, weight norm as ``weight_g``/``weight_v``) and
``wav2vec2-large-xlsr-53/``. This module builds :class:`~bicodec_plugin.codec.model.BiCodec`
from such a config, maps keys both ways, and loads weights strictly: the
weight-norm pair and an already-folded ``weight`` are both accepted, the mel
buffers may be present or not, anything else missing, extra or mis-shaped is
refused with the full list.

Authors
 * BiCodec plugin authors 2026
"""

import copy
import math
import os
from contextlib import nullcontext

import yaml

from bicodec_plugin.arch import arch_defaults, build_codec, load_arch
from bicodec_plugin.codec.audio import SSL_HOP, SSL_SAMPLE_RATE
from bicodec_plugin.codec.lobes.layers import (
    defer_weight_norm_fold,
    fold_weight_norm,
    skip_parameter_init,
)
from bicodec_plugin.formats.weights import (  # noqa: F401  (re-exported)
    ReleaseLoadError,
    load_codec_weights,
    release_state_dict,
)

SSL_FOLDER = "wav2vec2-large-xlsr-53"
# Semantic tokens per second: one per 20 ms wav2vec2 frame, so the model rate
# is 50 x the decoder's upsampling (320 -> 16 kHz, 480 -> 24 kHz).
TOKEN_RATE = SSL_SAMPLE_RATE // SSL_HOP


# Where each value of a Spark-TTS ``audio_tokenizer`` config lands in
# bicodec_plugin/arch/codec.yaml. Several release entries map to one key (the
# latent width appears six times); they must agree.
RELEASE_TO_ARCH = (
    (("sample_rate",), "sample_rate"),
    (("ref_segment_duration",), "ref_segment_duration"),
    (("volume_normalize",), "volume_normalize"),
    (("mel_params", "sample_rate"), "sample_rate"),
    (("mel_params", "n_fft"), "mel_n_fft"),
    (("mel_params", "win_length"), "mel_win_length"),
    (("mel_params", "hop_length"), "mel_hop_length"),
    (("mel_params", "mel_fmin"), "mel_fmin"),
    (("mel_params", "mel_fmax"), "mel_fmax"),
    (("mel_params", "num_mels"), "n_mels"),
    (("encoder", "input_channels"), "ssl_dim"),
    (("encoder", "vocos_dim"), "vocos_dim"),
    (("encoder", "vocos_intermediate_dim"), "vocos_intermediate_dim"),
    (("encoder", "vocos_num_layers"), "encoder_layers"),
    (("encoder", "out_channels"), "latent_dim"),
    (("encoder", "sample_ratios"), "sample_ratios"),
    (("decoder", "input_channel"), "latent_dim"),
    (("decoder", "channels"), "decoder_channels"),
    (("decoder", "rates"), "decoder_rates"),
    (("decoder", "kernel_sizes"), "decoder_kernel_sizes"),
    (("quantizer", "input_dim"), "latent_dim"),
    (("quantizer", "codebook_size"), "codebook_size"),
    (("quantizer", "codebook_dim"), "codebook_dim"),
    (("quantizer", "commitment"), "commitment"),
    (("quantizer", "codebook_loss_weight"), "codebook_loss_weight"),
    (("quantizer", "threshold_ema_dead_code"), "threshold_ema_dead_code"),
    (("speaker_encoder", "input_dim"), "n_mels"),
    (("speaker_encoder", "out_dim"), "latent_dim"),
    (("speaker_encoder", "latent_dim"), "speaker_latent_dim"),
    (("speaker_encoder", "token_num"), "global_token_num"),
    (("speaker_encoder", "fsq_levels"), "fsq_levels"),
    (("speaker_encoder", "fsq_num_quantizers"), "fsq_num_quantizers"),
    (("prenet", "input_channels"), "latent_dim"),
    (("prenet", "vocos_dim"), "vocos_dim"),
    (("prenet", "vocos_intermediate_dim"), "vocos_intermediate_dim"),
    (("prenet", "vocos_num_layers"), "prenet_layers"),
    (("prenet", "out_channels"), "latent_dim"),
    (("prenet", "condition_dim"), "latent_dim"),
    (("prenet", "sample_ratios"), "sample_ratios"),
    (("postnet", "input_channels"), "latent_dim"),
    (("postnet", "vocos_dim"), "vocos_dim"),
    (("postnet", "vocos_intermediate_dim"), "vocos_intermediate_dim"),
    (("postnet", "vocos_num_layers"), "postnet_layers"),
    (("postnet", "out_channels"), "ssl_dim"),
)
# Release entries our lobes implement with one value only.
RELEASE_FIXED = {
    ("quantizer", "use_l2_normlize"): True,
    ("prenet", "use_tanh_at_final"): False,
    ("postnet", "use_tanh_at_final"): False,
}
RELEASE_BLOCKS = ("mel_params", "encoder", "decoder", "quantizer", "speaker_encoder", "prenet")
# Top-level keys of the release's config.yaml (read at inference, or training-only).
TOP_KEYS = ("sample_rate", "ref_segment_duration", "latent_hop_length", "volume_normalize")


def release_to_arch(config, where="config"):
    """Maps a Spark-TTS ``audio_tokenizer`` config onto ``codec.yaml`` keys.

    Arguments
    ---------
    config : dict
        The block (``mel_params``, ``encoder``, ``decoder``, ``quantizer``,
        ``speaker_encoder``, ``prenet``, optionally ``postnet``), with the
        top-level keys of :data:`TOP_KEYS` merged in.
    where : str
        Names the source in errors.

    Returns
    -------
    dict
        Overrides for :func:`bicodec_plugin.arch.build_codec`.

    Raises
    ------
    ReleaseLoadError
        A block or entry is missing, unknown, not a mapping, or two entries
        that must agree (e.g. the latent width) differ.

    Example
    -------
    >>> arch = release_to_arch(released_config())
    >>> arch["decoder_rates"], arch["latent_dim"]
    ([8, 5, 4, 2], 1024)
    """
    if not isinstance(config, dict):
        raise ReleaseLoadError(f"{where}: not a mapping")
    for block in RELEASE_BLOCKS:
        if not isinstance(config.get(block), dict):
            raise ReleaseLoadError(f"{where}: '{block}' is missing or not a mapping")
    if "postnet" in config and not isinstance(config["postnet"], dict):
        raise ReleaseLoadError(f"{where}: 'postnet' is not a mapping")
    known = {path for path, _ in RELEASE_TO_ARCH} | set(RELEASE_FIXED)
    for block in (*RELEASE_BLOCKS, "postnet"):
        for key in config.get(block, {}):
            if (block, key) not in known:
                raise ReleaseLoadError(f"{where}: unsupported entry {block}.{key}")
    arch, source = {}, {}
    missing = object()
    for path, key in RELEASE_TO_ARCH:
        node = config
        for part in path:
            node = node.get(part, missing) if isinstance(node, dict) else missing
        if node is missing:
            if path[0] in ("postnet", "sample_rate", "ref_segment_duration", "volume_normalize"):
                continue  # optional: postnet-less files, defaults
            raise ReleaseLoadError(f"{where}: missing entry {'.'.join(path)}")
        if key in arch and arch[key] != node:
            raise ReleaseLoadError(
                f"{where}: {'.'.join(path)} = {node!r} disagrees with "
                f"{source[key]} = {arch[key]!r} (both are '{key}' in this model)"
            )
        arch[key], source[key] = node, ".".join(path)
    for path, value in RELEASE_FIXED.items():
        got = config.get(path[0], {}).get(path[1], value)
        if got != value:
            raise ReleaseLoadError(f"{where}: {'.'.join(path)} = {got!r} is not supported")
    _check_top_values(config, where)
    hop = config.get("latent_hop_length")
    if hop is not None and int(hop) != math.prod(arch["decoder_rates"]):
        raise ReleaseLoadError(
            f"{where}: latent_hop_length {hop} differs from the decoder's upsampling "
            f"{math.prod(arch['decoder_rates'])} (rates {arch['decoder_rates']})"
        )
    upsampling = math.prod(arch["decoder_rates"])
    if arch["sample_rate"] != TOKEN_RATE * upsampling:
        raise ReleaseLoadError(
            f"{where}: sample_rate {arch['sample_rate']} does not match the decoder, whose "
            f"rates {arch['decoder_rates']} give {upsampling} samples per token, i.e. "
            f"{TOKEN_RATE * upsampling} Hz at {TOKEN_RATE} tokens/s (320 -> 16000, 480 -> 24000)"
        )
    return arch


def _check_top_values(config, where):
    """Types of the top-level values (a string ``"no"`` must not read as True)."""
    checks = {
        "sample_rate": (lambda v: isinstance(v, int) and v > 0, "a positive integer (Hz)"),
        "latent_hop_length": (lambda v: isinstance(v, int) and v > 0, "a positive integer"),
        "ref_segment_duration": (
            lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0,
            "a positive number of seconds",
        ),
        "volume_normalize": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, (valid, what) in checks.items():
        value = config.get(key)
        if value is None:
            continue
        if (isinstance(value, bool) and key != "volume_normalize") or not valid(value):
            raise ReleaseLoadError(f"{where}: {key} must be {what}, got {value!r}")


def arch_to_release(arch):
    """The Spark-TTS config (``audio_tokenizer`` block + top-level keys) of ``codec.yaml`` values.

    Arguments
    ---------
    arch : dict
        Values of ``codec.yaml`` (missing keys take the file's defaults).

    Returns
    -------
    dict

    Example
    -------
    >>> arch_to_release({"decoder_rates": [8, 5, 4, 3]})["latent_hop_length"]
    480
    """
    values = {**arch_defaults("codec"), **arch}
    config = {}
    for path, key in RELEASE_TO_ARCH:
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = copy.deepcopy(values[key])
    for (block, key), value in RELEASE_FIXED.items():
        config[block][key] = value
    config["latent_hop_length"] = math.prod(values["decoder_rates"])
    return config


def released_config():
    """The released 16 kHz config: ``codec.yaml``'s values in the release's terms.

    Example
    -------
    >>> released_config()["quantizer"]["codebook_size"]
    8192
    """
    return arch_to_release({})


def build_bicodec(config, ssl=None, with_postnet=True, where="config"):
    """Builds an (untrained) BiCodec from a release-style config, through ``codec.yaml``.

    Arguments
    ---------
    config : dict
        See :func:`release_to_arch`.
    ssl : torch.nn.Module, optional
        Semantic front-end to attach.
    with_postnet : bool
        Build the postnet (a training aid; inference can skip it).
    where : str
        Names the config in errors.

    Returns
    -------
    BiCodec

    Example
    -------
    >>> codec = build_bicodec(released_config(), with_postnet=False)  # doctest: +SKIP
    """
    model = build_codec(release_to_arch(config, where), with_postnet=with_postnet)
    if ssl is not None:
        model.ssl = ssl
    return model


def _read_yaml_mapping(path):
    """A YAML file that must hold a mapping, with errors naming the file."""
    if not os.path.isfile(path):
        raise ReleaseLoadError(f"{path}: missing (not a Spark-TTS release folder?)")
    try:
        with open(path, encoding="utf-8") as fin:
            data = yaml.safe_load(fin)
    except yaml.YAMLError as err:
        raise ReleaseLoadError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ReleaseLoadError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data


def read_release_config(folder):
    """Reads ``config.yaml`` and ``BiCodec/config.yaml`` of a release folder.

    Returns
    -------
    dict
        The ``audio_tokenizer`` block updated with the top-level keys of
        ``config.yaml`` (:data:`TOP_KEYS`).
    """
    top_path = os.path.join(folder, "config.yaml")
    codec_path = os.path.join(folder, "BiCodec", "config.yaml")
    top = _read_yaml_mapping(top_path)
    _check_top_values(top, top_path)
    codec_cfg = _read_yaml_mapping(codec_path)
    if not isinstance(codec_cfg.get("audio_tokenizer"), dict):
        raise ReleaseLoadError(f"{codec_path}: no 'audio_tokenizer' mapping")
    config = dict(codec_cfg["audio_tokenizer"])
    mel_rate = (config.get("mel_params") or {}).get("sample_rate")
    if "sample_rate" in top and mel_rate is not None and top["sample_rate"] != mel_rate:
        raise ReleaseLoadError(
            f"{top_path}: sample_rate {top['sample_rate']} differs from {codec_path}: "
            f"mel_params.sample_rate {mel_rate}"
        )
    for key in TOP_KEYS:
        if key in top:
            config[key] = top[key]
    return config


def load_release(
    folder, fold=True, with_ssl=True, with_postnet=False, ssl_truncate=True, mmap_weights=False
):
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
    mmap_weights : bool
        Use the weight file's memory-mapped tensors as the parameters (no
        copy; a weight becomes resident when first read) and, with ``fold``,
        fold the wave generator's weight norm on its first use: a process
        that only tokenizes never holds the decoder's weights. ``False``
        copies everything in at once, as the reference does. Mapped loading
        builds the modules without initialising their parameters (all are
        then loaded from the file).

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
    where = os.path.join(folder, "BiCodec", "config.yaml")
    ssl = None
    if with_ssl:
        ssl_dir = os.path.join(folder, SSL_FOLDER)
        if not os.path.isdir(ssl_dir):
            raise ReleaseLoadError(f"{ssl_dir}: missing wav2vec2 folder")
        frontend = {"ssl_source": ssl_dir, "ssl_truncate": ssl_truncate}
        ssl = load_arch("frontend_wav2vec2", frontend)["ssl"]
    # Mapped weights replace every parameter (the loader is strict), so random
    # initial values would only be written to be dropped: skipping them keeps
    # the untouched allocations out of resident memory while loading.
    building = nullcontext() if not mmap_weights else skip_parameter_init()
    with building:
        model = build_bicodec(config, ssl=ssl, with_postnet=with_postnet, where=where)
    weights = os.path.join(folder, "BiCodec", "model.safetensors")
    if not mmap_weights:
        if fold:
            fold_weight_norm(model)
        load_codec_weights(model, weights)
        return model.eval(), config
    load_codec_weights(model, weights, assign=True)
    if fold:
        for name, module in model.named_children():
            if name == "decoder":
                defer_weight_norm_fold(module)
            elif name != "ssl":
                fold_weight_norm(module)
    return model.eval(), config


def _plain(value):
    """Plain Python containers and scalars (``codec.yaml`` values are ruamel types)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


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
    config = _plain(config)
    top = {k: config[k] for k in TOP_KEYS if k in config}
    block = {k: v for k, v in config.items() if k not in TOP_KEYS}
    with open(os.path.join(folder, "config.yaml"), "w", encoding="utf-8") as fout:
        yaml.safe_dump(top, fout, sort_keys=False)
    with open(os.path.join(folder, "BiCodec", "config.yaml"), "w", encoding="utf-8") as fout:
        yaml.safe_dump({"audio_tokenizer": block, **top}, fout, sort_keys=False)
    state = {k: v.detach().contiguous() for k, v in release_state_dict(model).items()}
    save_file(state, os.path.join(folder, "BiCodec", "model.safetensors"))
    if ssl_source is not None:
        shutil.copytree(ssl_source, os.path.join(folder, SSL_FOLDER), dirs_exist_ok=True)
