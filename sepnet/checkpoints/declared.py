"""What a checkpoint file declares about its tensors, read before any tensor is.

``torch.load`` allocates every storage at the size the file's pickle declares and only
then reads its bytes, so a 6 MB file that declares 6 GB of tensors costs 6 GB of memory
before it fails. :func:`shortfall` compares, without reading any tensor, the bytes each
storage declares (its element count times its element size) with the bytes the file
holds for it, and says why the file cannot hold them:

- torch's zip format (``torch.save`` since 1.6): each storage ``<key>`` is the entry
  ``<archive>/data/<key>``; the zip's central directory gives every entry's size and
  offset, and the pickle ``<archive>/data.pkl`` declares ``("storage", <type>, <key>,
  <location>, <numel>)`` for each. An entry's bytes are at most its stored size, and at
  most what the file has after the entry's offset (a forged directory may claim more).
- the legacy format (four pickles, then every storage's bytes in turn): the declared
  storages together must fit in the bytes after the pickles.

The pickles are walked by :class:`_DeclarationReader`, an unpickler that imports
nothing and calls nothing: every class a pickle names becomes an inert stand-in, and
only storage declarations are kept. ``torch.load(weights_only=True)`` reads the file
afterwards as before; this module only refuses what it cannot hold.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Self

LEGACY_HEADER_PICKLES = 3
"""The legacy format's pickles before the main one: magic number, protocol version, system info."""
ELEMENT_BYTES = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "QUInt8Storage": 1, "QInt8Storage": 1,
    "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "ShortStorage": 2, "HalfStorage": 2, "BFloat16Storage": 2,
    "IntStorage": 4, "FloatStorage": 4, "QInt32Storage": 4, "LongStorage": 8, "DoubleStorage": 8,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}
"""Bytes per element of each storage type a pickle may name (``torch.FloatStorage``: 4)."""
LOCAL_HEADER_BYTES = 30
"""A zip local file header's fixed part, before the entry's name and data."""


@dataclass(frozen=True)
class Storage:
    """One storage a pickle declares: its key, the class name of its type, and its element count."""

    key: str
    type_name: str
    numel: Any

    @property
    def nbytes(self) -> int | None:
        """Declared bytes, or None for an element count or storage type this module cannot size."""
        if not isinstance(self.numel, int) or isinstance(self.numel, bool) or self.numel < 0:
            return None
        size = ELEMENT_BYTES.get(self.type_name)
        return None if size is None else self.numel * size


class _StandIn:
    """What every class a walked pickle names becomes: built with any arguments, filled with anything, inert."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _DeclarationReader(pickle.Unpickler):
    """An unpickler that imports nothing and records the storages a pickle declares (``storages``)."""

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: list[Storage] = []
        self._stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> type:
        key = (str(module), str(name))
        if key not in self._stand_ins:
            self._stand_ins[key] = type("StandIn", (_StandIn,), {"global_name": ".".join(key)})
        return self._stand_ins[key]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            storage_type, key, numel = pid[1], pid[2], pid[4]
            type_name = getattr(storage_type, "global_name", "").rpartition(".")[2]
            self.storages.append(Storage(key.decode() if isinstance(key, bytes) else str(key), type_name, numel))
        return _StandIn()


def _size(n: int) -> str:
    """Bytes for a message: ``6.0 GB``, ``512 kB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _unsized(storage: Storage) -> str:
    return f"tensor storage {storage.key!r} declares {storage.numel!r} elements of {storage.type_name or '?'}, not a size"


def _too_much(declared: int, held: int, where: str) -> str | None:
    if declared > held:
        return (
            f"it declares {_size(declared)} of tensor data in {where} but the file holds {_size(max(held, 0))} "
            f"there: the declared size exceeds what the file holds"
        )
    return None


def _zip_shortfall(path: Path, disk_size: int) -> str | None:
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in entries if name.endswith("data.pkl") and name.count("/") <= 1]
        if len(pickles) != 1:
            return None  # not torch's layout: torch.load says what is wrong
        name = pickles[0]
        prefix, info = name[: -len("data.pkl")], entries[name]
        if info.file_size > disk_size:
            return f"its data.pkl declares {_size(info.file_size)} but the whole file is {_size(disk_size)}"
        reader = _DeclarationReader(io.BytesIO(archive.read(name)))
        reader.load()
    for storage in reader.storages:
        entry = entries.get(f"{prefix}data/{storage.key}")
        if entry is None:
            return f"it declares tensor storage {storage.key!r}, which the file does not hold"
        on_disk = disk_size - entry.header_offset - LOCAL_HEADER_BYTES - len(entry.filename) - len(entry.extra)
        if storage.nbytes is None:
            return _unsized(storage)
        problem = _too_much(storage.nbytes, min(entry.file_size, entry.compress_size, on_disk), f"data/{storage.key}")
        if problem:
            return problem
    return None


def _legacy_shortfall(path: Path, disk_size: int) -> str | None:
    with open(path, "rb") as f:
        for _ in range(LEGACY_HEADER_PICKLES):
            _DeclarationReader(f).load()
        reader = _DeclarationReader(f)
        reader.load()
        _DeclarationReader(f).load()  # the storage keys, in the order their bytes follow
        held = disk_size - f.tell()
    declared: dict[str, int] = {}
    for storage in reader.storages:
        if storage.nbytes is None:
            return _unsized(storage)
        declared.setdefault(storage.key, storage.nbytes)
    return _too_much(sum(declared.values()), held, "its storages")


def shortfall(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot hold the tensor data its pickle declares, or None.

    Reads the zip directory and the pickle only (cost: the pickle's size, never a tensor's).

    Raises:
        pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ...: a file whose pickle or
            directory is itself broken; the caller words that as unreadable.
    """
    disk_size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"PK":
        return _zip_shortfall(path, disk_size)
    if head[:1] == b"\x80":
        return _legacy_shortfall(path, disk_size)
    return None
