"""The architecture, wired once in HyperPyYAML.

This folder holds the only wiring of BiCodec's lobes:

- ``codec.yaml``: the generator (values: the released 16 kHz model);
- ``discriminator.yaml``: the training discriminator (SparkVox's);
- ``frontend_wav2vec2.yaml``: the semantic front-end (XLS-R layers 11/14/16);
- ``frontend_whisper.yaml``: another semantic front-end, a Whisper encoder
  (CTranslate2; the contract is ``codec.lobes.frontends.SemanticFrontend``).

The recipes in ``hparams/`` include these files and override what differs,
:mod:`bicodec_plugin.formats.export` writes them (with the trained values)
into an exported ``hyperparams.yaml``, and :mod:`bicodec_plugin.formats.release`
maps a Spark-TTS config onto their keys. The helpers below read them.

Authors
 * BiCodec plugin authors 2026
"""

import os

from hyperpyyaml import load_hyperpyyaml

ARCH_DIR = os.path.dirname(os.path.abspath(__file__))


def arch_path(name):
    """Path of an architecture file (``"codec"``, ``"discriminator"``, ...).

    Example
    -------
    >>> os.path.basename(arch_path("codec"))
    'codec.yaml'
    """
    path = os.path.join(ARCH_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(ARCH_DIR) if f.endswith(".yaml"))
        raise ValueError(f"no architecture file {path!r}; known: {', '.join(known)}")
    return path


def read_arch_tree(name):
    """The file as a ruamel round-trip tree (tags and comments kept).

    Returns
    -------
    ruamel.yaml.comments.CommentedMap
    """
    import ruamel.yaml

    with open(arch_path(name), encoding="utf-8") as fin:
        return ruamel.yaml.YAML().load(fin)


def arch_defaults(name):
    """The plain values of an architecture file (keys without a YAML tag).

    These are the keys a recipe may override; the tagged keys are the lobes.

    Example
    -------
    >>> arch_defaults("codec")["decoder_rates"]
    [8, 5, 4, 2]
    >>> "codec" in arch_defaults("codec")
    False
    """
    tree = read_arch_tree(name)
    values = {}
    for key, node in tree.items():
        if getattr(getattr(node, "tag", None), "value", None):
            continue
        values[key] = _plain(node)
    return values


def load_arch(name, overrides=None):
    """Loads an architecture file with HyperPyYAML, building its lobes.

    Arguments
    ---------
    name : str
        File name without ``.yaml``.
    overrides : dict, optional
        Values replacing the file's; an unknown key is an error.

    Returns
    -------
    dict
        Every key of the file, values and built objects.

    Example
    -------
    >>> load_arch("discriminator", {"disc_periods": [2]})["disc_periods"]
    [2]
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(read_arch_tree(name)))
    if unknown:
        raise ValueError(f"{arch_path(name)}: unknown key(s) {unknown}")
    with open(arch_path(name), encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, overrides)


def build_codec(overrides=None, with_postnet=True):
    """Builds an untrained :class:`~bicodec_plugin.codec.model.BiCodec` from ``codec.yaml``.

    Arguments
    ---------
    overrides : dict, optional
        Architecture values (keys of ``codec.yaml``).
    with_postnet : bool
        Build the postnet (a training aid; inference skips it).

    Returns
    -------
    BiCodec

    Example
    -------
    >>> from bicodec_plugin.testing import TINY_ARCH
    >>> codec = build_codec(TINY_ARCH, with_postnet=False)
    >>> codec.hop_length, codec.postnet is None
    (320, True)
    """
    overrides = dict(overrides or {})
    if not with_postnet:
        overrides["postnet"] = None
    return load_arch("codec", overrides)["codec"]


def _plain(node):
    """ruamel containers -> plain lists and dicts."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
