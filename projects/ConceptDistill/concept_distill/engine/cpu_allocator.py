"""glibc allocator policy for CPU runs: keep freed memory in the process.

A PointNet++ step allocates and frees several GB of large tensors (grouped features of
2048 centres x 64 neighbours). glibc serves each with a fresh ``mmap`` and returns it with
``munmap``, so the next step page-faults and zeroes the same memory again: on 2 cores the
kernel's share (sys time) was larger than the computation itself. Turning ``mmap`` off for
malloc (the heap then reuses freed blocks) made a training step of VoteNet's backbone 2.1-2.5x
faster. The price is memory: the heap fragments and keeps what it has, so the peak resident
set of that step grew by 74-93% (5.3 to 10.3 GiB in one run). Both are measured by
`tools/benchmark/allocator.py` (docs/benchmarks.md); set CONCEPT_DISTILL_RETAIN_MEMORY=0
where memory is the constraint.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_SWITCH = 'CONCEPT_DISTILL_RETAIN_MEMORY'
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers
_INT_MAX = 2**31 - 1


def retain_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory (no mmap, no trimming below 2 GiB).

    A no-op returning False off Linux/glibc or when ``CONCEPT_DISTILL_RETAIN_MEMORY=0``.
    Affects allocations made after the call, in this process and its forked children.
    """
    if os.environ.get(ENV_SWITCH, '1') == '0' or not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl and others return 0 (their allocator, their policy).
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
