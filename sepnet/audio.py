"""Audio file I/O: read any track as float32 stereo, write results atomically.

Everything goes through soundfile (libsndfile): WAV (16/24/32-bit int and
float), FLAC, OGG/Vorbis and, where the linked libsndfile supports it, MP3.
Resampling uses soxr.

Arrays are ``(channels, samples)`` float32 everywhere in sepnet; soundfile's
``(frames, channels)`` layout stays inside this module.

Loading is loud: a missing, corrupt, empty, multi-channel or NaN-holding file
raises :class:`~sepnet.errors.SepnetError` with one line naming the file and
the fix, never a soundfile or numpy traceback. Writing goes to a temporary file
in the target directory that is renamed into place, so a crash never leaves a
truncated file behind under the final name.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf
import soxr
import torch

from sepnet.errors import SepnetError

__all__ = [
    "AudioInfo",
    "AudioWriter",
    "audio_info",
    "iter_audio_blocks",
    "read_audio",
    "read_stream",
    "resample",
    "write_audio",
]

# Read in blocks so a corrupt header claiming terabytes of frames cannot make
# soundfile allocate them up front (it sizes its buffer from the header).
_READ_BLOCK_FRAMES = 1 << 20

# Defaults when write_audio gets no subtype: float WAV keeps separated stems
# bit-exact and unclipped; FLAC has no float subtype, so 24-bit PCM.
_DEFAULT_SUBTYPES = {"WAV": "FLOAT", "FLAC": "PCM_24"}
_FORMAT_ALIASES = {"aif": "AIFF", "oga": "OGG"}

# More channels than this in write_audio is almost surely a (samples, channels)
# array passed the wrong way round.
_MAX_WRITE_CHANNELS = 16


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says about it."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read only the header of ``path``.

    Raises :class:`SepnetError` if the file is missing, unreadable, not audio
    or has no samples. The channel count is reported as is (not checked).
    """
    path = Path(path)
    with _open(path) as f:
        info = AudioInfo(path, f.samplerate, f.channels, f.frames)
    if info.frames == 0:
        raise _empty_error(path)
    return info


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Read ``path`` as float32 stereo of shape ``(2, samples)``.

    Mono is returned as two identical channels ("fake stereo"); more than two
    channels, NaN/Inf samples or an empty file raise :class:`SepnetError`.

    Args:
        path: the audio file.
        sample_rate: resample to this rate with soxr ('HQ'); ``None`` keeps the
            file's own rate.
        start: where to begin, in seconds (of the file's own timeline).
        duration: how many seconds to read from ``start``; ``None`` reads to
            the end. A span running past the end is cut at the end.

    Returns:
        ``(2, samples)`` float32, C-contiguous; ``samples`` is about
        ``duration * sample_rate`` (fewer when the file ends first).
    """
    path = Path(path)
    if not (math.isfinite(start) and start >= 0) or (
        duration is not None and not (math.isfinite(duration) and duration > 0)
    ):
        raise SepnetError(
            f"cannot read {_q(path)} from start={start}s for duration={duration}s: "
            "start must be >= 0 and duration > 0 (or None for the rest of the file)"
        )

    with _open(path) as f:
        file_rate, channels, frames = f.samplerate, f.channels, f.frames
        if channels > 2:
            raise SepnetError(
                f"{_q(path)} has {channels} channels; sepnet reads mono or stereo: downmix it to stereo first"
            )
        if frames == 0:
            raise _empty_error(path)
        first = round(start * file_rate)
        if first >= frames:
            raise SepnetError(
                f"cannot read {_q(path)} from {start}s: it is only {frames / file_rate:.3f}s "
                "long; use a start inside the file"
            )
        count = -1 if duration is None else max(1, round(duration * file_rate))
        try:
            if first:
                f.seek(first)
            data = _read_blocks(f, count)
        except (sf.SoundFileError, OSError) as exc:
            raise _unreadable_error(path, exc) from exc

    # A header can promise more frames than the file holds (truncated or
    # corrupt); what decodes is used, but nothing at all is an error.
    if data.shape[0] == 0:
        if first == 0:
            raise _empty_error(path)
        raise SepnetError(
            f"{_q(path)} has no decodable samples after {start}s (truncated or corrupt?); "
            "re-export it as WAV/FLAC or remove the track"
        )
    if not np.isfinite(data).all():
        raise SepnetError(f"{_q(path)} contains NaN/Inf samples; re-export it (e.g. as 24-bit PCM) or remove the track")

    audio = np.ascontiguousarray(data.T)  # (channels, samples)
    if channels == 1:
        audio = np.repeat(audio, 2, axis=0)
    if sample_rate is not None:
        audio = resample(audio, file_rate, sample_rate)
    return audio


def read_stream(path: str | os.PathLike, stream: int, sample_rate: int | None = None) -> np.ndarray:
    """Read stream ``stream`` of a multi-stream file (MUSDB18's ``.stem.mp4``) as ``(2, samples)`` float32.

    Decoded by ffmpeg through ``stempeg`` (soundfile cannot read MP4); the same
    checks as :func:`read_audio` apply (mono -> fake stereo, > 2 channels,
    NaN/Inf and empty streams raise :class:`SepnetError` naming the file).
    """
    path = Path(path)
    if not os.path.exists(path):
        raise SepnetError(f"{_q(path)} does not exist; check the path")
    try:
        import stempeg

        data, file_rate = stempeg.read_stems(str(path), stem_id=stream, ffmpeg_format="f32le", dtype=np.float32)
    except Exception as exc:  # ffmpeg/stempeg raise many kinds; all mean "cannot decode"
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SepnetError(
            f"cannot decode stream {stream} of {_q(path)} with ffmpeg ({reason}); check the file "
            "(ffprobe shows its streams) or remove the track"
        ) from exc
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[0] == 0:
        raise _empty_error(path)
    if data.shape[1] > 2:
        raise SepnetError(
            f"stream {stream} of {_q(path)} has {data.shape[1]} channels; sepnet reads mono or stereo: downmix it first"
        )
    if not np.isfinite(data).all():
        raise SepnetError(f"stream {stream} of {_q(path)} contains NaN/Inf samples; re-export it or remove the track")
    audio = np.ascontiguousarray(data.T)
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    if sample_rate is not None:
        audio = resample(audio, int(file_rate), sample_rate)
    return audio
def iter_audio_blocks(path: str | os.PathLike, block_frames: int = _READ_BLOCK_FRAMES):
    """Read ``path`` block by block, at its own rate and channel count, for streaming.

    Yields ``(channels, n)`` float32 blocks (``n <= block_frames``); memory stays one
    block whatever the file's length. The same checks as :func:`read_audio`
    (missing, corrupt, empty, more than two channels, NaN/Inf) raise
    :class:`SepnetError`; call :func:`audio_info` first for the rate and channels.
    """
    path = Path(path)
    with _open(path) as f:
        if f.channels > 2:
            raise SepnetError(
                f"{_q(path)} has {f.channels} channels; sepnet reads mono or stereo: downmix it to stereo first"
            )
        got = 0
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, OSError) as exc:
                raise _unreadable_error(path, exc) from exc
            if len(block) == 0:
                break
            if not np.isfinite(block).all():
                raise SepnetError(
                    f"{_q(path)} contains NaN/Inf samples; re-export it (e.g. as 24-bit PCM) or remove the track"
                )
            got += len(block)
            yield np.ascontiguousarray(block.T)
            if len(block) < block_frames:
                break
    if got == 0:
        raise _empty_error(path)


class AudioWriter:
    """Write ``(channels, n)`` blocks to ``path`` as they come, atomically.

    ``with AudioWriter(path, rate, channels) as w: w.write(block)``: the data goes to a
    hidden temporary file beside ``path`` that is fsynced and renamed over it when
    the block exits cleanly, and deleted if it raises; formats and subtypes as
    :func:`write_audio`.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, *, subtype: str | None = None):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.fmt, self.subtype = _format_for(self.path, subtype)
        self.frames = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        self._fd: int | None = None
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> Self:
        _make_parent_dir(self.path)
        if self.path.is_dir():
            raise SepnetError(f"cannot write audio to {_q(self.path)}: it is a directory; choose a file name")
        try:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            self._file = sf.SoundFile(
                self._fd, "w", samplerate=self.sample_rate, channels=self.channels,
                subtype=self.subtype, format=self.fmt, closefd=False,
            )
        except (OSError, sf.SoundFileError) as exc:
            self._cleanup()
            raise self._error(exc) from exc
        return self

    def write(self, block: np.ndarray | torch.Tensor) -> None:
        """Append ``(channels, n)`` samples."""
        if isinstance(block, torch.Tensor):
            block = block.detach().to("cpu", torch.float32).numpy()
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"AudioWriter for {self.channels} channels got a block of shape {block.shape}")
        try:
            self._file.write(block.T)
        except (OSError, sf.SoundFileError) as exc:
            raise self._error(exc) from exc
        self.frames += block.shape[1]

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cleanup()
            return
        try:
            self._file.close()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.replace(self._tmp, self.path)
        except (OSError, sf.SoundFileError) as err:
            self._cleanup()
            raise self._error(err) from err

    def _cleanup(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001, S110 - already failing; the temp file goes anyway
                pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._tmp.unlink(missing_ok=True)

    def _error(self, exc: Exception) -> SepnetError:
        if isinstance(exc, OSError):
            return SepnetError(
                f"cannot write {_q(self.path)} ({exc.strerror or exc}); choose a writable output directory"
            )
        return SepnetError(
            f"cannot write {_q(self.path)} as {self.fmt}/{self.subtype} at {self.sample_rate} Hz "
            f"(soundfile: {_reason(exc)}); check the sample rate, subtype and free disk space"
        )


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``(channels, samples)`` audio with soxr (quality 'HQ').

    Returns ``(channels, round(samples * to_rate / from_rate))`` float32 (soxr
    rounds halves up). Equal rates return the input unchanged (as float32,
    possibly the same array).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"resample expects (channels, samples) audio, got shape {audio.shape}")
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return audio
    # soxr works on (frames, channels); transposing back gives a C-contiguous view.
    out = soxr.resample(audio.T, from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out.T)


def write_audio(
    path: str | os.PathLike,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Write ``(channels, samples)`` audio to ``path`` atomically; return the path.

    The format comes from the suffix (``.wav``, ``.flac``, ``.ogg``, ...). Without
    ``subtype``, WAV is 32-bit float and FLAC 24-bit PCM (integer subtypes clip
    to [-1, 1]); other formats use soundfile's default. Parent directories are
    created. The data goes to a hidden temporary file in the same directory,
    fsynced and then renamed over ``path``, so ``path`` is either the old file
    or the complete new one.

    Raises :class:`SepnetError` when the suffix or subtype cannot be written, or
    the directory cannot be created or written to.
    """
    path = Path(path)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[0] > _MAX_WRITE_CHANNELS:
        raise ValueError(
            f"write_audio expects (channels, samples) audio with at most "
            f"{_MAX_WRITE_CHANNELS} channels, got shape {audio.shape}"
        )
    fmt, subtype = _format_for(path, subtype)
    _make_parent_dir(path)
    if path.is_dir():
        raise SepnetError(f"cannot write audio to {_q(path)}: it is a directory; choose a file name")

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never clobber someone else's file; mode 0o666 lets the umask
        # decide the final permissions, as for any newly created file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with sf.SoundFile(
                fd,
                "w",
                samplerate=sample_rate,
                channels=audio.shape[0],
                subtype=subtype,
                format=fmt,
                closefd=False,
            ) as out:
                out.write(audio.T)
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = exc.strerror or exc
            raise SepnetError(f"cannot write {_q(path)} ({reason}); choose a writable output directory") from exc
        if isinstance(exc, sf.SoundFileError):
            raise SepnetError(
                f"cannot write {_q(path)} as {fmt}/{subtype} at {sample_rate} Hz "
                f"(soundfile: {_reason(exc)}); check the sample rate, subtype and free disk space"
            ) from exc
        raise
    return path


# -- helpers -------------------------------------------------------------------


def _q(path: Path) -> str:
    return f"'{path}'"


def _reason(exc: Exception) -> str:
    # LibsndfileError's str() repeats "Error opening '<path>':"; the bare reason reads better.
    reason = str(getattr(exc, "error_string", "") or exc).strip()
    return reason.removeprefix("Error :").strip()


def _empty_error(path: Path) -> SepnetError:
    return SepnetError(f"{_q(path)} is empty (0 samples); re-export it or remove the track")


def _unreadable_error(path: Path, exc: Exception) -> SepnetError:
    return SepnetError(
        f"{_q(path)} is not a readable audio file (soundfile: {_reason(exc)}); "
        "re-export it as WAV/FLAC or remove the track"
    )


def _open(path: Path) -> sf.SoundFile:
    """Open ``path`` for reading, turning every failure into a :class:`SepnetError`."""
    if not os.path.exists(path):
        raise SepnetError(f"{_q(path)} does not exist; check the path")
    if path.is_dir():
        raise SepnetError(f"{_q(path)} is a directory, not an audio file; name a file inside it")
    if not os.access(path, os.R_OK):
        raise SepnetError(f"{_q(path)} cannot be read (permission denied); fix its permissions")
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, OSError) as exc:
        raise _unreadable_error(path, exc) from exc
    if f.samplerate <= 0:
        f.close()
        raise SepnetError(
            f"{_q(path)} is not a readable audio file (header says sample rate "
            f"{f.samplerate}); re-export it as WAV/FLAC or remove the track"
        )
    return f


def _read_blocks(f: sf.SoundFile, count: int) -> np.ndarray:
    """Read up to ``count`` frames (-1: to the end) as ``(frames, channels)`` float32."""
    blocks = []
    remaining = count
    while remaining != 0:
        want = _READ_BLOCK_FRAMES if remaining < 0 else min(remaining, _READ_BLOCK_FRAMES)
        block = f.read(want, dtype="float32", always_2d=True)
        if len(block):
            blocks.append(block)
        if len(block) < want:  # end of the decodable data
            break
        if remaining > 0:
            remaining -= len(block)
    if not blocks:
        return np.zeros((0, f.channels), dtype=np.float32)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _format_for(path: Path, subtype: str | None) -> tuple[str, str]:
    """The soundfile (format, subtype) for writing ``path``."""
    ext = path.suffix.lower().lstrip(".")
    fmt = _FORMAT_ALIASES.get(ext, ext.upper())
    if not ext or fmt not in sf.available_formats():
        raise SepnetError(f"cannot write {_q(path)}: unknown audio suffix '{path.suffix}'; use .wav or .flac")
    subtype = (subtype or _DEFAULT_SUBTYPES.get(fmt) or sf.default_subtype(fmt)).upper()
    if not sf.check_format(fmt, subtype):
        choices = ", ".join(sf.available_subtypes(fmt))
        raise SepnetError(f"cannot write {_q(path)} as {subtype}: {fmt} files take one of {choices}")
    return fmt, subtype


def _make_parent_dir(path: Path) -> None:
    """Create ``path``'s directory, explaining why when that is impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise SepnetError(
                f"cannot write {_q(path)}: {_q(blocker)} is a file, not a directory; choose another output path"
            ) from exc
        raise SepnetError(
            f"cannot create the directory {_q(path.parent)} for {_q(path)} "
            f"({exc.strerror or exc}); choose a writable output path"
        ) from exc
