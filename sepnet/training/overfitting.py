"""Overfitting, flagged instead of spotted by eye on a loss plot.

A run diverges at a validation when its validation metric is worse than at its
best validation so far (val/loss above its minimum, or val/sdr below its
maximum) while the training loss is still below what it was at that best
validation: the model keeps fitting the training data and generalises worse.
``patience`` such validations in a row flag the run.

:func:`find_divergence` reads a finished run's curves (``sepnet.compare``);
:class:`OverfittingMonitor` runs the same check during training, logs the
epoch-mean training loss as ``train/loss_epoch`` (the curve compare draws) and
logs a warning the first time the run diverges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch

log = logging.getLogger(__name__)


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


class OverfittingMonitor(L.Callback):
    """Logs ``train/loss_epoch`` and warns once when the run starts to overfit (see the module docstring).

    Args:
        patience: consecutive diverging validations before the warning.
    """

    def __init__(self, patience: int = 3):
        self.patience = patience
        # The epoch's sum and count of finite losses, kept on the loss's device and read once at
        # the epoch's end: reading them every step would be a host sync per step on a GPU.
        self._sum: torch.Tensor | float = 0.0
        self._count: torch.Tensor | int = 0
        self.epochs: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.val_sdr: list[float] = []
        self.divergence: Divergence | None = None
        self._validated_epoch: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sum, self._count = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().double()
            finite = torch.isfinite(loss)
            self._sum = self._sum + torch.where(finite, loss, 0.0)
            self._count = self._count + finite.long()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count = int(self._count)
        if not count:
            return
        mean = float(self._sum) / count
        # In the progress bar: the per-step train/loss stays out of it (Lightning would read it every step).
        pl_module.log("train/loss_epoch", mean, on_step=False, on_epoch=True, prog_bar=True)
        if self._validated_epoch != trainer.current_epoch:
            return
        metrics = trainer.callback_metrics

        def value(key: str) -> float:
            return float(metrics[key]) if key in metrics else math.nan

        self.epochs.append(trainer.current_epoch)
        self.train_loss.append(mean)
        self.val_loss.append(value("val/loss"))
        self.val_sdr.append(value("val/sdr"))
        if self.divergence is None:
            self.divergence = find_divergence(self.epochs, self.train_loss, self.val_loss, self.val_sdr, self.patience)
            if self.divergence is not None:
                log.warning("%s; the best checkpoint is kept, consider stopping or adding augmentation", self.divergence)
