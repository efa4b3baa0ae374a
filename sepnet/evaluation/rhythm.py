"""The rhythm head on whole tracks: ``evaluate``'s beat F-measure for multi-task models.

The head's per-frame beat logits are computed chunk by chunk, with the chunk length,
overlap and batch size of the separation (``eval.chunk_seconds`` ...), and cross-faded
into one activation per STFT frame of the track::

    mixture (channels, samples)
      -> chunks starting on frame boundaries (a multiple of the front end's hop)
      -> sigmoid(beat logits) (chunk frames,) per chunk, trapezoid-weighted, summed, weights divided out
      -> activation (frames,) for the whole track, frame f at sample f * hop
      -> peaks >= the training run's module.beat_threshold -> beat times
      -> mir_eval.beat.f_measure against the track's beats (beats.txt or librosa's tracker)

The same peak picking and F-measure as ``val/beat_f1`` (:mod:`sepnet.data.beats`), so
the two numbers differ only in what they cover (chunks of the valid split vs whole
tracks of the evaluated split).
"""

from __future__ import annotations

import numpy as np
import torch

from sepnet.data.beats import activation_beat_times, beat_f_measure
from sepnet.inference.overlap_add import OverlapAdd, crossfade_window
from sepnet.models.contract import BEATS
from sepnet.numbers import is_real

DEFAULT_BEAT_THRESHOLD = 0.5
"""Peak threshold when the checkpoint's config has no ``module.beat_threshold``."""


def has_rhythm_head(runner: OverlapAdd) -> bool:
    """Whether the runner's model has a rhythm head (``beats`` among its ``auxiliary_heads``)."""
    return BEATS in runner.separator.model.auxiliary_heads


@torch.inference_mode()
def track_beat_activation(runner: OverlapAdd, mixture: np.ndarray) -> tuple[np.ndarray, float]:
    """The rhythm head's beat activation over a whole track.

    Args:
        runner: the evaluation's chunker; its separator's model has the ``beats`` head.
        mixture: (channels, samples) at the model's rate.
    Returns:
        (activation (samples // hop + 1,) float32 in [0, 1], frame rate in Hz).
    """
    separator = runner.separator
    hop = separator.front_end.hop_length
    total = mixture.shape[-1]
    chunk = max(runner.chunk - runner.chunk % hop, hop)  # whole frames, so every chunk starts on a frame
    step = max(hop, (runner.hop // hop) * hop)
    if total <= chunk:
        starts, padded_length = [0], max(total, separator.front_end.n_fft // 2 + 1)
        chunk = padded_length
    else:
        # Pad (by less than a hop) so the last chunk ends on the track's end and starts on a frame.
        padded_length = total + (-(total - chunk)) % hop
        last = padded_length - chunk
        starts = list(range(0, last, step)) + [last]
    padded = np.zeros((mixture.shape[0], padded_length), dtype=np.float32)
    padded[:, :total] = mixture
    chunk_frames = chunk // hop + 1
    fade = min(round((chunk - step) / hop), chunk_frames - 1) if len(starts) > 1 else 0
    frames = padded_length // hop + 1
    summed, weights = np.zeros(frames, np.float64), np.zeros(frames, np.float64)
    for i in range(0, len(starts), runner.batch_size):
        batch_starts = starts[i : i + runner.batch_size]
        batch = torch.from_numpy(np.stack([padded[:, s : s + chunk] for s in batch_starts])).to(runner.device)
        logits = separator.raw_outputs(batch)[2][BEATS]
        activation = torch.sigmoid(logits.float()).cpu().numpy()
        for s, row in zip(batch_starts, activation):
            first = s // hop
            window = crossfade_window(len(row), fade, fade_in=s > 0, fade_out=s + chunk < padded_length)
            summed[first : first + len(row)] += row * window
            weights[first : first + len(row)] += window
    activation = (summed / np.maximum(weights, 1e-12)).astype(np.float32)
    return activation[: total // hop + 1], separator.front_end.sample_rate / hop


def beat_threshold(config) -> float:
    """The peak threshold the checkpoint's run trained with (``module.beat_threshold``), so evaluate picks
    beats as ``val/beat_f1`` did."""
    module = (config or {}).get("module") or {}
    value = module.get("beat_threshold", DEFAULT_BEAT_THRESHOLD)
    return float(value) if is_real(value) else DEFAULT_BEAT_THRESHOLD


def score_track_beats(runner: OverlapAdd, mixture: np.ndarray, reference: np.ndarray, threshold: float) -> dict:
    """The head's beats on one track against ``reference`` (beats,) seconds.

    Returns:
        ``{"beat_f1": mir_eval F-measure, "estimated_beats": count, "reference_beats": count}``.
    """
    activation, frame_rate = track_beat_activation(runner, mixture)
    estimate = activation_beat_times(torch.from_numpy(activation[None]), frame_rate, threshold)[0]
    return {
        "beat_f1": beat_f_measure(reference, estimate),
        "estimated_beats": len(estimate),
        "reference_beats": len(reference),
    }
