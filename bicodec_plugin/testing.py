"""Small random models that the project builds itself (tests).

``TINY_ARCH`` gives the sizes of the reference's tiny test model
(``../shared/reference/tiny_release``), which ``hparams/bicodec_tiny.yaml``
uses too (a test checks that all three agree).

No wav2vec2 weights can be downloaded offline; a randomly initialised model
of the XLS-R layout (stable layer norm, layer-norm conv stack, 50 Hz) still
gives deterministic features of the audio, which is all the codec needs to
learn a reconstruction on the demo corpus.

Authors
 * BiCodec plugin authors 2026
"""

import os

import torch

# Overrides of bicodec_plugin/arch/codec.yaml for the tiny test model.
TINY_ARCH = {
    "ssl_dim": 64,
    "latent_dim": 32,
    "vocos_dim": 32,
    "vocos_intermediate_dim": 64,
    "encoder_layers": 2,
    "prenet_layers": 2,
    "postnet_layers": 1,
    "codebook_size": 64,
    "codebook_loss_weight": 4.0,
    "speaker_latent_dim": 16,
    "decoder_channels": 64,
}


def tiny_codec(with_postnet=True, seed=None):
    """A random tiny BiCodec (:data:`TINY_ARCH`), in train mode.

    Arguments
    ---------
    with_postnet : bool
        Build the postnet.
    seed : int, optional
        Seeds the initialisation (the global RNG is restored afterwards).

    Example
    -------
    >>> tiny_codec(seed=0).quantizer.codebook_size
    64
    """
    from bicodec_plugin.arch import build_codec

    if seed is None:
        return build_codec(TINY_ARCH, with_postnet=with_postnet)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build_codec(TINY_ARCH, with_postnet=with_postnet)
    finally:
        torch.random.set_rng_state(state)


def tiny_wav2vec2_config(num_layers=16, hidden_size=64):
    """A small stable-layer-norm wav2vec2 config (XLS-R layout).

    Example
    -------
    >>> tiny_wav2vec2_config().num_hidden_layers
    16
    """
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=[32] * 7,
        conv_bias=False,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )


def make_tiny_wav2vec2(folder, seed=1234, num_layers=16, hidden_size=64):
    """Saves a random tiny ``Wav2Vec2Model`` (+ preprocessor config) once.

    Arguments
    ---------
    folder : str
        Output folder; left as is if it already holds a model.
    seed : int
        Initialisation seed.
    num_layers : int
        Transformer layers (at least 16 for the 11/14/16 mix).
    hidden_size : int
        Feature size.

    Returns
    -------
    str
        ``folder``.
    """
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    os.makedirs(folder, exist_ok=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        Wav2Vec2Model(tiny_wav2vec2_config(num_layers, hidden_size)).save_pretrained(folder)
    finally:
        torch.random.set_rng_state(state)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def make_tiny_whisper(folder, seed=1234, width=32, num_layers=2):
    """Saves a random tiny Whisper in CTranslate2 format once (for the Whisper front-end).

    A randomly initialised ``transformers`` Whisper (80 mel bins, 1500
    positions, the real layout) converted with CTranslate2's own Whisper
    loader, about 0.4 MB; its vocabulary is a placeholder holding Whisper's
    special tokens (the front-end never decodes).

    Arguments
    ---------
    folder : str
        Output folder; left as is if it already holds a model.
    seed : int
        Initialisation seed.
    width : int
        Model width (the features' size).
    num_layers : int
        Encoder layers.

    Returns
    -------
    str
        ``folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = make_tiny_whisper(tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.bin', 'vocabulary.json']
    """
    from ctranslate2.converters.transformers import WhisperLoader
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if os.path.isfile(os.path.join(folder, "model.bin")):
        return folder
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>"]
    specials += ["<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
    specials += ["<|notimestamps|>"]
    vocab = {f"t{i}": i for i in range(16)}
    vocab.update({token: 16 + i for i, token in enumerate(specials)})
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=width,
        encoder_layers=num_layers,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * width,
        decoder_ffn_dim=2 * width,
        max_source_positions=1500,
        max_target_positions=32,
        bos_token_id=16,
        eos_token_id=16,
        pad_token_id=16,
        decoder_start_token_id=17,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )

    class _Vocabulary:  # what the converter reads of a tokenizer
        additional_special_tokens = []
        unk_token = None

        @staticmethod
        def get_vocab():
            return vocab

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = WhisperForConditionalGeneration(config).eval()
    finally:
        torch.random.set_rng_state(state)
    spec = WhisperLoader()(model, _Vocabulary())
    spec.validate()
    spec.optimize(quantization=None)
    os.makedirs(folder, exist_ok=True)
    spec.save(folder)
    return folder
