"""Multichannel Wiener post-filter (the EM of Nugraha et al. 2016, as in norbert/Open-Unmix), in torch.

Masked spectrograms ``y_j`` start the iterations; each one re-estimates every
source's power spectral density ``v_j(f, t)`` (mean over channels of ``|y_j|²``)
and spatial covariance ``R_j(f)`` (``Σ_t y_j y_jᴴ / Σ_t v_j``), then filters the
mixture with ``y_j = v_j R_j (Σ_k v_k R_k)⁻¹ x``. Stems then sum to the mixture
and inter-channel structure is restored, which masks applied per channel lose.

Memory: the ``(channels x channels)`` systems are built and solved ``block_frames``
frames at a time, so the transient tensors are ``(..., bins, block_frames, C, C)``
whatever the chunk length; the caller (:mod:`sepnet.inference.overlap_add`) already bounds
the chunk length.
"""

from __future__ import annotations

import torch

EPS = 1e-10
"""Regularisation of the covariances (norbert's default)."""


def _covariance(y: torch.Tensor) -> torch.Tensor:
    """(..., C, F, T) complex -> (..., F, T, C, C) outer products ``y yᴴ`` per bin and frame."""
    y = y.movedim(-3, -1)  # (..., F, T, C)
    return y[..., :, None] * y[..., None, :].conj()


def wiener(
    estimates: torch.Tensor,
    mixture: torch.Tensor,
    iterations: int = 1,
    residual: bool = False,
    block_frames: int = 256,
    eps: float = EPS,
) -> torch.Tensor:
    """Refine complex source estimates with ``iterations`` multichannel Wiener EM steps.

    Args:
        estimates: (batch, stems, channels, bins, frames) complex, e.g. masks x mixture STFT.
        mixture: (batch, channels, bins, frames) complex mixture STFT.
        iterations: EM iterations (0 returns ``estimates`` unchanged).
        residual: add ``mixture - Σ estimates`` as one more source during the
            iterations (for models that do not estimate every stem), dropped on return.
        block_frames: frames solved at once (bounds the memory of the C x C systems).
        eps: regularisation added to the covariances and the mixture model.

    Returns:
        (batch, stems, channels, bins, frames) complex, same dtype as ``estimates``.
    """
    if iterations <= 0:
        return estimates
    stems = estimates.shape[1]
    y = estimates.to(torch.complex64)
    x = mixture.to(torch.complex64)
    if residual:
        y = torch.cat([y, (x - y.sum(1))[:, None]], dim=1)
    channels, frames = x.shape[1], x.shape[-1]
    eye = torch.eye(channels, dtype=torch.complex64, device=x.device)
    for _ in range(iterations):
        v = y.abs().square().mean(2)  # (B, S, F, T) power spectral densities
        # spatial covariances (B, S, F, C, C), accumulated blockwise over frames
        cov = torch.zeros(*y.shape[:2], y.shape[3], channels, channels, dtype=torch.complex64, device=x.device)
        for a in range(0, frames, block_frames):
            cov += _covariance(y[..., a : a + block_frames]).sum(-3)
        cov = cov / (v.sum(-1) + eps)[..., None, None] + eps * eye
        out = torch.empty_like(y)
        for a in range(0, frames, block_frames):
            vb = v[..., a : a + block_frames, None, None]  # (B, S, F, t, 1, 1)
            per_source = vb * cov[..., None, :, :]  # (B, S, F, t, C, C)
            inv_mix = torch.linalg.inv(per_source.sum(1) + eps * eye)  # (B, F, t, C, C)
            xb = x[..., a : a + block_frames].movedim(1, -1)[:, None, ..., None]  # (B, 1, F, t, C, 1)
            yb = per_source @ inv_mix[:, None] @ xb  # (B, S, F, t, C, 1)
            out[..., a : a + block_frames] = yb[..., 0].movedim(-1, 2)
        y = out
    return y[:, :stems].to(estimates.dtype)
