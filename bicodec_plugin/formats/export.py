"""Exports a trained generator as a SpeechBrain inference folder.

The folder holds:

- ``hyperparams.yaml``: the same wiring as training, written from the
  architecture files in :mod:`bicodec_plugin.arch` (the semantic front-end's
  file, then ``codec.yaml``) with the trained values, no postnet, plus a
  ``modules`` dict and a ``pretrainer``;
- ``codec.safetensors``: the generator's weights (postnet dropped) under the
  reference's key names, loaded by the same strict loader as release folders
  (:func:`bicodec_plugin.formats.weights.load_codec_weights`);
- ``wav2vec2/`` (or ``whisper/``): a copy of the front-end's model when
  training used a local folder (a hub id is written as is), so that the
  folder tokenizes offline with the very features it was trained on.

The folder is self-contained: the pretrainer
(:class:`bicodec_plugin.formats.hub.RelativePretrainer`) names
``codec.safetensors`` and the wav2vec2 weights relative to wherever the
folder was fetched from, and the front-end is built from the wav2vec2
config written into ``hyperparams.yaml`` (its weights then load as a
pretrainer loadable, :func:`load_frontend_weights`). So the folder loads
from a path or, once uploaded, from a hub id, with
``BiCodecTokenizer.from_hparams(source=...)`` or plain
``speechbrain.inference.interfaces.Pretrained.from_hparams(source=...)``.

Authors
 * BiCodec plugin authors 2026
"""

import io
import os
import shutil

from bicodec_plugin.arch import arch_defaults, read_arch_tree
from bicodec_plugin.formats.weights import ReleaseLoadError, release_state_dict

WEIGHTS_FILE = "codec.safetensors"
SSL_DIR = "wav2vec2"
# Front-end architecture files and the export sub-folder for their model.
FRONTEND_DIRS = {"frontend_wav2vec2": SSL_DIR, "frontend_whisper": "whisper"}
FRONTEND_FILES = tuple(FRONTEND_DIRS)
# Names a Hugging Face wav2vec2 folder stores its weights under (first found wins).
SSL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# Config entries that describe the file, not the model.
CONFIG_BOOKKEEPING = ("transformers_version", "architectures", "model_type", "dtype", "torch_dtype")
# Files of a CTranslate2 Whisper folder that the encoder loads.
WHISPER_FILES = ("model.bin", "config.json")
WHISPER_VOCABULARIES = ("vocabulary.json", "vocabulary.txt")

HEADER = """\
# ############################################################################
# Model: BiCodec, exported for inference by bicodec_plugin
# Load: BiCodecTokenizer.from_hparams(source=<this folder, or its hub id>)
# Wiring: bicodec_plugin/arch/{frontend}.yaml and codec.yaml, trained values.
# Files are named relative to this folder (the pretrainer's relative_paths).
# ############################################################################

"""


def frontend_name(frontend_values):
    """Which front-end architecture file a recipe's ``frontend`` include came from.

    Arguments
    ---------
    frontend_values : dict
        The loaded include (its keys are the file's keys).

    Returns
    -------
    str
        The file's name, e.g. ``"frontend_wav2vec2"``.

    Example
    -------
    >>> frontend_name({"ssl_source": 0, "ssl_save_path": 0, "ssl_layers": 0,
    ...                "ssl_truncate": 0, "ssl_normalize": 0, "ssl_init_weights": 0, "ssl": 0})
    'frontend_wav2vec2'
    """
    keys = set(frontend_values)
    for name in FRONTEND_FILES:
        if set(read_arch_tree(name)) == keys:
            return name
    raise ValueError(
        f"the recipe's front-end (keys {sorted(keys)}) matches none of the architecture "
        f"files {FRONTEND_FILES}"
    )


def export_codec(hparams, folder):
    """Writes an inference folder for a trained generator.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams: ``codec`` (the trained generator), ``arch``
        (the ``codec.yaml`` include) and ``frontend`` (the front-end include).
    folder : str
        Output folder.

    Returns
    -------
    str
        ``folder``.
    """
    import ruamel.yaml
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    front_file = frontend_name(hparams["frontend"])
    front = read_arch_tree(front_file)
    for key in arch_defaults(front_file):
        front[key] = _flow(hparams["frontend"][key])
    ssl_weights, ssl_hook = None, None
    if front_file == "frontend_wav2vec2":
        source = str(hparams["frontend"]["ssl_source"])
        if os.path.isdir(source):
            target = os.path.join(folder, SSL_DIR)
            if os.path.abspath(target) != os.path.abspath(source):
                shutil.copytree(source, target, dirs_exist_ok=True)
            # Built from its config here, weights loaded by the pretrainer: no path
            # in the yaml, so the folder loads wherever it is fetched to.
            front["ssl_source"] = _wav2vec2_config_node(target)
            front.ca.items.pop("ssl_source", None)
            front.yaml_add_eol_comment(
                f"{SSL_DIR}/config.json; weights: the pretrainer", "ssl_source"
            )
            front["ssl_normalize"] = bool(hparams["frontend"]["ssl"].normalize)
            front["ssl_init_weights"] = False  # the pretrainer loads them
            ssl_weights = f"{SSL_DIR}/{_weights_name(target)}"
            ssl_hook = "bicodec_plugin.formats.export.load_frontend_weights"
        front["ssl_save_path"] = None
    else:  # Whisper: the CTranslate2 folder travels, the pretrainer loads it
        source = hparams["frontend"]["ssl"].source
        subdir = FRONTEND_DIRS[front_file]
        ssl_weights = [f"{subdir}/{name}" for name in _whisper_files(source)]
        target = os.path.join(folder, subdir)
        os.makedirs(target, exist_ok=True)
        for name in ssl_weights:
            shutil.copyfile(
                os.path.join(source, os.path.basename(name)), os.path.join(folder, name)
            )
        front["ssl_source"] = None
        front.ca.items.pop("ssl_source", None)
        front.yaml_add_eol_comment(f"{subdir}/: the pretrainer loads it", "ssl_source")
        front["ssl_load"] = False
        ssl_hook = "bicodec_plugin.codec.lobes.whisper.load_whisper_model"

    codec = read_arch_tree("codec")
    del codec["ssl"]  # the front-end above defines it
    for key in arch_defaults("codec"):
        if key != "ssl":
            codec[key] = _flow(hparams["arch"][key])
    codec["postnet"] = None

    dumper = ruamel.yaml.YAML()
    dumper.indent(mapping=4, sequence=4, offset=2)
    dumper.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    text = io.StringIO()
    text.write(HEADER.format(frontend=front_file))
    dumper.dump(front, text)
    text.write("\n")
    dumper.dump(codec, text)
    text.write("\n")
    dumper.dump(_inference_tree(ssl_weights, ssl_hook), text)
    with open(os.path.join(folder, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
        fout.write(text.getvalue())

    state = {
        k: v.detach().cpu().contiguous()
        for k, v in release_state_dict(hparams["codec"]).items()
        if not k.startswith("postnet.")
    }
    save_file(state, os.path.join(folder, WEIGHTS_FILE))
    return folder


def load_frontend_weights(ssl, path):
    """Pretrainer hook: a Hugging Face wav2vec2 checkpoint into a front-end built from config.

    ``transformers`` reads the file (safetensors, or a ``.bin`` state dict,
    whatever its key vintage) into a ``Wav2Vec2Model`` of the front-end's
    config and depth (a truncated front-end's dropped layers are not read),
    and its tensors become the front-end's.

    Arguments
    ---------
    ssl : bicodec_plugin.codec.lobes.frontends.Wav2Vec2LayerMix
        The front-end (random weights).
    path : str
        The weights file (``.safetensors`` or ``.bin``, as named in the
        export's ``relative_paths``).

    Raises
    ------
    ReleaseLoadError
        Naming the file: not readable, or tensors missing or mis-shaped.
    """
    import copy
    import tempfile

    from transformers import Wav2Vec2Model

    path = str(path)
    extension = os.path.splitext(path)[1]
    names = {".safetensors": "model.safetensors", ".bin": "pytorch_model.bin"}
    if extension not in names:
        raise ReleaseLoadError(f"{path}: wav2vec2 weights must be .safetensors or .bin")
    if not os.path.isfile(path):
        raise ReleaseLoadError(f"{path}: missing wav2vec2 weight file")
    kept = len(ssl.model.encoder.layers)
    config = copy.deepcopy(ssl.model.config)
    config.num_hidden_layers = kept  # the layers a truncated front-end drops are not read
    with tempfile.TemporaryDirectory() as tmp:
        # transformers reads a folder: one holding just a link to this file.
        os.symlink(os.path.realpath(path), os.path.join(tmp, names[extension]))
        try:
            loaded, info = Wav2Vec2Model.from_pretrained(
                tmp,
                config=config,
                dtype=next(ssl.model.parameters()).dtype,
                output_loading_info=True,
            )
        except Exception as err:
            raise ReleaseLoadError(f"{path}: cannot load wav2vec2 weights ({err})") from err
    bad = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        raise ReleaseLoadError(f"{path}: wav2vec2 tensors missing or mis-shaped: {sorted(bad)}")
    # assign: the loaded tensors become the front-end's (no copy); requires_grad stays off.
    result = ssl.model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    dropped = [  # layers (and the final norm) that a truncated front-end does not run
        k
        for k in result.unexpected_keys
        if not (
            k.startswith("encoder.layer_norm.")
            or (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= kept)
        )
    ]
    if result.missing_keys or dropped:
        raise ReleaseLoadError(
            f"{path}: wav2vec2 does not match the front-end: missing {result.missing_keys}, "
            f"unexpected {dropped}"
        )


def _weights_name(ssl_folder):
    """The weights file of a Hugging Face wav2vec2 folder."""
    for name in SSL_WEIGHTS:
        if os.path.isfile(os.path.join(ssl_folder, name)):
            return name
    raise ValueError(
        f"{ssl_folder}: no wav2vec2 weights (one of {', '.join(SSL_WEIGHTS)}; "
        "sharded checkpoints are not exported)"
    )


def _wav2vec2_config_node(ssl_folder):
    """``!new:transformers.Wav2Vec2Config`` with the folder's values that differ from defaults.

    Checked: the written values rebuild the folder's config exactly.
    """
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.tag import Tag
    from transformers import Wav2Vec2Config

    def model_values(config):
        return {k: v for k, v in config.to_dict().items() if k not in CONFIG_BOOKKEEPING}

    config = model_values(Wav2Vec2Config.from_pretrained(ssl_folder))
    defaults = model_values(Wav2Vec2Config())
    values = {k: v for k, v in config.items() if k not in defaults or defaults[k] != v}
    if model_values(Wav2Vec2Config(**values)) != config:
        raise ValueError(f"{ssl_folder}/config.json: cannot be written as Wav2Vec2Config values")
    node = CommentedMap((k, _flow(v)) for k, v in values.items())
    node.yaml_set_ctag(Tag(suffix="!new:transformers.Wav2Vec2Config"))
    return node


def _whisper_files(source):
    """The files of a CTranslate2 Whisper folder that the encoder needs."""
    names = [n for n in WHISPER_FILES if os.path.isfile(os.path.join(source, n))]
    vocabulary = [n for n in WHISPER_VOCABULARIES if os.path.isfile(os.path.join(source, n))]
    if len(names) != len(WHISPER_FILES) or not vocabulary:
        raise ValueError(
            f"{source}: a CTranslate2 Whisper folder needs {', '.join(WHISPER_FILES)} and "
            f"one of {', '.join(WHISPER_VOCABULARIES)}"
        )
    return names + vocabulary[:1]


def _inference_tree(ssl_weights=None, ssl_hook=None):
    """``modules`` and the ``pretrainer``; the front-end's model too when it travels along."""
    from ruamel.yaml.comments import CommentedMap, TaggedScalar
    from ruamel.yaml.tag import Tag

    def ref(name):
        return TaggedScalar(f"<{name}>", tag="!ref")

    def hook(dotted):
        return TaggedScalar("", tag=f"!name:{dotted}")

    loadables = CommentedMap(codec=ref("codec"))
    paths = CommentedMap(codec=WEIGHTS_FILE)
    hooks = CommentedMap(codec=hook("bicodec_plugin.formats.weights.load_codec_weights"))
    if ssl_weights is not None:
        loadables["ssl"] = ref("ssl")
        paths["ssl"] = _flow(ssl_weights)  # a file, or the files of a folder
        hooks["ssl"] = hook(ssl_hook)
    pretrainer = CommentedMap(loadables=loadables, relative_paths=paths, custom_hooks=hooks)
    pretrainer.yaml_set_ctag(Tag(suffix="!new:bicodec_plugin.formats.hub.RelativePretrainer"))
    return CommentedMap(modules=CommentedMap(codec=ref("codec")), pretrainer=pretrainer)


def _flow(value):
    """Lists written inline (``[8, 5, 4, 2]``) as in the architecture files."""
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(list(value))
        seq.fa.set_flow_style()
        return seq
    return value
