"""Overfitting in a run's curves: the validation metric got worse while the training loss kept falling.

A run diverges at a validation when its validation metric is worse than at its
best validation so far (val/loss above its minimum, or val/sdr below its
maximum) while the training loss is still below what it was at that best
validation. ``patience`` such validations in a row flag the run.
:func:`find_divergence` reads a finished run's curves (``sepnet.compare``);
:class:`sepnet.training.overfitting.OverfittingMonitor` runs the same check during training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Divergence:
    """Where a run started to overfit.

    Attributes:
        metric: ``val/loss`` or ``val/sdr``, the validation metric that got worse.
        best_epoch: epoch of that metric's best value.
        flagged_epoch: epoch of the ``patience``-th diverging validation in a row.
        validations: how many consecutive validations diverged by ``flagged_epoch``.
    """

    metric: str
    best_epoch: int
    flagged_epoch: int
    validations: int

    def __str__(self) -> str:
        worse = "rose" if self.metric == "val/loss" else "fell"
        return (
            f"overfitting: train loss kept falling while {self.metric} {worse} below its best (epoch "
            f"{self.best_epoch}) for {self.validations} validations (flagged at epoch {self.flagged_epoch})"
        )


def _diverging_streak(
    epochs: Sequence[int], train_loss: Sequence[float], val: Sequence[float], higher_is_better: bool, patience: int, name: str
) -> Divergence | None:
    best, streak = None, 0
    for i, value in enumerate(val):
        if math.isnan(value) or math.isnan(train_loss[i]):
            streak = 0
            continue
        improved = best is None or (value > val[best] if higher_is_better else value < val[best])
        if improved:
            best, streak = i, 0
            continue
        streak = streak + 1 if train_loss[i] < train_loss[best] else 0
        if streak >= patience:
            return Divergence(name, epochs[best], epochs[i], streak)
    return None


def find_divergence(
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float] | None = None,
    val_sdr: Sequence[float] | None = None,
    patience: int = 3,
) -> Divergence | None:
    """The first divergence in per-validation curves (equal lengths; NaN where missing), or None.

    Args:
        epochs: epoch of each validation.
        train_loss: mean training loss of the epoch of each validation.
        val_loss, val_sdr: validation metrics; either may be None.
        patience: consecutive diverging validations that flag the run.
    """
    found = []
    if val_loss is not None:
        found.append(_diverging_streak(epochs, train_loss, val_loss, False, patience, "val/loss"))
    if val_sdr is not None:
        found.append(_diverging_streak(epochs, train_loss, val_sdr, True, patience, "val/sdr"))
    found = [d for d in found if d is not None]
    return min(found, key=lambda d: d.flagged_epoch) if found else None
