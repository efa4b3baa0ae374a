"""What a resumed run needs from Lightning: a step-keyed seed and a ``metrics.csv`` that is kept.

Finding and checking the checkpoint to resume is :mod:`sepnet.checkpoints.resume`
(no Lightning, so inference never imports this); these two pieces hook into the
Trainer, so they live with the training code.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

from sepnet.atomic import write_bytes


def rows_before(text: str, global_step: int | None) -> str:
    """``metrics.csv`` text without the rows logged at or after ``global_step`` (those the resumed run redoes:
    a run killed after its last checkpoint logged steps that it now trains again)."""
    if global_step is None:
        return text
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    header = next(csv.reader([lines[0]]))
    if "step" not in header:
        return text
    column = header.index("step")
    kept = [lines[0]]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        try:
            step = int(float(fields[column]))
        except (IndexError, ValueError):
            step = None
        if step is None or step < global_step:
            kept.append(line)
    return "".join(kept)


def keep_previous_metrics(loggers: list, global_step: int | None = None) -> None:
    """Stop Lightning's CSVLogger from deleting an existing ``metrics.csv``: a resumed run appends to it.

    Rows logged at or after the resumed checkpoint's ``global_step`` go, so no step (or epoch) is listed twice.
    """
    for logger in loggers:
        if not isinstance(logger, L.pytorch.loggers.CSVLogger):
            continue
        metrics = Path(logger.log_dir) / "metrics.csv"
        if metrics.is_file():
            kept = rows_before(metrics.read_text(), global_step).encode()
            with warnings.catch_warnings():  # its "previous log files will be deleted" is not true here
                warnings.simplefilter("ignore")
                writer = logger.experiment  # creating the writer deletes an existing metrics.csv ...
            write_bytes(metrics, kept)  # ... so it is put back, and new rows go under its header
            header = kept.decode().partition("\n")[0].strip()
            writer.metrics_keys = header.split(",") if header else []


class StepSeed(L.Callback):
    """Seed torch's global generator from ``(seed, rank, global step)`` before every training step.

    The model's randomness (dropout) then depends on the step alone, not on how
    many random numbers were drawn before it: a resumed run draws what the
    uninterrupted one drew.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        key = [self.seed, trainer.global_rank, trainer.global_step]
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1))
