"""The Lightning plugin through which a Trainer's checkpoints reach the disk and come back.

:class:`AtomicCheckpointIO` is the ``CheckpointIO`` every sepnet Trainer gets.
Saving goes through :func:`sepnet.atomic.save_torch` (temporary file beside the
target, fsync, rename), so a kill at any moment leaves either the previous
``last.ckpt`` or the complete new one, never a truncated file. Loading (also when
Lightning resumes a run) goes through
:func:`sepnet.checkpoints.checkpoint.read_checkpoint`: ``torch.load(weights_only=True)``,
with a one-line :class:`~sepnet.errors.SepnetError` for a file that would run
code or is truncated.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.fabric.plugins import TorchCheckpointIO

from sepnet.atomic import save_torch, stale_temp_files, temp_path_for

__all__ = ["AtomicCheckpointIO", "stale_temp_files", "temp_path_for"]

log = logging.getLogger(__name__)

SAVE_FIX = "free disk space or choose another output folder with hydra.run.dir=<folder> (the previous checkpoint is intact)"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes (temp + fsync + rename) and safe loads (``weights_only=True``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_torch(checkpoint, path, fix=SAVE_FIX, label=f"checkpoint '{path}'", remove_stale=True)
        # One line per file written (hydra.verbose=[sepnet.checkpoints.lightning_io] shows them): what was saved when.
        log.debug("wrote %s (epoch %s, step %s)", path, checkpoint.get("epoch"), checkpoint.get("global_step"))

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        from sepnet.checkpoints.checkpoint import (
            read_checkpoint,  # checkpoint imports the model code; keep this module light
        )

        return read_checkpoint(path)
