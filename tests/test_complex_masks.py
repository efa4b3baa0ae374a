"""Phase-aware (complex) masks through the contract: models that give them, the Separator that applies them,
the knobs, and the losses that train them (waveform L1, multi-resolution STFT)."""

from __future__ import annotations

import math

import pytest
import torch

from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.dsp.masking import mask_magnitude, masked_spectra, scale_masks
from sepnet.inference.separator import InferenceSettings, Separator
from sepnet.models import SeparationModel
from sepnet.models.band_split import BandSplitRNN

FOUR = ["bass", "drums", "other", "vocals"]
SMALL = {"n_bins": 64, "audio_channels": 2, "features": 8, "hidden_size": 8, "num_layers": 1, "band_widths": [8, 16], "band_counts": [4, 2]}


class Rotation(SeparationModel):
    """Every stem's mask is ``scale · e^(j angle)``, for every bin and frame."""

    def __init__(self, angle: float, scale: float = 1.0):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = ["vocals"], 64, 2
        self.mask_kind = "complex"
        self.angle, self.scale = angle, scale

    def forward(self, x):
        b, c, f, t = x.shape
        part = torch.tensor([math.cos(self.angle), math.sin(self.angle)]) * self.scale
        return part.expand(b, 1, c, f, t, 2).clone()


def test_the_separator_applies_complex_masks_with_their_phase():
    front_end = SpectralFrontEnd(sample_rate=8000, n_fft=126, hop_length=32, n_bins=64)
    mixture = torch.randn(2, 2, 4000)
    with torch.no_grad():
        same = Separator(front_end, Rotation(0.0)).train()(mixture)
        negated = Separator(front_end, Rotation(math.pi)).train()(mixture)
    torch.testing.assert_close(same[:, 0], mixture, atol=1e-4, rtol=0)  # e^0 = 1: the mixture itself
    torch.testing.assert_close(negated[:, 0], -mixture, atol=1e-4, rtol=0)  # e^(j pi) = -1: its phase inverted


def test_the_knobs_scale_and_clip_a_complex_masks_magnitude_and_keep_its_phase():
    masks = torch.tensor([0.3, 0.4]).expand(1, 1, 2, 3, 5, 2).clone()  # |m| = 0.5
    scaled = scale_masks(masks, 4.0, True, 0.0)
    torch.testing.assert_close(mask_magnitude(scaled), torch.ones(1, 1, 2, 3, 5))  # 2.0 clipped to 1
    torch.testing.assert_close(scaled / mask_magnitude(scaled)[..., None], masks / 0.5)  # same phase
    assert scale_masks(masks, 1.0, True, 0.6).abs().max() == 0  # below the threshold
    spectra = masked_spectra(masks, torch.ones(1, 2, 3, 5, dtype=torch.complex64))
    torch.testing.assert_close(spectra, torch.full((1, 1, 2, 3, 5), 0.3 + 0.4j))


@pytest.mark.parametrize("frames", [1, 9])
def test_band_split_complex_masks_are_shares_turned_by_a_phase(frames):
    torch.manual_seed(0)
    model = BandSplitRNN(FOUR, **SMALL, complex_masks=True)
    assert model.mask_kind == "complex"
    x = torch.randn(2, 2, 64, frames, requires_grad=True)
    masks = model(x)
    assert masks.shape == (2, 4, 2, 64, frames, 2)
    magnitude = mask_magnitude(masks)
    torch.testing.assert_close(magnitude.sum(1), torch.ones(2, 2, 64, frames))  # softmax shares, phase apart
    masks.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    real = BandSplitRNN(FOUR, **SMALL)
    assert real.mask_kind == "real" and sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in real.parameters())


@pytest.mark.parametrize("loss", ["waveform", "mrstft", "magnitude"])
def test_complex_masks_train_end_to_end_under_bf16_autocast(tiny_run, loss):
    from sepnet.train import run_training

    cfg = tiny_run("model=band_split", "model.complex_masks=true", f"loss={loss}", "logger=none",
                   "trainer.precision=bf16-mixed", "trainer.max_epochs=1")
    _, summary = run_training(cfg)
    assert math.isfinite(summary["best_val_sdr"])


def test_a_loss_on_mask_values_refuses_complex_masks_in_one_line(tiny_run):
    from sepnet.errors import SepnetError
    from sepnet.train import run_training

    cfg = tiny_run("model=band_split", "model.complex_masks=true", "loss=bce", "logger=none", "trainer.max_epochs=1")
    with pytest.raises(SepnetError, match="gives complex masks but MaskBCELoss trains real masks; use loss=magnitude"):
        run_training(cfg)


def test_inference_settings_reach_complex_masks_in_separate_and_evaluate():
    front_end = SpectralFrontEnd(sample_rate=8000, n_fft=126, hop_length=32, n_bins=64)
    mixture = torch.randn(1, 2, 4000)
    with torch.no_grad():
        half = Separator(front_end, Rotation(0.0, scale=0.5), InferenceSettings(mask_scale=2.0)).eval()(mixture)
    torch.testing.assert_close(half[:, 0], mixture, atol=1e-4, rtol=0)
