import math

import pytest
import torch

from sepnet.dsp.frontend import SpectralFrontEnd


def test_ones_masks_round_trip_above_60_db():
    front_end = SpectralFrontEnd()
    torch.manual_seed(0)
    # Band-limited below the dropped Nyquist bin, as any resampled audio is.
    t = torch.arange(22050 * 2) / 22050
    wave = torch.stack([torch.sin(2 * math.pi * 440 * t), 0.5 * torch.sin(2 * math.pi * 3000 * t + 1)])[None]
    wave = wave + 0.01 * torch.nn.functional.avg_pool1d(torch.randn(1, 2, wave.shape[-1] + 1), 2, 1)
    _, spec = front_end(wave)
    assert spec.shape[-2] == 512
    restored = front_end.istft(spec * torch.ones_like(spec.real), wave.shape[-1])
    snr = 10 * torch.log10(wave.square().sum() / (wave - restored).square().sum())
    assert snr > 60, f"round trip only {snr:.1f} dB"


@pytest.mark.parametrize("samples", [513, 1000, 22050, 22051])
def test_shapes_for_any_length(samples):
    front_end = SpectralFrontEnd()
    model_input, spec = front_end(torch.randn(3, 2, samples))
    frames = front_end.num_frames(samples)
    assert model_input.shape == (3, 2, 512, frames) and spec.shape == model_input.shape
    assert front_end.istft(spec, samples).shape == (3, 2, samples)


def test_statistics_fitted_once_and_stored_as_buffers():
    front_end = SpectralFrontEnd()
    assert not front_end.fitted
    waves = [torch.randn(2, 2, 22050) * 0.1 for _ in range(3)]
    front_end.fit_statistics(waves)
    assert front_end.fitted
    state = front_end.state_dict()
    assert {"bin_mean", "bin_std", "fitted"} <= set(state)
    normalised, _ = front_end(torch.cat(waves))
    # Standardised per bin over the data it was fitted on.
    assert normalised.mean().abs() < 1e-3
    assert (normalised.std(dim=(0, 1, 3)) - 1).abs().max() < 1e-2
