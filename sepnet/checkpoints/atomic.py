"""The Lightning plugin through which a Trainer's checkpoints reach the disk and come back.

:class:`AtomicCheckpointIO` is the ``CheckpointIO`` every sepnet Trainer gets.
Saving goes through :func:`sepnet.atomic.atomic_write` (temporary file beside the
target, fsync, rename), so a kill at any moment leaves either the previous
``last.ckpt`` or the complete new one, never a truncated file. Loading (also when
Lightning resumes a run) goes through
:func:`sepnet.checkpoints.checkpoint.read_checkpoint`: ``torch.load(weights_only=True)``,
with a one-line :class:`~sepnet.errors.SepnetError` for a file that would run
code or is truncated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from sepnet.atomic import atomic_write, stale_temp_files, temp_path_for

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "stale_temp_files", "temp_path_for"]

log = logging.getLogger(__name__)

SAVE_FIX = "free disk space or choose another output folder with hydra.run.dir=<folder> (the previous checkpoint is intact)"


def atomic_torch_save(obj: Any, path: str | os.PathLike, save: Callable[[Any, Any], None] | None = None) -> Path:
    """``save(obj, file)`` (default ``torch.save``) through :func:`~sepnet.atomic.atomic_write`.

    ``path`` is at every moment either absent, the old file, or the complete new
    one; temporary files left by an earlier save that was killed are removed once
    this one succeeds. An ``OSError`` becomes one :class:`~sepnet.errors.SepnetError` line.
    """
    with atomic_write(path, fix=SAVE_FIX, label=f"checkpoint '{path}'", remove_stale=True) as f:
        (save or torch.save)(obj, f)
    return Path(path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes (temp + fsync + rename) and safe loads (``weights_only=True``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)
        # One line per file written (hydra.verbose=[sepnet.checkpoints.atomic] shows them): what was saved when.
        log.debug("wrote %s (epoch %s, step %s)", path, checkpoint.get("epoch"), checkpoint.get("global_step"))

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        from sepnet.checkpoints.checkpoint import (
            read_checkpoint,  # checkpoint imports the model code; keep this module light
        )

        return read_checkpoint(path)
