"""How checkpoint files reach the disk and come back: atomically, and without running pickled code.

:class:`AtomicCheckpointIO` is the Lightning ``CheckpointIO`` plugin every
sepnet Trainer gets. Saving writes a hidden temporary file in the checkpoint's
own folder, fsyncs it and renames it over the target, so a kill at any moment
leaves either the previous ``last.ckpt`` or the complete new one, never a
truncated file. Loading (also when Lightning resumes a run) goes through
:func:`sepnet.checkpoints.checkpoint.read_checkpoint`: ``torch.load(weights_only=True)``,
with a one-line :class:`~sepnet.errors.SepnetError` for a file that would run
code or is truncated.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from sepnet.errors import SepnetError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``: ``.<name>.<random>.tmp`` (never matches ``*.ckpt``)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files a killed save of ``path`` left behind."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"))


def atomic_torch_save(obj: Any, path: str | os.PathLike, save: Callable[[Any, Any], None] | None = None) -> Path:
    """``save(obj, file)`` (default ``torch.save``) into a temporary file beside ``path``, fsync it, then
    rename it to ``path``.

    ``path`` is at every moment either absent, the old file, or the complete new
    one. A failed save removes its temporary file and re-raises; temporary files
    left by an earlier save that was killed are removed once this one succeeds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as f:
            (save or torch.save)(obj, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # ... and so is the rename
    for stale in stale_temp_files(path):
        stale.unlink(missing_ok=True)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes (temp + fsync + rename) and safe loads (``weights_only=True``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as exc:
            raise SepnetError(
                f"cannot write checkpoint '{path}' ({exc.strerror or exc}); free disk space or choose another "
                f"output folder with hydra.run.dir=<folder> (the previous checkpoint is intact)"
            ) from exc
        # One line per file written (hydra.verbose=[sepnet.checkpoints.atomic] shows them): what was saved when.
        log.debug("wrote %s (epoch %s, step %s)", path, checkpoint.get("epoch"), checkpoint.get("global_step"))

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        from sepnet.checkpoints.checkpoint import (
            read_checkpoint,  # checkpoint imports the model code; keep this module light
        )

        return read_checkpoint(path)
