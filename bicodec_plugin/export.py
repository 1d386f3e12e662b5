"""Exports a trained generator as a SpeechBrain inference folder.

The folder holds ``hyperparams.yaml`` (the architecture, wired with
``!new:`` lobes, a ``modules`` dict and a ``pretrainer``), ``codec.safetensors``
(the generator without the postnet, weight-norm form) and, when training
used a local wav2vec2 folder, a copy of it as ``wav2vec2/``. Load it with
``BiCodecTokenizer.from_hparams(source=folder)``.

Authors
 * BiCodec plugin authors 2026
"""

import os
import shutil

import yaml

# Architecture values copied from the training hparams into the export.
ARCH_KEYS = (
    "sample_rate",
    "ref_segment_duration",
    "volume_normalize",
    "ssl_layers",
    "ssl_dim",
    "n_mels",
    "mel_n_fft",
    "mel_win_length",
    "mel_hop_length",
    "mel_fmin",
    "mel_fmax",
    "latent_dim",
    "vocos_dim",
    "vocos_intermediate_dim",
    "encoder_layers",
    "prenet_layers",
    "sample_ratios",
    "codebook_size",
    "codebook_dim",
    "commitment",
    "codebook_loss_weight",
    "threshold_ema_dead_code",
    "speaker_latent_dim",
    "global_token_num",
    "fsq_levels",
    "fsq_num_quantizers",
    "decoder_channels",
    "decoder_rates",
    "decoder_kernel_sizes",
)
WEIGHTS_FILE = "codec.safetensors"
SSL_DIR = "wav2vec2"

LOBES = """
source_folder: !PLACEHOLDER  # set by BiCodecTokenizer.from_hparams
ssl: !new:bicodec_plugin.lobes.frontends.Wav2Vec2LayerMix
    source: {ssl_source}
    layers: !ref <ssl_layers>
mel_transformer: !new:bicodec_plugin.lobes.frontends.LinearMelSpectrogram
    sample_rate: !ref <sample_rate>
    n_fft: !ref <mel_n_fft>
    win_length: !ref <mel_win_length>
    hop_length: !ref <mel_hop_length>
    mel_fmin: !ref <mel_fmin>
    mel_fmax: !ref <mel_fmax>
    num_mels: !ref <n_mels>
encoder: !new:bicodec_plugin.lobes.encoder.SemanticEncoder
    input_channels: !ref <ssl_dim>
    vocos_dim: !ref <vocos_dim>
    vocos_intermediate_dim: !ref <vocos_intermediate_dim>
    vocos_num_layers: !ref <encoder_layers>
    out_channels: !ref <latent_dim>
    sample_ratios: !ref <sample_ratios>
quantizer: !new:bicodec_plugin.lobes.quantizers.FactorizedVectorQuantize
    input_dim: !ref <latent_dim>
    codebook_size: !ref <codebook_size>
    codebook_dim: !ref <codebook_dim>
    commitment: !ref <commitment>
    codebook_loss_weight: !ref <codebook_loss_weight>
    threshold_ema_dead_code: !ref <threshold_ema_dead_code>
speaker_encoder: !new:bicodec_plugin.lobes.speaker.SpeakerEncoder
    input_dim: !ref <n_mels>
    out_dim: !ref <latent_dim>
    latent_dim: !ref <speaker_latent_dim>
    token_num: !ref <global_token_num>
    fsq_levels: !ref <fsq_levels>
    fsq_num_quantizers: !ref <fsq_num_quantizers>
prenet: !new:bicodec_plugin.lobes.decoder.FeatureDecoder
    input_channels: !ref <latent_dim>
    vocos_dim: !ref <vocos_dim>
    vocos_intermediate_dim: !ref <vocos_intermediate_dim>
    vocos_num_layers: !ref <prenet_layers>
    out_channels: !ref <latent_dim>
    condition_dim: !ref <latent_dim>
    sample_ratios: !ref <sample_ratios>
wave_generator: !new:bicodec_plugin.lobes.decoder.WaveGenerator
    input_channel: !ref <latent_dim>
    channels: !ref <decoder_channels>
    rates: !ref <decoder_rates>
    kernel_sizes: !ref <decoder_kernel_sizes>
codec: !new:bicodec_plugin.model.BiCodec
    mel_transformer: !ref <mel_transformer>
    encoder: !ref <encoder>
    quantizer: !ref <quantizer>
    speaker_encoder: !ref <speaker_encoder>
    prenet: !ref <prenet>
    decoder: !ref <wave_generator>
    ssl: !ref <ssl>
    sample_rate: !ref <sample_rate>
    ref_segment_duration: !ref <ref_segment_duration>
modules:
    codec: !ref <codec>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        codec: !ref <codec>
    paths:
        codec: !ref <source_folder>/codec.safetensors
    custom_hooks:
        codec: !name:bicodec_plugin.export.load_codec_weights
"""


def export_codec(codec, hparams, folder):
    """Writes an inference folder for a trained generator.

    Arguments
    ---------
    codec : BiCodec
        Trained generator (weight norm kept; the postnet is dropped).
    hparams : dict
        Training hparams holding :data:`ARCH_KEYS` and ``ssl_source``.
    folder : str
        Output folder.

    Returns
    -------
    str
        ``folder``.
    """
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    ssl_source = hparams["ssl_source"]
    if os.path.isdir(str(ssl_source)):
        target = os.path.join(folder, SSL_DIR)
        if os.path.abspath(target) != os.path.abspath(ssl_source):
            shutil.copytree(ssl_source, target, dirs_exist_ok=True)
        ssl_line = f"!ref <source_folder>/{SSL_DIR}"
    else:
        ssl_line = str(ssl_source)  # a hub id
    values = {key: hparams[key] for key in ARCH_KEYS}
    header = (
        "# ######################################################################\n"
        "# Model: BiCodec, exported for inference by bicodec_plugin\n"
        "# Load: BiCodecTokenizer.from_hparams(source=<this folder>)\n"
        "# ######################################################################\n"
    )
    with open(os.path.join(folder, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
        fout.write(header)
        fout.write(yaml.safe_dump(values, sort_keys=False, default_flow_style=None))
        fout.write(LOBES.replace("{ssl_source}", ssl_line))
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in codec.codec_state_dict().items()
        if not k.startswith("postnet.")
    }
    save_file(state, os.path.join(folder, WEIGHTS_FILE))
    return folder


def load_codec_weights(codec, path):
    """Pretrainer hook: loads ``codec.safetensors`` strictly (wav2vec2 aside).

    Arguments
    ---------
    codec : BiCodec
        Model built from the exported hyperparams.
    path : str
        Path of the safetensors file.
    """
    from safetensors.torch import load_file

    state = load_file(str(path))
    result = codec.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("ssl.")]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"{path}: weights do not match the model; missing {missing}, "
            f"unexpected {result.unexpected_keys}"
        )
