"""The band above the model's Nyquist frequency: what a file at a higher rate than the model's keeps.

A model running at 22.05 kHz hears nothing above 11.025 kHz; a 44.1 kHz song separated through
it would lose its top octave (cymbals, hi-hats, air) in every stem, silently. ``separate`` keeps
that band instead and gives it to the stems (``separate.top_band``):

    mixture block (channels, n) at the input rate
      -> the part the model hears: the same block down to the model's rate and back up
      -> top band = mixture - that part                        (channels, n), aligned sample by sample
    stem estimates (stems, channels, m) at the input rate, as they are written
      -> each stem's share of the estimates' energy near the model's Nyquist, per frame of
         :data:`FRAME` samples (a second difference weights the highest frequencies the model
         produced), linearly interpolated between frame centres
      -> stem s += share_s x top band

``share``: the stems that own the model's highest band take the band above it (a cymbal the model
gave to drums up to 11 kHz goes on in drums above); the stems then still sum to the mixture where
the model's masks do. ``drop``: the band is left out, as before.
"""

from __future__ import annotations

import collections

import numpy as np
import soxr

TOP_BAND_CHOICES = ("share", "drop")
FRAME = 1024
"""Samples (at the input rate) per share estimate: 23 ms at 44.1 kHz."""


class TopBand:
    """The top band of a file's mixture, handed out to the stem estimates in step with the writes.

    Args:
        input_rate: the file's rate, Hz (> ``model_rate``).
        model_rate: the model's rate, Hz.
        channels: the file's channels (as the estimates are written: 1 or 2).
    """

    def __init__(self, input_rate: int, model_rate: int, channels: int):
        self.down = soxr.ResampleStream(input_rate, model_rate, channels, dtype="float32", quality="HQ")
        self.up = soxr.ResampleStream(model_rate, input_rate, channels, dtype="float32", quality="HQ")
        self.mixture: collections.deque[np.ndarray] = collections.deque()  # (channels, n) input blocks
        self.heard: collections.deque[np.ndarray] = collections.deque()  # (channels, n) the model's band, same clock
        self.energy = 0.0  # of the top band handed out so far, and of the mixture
        self.total = 0.0

    def feed(self, block: np.ndarray, last: bool = False) -> None:
        """A ``(channels, n)`` block of the mixture as read (``last``: the reader is done)."""
        self.mixture.append(block)
        down = self.down.resample_chunk(np.ascontiguousarray(block.T), last=last)
        self.heard.append(self.up.resample_chunk(down, last=last).T)

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the top band, ``(channels, n)`` (zeros past what has been read)."""
        mixture, heard = _take(self.mixture, n), _take(self.heard, n)
        self.total += float(np.square(mixture, dtype=np.float64).sum())
        return mixture - heard

    def add_to(self, estimates: np.ndarray) -> np.ndarray:
        """Estimates ``(stems, channels, m)`` at the input rate -> the same with each stem's share of the band."""
        band = self.take(estimates.shape[-1])
        self.energy += float(np.square(band, dtype=np.float64).sum())
        return estimates + shares(estimates) * band[None]


def shares(estimates: np.ndarray) -> np.ndarray:
    """``(stems, 1, m)`` weights summing to 1 over the stems: each stem's share of the estimates' top-band energy.

    Energy of the second difference (a high-pass rising 12 dB an octave) per :data:`FRAME`
    samples, both channels together; frames where every stem is silent share equally.
    """
    stems, _, m = estimates.shape
    if m == 0:
        return np.zeros((stems, 1, 0), np.float32)
    curvature = np.zeros_like(estimates)
    curvature[..., 1:-1] = estimates[..., 2:] - 2 * estimates[..., 1:-1] + estimates[..., :-2]
    frames = -(-m // FRAME)
    padded = np.zeros((stems, frames * FRAME), np.float64)
    padded[:, :m] = np.square(curvature, dtype=np.float64).sum(axis=1)
    energy = padded.reshape(stems, frames, FRAME).sum(-1)  # (stems, frames)
    total = energy.sum(0, keepdims=True)
    weights = np.where(total > 0, energy / np.where(total > 0, total, 1.0), 1.0 / stems)
    centres = (np.arange(frames) + 0.5) * FRAME
    positions = np.arange(m)
    return np.stack([np.interp(positions, centres, w) for w in weights])[:, None, :].astype(np.float32)


def _take(blocks: collections.deque, n: int) -> np.ndarray:
    """The next ``n`` samples of a deque of ``(channels, k)`` blocks, zero-padded; consumed from the deque."""
    parts, need = [], n
    channels = blocks[0].shape[0] if blocks else None
    while need and blocks:
        head = blocks[0]
        parts.append(head[:, :need])
        if head.shape[1] <= need:
            blocks.popleft()
        else:
            blocks[0] = head[:, need:]
        need -= parts[-1].shape[1]
    if need:
        parts.append(np.zeros((channels or 1, need), np.float32))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
