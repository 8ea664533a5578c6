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

Where it does not help, it is off: on a GPU run the large tensors live in CUDA memory (the
policy only costs host memory), so it applies by default only when no CUDA device is visible
(CONCEPT_DISTILL_RETAIN_MEMORY=1 forces it); and forked children (dataloader workers) go back
to glibc's default at fork and hand back the freed heap they inherit, since a worker's small
decode-and-pair allocations gain nothing from it and its memory would never shrink.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_SWITCH = 'CONCEPT_DISTILL_RETAIN_MEMORY'
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers
_INT_MAX = 2**31 - 1
# glibc's defaults (malloc/malloc.c: DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD).
_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD = 65536, 128 * 1024
_fork_handler_registered = False


def _libc():
    """glibc's mallopt and malloc_trim (None off glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return mallopt, trim


def _cuda_visible() -> bool:
    """Whether this process sees a CUDA device (torch's answer; False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def restore_default_policy() -> bool:
    """glibc's default malloc policy again, and the freed heap handed back to the kernel."""
    fns = _libc()
    if fns is None:
        return False
    mallopt, trim = fns
    ok = bool(mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD))
    trim(0)
    return ok


def retain_freed_memory(in_children: bool = False) -> bool:
    """Set glibc's malloc to reuse freed memory (no mmap, no trimming below 2 GiB).

    Applies (returns True) on Linux/glibc when ``CONCEPT_DISTILL_RETAIN_MEMORY=1``, or when
    it is unset and no CUDA device is visible; ``=0`` turns it off. Affects allocations made
    after the call in this process; forked children (dataloader workers) restore glibc's
    default at fork unless `in_children` (the former behaviour, for the benchmark).
    """
    global _fork_handler_registered
    switch = os.environ.get(ENV_SWITCH)
    if switch == '0' or not sys.platform.startswith('linux'):
        return False
    if switch != '1' and _cuda_visible():
        return False  # GPU run: the big tensors are CUDA memory; host memory would only grow
    fns = _libc()
    if fns is None:
        return False
    mallopt, _ = fns
    # mallopt returns 1 on success; musl and others return 0 (their allocator, their policy).
    applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    if applied and not in_children and not _fork_handler_registered:
        os.register_at_fork(after_in_child=restore_default_policy)
        _fork_handler_registered = True
    return applied
