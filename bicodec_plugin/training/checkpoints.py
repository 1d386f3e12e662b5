"""Resuming from the newest intact SpeechBrain checkpoint.

SpeechBrain's ``Checkpointer`` writes ``CKPT.yaml`` first and the parameter
files after it, and loads or ranks whatever folder has a ``CKPT.yaml``. A
kill during a save, a full disk or a bad copy can leave a newest checkpoint
with a truncated ``generator.ckpt``, an empty ``optimizer_g.ckpt`` or an
empty ``CKPT.yaml``: every rerun then dies while loading it, and
``save_and_keep_only`` may keep it as "best" and delete a complete one.

:func:`recover_newest_intact` checks every checkpoint folder first (cheaply:
the meta file parses, every needed file exists, is non-empty and, for
``torch.save`` zip files, has its zip directory), renames a damaged one to
``DAMAGED-CKPT+...`` (SpeechBrain then ignores it, so it neither loads nor
counts towards ``num_to_keep``; its files stay for inspection) and loads the
newest intact one, falling back to the previous one if loading still fails.

Authors
 * BiCodec plugin authors 2026
"""

import os
import pathlib
import zipfile

import yaml
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, PARAMFILE_EXT
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

DAMAGED_PREFIX = "DAMAGED-"


def needed_recoverables(checkpointer):
    """Names whose file every checkpoint must hold: not optional, not a dataloader.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer

    Returns
    -------
    set of str
    """
    optional = getattr(checkpointer, "optional_recoverables", {})
    return {
        name
        for name in checkpointer.recoverables
        if not optional.get(name, False) and not name.startswith("dataloader")
    }


def checkpoint_problem(path, needed=()):
    """What is wrong with a checkpoint folder, or ``None`` if it looks intact.

    Arguments
    ---------
    path : str or pathlib.Path
        A ``CKPT+...`` folder.
    needed : iterable of str
        Recoverable names whose ``<name>.ckpt`` must be present.

    Returns
    -------
    str or None
        The damaged file and the problem.

    Example
    -------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "CKPT.yaml").write_text("")
    >>> checkpoint_problem(folder).endswith("CKPT.yaml: empty or not a mapping")
    True
    """
    path = pathlib.Path(path)
    meta_path = path / METAFNAME
    try:
        with open(meta_path, encoding="utf-8") as fin:
            meta = yaml.safe_load(fin)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return f"{meta_path}: unreadable ({type(err).__name__})"
    if not isinstance(meta, dict):
        return f"{meta_path}: empty or not a mapping"
    for key in ("unixtime", "end-of-epoch"):
        if key not in meta:
            return f"{meta_path}: no '{key}'"
    for name in sorted(needed):
        if not (path / f"{name}{PARAMFILE_EXT}").is_file():
            return f"{path / (name + PARAMFILE_EXT)}: missing"
    for file in sorted(path.glob(f"*{PARAMFILE_EXT}")):
        problem = _file_problem(file)
        if problem:
            return f"{file}: {problem}"
    return None


def _file_problem(file):
    """Empty file, truncated ``torch.save`` zip, or unparsable text."""
    size = file.stat().st_size
    if size == 0:
        return "empty"
    with open(file, "rb") as fin:
        head = fin.read(4)
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(file):
            return f"truncated ({size} bytes, no zip directory)"
        return None
    if file.name == "brain.ckpt":  # SpeechBrain's step counters, YAML
        try:
            state = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError):
            return "not valid YAML"
        if not isinstance(state, dict):
            return "not a mapping"
    return None


def quarantine(path, problem):
    """Renames a damaged checkpoint folder out of SpeechBrain's sight (main process).

    Returns
    -------
    pathlib.Path
        The new name.
    """
    path = pathlib.Path(path)
    target = path.with_name(DAMAGED_PREFIX + path.name)
    logger.warning("skipping damaged checkpoint %s (%s); renamed to %s", path, problem, target.name)
    if if_main_process():
        suffix = 0
        while target.exists():
            suffix += 1
            target = path.with_name(f"{DAMAGED_PREFIX}{suffix}-{path.name}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            pass  # renamed by another process sharing the folder
    return target


def quarantine_damaged(checkpointer, needed=None):
    """Renames every damaged ``CKPT+...`` folder of ``checkpointer`` (see :func:`checkpoint_problem`).

    Returns
    -------
    list of pathlib.Path
        The original paths of the damaged checkpoints.
    """
    if needed is None:
        needed = needed_recoverables(checkpointer)
    damaged = []
    folder = pathlib.Path(checkpointer.checkpoints_dir)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if not (path.is_dir() and path.name.startswith(CKPT_PREFIX)):
                continue
            if not (path / METAFNAME).exists():
                continue  # not a checkpoint for SpeechBrain either
            problem = checkpoint_problem(path, needed)
            if problem:
                quarantine(path, problem)
                damaged.append(path)
    ddp_barrier()
    return damaged


def recover_newest_intact(checkpointer, needed=None):
    """Loads the newest intact checkpoint; damaged ones are renamed and skipped.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        With every recoverable already added.
    needed : set of str, optional
        Files every checkpoint must hold (default :func:`needed_recoverables`).

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint or None
        The loaded checkpoint (``None``: there is none, training starts fresh).

    Raises
    ------
    RuntimeError
        When checkpoints exist but none loads (the model may be partly
        overwritten, so training must not go on).
    """
    quarantine_damaged(checkpointer, needed)
    failed = []
    for ckpt in checkpointer.find_checkpoints():
        try:
            checkpointer.load_checkpoint(ckpt)
        except Exception as err:  # torch, yaml and the load hooks raise many types
            logger.warning("cannot load checkpoint %s (%s: %s)", ckpt.path, type(err).__name__, err)
            failed.append((ckpt.path, f"load failed: {type(err).__name__}"))
            _reset_loader_positions(checkpointer)
            continue
        for path, problem in failed:
            quarantine(path, problem)
        ddp_barrier()
        if failed:
            logger.warning("resumed from the older checkpoint %s", ckpt.path)
        return ckpt
    if failed:
        raise RuntimeError(
            "no checkpoint could be loaded: "
            + "; ".join(f"{path} ({problem})" for path, problem in failed)
            + ". Move them away to start afresh."
        )
    logger.info("no intact checkpoint in %s: starting afresh", checkpointer.checkpoints_dir)
    return None


def _reset_loader_positions(checkpointer):
    """Forgets a position a failed load may have set (it belongs to that checkpoint)."""
    for obj in checkpointer.recoverables.values():
        if isinstance(obj, SaveableDataLoader):
            obj._speechbrain_recovery_skip_to = None
