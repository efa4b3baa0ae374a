"""Learning-rate schedules that Lightning steps; built from ``conf/sched/`` as partials taking the optimiser.

A schedule whose constructor takes ``total_steps`` is given the run's number of
optimiser steps by the module (``trainer.estimated_stepping_batches``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class Schedule:
    """A ``conf/sched/`` node as the module takes it: the same three keys users override (``sched.monitor=...``).

    Args:
        scheduler: ``scheduler(optimizer[, total_steps=...])`` (a Hydra ``_partial_``), or None: a constant rate.
        monitor: the metric Lightning hands a plateau scheduler.
        interval: ``epoch`` or ``step``: how often Lightning steps the scheduler.
    """

    scheduler: Callable[..., Any] | None = None
    monitor: str = "val/sdr"
    interval: str = "epoch"


class WarmupCosineLR(LambdaLR):
    """Linear warm-up from 0 to the base lr, then cosine decay to ``min_lr_ratio`` x base lr.

    Args:
        optimizer: the optimiser whose groups' lr is scaled.
        total_steps: optimiser steps in the whole run.
        warmup_fraction: share of ``total_steps`` spent warming up (at least one step when > 0).
        min_lr_ratio: the final lr as a fraction of the base lr.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = int(total_steps)
        self.warmup_steps = math.ceil(warmup_fraction * total_steps) if warmup_fraction > 0 else 0
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The lr multiplier after ``step`` optimiser steps."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
