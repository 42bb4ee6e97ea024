"""Keep freed host memory in the process, so large tensors are not page-faulted on every step.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves blocks above its
mmap threshold (dynamic, at most 32 MiB) with fresh ``mmap`` pages and unmaps them on free,
so each new tensor of that size costs one page fault per 4 KiB when first written. The
time-folded tensors of our blocks ((T·N, C, H, W): a conv layer's synaptic current at T = 8,
batch 64, 32×28×28 is 51 MiB) are all above it: on the issue-6 workload a training step took
about 140,000 page faults, and writing a fresh 51 MiB tensor cost 16 ms instead of 1 ms.
A per-step framework (snnTorch), whose tensors are T times smaller, stays below the
threshold and is not affected.

:func:`keep_freed_memory` raises the mmap threshold to 1 GiB and stops trimming, so freed
blocks are reused from the heap (the CPU counterpart of PyTorch's caching CUDA allocator;
PyTorch's own CPU tuning guide recommends jemalloc/tcmalloc for the same reason). The
process's resident memory then stays at its peak. It is called by the ``snn2loihi`` command
and the benchmarks; library users call it once at start-up. It changes no result.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap.
MMAP_THRESHOLD = 1 << 30
#: Set to ``0`` to leave the C library's defaults alone.
ENV = "SNN2LOIHI_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Reuse freed host memory instead of returning it to the OS; True where applied
    (glibc), False elsewhere or when ``$SNN2LOIHI_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(ENV, "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))
