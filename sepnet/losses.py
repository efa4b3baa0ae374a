"""Training losses on masks: each compares predicted masks with what the stems say they should be.

A loss is an ``nn.Module`` called as ``loss(masks, targets)`` with a
:class:`SpectralTargets`; a new loss is a class here plus a YAML file in
``conf/loss/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

IRM_EPS = 1e-8


@dataclass
class SpectralTargets:
    """What a loss may compare the masks with, all (batch, stems, channels, bins, frames) unless noted.

    Attributes:
        ideal_masks: ideal ratio masks |S_target| / Σ_all stems |S_k|, in [0, 1].
        target_magnitudes: |S_target|.
        mixture_magnitude: |X| (batch, channels, bins, frames).
    """

    ideal_masks: torch.Tensor
    target_magnitudes: torch.Tensor
    mixture_magnitude: torch.Tensor

    @classmethod
    def from_spectrograms(cls, stem_specs: torch.Tensor, target_index: list[int], mixture_spec: torch.Tensor) -> "SpectralTargets":
        """Build targets from complex STFTs.

        Args:
            stem_specs: every stem of the dataset, (batch, all_stems, channels, bins, frames) complex;
                the ratio's denominator covers all of them, so a single-target model
                learns the same vocals mask as a four-stem one.
            target_index: positions of the target stems in ``stem_specs``.
            mixture_spec: (batch, channels, bins, frames) complex.
        """
        magnitudes = stem_specs.abs()
        targets = magnitudes[:, target_index]
        ideal = targets / (magnitudes.sum(dim=1, keepdim=True) + IRM_EPS)
        return cls(ideal.clamp(0, 1), targets, mixture_spec.abs())

    def weighted_mean(self, per_bin: torch.Tensor, weighting: str) -> torch.Tensor:
        """Mean of a per-bin loss (batch, stems, channels, bins, frames) under a bin weighting.

        ``none`` weighs every time-frequency bin alike; ``magnitude`` weighs each by
        the mixture's magnitude (normalised to mean 1 per example), so the loud bins
        that decide the SDR decide the loss too, and near-silent bins, whose ideal
        mask is arbitrary, barely count.
        """
        if weighting == "none":
            return per_bin.mean()
        weights = self.mixture_magnitude.float()[:, None]
        weights = weights / (weights.mean(dim=(-3, -2, -1), keepdim=True) + IRM_EPS)
        return (per_bin * weights).mean()


WEIGHTINGS = ("none", "magnitude")


class MaskBCELoss(nn.Module):
    """Binary cross-entropy between predicted masks and ideal ratio masks (the log's loss).

    Args:
        weighting: ``magnitude`` (default) weighs each bin by the mixture's magnitude;
            ``none`` is the plain mean over bins, as the research log trained.
    """

    def __init__(self, weighting: str = "magnitude"):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"loss.weighting must be one of {', '.join(WEIGHTINGS)}, got '{weighting}'")
        self.weighting = weighting

    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        # BCE is not autocast-safe; compute it in float32.
        per_bin = F.binary_cross_entropy(
            masks.float().clamp(1e-6, 1 - 1e-6), targets.ideal_masks.float(), reduction="none"
        )
        return targets.weighted_mean(per_bin, self.weighting)
