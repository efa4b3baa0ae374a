"""``keep_freed_memory``: a freed block of a chunk's size is reused by the next allocation, without new page faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Allocates, touches and frees 20 MiB three times with libc's malloc (numpy would ask for huge
# pages, which hide the faults), printing the minor page faults of each round.
ROUNDS = """
import ctypes, ctypes.util, json, resource, sys
from sepnet.app.allocator import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 20 << 20, []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tuned": tuned, "faults": faults, "pages": size // resource.getpagesize()}))
"""


def rounds(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_freed_chunk_memory_is_reused_without_new_page_faults():
    tuned = rounds("tuned")
    if not tuned["tuned"]:
        pytest.skip("not glibc: keep_freed_memory has nothing to tune")
    pages = tuned["pages"]
    assert tuned["faults"][0] > pages // 2  # the first round maps its pages
    assert max(tuned["faults"][1:]) < pages // 20, tuned  # later rounds reuse them
    # Without it glibc maps the second round afresh (the freed block went back to the kernel).
    assert rounds("plain")["faults"][1] > pages // 2
