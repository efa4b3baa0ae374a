"""Run folders: where a run writes, checked before any time is spent, and owned by one run at a time.

A run folder belongs to the one process that claimed it (:func:`claim`): it holds an
exclusive lock (``flock``) on ``<folder>/.sepnet-run.lock``, which also records its
process id. The kernel drops the lock when the process ends, however it ends
(SIGKILL included), so a stopped run's folder can be resumed at once and no lock
is ever stale. A second run into a folder that is in use gets one line, or, when
the folder was the default timestamped one (two runs started in the same second),
a fresh folder beside it (:func:`claim_fresh`): two runs never share checkpoints or
interleave ``metrics.csv``.

A start that fails (a user's mistake found after Hydra made the folder) removes the
folder it created when it holds nothing of value (:func:`remove_failed_start`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from sepnet.errors import SepnetError

try:  # POSIX; elsewhere run folders are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = ".sepnet-run.lock"
"""The lock file inside every claimed run folder (it stays; only the lock on it is released)."""

_HELD: dict[Path, int] = {}  # resolved folder -> the open lock file holding its flock
_CREATED: list[tuple[Path, bool]] = []  # (folder, is the run folder itself) this process's start created


def ensure_writable(folder: str | Path, key: str = "hydra.run.dir", value: str = "<folder>") -> Path:
    """Create ``folder`` and prove it can be written; ``key=value`` is the setting the user changes to fix it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"  # per process: DDP ranks probe the same folder at once
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = "it is a file, not a folder" if isinstance(exc, FileExistsError) else exc.strerror
        raise SepnetError(
            f"output folder '{folder}' cannot be written ({reason}); "
            f"choose another with {key}={value} or fix its permissions"
        ) from None
    return folder


def is_main_process() -> bool:
    """Whether this process is rank 0 of its run (DDP ranks and SLURM tasks > 0 share rank 0's folder)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class FolderInUse(SepnetError):
    """Another running process holds the run folder."""

    def __init__(self, folder: Path, holder: str, key: str):
        self.folder = folder
        super().__init__(
            f"run folder '{folder}' is in use by another sepnet run ({holder}); wait for it to end, "
            f"or choose another folder with {key}=<folder>"
        )


def holds(folder: str | Path) -> bool:
    """Whether this process has claimed ``folder``."""
    return Path(folder).resolve() in _HELD


def claim(folder: str | Path, key: str = "hydra.run.dir", value: str = "<folder>") -> bool:
    """Create ``folder`` (checked as :func:`ensure_writable`) and make it this process's alone.

    Returns True when this call claimed it, False when this process already held it (or the
    filesystem has no locks). Raises :class:`FolderInUse` (a :class:`SepnetError`) when another
    running process holds it.
    """
    folder = Path(folder)
    new = [p for p in [*reversed(folder.absolute().parents), folder.absolute()] if not p.exists()]
    ensure_writable(folder, key, value)
    _CREATED.extend((p, p == folder.absolute()) for p in new)  # outer first
    real = folder.resolve()
    if real in _HELD or fcntl is None:
        return False
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SepnetError(
            f"cannot create the run lock '{lock}' ({exc.strerror or exc}); choose another folder with {key}={value}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # no locks on this filesystem
            os.close(fd)
            log.warning("run folder '%s' cannot be locked (%s); make sure no other run writes into it", folder, exc.strerror)
            return False
        holder = _holder(fd)
        os.close(fd)
        raise FolderInUse(folder, holder, key) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {os.uname().nodename if hasattr(os, 'uname') else ''}\n".encode())
    _HELD[real] = fd
    return True


def _holder(fd: int) -> str:
    try:
        words = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        words = []
    if not words:
        return "its lock file names no process"
    return f"process {words[0]}" + (f" on {words[1]}" if len(words) > 1 else "")


def release(folder: str | Path) -> None:
    """Give up this process's claim on ``folder`` (the lock file stays, unlocked)."""
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor of the open file drops its flock


def claim_fresh(folder: str | Path, key: str, value: str = "<folder>", attempts: int = 100) -> Path:
    """Claim ``folder``, or when another run holds it, the first free ``<folder>-2``, ``<folder>-3``, ...

    For default (timestamped) folders: two runs started in the same second each get their own.
    """
    folder = Path(folder)
    for n in range(1, attempts + 1):
        candidate = folder if n == 1 else folder.with_name(f"{folder.name}-{n}")
        try:
            claim(candidate, key, value)
        except FolderInUse:
            continue
        if candidate != folder:
            log.info("run folder '%s' is in use by another run: writing into '%s'", folder, candidate)
        return candidate
    raise SepnetError(f"run folders '{folder}' to '{folder}-{attempts}' are all in use; choose one with {key}=<folder>")


# What a start writes before it does any work: a folder holding only these has nothing of value.
_START_FILES = ("config_resolved.yaml", "hparams.yaml", "multirun.yaml", LOCK_NAME)


def _start_file(path: Path, root: Path) -> bool:
    if ".hydra" in path.relative_to(root).parts or path.suffix == ".log" or path.name.startswith(".write-test"):
        return True
    if path.name in _START_FILES or path.name.startswith("config_resolved."):
        return True
    if path.name == "metrics.csv":  # a header, no rows
        try:
            return len(path.read_bytes().splitlines()) <= 1
        except OSError:
            return False
    return False


def holds_nothing_of_value(folder: Path) -> bool:
    """Whether ``folder`` holds only what a start writes (Hydra's ``.hydra/`` and log, the lock, the resolved
    config, an empty ``metrics.csv``): no checkpoint, no results."""
    return all(p.is_dir() or _start_file(p, folder) for p in folder.rglob("*"))


def remove_failed_start() -> list[Path]:
    """Remove the run folders this process's start created and that hold nothing of value; returns them.

    Called when a start fails with a user's mistake, so a corrected rerun does not leave a trail of
    half-built folders. A folder that existed before, or holds a checkpoint or results, stays.
    """
    removed = []
    while _CREATED:
        folder, run_folder = _CREATED.pop()  # inner first
        if not folder.is_dir():
            continue
        if run_folder and holds_nothing_of_value(folder):
            release(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        elif not run_folder and not any(folder.iterdir()):  # outputs/<run_name>/ this start made, now empty
            try:
                folder.rmdir()
            except OSError:  # another run just wrote into it
                continue
            removed.append(folder)
    return removed
