"""Overfitting, flagged instead of spotted by eye on a loss plot.

The check (:func:`sepnet.evaluation.divergence.find_divergence`) reads a run's curves;
:class:`OverfittingMonitor` runs it during training, logs the
epoch-mean training loss as ``train/loss_epoch`` (the curve compare draws) and
logs a warning the first time the run diverges.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch

from sepnet.evaluation.divergence import Divergence, find_divergence

log = logging.getLogger(__name__)


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
