"""Keep freed memory mapped in inference processes (glibc's malloc).

Separating a track allocates and frees the same large arrays once per chunk: spectra,
activations, waveforms of 1-30 MB. glibc hands allocations above its mmap threshold
(128 KiB at start, raised only as such blocks are freed) straight to the kernel and
gives freed heap memory back once more than its trim threshold (128 KiB) is free, so
each chunk's arrays arrive as fresh pages, and on a virtual machine a fresh page is
expensive: joining a 26 MB input buffer took 0.3 s and adding 16 chunks into a new
100 MB accumulator 1.2 s, against 0.03 s in reused memory (benchmarks/README.md). This
sets the mmap threshold to glibc's largest (32 MiB) and stops trimming, so the memory
of one chunk is reused by the next; the process's peak RSS stays what it was, it is
only not handed back before the process ends.

The ``separate`` and ``evaluate`` entry points call :func:`keep_freed_memory` as their
jobs start; ``train`` does not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGEST_MMAP_THRESHOLD = 32 << 20
"""glibc refuses an mmap threshold above half its 64 MiB heap size on 64-bit systems."""


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc of this process as the module docstring says; False where it is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to tune this way
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; an unknown parameter (another libc) returns 0.
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
