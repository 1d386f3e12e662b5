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

import os

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


def convert_release_state(model, release_state):
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

    def take(name):
        used.add(name)
        return source[name]

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
        converted[key] = value.to(ref.dtype)
    unexpected = sorted(set(source) - used - set(converted))
    if missing or unexpected or shapes:
        lines = []
        if missing:
            lines.append(f"missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        if shapes:
            lines.append(f"mis-shaped tensors ({len(shapes)}): " + "; ".join(shapes))
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
    try:
        converted = convert_release_state(model, state)
    except ReleaseLoadError as err:
        raise ReleaseLoadError(f"{path}: {err}") from None
    result = model.load_state_dict(converted, strict=False, assign=assign)
    leftover = [
        k for k in result.missing_keys if k not in OPTIONAL_KEYS and not k.startswith("ssl.")
    ]
    if leftover or result.unexpected_keys:
        raise ReleaseLoadError(f"{path}: internal key mismatch {leftover} {result.unexpected_keys}")
