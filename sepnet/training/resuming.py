"""What a resumed run needs from Lightning: a step-keyed seed and a ``metrics.csv`` that is kept.

Finding and checking the checkpoint to resume is :mod:`sepnet.checkpoints.resume`
(no Lightning, so inference never imports this); these two pieces hook into the
Trainer, so they live with the training code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

from sepnet.atomic import write_bytes


def keep_previous_metrics(loggers: list) -> None:
    """Stop Lightning's CSVLogger from deleting an existing ``metrics.csv``: a resumed run appends to it."""
    for logger in loggers:
        if not isinstance(logger, L.pytorch.loggers.CSVLogger):
            continue
        metrics = Path(logger.log_dir) / "metrics.csv"
        if metrics.is_file():
            kept = metrics.read_bytes()
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
