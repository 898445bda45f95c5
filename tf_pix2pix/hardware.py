"""What the machine computes with: CPU class, bfloat16 support, GPUs.

Kernel choices that were measured to differ between CPU classes (BENCHMARKS.md, "CPU classes")
and the start-up warning for emulated bfloat16 read it from here.
"""

from __future__ import annotations

import functools
import os

import tensorflow as tf


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_class(flags: set[str] | None = None, isa_cap: str | None = None) -> str:
    """``"AVX-512"``, ``"AVX2"`` or ``"other"``: the class of kernels oneDNN runs here.

    ``isa_cap`` (default: the ``ONEDNN_MAX_CPU_ISA`` environment variable, oneDNN's own cap on
    the instructions it uses) counts: ``AVX2`` on an AVX-512 machine makes oneDNN dispatch the
    AVX2 class's kernels, which is how that class is emulated for measurements.
    """
    flags = cpu_flags() if flags is None else flags
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA", "") if isa_cap is None else isa_cap).upper()
    found = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"
    if cap in ("", "ALL") or found == "other":
        return found
    if any(name in cap for name in ("AVX512", "AVX10", "AMX")):
        return found
    return "AVX2" if cap.startswith("AVX2") else "other"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


@functools.lru_cache(maxsize=None)
def this_cpu_class() -> str:
    """``cpu_class()`` of this process (read once)."""
    return cpu_class()


def precision_warning(precision: str, flags: set[str] | None = None,
                      gpu: bool | None = None) -> str | None:
    """Why ``precision`` would be slow here, or ``None``.

    bfloat16 is fast only where the hardware computes in it (GPUs, CPUs with AVX512_BF16 or
    AMX-BF16); elsewhere TensorFlow emulates it, about ten times slower than float32
    (BENCHMARKS.md, AVX2 class).
    """
    if precision != "mixed_bfloat16":
        return None
    gpu = has_gpu() if gpu is None else gpu
    flags = cpu_flags() if flags is None else flags
    if gpu or flags & {"avx512_bf16", "amx_bf16"} or not flags:
        return None
    return ("--precision=mixed_bfloat16 on a CPU without native bfloat16 arithmetic (no "
            "avx512_bf16/amx_bf16 flag, no GPU) is emulated and about 10x slower than float32 "
            "here; use --precision=float32")
