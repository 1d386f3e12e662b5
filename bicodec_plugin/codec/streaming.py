"""Streaming detokenization: semantic tokens in chunks -> audio in chunks.

An LLM emits BiCodec semantic tokens one at a time; :class:`StreamingDecoder`
turns them into audio as they arrive, so that playback starts long before the
sequence ends.

How it stays identical to a whole-sequence decode
-------------------------------------------------
Every layer of the decoder path (codebook lookup, prenet, wave generator) is
either pointwise in time (linear layers, layer norms, GELU, Snake, tanh, the
d-vector add) or a convolution with zero padding. A convolution can run on a
stream if it keeps the last few input samples it has seen (its *cache*) and
waits for the samples its right padding would otherwise fill: that is the
*cached* mode here. Each convolution of the whole-sequence graph is replaced
by such a streaming convolution sharing the same weights, residual branches
keep the input until the branch output for the same positions arrives, and
the first and last samples see the same zeros as the whole-sequence
padding. The concatenated stream is then the whole-sequence decode up to
float rounding (measured max difference about 1e-6, ``tests/test_streaming.py``).

A chunk can only be exact once every token that its last sample depends on
has arrived: the receptive field of the decoder, derived layer by layer in
:meth:`StreamingDecoder.receptive_field` (prenet: an embedding conv of
kernel 7 and ConvNeXt depthwise convs of kernel 7 in each backbone; wave
generator: kernel-7 convs at both ends, four transposed convs and residual
units with dilations 1, 3 and 9 at each rate). For the released 16 kHz model
the exact lookahead is 67 frames (1.34 s of tokens) and the left context
the same. An LLM produces tokens much faster than real time, so this costs
little wall-clock latency; a smaller ``lookahead`` emits each chunk earlier,
decoding the not-yet-exact tail as if the sequence ended at the last token
received (what :meth:`decode` would give for the prefix), and the output
then departs from the whole-sequence decode near each chunk boundary.

The *window* mode decodes, for each chunk, the tokens from ``left context``
frames before it to ``lookahead`` frames after it, and keeps the chunk: the
same outputs, simpler, but each chunk pays for its context again; the cached
mode computes every frame once (``benchmarks/bench_streaming.py`` measures
both).

Authors
 * BiCodec plugin authors 2026
"""

import math
import operator
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from bicodec_plugin.codec.lobes.convnext import ConvNeXtBlock, SamplingBlock, VocosBackbone
from bicodec_plugin.codec.lobes.decoder import DecoderBlock, ResidualUnit
from bicodec_plugin.codec.lobes.layers import fold_deferred

# ----------------------------------------------------------------- primitives
# A stage takes chunks of a signal along its last axis, (B, C, T) or the
# channels-last 2-D view (B, C, 1, T), and returns the next output samples
# (or None while it waits for more input). ``flush`` ends the signal.


def _cat(parts):
    """Concatenates along time, keeping the channels-last 2-D view's layout."""
    parts = [p for p in parts if p is not None and p.shape[-1] > 0]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    out = torch.cat(parts, dim=-1)
    if out.dim() == 4:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


# PyTorch sends a float32 CPU convolution whose kernel is not larger than 3x3
# to its slow reference kernels (with a copy per call) when the input has at
# most this many elements; a stream's short chunks would often fall there.
_MKLDNN_MIN_NUMEL = 20480


def _mkldnn_sized(buf):
    """Left-pads a short channels-last chunk with zeros past oneDNN's size threshold.

    Returns the padded chunk and the number of frames added; a convolution's
    outputs for those frames are dropped, the others are unchanged (the zeros
    are outside their receptive field, or add nothing to it).
    """
    if buf.device.type != "cpu" or buf.numel() > _MKLDNN_MIN_NUMEL:
        return buf, 0
    per_frame = buf.numel() // buf.shape[-1]
    extra = _MKLDNN_MIN_NUMEL // per_frame + 1 - buf.shape[-1]
    zeros = torch.zeros((*buf.shape[:-1], extra), dtype=buf.dtype, device=buf.device)
    if buf.dim() == 4:
        zeros = zeros.contiguous(memory_format=torch.channels_last)
    return _cat([zeros, buf]), extra


# A CPU convolution prepares (reorders) its whole weight on every call: for a
# wide layer fed a short chunk that costs more than the arithmetic (measured:
# the 1024 -> 1536 input conv on 20 frames, 395 ms with F.conv2d against
# 53 ms as matrix products). Layers at least this wide run on a stream as
# matrix products with weights laid out once (kept per layer while it lives);
# the narrow high-rate layers keep oneDNN, which is faster there.
_GEMM_MIN_CHANNELS = 384
_PREPARED = weakref.WeakKeyDictionary()


def _prepared(conv, layout):
    """``layout(weight)`` computed once per layer (again if the weight changes)."""
    weight = conv.weight
    if parametrize.is_parametrized(conv, "weight"):
        return layout(weight)  # weight norm not folded: the weight is recomputed anyway
    try:
        version = weight._version
    except RuntimeError:  # an inference tensor (created under inference_mode) never changes
        version = -1
    key = (weight.data_ptr(), version)
    cached = _PREPARED.get(conv)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, layout(weight.detach()))
        _PREPARED[conv] = cached
    return cached[1]


def _use_gemm(conv, buf):
    """Whether this call runs as matrix products (CPU, 2-D view, ungrouped, wide)."""
    return (
        buf.dim() == 4
        and buf.device.type == "cpu"
        and conv.groups == 1
        and min(conv.in_channels, conv.out_channels) >= _GEMM_MIN_CHANNELS
        and not torch.is_grad_enabled()
    )


def _time_major(buf):
    """(B, C, 1, T) channels-last view -> (B, T, C) (no copy)."""
    return buf.squeeze(2).transpose(1, 2)


def _channels_last(y):
    """(B, T, C) contiguous -> the (B, C, 1, T) channels-last view (no copy)."""
    return y.transpose(1, 2).unsqueeze(2)


def _gemm_conv(conv, buf):
    """Valid (unpadded) stride-1 convolution as ``k`` matrix products, (B, C, 1, T) in and out."""
    kernel, dilation = conv.kernel_size[0], conv.dilation[0]
    taps = _prepared(conv, lambda w: w.permute(2, 1, 0).contiguous())  # (k, C_in, C_out)
    x = _time_major(buf)
    steps = x.shape[1] - (kernel - 1) * dilation
    outs = []
    for item in x:  # (T, C_in), contiguous rows
        out = conv.bias.expand(steps, -1).clone() if conv.bias is not None else None
        for j in range(kernel):
            rows = item[j * dilation : j * dilation + steps]
            out = rows @ taps[j] if out is None else out.addmm_(rows, taps[j])
        outs.append(out)
    return _channels_last(torch.stack(outs))


def _gemm_conv_transpose(conv, buf, stride):
    """Unpadded transposed convolution as one matrix product and overlap-adds."""
    kernel = conv.kernel_size[0]
    spans = -(-kernel // stride)  # kernel taps padded to a multiple of the stride

    def layout(w):  # (C_in, C_out, k) -> (C_in, spans * stride * C_out)
        w = F.pad(w, (0, spans * stride - kernel)).permute(0, 2, 1)
        return w.contiguous().reshape(w.shape[0], -1)

    weight = _prepared(conv, layout)
    x = _time_major(buf)
    batch, steps, c_out = x.shape[0], x.shape[1], conv.out_channels
    z = (x @ weight).reshape(batch, steps, spans, stride, c_out)
    out = torch.zeros(batch, steps + spans - 1, stride, c_out, dtype=z.dtype, device=z.device)
    if conv.bias is not None:
        out += conv.bias
    for q in range(spans):  # input frame i, tap q * stride + u -> output (i + q) * stride + u
        out[:, q : q + steps] += z[:, :, q]
    length = (steps - 1) * stride + kernel
    y = _channels_last(out.reshape(batch, -1, c_out)[:, :length])
    return y.contiguous(memory_format=torch.channels_last)


class _Pointwise:
    """A stage with no memory in time (the wrapped function acts frame by frame)."""

    def __init__(self, fn):
        self.fn = fn

    def push(self, x):
        return None if x is None else self.fn(x)

    def flush(self):
        return None

    def input_range(self, first, last):
        return first, last

    def states(self):
        return []


class _StreamConv:
    """A stride-1 convolution with symmetric zero padding ``p``, run on a stream.

    It keeps the last ``(k - 1) * dilation`` input samples; the first call
    sees ``p`` zeros on the left (the padding), :meth:`flush` adds ``p`` zeros
    on the right. Output ``n`` is produced once input ``n + p`` has arrived.
    """

    def __init__(self, conv):
        kernel, dilation = conv.kernel_size[0], conv.dilation[0]
        pad = conv.padding[0] if not isinstance(conv.padding, str) else None
        if conv.stride[0] != 1 or pad is None or 2 * pad != (kernel - 1) * dilation:
            raise ValueError(f"streaming needs a stride-1 'same' convolution, got {conv}")
        if conv.padding_mode != "zeros":
            raise ValueError(f"streaming needs zero padding, got {conv.padding_mode!r}")
        self.conv = conv
        self.pad = pad
        self.span = 2 * pad  # samples of history each output needs
        self.cache = None  # the last `span` input samples (zeros before the start)

    def _run(self, buf):
        conv = self.conv
        if _use_gemm(conv, buf):
            return _gemm_conv(conv, buf)
        weight = conv.weight
        buf, extra = _mkldnn_sized(buf)
        if buf.dim() == 4:
            out = F.conv2d(
                buf,
                weight.unsqueeze(2),
                conv.bias,
                dilation=(1, conv.dilation[0]),
                groups=conv.groups,
            )
        else:
            out = F.conv1d(buf, weight, conv.bias, dilation=conv.dilation[0], groups=conv.groups)
        return out[..., extra:] if extra else out

    def _zeros(self, like, length):
        shape = (*like.shape[:-1], length)
        out = torch.zeros(shape, dtype=like.dtype, device=like.device)
        if like.dim() == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def push(self, x):
        if x is None:
            return None
        if self.span == 0:  # pointwise (1x1) convolution
            return self._run(x)
        if self.cache is None:
            self.cache = self._zeros(x, self.pad)
        buf = _cat([self.cache, x])
        self.cache = buf[..., -self.span :] if buf.shape[-1] > self.span else buf
        if buf.shape[-1] <= self.span:
            return None
        return self._run(buf)

    def flush(self):
        if self.span == 0 or self.cache is None:
            return None
        return self.push(self._zeros(self.cache, self.pad))

    def input_range(self, first, last):
        dilation, kernel = self.conv.dilation[0], self.conv.kernel_size[0]
        return first - self.pad, last - self.pad + (kernel - 1) * dilation

    def states(self):
        return [(self, "cache")]


class _StreamConvTranspose:
    """A transposed convolution (kernel ``k``, stride ``s``, padding ``p``) on a stream.

    Raw output ``r`` (before the padding crop) sums inputs ``i`` with
    ``i * s <= r < i * s + k``; it is complete once input ``floor(r / s)`` has
    arrived, and needs the last ``floor((k - 1) / s)`` inputs kept. The first
    ``p`` raw outputs are dropped and :meth:`flush` emits the ``p`` that
    follow the last input, as the whole-sequence layer does.
    """

    def __init__(self, conv):
        kernel, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        if conv.dilation[0] != 1 or conv.output_padding[0] != 0 or kernel - stride != 2 * pad:
            raise ValueError(f"streaming needs an exact x{stride} transposed convolution: {conv}")
        self.conv = conv
        self.kernel, self.stride, self.pad = kernel, stride, pad
        self.keep = (kernel - 1) // stride
        self.cache = None
        self.dropped = 0  # raw outputs cropped at the start so far (up to `pad`)

    def _run(self, buf):
        conv = self.conv
        if _use_gemm(conv, buf):
            return _gemm_conv_transpose(conv, buf, self.stride)
        buf, extra = _mkldnn_sized(buf)
        if buf.dim() == 4:
            out = F.conv_transpose2d(
                buf,
                conv.weight.unsqueeze(2),
                conv.bias,
                stride=(1, self.stride),
                groups=conv.groups,
            )
        else:
            out = F.conv_transpose1d(
                buf, conv.weight, conv.bias, stride=self.stride, groups=conv.groups
            )
        return out[..., extra * self.stride :] if extra else out

    def _crop_start(self, y):
        drop = min(self.pad - self.dropped, y.shape[-1])
        self.dropped += drop
        return y[..., drop:] if drop else y

    def push(self, x):
        if x is None:
            return None
        held = 0 if self.cache is None else self.cache.shape[-1]
        buf = _cat([self.cache, x])
        self.cache = buf[..., buf.shape[-1] - min(self.keep, buf.shape[-1]) :]
        raw = self._run(buf)
        # New complete raw outputs: those whose last input is one of the new ones.
        new = raw[..., held * self.stride : buf.shape[-1] * self.stride]
        return self._crop_start(new)

    def flush(self):
        if self.cache is None:
            return None
        held = self.cache.shape[-1]
        raw = self._run(self.cache)
        tail = raw[..., held * self.stride : held * self.stride + self.pad]
        return self._crop_start(tail)

    def input_range(self, first, last):
        return (
            math.ceil((first + self.pad - self.kernel + 1) / self.stride),
            (last + self.pad) // self.stride,
        )

    def states(self):
        return [(self, "cache"), (self, "dropped")]


class _Chain:
    """Stages run one after the other."""

    def __init__(self, stages):
        self.stages = list(stages)

    def push(self, x):
        for stage in self.stages:
            x = stage.push(x)
        return x

    def flush(self):
        # One pass: each stage takes everything its predecessor still had,
        # then ends (pushing each stage's tail through the rest separately
        # would run the wide layers on many tiny pieces).
        x = None
        for stage in self.stages:
            x = _cat([stage.push(x), stage.flush()])
        return x

    def input_range(self, first, last):
        for stage in reversed(self.stages):
            first, last = stage.input_range(first, last)
        return first, last

    def states(self):
        return [s for stage in self.stages for s in stage.states()]


class _Residual:
    """``x + branch(x)``: keeps the input until the branch reaches the same positions.

    The input pieces are kept as they came and added into slices of the
    branch output (the branch output is a fresh tensor), so no copy of the
    signal is made.
    """

    def __init__(self, branch):
        self.branch = branch
        self.held = ()  # input pieces not yet matched by branch output

    def _join(self, y):
        if y is None:
            return None
        held, done, total = list(self.held), 0, y.shape[-1]
        while done < total:
            piece = held[0]
            take = min(piece.shape[-1], total - done)
            y[..., done : done + take].add_(piece[..., :take])
            if take == piece.shape[-1]:
                held.pop(0)
            else:
                held[0] = piece[..., take:]
            done += take
        self.held = tuple(held)
        return y

    def push(self, x):
        if x is None:
            return None
        self.held = (*self.held, x)
        return self._join(self.branch.push(x))

    def flush(self):
        return self._join(self.branch.flush())

    def input_range(self, first, last):
        return self.branch.input_range(first, last)  # the identity path is inside it

    def states(self):
        return [(self, "held")] + self.branch.states()


# ------------------------------------------------------- the decoder's layers
def _wave_generator_stages(gen):
    """The wave generator (:class:`WaveGenerator`) as streaming stages."""

    def residual_unit(unit):
        snake1, conv, snake2, conv1x1 = unit.block
        branch = _Chain(
            [_Pointwise(snake1), _StreamConv(conv), _Pointwise(snake2), _StreamConv(conv1x1)]
        )
        return _Residual(branch)

    stages = []
    for layer in gen.model:
        if isinstance(layer, DecoderBlock):
            snake, up, *units = layer.block
            stages += [_Pointwise(snake), _StreamConvTranspose(up)]
            for unit in units:
                if not isinstance(unit, ResidualUnit):
                    raise TypeError(f"unexpected layer in a decoder block: {type(unit).__name__}")
                stages.append(residual_unit(unit))
        elif isinstance(layer, nn.Conv1d):
            stages.append(_StreamConv(layer))
        else:  # Snake1d, Tanh
            stages.append(_Pointwise(layer))
    return stages


def _backbone_stages(backbone, condition):
    """A :class:`VocosBackbone` as stages on (B, C, T); ends in (B, T, C)."""

    def norm(module, x):  # x: (B, T, C)
        return module(x) if condition is None else module(x, condition)

    def block_branch(block):
        def mlp(x):  # (B, C, T) -> (B, C, T)
            y = norm(block.norm, x.transpose(1, 2))
            y = block.pwconv2(block.act(block.pwconv1(y)))
            return (block.gamma * y).transpose(1, 2)

        return _Chain([_StreamConv(block.dwconv), _Pointwise(mlp)])

    stages = [
        _StreamConv(backbone.embed),
        _Pointwise(lambda x: norm(backbone.norm, x.transpose(1, 2)).transpose(1, 2)),
    ]
    for block in backbone.convnext:
        if not isinstance(block, ConvNeXtBlock):
            raise TypeError(f"unexpected backbone block: {type(block).__name__}")
        stages.append(_Residual(block_branch(block)))
    stages.append(_Pointwise(lambda x: backbone.final_layer_norm(x.transpose(1, 2))))
    return stages


def _prenet_stages(prenet, condition):
    """The prenet (:class:`FeatureDecoder`) as stages: (B, D, T) latent -> (B, D, T)."""
    stages = [_Pointwise(lambda x: prenet.linear_pre(x.transpose(1, 2)))]  # -> (B, T, C)
    for sampling, backbone in prenet.downsample:
        if not isinstance(sampling, SamplingBlock) or (
            sampling.upsample_scale > 1 or sampling.downsample_scale > 1
        ):
            raise ValueError("streaming needs a prenet without resampling (sample_ratios of 1)")
        stages.append(_Pointwise(sampling))  # (B, T, C) -> (B, C, T)
        stages += _backbone_stages(backbone, None)
    if not isinstance(prenet.vocos_backbone, VocosBackbone):
        raise TypeError("unexpected prenet backbone")
    stages.append(_Pointwise(lambda x: x.transpose(1, 2)))  # (B, T, C) -> (B, C, T)
    stages += _backbone_stages(prenet.vocos_backbone, condition)
    tanh = prenet.use_tanh_at_final
    stages.append(
        _Pointwise(
            lambda x: (torch.tanh if tanh else (lambda y: y))(prenet.linear(x).transpose(1, 2))
        )
    )
    return stages


# -------------------------------------------------------------------- decoder
class StreamingDecoder:
    """Decodes semantic tokens as they arrive, one audio chunk at a time.

    Give the global tokens once, then :meth:`push` semantic tokens in pieces
    of any size (one token, a few, or an LLM's whole step); each call returns
    the audio chunks that became ready. :meth:`finish` ends the sequence and
    returns the rest. With the default ``lookahead`` the concatenated chunks
    equal :meth:`BiCodec.detokenize` of the whole sequence (float32 rounding).

    Arguments
    ---------
    codec : BiCodec
        The model (in eval mode).
    global_tokens : torch.Tensor
        (B, 32) or (B, 1, 32) int global tokens, or (32,) for one utterance.
    chunk_frames : int or sequence of int
        Frames of audio per emitted chunk (``hop_length`` samples each; 25
        frames = 0.5 s at 16 kHz). A sequence gives the sizes of the first
        chunks and its last size repeats. The default ``(10, 25, 50, 100)``
        starts playback after a 10-frame chunk, then grows the chunks: each
        engine step reads all of the decoder's weights once, so a stream of
        small chunks costs more in total (measured at full size on an AVX2
        CPU: 1.7 times a whole decode's CPU time in 10-frame chunks, 0.9 times
        with the default schedule; ``benchmarks/bench_streaming.py``). The
        last chunk may be shorter.
    lookahead : int, optional
        Tokens past a chunk's end that must have arrived before it is
        emitted. ``None``: the exact lookahead (:attr:`exact_lookahead`),
        which makes the stream equal the whole-sequence decode; smaller values
        emit earlier and approximate the chunk's last frames.
    mode : str
        ``"cached"`` (each layer keeps its recent inputs; every frame is
        computed once) or ``"window"`` (each chunk is decoded with
        :attr:`left_context` frames before it and ``lookahead`` after it).
    context : callable, optional
        Returns the context manager every computation runs in (default
        ``torch.inference_mode``); the tokenizer passes its autocast too.

    Example
    -------
    >>> from bicodec_plugin.testing import tiny_codec
    >>> codec = tiny_codec(seed=0).eval()
    >>> glob = torch.randint(0, 4096, (1, 32))
    >>> sem = torch.randint(0, 64, (1, 60))
    >>> stream = StreamingDecoder(codec, glob, chunk_frames=10)
    >>> chunks = []
    >>> for start in range(0, 60, 7):  # tokens arrive 7 at a time
    ...     chunks += stream.push(sem[:, start : start + 7])
    >>> chunks += stream.finish()
    >>> [c.shape[-1] for c in chunks]
    [3200, 3200, 3200, 3200, 3200, 3200]
    >>> with torch.no_grad():
    ...     whole = codec.detokenize(glob, sem)[:, 0]
    >>> bool((torch.cat(chunks, dim=-1) - whole).abs().max() < 1e-5)
    True
    """

    def __init__(
        self,
        codec,
        global_tokens,
        chunk_frames=(10, 25, 50, 100),
        lookahead=None,
        mode="cached",
        context=None,
    ):
        self.chunk_sizes = self._chunk_schedule(chunk_frames)
        if mode not in ("cached", "window"):
            raise ValueError(f"mode must be 'cached' or 'window', got {mode!r}")
        self.codec = codec
        self.hop = codec.hop_length
        self.chunk_frames = chunk_frames
        self.mode = mode
        self.context = context or torch.inference_mode
        self.left_context, self.exact_lookahead = self.receptive_field(codec)
        if lookahead is None:
            lookahead = self.exact_lookahead
        if int(lookahead) < 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead!r}")
        self.lookahead = int(lookahead)
        global_tokens = torch.as_tensor(global_tokens)
        if global_tokens.dim() == 1:
            global_tokens = global_tokens.unsqueeze(0)
        device = next(codec.parameters()).device
        self.global_tokens = codec.check_global_tokens(global_tokens.to(device))
        self.device = device
        with self.context():
            self.d_vector = codec.speaker_vector(self.global_tokens)
        self.batch = self.d_vector.shape[0]
        self.received = 0  # semantic frames pushed so far
        self.emitted = 0  # audio samples returned so far
        self.chunks_emitted = 0
        self.finished = False
        # Tokens not yet run: window mode keeps those the next windows need;
        # cached mode runs its engine once at least a chunk's worth is pending
        # (small steps would waste the convolutions' efficiency).
        self.tokens = []
        self.token_offset = 0  # frame index of self.tokens[0]
        self.exact = None  # cached mode: exact audio computed but not yet returned
        self.exact_start = 0  # cached mode: sample index of self.exact[0]
        if mode == "cached":
            self._build_engine()

    # ------------------------------------------------------------ geometry
    @staticmethod
    def _chunk_schedule(chunk_frames):
        """``chunk_frames`` (an int or a sequence) -> a tuple of positive sizes."""
        items = [chunk_frames] if not isinstance(chunk_frames, (list, tuple)) else chunk_frames
        try:
            sizes = tuple(operator.index(size) for size in items)
        except TypeError:
            sizes = ()
        if not sizes or min(sizes) < 1 or any(isinstance(size, bool) for size in items):
            raise ValueError(
                "chunk_frames must be a positive integer or a non-empty list of them, "
                f"got {chunk_frames!r}"
            )
        return sizes

    def chunk_size(self, index):
        """Frames in chunk number ``index`` (0-based) of the schedule.

        Example
        -------
        >>> from bicodec_plugin.testing import tiny_codec
        >>> stream = StreamingDecoder(tiny_codec(seed=0).eval(), torch.zeros(32, dtype=torch.long),
        ...                           chunk_frames=(10, 25, 50))
        >>> [stream.chunk_size(i) for i in range(5)]
        [10, 25, 50, 50, 50]
        """
        return self.chunk_sizes[min(index, len(self.chunk_sizes) - 1)]

    @staticmethod
    def receptive_field(codec):
        """Frames of context a chunk needs on each side to equal the whole decode.

        Derived from the layers themselves (kernels, dilations, strides,
        paddings): the output samples of a chunk are walked back through the
        wave generator and the prenet to the first and last token frame they
        depend on.

        Arguments
        ---------
        codec : BiCodec
            The model.

        Returns
        -------
        left : int
            Frames before the chunk's first frame.
        right : int
            Frames after the chunk's last frame (the exact lookahead).

        Example
        -------
        >>> from bicodec_plugin.testing import tiny_codec
        >>> StreamingDecoder.receptive_field(tiny_codec(seed=0).eval())
        (37, 37)
        """
        hop = codec.hop_length
        chain = _Chain(_prenet_stages(codec.prenet, None) + _wave_generator_stages(codec.decoder))
        # Any chunk works: every layer's rate divides the hop. Take frames [10, 11).
        first, last = chain.input_range(10 * hop, 11 * hop - 1)
        return 10 - first, last - 10

    # -------------------------------------------------------------- engine
    def _build_engine(self):
        codec, d_vector = self.codec, self.d_vector
        fold_deferred(codec.decoder)  # the stream reads weights without calling forward
        self.channels_last = (
            getattr(codec.decoder, "channels_last_inference", False) and self.device.type == "cpu"
        )

        def to_generator(x):  # prenet output (B, D, T) -> wave generator input
            x = x + d_vector.unsqueeze(-1)
            if self.channels_last:
                x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            return x

        self.engine = _Chain(
            [_Pointwise(codec.quantizer.detokenize)]
            + _prenet_stages(codec.prenet, d_vector)
            + [_Pointwise(to_generator)]
            + _wave_generator_stages(codec.decoder)
        )

    def _audio(self, y):
        """Wave generator output -> (B, samples) float32."""
        if y is None:
            return None
        return y.reshape(y.shape[0], -1).float()

    def _speculate(self):
        """Audio up to the last token received, as if the sequence ended there."""
        saved = [(obj, name, getattr(obj, name)) for obj, name in self.engine.states()]
        try:
            return self._audio(self.engine.flush())
        finally:
            for obj, name, value in saved:
                setattr(obj, name, value)

    # ---------------------------------------------------------------- API
    def _check_tokens(self, semantic_tokens):
        tokens = torch.as_tensor(semantic_tokens)
        if tokens.dtype.is_floating_point:
            raise TypeError("semantic_tokens must be integers")
        if tokens.dim() == 0:
            tokens = tokens.reshape(1, 1)
        elif tokens.dim() == 1:
            tokens = tokens.unsqueeze(0) if self.batch == 1 else tokens.unsqueeze(1)
        if tokens.dim() != 2 or tokens.shape[0] != self.batch:
            raise ValueError(
                f"semantic_tokens must have shape ({self.batch}, n), got {tuple(tokens.shape)}"
            )
        self.codec.quantizer.check_indices(tokens)
        return tokens.to(self.device)

    def push(self, semantic_tokens):
        """Adds semantic tokens; returns the audio chunks that became ready.

        Arguments
        ---------
        semantic_tokens : torch.Tensor
            (B, n) int (or (n,) for one utterance); ``n`` may be 0.

        Returns
        -------
        list of torch.Tensor
            (B, frames * hop_length) float32 each, in order, ``frames`` as
            :meth:`chunk_size` gives.
        """
        if self.finished:
            raise RuntimeError("push after finish(): start a new StreamingDecoder")
        tokens = self._check_tokens(semantic_tokens)
        if tokens.shape[1] == 0:
            return []
        self.received += tokens.shape[1]
        with self.context():
            if self.mode == "window":
                self.tokens.append(tokens)
                return self._emit_windows()
            self.tokens.append(tokens)
            pending = self.received - self.token_offset
            if pending >= self.chunk_size(self.chunks_emitted) or self._ready_chunks():
                self._advance()
            return self._emit_cached()

    def _advance(self):
        """Runs the cached engine on the tokens pushed since its last step."""
        if self.tokens:
            tokens = torch.cat(self.tokens, dim=1)
            self.tokens = []
            self.token_offset += tokens.shape[1]
            self._add_exact(self.engine.push(tokens))

    def finish(self):
        """Ends the sequence; returns the remaining chunks (the last may be shorter).

        Returns
        -------
        list of torch.Tensor
            (B, samples) float32 each.
        """
        if self.finished:
            return []
        self.finished = True
        with self.context():
            if self.mode == "window":
                return self._emit_windows()
            if self.received:
                self._advance()
                self._add_exact(self.engine.flush())
            return self._emit_cached()

    def stream(self, token_chunks):
        """Generator: feeds an iterable of token pieces, yields audio chunks, then finishes.

        Example
        -------
        >>> from bicodec_plugin.testing import tiny_codec
        >>> codec = tiny_codec(seed=0).eval()
        >>> stream = StreamingDecoder(codec, torch.zeros(32, dtype=torch.long), chunk_frames=5)
        >>> pieces = (torch.randint(0, 64, (1, 4)) for _ in range(3))
        >>> [c.shape[-1] for c in stream.stream(pieces)]
        [1600, 1600, 640]
        """
        for piece in token_chunks:
            yield from self.push(piece)
        yield from self.finish()

    # ------------------------------------------------------------ emission
    def _ready_chunks(self):
        """(start, end) sample ranges of the chunks that may be returned now."""
        hop = self.hop
        total = self.received * hop
        ranges, start = [], self.emitted
        while start < total:
            end_frame = start // hop + self.chunk_size(self.chunks_emitted + len(ranges))
            if end_frame > self.received:
                if not self.finished:
                    break
                end_frame = self.received
            elif not self.finished and end_frame + self.lookahead > self.received:
                break
            ranges.append((start, end_frame * hop))
            start = end_frame * hop
        return ranges

    def _emit_cached(self):
        ranges = self._ready_chunks()
        if not ranges:
            return []
        need = ranges[-1][1]
        have = self.exact_start + (0 if self.exact is None else self.exact.shape[-1])
        audio = self.exact
        if need > have:  # lookahead below the exact one: decode the tail as a prefix
            audio = _cat([audio, self._speculate()])
        chunks = [audio[:, a - self.exact_start : b - self.exact_start].clone() for a, b in ranges]
        self.emitted = need
        self.chunks_emitted += len(ranges)
        self._add_exact(None)
        return chunks

    def _add_exact(self, y):
        """Appends exact audio, dropping what was already returned (speculated)."""
        self.exact = _cat([self.exact, self._audio(y)])
        if self.exact is not None and self.exact_start < self.emitted:
            drop = min(self.emitted - self.exact_start, self.exact.shape[-1])
            rest = self.exact[:, drop:]
            self.exact = rest if rest.shape[-1] else None
            self.exact_start += drop

    def _emit_windows(self):
        ranges = self._ready_chunks()
        out = []
        tokens = torch.cat(self.tokens, dim=1) if self.tokens else None
        self.tokens = [tokens] if tokens is not None else []
        for start, end in ranges:
            first_frame, end_frame = start // self.hop, -(-end // self.hop)
            lo = max(first_frame - self.left_context, self.token_offset)
            hi = min(end_frame + self.lookahead, self.received)
            window = tokens[:, lo - self.token_offset : hi - self.token_offset]
            wav = self.codec.detokenize(self.global_tokens, window)
            wav = wav.reshape(self.batch, -1).float()
            out.append(wav[:, start - lo * self.hop : end - lo * self.hop])
            self.emitted = end
            self.chunks_emitted += 1
        # Drop the tokens no later window needs.
        keep_from = max(self.emitted // self.hop - self.left_context, self.token_offset)
        if tokens is not None and keep_from > self.token_offset:
            self.tokens = [tokens[:, keep_from - self.token_offset :]]
            self.token_offset = keep_from
        return out

    def __repr__(self):
        return (
            f"StreamingDecoder(mode={self.mode!r}, chunk_frames={self.chunk_frames}, "
            f"lookahead={self.lookahead}, exact_lookahead={self.exact_lookahead}, "
            f"left_context={self.left_context}, received={self.received})"
        )
