"""Decode once: every audio file as a memory-mapped float32 array at the model's rate.

Decoding compressed audio every epoch is what made Open-Unmix's users wait 14 s
per batch. sepnet decodes (and resamples) each file once into
``<cache folder>/<id>-<fingerprint>-<samples>.npy``:

- ``id`` hashes the file's absolute path, the stream index (for multi-stream
  files) and the target sample rate, so one folder serves every dataset and rate
  (stream entries also name their decoder, PyAV since it replaced stempeg);
- ``fingerprint`` hashes the file's size and modification time, so a changed
  file gets a new entry (and the old one is deleted) the next time it is loaded;
- ``samples`` is the decoded length: an entry is used only when it holds exactly
  that many finite float32 stereo samples, otherwise (a disk error, a killed
  writer of an older sepnet, someone else's file) it is decoded again, with a
  warning naming the entry (never the source file, which is fine).

Entries are written to a temporary file and renamed into place, so concurrent
loaders (DataLoader workers, several runs) never see a half-written array, and
they survive restarts. Loading an entry is ``np.load(mmap_mode="r")``: nothing is
read until a chunk is sliced, RAM holds only what the OS page cache keeps, and
forked DataLoader workers share those pages.

Beat times tracked from a track's audio (:mod:`sepnet.data.beats`) are kept beside
it, as ``<id of the first stem>-<key>.beats.json``: the key hashes every stem
file's id and fingerprint and the tracker's version, so changed audio or a changed
tracker gets a new entry and the beat tracker runs once per track, not once per run.

Sizes: float32 at 22050 Hz stereo is about 10 MiB per minute of audio per stem
(MUSDB18-HQ's four stems: about 25 GiB); put the cache where there is room
(``data.cache_dir``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sepnet.atomic import atomic_write, write_text
from sepnet.audio.io import read_audio
from sepnet.errors import SepnetError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when the decoding changes (e.g. another resampler): every entry is then rebuilt.

Beat entries carry their own version (the tracker's, in their key), so a new tracker
recomputes beats without decoding the audio again; caches older than beat entries
simply have none, so nothing is misread."""

_CHECK_BLOCK = 1 << 20  # samples per channel checked at a time for finiteness (8 MiB of float32 stereo)

USER_CACHE = Path("~/.cache/sepnet/audio")
"""Where the cache goes when the dataset's own folder cannot be written."""


def decode(path: Path, stream: int | None, sample_rate: int) -> np.ndarray:
    """Decode ``path`` (or audio stream ``stream`` of it) to ``(2, samples)`` float32 at ``sample_rate``."""
    return read_audio(path, sample_rate, stream=stream)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def resolve_cache_dir(configured: str | os.PathLike | None, beside_data: Path) -> Path:
    """The cache folder: ``configured`` (``data.cache_dir``) if set, else beside the data, else ``~/.cache/sepnet``.

    A read-only dataset root (a shared MUSDB18 copy) falls back to the user's cache.
    """
    if configured is not None:
        folder = Path(configured).expanduser()
        if not _writable(folder):
            raise SepnetError(
                f"data.cache_dir '{folder}' cannot be created or written; set data.cache_dir=<writable folder>"
            )
        return folder
    for folder in (beside_data, USER_CACHE.expanduser()):
        if _writable(folder):
            return folder
    raise SepnetError(
        f"no writable place for the decoded-audio cache (tried '{beside_data}' and '{USER_CACHE}'); "
        "set data.cache_dir=<writable folder>"
    )


class AudioCache:
    """Decoded audio at one sample rate, one ``.npy`` file per source file (or stream).

    Args:
        folder: where the entries live (created if needed).
        sample_rate: the rate every entry is resampled to.

    Attributes:
        decoded: files this object decoded (cache misses).
        reused: files this object found already decoded (cache hits).
        beats_tracked: tracks whose beats this object computed.
        beats_reused: tracks whose beats it found in the cache.
    """

    def __init__(self, folder: str | os.PathLike, sample_rate: int):
        self.folder = Path(folder)
        self.sample_rate = int(sample_rate)
        self.decoded = 0
        self.reused = 0
        self.beats_tracked = 0
        self.beats_reused = 0

    def _names(self, path: Path, stream: int | None) -> tuple[str, str]:
        """(id, fingerprint) of ``path``; ``path`` must exist."""
        stat = path.stat()
        # Streams were decoded by stempeg (the ffmpeg program) before PyAV: new ids, so they are rebuilt
        # while the entries of plain files, decoded as before, are kept.
        decoder = "" if stream is None else "|pyav"
        ident = hashlib.sha1(f"v{CACHE_VERSION}|{path}|{stream}|{self.sample_rate}{decoder}".encode()).hexdigest()[:24]
        fingerprint = hashlib.sha1(f"{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return ident, fingerprint

    def load(self, path: str | os.PathLike, stream: int | None = None) -> np.ndarray:
        """``path`` (or its stream ``stream``) as read-only ``(2, samples)`` float32, decoding it only if needed.

        Raises :class:`SepnetError` for a missing or undecodable file (naming it),
        or a cache folder that cannot be written.
        """
        path = Path(path).absolute()
        if not path.is_file():
            return decode(path, stream, self.sample_rate)  # raises the one-line error naming the file
        ident, fingerprint = self._names(path, stream)
        for entry in sorted(self.folder.glob(f"{ident}-{fingerprint}-*.npy")):
            audio, damage = self._open(entry)
            if audio is not None:
                self.reused += 1
                return audio
            log.warning("decoded-audio cache entry '%s' is damaged (%s); decoding '%s' again", entry, damage, path.name)
            entry.unlink(missing_ok=True)
        audio = decode(path, stream, self.sample_rate)
        self.decoded += 1
        entry = self.folder / f"{ident}-{fingerprint}-{audio.shape[-1]}.npy"
        self._write(entry, audio)
        for stale in self.folder.glob(f"{ident}-*.npy"):  # earlier versions of the same file
            if stale != entry:
                stale.unlink(missing_ok=True)
        opened, damage = self._open(entry)
        if opened is None:  # written just now, so the disk or the folder is at fault
            raise SepnetError(
                f"the decoded-audio cache entry '{entry}' reads back damaged ({damage}); check the disk, "
                f"or set data.cache_dir=<another folder>"
            )
        return opened

    def beats(
        self,
        sources: Sequence[tuple[str | os.PathLike, int | None]],
        method: str,
        compute: Callable[[], tuple[np.ndarray, str]],
    ) -> tuple[np.ndarray, str]:
        """Beat times (beats,) float64 seconds and their source label, tracked once from the files ``sources``.

        Args:
            sources: ``(path, stream)`` of every file the beats were tracked from (a track's stems).
            method: names the tracker and its settings; part of the entry's key.
            compute: runs the tracker; called only when no entry matches.
        """
        names = [self._names(Path(path).absolute(), stream) for path, stream in sources]
        key = hashlib.sha1(f"{method}|{self.sample_rate}|{names}".encode()).hexdigest()[:16]
        entry = self.folder / f"{names[0][0]}-{key}.beats.json"
        try:
            stored = json.loads(entry.read_text())
            times, source = np.asarray(stored["times"], dtype=np.float64), str(stored["source"])
            if times.ndim == 1:
                self.beats_reused += 1
                return times, source
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or damaged: tracked again
        times, source = compute()
        rounded = [round(float(t), 6) for t in np.asarray(times).ravel()]  # microseconds: what the entry holds
        self.beats_tracked += 1
        text = json.dumps({"source": source, "method": method, "times": rounded})
        fix = "free some space or set data.cache_dir=<writable folder with room>"
        write_text(entry, text, fix=fix, label=f"the decoded-audio cache '{self.folder}'")
        for stale in self.folder.glob(f"{names[0][0]}-*.beats.json"):  # beats of earlier versions of the files
            if stale != entry:
                stale.unlink(missing_ok=True)
        return np.asarray(rounded, dtype=np.float64), source

    def _open(self, entry: Path) -> tuple[np.ndarray | None, str]:
        """``(the memory-mapped entry, "")``, or ``(None, what is wrong)`` when it is damaged (it is then rebuilt).

        Checked: it reads as ``(2, samples)`` float32 with the length its name records, every sample finite
        (a pass over the entry, in blocks: its pages are the ones training reads anyway).
        """
        try:
            expected = int(entry.stem.rpartition("-")[2])
        except ValueError:
            return None, "no length in its name"
        try:
            audio = np.load(entry, mmap_mode="r")
        except (OSError, ValueError) as exc:
            return None, f"unreadable: {exc}"
        if audio.dtype != np.float32 or audio.ndim != 2 or audio.shape[0] != 2:
            return None, f"{audio.dtype} of shape {audio.shape}, not float32 (2, samples)"
        if audio.shape[1] != expected or expected == 0:
            return None, f"{audio.shape[1]} samples, not the {expected} decoded"
        for start in range(0, expected, _CHECK_BLOCK):
            if not np.isfinite(audio[:, start : start + _CHECK_BLOCK]).all():
                return None, "NaN or Inf samples"
        return audio, ""

    def _write(self, entry: Path, audio: np.ndarray) -> None:
        fix = "free some space or set data.cache_dir=<writable folder with room>"
        with atomic_write(entry, fix=fix, label=f"the decoded-audio cache '{self.folder}'") as f:
            np.save(f, np.ascontiguousarray(audio, dtype=np.float32))
