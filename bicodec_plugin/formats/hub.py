"""Model folders by hub id or local path, online or from the cache.

A SpeechBrain user loads a model with one line,
``Interface.from_hparams(source="org/name", savedir=...)``: the files come
from a local folder, or from the Hugging Face hub through its cache
(:func:`speechbrain.utils.fetching.fetch`), and with ``HF_HUB_OFFLINE=1``
from the cache only. This module gives BiCodec's two folder kinds the same:

- :func:`fetch_release` gets only the files of a Spark-TTS release that the
  codec needs (:data:`RELEASE_FILES` and one wav2vec2 weight file, never the
  LLM) and returns a folder laid out like the release;
- :class:`RelativePretrainer` is the pretrainer of exported folders
  (:mod:`bicodec_plugin.formats.export`): its files are named relative to the
  folder or repository the ``hyperparams.yaml`` came from, so the folder loads
  wherever it is, by path or hub id, with plain ``Pretrained.from_hparams``.

``HF_HUB_OFFLINE`` is read when a file is fetched (not only when
``huggingface_hub`` is imported), and a file that is neither local nor
cached is refused with a :class:`~bicodec_plugin.formats.weights.ReleaseLoadError`
that names it.

Authors
 * BiCodec plugin authors 2026
"""

import dataclasses
import os
import pathlib
import re

from speechbrain.utils.checkpoints import PARAMFILE_EXT
from speechbrain.utils.fetching import FetchConfig, LocalStrategy, fetch
from speechbrain.utils.logger import get_logger
from speechbrain.utils.parameter_transfer import Pretrainer

from bicodec_plugin.formats.release import SSL_FOLDER
from bicodec_plugin.formats.weights import ReleaseLoadError

logger = get_logger(__name__)

# The codec's part of a Spark-TTS release (the LLM next to it is not fetched).
RELEASE_FILES = (
    "config.yaml",
    "BiCodec/config.yaml",
    "BiCodec/model.safetensors",
    f"{SSL_FOLDER}/config.json",
    f"{SSL_FOLDER}/preprocessor_config.json",
)
# A Hugging Face wav2vec2 folder holds one of these; the first found is used.
WAV2VEC2_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_TRUE = {"1", "ON", "YES", "TRUE"}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_offline():
    """Whether the hub must not be contacted (``HF_HUB_OFFLINE``, read now).

    ``huggingface_hub`` reads the variable once, at import; this reads it
    again, so that setting it later in a session is honoured too.

    Example
    -------
    >>> isinstance(is_offline(), bool)
    True
    """
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.upper() in _TRUE


def is_hub_id(source):
    """Whether ``source`` is read as a hub id (``name`` or ``org/name``, not a folder here).

    Example
    -------
    >>> is_hub_id("SparkAudio/Spark-TTS-0.5B"), is_hub_id("./model"), is_hub_id("/tmp")
    (True, False, False)
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    source = str(source)
    if os.path.isdir(source):
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def fetch_config_for(fetch_config=None, revision=None):
    """The fetch settings to use now: ``fetch_config`` with the revision and offline mode.

    Arguments
    ---------
    fetch_config : speechbrain.utils.fetching.FetchConfig, optional
        The caller's settings (default: SpeechBrain's).
    revision : str, optional
        Hub branch, tag or commit to pin.

    Returns
    -------
    FetchConfig
        With ``allow_network=False`` when :func:`is_offline`.

    Example
    -------
    >>> fetch_config_for(revision="v1").revision
    'v1'
    """
    config = fetch_config or FetchConfig()
    if revision is not None:
        config = dataclasses.replace(config, revision=revision)
    if is_offline() and config.allow_network:
        config = dataclasses.replace(config, allow_network=False)
    return config


def fetch_model_file(
    source,
    filename,
    savedir=None,
    save_filename=None,
    fetch_config=None,
    local_strategy=LocalStrategy.SYMLINK,
):
    """One file of a model folder or hub repository, as a local path.

    :func:`speechbrain.utils.fetching.fetch` with offline mode read now and
    errors that name the file.

    Arguments
    ---------
    source : str
        Local folder or hub id.
    filename : str
        Path inside it (``"BiCodec/model.safetensors"``).
    savedir : str, optional
        Folder that gets a link to (or copy of) the file, as SpeechBrain's
        ``savedir``; ``None``: the file stays in the hub cache (or in place).
    save_filename : str, optional
        Name inside ``savedir`` (default: ``filename``).
    fetch_config : FetchConfig, optional
        Fetch settings (see :func:`fetch_config_for`).
    local_strategy : LocalStrategy
        How ``savedir`` gets the file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ReleaseLoadError
        The file is missing from the folder or repository, or offline and not
        cached; the message names ``source`` and ``filename``.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "config.yaml").write_text("sample_rate: 16000")
    >>> fetch_model_file(str(folder), "config.yaml") == folder / "config.yaml"
    True
    >>> fetch_model_file(str(folder), "BiCodec/model.safetensors")
    Traceback (most recent call last):
    ...
    bicodec_plugin.formats.weights.ReleaseLoadError: .../BiCodec/model.safetensors: missing
    """
    source = str(source)
    config = fetch_config_for(fetch_config)
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, filename)):
            raise ReleaseLoadError(f"{os.path.join(source, filename)}: missing")
    elif not is_hub_id(source):
        raise ReleaseLoadError(f"{source}: neither a local folder nor a hub id ('org/name')")
    if savedir is not None:
        parent = (pathlib.Path(savedir) / (save_filename or filename)).parent
        parent.mkdir(parents=True, exist_ok=True)
    try:
        return fetch(
            filename=filename,
            source=source,
            savedir=savedir,
            save_filename=save_filename,
            local_strategy=local_strategy,
            fetch_config=config,
        )
    except Exception as err:
        message = explain_fetch_error(err, source, filename, config, savedir)
        if message is None:
            raise
        raise ReleaseLoadError(message) from err


def fetch_first(source, filenames, savedir=None, fetch_config=None):
    """The first of ``filenames`` that ``source`` has (e.g. safetensors, else a bin file).

    Arguments
    ---------
    source : str
        Local folder or hub id.
    filenames : sequence of str
        Candidates, in order of preference.
    savedir : str, optional
        As :func:`fetch_model_file`.
    fetch_config : FetchConfig, optional
        As :func:`fetch_model_file`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ReleaseLoadError
        None of them is there (or cached, offline), naming them all.
    """
    source = str(source)
    config = fetch_config_for(fetch_config)
    # A local folder, or a savedir that a former fetch filled: no look-up on the hub.
    local = source if os.path.isdir(source) else savedir
    if local is not None:
        for name in filenames:
            if (pathlib.Path(local) / name).is_file():
                return fetch_model_file(source, name, savedir, fetch_config=config)
    if os.path.isdir(source):
        raise ReleaseLoadError(f"{source}: none of {', '.join(filenames)}")
    reasons = []
    for name in filenames:
        try:
            return fetch_model_file(source, name, savedir, fetch_config=config)
        except ReleaseLoadError as err:
            if not _entry_missing(err.__cause__):
                raise
            reasons.append(str(err))
    raise ReleaseLoadError(
        f"{source}: none of {', '.join(filenames)} can be had: " + "; ".join(reasons)
    )


def explain_fetch_error(err, source, filename, fetch_config, savedir=None):
    """A message naming the file for a hub error, or ``None`` for other errors.

    Arguments
    ---------
    err : Exception
        Raised while fetching (its causes are looked at too).
    source, filename : str
        What was fetched.
    fetch_config : FetchConfig
        The settings it was fetched with.
    savedir : str, optional
        The ``savedir`` it was fetched into.

    Returns
    -------
    str or None

    Example
    -------
    >>> from huggingface_hub.errors import LocalEntryNotFoundError
    >>> explain_fetch_error(LocalEntryNotFoundError("x"), "org/model", "codec.safetensors",
    ...                     FetchConfig(allow_network=False))[:62]
    "org/model: 'codec.safetensors' is not in the local hub cache ("
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = fetch_config.huggingface_cache_dir or constants.HF_HUB_CACHE
    where = (
        f"{savedir} nor the local hub cache ({cache})"
        if savedir
        else f"the local hub cache ({cache})"
    )
    revision = fetch_config.revision or "main"
    for cause in _causes(err):
        if isinstance(cause, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            why = (
                "HF_HUB_OFFLINE is set"
                if not fetch_config.allow_network or is_offline()
                else "the hub could not be reached"
            )
            return (
                f"{source}: '{filename}' is not in {where} and {why}; load it once with a "
                "network, or give the path of a local copy of the folder"
            )
        if isinstance(cause, GatedRepoError):
            return f"{source}: gated repository; accept its terms and log in (`hf auth login`)"
        if isinstance(cause, RepositoryNotFoundError):
            return (
                f"{source}: not a local folder, and the hub has no repository of that name "
                "(or it is private: log in with `hf auth login`)"
            )
        if isinstance(cause, RevisionNotFoundError):
            return f"{source}: the hub repository has no revision '{revision}'"
        if isinstance(cause, EntryNotFoundError):
            return f"{source}: the hub repository has no file '{filename}' (revision {revision})"
        if isinstance(cause, HFValidationError):
            return f"{source}: neither a local folder nor a valid hub id ({cause})"
    return None


def fetch_release(source, savedir=None, revision=None, fetch_config=None):
    """The codec's files of a Spark-TTS release, as a local folder in the release layout.

    A local folder is returned as it is. For a hub id, only
    :data:`RELEASE_FILES` and the first of :data:`WAV2VEC2_WEIGHTS` in
    ``wav2vec2-large-xlsr-53/`` are fetched (the LLM is not).

    Arguments
    ---------
    source : str
        Release folder or hub id (``"SparkAudio/Spark-TTS-0.5B"``).
    savedir : str, optional
        Folder that gets links to the files (SpeechBrain's ``savedir``);
        ``None``: the hub cache's snapshot folder is returned.
    revision : str, optional
        Hub branch, tag or commit.
    fetch_config : FetchConfig, optional
        SpeechBrain fetch settings (cache folder, token...).

    Returns
    -------
    str
        A folder that :func:`bicodec_plugin.formats.release.load_release` reads.

    Raises
    ------
    ReleaseLoadError
        A file is missing, or offline and not cached (named in the message).

    Example
    -------
    >>> folder = str(getfixture("tmp_path"))
    >>> fetch_release(folder) == folder
    True
    """
    if os.path.isdir(str(source)):
        return source
    config = fetch_config_for(fetch_config, revision)
    first = fetch_model_file(source, RELEASE_FILES[0], savedir, fetch_config=config)
    folder = pathlib.Path(savedir).absolute() if savedir is not None else first.parent
    if savedir is None and config.revision is None and _COMMIT.match(folder.name):
        # The cache keeps one folder per commit: take every file from that one.
        config = dataclasses.replace(config, revision=folder.name)
    fetched = [(RELEASE_FILES[0], first)]
    for name in RELEASE_FILES[1:]:
        fetched.append((name, fetch_model_file(source, name, savedir, fetch_config=config)))
    weights = [f"{SSL_FOLDER}/{name}" for name in WAV2VEC2_WEIGHTS]
    path = fetch_first(source, weights, savedir, fetch_config=config)
    fetched.append((f"{SSL_FOLDER}/{path.name}", path))
    for name, path in fetched:
        if pathlib.Path(path) != folder / name:
            raise ReleaseLoadError(f"{source}: {name} was fetched to {path}, outside {folder}")
    logger.info("%s: release files in %s", source, folder)
    return str(folder)


class RelativePretrainer(Pretrainer):
    """A SpeechBrain ``Pretrainer`` whose files are named inside the model's own folder.

    ``relative_paths`` name each loadable's file relative to the folder or
    hub repository that the ``hyperparams.yaml`` came from (the
    ``default_source`` that ``Pretrained.from_hparams`` passes to
    :meth:`collect_files`), so the same folder loads from a path, from a hub
    id after upload, or from the cache offline. Subfolders are allowed
    (``wav2vec2/model.safetensors``). Collected files keep their extension
    (``<collect_in>/<loadable><ext>``). Other loadables follow ``paths`` as in
    the base class.

    Arguments
    ---------
    collect_in, loadables, paths, custom_hooks, conditions
        As :class:`speechbrain.utils.parameter_transfer.Pretrainer`.
    relative_paths : dict, optional
        Loadable name -> path inside the model's folder or repository, or a
        list of paths of one folder's files (the loadable's hook then gets
        the folder they were fetched to).

    Example
    -------
    >>> import torch
    >>> from safetensors.torch import save_file
    >>> folder = getfixture("tmp_path")
    >>> save_file({"weight": torch.ones(1, 1), "bias": torch.zeros(1)}, folder / "lin.safetensors")
    >>> layer = torch.nn.Linear(1, 1)
    >>> def hook(obj, path):
    ...     from safetensors.torch import load_file
    ...     obj.load_state_dict(load_file(path))
    >>> pre = RelativePretrainer(loadables={"lin": layer},
    ...     relative_paths={"lin": "lin.safetensors"}, custom_hooks={"lin": hook})
    >>> _ = pre.collect_files(default_source=str(folder))
    >>> pre.load_collected()
    >>> layer.weight.item()
    1.0
    """

    def __init__(
        self,
        collect_in=None,
        loadables=None,
        paths=None,
        custom_hooks=None,
        conditions=None,
        relative_paths=None,
    ):
        super().__init__(collect_in, loadables, paths, custom_hooks, conditions)
        self.relative_paths = dict(relative_paths or {})
        unknown = sorted(set(self.relative_paths) - set(self.loadables))
        if unknown:
            raise ValueError(f"relative_paths names no loadable: {unknown}")
        both = sorted(set(self.relative_paths) & set(self.paths))
        if both:
            raise ValueError(f"loadables in both paths and relative_paths: {both}")

    def collect_files(
        self,
        default_source=None,
        local_strategy=LocalStrategy.SYMLINK,
        fetch_config=None,
    ):
        """Fetches each loadable's file; relative paths from ``default_source``.

        Arguments
        ---------
        default_source : str
            The model's folder or hub id (``Pretrained.from_hparams`` passes
            its ``source``).
        local_strategy : LocalStrategy
            How ``collect_in`` gets the files.
        fetch_config : FetchConfig, optional
            Fetch settings (offline mode is read again here).

        Returns
        -------
        dict
            Loadable name -> local path.

        Raises
        ------
        ReleaseLoadError
            A file is missing, or offline and not cached (named).
        """
        fetch_config = fetch_config_for(fetch_config)
        ours = [n for n in self.relative_paths if self.is_loadable(n)]
        if ours and default_source is None:
            raise ValueError(
                f"files {[self.relative_paths[n] for n in ours]} are relative to the model's "
                "folder: give default_source (Pretrained.from_hparams passes its source)"
            )
        if self.collect_in is not None:
            self.collect_in.mkdir(parents=True, exist_ok=True)
        found = {}
        for name in ours:
            relative = self.relative_paths[name]
            if isinstance(relative, (list, tuple)):
                # The files of one folder (e.g. a CTranslate2 model): fetched side
                # by side, and the loadable gets that folder.
                paths = [
                    fetch_model_file(
                        default_source,
                        file,
                        savedir=self.collect_in,
                        save_filename=f"{name}/{os.path.basename(file)}",
                        fetch_config=fetch_config,
                        local_strategy=local_strategy,
                    )
                    for file in relative
                ]
                folders = {str(pathlib.Path(p).parent) for p in paths}
                if len(folders) != 1:
                    raise ReleaseLoadError(
                        f"{default_source}: the files {list(relative)} of '{name}' did not "
                        f"land in one folder ({sorted(folders)})"
                    )
                path = folders.pop()
            else:
                extension = os.path.splitext(relative)[1] or PARAMFILE_EXT
                path = fetch_model_file(
                    default_source,
                    relative,
                    savedir=self.collect_in,
                    save_filename=name + extension,
                    fetch_config=fetch_config,
                    local_strategy=local_strategy,
                )
            self.paths[name] = str(path)
            self.is_local.append(name)
            found[name] = path
        rest = {k: v for k, v in self.loadables.items() if k not in self.relative_paths}
        if rest:  # the base class's rules for the others
            everything = self.loadables
            self.loadables = rest
            try:
                found.update(super().collect_files(default_source, local_strategy, fetch_config))
            finally:
                self.loadables = everything
        return found


def _causes(err):
    """``err`` and the exceptions it was raised from."""
    seen = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _entry_missing(err):
    """Whether a fetch failed because this one file is absent (remotely or from the cache)."""
    from huggingface_hub.errors import EntryNotFoundError, OfflineModeIsEnabled

    return any(isinstance(c, (EntryNotFoundError, OfflineModeIsEnabled)) for c in _causes(err))
