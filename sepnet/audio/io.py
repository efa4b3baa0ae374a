"""Audio file I/O: read any track as float32 stereo, write results atomically.

Reading has one entry per job (:func:`audio_info`, :func:`read_audio`,
:func:`iter_audio_blocks`) and two decoders behind it, chosen by what the file is,
never by the caller:

- libsndfile (soundfile), the fast path: WAV (16/24/32-bit int and float), FLAC,
  OGG/Vorbis/Opus, AIFF and, where the linked libsndfile supports it, MP3;
- FFmpeg's decoders through PyAV (``av``, whose wheels bundle FFmpeg's libraries)
  for every file libsndfile cannot open: M4A/AAC/ALAC, MP4/MOV/MKV/WebM soundtracks,
  Opus in WebM, WMA, ... and the streams of multi-stream files (MUSDB18's
  ``.stem.mp4``). Decoding streams packet by packet, so memory stays one block.

For FFmpeg-decoded files the header's length is the container's nominal duration;
the decoded length is the truth (lossy codecs pad the end to whole frames: AAC by
up to 1023 samples). Resampling uses soxr.

Channels: mono is read as two identical channels ("fake stereo"); more than two
are downmixed to stereo for the model (:func:`stereo_downmix`: ITU-R BS.775
coefficients for 5.1), with one info line per file saying so.

Arrays are ``(channels, samples)`` float32 everywhere in sepnet; soundfile's
``(frames, channels)`` layout stays inside this module.

Loading is loud: a missing, corrupt, empty, un-downmixable or NaN-holding file
raises :class:`~sepnet.errors.SepnetError` with one line naming the file and
the fix, never a soundfile, FFmpeg or numpy traceback. Writing goes to a temporary
file in the target directory that is renamed into place, so a crash never leaves a
truncated file behind under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf
import soxr
import torch

from sepnet.atomic import atomic_write, disk_full_error, free_space, write_error
from sepnet.errors import SepnetError

__all__ = [
    "AudioInfo",
    "AudioWriter",
    "audio_info",
    "iter_audio_blocks",
    "read_audio",
    "read_stream",
    "resample",
    "stereo_downmix",
    "write_audio",
]

log = logging.getLogger(__name__)

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
WRITE_FIX = "free disk space or choose a writable output folder"
# Below this many free bytes a libsndfile "System error." while writing is the disk being full.
_DISK_FULL_BELOW = 16 * 1024 * 1024
_BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
"""How a failed audio write's error line ends."""

LIBSNDFILE = "libsndfile"
FFMPEG = "ffmpeg"

# Stereo downmix by channel name (FFmpeg's names). ITU-R BS.775 (Table 2, 3/2 -> 2/0):
#   L' = L + 0.7071 C + 0.7071 Ls,  R' = R + 0.7071 C + 0.7071 Rs,  LFE dropped.
# Side and back surrounds (5.1(side), 7.1) are both "surround" here and get the
# same -3 dB; a layout holding any other channel (back centre, top, wide, ...) is
# refused rather than guessed.
_MINUS_3_DB = math.sqrt(0.5)
_TO_STEREO = {
    "FL": (1.0, 0.0),
    "FR": (0.0, 1.0),
    "FC": (_MINUS_3_DB, _MINUS_3_DB),
    "LFE": (0.0, 0.0),
    "SL": (_MINUS_3_DB, 0.0),
    "BL": (_MINUS_3_DB, 0.0),
    "SR": (0.0, _MINUS_3_DB),
    "BR": (0.0, _MINUS_3_DB),
}
# Files whose decoder names no channels (libsndfile never does; plain WAVs
# without a channel mask): only the counts whose order is unambiguous, the
# WAVE_FORMAT_EXTENSIBLE / SMPTE order of 5.1 and 7.1. Three to five channels
# (2.1 or 3.0? quad or 4.0?) are refused.
_UNNAMED_LAYOUTS = {
    6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says about it.

    Attributes:
        frames: samples per channel; for FFmpeg-decoded files the container's
            nominal duration times the rate (the decoded length may differ by a
            codec frame).
        decoder: ``"libsndfile"`` or ``"ffmpeg"``.
        layout: FFmpeg's channel names (``("FL", "FR", "FC", "LFE", "BL", "BR")``)
            when the decoder knows them, else None.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    decoder: str = LIBSNDFILE
    layout: tuple[str, ...] | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    @property
    def channels_read(self) -> int:
        """Channels :func:`iter_audio_blocks` yields: 1 for mono, else 2 (more are downmixed)."""
        return 1 if self.channels == 1 else 2


def stereo_downmix(info: AudioInfo) -> np.ndarray | None:
    """The ``(2, channels)`` matrix that takes ``info``'s file to stereo; None for mono or stereo.

    Coefficients from ITU-R BS.775 by channel name (see ``_TO_STEREO``), then the whole
    matrix is scaled by 1 / (largest row sum), 1 / (1 + 2 * 0.7071) = -7.7 dB for 5.1:
    a file inside [-1, 1] stays inside it (no clipping, no limiter), and the scale is
    one constant per file, so streaming blocks agree and stems still sum to the mixture.

    Raises :class:`SepnetError` for a layout it does not know (naming the file).
    """
    if info.channels <= 2:
        return None
    names = info.layout or _UNNAMED_LAYOUTS.get(info.channels)
    if names is None:
        raise SepnetError(
            f"{_q(info.path)} has {info.channels} channels; sepnet reads mono or stereo: downmix it to stereo first"
        )
    unknown = [n for n in names if n not in _TO_STEREO]
    if unknown:
        raise SepnetError(
            f"{_q(info.path)} has {info.channels} channels ({' '.join(names)}) and sepnet downmixes only front, "
            f"centre, LFE and surround channels (5.1, 7.1, ...), not {' '.join(unknown)}: downmix it to stereo first"
        )
    matrix = np.array([_TO_STEREO[n] for n in names], dtype=np.float64).T  # (2, channels)
    return (matrix / matrix.sum(axis=1).max()).astype(np.float32)


def _describe_downmix(info: AudioInfo, matrix: np.ndarray) -> str:
    names = " ".join(info.layout or _UNNAMED_LAYOUTS[info.channels])
    assumed = "" if info.layout else ", order assumed"
    return (
        f"{_q(info.path)} has {info.channels} channels ({names}{assumed}): downmixed to stereo "
        f"(ITU-R BS.775, LFE dropped, scaled x{matrix.max():.3f} so it cannot clip)"
    )


# -- the two decoders -------------------------------------------------------------


class _Sndfile:
    """A file libsndfile opened."""

    def __init__(self, path: Path, f: sf.SoundFile):
        self.path, self._file = path, f
        self.info = AudioInfo(path, f.samplerate, f.channels, f.frames)

    def blocks(self, block_frames: int, first: int = 0) -> Iterator[np.ndarray]:
        """``(channels, n <= block_frames)`` float32 from frame ``first`` to the end of what decodes."""
        f = self._file
        try:
            if first:
                f.seek(first)
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if len(block):
                    yield np.ascontiguousarray(block.T)
                if len(block) < block_frames:  # end of the decodable data
                    return
        except (sf.SoundFileError, OSError) as exc:
            raise _unreadable_error(self.path, exc) from exc

    def close(self) -> None:
        self._file.close()


class _PyAV:
    """Audio stream ``stream`` of a file FFmpeg opened (PyAV), decoded packet by packet."""

    def __init__(self, path: Path, stream: int):
        import av

        self.path, self.stream_index = path, stream
        self._av = av
        try:
            self._container = av.open(str(path), metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise _FFmpegOpenError(_ffmpeg_reason(exc)) from exc
        try:
            streams = self._container.streams.audio
            if not streams:
                raise SepnetError(
                    f"{_q(path)} has no audio stream (FFmpeg reads it as {self._container.format.name}); "
                    "pass an audio or video file with sound"
                )
            if stream >= len(streams):
                raise SepnetError(
                    f"{_q(path)} has {len(streams)} audio stream(s), so stream {stream} does not exist; "
                    "check the file (a MUSDB18 .stem.mp4 has 5)"
                )
            self._stream = streams[stream]
            ctx = self._stream.codec_context
            rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
            if rate <= 0 or channels <= 0:
                raise SepnetError(
                    f"{_q(path)} is not a readable audio file (FFmpeg finds {channels} channels at {rate} Hz); "
                    "re-export it as WAV/FLAC or remove the track"
                )
            names = tuple(ch.name for ch in ctx.layout.channels)
            layout = names if names and all(n and n != "NONE" for n in names) else None
            self.info = AudioInfo(path, rate, channels, self._nominal_frames(rate), FFMPEG, layout)
        except BaseException:
            self._container.close()
            raise

    def _nominal_frames(self, rate: int) -> int:
        """The container's duration in samples (0 when it states none)."""
        s = self._stream
        if s.duration is not None and s.time_base is not None:
            seconds = float(s.duration * s.time_base)
        elif self._container.duration is not None:
            seconds = self._container.duration / self._av.time_base
        else:
            return 0
        return max(0, round(seconds * rate))

    def blocks(self, block_frames: int, first: int = 0) -> Iterator[np.ndarray]:
        """``(channels, n <= block_frames)`` float32 from sample ``first`` (decoded and dropped: exact) on."""
        rate, channels = self.info.sample_rate, self.info.channels
        pending: list[np.ndarray] = []
        held = 0
        to_skip = first
        for frame in self._frames():
            if frame.sample_rate != rate or len(frame.layout.channels) != channels:
                raise SepnetError(
                    f"{_q(self.path)} changes from {channels} channels at {rate} Hz to "
                    f"{len(frame.layout.channels)} at {frame.sample_rate} Hz mid-stream; re-export it as WAV/FLAC"
                )
            audio = _frame_samples(frame, channels)
            if to_skip:
                cut = min(to_skip, audio.shape[1])
                audio, to_skip = audio[:, cut:], to_skip - cut
            if not audio.shape[1]:
                continue
            pending.append(audio)
            held += audio.shape[1]
            while held >= block_frames:
                joined = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
                yield np.ascontiguousarray(joined[:, :block_frames])
                rest = joined[:, block_frames:]
                pending, held = ([rest] if rest.shape[1] else []), rest.shape[1]
        if held:
            yield np.ascontiguousarray(np.concatenate(pending, axis=1))

    def _frames(self):
        av = self._av
        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise SepnetError(
                f"{_q(self.path)} cannot be decoded (ffmpeg: {_ffmpeg_reason(exc)}); "
                "re-export it as WAV/FLAC or remove the track"
            ) from exc

    def close(self) -> None:
        self._container.close()


class _FFmpegOpenError(Exception):
    """FFmpeg could not open a file (its reason is the message)."""


_SAMPLE_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63}


def _frame_samples(frame, channels: int) -> np.ndarray:
    """An ``av.AudioFrame`` as ``(channels, samples)`` float32 in [-1, 1]."""
    fmt = frame.format
    data = frame.to_ndarray()
    if not fmt.is_planar:  # packed: (1, samples * channels), interleaved
        data = data.reshape(-1, channels).T
    name = fmt.name.removesuffix("p")
    if name in _SAMPLE_SCALE:
        offset = 128.0 if name == "u8" else 0.0
        return ((data.astype(np.float64) - offset) / _SAMPLE_SCALE[name]).astype(np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


def why_missing(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be opened although a name was given, and the fix: ``does not exist; check the path``,
    or for a symbolic link that loops or points nowhere, that (a link loop does exist, as a link)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (it points, through links, back to itself); point it at a real file"
        if exc.errno == errno.ENAMETOOLONG:
            return "is a path too long for the system; use a shorter one"
        if os.path.islink(path):
            return f"is a symbolic link to '{os.readlink(path)}', which does not exist; fix or remove the link"
        if exc.errno == errno.EACCES:
            return "cannot be reached (permission denied on a folder above it); fix the permissions"
    return "does not exist; check the path"


def _sndfile_suffix(path: Path) -> bool:
    """Whether ``path``'s suffix names a format libsndfile handles (its errors then explain best)."""
    ext = path.suffix.lower().lstrip(".")
    return bool(ext) and _FORMAT_ALIASES.get(ext, ext.upper()) in sf.available_formats()


def _open(path: Path, stream: int | None = None):
    """Open ``path`` with libsndfile, or else FFmpeg; every failure is a :class:`SepnetError`.

    ``stream`` (an audio stream index) always goes to FFmpeg: libsndfile has no streams.
    """
    if not os.path.exists(path):
        raise SepnetError(f"{_q(path)} {why_missing(path)}")
    if path.is_dir():
        raise SepnetError(f"{_q(path)} is a directory, not an audio file; name a file inside it")
    if not os.access(path, os.R_OK):
        raise SepnetError(f"{_q(path)} cannot be read (permission denied); fix its permissions")
    sndfile_error: Exception | None = None
    if stream is None:
        try:
            f = sf.SoundFile(path)
        except (sf.SoundFileError, OSError) as exc:
            sndfile_error = exc
        else:
            if f.samplerate <= 0:
                f.close()
                raise SepnetError(
                    f"{_q(path)} is not a readable audio file (header says sample rate "
                    f"{f.samplerate}); re-export it as WAV/FLAC or remove the track"
                )
            return _Sndfile(path, f)
    try:
        return _PyAV(path, stream or 0)
    except _FFmpegOpenError as exc:
        if sndfile_error is not None and _sndfile_suffix(path):
            raise _unreadable_error(path, sndfile_error) from sndfile_error
        raise SepnetError(
            f"{_q(path)} is not a readable audio file (ffmpeg: {exc}); re-export it as WAV/FLAC or remove the track"
        ) from exc


# -- reading ------------------------------------------------------------------------


def audio_info(path: str | os.PathLike, stream: int | None = None) -> AudioInfo:
    """Read only the header of ``path`` (or of its audio stream ``stream``).

    Raises :class:`SepnetError` if the file is missing, unreadable, not audio
    or has no samples. The channel count is reported as is (not checked).
    """
    path = Path(path)
    decoder = _open(path, stream)
    try:
        info = decoder.info
        if info.frames == 0 and info.decoder == FFMPEG:  # no stated duration: count what decodes
            frames = sum(b.shape[1] for b in decoder.blocks(_READ_BLOCK_FRAMES))
            info = AudioInfo(path, info.sample_rate, info.channels, frames, info.decoder, info.layout)
    finally:
        decoder.close()
    if info.frames == 0:
        raise _empty_error(path)
    return info


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
    stream: int | None = None,
) -> np.ndarray:
    """Read ``path`` as float32 stereo of shape ``(2, samples)``.

    Mono is returned as two identical channels ("fake stereo"); more than two are
    downmixed (:func:`stereo_downmix`; an unknown layout raises). NaN/Inf samples or
    an empty file raise :class:`SepnetError`.

    Args:
        path: the audio file.
        sample_rate: resample to this rate with soxr ('HQ'); ``None`` keeps the
            file's own rate.
        start: where to begin, in seconds (of the file's own timeline).
        duration: how many seconds to read from ``start``; ``None`` reads to
            the end. A span running past the end is cut at the end.
        stream: the audio stream of a multi-stream file (MUSDB18's ``.stem.mp4``);
            ``None`` reads a plain file (the first audio stream of a container).

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

    decoder = _open(path, stream)
    try:
        info = decoder.info
        file_rate, frames = info.sample_rate, info.frames
        matrix = stereo_downmix(info)
        exact = info.decoder == LIBSNDFILE  # FFmpeg's header length is nominal: decode, then judge
        if exact and frames == 0:
            raise _empty_error(path)
        first = round(start * file_rate)
        if exact and first >= frames:
            raise _past_end_error(path, start, frames / file_rate)
        count = None if duration is None else max(1, round(duration * file_rate))
        blocks, got = [], 0
        for block in decoder.blocks(_READ_BLOCK_FRAMES if count is None else min(count, _READ_BLOCK_FRAMES), first):
            if count is not None:
                block = block[:, : count - got]
            blocks.append(block)
            got += block.shape[1]
            if count is not None and got >= count:
                break
    finally:
        decoder.close()

    # A header can promise more frames than the file holds (truncated or
    # corrupt); what decodes is used, but nothing at all is an error.
    if got == 0:
        if first == 0:
            raise _empty_error(path)
        if not exact:
            raise _past_end_error(path, start, None)
        raise SepnetError(
            f"{_q(path)} has no decodable samples after {start}s (truncated or corrupt?); "
            "re-export it as WAV/FLAC or remove the track"
        )
    audio = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    if not np.isfinite(audio).all():
        raise SepnetError(f"{_q(path)} contains NaN/Inf samples; re-export it (e.g. as 24-bit PCM) or remove the track")

    if matrix is not None:
        log.info(_describe_downmix(info, matrix))
        audio = matrix @ audio
    elif info.channels == 1:
        audio = np.repeat(audio, 2, axis=0)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if sample_rate is not None:
        audio = resample(audio, file_rate, sample_rate)
    return audio


def read_stream(path: str | os.PathLike, stream: int, sample_rate: int | None = None) -> np.ndarray:
    """Read audio stream ``stream`` of a multi-stream file (MUSDB18's ``.stem.mp4``) as ``(2, samples)`` float32.

    :func:`read_audio` with ``stream``: decoded by FFmpeg through PyAV, same checks.
    """
    return read_audio(path, sample_rate, stream=stream)


def iter_audio_blocks(
    path: str | os.PathLike, block_frames: int = _READ_BLOCK_FRAMES, stream: int | None = None
) -> Iterator[np.ndarray]:
    """Read ``path`` block by block at its own rate, for streaming.

    Yields ``(channels, n)`` float32 blocks (``n <= block_frames``), ``channels``
    being :attr:`AudioInfo.channels_read`: mono stays mono, more than two channels
    are downmixed to stereo (:func:`stereo_downmix`, one info line). Memory stays one
    block whatever the file's length. The same checks as :func:`read_audio` (missing,
    corrupt, empty, unknown layout, NaN/Inf) raise :class:`SepnetError`; call
    :func:`audio_info` first for the rate and channels.
    """
    path = Path(path)
    decoder = _open(path, stream)
    try:
        matrix = stereo_downmix(decoder.info)
        if matrix is not None:
            log.info(_describe_downmix(decoder.info, matrix))
        got = 0
        for block in decoder.blocks(block_frames):
            if not np.isfinite(block).all():
                raise SepnetError(
                    f"{_q(path)} contains NaN/Inf samples; re-export it (e.g. as 24-bit PCM) or remove the track"
                )
            got += block.shape[1]
            yield block if matrix is None else np.ascontiguousarray(matrix @ block)
    finally:
        decoder.close()
    if got == 0:
        raise _empty_error(path)


class AudioWriter:
    """Write ``(channels, n)`` blocks to ``path`` as they come, atomically.

    ``with AudioWriter(path, rate, channels) as w: w.write(block)``: the data goes to a
    hidden temporary file beside ``path`` that is fsynced and renamed over it when
    the block exits cleanly, and deleted if it raises; formats and subtypes as
    :func:`write_audio`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        channels: int,
        *,
        subtype: str | None = None,
        expected_frames: int | None = None,
    ):
        self.path = Path(path)
        self.expected_frames = expected_frames  # for the full-disk line's "about ... needed"
        self.sample_rate = sample_rate
        self.channels = channels
        self.fmt, self.subtype = _format_for(self.path, subtype)
        self.frames = 0
        self._target: contextlib.AbstractContextManager | None = None
        self._file: sf.SoundFile | None = None

    def __enter__(self) -> Self:
        _make_parent_dir(self.path)
        if self.path.is_dir():
            raise SepnetError(f"cannot write audio to {_q(self.path)}: it is a directory; choose a file name")
        needed = _bytes_needed(self.subtype, self.channels, self.expected_frames)
        self._target = atomic_write(self.path, fix=WRITE_FIX, needed=needed)
        out = self._target.__enter__()
        try:
            self._file = sf.SoundFile(
                out.fileno(), "w", samplerate=self.sample_rate, channels=self.channels,
                subtype=self.subtype, format=self.fmt, closefd=False,
            )
        except BaseException as exc:
            self._abandon(exc)
            raise self._converted(exc) from exc
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
            raise self._converted(exc) from exc
        self.frames += block.shape[1]

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abandon(exc)
            return
        try:
            self._file.close()  # libsndfile writes the header now
        except BaseException as err:
            self._abandon(err)
            raise self._converted(err) from err
        target, self._target = self._target, None
        target.__exit__(None, None, None)  # fsync, rename, fsync the folder

    def _abandon(self, exc: BaseException) -> None:
        """Close the sound file and let the atomic target delete its temporary file (the target stays as it was)."""
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001, S110 - already failing; the temp file goes anyway
                pass
        target, self._target = self._target, None
        if target is not None:
            try:
                target.__exit__(type(exc), exc, exc.__traceback__)
            except BaseException:  # noqa: BLE001, S110 - it re-raises what it was given; the caller raises it
                pass

    def _converted(self, exc: BaseException) -> BaseException:
        """The one-line error for a failed write (``exc`` itself when it is not the disk's or libsndfile's)."""
        needed = _bytes_needed(self.subtype, self.channels, self.expected_frames)
        if isinstance(exc, OSError):
            return write_error(_q(self.path), exc, WRITE_FIX, self.path.parent, needed)
        if isinstance(exc, sf.SoundFileError):
            return _write_failure(self.path, self.fmt, self.subtype, self.sample_rate, exc, needed)
        return exc


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

    needed = _bytes_needed(subtype, audio.shape[0], audio.shape[1])
    try:
        with atomic_write(path, fix=WRITE_FIX, needed=needed) as f, sf.SoundFile(
            f.fileno(), "w", samplerate=sample_rate, channels=audio.shape[0],
            subtype=subtype, format=fmt, closefd=False,
        ) as out:
            out.write(audio.T)
    except sf.SoundFileError as exc:
        raise _write_failure(path, fmt, subtype, sample_rate, exc, needed) from exc
    return path


# -- helpers -------------------------------------------------------------------


def _q(path: Path) -> str:
    return f"'{path}'"


def _reason(exc: Exception) -> str:
    # LibsndfileError's str() repeats "Error opening '<path>':"; the bare reason reads better.
    reason = str(getattr(exc, "error_string", "") or exc).strip()
    return reason.removeprefix("Error :").strip()


def _format_error(path: Path, fmt: str, subtype: str, sample_rate: int, exc: Exception) -> SepnetError:
    return SepnetError(
        f"cannot write {_q(path)} as {fmt}/{subtype} at {sample_rate} Hz "
        f"(soundfile: {_reason(exc)}); check the sample rate, subtype and free disk space"
    )


def _bytes_needed(subtype: str, channels: int, frames: int | None) -> int | None:
    """About how many bytes ``frames`` frames take in ``subtype`` (None when the length is not known)."""
    return None if frames is None else int(frames) * channels * _BYTES_PER_SAMPLE.get(subtype, 4)


def _write_failure(
    path: Path, fmt: str, subtype: str, sample_rate: int, exc: Exception, needed: int | None
) -> SepnetError:
    """The one line for libsndfile refusing a write: a full disk named as such (libsndfile says only
    "System error." when the disk refuses), anything else as :func:`_format_error`."""
    free = free_space(path.parent)
    if "system error" in _reason(exc).lower() and free is not None and free < max(_DISK_FULL_BELOW, needed or 0):
        return disk_full_error(_q(path), path.parent, needed, WRITE_FIX)
    return _format_error(path, fmt, subtype, sample_rate, exc)


def _empty_error(path: Path) -> SepnetError:
    return SepnetError(f"{_q(path)} is empty (0 samples); re-export it or remove the track")


def _unreadable_error(path: Path, exc: Exception) -> SepnetError:
    return SepnetError(
        f"{_q(path)} is not a readable audio file (soundfile: {_reason(exc)}); "
        "re-export it as WAV/FLAC or remove the track"
    )


def _past_end_error(path: Path, start: float, seconds: float | None) -> SepnetError:
    length = "shorter than that" if seconds is None else f"only {seconds:.3f}s long"
    return SepnetError(f"cannot read {_q(path)} from {start}s: it is {length}; use a start inside the file")


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's own reason, without PyAV's errno and repeated path."""
    reason = str(getattr(exc, "strerror", None) or exc).strip()
    return reason.splitlines()[-1] if reason else type(exc).__name__


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
