"""What ends a training run early, and how it ends: loudly, with a good checkpoint on disk.

* :class:`NonFiniteGuard` stops training on a NaN/Inf loss or gradient *before*
  the optimiser step, so the weights (and every checkpoint) stay finite; the
  message names epoch, step and the batch's tracks.
* :class:`GracefulStop` turns SIGTERM (SLURM preemption, ``kill``) and a first
  Ctrl-C into a stop at the end of the current batch, writes ``last.ckpt`` and
  lets the entry point exit with ``128 + signal``; a second Ctrl-C aborts at once
  (the previous ``last.ckpt`` is intact: checkpoints are written atomically).
* :func:`out_of_memory_error` turns a GPU out-of-memory error into a one-line
  :class:`~sepnet.errors.SepnetError` naming the settings that shrink memory.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sepnet.errors import SepnetError

log = logging.getLogger(__name__)


class TrainingDiverged(SepnetError):
    """The loss or a gradient became NaN/Inf; training stopped before the weights were touched."""


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint``; the entry point exits ``128 + signum``."""

    def __init__(self, signum: int, checkpoint: Path | None, epoch: int, step: int):
        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step
        name = signal.Signals(signum).name
        saved = f"saved {checkpoint}" if checkpoint is not None else "no checkpoint saved"
        super().__init__(f"training stopped by {name} at epoch {epoch}, step {step}; {saved}")


def _track_names(batch: Any, limit: int = 8) -> str:
    tracks = list(batch.get("track", [])) if isinstance(batch, dict) else []
    shown = ", ".join(dict.fromkeys(map(str, tracks[:limit])))  # keeps order, drops repeats
    return (shown + (", ..." if len(tracks) > limit else "")) or "unknown"


class NonFiniteGuard(L.Callback):
    """Raise :class:`TrainingDiverged` on a non-finite training loss or gradient, before the optimiser steps.

    The check costs one host sync per optimiser step: the losses of the step and
    the largest absolute value of every gradient (one fused ``_foreach_norm``) are
    reduced to a single flag on the device, read once before the step. A NaN loss
    makes NaN gradients too, so nothing is lost by checking the loss there rather
    than before backward; only with ``trainer.detect_anomaly=true`` (a slow
    debugging mode anyway) is the loss read before backward, so the message names
    the loss rather than autograd naming the operation.

    Args:
        last_checkpoint: the run's ``last.ckpt``, named in the message (it holds the last good state).
    """

    def __init__(self, last_checkpoint: str | Path | None = None):
        self.last_checkpoint = Path(last_checkpoint) if last_checkpoint is not None else None
        self._tracks = "unknown"
        self._bad_loss: torch.Tensor | None = None  # () the first non-finite loss of the step, else finite

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._tracks = _track_names(batch)

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        if torch.is_anomaly_enabled():
            if not torch.isfinite(loss).all():
                self._stop(trainer, f"the training loss is {float(loss):.4g}")
            return
        # Keep the first non-finite loss of the (accumulated) step, on the device: no sync here.
        seen = self._bad_loss
        self._bad_loss = loss if seen is None else torch.where(torch.isfinite(seen), loss, seen)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        bad_loss, self._bad_loss = self._bad_loss, None
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None and p.grad.numel()]
        flags = [torch.isfinite(bad_loss).reshape(1)] if bad_loss is not None else []
        if grads:
            # inf-norm (max |g|) is non-finite exactly when a gradient holds a NaN or Inf.
            flags.append(torch.stack(torch._foreach_norm(grads, float("inf"))).isfinite().all().reshape(1))
        if not flags or bool(torch.cat(flags).all()):  # the one host sync of the step
            return
        if bad_loss is not None and not torch.isfinite(bad_loss):
            self._stop(trainer, f"the training loss is {float(bad_loss):.4g}")
        for name, param in pl_module.named_parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                self._stop(trainer, f"the gradient of {name} is not finite")

    def _stop(self, trainer, what: str) -> None:
        kept = (
            f"last good checkpoint: {self.last_checkpoint}"
            if self.last_checkpoint is not None and self.last_checkpoint.is_file()
            else "no checkpoint was written yet"
        )
        raise TrainingDiverged(
            f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step} (tracks: {self._tracks}); "
            f"training stopped, {kept}; lower optim.lr or check those tracks, and "
            f"trainer.detect_anomaly=true names the operation that made it"
        )


class GracefulStop(L.Callback):
    """Save ``last.ckpt`` when SIGTERM or Ctrl-C stops training, then let the entry point exit.

    Lightning already turns SIGTERM into a stop at the end of the current batch
    (raising ``SIGTERMException``, and telling DDP ranks). This callback routes the
    first SIGINT the same way and saves the checkpoint when that stop happens;
    :attr:`interrupted` then holds the :class:`TrainingInterrupted` the entry point raises.

    Args:
        last_checkpoint: where to write the checkpoint (the run's ``last.ckpt``).
    """

    def __init__(self, last_checkpoint: str | Path):
        self.last_checkpoint = Path(last_checkpoint)
        self.signum: int | None = None
        self.interrupted: TrainingInterrupted | None = None
        self._previous_sigint: Any = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _on_sigint(self, signum, frame) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        self.signum = signal.SIGINT
        print("\nsepnet: Ctrl-C: stopping after this batch and saving last.ckpt (Ctrl-C again to abort)", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's SIGTERM path: stop after the batch, on every rank

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        trainer.save_checkpoint(self.last_checkpoint, weights_only=False)  # the full training state
        self.interrupted = TrainingInterrupted(
            self.signum or signal.SIGTERM, self.last_checkpoint, trainer.current_epoch, trainer.global_step
        )


def out_of_memory_error(exc: BaseException, batch_size: int, chunk_seconds: float) -> SepnetError | None:
    """A one-line error for a (GPU) out-of-memory ``exc``, or None when ``exc`` is something else."""
    message = str(exc)
    if not (isinstance(exc, torch.OutOfMemoryError) or "out of memory" in message.lower()):
        return None
    smaller = max(1, batch_size // 2)
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return SepnetError(
        f"out of memory while training ({first}); use a smaller data.batch_size (now {batch_size}, try {smaller}) "
        f"or data.chunk_seconds (now {chunk_seconds:g}, try {chunk_seconds / 2:g})"
    )
