"""Cheap separation metrics computed on waveform tensors during training.

Full BSSEval v4 scoring (framewise, museval-exact) lives in :mod:`sepnet.evaluation.bsseval`;
this module holds what validation needs every epoch.
"""

from __future__ import annotations

import torch

SDR_EPS = 1e-7
"""The MDX challenge's stabiliser: a silent reference with a silent estimate scores 0 dB, not NaN."""


def chunk_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = SDR_EPS) -> torch.Tensor:
    """Whole-chunk SDR (the MDX "new SDR"): 10·log10((Σs² + eps) / (Σ(s-ŝ)² + eps)).

    Args:
        reference, estimate: (..., channels, samples), same shape.
    Returns:
        (...) SDR in dB, summed over channels and samples.
    """
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {tuple(reference.shape)} and estimate {tuple(estimate.shape)} differ in shape")
    # float64 with autocast off: the same score from bf16 estimates of a mixed-precision step.
    with torch.autocast(device_type=reference.device.type, enabled=False):
        reference = reference.double()
        signal = reference.square().sum(dim=(-2, -1))
        error = (reference - estimate.double()).square().sum(dim=(-2, -1))
        return (10 * torch.log10((signal + eps) / (error + eps))).float()
