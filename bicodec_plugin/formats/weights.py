"""Codec weights on disk: the reference's key names and one strict loader.

Release folders (``BiCodec/model.safetensors``) and exported folders
(``codec.safetensors``) store the codec's tensors under the reference's key
names, weight norm as ``weight_g``/``weight_v``. Both load through
:func:`load_codec_weights`: safetensors only, the weight-norm pair and an
already-folded ``weight`` both accepted, the mel buffers optional, and
anything else missing, extra, mis-shaped or not finite refused with the full
list and the file's path.

Authors
 * BiCodec plugin authors 2026
"""

import json
import os
import zipfile

import torch

WN_G = ".parametrizations.weight.original0"
WN_V = ".parametrizations.weight.original1"
# Buffers a release file may or may not carry (they are recomputed anyway).
OPTIONAL_KEYS = ("mel_transformer.spectrogram.window", "mel_transformer.mel_scale.fb")


class ReleaseLoadError(RuntimeError):
    """A release or exported folder, or its weight file, does not match the model."""


def to_release_key(key):
    """Our state-dict key -> the reference's.

    Example
    -------
    >>> to_release_key("decoder.model.0.parametrizations.weight.original0")
    'decoder.model.0.weight_g'
    """
    if key.endswith(WN_G):
        return key[: -len(WN_G)] + ".weight_g"
    if key.endswith(WN_V):
        return key[: -len(WN_V)] + ".weight_v"
    return key


def release_state_dict(model):
    """The model's weights under the reference's key names (weight-norm form if unfolded).

    Example
    -------
    >>> from bicodec_plugin.testing import tiny_codec
    >>> sd = release_state_dict(tiny_codec())
    >>> "quantizer.in_project.weight_g" in sd
    True
    """
    return {to_release_key(k): v for k, v in model.codec_state_dict().items()}


def _norm_except_dim0(weight):
    return weight.norm(dim=tuple(range(1, weight.dim())), keepdim=True)


def convert_release_state(model, release_state, nonfinite=None):
    """Maps a reference state dict onto ``model``'s keys, checking everything.

    ``weight_g``/``weight_v`` pairs feed weight-normed layers directly and are
    folded (``g * v / ||v||``, as the reference's ``remove_weight_norm``) for
    folded layers; a folded ``weight`` feeds folded layers directly and a
    weight-normed layer as ``g = ||w||``, ``v = w``.

    Arguments
    ---------
    model : BiCodec
        Target model (weight norm folded or not).
    release_state : dict
        Reference key -> tensor.
    nonfinite : list of str, optional
        The file's tensors with NaN/inf values, already found by the caller
        (:func:`_nonfinite_in_file`, which leaves a mapped file unread);
        default: counted here on ``release_state``.

    Returns
    -------
    dict
        State dict for ``model.load_state_dict(..., strict=False)`` (the
        optional mel buffers may be absent).

    Raises
    ------
    ReleaseLoadError
        Listing every missing, unexpected and mis-shaped tensor.
    """
    target = model.codec_state_dict()
    source = dict(release_state)
    used = set()
    converted, missing, shapes = {}, [], []
    # Checked on the file's own tensors, so that the message names the stored key.
    if nonfinite is None:
        nonfinite = [
            f"{name} ({bad} of {value.numel()} values)"
            for name, value in sorted(source.items())
            if (bad := _count_nonfinite(value))
        ]

    def take(name):
        used.add(name)
        return source[name]

    file_tensors = {id(value) for value in source.values()}

    for key, ref in target.items():
        if key.endswith(WN_G) or key.endswith(WN_V):
            base = key[: -len(WN_G)]
            if base + ".weight_g" in source and base + ".weight_v" in source:
                value = take(base + (".weight_g" if key.endswith(WN_G) else ".weight_v"))
            elif base + ".weight" in source:
                weight = take(base + ".weight")
                value = _norm_except_dim0(weight) if key.endswith(WN_G) else weight
            else:
                missing.append(to_release_key(key))
                continue
        elif key.endswith(".weight") and key not in source and key + "_g" in source:
            base = key[: -len(".weight")]
            if base + ".weight_v" not in source:
                missing.append(base + ".weight_v")
                continue
            g, v = take(base + ".weight_g"), take(base + ".weight_v")
            if g.dim() != v.dim():
                shapes.append(f"{base}.weight_g: {tuple(g.shape)} vs weight_v {tuple(v.shape)}")
                continue
            value = torch._weight_norm(v, g, 0)
        elif key in source:
            value = take(key)
        elif key in OPTIONAL_KEYS:
            continue
        else:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(ref.shape):
            shapes.append(
                f"{to_release_key(key)}: file {tuple(value.shape)}, model {tuple(ref.shape)}"
            )
            continue
        if ref.is_floating_point() and not value.is_floating_point():
            shapes.append(f"{to_release_key(key)}: file dtype {value.dtype}, model {ref.dtype}")
            continue
        # A file tensor taken as it is was checked above; a computed one is checked now.
        bad = 0 if id(value) in file_tensors else _count_nonfinite(value)
        if bad and not nonfinite:  # finite in the file, not after folding (a zero weight_v)
            shapes.append(f"{to_release_key(key)}: {bad} NaN or infinite values after folding")
            continue
        converted[key] = value.to(ref.dtype)
    unexpected = sorted(set(source) - used - set(converted))
    if missing or unexpected or shapes or nonfinite:
        lines = []
        if missing:
            lines.append(f"missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        if shapes:
            lines.append(f"mis-shaped tensors ({len(shapes)}): " + "; ".join(shapes))
        if nonfinite:
            lines.append(f"NaN or infinite values in ({len(nonfinite)}): " + ", ".join(nonfinite))
        raise ReleaseLoadError("weights do not match the model:\n  " + "\n  ".join(lines))
    return converted


def load_codec_weights(model, path, assign=False):
    """Loads a codec weight file (safetensors, reference key names) into ``model``, strictly.

    The one loader of release (``BiCodec/model.safetensors``) and exported
    (``codec.safetensors``) folders; also a SpeechBrain ``Pretrainer`` hook.

    Arguments
    ---------
    model : BiCodec
        Built from the same architecture.
    path : str
        Path of the ``.safetensors`` file.
    assign : bool
        Make the file's tensors the model's parameters instead of copying
        them in: safetensors maps the file (copy-on-write), so a weight costs
        resident memory only once something reads it, and the model's own
        initial tensors are freed. Tensors that need converting (weight norm
        folded on loading) are computed as usual.

    Raises
    ------
    ReleaseLoadError
        Naming the file: unreadable, not safetensors, or not matching the model.
    """
    path = str(path)
    from safetensors.torch import load_file

    if not path.endswith(".safetensors"):
        raise ReleaseLoadError(f"{path}: only .safetensors weight files are loaded")
    if not os.path.isfile(path):
        raise ReleaseLoadError(f"{path}: missing weight file")
    try:
        state = load_file(path)
    except Exception as err:
        raise ReleaseLoadError(f"{path}: cannot read safetensors file ({err})") from err
    if model.postnet is None:
        state = {k: v for k, v in state.items() if not k.startswith("postnet.")}
    # Assigned tensors stay mapped: reading them here would make the whole
    # file resident (the decoder's weights in a tokenize-only process too).
    nonfinite = _nonfinite_in_file(path, sorted(state)) if assign else None
    try:
        converted = convert_release_state(model, state, nonfinite)
    except ReleaseLoadError as err:
        raise ReleaseLoadError(f"{path}: {err}") from None
    result = model.load_state_dict(converted, strict=False, assign=assign)
    leftover = [
        k for k in result.missing_keys if k not in OPTIONAL_KEYS and not k.startswith("ssl.")
    ]
    if leftover or result.unexpected_keys:
        raise ReleaseLoadError(f"{path}: internal key mismatch {leftover} {result.unexpected_keys}")


def _nonfinite_in_file(path, names, group_bytes=64 << 20):
    """``"name (bad of n values)"`` for the tensors of ``path`` with NaN/inf values.

    Reads the file in groups of about ``group_bytes``, each through its own
    short-lived mapping, so that the process never holds more than one group
    (the page cache keeps the file; it is not this process's memory).
    """
    from safetensors import safe_open

    bad_tensors, start = [], 0
    while start < len(names):
        with safe_open(path, framework="pt") as reader:
            size = 0
            while start < len(names) and (size == 0 or size < group_bytes):
                name = names[start]
                tensor = reader.get_tensor(name)
                size += tensor.numel() * tensor.element_size()
                if bad := _count_nonfinite(tensor):
                    bad_tensors.append(f"{name} ({bad} of {tensor.numel()} values)")
                del tensor
                start += 1
    return bad_tensors


def _count_nonfinite(tensor):
    """NaN/inf entries of a floating tensor (0 for other dtypes)."""
    if not tensor.is_floating_point():
        return 0
    # One fast reduction first: the sum is finite exactly when no value is NaN/inf
    # (barring overflow, which the exact count below then settles).
    if bool(torch.isfinite(tensor.sum(dtype=torch.float32))):
        return 0
    return int((~torch.isfinite(tensor)).sum())


def check_safetensors_file(path):
    """Opens a safetensors file's header: a truncated or non-safetensors file is refused.

    Arguments
    ---------
    path : str
        The file.

    Raises
    ------
    ReleaseLoadError
        Naming the file: missing, empty, truncated or not safetensors.
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise ReleaseLoadError(f"{path}: missing weight file")
    try:
        with safe_open(path, framework="pt") as handle:
            handle.keys()
    except Exception as err:  # safetensors raises its own error type
        raise ReleaseLoadError(
            f"{path}: cannot read safetensors file ({err}); truncated download? fetch it again"
        ) from None


def check_wav2vec2_folder(folder):
    """Checks the files of a local wav2vec2 folder before ``transformers`` loads it.

    ``config.json`` must exist and be a JSON object (without it
    ``transformers`` would build its default-size model and report every
    tensor as mis-shaped), ``preprocessor_config.json`` must be a JSON object
    when present, and the weights (``model.safetensors``, a sharded index
    or ``pytorch_model.bin``) must be present and complete.

    Arguments
    ---------
    folder : str
        The folder (``wav2vec2-large-xlsr-53/`` of a release, ``wav2vec2/``
        of an export).

    Raises
    ------
    ReleaseLoadError
        Naming the file and the problem.

    Example
    -------
    >>> import tempfile
    >>> check_wav2vec2_folder(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bicodec_plugin.formats.weights.ReleaseLoadError: .../config.json: missing (...)
    """
    config = os.path.join(folder, "config.json")
    if not os.path.isfile(config):
        raise ReleaseLoadError(
            f"{config}: missing (the wav2vec2 folder needs the config.json its weights were "
            "saved with)"
        )
    read_json_object(config)
    preprocessor = os.path.join(folder, "preprocessor_config.json")
    if os.path.exists(preprocessor):
        read_json_object(preprocessor)
    safetensors = os.path.join(folder, "model.safetensors")
    pickled = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(safetensors):
        check_safetensors_file(safetensors)
    elif os.path.isfile(os.path.join(folder, "model.safetensors.index.json")):
        read_json_object(os.path.join(folder, "model.safetensors.index.json"))
    elif os.path.isfile(pickled):
        _check_torch_file(pickled)
    else:
        raise ReleaseLoadError(
            f"{folder}: no wav2vec2 weights (model.safetensors or pytorch_model.bin)"
        )


def check_finite_parameters(module, where):
    """Refuses a module whose parameters or buffers hold NaN or inf, naming them.

    Arguments
    ---------
    module : torch.nn.Module
        Loaded model.
    where : str
        The file the values came from (for the message).

    Raises
    ------
    ReleaseLoadError
    """
    bad = [
        f"{name} ({count} of {tensor.numel()} values)"
        for name, tensor in module.state_dict().items()
        if (count := _count_nonfinite(tensor))
    ]
    if bad:
        raise ReleaseLoadError(
            f"{where}: NaN or infinite values in ({len(bad)}): " + ", ".join(bad)
        )


def read_json_object(path, error=ReleaseLoadError, problem="not valid JSON"):
    """A JSON file holding one object, as a dict; ``error`` naming the file otherwise.

    Arguments
    ---------
    path : str
        The file.
    error : type
        Exception raised when it cannot be read, is not JSON or not an object.
    problem : str
        What the message says of a file that cannot be read or parsed.

    Returns
    -------
    dict

    Example
    -------
    >>> path = getfixture("tmp_path") / "list.json"
    >>> _ = path.write_text("[1, 2]")
    >>> read_json_object(str(path))
    Traceback (most recent call last):
    ...
    bicodec_plugin.formats.weights.ReleaseLoadError: ...list.json: expected a JSON object, found list
    """
    try:
        with open(path, encoding="utf-8") as fin:
            data = json.load(fin)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: {problem} ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _check_torch_file(path):
    """A ``torch.save`` file: non-empty and, in the zip format, with its central directory."""
    size = os.path.getsize(path)
    if size == 0:
        raise ReleaseLoadError(f"{path}: empty file")
    with open(path, "rb") as fin:
        is_zip_format = fin.read(4) == b"PK\x03\x04"
    if is_zip_format and not zipfile.is_zipfile(path):
        raise ReleaseLoadError(f"{path}: truncated ({size} bytes; the zip directory is missing)")
