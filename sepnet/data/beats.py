"""Beats: where they come from, how a model's target is drawn from them, and how estimates are scored.

Beat times for the multi-task model's rhythm head come from the dataset when it
ships them (``beats.txt``, one time in seconds a line: the embedded set does);
otherwise from the drums stem: a spectral-flux onset strength, smoothed and
peak-picked (:func:`drum_onset_times`), so any multitrack set works.

In a batch, beats travel as sample positions within the chunk, padded with -1
to a fixed count (:func:`chunk_beat_positions`): the data layer knows nothing of
the STFT, and the module turns positions into a per-frame target with its own
front end's hop (:func:`beat_activation_target`), so the target can never drift
from the model's frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from sepnet.errors import SepnetError

MAX_BEATS_PER_SECOND = 10
"""Capacity of a chunk's beat list (600 BPM); onsets closer than 0.1 s are merged by peak picking."""

BEAT_TOLERANCE = 0.07
"""Seconds an estimated beat may sit from a reference beat and still count (the MIREX/mir_eval window)."""


def read_beat_file(path: Path) -> np.ndarray:
    """Beat times (beats,) float64 seconds from a text file, one a line; a bad line names the file."""
    try:
        times = np.loadtxt(path, dtype=np.float64, ndmin=1, usecols=0)
    except (ValueError, OSError) as exc:
        raise SepnetError(f"beat file '{path}' cannot be read ({exc}); it needs one time in seconds per line") from None
    return np.sort(times)


def onset_strength(mono: np.ndarray, sample_rate: int, hop_seconds: float = 0.01) -> tuple[np.ndarray, float]:
    """Half-wave-rectified log spectral flux of a mono signal.

    Args:
        mono: (samples,) float.
    Returns:
        (envelope (frames,) normalised to peak 1, frame rate in Hz).
    """
    hop = max(1, round(hop_seconds * sample_rate))
    n_fft = 1 << max(8, math.ceil(math.log2(4 * hop)))
    padded = np.pad(mono.astype(np.float32), (n_fft // 2, n_fft // 2))
    frames = 1 + (len(padded) - n_fft) // hop
    if frames < 2:
        return np.zeros(max(frames, 0), dtype=np.float32), sample_rate / hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(padded[index] * np.hanning(n_fft).astype(np.float32), axis=1))
    log_spec = np.log1p(100.0 * spec)
    flux = np.maximum(np.diff(log_spec, axis=0), 0.0).sum(axis=1)
    flux = np.concatenate([[0.0], flux])
    peak = flux.max()
    return (flux / peak if peak > 0 else flux).astype(np.float32), sample_rate / hop


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


def drum_onset_times(drums: np.ndarray, sample_rate: int, threshold: float = 0.1) -> np.ndarray:
    """Onset times (onsets,) seconds of a drums stem (channels, samples): the fallback for a dataset without beats.

    Onset strength (spectral flux) minus its 0.5 s moving average, smoothed with a
    short Hann window, then peak-picked at least 0.1 s apart.
    """
    envelope, rate = onset_strength(np.asarray(drums, dtype=np.float32).mean(axis=0), sample_rate)
    if envelope.size == 0:
        return np.zeros(0)
    average = np.convolve(envelope, np.ones(max(1, round(0.5 * rate))) / max(1, round(0.5 * rate)), mode="same")
    smooth = np.hanning(5)[1:-1]
    envelope = np.convolve(np.maximum(envelope - average, 0.0), smooth / smooth.sum(), mode="same")
    peak = envelope.max()
    if peak <= 0:
        return np.zeros(0)
    return pick_peaks(envelope / peak, rate, threshold) / rate


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
    """F-measure of estimated beat times against reference beat times (seconds), each matched at most once.

    A reference and an estimate match when they are within ``tolerance`` seconds;
    matching is greedy by distance (exact when beats are more than 2·tolerance
    apart, as peak picking guarantees). As mir_eval: 0.0 when either list is empty.
    """
    reference, estimate = np.sort(np.asarray(reference, float)), np.sort(np.asarray(estimate, float))
    if reference.size == 0 or estimate.size == 0:
        return 0.0
    distance = np.abs(reference[:, None] - estimate[None, :])
    pairs = np.argwhere(distance <= tolerance)
    pairs = pairs[np.argsort(distance[pairs[:, 0], pairs[:, 1]], kind="stable")]
    used_ref, used_est, hits = set(), set(), 0
    for r, e in pairs:
        if r not in used_ref and e not in used_est:
            used_ref.add(r)
            used_est.add(e)
            hits += 1
    if hits == 0:
        return 0.0
    precision, recall = hits / estimate.size, hits / reference.size
    return 2 * precision * recall / (precision + recall)


def positions_to_times(positions: torch.Tensor, sample_rate: int) -> list[np.ndarray]:
    """(batch, beats) padded sample positions -> per-example beat times in seconds."""
    values = positions.detach().cpu().numpy()
    return [row[row >= 0] / sample_rate for row in values]

