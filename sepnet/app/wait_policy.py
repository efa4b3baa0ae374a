"""OpenMP's wait policy for an entry-point process: spin on idle CPUs, wait passively on busy ones.

PyTorch's CPU thread pool (OpenMP) spins at every barrier before sleeping. Measured
on the 2-core machine with the default CRNN step: on an idle CPU spinning makes a
step 1.75x faster than passive waiting (0.22 s vs 0.39 s), but when anything else
needs the cores (another training run, a data worker, a second DDP process) one
descheduled thread stalls the others: 0.64 s vs 0.48 s beside one busy thread, and
7-35 s instead of 0.5 s on a machine at load 10.

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it, so an entry point calls
:func:`choose_wait_policy` before its first ``import torch`` (the ``__main__`` guard at
the top of each ``sepnet/<entry>.py``). This module imports nothing heavy, and
importing it (or any sepnet library module) changes nothing.
"""

from __future__ import annotations

import os
import time

BUSY_SHARE = 0.25
"""At or above this share of all CPUs busy, threads wait passively."""


def cpu_busy_fraction(window: float = 0.05) -> float | None:
    """Share of all CPUs busy over ``window`` seconds (Linux /proc/stat), None where unknown."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return None if elapsed <= 0 else 1.0 - (idle1 - idle0) / elapsed


def choose_wait_policy() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in this process when the CPUs are busy as it starts.

    A value the user exported (``PASSIVE`` or ``ACTIVE``) always wins; on an idle
    or unknown CPU the variable stays unset (OpenMP's default spins). Child
    processes (DDP ranks, data workers) inherit the choice.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    busy = cpu_busy_fraction()
    if busy is not None and busy >= BUSY_SHARE:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
