"""Writing a file so that a crash never leaves half of it: the one way sepnet's outputs reach the disk.

The bytes go to a hidden temporary file beside the target (same folder, so the
rename cannot cross filesystems), which is fsynced and renamed over the target;
the folder is then fsynced so the rename itself survives a power cut. At every
moment the target is absent, the old file or the complete new one. A write that
fails removes its temporary file; an ``OSError`` becomes one
:class:`~sepnet.errors.SepnetError` line naming the file and the fix.

    with atomic_write(path, fix="choose another output folder") as f:   # a streaming writer
        f.write(block) ...
    write_text(path, text, fix=...)                                      # a whole file at once
    save_torch(checkpoint, path, fix=...)                                # torch.save, atomically

It lives at the top of the package, next to :mod:`sepnet.errors`, because every
layer writes files (audio, checkpoints, caches, result tables) and none of them
should import another's code (or Lightning) for it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sepnet.errors import SepnetError

TEMP_SUFFIX = ".tmp"
DEFAULT_FIX = "choose a writable output folder with room"


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``: ``.<name>.<random>.tmp`` (never matches the target's glob)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files that killed writes of ``path`` left behind."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a filesystem that refuses to fsync a folder still renamed atomically."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(label: str, exc: OSError, fix: str) -> SepnetError:
    """The one line for a failed write: ``cannot write <label> (<reason>); <fix>``."""
    return SepnetError(f"cannot write {label} ({exc.strerror or exc}); {fix}")


@contextmanager
def atomic_write(
    path: str | os.PathLike,
    *,
    fix: str = DEFAULT_FIX,
    label: str | None = None,
    remove_stale: bool = False,
) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` when the block exits cleanly.

    Args:
        path: the target; its folder is created.
        fix: what the user should do when the disk refuses (ends the error line).
        label: how the error line names the file (default ``'<path>'``, e.g. ``checkpoint '<path>'``).
        remove_stale: after success, also delete temporary files of ``path`` left by killed writes
            (only for a target one process writes at a time, such as a run's ``last.ckpt``).

    Raises:
        SepnetError: the folder cannot be created, or writing, fsyncing or renaming fails with ``OSError``
            (raised inside the block too). Any other exception from the block propagates unchanged; in every
            failing case the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    label = label or f"'{path}'"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepnetError(f"cannot create folder '{path.parent}' ({exc.strerror or exc}); {fix}") from exc
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as f:  # "x": never write into a file someone else created
            yield f
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(label, exc, fix) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # ... and so is the rename
    if remove_stale:
        for stale in stale_temp_files(path):
            stale.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes, **options) -> Path:
    """Replace ``path`` with ``data`` atomically (options as :func:`atomic_write`); returns the path."""
    with atomic_write(path, **options) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, **options) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically (options as :func:`atomic_write`); returns the path."""
    return write_bytes(path, text.encode("utf-8"), **options)


def save_torch(obj: Any, path: str | os.PathLike, *, save: Any = None, **options) -> Path:
    """``torch.save(obj, ...)`` into ``path`` atomically (options as :func:`atomic_write`); returns the path.

    The one checkpoint writer: Lightning's (:mod:`sepnet.checkpoints.lightning_io`), ``merge``'s
    and every other ``.ckpt`` sepnet writes go through it. ``save(obj, file)`` replaces
    ``torch.save`` (tests use it to stall a write).
    """
    import torch  # here, not at the top: the rest of this module serves layers that never load torch

    with atomic_write(path, **options) as f:
        (save or torch.save)(obj, f)
    return Path(path)
