"""How ``separate`` writes a track's stems: the file format, its sample type, and clipping.

``separate.format`` picks the container (``wav``, ``flac`` or ``mp3``: libsndfile's own
encoders, LAME for MP3), ``separate.bits`` the sample type (WAV: ``16``, ``24``, ``32`` or
``float``; FLAC: ``16`` or ``24``; MP3 has none). Integer samples and MP3 cannot hold more
than full scale, so estimates above 1.0 are handled by ``separate.clip_mode``, as in Demucs:

- ``rescale`` (the default): the track's stems are written at one lower level, so the loudest
  sample of any stem is at full scale and the stems still add up to the (scaled) mixture. The
  stems first go to hidden float WAV files beside the final ones and are converted at the end.
- ``clamp``: samples beyond [-1, 1] are cut there; the level is kept.

Either way, a track that clipped gets one line saying by how much and what was done. Float
WAV (the default output) holds any level and is written as it comes.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from sepnet.audio.io import AudioWriter, iter_audio_blocks
from sepnet.errors import SepnetError

FORMATS = ("wav", "flac", "mp3")
CLIP_MODES = ("rescale", "clamp")
_SUBTYPES = {
    ("wav", "16"): "PCM_16", ("wav", "24"): "PCM_24", ("wav", "32"): "PCM_32", ("wav", "float"): "FLOAT",
    ("flac", "16"): "PCM_16", ("flac", "24"): "PCM_24", ("mp3", None): "MPEG_LAYER_III",
}  # fmt: skip
_DEFAULT_BITS = {"wav": "float", "flac": "24", "mp3": None}


@dataclass(frozen=True)
class StemFormat:
    """What a stem file is: ``suffix`` (``.wav``), soundfile ``subtype``, and how values above 1.0 are handled."""

    suffix: str
    subtype: str
    clip_mode: str

    @property
    def clips(self) -> bool:
        """Whether the format cannot hold values beyond [-1, 1] (integers, MP3)."""
        return self.subtype != "FLOAT"


def stem_format(knobs) -> StemFormat:
    """The :class:`StemFormat` of ``separate.format``, ``separate.bits`` and ``separate.clip_mode``; one line for a bad one."""
    fmt = str(knobs.get("format", "wav")).lower()
    if fmt not in FORMATS:
        raise SepnetError(f"separate.format={fmt!r} is not a format sepnet writes; use wav, flac or mp3")
    bits = knobs.get("bits")
    bits = _DEFAULT_BITS[fmt] if bits is None else str(bits).lower()
    if fmt == "mp3" and bits is not None:
        raise SepnetError(f"separate.bits={bits} does not apply to MP3 (it has no sample size); drop separate.bits")
    if (fmt, bits) not in _SUBTYPES:
        choices = ", ".join(b for f, b in _SUBTYPES if f == fmt)
        raise SepnetError(f"separate.bits={bits} is not one of {fmt.upper()}'s: {choices}")
    clip_mode = str(knobs.get("clip_mode", "rescale"))
    if clip_mode not in CLIP_MODES:
        raise SepnetError(
            f"separate.clip_mode={clip_mode!r} is not an option; use rescale (lower the track's stems to full scale) "
            "or clamp (cut samples at full scale)"
        )
    return StemFormat(f".{fmt}", _SUBTYPES[fmt, bits], clip_mode)


class StemFiles:
    """Write one track's stems, ``(stems, channels, n)`` blocks at a time, each to its path, atomically.

    ``with StemFiles(paths, rate, channels, fmt) as files: files.write(block)``; afterwards
    ``files.clipping`` is None or the line that says what clipped and what was done.
    """

    def __init__(self, paths: list[Path], rate: int, channels: int, fmt: StemFormat, expected_frames: int | None = None):
        self.paths, self.rate, self.channels, self.fmt = paths, rate, channels, fmt
        self.expected_frames = expected_frames
        self.rescale = fmt.clips and fmt.clip_mode == "rescale"
        self.peaks = np.zeros(len(paths))
        self.clamped = np.zeros(len(paths), dtype=np.int64)
        self.frames = 0
        self.clipping: str | None = None
        self._temps = [p.with_name(f".{p.stem}.sepnet-float.wav") for p in paths] if self.rescale else []
        targets = self._temps or paths
        subtype = "FLOAT" if self.rescale else fmt.subtype
        self._writers = [AudioWriter(p, rate, channels, subtype=subtype, expected_frames=expected_frames) for p in targets]
        self._entered: list[AudioWriter] = []

    def __enter__(self) -> Self:
        try:
            for w in self._writers:
                self._entered.append(w.__enter__())
        except BaseException as exc:
            self._abandon(exc)
            raise
        return self

    def write(self, block: np.ndarray) -> None:
        """Append ``(stems, channels, n)`` samples."""
        if block.shape[-1] == 0:
            return
        peaks = np.abs(block).reshape(len(self.paths), -1).max(axis=1)
        self.peaks = np.maximum(self.peaks, peaks)
        if self.fmt.clips and not self.rescale:
            over = np.abs(block) > 1.0
            if over.any():
                self.clamped += over.reshape(len(self.paths), -1).sum(axis=1)
                block = np.clip(block, -1.0, 1.0)
        for w, stem in zip(self._writers, block):
            w.write(stem)
        self.frames += block.shape[-1]

    def _abandon(self, exc: BaseException) -> None:
        for w in reversed(self._entered):
            w.__exit__(type(exc), exc, exc.__traceback__)
        self._entered.clear()
        for temp in self._temps:
            with contextlib.suppress(OSError):
                temp.unlink()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abandon(exc)
            return
        try:
            for w in reversed(self._entered):
                w.__exit__(None, None, None)
            self._entered.clear()
            if self.rescale:
                self._convert()
        except BaseException as failure:
            self._abandon(failure)
            raise
        self.clipping = self._report()

    def _convert(self) -> None:
        """Rescale: the float files, scaled so the loudest stem peaks at full scale, into the final format."""
        peak = float(self.peaks.max(initial=0.0))
        self.scale = 1.0 / peak if peak > 1.0 else 1.0
        for temp, path in zip(self._temps, self.paths):
            with AudioWriter(path, self.rate, self.channels, subtype=self.fmt.subtype, expected_frames=self.expected_frames) as w:
                for block in iter_audio_blocks(temp):
                    w.write(np.clip(block * self.scale, -1.0, 1.0))  # the clip only catches float rounding
            temp.unlink()

    def _report(self) -> str | None:
        if not self.fmt.clips or self.peaks.max(initial=0.0) <= 1.0:
            return None
        loud = [p.stem for p, peak in zip(self.paths, self.peaks) if peak > 1.0]
        peak = float(self.peaks.max())
        level = f"peaked at {peak:.3g} ({20 * math.log10(peak):+.1f} dB over full scale) in {', '.join(loud)}"
        if self.rescale:
            return (
                f"{level}; its stems were written {20 * math.log10(self.scale):.1f} dB lower (x{self.scale:.3f}) to fit "
                f"{self.fmt.suffix[1:].upper()} (separate.clip_mode=rescale; clamp keeps the level and cuts the peaks, "
                f"separate.bits=float in WAV keeps both)"
            )
        total = self.frames * self.channels
        cut = ", ".join(
            f"{p.stem} {n} samples ({100 * n / max(total, 1):.2g}%)" for p, n in zip(self.paths, self.clamped) if n
        )
        return (
            f"{level}; samples beyond full scale were clamped: {cut} (separate.clip_mode=clamp; rescale lowers "
            f"the stems instead, separate.bits=float in WAV keeps them)"
        )
