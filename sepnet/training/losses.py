"""Training losses on masks: each compares predicted masks with what the stems say they should be.

A loss is an ``nn.Module`` called as ``loss(masks, targets)`` with a
:class:`SpectralTargets`; a new loss is a class here plus a YAML file in
``conf/loss/``. Its ``forward`` is decorated with :func:`without_autocast`, so
it gives the float32 value under mixed precision too (bf16 masks from an
autocast model included).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sepnet.dsp.wiener import wiener
from sepnet.numbers import is_real

IRM_EPS = 1e-8


@dataclass
class SpectralTargets:
    """What a loss may compare the masks with, all (batch, stems, channels, bins, frames) unless noted.

    Attributes:
        ideal_masks: ideal ratio masks |S_target| / Σ_all stems |S_k|, in [0, 1].
        target_magnitudes: |S_target|.
        mixture_magnitude: |X| (batch, channels, bins, frames).
        target_spectra: S_target, complex (None where only magnitudes were given).
        mixture_spectrum: X, complex (batch, channels, bins, frames) (None likewise).
        targets_cover_mixture: whether the target stems are every stem of the mixture (a
            Wiener filter then needs no residual source, as at inference).
    """

    ideal_masks: torch.Tensor
    target_magnitudes: torch.Tensor
    mixture_magnitude: torch.Tensor
    target_spectra: torch.Tensor | None = None
    mixture_spectrum: torch.Tensor | None = None
    targets_cover_mixture: bool = True

    @classmethod
    def from_spectrograms(cls, stem_specs: torch.Tensor, target_index: list[int], mixture_spec: torch.Tensor) -> SpectralTargets:
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
        covers = sorted(target_index) == list(range(stem_specs.shape[1]))
        return cls(ideal.clamp(0, 1), targets, mixture_spec.abs(), stem_specs[:, target_index], mixture_spec, covers)

    def weighted_mean(self, per_bin: torch.Tensor, weighting: str) -> torch.Tensor:
        """Mean of a per-bin loss (batch, stems, channels, bins, frames) under a bin weighting.

        ``none`` weighs every time-frequency bin alike; ``magnitude`` weighs each by
        the mixture's magnitude (normalised to mean 1 per example), so the loud bins
        that decide the SDR decide the loss too, and near-silent bins, whose ideal
        mask is arbitrary, barely count; ``power`` weighs by the squared magnitude,
        the weight a bin's mask error has in the SDR's error energy.
        """
        if weighting == "none":
            return per_bin.mean()
        weights = self.mixture_magnitude.float()[:, None]
        if weighting == "power":
            weights = weights.square()
        weights = weights / (weights.mean(dim=(-3, -2, -1), keepdim=True) + IRM_EPS)
        return (per_bin * weights).mean()


WEIGHTINGS = ("none", "magnitude", "power")


def checked_weighting(weighting: str) -> str:
    """``weighting`` if :meth:`SpectralTargets.weighted_mean` knows it, else a ValueError naming the choices."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"loss.weighting must be one of {', '.join(WEIGHTINGS)}, got '{weighting}'")
    return weighting


LEVEL_FREE_NORMS = ("l1", "mse")


def checked_norm(norm: str) -> str:
    """``norm`` if :func:`level_free_mean` knows it, else a ValueError naming the choices."""
    if norm not in LEVEL_FREE_NORMS:
        raise ValueError(f"loss.norm must be one of {', '.join(LEVEL_FREE_NORMS)}, got '{norm}'")
    return norm


def checked_term_weight(name: str, weight: float) -> float:
    """The weight ``loss.<name>`` of an added loss term if it is a finite number >= 0, else a ValueError naming it."""
    if not (is_real(weight) and weight >= 0):
        raise ValueError(f"loss.{name} must be >= 0, got {weight}")
    return weight


def level_free_mean(error: torch.Tensor, mixture_magnitude: torch.Tensor, norm: str) -> torch.Tensor:
    """Mean over examples of each example's error over its mixture's level.

    Args:
        error: (batch, stems, channels, bins, frames) error moduli, >= 0.
        mixture_magnitude: |X| (batch, channels, bins, frames).
        norm: ``l1`` (mean error / mean |X|) or ``mse`` (mean error² / mean |X|²).
    """
    if norm == "l1":
        per_example, scale = error.mean(dim=(1, 2, 3, 4)), mixture_magnitude.mean(dim=(1, 2, 3))
    else:
        per_example, scale = error.square().mean(dim=(1, 2, 3, 4)), mixture_magnitude.square().mean(dim=(1, 2, 3))
    return (per_example / (scale + IRM_EPS)).mean()


def without_autocast(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a loss's ``forward(masks, ...)`` with autocast disabled on the masks' device.

    CUDA autocast refuses ``binary_cross_entropy`` (and ``BCELoss``) whatever the
    inputs' dtype, so casting them with ``.float()`` is not enough: the op must run
    outside autocast. The decorated body casts its inputs to float32 itself, so the
    result equals the float32 computation whether or not a step runs under autocast.
    """

    @functools.wraps(forward)
    def forward_in_float32(self, masks: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with torch.autocast(device_type=masks.device.type, enabled=False):
            return forward(self, masks, *args, **kwargs)

    return forward_in_float32


class MaskBCELoss(nn.Module):
    """Binary cross-entropy between predicted masks and ideal ratio masks.

    Args:
        weighting: ``power`` (default) weighs each bin by the mixture's squared magnitude,
            ``magnitude`` by its magnitude; ``none`` is the plain mean over bins.
    """

    def __init__(self, weighting: str = "power"):
        super().__init__()
        self.weighting = checked_weighting(weighting)

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        per_bin = F.binary_cross_entropy(
            masks.float().clamp(1e-6, 1 - 1e-6), targets.ideal_masks.float(), reduction="none"
        )
        return targets.weighted_mean(per_bin, self.weighting)


class FocalMaskLoss(nn.Module):
    """Focal loss on the soft ideal-ratio-mask targets: BCE that down-weights bins the model already gets right.

    For a predicted mask ``p`` and target ``y`` in [0, 1], with ``modulation="quality"`` (the
    default; the "quality focal loss" of Li et al. 2020, Generalized Focal Loss)::

        loss = -|y - p|^γ · [ a · y · log p  +  (1-a) · (1-y) · log(1-p) ]

    and with ``modulation="classic"`` (RetinaNet's, made for 0/1 targets)::

        loss = -[ a · y · (1-p)^γ · log p  +  (1-a) · (1-y) · p^γ · log(1-p) ]

    averaged over every element under the same bin weighting as :class:`MaskBCELoss`.
    With ``gamma=0`` and ``alpha=None`` both are exactly :class:`MaskBCELoss`. On soft
    targets the classic form is minimised away from the target, pulled towards 0.5
    (y=0.2 -> p=0.37 at γ=2), so its masks are biased: 1.6 dB val/sdr below BCE at the
    same budget (benchmarks/README.md); the quality form keeps the minimum at p = y.

    Args:
        gamma: focusing exponent (0: plain BCE; 2: the usual focal setting).
        alpha: weight of the "on" term in [0, 1] (the "off" term gets 1-alpha); None weights both 1.
        weighting: ``power``, ``magnitude`` or ``none``, as for :class:`MaskBCELoss`.
        modulation: ``quality`` (|y-p|^γ) or ``classic`` ((1-p)^γ and p^γ per term).
    """

    MODULATIONS = ("quality", "classic")

    def __init__(
        self, gamma: float = 2.0, alpha: float | None = None, weighting: str = "power", modulation: str = "quality"
    ):
        super().__init__()
        self.weighting = checked_weighting(weighting)
        if gamma < 0:
            raise ValueError(f"loss.gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"loss.alpha must be in [0, 1] or null, got {alpha}")
        if modulation not in self.MODULATIONS:
            raise ValueError(f"loss.modulation must be one of {', '.join(self.MODULATIONS)}, got '{modulation}'")
        self.gamma = gamma
        self.alpha = alpha
        self.modulation = modulation

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        p = masks.float().clamp(1e-6, 1 - 1e-6)
        y = targets.ideal_masks.float()
        on = y * torch.log(p)
        off = (1 - y) * torch.log1p(-p)
        if self.alpha is not None:
            on, off = self.alpha * on, (1 - self.alpha) * off
        if self.gamma and self.modulation == "classic":
            on = on * (1 - p).pow(self.gamma)
            off = off * p.pow(self.gamma)
        per_bin = -(on + off)
        if self.gamma and self.modulation == "quality":
            per_bin = per_bin * (y - p).abs().pow(self.gamma)
        return targets.weighted_mean(per_bin, self.weighting)


class MagnitudeL1Loss(nn.Module):
    """Mean absolute error between masked mixture magnitudes ``mask · |X|`` and the target stems' ``|S|``."""

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        estimate = masks.float() * targets.mixture_magnitude.float()[:, None]
        return F.l1_loss(estimate, targets.target_magnitudes.float())


class MaskedMagnitudeLoss(nn.Module):
    """Distance between masked mixture magnitudes ``M · |X|`` and the target stems' ``|S|``, level-free.

    Open-Unmix's training loss (MSE on magnitudes), closer to the SDR than a loss on
    the masks: a mask error counts in proportion to the energy it moves. Each
    example's error is divided by its mixture's mean magnitude (``l1``) or mean power
    (``mse``), so a quiet song counts as much as a loud one and the loss does not
    depend on the recording's level.

    ``wiener_weight`` adds the same distance for the estimates after one multichannel
    Wiener iteration (:mod:`sepnet.dsp.wiener`, differentiated through), so the masks are
    also trained for ``eval.wiener_iters=1``: the filter squares them into power shares and
    adds a spatial model, which masks trained for magnitudes alone are not made for.

    Args:
        norm: ``l1`` (mean absolute error) or ``mse`` (mean squared error).
        wiener_weight: weight of the term after one Wiener iteration (0: none).
    """

    NORMS = LEVEL_FREE_NORMS

    def __init__(self, norm: str = "l1", wiener_weight: float = 0.0):
        super().__init__()
        self.norm = checked_norm(norm)
        self.wiener_weight = checked_term_weight("wiener_weight", wiener_weight)

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        mixture = targets.mixture_magnitude.float()
        target = targets.target_magnitudes.float()
        loss = level_free_mean((masks.float() * mixture[:, None] - target).abs(), mixture, self.norm)
        if self.wiener_weight:
            if targets.mixture_spectrum is None:
                raise ValueError("loss.wiener_weight needs the mixture's complex spectrum: build the targets with "
                                 "SpectralTargets.from_spectrograms")
            spectrum = targets.mixture_spectrum.to(torch.complex64)
            filtered = wiener(masks.float() * spectrum[:, None], spectrum, 1, residual=not targets.targets_cover_mixture)
            loss = loss + self.wiener_weight * level_free_mean((filtered.abs() - target).abs(), mixture, self.norm)
        return loss


class MaskedSpectrumLoss(nn.Module):
    """Distance between the masked mixture spectrum ``M · X`` and the target stems' complex ``S``, level-free.

    The phase-sensitive loss (Erdogan et al. 2015): unlike a magnitude loss it counts
    the error the mixture's phase leaves, so its best real mask is ``Re(S / X)``
    (smaller where the stem's phase differs from the mixture's), not ``|S| / |X|``.
    The STFT with sepnet's hann window at hop n_fft/4 is a tight frame, so by Parseval
    the squared error is, up to a constant, an upper bound on the error energy of the
    separated waveforms (equal where the masked spectrum is a consistent STFT), the
    denominator of the SDR; band-split and Demucs-style separators train on this
    spectrum or waveform error. ``magnitude_weight`` adds :class:`MaskedMagnitudeLoss`'s term
    (same norm), so the two can be mixed. Each example's error is divided by its
    mixture's mean power (``mse``) or mean magnitude (``l1``): level-free.

    Args:
        norm: ``mse`` (squared modulus of the complex error) or ``l1`` (its modulus).
        magnitude_weight: weight of the masked-magnitude term added to it (0: none).
    """

    NORMS = LEVEL_FREE_NORMS

    def __init__(self, norm: str = "mse", magnitude_weight: float = 0.0):
        super().__init__()
        self.norm = checked_norm(norm)
        self.magnitude_weight = checked_term_weight("magnitude_weight", magnitude_weight)
        self.magnitude = MaskedMagnitudeLoss(norm)

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        if targets.target_spectra is None or targets.mixture_spectrum is None:
            raise ValueError("MaskedSpectrumLoss needs complex spectra: build the targets with SpectralTargets.from_spectrograms")
        mixture = targets.mixture_spectrum.to(torch.complex64)[:, None]  # (B, 1, C, F, T)
        error = (masks.float() * mixture - targets.target_spectra.to(torch.complex64)).abs()
        loss = level_free_mean(error, targets.mixture_magnitude.float(), self.norm)
        if self.magnitude_weight:
            loss = loss + self.magnitude_weight * self.magnitude(masks, targets)
        return loss
