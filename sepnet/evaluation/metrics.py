"""Cheap separation metrics computed on waveform tensors during training.

Full BSSEval v4 scoring (framewise, museval-exact) lives in :mod:`sepnet.evaluation.bsseval`;
this module holds what validation needs every epoch.
"""

from __future__ import annotations

import torch

SDR_EPS = 1e-7
"""The MDX challenge's stabiliser: a silent reference with a silent estimate scores 0 dB, not NaN."""


def whole_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = SDR_EPS) -> torch.Tensor:
    """The MDX "new SDR" in float64: 10·log10((Σs² + eps) / (Σ(s-ŝ)² + eps)) over the last two dims.

    The one SDR formula of sepnet: :func:`chunk_sdr` (training, torch) and
    :func:`sepnet.evaluation.bsseval.new_sdr` (scoring, numpy) both call it.

    Args:
        reference, estimate: (..., a, b), same shape; (channels, samples) or (samples, channels),
            the sum runs over both.
    Returns:
        (...) SDR in dB, float64.
    """
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {tuple(reference.shape)} and estimate {tuple(estimate.shape)} differ in shape")
    # float64 with autocast off: the same score from bf16 estimates of a mixed-precision step.
    with torch.autocast(device_type=reference.device.type, enabled=False):
        reference = reference.double()
        signal = reference.square().sum(dim=(-2, -1))
        error = (reference - estimate.double()).square().sum(dim=(-2, -1))
        return 10 * torch.log10((signal + eps) / (error + eps))


def chunk_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = SDR_EPS) -> torch.Tensor:
    """Whole-chunk SDR (the MDX "new SDR") of training and validation chunks, see :func:`whole_sdr`.

    Args:
        reference, estimate: (..., channels, samples), same shape.
    Returns:
        (...) SDR in dB (float32), summed over channels and samples.
    """
    return whole_sdr(reference, estimate, eps).float()
