"""Training losses on masks: each compares predicted masks with what the stems say they should be.

A loss is an ``nn.Module`` called as ``loss(masks, targets)`` with a
:class:`SpectralTargets`; a new loss is a class here plus a YAML file in
``conf/loss/``. Its ``forward`` is decorated with :func:`without_autocast`, so
it gives the float32 value under mixed precision too (bf16 masks from an
autocast model included).

Masks are real (batch, stems, channels, bins, frames) or complex (..., 2)
(:mod:`sepnet.dsp.masking`). The losses on estimates (magnitude, spectrum,
waveform, multi-resolution STFT) take both; the losses on mask values (BCE, focal,
L1 on magnitudes) train real masks only and say so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sepnet.dsp.masking import is_complex_mask, masked_spectra
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
    target_waveforms: torch.Tensor | None = None
    """(batch, stems, channels, samples): the target stems as heard, for waveform losses."""
    synthesise: Callable[[torch.Tensor], torch.Tensor] | None = None
    """STFTs (..., bins, frames) complex -> waveforms (..., samples): the front end's iSTFT at the batch's length."""

    def estimated_spectra(self, masks: torch.Tensor) -> torch.Tensor:
        """The stems' STFTs the masks give: (batch, stems, channels, bins, frames) complex64."""
        if self.mixture_spectrum is None:
            raise ValueError("this loss needs the mixture's complex spectrum: build the targets with from_spectrograms")
        return masked_spectra(masks, self.mixture_spectrum.to(torch.complex64))

    def estimated_waveforms(self, masks: torch.Tensor) -> torch.Tensor:
        """The stems' waveforms the masks give: (batch, stems, channels, samples) float32."""
        if self.synthesise is None or self.target_waveforms is None:
            raise ValueError("a waveform loss needs the target waveforms and the iSTFT: build the targets with "
                             "from_spectrograms(..., waveforms=, synthesise=)")
        return self.synthesise(self.estimated_spectra(masks))

    @classmethod
    def from_spectrograms(
        cls,
        stem_specs: torch.Tensor,
        target_index: list[int],
        mixture_spec: torch.Tensor,
        waveforms: torch.Tensor | None = None,
        synthesise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> SpectralTargets:
        """Build targets from complex STFTs.

        Args:
            stem_specs: every stem of the dataset, (batch, all_stems, channels, bins, frames) complex;
                the ratio's denominator covers all of them, so a single-target model
                learns the same vocals mask as a four-stem one.
            target_index: positions of the target stems in ``stem_specs``.
            mixture_spec: (batch, channels, bins, frames) complex.
            waveforms: every stem's waveform (batch, all_stems, channels, samples), for waveform losses.
            synthesise: the front end's iSTFT at the batch's length, for waveform losses.
        """
        magnitudes = stem_specs.abs()
        targets = magnitudes[:, target_index]
        ideal = targets / (magnitudes.sum(dim=1, keepdim=True) + IRM_EPS)
        covers = sorted(target_index) == list(range(stem_specs.shape[1]))
        target_waveforms = waveforms[:, target_index] if waveforms is not None else None
        return cls(ideal.clamp(0, 1), targets, mixture_spec.abs(), stem_specs[:, target_index], mixture_spec, covers,
                   target_waveforms, synthesise)

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
        if is_complex_mask(masks) and not self.takes_complex_masks:
            raise ValueError(
                f"{type(self).__name__} trains real masks, but the model gives complex masks; use loss=magnitude, "
                "spectrum, waveform or mrstft (or the model's real masks, e.g. model.complex_masks=false)"
            )
        with torch.autocast(device_type=masks.device.type, enabled=False):
            return forward(self, masks, *args, **kwargs)

    return forward_in_float32


class MaskBCELoss(nn.Module):
    """Binary cross-entropy between predicted masks and ideal ratio masks.

    Args:
        weighting: ``power`` (default) weighs each bin by the mixture's squared magnitude,
            ``magnitude`` by its magnitude; ``none`` is the plain mean over bins.
    """

    takes_complex_masks = False  # a loss on mask values: real masks only

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

    takes_complex_masks = False  # a loss on mask values: real masks only

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

    takes_complex_masks = False  # a loss on mask values: real masks only

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
    takes_complex_masks = True

    def __init__(self, norm: str = "l1", wiener_weight: float = 0.0):
        super().__init__()
        self.norm = checked_norm(norm)
        self.wiener_weight = checked_term_weight("wiener_weight", wiener_weight)

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        mixture = targets.mixture_magnitude.float()
        target = targets.target_magnitudes.float()
        estimate = targets.estimated_spectra(masks).abs() if is_complex_mask(masks) else masks.float() * mixture[:, None]
        loss = level_free_mean((estimate - target).abs(), mixture, self.norm)
        if self.wiener_weight:
            spectrum = targets.mixture_spectrum
            filtered = wiener(targets.estimated_spectra(masks), spectrum.to(torch.complex64), 1,
                              residual=not targets.targets_cover_mixture)
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
    takes_complex_masks = True

    def __init__(self, norm: str = "mse", magnitude_weight: float = 0.0):
        super().__init__()
        self.norm = checked_norm(norm)
        self.magnitude_weight = checked_term_weight("magnitude_weight", magnitude_weight)
        self.magnitude = MaskedMagnitudeLoss(norm)

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        if targets.target_spectra is None or targets.mixture_spectrum is None:
            raise ValueError("MaskedSpectrumLoss needs complex spectra: build the targets with SpectralTargets.from_spectrograms")
        error = (targets.estimated_spectra(masks) - targets.target_spectra.to(torch.complex64)).abs()
        loss = level_free_mean(error, targets.mixture_magnitude.float(), self.norm)
        if self.magnitude_weight:
            loss = loss + self.magnitude_weight * self.magnitude(masks, targets)
        return loss


def level_free_waveform_l1(estimates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over examples of mean |estimate - target| over the example's mean |target|: (batch, stems, channels, samples)."""
    error = (estimates - targets).abs().mean(dim=(1, 2, 3))
    return (error / (targets.abs().mean(dim=(1, 2, 3)) + IRM_EPS)).mean()


class WaveformL1Loss(nn.Module):
    """L1 between the separated waveforms (masks applied, iSTFT) and the target stems, level-free.

    What Demucs and the band-split RoFormers train on: the error of what is heard, phase
    included, so complex masks can learn the phase a real mask cannot give. Each example's
    error is divided by its targets' mean absolute amplitude (a quiet song counts as much as a
    loud one).
    """

    takes_complex_masks = True

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        return level_free_waveform_l1(targets.estimated_waveforms(masks), targets.target_waveforms.float())


class MultiResolutionSTFTLoss(nn.Module):
    """Waveform L1 plus the L1 of the complex STFTs of the separated waveforms at several resolutions.

    BS-RoFormer's recipe (Lu et al. 2023): ``L1(wave) + stft_weight x sum_r L1(STFT_r(estimate) - STFT_r(target))``
    over real and imaginary parts, window sizes ``resolutions`` (theirs: 4096, 2048, 1024, 512,
    256 with hop 147), hann windows, hop ``hop_length`` (null: each window / 4). Every term is
    level-free as :class:`WaveformL1Loss`. The STFTs of short training chunks at five resolutions
    cost more than the model on a CPU (benchmarks/loss_cost.py); the default is three.

    Args:
        resolutions: STFT window sizes.
        hop_length: hop of every resolution (null: a quarter of each window).
        stft_weight: weight of the STFT terms beside the waveform L1.
    """

    takes_complex_masks = True

    def __init__(self, resolutions: list[int] | None = None, hop_length: int | None = None, stft_weight: float = 1.0):
        super().__init__()
        self.resolutions = list(resolutions or [2048, 1024, 512])
        if not self.resolutions or any(not isinstance(n, int) or isinstance(n, bool) or n < 16 for n in self.resolutions):
            raise ValueError(f"loss.resolutions must be STFT sizes >= 16, got {self.resolutions}")
        if hop_length is not None and (not isinstance(hop_length, int) or hop_length < 1):
            raise ValueError(f"loss.hop_length must be an integer >= 1 or null, got {hop_length}")
        self.hop_length = hop_length
        self.stft_weight = checked_term_weight("stft_weight", stft_weight)

    @without_autocast
    def forward(self, masks: torch.Tensor, targets: SpectralTargets) -> torch.Tensor:
        estimates = targets.estimated_waveforms(masks)
        reference = targets.target_waveforms.float()
        loss = level_free_waveform_l1(estimates, reference)
        if not self.stft_weight:
            return loss
        flat_estimates, flat_reference = estimates.flatten(0, 2), reference.flatten(0, 2)  # (B*S*C, samples)
        level = reference.abs().mean(dim=(1, 2, 3)).repeat_interleave(reference.shape[1] * reference.shape[2])
        for n_fft in self.resolutions:
            hop = self.hop_length or n_fft // 4
            window = torch.hann_window(n_fft, device=estimates.device)
            spectra = [
                torch.view_as_real(torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True))
                for x in (flat_estimates, flat_reference)
            ]
            error = (spectra[0] - spectra[1]).abs().mean(dim=(1, 2, 3))  # per signal
            loss = loss + self.stft_weight * (error / (level + IRM_EPS)).mean()
        return loss
