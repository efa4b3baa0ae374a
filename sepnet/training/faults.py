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
    """Training stopped on a signal after saving ``checkpoint``; the entry point exits ``128 + signum``.

    ``rank`` is the process's global rank: under DDP every rank raises this, rank 0 tells the user.
    """

    def __init__(self, signum: int, checkpoint: Path | None, epoch: int, step: int, rank: int = 0):
        self.signum, self.checkpoint, self.epoch, self.step, self.rank = signum, checkpoint, epoch, step, rank
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

    A signal only marks this process; the stop happens where every DDP rank is at
    the same point: at the end of a training batch, after one all-reduce (max) of
    the ranks' marks, so it makes no difference which ranks got the signal (all
    of them from SLURM or a process-group kill, only the launcher from ``kill``).
    Every rank then takes Lightning's stop path (``SIGTERMException`` after that
    batch) together, a validation that is due first still runs to its end on every
    rank (the ranks' shares differ in length, so no common point lies inside it),
    and :meth:`on_exception` saves ``last.ckpt`` once: rank 0 writes, the others
    join the save's barrier, and nothing is saved when a checkpoint was already
    written at that very step (sepnet's ModelCheckpoint writes ``last.ckpt`` with
    every save). :attr:`interrupted` then holds the :class:`TrainingInterrupted`
    the entry point raises.

    Lightning's own SIGTERM handler is replaced while training runs: it runs a
    collective inside the handler, which meets whatever collective the other
    rank is in at that moment and deadlocks a DDP run.

    Args:
        last_checkpoint: where to write the checkpoint (the run's ``last.ckpt``).
    """

    def __init__(self, last_checkpoint: str | Path):
        self.last_checkpoint = Path(last_checkpoint)
        self.signum: int | None = None  # the first signal this process received
        self.interrupted: TrainingInterrupted | None = None
        self._stopping = False  # every rank agreed to stop after the current batch
        self._stop_signum = signal.SIGTERM
        self._saved_at_step: int | None = None
        self._is_global_zero = True
        self._previous_sigint: Any = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._is_global_zero = trainer.is_global_zero
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_signal)

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registered its SIGTERM handler just before; its teardown restores the one from before it.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_sigint()

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            if signum == signal.SIGINT and self._is_global_zero:
                print("\nsepnet: Ctrl-C: stopping after this batch and saving last.ckpt (Ctrl-C again to abort)", flush=True)

    def _agreed_signal(self, trainer) -> int:
        """The signal any rank received (0: none); a collective under DDP, so every rank calls it at the same step."""
        signum = self.signum or 0
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            mark = torch.tensor([signum], dtype=torch.int32, device=trainer.strategy.root_device)
            torch.distributed.all_reduce(mark, op=torch.distributed.ReduceOp.MAX)
            signum = int(mark.item())
        return signum

    def _set_lightning_stop(self, trainer, value: bool) -> None:
        # The flag Lightning's loops check after each batch (and its own handler sets).
        trainer._signal_connector.received_sigterm = value

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._stopping:
            return
        signum = self._agreed_signal(trainer)
        if signum:
            self._stopping, self._stop_signum = True, signum
            self._set_lightning_stop(trainer, True)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._stopping:  # finish this validation on every rank; stop right after it
            self._set_lightning_stop(trainer, False)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._stopping:
            self._set_lightning_stop(trainer, True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._saved_at_step = trainer.global_step

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return
        if self._saved_at_step != trainer.global_step:  # every rank decides alike: the save is a collective
            trainer.save_checkpoint(self.last_checkpoint, weights_only=False)  # the full training state
        self.interrupted = TrainingInterrupted(
            self.signum or self._stop_signum, self.last_checkpoint, trainer.current_epoch, trainer.global_step,
            trainer.global_rank,
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
