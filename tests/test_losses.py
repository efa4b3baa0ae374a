"""Mask losses on the soft ideal-ratio-mask targets, and the warm-up cosine schedule."""

import itertools

import pytest
import torch
from torch.nn import functional as F

from sepnet.training.losses import FocalMaskLoss, MagnitudeL1Loss, MaskBCELoss, SpectralTargets
from sepnet.training.schedules import WarmupCosineLR


def random_targets(seed: int = 0) -> tuple[torch.Tensor, SpectralTargets]:
    g = torch.Generator().manual_seed(seed)
    stems = torch.randn(2, 4, 2, 16, 5, dtype=torch.complex64, generator=g)
    targets = SpectralTargets.from_spectrograms(stems, [0, 3], stems.sum(1))
    masks = torch.rand(2, 2, 2, 16, 5, generator=g)
    return masks, targets


MODULATIONS = pytest.mark.parametrize("modulation", FocalMaskLoss.MODULATIONS)


@MODULATIONS
def test_focal_with_gamma_0_and_no_alpha_is_bce(modulation):
    masks, targets = random_targets()
    bce = MaskBCELoss()(masks, targets)
    torch.testing.assert_close(FocalMaskLoss(gamma=0.0, alpha=None, modulation=modulation)(masks, targets), bce)
    # alpha weights the two terms; 0.5 halves both.
    torch.testing.assert_close(FocalMaskLoss(gamma=0.0, alpha=0.5, modulation=modulation)(masks, targets), bce / 2)
    # Focusing only ever shrinks each element's loss.
    assert FocalMaskLoss(gamma=2.0, modulation=modulation)(masks, targets) < bce


def test_quality_focal_is_minimised_at_the_target_and_classic_focal_is_not():
    targets = SpectralTargets(
        ideal_masks=torch.tensor([0.2]).reshape(1, 1, 1, 1, 1),
        target_magnitudes=torch.ones(1, 1, 1, 1, 1),
        mixture_magnitude=torch.ones(1, 1, 1, 1),
    )
    grid = torch.linspace(0.01, 0.99, 981)

    def minimiser(loss) -> float:
        values = torch.stack([loss(p.reshape(1, 1, 1, 1, 1), targets) for p in grid])
        return grid[values.argmin()].item()

    assert minimiser(FocalMaskLoss(gamma=2.0, modulation="quality")) == pytest.approx(0.2, abs=0.002)
    assert minimiser(MaskBCELoss()) == pytest.approx(0.2, abs=0.002)
    assert minimiser(FocalMaskLoss(gamma=2.0, modulation="classic")) == pytest.approx(0.373, abs=0.005)


@MODULATIONS
def test_focal_down_weights_what_is_already_right(modulation):
    _, targets = random_targets()
    good = targets.ideal_masks.clamp(0.05, 0.95)
    bad = 1 - good
    focal, bce = FocalMaskLoss(gamma=2.0, modulation=modulation), MaskBCELoss()
    # The focal/BCE ratio is smaller for good masks than for bad ones.
    assert focal(good, targets) / bce(good, targets) < focal(bad, targets) / bce(bad, targets)


def test_focal_gradient_flows_and_bad_settings_are_refused():
    masks, targets = random_targets()
    masks.requires_grad_(True)
    FocalMaskLoss(gamma=2.0, alpha=0.25)(masks, targets).backward()
    assert torch.isfinite(masks.grad).all() and masks.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="alpha"):
        FocalMaskLoss(alpha=1.5)
    with pytest.raises(ValueError, match="gamma"):
        FocalMaskLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="modulation"):
        FocalMaskLoss(modulation="retina")


def test_l1_is_zero_for_a_perfect_magnitude_and_grows_with_error():
    masks, targets = random_targets()
    l1 = MagnitudeL1Loss()
    perfect = targets.target_magnitudes / targets.mixture_magnitude[:, None]
    assert l1(perfect, targets) < 1e-5
    torch.testing.assert_close(l1(torch.zeros_like(masks), targets), targets.target_magnitudes.mean())


def test_warmup_cosine_warms_up_then_decays_to_the_floor():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosineLR(optimizer, total_steps=100, warmup_fraction=0.1, min_lr_ratio=0.01)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] < lrs[5] < lrs[9] < 1.0
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def make_targets(batch=2, stems=4, bins=16, frames=9):
    torch.manual_seed(0)
    stem_specs = torch.randn(batch, stems, 2, bins, frames, dtype=torch.complex64)
    return SpectralTargets.from_spectrograms(stem_specs, [0, 3], stem_specs.sum(1))


def test_ideal_ratio_masks_over_all_stems():
    targets = make_targets()
    assert targets.ideal_masks.shape == (2, 2, 2, 16, 9)
    assert 0 <= targets.ideal_masks.min() and targets.ideal_masks.max() <= 1


def test_unweighted_bce_is_plain_bce():
    targets = make_targets()
    masks = torch.rand_like(targets.ideal_masks)
    expected = F.binary_cross_entropy(masks.clamp(1e-6, 1 - 1e-6), targets.ideal_masks)
    torch.testing.assert_close(MaskBCELoss("none")(masks, targets), expected)


def test_magnitude_weighting_ignores_silent_bins():
    targets = make_targets()
    masks = targets.ideal_masks.clone()
    targets.mixture_magnitude[..., :4, :] = 0  # silent low bins
    masks[..., :4, :] = 1 - masks[..., :4, :]  # wrong there only
    assert MaskBCELoss("none")(masks, targets) > MaskBCELoss("magnitude")(masks, targets) + 0.05
    perfect = MaskBCELoss("magnitude")(targets.ideal_masks, targets)
    torch.testing.assert_close(MaskBCELoss("magnitude")(masks, targets), perfect)


def test_power_weighting_favours_loud_bins_over_magnitude_weighting():
    targets = make_targets()
    targets.mixture_magnitude.fill_(1.0)
    targets.mixture_magnitude[..., :4, :] = 10.0  # a few loud bins
    wrong_loud = targets.ideal_masks.clone()
    wrong_loud[..., :4, :] = 1 - wrong_loud[..., :4, :]
    # An error in the loud bins weighs 10x (magnitude) or 100x (power) one elsewhere.
    excess = {w: (MaskBCELoss(w)(wrong_loud, targets) - MaskBCELoss(w)(targets.ideal_masks, targets)).item()
             for w in ("magnitude", "power")}
    assert excess["power"] > excess["magnitude"] > 0


def test_unknown_weighting_is_refused():
    with pytest.raises(ValueError, match="weighting"):
        MaskBCELoss("loud")
