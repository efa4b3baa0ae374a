"""Full band at 44.1 kHz (frontend=fullband): a first-class configuration, trained end to end at test size."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_config
from omegaconf import OmegaConf

from sepnet.models.band_split import BandSplitRNN, bins_of_hz, split_bins
from sepnet.registry import MODEL, build


def test_band_layout_in_hz_fits_every_front_end(tmp_path):
    """One model YAML: the log's 32 bands up to 11 kHz at 22.05 kHz, 48 up to 22 kHz at 44.1 kHz, all bins covered."""
    for frontend, bands in (("default", 32), ("fullband", 48)):
        cfg = compose_config("train", [f"frontend={frontend}", "model=band_split"], tmp_path)
        model = build(MODEL, OmegaConf.to_container(cfg.model, resolve=True), "model")
        assert len(model.band_widths) == bands and sum(model.band_widths) == cfg.frontend.n_bins
    # the bands the shipped YAML gave before it was written in Hz
    assert split_bins(512, bins_of_hz([172.265625, 344.53125, 689.0625], 22050, 1024), [16, 8, 0]) == split_bins(
        512, [8, 16, 32], [16, 8, 8]
    )
    assert bins_of_hz([172.265625], 48000, 2048) == [7]


def test_bands_in_bins_or_hz_not_both():
    with pytest.raises(ValueError, match="either in bins"):
        BandSplitRNN(["vocals", "drums"], 64, 2, 8, 8, 1, [8], [0], band_widths_hz=[100.0], sample_rate=8000, n_fft=126)


@pytest.mark.slow
def test_the_fullband_recipe_trains_end_to_end_under_bf16_autocast(tiny_run, tmp_path):
    """experiment=sepnet_fullband at test size, bf16 autocast: 44.1 kHz data, 1025 bins, a checkpoint that separates."""
    from sepnet.checkpoints import checkpoint
    from sepnet.train import run_training

    # its own embedded set: one folder per rate, never rewritten at another
    cfg = tiny_run("experiment=sepnet_fullband", "logger=none", "trainer.precision=bf16-mixed", "data.examples_per_epoch=4",
                   f"data.source.root={tmp_path / 'synthetic_44100'}")
    assert cfg.data.sample_rate == 44100 and cfg.frontend.n_bins == 1025
    _, summary = run_training(cfg)
    assert math.isfinite(summary["best_val_sdr"])
    loaded = checkpoint.load(summary["best_checkpoint"])
    assert loaded.separator.front_end.sample_rate == 44100
    with torch.no_grad():
        stems = loaded.separator(torch.randn(1, 2, 44100))
    assert stems.shape == (1, 4, 2, 44100) and torch.isfinite(stems).all()
