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
from collections.abc import Iterator

import numpy as np
import soxr

TOP_BAND_CHOICES = ("share", "drop")
FRAME = 1024
"""Samples (at the input rate) per share estimate: 23 ms at 44.1 kHz."""


def top_band_blocks(blocks: Iterator[np.ndarray], input_rate: int, model_rate: int) -> Iterator[np.ndarray]:
    """The band above ``model_rate``'s Nyquist frequency of a mixture read as ``(channels, n)`` blocks.

    Yields ``(2, n)`` float32 blocks (a mono input as two equal channels, as the models see it),
    together exactly as many samples as came in: the mixture minus its round trip through the
    model's rate (soxr, delay-compensated, so sample k of the round trip is sample k of the input).
    """
    down = soxr.ResampleStream(input_rate, model_rate, 2, dtype="float32", quality="HQ")
    up = soxr.ResampleStream(model_rate, input_rate, 2, dtype="float32", quality="HQ")
    mixture: collections.deque[np.ndarray] = collections.deque()  # (2, n) input not yet matched by the round trip
    held = 0

    def band(heard: np.ndarray) -> np.ndarray:
        nonlocal held
        n = min(heard.shape[0], held)
        held -= n
        return _take(mixture, n) - heard[:n].T

    for block in blocks:
        stereo = np.asarray(block if block.shape[0] == 2 else np.repeat(block, 2, axis=0), dtype=np.float32)
        mixture.append(stereo)
        held += stereo.shape[1]
        yield band(up.resample_chunk(down.resample_chunk(np.ascontiguousarray(stereo.T))))
    yield band(up.resample_chunk(down.resample_chunk(np.zeros((0, 2), np.float32), last=True), last=True))
    if held:  # a round trip can come out a sample or two short: nothing known above there
        yield np.zeros((2, held), np.float32)


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
    channels = blocks[0].shape[0] if blocks else 2
    if n == 0:
        return np.zeros((channels, 0), np.float32)
    while need and blocks:
        head = blocks[0]
        parts.append(head[:, :need])
        if head.shape[1] <= need:
            blocks.popleft()
        else:
            blocks[0] = head[:, need:]
        need -= parts[-1].shape[1]
    if need:
        parts.append(np.zeros((channels, need), np.float32))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
