"""The U-Net CRNN with masks that share the mixture between the stems.

    input (batch, channels, bins, frames)
    -> U-Net CRNN (encoder, BiLSTM bottleneck, decoder with skips)
    -> logits (batch, stems [+ residual], channels, bins, frames)
    -> softmax across stems, or sigmoids scaled down to sum <= 1
    -> masks (batch, stems, channels, bins, frames)

Independent sigmoid masks may together take more than the whole mixture from a
time-frequency bin (vocals 0.9 and other 0.8), or leave it unused: the stems'
estimates then do not add up to the mixture. Sharing the mixture is what
Open-Unmix's multichannel Wiener filter, Demucs's and band-split models'
mixture-consistent outputs do; here it is built into the masks:

- ``softmax``: masks sum to exactly 1 in every bin (the stems explain the whole
  mixture). With ``residual: true`` an extra logit takes whatever no target stem
  claims (noise, an instrument outside the stems, or the stems a single-target
  model leaves out), and is dropped from the output, so the masks sum to <= 1.
- ``normalised``: a sigmoid per stem, divided by the sum wherever the sum exceeds
  1, so the masks sum to <= 1 and a bin may stay partly unassigned.
"""

from __future__ import annotations

import torch

from sepnet.models.crnn import DecoderBlock, extend_signature
from sepnet.models.registry import register_model
from sepnet.models.unet_crnn import UNetCRNN

MASK_ACTIVATIONS = ("softmax", "normalised")


@register_model
class SharedMaskUNetCRNN(UNetCRNN):
    """:class:`UNetCRNN` whose masks share the mixture: per bin they sum to 1 (softmax) or at most 1.

    Args:
        mask_activation: ``softmax`` (across stems) or ``normalised`` (sigmoids divided
            by their sum where it exceeds 1).
        residual: with ``softmax``, one extra output takes what no target stem claims, so
            the target masks sum to <= 1 (needed where the targets do not cover the mixture,
            e.g. ``target_stems: [vocals]``); only with ``softmax``.
        (others as :class:`UNetCRNN`; ``inspect.signature`` lists them all)

    With the same sizes its encoder and BiLSTM have a UNetCRNN's parameter names and
    shapes (``init.strict=false`` takes them from a UNetCRNN checkpoint).
    """

    @extend_signature(UNetCRNN.__init__)
    def __init__(self, *args, mask_activation: str, residual: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation must be one of {', '.join(MASK_ACTIVATIONS)}, got '{mask_activation}'")
        if residual and mask_activation != "softmax":
            raise ValueError("residual: true needs mask_activation: softmax (normalised masks may leave a rest already)")
        if mask_activation == "softmax" and len(self.target_stems) == 1 and not residual:
            raise ValueError("a softmax over one target stem is always 1: set residual: true")
        self.mask_activation = mask_activation
        self.residual = residual
        if residual:  # the last decoder block gets one more stem's worth of outputs: the residual's logits
            last = self.decoder[-1].conv
            self.decoder[-1] = DecoderBlock(last.in_channels, last.out_channels + self.audio_channels, last=True)

    def masks_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (B, stems [+1], C, F, T) -> masks (B, stems, C, F, T), summing to <= 1 over stems."""
        if self.mask_activation == "softmax":
            # In float32: under bf16 autocast the sum over stems would drift from 1.
            masks = torch.softmax(logits.float(), dim=1)
            return masks[:, : len(self.target_stems)]
        masks = torch.sigmoid(logits)
        return masks / masks.sum(dim=1, keepdim=True).clamp(min=1.0)
