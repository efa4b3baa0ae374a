import pytest
import torch
from torch.nn import functional as F

from sepnet.losses import MaskBCELoss, SpectralTargets


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


def test_unknown_weighting_is_refused():
    with pytest.raises(ValueError, match="weighting"):
        MaskBCELoss("loud")
