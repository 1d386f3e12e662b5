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

Load it with ``BiCodecTokenizer.from_hparams(source=folder)``.

Authors
 * BiCodec plugin authors 2026
"""

import io
import os
import shutil

from bicodec_plugin.arch import arch_defaults, read_arch_tree
from bicodec_plugin.formats.weights import release_state_dict

WEIGHTS_FILE = "codec.safetensors"
SSL_DIR = "wav2vec2"
# Front-end architecture files, and the export sub-folder for their model.
FRONTEND_DIRS = {"frontend_wav2vec2": SSL_DIR, "frontend_whisper": "whisper"}
FRONTEND_FILES = tuple(FRONTEND_DIRS)

HEADER = """\
# ############################################################################
# Model: BiCodec, exported for inference by bicodec_plugin
# Load: BiCodecTokenizer.from_hparams(source=<this folder>)
# Wiring: bicodec_plugin/arch/{frontend}.yaml and codec.yaml, trained values.
# ############################################################################

source_folder: !PLACEHOLDER  # set by BiCodecTokenizer.from_hparams

"""

FOOTER = """
modules:
    codec: !ref <codec>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        codec: !ref <codec>
    paths:
        codec: !ref <source_folder>/{weights}
    custom_hooks:
        codec: !name:bicodec_plugin.formats.weights.load_codec_weights
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
    ...                "ssl_truncate": 0, "ssl": 0})
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
    from ruamel.yaml.comments import TaggedScalar
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    front_file = frontend_name(hparams["frontend"])
    front = read_arch_tree(front_file)
    for key in arch_defaults(front_file):
        front[key] = _flow(hparams["frontend"][key])
    source = hparams["frontend"]["ssl_source"]
    if source is None:  # the front-end's default model (e.g. from a package)
        source = getattr(hparams["frontend"]["ssl"], "source", None)
    if source is not None and os.path.isdir(str(source)):
        subdir = FRONTEND_DIRS[front_file]
        target = os.path.join(folder, subdir)
        if os.path.abspath(target) != os.path.abspath(str(source)):
            shutil.copytree(str(source), target, dirs_exist_ok=True)
        front["ssl_source"] = TaggedScalar(f"<source_folder>/{subdir}", tag="!ref")
    if "ssl_save_path" in front:
        front["ssl_save_path"] = None

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
    text.write(FOOTER.format(weights=WEIGHTS_FILE))
    with open(os.path.join(folder, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
        fout.write(text.getvalue())

    state = {
        k: v.detach().cpu().contiguous()
        for k, v in release_state_dict(hparams["codec"]).items()
        if not k.startswith("postnet.")
    }
    save_file(state, os.path.join(folder, WEIGHTS_FILE))
    return folder


def _flow(value):
    """Lists written inline (``[8, 5, 4, 2]``) as in the architecture files."""
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(list(value))
        seq.fa.set_flow_style()
        return seq
    return value
