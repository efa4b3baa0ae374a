"""Run folders: where a run writes, checked before any time is spent."""

from __future__ import annotations

import os
from pathlib import Path

from sepnet.errors import SepnetError


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
