"""Scans an audio folder into BiCodec JSON-Lines manifests.

Writes ``train.jsonl`` and ``valid.jsonl`` in the output folder, one object
per line: ``index`` (path below the audio folder, without extension, ``/``
replaced by ``_``), ``wav_path`` (relative to the manifest folder when the
audio lies inside it, absolute otherwise), ``duration`` in seconds and, when
found, ``text``. Text comes from a sibling ``<name>.normalized.txt``,
``<name>.txt`` or ``<name>.lab`` file (LibriTTS, plain, HTK), else from a
LibriSpeech-style ``*.trans.txt`` in the same folder. Unreadable files are
skipped with one warning listing them. The split is a seeded shuffle.

Usage::

    python recipes/prepare_manifest.py /data/LibriTTS/train-clean-100 manifests \\
        --valid-count 100

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import glob
import json
import logging
import os
import random
import sys

import soundfile
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

AUDIO_EXTENSIONS = ("wav", "flac", "ogg")
# Sibling transcript files, most specific first (LibriTTS writes both
# <name>.normalized.txt and <name>.original.txt).
SIDECAR_SUFFIXES = (".normalized.txt", ".txt", ".lab")


def prepare_manifest(
    audio_folder,
    output_dir,
    valid_count=None,
    valid_fraction=0.01,
    extensions=AUDIO_EXTENSIONS,
    text_from="sidecar",
    seed=1234,
):
    """Writes ``train.jsonl`` and ``valid.jsonl`` for every audio file below a folder.

    Arguments
    ---------
    audio_folder : str
        Folder scanned recursively.
    output_dir : str
        Where the manifests go (created if needed).
    valid_count : int, optional
        Files held out for validation; overrides ``valid_fraction``.
    valid_fraction : float
        Share of files held out when ``valid_count`` is None (at least one
        file when the fraction is positive and there are two or more).
    extensions : tuple of str
        Audio extensions to keep, case-insensitive, with or without a dot.
    text_from : str or None
        ``"sidecar"`` to add ``text`` from transcript files, None for none.
    seed : int
        Seed of the train/valid split.

    Returns
    -------
    train_path : str
    valid_path : str

    Example
    -------
    >>> import tempfile, numpy
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("a", "b", "c"):
    ...     soundfile.write(os.path.join(folder, name + ".wav"), numpy.zeros(1600), 16000)
    >>> train, valid = prepare_manifest(folder, folder, valid_count=1)
    >>> len(open(train).readlines()), len(open(valid).readlines())
    (2, 1)
    """
    if text_from not in ("sidecar", None):
        raise ValueError(f"text_from must be 'sidecar' or None, not {text_from!r}")
    if not os.path.isdir(audio_folder):
        raise FileNotFoundError(f"{audio_folder}: no such folder")
    manifest_dir = os.path.abspath(output_dir)
    entries, skipped, origin = [], [], {}
    transcripts = {}  # folder -> {utterance: text} from *.trans.txt
    for path in find_audio_files(audio_folder, extensions):
        try:
            info = soundfile.info(path)
            if info.frames <= 0:
                raise ValueError("no samples")
        except (RuntimeError, ValueError, OSError) as err:  # LibsndfileError is a RuntimeError
            skipped.append(f"{path} ({err})")
            continue
        index = _index_of(path, audio_folder)
        if index in origin:
            raise ValueError(f"{path} and {origin[index]} both give the index {index!r}")
        origin[index] = path
        entry = {
            "index": index,
            "wav_path": _manifest_path(path, manifest_dir),
            "duration": round(info.frames / info.samplerate, 6),
        }
        if text_from == "sidecar":
            text = find_text(path, transcripts)
            if text is not None:
                entry["text"] = text
        entries.append(entry)
    if skipped:
        logger.warning(
            "Skipped %d unreadable audio file(s):\n  %s", len(skipped), "\n  ".join(skipped)
        )
    if not entries:
        raise ValueError(f"{audio_folder}: no readable audio file with extension {extensions}")

    valid_ids = _split(sorted(origin), valid_count, valid_fraction, seed)
    os.makedirs(manifest_dir, exist_ok=True)
    train_path = os.path.join(manifest_dir, "train.jsonl")
    valid_path = os.path.join(manifest_dir, "valid.jsonl")
    entries.sort(key=lambda entry: entry["index"])
    _write_jsonl(train_path, [e for e in entries if e["index"] not in valid_ids])
    _write_jsonl(valid_path, [e for e in entries if e["index"] in valid_ids])
    logger.info(
        "Wrote %d train and %d valid items to %s",
        len(entries) - len(valid_ids),
        len(valid_ids),
        manifest_dir,
    )
    return train_path, valid_path


def find_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Sorted paths of files below ``folder`` whose extension is in ``extensions``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> open(os.path.join(folder, "x.WAV"), "w").close()
    >>> [os.path.basename(p) for p in find_audio_files(folder)]
    ['x.WAV']
    """
    wanted = {"." + ext.lower().lstrip(".") for ext in extensions}
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # deterministic order on every file system
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in wanted:
                found.append(os.path.join(root, name))
    return found


def find_text(audio_path, transcripts=None):
    """Transcript of an audio file from a sidecar or a ``*.trans.txt``; None if absent.

    Arguments
    ---------
    audio_path : str
        Audio file.
    transcripts : dict, optional
        Cache of parsed ``*.trans.txt`` files per folder, filled as needed.

    Returns
    -------
    str or None
        Text with whitespace collapsed.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "1-2.trans.txt"), "w") as f:
    ...     _ = f.write("1-2-0003 HELLO  WORLD\\n")
    >>> find_text(os.path.join(folder, "1-2-0003.flac"))
    'HELLO WORLD'
    """
    stem, _ = os.path.splitext(audio_path)
    for suffix in SIDECAR_SUFFIXES:
        if os.path.isfile(stem + suffix):
            with open(stem + suffix, encoding="utf-8") as f:
                text = " ".join(f.read().split())
            if text:
                return text
    folder = os.path.dirname(audio_path)
    if transcripts is None:
        transcripts = {}
    if folder not in transcripts:
        transcripts[folder] = _read_trans_files(folder)
    return transcripts[folder].get(os.path.basename(stem))


def _read_trans_files(folder):
    """``{utterance: text}`` from LibriSpeech-style ``*.trans.txt`` files."""
    texts = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*.trans.txt"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split(maxsplit=1)
                if len(parts) == 2:
                    texts[parts[0]] = " ".join(parts[1].split())
    return texts


def _index_of(path, audio_folder):
    """Relative path without extension, separators replaced by ``_``."""
    relative = os.path.splitext(os.path.relpath(path, audio_folder))[0]
    return relative.replace(os.sep, "_").replace("/", "_")


def _manifest_path(path, manifest_dir):
    """``path`` relative to the manifest folder when inside it, else absolute."""
    path = os.path.abspath(path)
    if os.path.commonpath([path, manifest_dir]) == manifest_dir:
        return os.path.relpath(path, manifest_dir).replace(os.sep, "/")
    return path


def _split(indices, valid_count, valid_fraction, seed):
    """The seeded set of validation indices drawn from sorted ``indices``."""
    total = len(indices)
    if valid_count is None:
        valid_count = round(valid_fraction * total)
        if valid_fraction > 0 and total > 1:
            valid_count = min(max(valid_count, 1), total - 1)
    if not 0 <= valid_count < total:
        raise ValueError(f"valid_count {valid_count} must leave training files (found {total})")
    order = list(indices)
    random.Random(seed).shuffle(order)
    return set(order[:valid_count])


def _write_jsonl(path, entries):
    """One JSON object per line, UTF-8."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries)


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        description="Scan an audio folder into BiCodec train.jsonl / valid.jsonl manifests."
    )
    parser.add_argument("audio_folder", help="folder scanned recursively for audio")
    parser.add_argument("output_dir", help="folder for train.jsonl and valid.jsonl")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--valid-count", type=int, help="files held out for validation")
    group.add_argument(
        "--valid-fraction",
        type=float,
        default=0.01,
        help="share of files held out (default: 0.01, at least one)",
    )
    parser.add_argument(
        "--extensions",
        nargs="+",
        default=list(AUDIO_EXTENSIONS),
        help="audio extensions to keep (default: wav flac ogg)",
    )
    parser.add_argument("--no-text", action="store_true", help="do not look for transcripts")
    parser.add_argument("--seed", type=int, default=1234, help="split seed (default: 1234)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    prepare_manifest(
        args.audio_folder,
        args.output_dir,
        valid_count=args.valid_count,
        valid_fraction=args.valid_fraction,
        extensions=tuple(args.extensions),
        text_from=None if args.no_text else "sidecar",
        seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(main())
