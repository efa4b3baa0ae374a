import pytest
import torch

from sepnet.models import CRNN


@pytest.mark.parametrize("frames", [1, 7, 64])
@pytest.mark.parametrize("target_stems", [["vocals"], ["bass", "drums", "other", "vocals"]])
def test_crnn_masks_shape_and_range(frames, target_stems):
    model = CRNN(target_stems, hidden_size=8, num_layers=2, encoder_channels=(4, 8, 8), n_bins=64)
    x = torch.randn(3, 2, 64, frames, requires_grad=True)
    masks = model(x)
    assert masks.shape == (3, len(target_stems), 2, 64, frames)
    assert 0 <= masks.min() and masks.max() <= 1
    masks.mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


def test_crnn_rejects_wrong_input_shape():
    model = CRNN(["vocals"], hidden_size=8, num_layers=1, encoder_channels=(4,), n_bins=64)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(1, 2, 32, 5))


def test_crnn_rejects_bins_not_divisible():
    with pytest.raises(ValueError, match="divisible"):
        CRNN(["vocals"], encoder_channels=(4, 8, 8), n_bins=100)
