"""Writing a file so that a crash never leaves half of it: the one way sepnet's outputs reach the disk.

The bytes go to a hidden temporary file beside the target (same folder, so the
rename cannot cross filesystems), which is fsynced and renamed over the target;
the folder is then fsynced so the rename itself survives a power cut. At every
moment the target is absent, the old file or the complete new one. A write that
fails removes its temporary file; an ``OSError`` (also one that torch or another
library wrapped in its own exception) becomes one :class:`~sepnet.errors.SepnetError`
line naming the file and the fix; a full disk is named as such, with the free space
and the space needed. Temporary names carry the writer's process id, so a cleanup
removes only the temporaries of writers that are gone.

    with atomic_write(path, fix="choose another output folder") as f:   # a streaming writer
        f.write(block) ...
    write_text(path, text, fix=...)                                      # a whole file at once
    save_torch(checkpoint, path, fix=...)                                # torch.save, atomically

It lives at the top of the package, next to :mod:`sepnet.errors`, because every
layer writes files (audio, checkpoints, caches, result tables) and none of them
should import another's code (or Lightning) for it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sepnet.errors import SepnetError

TEMP_SUFFIX = ".tmp"
DEFAULT_FIX = "choose a writable output folder with room"


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``: ``.<name>.<pid>-<random>.tmp`` (never matches the target's glob).

    The process id tells :func:`stale_temp_files` whether the writer is still running.
    """
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one we may not signal counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def writer_pid(temp: Path) -> int | None:
    """The process id a temporary name of :func:`temp_path_for` carries; None for a name without one."""
    found = re.search(r"\.(\d+)-[0-9a-f]+" + re.escape(TEMP_SUFFIX) + "$", temp.name)
    return int(found.group(1)) if found else None


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files that killed writes of ``path`` left behind: those whose writer process is gone.

    A temporary of a writer still running (another process saving ``path`` right now) is never
    listed; a name without a process id (written before names carried one) is stale.
    """
    found = []
    for temp in sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}")):
        pid = writer_pid(temp)
        if pid is None or (pid != os.getpid() and not process_alive(pid)):
            found.append(temp)
    return found


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


def size_text(count: float) -> str:
    """``1536`` -> ``1.5 KiB``: a byte count as people read it."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def free_space(folder: Path) -> int | None:
    """Bytes free for this user on the disk holding ``folder``; None when that cannot be asked."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_error(label: str, folder: Path, needed: int | None, fix: str) -> SepnetError:
    """The one line for a full disk: ``cannot write <label> (disk full: <free> free on the disk holding '<folder>',
    about <needed> needed); <fix>``."""
    free = free_space(folder)
    where = f"on the disk holding '{folder}'"
    detail = f"{size_text(free)} free {where}" if free is not None else f"no space left {where}"
    if needed:
        detail += f", about {size_text(needed)} needed"
    return SepnetError(f"cannot write {label} (disk full: {detail}); {fix}")


def os_error_in(exc: BaseException) -> OSError | None:
    """The ``OSError`` behind ``exc``: itself, or for a ``RuntimeError`` one along its cause/context chain
    (torch's ``RuntimeError`` for a failed ``torch.save`` keeps the file's ``OSError`` as its context)."""
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def write_error(label: str, exc: OSError, fix: str, folder: Path | None = None, needed: int | None = None) -> SepnetError:
    """The one line for a failed write: ``cannot write <label> (<reason>); <fix>``, or :func:`disk_full_error`'s
    line when the disk is full (``folder``: where the file goes; ``needed``: bytes the write needs, if known)."""
    if folder is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full_error(label, folder, needed, fix)
    return SepnetError(f"cannot write {label} ({exc.strerror or exc}); {fix}")


@contextmanager
def atomic_write(
    path: str | os.PathLike,
    *,
    fix: str = DEFAULT_FIX,
    label: str | None = None,
    remove_stale: bool = False,
    needed: int | None = None,
) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` when the block exits cleanly.

    Args:
        path: the target; its folder is created.
        fix: what the user should do when the disk refuses (ends the error line).
        label: how the error line names the file (default ``'<path>'``, e.g. ``checkpoint '<path>'``).
        remove_stale: after success, also delete temporary files of ``path`` left by killed writes
            (only those whose writing process is gone, see :func:`stale_temp_files`).
        needed: about how many bytes the new content takes, for the full-disk line.

    Raises:
        SepnetError: the folder cannot be created, or writing, fsyncing or renaming fails with ``OSError``
            (raised inside the block too, or an exception caused by one). Any other exception from the block
            propagates unchanged; in every failing case the temporary file is removed and ``path`` is untouched.
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
    except BaseException as exc:
        cause = os_error_in(exc) if isinstance(exc, Exception) else None
        tmp.unlink(missing_ok=True)
        if cause is None:
            raise
        raise write_error(label, cause, fix, path.parent, needed) from exc
    fsync_dir(path.parent)  # ... and so is the rename
    if remove_stale:
        for stale in stale_temp_files(path):
            stale.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes, **options) -> Path:
    """Replace ``path`` with ``data`` atomically (options as :func:`atomic_write`); returns the path."""
    options.setdefault("needed", len(data))
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

    options.setdefault("needed", tensor_bytes(obj))
    with atomic_write(path, **options) as f:
        (save or torch.save)(obj, f)
    return Path(path)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict/list (what a checkpoint of it takes on disk, give or take its header)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes() if obj.device.type != "meta" else 0
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0
