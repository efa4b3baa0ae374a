"""Beats: where they come from, how a model's target is drawn from them, and how estimates are scored.

Beat times for the multi-task model's rhythm head come from the dataset when it
ships them (``beats.txt``, one time in seconds a line: the embedded set writes its
generator's grid there); otherwise from librosa's beat tracker
(:func:`track_beat_times`): ``librosa.beat.beat_track`` on the drums stem, or on
the mixture when the drums are silent (or not read). Tracking runs once per track;
the decoded-audio cache keeps the result (:meth:`AudioCache.beats`). Each track's
:data:`BEAT_SOURCES` entry says which of these it got, and ``check_data`` shows it.

In a batch, beats travel as sample positions within the chunk, padded with -1
to a fixed count (:func:`chunk_beat_positions`): the data layer knows nothing of
the STFT, and the module turns positions into a per-frame target with its own
front end's hop (:func:`beat_activation_target`), so the target can never drift
from the model's frames.

Estimates are scored with ``mir_eval.beat.f_measure`` (:func:`beat_f_measure`,
the MIREX definition: optimal one-to-one matching within ±70 ms).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sepnet.errors import SepnetError

if TYPE_CHECKING:
    from sepnet.audio.cache import AudioCache
    from sepnet.data.sources import TrackFiles

MAX_BEATS_PER_SECOND = 10
"""Capacity of a chunk's beat list (600 BPM); peak picking keeps estimates at least 0.1 s apart."""

BEAT_SOURCES = ("beats.txt", "librosa:drums", "librosa:mixture")
"""Where a track's beats came from: the dataset's file, the tracker on the drums, the tracker on the mixture."""

TRACKER_HOP = 256
"""Onset-envelope hop of the tracker in samples (11.6 ms at 22050 Hz; librosa's 512 doubles the timing error)."""

TRACKER_VERSION = 1
"""Part of every cached beat entry's key: bump it when the tracking below changes, so old entries are recomputed."""

SILENT_DRUMS_DB = -60.0
"""A drums stem whose RMS over the track is below this (dBFS) has no rhythm to track: the mixture is used."""

BEAT_TOLERANCE = 0.07
"""Seconds an estimated beat may sit from a reference beat and still count (the MIREX/mir_eval window)."""


def read_beat_file(path: Path) -> np.ndarray:
    """Beat times (beats,) float64 seconds from a text file, one a line; a bad line names the file."""
    try:
        times = np.loadtxt(path, dtype=np.float64, ndmin=1, usecols=0)
    except (ValueError, OSError) as exc:
        raise SepnetError(f"beat file '{path}' cannot be read ({exc}); it needs one time in seconds per line") from None
    return np.sort(times)


def pick_peaks(activation: np.ndarray, rate: float, threshold: float, min_distance: float = 0.1) -> np.ndarray:
    """Frames (peaks,) where ``activation`` (frames,) is a local maximum within ±min_distance s and >= threshold."""
    if activation.size == 0:
        return np.zeros(0, dtype=np.int64)
    radius = max(1, round(min_distance * rate))
    padded = np.pad(activation, radius, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    is_peak = (activation >= windows.max(axis=1)) & (activation >= threshold)
    peaks = np.flatnonzero(is_peak)
    # Plateaus: keep the first frame of equal neighbours within the window.
    if peaks.size > 1:
        peaks = peaks[np.concatenate([[True], np.diff(peaks) > radius])]
    return peaks


def _onset_envelope(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """librosa's spectral-flux onset strength (frames,) at :data:`TRACKER_HOP`, averaged over mel bands.

    The mean over bands (not ``beat_track``'s median) keeps a kick or snare that
    only moves a few bands: on the embedded set it finds 86% of the beats on the
    drums against 72% with the median.
    """
    import librosa  # slow to import (numba): only where beats are tracked

    return librosa.onset.onset_strength(y=mono, sr=sample_rate, hop_length=TRACKER_HOP, aggregate=np.mean)


def tracked_beats(drums: np.ndarray | None, mixture: np.ndarray, sample_rate: int) -> tuple[np.ndarray, str]:
    """Beat times by ``librosa.beat.beat_track``; the fallback for a track without ``beats.txt``.

    Args:
        drums: (channels, samples) drums stem, or None when the data reads no drums.
        mixture: (channels, samples) the mixture the model hears (the sum of the stems read).
    Returns:
        (beat times (beats,) float64 seconds, ``"librosa:drums"`` or ``"librosa:mixture"``).

    The beats are placed on the drums' onsets; the tempo comes from the mixture. On
    drums alone the tracker often settles on half the tempo (kick and backbeat snare
    repeat every two beats); the bass and chords of the mixture pin the beat level
    (on the embedded set: 92% of the generator's beats found against 86%). Silent or
    missing drums: beats and tempo both from the mixture. ``trim=False``: the
    tracker's default drops the first and last beats when their onsets are weak,
    which on short excerpts loses a tenth of the beats; a beat target wants them.
    """
    import librosa

    mixture_mono = np.asarray(mixture, dtype=np.float32).mean(axis=0)
    mixture_envelope = _onset_envelope(mixture_mono, sample_rate)
    envelope, source = mixture_envelope, "librosa:mixture"
    if drums is not None:
        drums_mono = np.asarray(drums, dtype=np.float32).mean(axis=0)
        rms = float(np.sqrt(np.mean(drums_mono.astype(np.float64) ** 2))) if drums_mono.size else 0.0
        if rms > 0 and 20 * math.log10(rms) > SILENT_DRUMS_DB:
            envelope, source = _onset_envelope(drums_mono, sample_rate), "librosa:drums"
    if not envelope.any():
        return np.zeros(0), source
    tempo = librosa.feature.tempo(onset_envelope=mixture_envelope, sr=sample_rate, hop_length=TRACKER_HOP)[0]
    _, beats = librosa.beat.beat_track(
        onset_envelope=envelope, sr=sample_rate, hop_length=TRACKER_HOP, bpm=float(tempo), trim=False, units="time"
    )
    return np.asarray(beats, dtype=np.float64), source


def track_beat_times(
    files: TrackFiles, stems: Sequence[str], audio: Sequence[np.ndarray], cache: AudioCache
) -> tuple[np.ndarray, str]:
    """A track's beats (beats,) seconds and their source (one of :data:`BEAT_SOURCES`).

    The dataset's ``beats.txt`` wins; otherwise :func:`tracked_beats` on ``audio``
    (one (channels, samples) array per stem of ``stems``, as training reads them),
    computed once and kept in ``cache`` under the stems' files.
    """
    if files.beats is not None:
        times = read_beat_file(files.beats)
        seconds = audio[0].shape[-1] / cache.sample_rate
        if times.size and (not np.isfinite(times).all() or times[0] < 0 or times[-1] > seconds + 1.0):
            raise SepnetError(
                f"beat file '{files.beats}' has times outside the track (0 to {seconds:.2f} s): "
                f"{times[0]:g} .. {times[-1]:g}; it needs one time in seconds per line"
            )
        return times, "beats.txt"
    drums = audio[list(stems).index("drums")] if "drums" in stems else None

    def compute() -> tuple[np.ndarray, str]:
        mixture = np.zeros(audio[0].shape, dtype=np.float32)
        for stem in audio:  # one stem in memory at a time: the stems are memory-mapped
            mixture += stem
        return tracked_beats(drums, mixture, cache.sample_rate)

    sources = [(files.stems[stem], files.streams.get(stem)) for stem in stems]
    return cache.beats(sources, f"librosa-v{TRACKER_VERSION}|hop{TRACKER_HOP}", compute)


def beat_capacity(samples: int, sample_rate: int) -> int:
    """Length of a chunk's padded beat list."""
    return math.ceil(samples / sample_rate * MAX_BEATS_PER_SECOND) + 1


def chunk_beat_positions(beat_times: np.ndarray, offset: int, samples: int, sample_rate: int) -> torch.Tensor:
    """The beats inside ``[offset, offset + samples)`` as sample positions from the chunk's start.

    Returns:
        (beat_capacity(samples, sample_rate),) int64, padded with -1.
    """
    positions = np.round(np.asarray(beat_times) * sample_rate).astype(np.int64) - offset
    positions = positions[(positions >= 0) & (positions < samples)]
    out = torch.full((beat_capacity(samples, sample_rate),), -1, dtype=torch.int64)
    positions = positions[: out.numel()]
    out[: len(positions)] = torch.from_numpy(positions)
    return out


def beat_activation_target(positions: torch.Tensor, hop_length: int, frames: int, spread: float = 0.5) -> torch.Tensor:
    """Per-frame beat target from padded beat positions.

    Args:
        positions: (batch, beats) int64 sample positions, -1 for padding.
        hop_length: the front end's hop; frame ``f`` is centred on sample ``f * hop_length``.
        frames: frames per example (``samples // hop_length + 1``).
        spread: target of the frames either side of a beat (a widened target tolerates
            a frame of jitter); 0 gives a one-hot target.
    Returns:
        (batch, frames) float in [0, 1]: 1 on a beat's frame, ``spread`` beside it.
    """
    # Columns: a spare frame, the frames, a spare frame, two that padding writes to; all but the
    # frames are cut off. Scattering everything (no boolean indexing) keeps the step free of
    # host syncs on a GPU.
    batch = positions.shape[0]
    target = torch.zeros(batch, frames + 4, device=positions.device)
    frame = torch.div(positions + hop_length // 2, hop_length, rounding_mode="floor").clamp(0, frames - 1) + 1
    frame = torch.where(positions >= 0, frame, frames + 2)
    if spread > 0:
        for shift in (-1, 1):
            target.scatter_(1, frame + shift, spread)
    target.scatter_(1, frame, 1.0)
    return target[:, 1 : frames + 1]


def activation_beat_times(activation: torch.Tensor, frame_rate: float, threshold: float = 0.5) -> list[np.ndarray]:
    """Peak-picked beat times (seconds) per example from (batch, frames) activations in [0, 1]."""
    values = activation.detach().float().cpu().numpy()
    return [pick_peaks(row, frame_rate, threshold) / frame_rate for row in values]


def beat_f_measure(reference: np.ndarray, estimate: np.ndarray, tolerance: float = BEAT_TOLERANCE) -> float:
    """``mir_eval.beat.f_measure`` of estimated against reference beat times (seconds): the MIREX F-measure.

    Each reference matches at most one estimate within ``tolerance`` seconds (an
    optimal matching); 0.0 when either list is empty. No ``mir_eval.beat.trim_beats``:
    MIREX drops the first 5 s of whole songs while tempo trackers settle, but a
    validation chunk lasts 2-5 s and an embedded track 10 s, so trimming would score
    nothing or half; and the rhythm head has no settling time to forgive.
    """
    import mir_eval

    reference = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    estimate = np.sort(np.asarray(estimate, dtype=np.float64).ravel())
    with warnings.catch_warnings():  # an empty list scores 0; mir_eval also warns about it
        warnings.filterwarnings("ignore", message=".* beats are empty", category=UserWarning)
        return float(mir_eval.beat.f_measure(reference, estimate, f_measure_threshold=tolerance))


def positions_to_times(positions: torch.Tensor, sample_rate: int) -> list[np.ndarray]:
    """(batch, beats) padded sample positions -> per-example beat times in seconds."""
    values = positions.detach().cpu().numpy()
    return [row[row >= 0] / sample_rate for row in values]

