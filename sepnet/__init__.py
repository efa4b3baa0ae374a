"""sepnet: an experiment framework for spectrogram-mask music source separation.

Hydra composes a run from ``conf/``, PyTorch Lightning trains it, museval scores
it. Every entry point is ``python -m sepnet.<name>``.
"""

import os
import time


def _cpu_busy_fraction(window: float = 0.05) -> float | None:
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


# PyTorch's CPU thread pool (OpenMP) spins at every barrier before sleeping. Measured
# on the 2-core machine with the default CRNN step: on an idle CPU spinning makes a
# step 1.75x faster than passive waiting (0.22 s vs 0.39 s), but when anything else
# needs the cores (another training run, a data worker, a second DDP process) one
# descheduled thread stalls the others: 0.64 s vs 0.48 s beside one busy thread, and
# 7-35 s instead of 0.5 s on a machine at load 10. So: spin when the CPUs are idle as
# sepnet starts, wait passively when they are already busy. It must be decided before
# torch loads OpenMP, hence here, before any sepnet module imports torch; a value the
# user exported (OMP_WAIT_POLICY=PASSIVE or ACTIVE) always wins.
if "OMP_WAIT_POLICY" not in os.environ:
    _busy = _cpu_busy_fraction()
    if _busy is not None and _busy >= 0.25:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"

STEMS = ("bass", "drums", "other", "vocals")
"""The MUSDB18 stems, in the order every tensor's stem axis uses."""
