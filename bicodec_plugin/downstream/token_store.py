"""On-disk store of BiCodec tokens, for downstream recipes (TTS, LMs, vocoders).

A store is a folder::

    meta.json                       model description (rates, codebook sizes, source)
    chunk-r000-000000.safetensors   "{index}/global" int16 (32,), "{index}/semantic" int16 (T,)
    index-r000.jsonl                one line per stored utterance, one file per writer
    failed.jsonl                    {"index", "wav_path", "error"} per file that failed
    embeddings.safetensors          optional, see :func:`write_embeddings`

Each writer (a rank of ``torchrun`` or a ``--shard-id``) has its own chunk
numbers and its own ``index-r{rank:03d}.jsonl``. Readers read every
``index*.jsonl`` in the folder, so no merge step is needed (a merged
``index.jsonl`` would be read too). An index line is appended only after
its chunk has been written to a temporary name, synced and renamed into
place, so every indexed utterance can be read whatever the moment a writer
was killed. A writer flushes every ``chunk_size`` utterances and at least
every ``flush_interval`` seconds, so ``kill -9`` loses at most that much
work, which a resume redoes; chunks left without index lines are ignored.

A chunk damaged on disk after it was indexed (a truncated copy, a bad
sector) is found when a writer opens the store (its header, or with
``verify=True`` every tensor and the checksum in its metadata): it is
renamed ``<chunk>.corrupt`` with a warning, its utterances count as not
done, and the writer's run recomputes them. A reader leaves out (with a
warning) utterances whose chunk is gone, and names the chunk when one
cannot be read.

Tokens are stored as int16 (codebooks of 8192 semantic and 4096 global codes)
and read back as int64.

Authors
 * BiCodec plugin authors 2026
"""

import collections
import glob
import hashlib
import json
import os
import re
import time

import torch
from safetensors import safe_open
from safetensors.torch import save, save_file
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import GeneratorDynamicItem
from speechbrain.utils.logger import get_logger

from bicodec_plugin.errors import CorruptChunkError, TokenStoreError
from bicodec_plugin.formats.weights import read_json_object

logger = get_logger(__name__)

FORMAT_NAME = "bicodec-tokens"
FORMAT_VERSION = 1
META_FILE = "meta.json"
FAILED_FILE = "failed.jsonl"
EMBEDDINGS_FILE = "embeddings.safetensors"
INT16_MAX = 32767
CORRUPT_SUFFIX = ".corrupt"
# A set-aside chunk keeps its number: a new chunk must never reuse its name.
_CHUNK_RE = re.compile(r"^chunk-r(\d{3})-(\d{6})\.safetensors(?:\.corrupt)?$")


def tokenizer_meta(tokenizer, source=None):
    """Describes a tokenizer for ``meta.json``.

    Arguments
    ---------
    tokenizer : BiCodecTokenizer
        The model that makes the tokens.
    source : str, optional
        Where it was loaded from (release or hparams folder).

    Returns
    -------
    dict
        ``format``, ``format_version``, ``sample_rate``, ``token_rate``,
        ``hop_length``, ``semantic_codebook_size``, ``global_codebook_size``,
        ``global_token_num``, ``volume_normalize``, ``codebook_fingerprint``
        (hash of the semantic codebook: tells models apart) and
        ``model_source``.

    Example
    -------
    >>> from bicodec_plugin.inference import BiCodecTokenizer
    >>> tok = BiCodecTokenizer.from_release("../shared/reference/tiny_release")  # doctest: +SKIP
    >>> tokenizer_meta(tok)["semantic_codebook_size"]  # doctest: +SKIP
    64
    """
    codec = tokenizer.codec
    codebook = codec.quantizer.codebook.weight.detach().float().cpu().contiguous()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sample_rate": int(tokenizer.sample_rate),
        "token_rate": float(tokenizer.token_rate),
        "hop_length": int(tokenizer.hop_length),
        "semantic_codebook_size": int(codec.quantizer.codebook_size),
        "global_codebook_size": int(codec.speaker_encoder.codebook_size),
        "global_token_num": int(codec.token_num),
        "volume_normalize": bool(tokenizer.hparams.volume_normalize),
        "codebook_fingerprint": hashlib.sha256(codebook.numpy().tobytes()).hexdigest()[:16],
        "model_source": None if source is None else os.path.abspath(source),
    }


class TokenWriter:
    """Appends utterances' tokens to a store folder (one writer per rank).

    Use it as a context manager: leaving the block (also by an exception
    or Ctrl-C) flushes the items already added, so a rerun skips them.

    Arguments
    ---------
    folder : str
        Store folder (created if needed).
    rank : int
        Writer number, in file names; concurrent writers need distinct ranks.
    chunk_size : int
        Utterances per chunk file.
    meta : dict, optional
        Written to ``meta.json`` (see :func:`tokenizer_meta`); if the folder
        already has one that differs (other than ``model_source``), a
        ``ValueError`` is raised rather than mixing tokens of two models.
    flush_interval : float or None
        Also flush when this many seconds have passed since the last flush
        (checked on each :meth:`add`), so that a ``kill -9`` loses at most
        about that much work; ``None``: only full chunks.
    verify : bool
        Read every indexed chunk in full (tensors, shapes, ranges, checksum)
        instead of its header only, before writing (see
        :func:`set_aside_bad_chunks`).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with TokenWriter(folder, chunk_size=2) as writer:
    ...     writer.add("a", torch.arange(32), torch.tensor([5, 6, 7]), {"text": "hi"})
    ...     writer.fail("b", "/data/b.wav", "b.wav: no such audio file")
    >>> sorted(os.listdir(folder))
    ['chunk-r000-000000.safetensors', 'failed.jsonl', 'index-r000.jsonl']
    >>> TokenStore(folder).semantic_tokens("a")
    tensor([5, 6, 7])
    """

    def __init__(
        self, folder, rank=0, chunk_size=256, meta=None, flush_interval=60.0, verify=False
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if flush_interval is not None and not flush_interval >= 0:
            raise ValueError(f"flush_interval must be >= 0 seconds or None, got {flush_interval}")
        self.folder = os.fspath(folder)
        self.rank = int(rank)
        self.chunk_size = int(chunk_size)
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise TokenStoreError(f"{self.folder}: exists and is not a folder")
        os.makedirs(self.folder, exist_ok=True)
        if meta is not None:
            write_meta(self.folder, meta)
        self.index_path = os.path.join(self.folder, f"index-r{self.rank:03d}.jsonl")
        _drop_partial_line(self.index_path)
        for temp in glob.glob(os.path.join(self.folder, f".chunk-r{self.rank:03d}-*.tmp")):
            os.remove(temp)  # left by a killed writer of this rank
        self.set_aside = set_aside_bad_chunks(self.folder, deep=verify, meta=meta)
        self._next_chunk = _next_chunk_number(self.folder, self.rank)
        self._pending = {}  # index -> (global int16, semantic int16, index entry)
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self.closed = False

    def add(self, index, global_tokens, semantic_tokens, info=None):
        """Queues one utterance; a full chunk is written at once.

        Arguments
        ---------
        index : str
            Utterance id (unique in the store).
        global_tokens : torch.Tensor
            32 global token ids, any shape with 32 elements.
        semantic_tokens : torch.Tensor
            Semantic token ids, (T,) or (1, T).
        info : dict, optional
            JSON-serialisable fields for the index line (``wav_path``,
            ``duration``, ``text``...); ``index``, ``chunk`` and
            ``num_semantic`` are set by the writer.
        """
        self._check_open()
        index = str(index)
        if index in self._pending:
            raise ValueError(f"index {index!r} added twice to the same chunk")
        glob_t = _to_int16(global_tokens, f"{index}: global tokens")
        sem_t = _to_int16(semantic_tokens, f"{index}: semantic tokens")
        reserved = ("index", "chunk", "num_semantic")
        entry = {"index": index, "chunk": None, "num_semantic": int(sem_t.numel())}
        entry.update((k, v) for k, v in (info or {}).items() if k not in reserved)
        try:
            json.dumps(entry)
        except TypeError as err:
            raise TypeError(f"{index}: info is not JSON-serialisable ({err})") from None
        self._pending[index] = (glob_t, sem_t, entry)
        overdue = (
            self.flush_interval is not None
            and time.monotonic() - self._last_flush >= self.flush_interval
        )
        if len(self._pending) >= self.chunk_size or overdue:
            self.flush()

    def flush(self):
        """Writes the queued utterances as one chunk, then their index lines.

        Returns
        -------
        int
            Utterances written.
        """
        self._last_flush = time.monotonic()
        if not self._pending:
            return 0
        name = f"chunk-r{self.rank:03d}-{self._next_chunk:06d}.safetensors"
        tensors = {}
        for index, (glob_t, sem_t, _) in self._pending.items():
            tensors[f"{index}/global"] = glob_t
            tensors[f"{index}/semantic"] = sem_t
        metadata = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "sha256": _content_hash(tensors),
        }
        _atomic_write(os.path.join(self.folder, name), save(tensors, metadata=metadata))
        lines = [
            json.dumps({**entry, "chunk": name}, ensure_ascii=False) + "\n"
            for _, _, entry in self._pending.values()
        ]
        _append(self.index_path, "".join(lines))
        written = len(self._pending)
        self._next_chunk += 1
        self._pending = {}
        return written

    def fail(self, index, wav_path, error):
        """Records a file that could not be tokenized in ``failed.jsonl``.

        Arguments
        ---------
        index : str
            Utterance id.
        wav_path : str
            Its audio file.
        error : str or Exception
            The reason (an exception is written as ``Type: message``).
        """
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        line = {"index": str(index), "wav_path": wav_path, "error": str(error)}
        path = os.path.join(self.folder, FAILED_FILE)
        # A line cut by a killed writer must not swallow this one.
        prefix = "" if _ends_with_newline(path) else "\n"
        _append(path, prefix + json.dumps(line, ensure_ascii=False) + "\n")

    def done_indexes(self, include_failed=False):
        """Indexes already stored (any rank) or queued here, for resuming.

        Arguments
        ---------
        include_failed : bool
            Also count the indexes listed in ``failed.jsonl``.

        Returns
        -------
        set of str
        """
        done = set(read_index(self.folder)) | set(self._pending)
        if include_failed:
            done |= set(read_failed(self.folder))
        return done

    @property
    def pending(self):
        """Utterances added but not yet written."""
        return len(self._pending)

    def close(self):
        """Flushes the last chunk; the writer cannot be used afterwards.

        Returns
        -------
        int
            Utterances written by this last flush.
        """
        if self.closed:
            return 0
        written = self.flush()
        self.closed = True
        return written

    def _check_open(self):
        if self.closed:
            raise RuntimeError("the TokenWriter is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TokenStore:
    """Reads a token store lazily: chunk files are opened on first use.

    Arguments
    ---------
    folder : str
        A folder written by :class:`TokenWriter`.
    max_open : int
        Open chunk files kept (least recently used ones are closed).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with TokenWriter(folder) as writer:
    ...     writer.add("a", torch.zeros(32, dtype=torch.long), torch.tensor([1, 2]), {"text": "x"})
    >>> store = TokenStore(folder)
    >>> len(store), "a" in store, store.open_chunks
    (1, True, [])
    >>> glob_t, sem_t = store.get("a")
    >>> glob_t.shape, sem_t.dtype, store.info("a")["text"], store.open_chunks
    (torch.Size([32]), torch.int64, 'x', ['chunk-r000-000000.safetensors'])
    >>> ds = store.dataset()
    >>> ds[0]["semantic_tokens"]
    tensor([1, 2])
    """

    def __init__(self, folder, max_open=64):
        self.folder = os.fspath(folder)
        if not os.path.isdir(self.folder):
            raise FileNotFoundError(f"{self.folder}: no such token store")
        self.max_open = max(1, int(max_open))
        self._handles = collections.OrderedDict()
        self.reload()

    def reload(self):
        """Re-reads ``meta.json`` and the index files (e.g. while extraction runs).

        Utterances whose chunk file is gone (removed, or set aside as
        corrupt) are left out, listed in :attr:`missing`, with a warning.
        """
        self.meta = read_meta(self.folder)
        self.missing = {}
        self._entries = read_index(self.folder, missing=self.missing)
        if self.missing:
            chunks = sorted(set(self.missing.values()))
            logger.warning(
                "%s: %d utterances are left out: their chunk files are missing or were set "
                "aside as corrupt (%s); rerun extract_tokens.py on the same manifest to "
                "recompute them",
                self.folder,
                len(self.missing),
                ", ".join(chunks[:5]) + (" ..." if len(chunks) > 5 else ""),
            )

    def __len__(self):
        return len(self._entries)

    def __contains__(self, index):
        return str(index) in self._entries

    def __iter__(self):
        return iter(self._entries)

    def keys(self):
        """Stored indexes, in index-file order (list of str)."""
        return list(self._entries)

    def info(self, index):
        """The index line of an utterance (a copy), e.g. ``text``, ``duration``."""
        return dict(self._entry(index))

    @property
    def failed(self):
        """``{index: failed.jsonl line}`` for failures not stored since."""
        return {k: v for k, v in read_failed(self.folder).items() if k not in self._entries}

    @property
    def open_chunks(self):
        """Names of the chunk files currently open (laziness check)."""
        return list(self._handles)

    def global_tokens(self, index):
        """Global tokens of one utterance, LongTensor (32,)."""
        return self._tensor(index, "global")

    def semantic_tokens(self, index):
        """Semantic tokens of one utterance, LongTensor (T,)."""
        return self._tensor(index, "semantic")

    def get(self, index):
        """``(global_tokens (32,), semantic_tokens (T,))``, both int64."""
        return self.global_tokens(index), self.semantic_tokens(index)

    def dynamic_item(self, key="id", provides=("global_tokens", "semantic_tokens")):
        """A SpeechBrain dynamic item: utterance id -> global, semantic tokens.

        Arguments
        ---------
        key : str
            Dataset key holding the index (``id`` when the dataset was built
            from :func:`~bicodec_plugin.training.data.read_manifests`).
        provides : tuple of str
            Names of the two outputs.

        Returns
        -------
        speechbrain.utils.data_pipeline.GeneratorDynamicItem
            For ``DynamicItemDataset.add_dynamic_item`` (or ``dynamic_items=``);
            picklable for DataLoader workers.
        """
        return GeneratorDynamicItem(func=self._item_tokens, takes=[key], provides=list(provides))

    def dataset(self, output_keys=("id", "global_tokens", "semantic_tokens")):
        """A ``DynamicItemDataset`` of all stored utterances.

        Static keys are the index-line fields (``text``, ``duration``,
        ``num_semantic``, ``wav_path``...), dynamic keys the tokens.

        Arguments
        ---------
        output_keys : sequence of str
            Keys each item returns.

        Returns
        -------
        speechbrain.dataio.dataset.DynamicItemDataset
        """
        data = {
            index: {k: v for k, v in entry.items() if k not in ("index", "id")}
            for index, entry in self._entries.items()
        }
        return DynamicItemDataset(
            data, dynamic_items=[self.dynamic_item()], output_keys=list(output_keys)
        )

    def _item_tokens(self, index):
        yield self.global_tokens(index)
        yield self.semantic_tokens(index)

    def _entry(self, index):
        try:
            return self._entries[str(index)]
        except KeyError:
            raise KeyError(f"{index!r} is not in the token store {self.folder}") from None

    def _tensor(self, index, kind):
        entry = self._entry(index)
        chunk = entry["chunk"]
        try:
            return self._handle(chunk).get_tensor(f"{entry['index']}/{kind}").long()
        except CorruptChunkError:
            raise
        except Exception as err:  # safetensors raises its own error type
            raise _chunk_error(self.folder, chunk, err) from None

    def _handle(self, chunk):
        handle = self._handles.get(chunk)
        if handle is None:
            try:
                handle = safe_open(os.path.join(self.folder, chunk), framework="pt")
            except Exception as err:  # safetensors raises its own error type
                raise _chunk_error(self.folder, chunk, err) from None
            self._handles[chunk] = handle
            if len(self._handles) > self.max_open:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(chunk)
        return handle

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = collections.OrderedDict()  # reopened in each worker
        return state

    def __repr__(self):
        return f"TokenStore({self.folder!r}, {len(self)} utterances)"


def write_embeddings(tokenizer, folder, filename=EMBEDDINGS_FILE):
    """Saves the codebooks, for downstream models that want pretrained token embeddings.

    Tensors (float32), row ``i`` belonging to token id ``i``:

    * ``semantic_codebook`` (semantic_codebook_size, codebook_dim): the VQ codewords.
    * ``semantic_embeddings`` (semantic_codebook_size, latent_dim): the codewords
      after the output projection, i.e. what the decoder receives.
    * ``global_codes`` (global_codebook_size, fsq_dim): FSQ code values in [-1, 1].
    * ``global_embeddings`` (global_codebook_size, latent_dim): the codes after the
      FSQ output projection (one global token position's latent).

    Arguments
    ---------
    tokenizer : BiCodecTokenizer or BiCodec
        The model (anything with ``quantizer`` and ``speaker_encoder``, or a ``codec``).
    folder : str
        Output folder (created if needed).
    filename : str
        File name in ``folder``.

    Returns
    -------
    str
        Path of the written file.

    Example
    -------
    >>> import tempfile
    >>> from bicodec_plugin.testing import tiny_codec
    >>> path = write_embeddings(tiny_codec().eval(), tempfile.mkdtemp())
    >>> from safetensors.torch import load_file
    >>> {k: tuple(v.shape) for k, v in sorted(load_file(path).items())}
    {'global_codes': (4096, 6), 'global_embeddings': (4096, 16), 'semantic_codebook': (64, 8), 'semantic_embeddings': (64, 32)}
    """
    codec = getattr(tokenizer, "codec", tokenizer)
    quantizer = codec.quantizer
    fsq = codec.speaker_encoder.quantizer
    if fsq.num_quantizers != 1:
        raise NotImplementedError("global embeddings are defined for a single FSQ stage")
    with torch.no_grad():
        codebook = quantizer.codebook.weight.detach().float()
        semantic = quantizer.out_project(codebook.t().unsqueeze(0))  # (1, d, V)
        ids = torch.arange(fsq.codebook_size, device=codebook.device)
        codes = fsq.layers[0].indices_to_codes(ids) * fsq.scales[0]  # (V, fsq_dim)
        global_emb = fsq.project_out(codes)  # (V, latent_dim)
    tensors = {
        "semantic_codebook": codebook,
        "semantic_embeddings": semantic[0].t(),  # (D, V) -> (V, D)
        "global_codes": codes,
        "global_embeddings": global_emb,
    }
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, filename)
    save_file(tensors, path, metadata={"format": "bicodec-embeddings", "row": "token id"})
    return path


def write_meta(folder, meta):
    """Writes ``meta.json``, or checks that the existing one describes the same model.

    Arguments
    ---------
    folder : str
        Store folder.
    meta : dict
        See :func:`tokenizer_meta`.

    Raises
    ------
    ValueError
        When ``meta.json`` exists and differs in anything but ``model_source``.
    """
    path = os.path.join(folder, META_FILE)
    if os.path.isfile(path):
        old = read_meta(folder)
        differ = [
            f"{key}: {old.get(key)!r} here, {meta.get(key)!r} now"
            for key in sorted(set(old) | set(meta))
            if key != "model_source" and old.get(key) != meta.get(key)
        ]
        if differ:
            raise ValueError(
                f"{folder} holds tokens of another model or format ({'; '.join(differ)}); "
                "use a new output folder"
            )
        return
    _atomic_write(path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))


def read_meta(folder):
    """``meta.json`` of a store (``{}`` when absent).

    Raises
    ------
    TokenStoreError
        When the file is not a JSON object (names it).
    """
    path = os.path.join(folder, META_FILE)
    if not os.path.isfile(path):
        return {}
    return read_json_object(path, TokenStoreError, "unreadable")


def read_index(folder, missing=None):
    """All index lines of a store: ``{index: entry}`` from every ``index*.jsonl``.

    An index stored twice (overlapping shard runs, or recomputed after its
    chunk was set aside) keeps its first line whose chunk file exists. Lines
    whose chunk file is gone are left out.

    Arguments
    ---------
    folder : str
        Store folder.
    missing : dict, optional
        Filled with ``{index: chunk}`` for indexes that have no line with an
        existing chunk.

    Returns
    -------
    dict
    """
    present = set(os.listdir(folder))
    entries, lost = {}, {}
    for path in sorted(glob.glob(os.path.join(folder, "index*.jsonl"))):
        for number, entry in _read_jsonl(path, numbered=True):
            if not (isinstance(entry, dict) and "index" in entry and "chunk" in entry):
                logger.warning("%s:%d: skipping a line without index and chunk", path, number)
                continue
            index = str(entry["index"])
            if entry["chunk"] not in present:
                lost.setdefault(index, entry["chunk"])
                continue
            if index in entries:
                if entries[index]["chunk"] != entry["chunk"]:
                    logger.warning("%s: index %r is stored twice; keeping the first", path, index)
                continue
            entries[index] = entry
    if missing is not None:
        missing.update((k, v) for k, v in lost.items() if k not in entries)
    return entries


def set_aside_bad_chunks(folder, deep=False, meta=None):
    """Renames indexed chunks that cannot be read to ``<chunk>.corrupt``, with a warning.

    Their utterances then count as not stored (see :func:`read_index`), so
    a writer's run recomputes them.

    Arguments
    ---------
    folder : str
        Store folder.
    deep : bool
        Read every tensor (shape, range, checksum) instead of the header only.
    meta : dict, optional
        Store description with ``global_token_num`` and codebook sizes, for
        ``deep`` (default: ``meta.json``).

    Returns
    -------
    dict
        ``{chunk name: problem}`` of the chunks set aside.
    """
    by_chunk = collections.defaultdict(list)
    for entry in read_index(folder).values():
        by_chunk[entry["chunk"]].append(entry)
    if deep and meta is None:
        meta = read_meta(folder)
    bad = {}
    for chunk, entries in sorted(by_chunk.items()):
        problem = chunk_problem(os.path.join(folder, chunk), entries, meta if deep else None)
        if problem is None:
            continue
        bad[chunk] = problem
        logger.warning(
            "%s: %s; set aside as %s, its %d utterances will be recomputed",
            os.path.join(folder, chunk),
            problem,
            chunk + CORRUPT_SUFFIX,
            len(entries),
        )
        try:
            os.replace(os.path.join(folder, chunk), os.path.join(folder, chunk + CORRUPT_SUFFIX))
        except FileNotFoundError:
            pass  # set aside by another writer starting at the same time
    return bad


def chunk_problem(path, entries, meta=None):
    """What is wrong with a chunk file, or ``None``.

    Arguments
    ---------
    path : str
        The chunk.
    entries : list of dict
        Its index lines (``index``, ``num_semantic``).
    meta : dict, optional
        With ``meta``: every tensor is read and checked (dtype, shape,
        ids within the codebooks, the ``sha256`` of the chunk's metadata);
        without: the header only (truncation, missing keys).

    Returns
    -------
    str or None
    """
    try:
        with safe_open(path, framework="pt") as handle:
            keys = set(handle.keys())
            expected = set()
            for entry in entries:
                expected |= {f"{entry['index']}/global", f"{entry['index']}/semantic"}
            if expected - keys:
                return f"{len(expected - keys)} indexed tensors are missing"
            if meta is None:
                return None
            stored = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in sorted(keys)}
    except Exception as err:  # safetensors raises its own error type
        return f"unreadable ({err})"
    if "sha256" in stored and stored["sha256"] != _content_hash(tensors):
        return "content differs from its checksum"
    sizes = {
        "global": (meta.get("global_token_num"), meta.get("global_codebook_size")),
        "semantic": (None, meta.get("semantic_codebook_size")),
    }
    for entry in entries:
        for kind, (count, size) in sizes.items():
            tensor = tensors[f"{entry['index']}/{kind}"]
            if kind == "semantic":
                count = entry.get("num_semantic")
            if tensor.dtype != torch.int16 or tensor.dim() != 1:
                return f"{entry['index']}/{kind}: not a 1-D int16 tensor"
            if count is not None and tensor.numel() != int(count):
                return f"{entry['index']}/{kind}: {tensor.numel()} tokens, index says {count}"
            if tensor.numel() and (
                int(tensor.min()) < 0 or (size is not None and int(tensor.max()) >= int(size))
            ):
                return f"{entry['index']}/{kind}: ids outside [0, {size})"
    return None


def _content_hash(tensors):
    """sha256 of names and bytes of int16 token tensors, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode("utf-8") + b"\0")
        digest.update(tensors[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _chunk_error(folder, chunk, err):
    return CorruptChunkError(
        f"{os.path.join(folder, chunk)}: cannot read this token chunk ({err}); rerun "
        "extract_tokens.py on the same manifest (add --verify to check every chunk) to "
        "set it aside and recompute its utterances"
    )


def read_failed(folder):
    """``{index: line}`` of ``failed.jsonl`` (latest failure per index)."""
    path = os.path.join(folder, FAILED_FILE)
    if not os.path.isfile(path):
        return {}
    return {
        str(entry["index"]): entry
        for entry in _read_jsonl(path)
        if isinstance(entry, dict) and "index" in entry
    }


def _read_jsonl(path, numbered=False):
    """Objects of a JSON-Lines file; a line cut by a killed writer is skipped."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d: skipping an unreadable (truncated?) line", path, number)
                continue
            out.append((number, value) if numbered else value)
    return out


def _to_int16(tokens, name):
    """Token ids -> contiguous int16 (N,), refusing floats and out-of-range ids."""
    tokens = torch.as_tensor(tokens).detach().cpu().reshape(-1)
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must be integers, got {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > INT16_MAX):
        raise ValueError(f"{name} must lie in [0, {INT16_MAX}] to be stored as int16")
    return tokens.to(torch.int16).contiguous()


def _next_chunk_number(folder, rank):
    """First unused chunk number of ``rank`` (chunks are never overwritten)."""
    numbers = [-1]
    for name in os.listdir(folder):
        match = _CHUNK_RE.match(name)
        if match and int(match.group(1)) == rank:
            numbers.append(int(match.group(2)))
    return max(numbers) + 1


def _atomic_write(path, data):
    """Writes bytes to a temporary name, syncs, and renames into place."""
    folder, name = os.path.split(path)
    temp = os.path.join(folder, f".{os.path.splitext(name)[0]}.{os.getpid()}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def _append(path, text):
    """Appends whole lines with a single ``write`` (O_APPEND: writers do not interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path):
    """True for a missing or empty file, or one whose last byte is a newline."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return True


def _drop_partial_line(path):
    """Cuts an unfinished last line (a killed writer) so that appends stay valid."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
