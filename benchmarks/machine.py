"""What kind of machine a benchmark ran on, printed next to every figure.

Speed ratios depend on the hardware class more than on anything else: on a
CPU without native bf16 (AVX2 only) autocast emulates the type and is slower
than float32; with AVX512-BF16 or AMX it is the fast path; on a GPU batching
pays. ``benchmarks/README.md`` keeps one table per kind.

Example
-------
    >>> kind = machine_kind("cpu")
    >>> kind["kind"].split(" ")[0] in ("AVX2", "AVX-512", "native-bf16", "CPU")
    True

Authors
 * BiCodec plugin authors 2026
"""

import os
import platform

import torch


def cpu_flags():
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fin:
            for line in fin:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fin:
            for line in fin:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kind(flags=None):
    """``"AVX2"``, ``"AVX-512"``, ``"native-bf16 (AVX512-BF16)"`` or ``"native-bf16 (AMX)"``.

    Arguments
    ---------
    flags : set of str, optional
        CPU flags (default: this machine's).

    Example
    -------
    >>> cpu_kind({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    'native-bf16 (AMX)'
    >>> cpu_kind({"avx2", "fma"})
    'AVX2'
    """
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "native-bf16 (AMX)"
    if "avx512_bf16" in flags:
        return "native-bf16 (AVX512-BF16)"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "CPU"


def native_bf16_cpu():
    """Whether this CPU runs bf16 natively (oneDNN's own test, else the CPU flags)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return cpu_kind().startswith("native-bf16")


def machine_kind(device="cpu"):
    """The machine kind of a run on ``device``, with the details worth recording.

    Arguments
    ---------
    device : str
        The torch device of the run (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Returns
    -------
    dict
        ``kind`` (the label printed beside figures: ``"AVX2 CPU, no native
        bf16"``, ``"native-bf16 (AMX) CPU"``, ``"GPU: NVIDIA H100 ..."``),
        ``cpu`` (model), ``cpu_kind``, ``native_bf16_cpu``, ``cpus``,
        ``threads``, ``gpu`` (name or None), ``torch``, ``load_1min``.
    """
    gpu = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    kind_cpu = cpu_kind()
    native = native_bf16_cpu()
    if gpu is not None:
        label = f"GPU: {gpu}"
    elif native:
        label = f"{kind_cpu} CPU" if kind_cpu.startswith("native") else f"{kind_cpu} CPU, bf16"
    else:
        label = f"{kind_cpu} CPU, no native bf16"
    return {
        "kind": label,
        "cpu": cpu_model(),
        "cpu_kind": kind_cpu,
        "native_bf16_cpu": native,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "load_1min": load_average(),
    }


def load_average():
    """The 1-minute load average (None where unknown)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def describe(info):
    """One line for a results header.

    Example
    -------
    >>> describe({"kind": "AVX2 CPU, no native bf16", "cpu": "AMD EPYC", "cpus": 2,
    ...     "threads": 2, "torch": "2.9.1", "load_1min": 3.1})
    'machine: AVX2 CPU, no native bf16 (AMD EPYC, 2 CPUs, 2 threads, torch 2.9.1, load 3.1)'
    """
    return (
        f"machine: {info['kind']} ({info['cpu']}, {info['cpus']} CPUs, {info['threads']} "
        f"threads, torch {info['torch']}, load {info['load_1min']})"
    )
