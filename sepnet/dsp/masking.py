"""Masks applied to a mixture's STFT: real masks keep the mixture's phase, complex masks change it.

    real masks     (batch, stems, channels, bins, frames)      m · X
    complex masks  (batch, stems, channels, bins, frames, 2)   (re + j·im) · X, real and imaginary parts last

A complex mask is stored as two real parts (not a complex dtype) so models, autocast and
the optimiser see real tensors only. The inference knobs act on a mask's magnitude and
keep its phase: ``mask_scale`` scales it, ``clip`` bounds it to 1, ``threshold`` zeroes masks
whose magnitude is below it.
"""

from __future__ import annotations

import torch


def is_complex_mask(masks: torch.Tensor) -> bool:
    """Whether ``masks`` holds complex masks (a last axis of two parts)."""
    return masks.ndim == 6 and masks.shape[-1] == 2


def mask_magnitude(masks: torch.Tensor) -> torch.Tensor:
    """|m| per stem, channel, bin and frame: (batch, stems, channels, bins, frames)."""
    return torch.linalg.vector_norm(masks, dim=-1) if is_complex_mask(masks) else masks.abs()


def masked_spectra(masks: torch.Tensor, mixture_spec: torch.Tensor) -> torch.Tensor:
    """Masks (real or complex, above) x mixture STFT (batch, channels, bins, frames) -> stems' STFTs, complex
    (batch, stems, channels, bins, frames), in float32 arithmetic."""
    if is_complex_mask(masks):
        return torch.view_as_complex(masks.float().contiguous()) * mixture_spec[:, None]
    return masks.float() * mixture_spec[:, None]


def scale_masks(masks: torch.Tensor, scale: float, clip: bool, threshold: float) -> torch.Tensor:
    """The inference knobs on real or complex masks: magnitude x ``scale`` (bounded to 1 with ``clip``),
    zero where the magnitude is below ``threshold``; phase kept."""
    if not is_complex_mask(masks):  # real masks in [0, 1]: the knobs act on the values themselves
        if scale != 1.0:
            masks = masks * scale
            if clip:
                masks = masks.clamp(0.0, 1.0)
        return masks.masked_fill(masks < threshold, 0.0) if threshold > 0.0 else masks
    if scale == 1.0 and threshold <= 0.0:
        return masks
    magnitude = mask_magnitude(masks)
    scaled = magnitude * scale
    if clip and scale != 1.0:
        scaled = scaled.clamp(max=1.0)
    if threshold > 0.0:
        scaled = scaled.masked_fill(scaled < threshold, 0.0)
    return masks * (scaled / magnitude.clamp_min(1e-12))[..., None]
