"""The band-split RNN: bands cover the spectrum, masks share the mixture, configs build it safely."""

import pytest
import torch
from omegaconf import OmegaConf

from sepnet.models import BandSplitRNN
from sepnet.models.band_split import split_bins
from sepnet.registry import MODEL, RefusedConfig, build

FOUR = ["bass", "drums", "other", "vocals"]
SMALL = {"n_bins": 64, "audio_channels": 2, "features": 8, "hidden_size": 6, "num_layers": 2,
         "band_widths": [4, 8], "band_counts": [4, 3]}  # fmt: skip


def test_bands_cover_every_bin_and_the_last_takes_the_rest():
    assert split_bins(513, [8, 16, 32], [16, 8, 8]) == [8] * 16 + [16] * 8 + [32] * 7 + [33]
    assert split_bins(64, [4, 8], [4, 3]) == [4, 4, 4, 4, 8, 8, 32]
    assert split_bins(16, [8], [2]) == [8, 8]


@pytest.mark.parametrize(
    "widths,counts,message",
    [([8, 16], [16, 8, 8], "must be equally long"), ([8, 0], [4, 4], "must be positive"),
     ([32], [20], "the bands cover 640 bins but the input has n_bins=513")],
)  # fmt: skip
def test_bands_that_cannot_cover_the_input_are_refused(widths, counts, message):
    with pytest.raises(ValueError, match=message):
        split_bins(513, widths, counts)


@pytest.mark.parametrize("conv_channels", [0, 4])
@pytest.mark.parametrize("frames", [1, 7, 40])
def test_softmax_masks_share_the_mixture_for_any_frame_count_and_every_weight_learns(frames, conv_channels):
    torch.manual_seed(0)
    model = BandSplitRNN(FOUR, **SMALL, conv_channels=conv_channels)
    x = torch.randn(3, 2, 64, frames, requires_grad=True)
    masks = model(x)
    assert masks.shape == (3, 4, 2, 64, frames) and masks.dtype == torch.float32
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(3, 2, 64, frames))
    (masks * torch.randn_like(masks)).sum().backward()
    # One frame has no recurrence across time, so those LSTMs' hidden-to-hidden weights cannot learn from it.
    learning = [p for name, p in model.named_parameters() if frames > 1 or "across_time.lstm.weight_hh" not in name]
    assert x.grad is not None and all(p.grad is not None and p.grad.abs().sum() > 0 for p in learning)


def test_bands_exchange_information_across_frequency():
    """Changing the lowest band's input changes the top band's masks: the across-bands BiLSTM carries it."""
    torch.manual_seed(0)
    model = BandSplitRNN(FOUR, **SMALL).eval()
    x = torch.randn(1, 2, 64, 5)
    moved = x.clone()
    moved[:, :, :4] = torch.randn(1, 2, 4, 5)  # a new lowest band (a constant shift would be normalised away)
    with torch.no_grad():
        top, top_moved = model(x)[..., -32:, :], model(moved)[..., -32:, :]
    assert not torch.allclose(top, top_moved)


def test_the_conv_stem_gives_a_band_its_neighbours_bins():
    """With conv_channels, a band's masks hear the next band's edge bins before the split; without, only via the LSTM."""
    torch.manual_seed(0)
    model = BandSplitRNN(FOUR, **{**SMALL, "num_layers": 0}, conv_channels=4).eval()
    x = torch.randn(1, 2, 64, 5)
    moved = x.clone()
    moved[:, :, 4] = torch.randn(2, 5)  # the second band's first bin
    with torch.no_grad():
        first, first_moved = model(x)[..., :4, :], model(moved)[..., :4, :]
    assert not torch.allclose(first, first_moved)
    with pytest.raises(ValueError, match="conv_channels must be >= 0"):
        BandSplitRNN(FOUR, **SMALL, conv_channels=-1)


def test_a_single_target_needs_the_residual_output():
    with pytest.raises(ValueError, match="set residual: true"):
        BandSplitRNN(["vocals"], **SMALL)
    model = BandSplitRNN(["vocals"], **SMALL, residual=True)
    masks = model(torch.randn(2, 2, 64, 3))
    assert masks.shape == (2, 1, 2, 64, 3) and 0 <= masks.min() and masks.max() <= 1


def test_bf16_autocast_keeps_masks_float32_and_summing_to_one():
    model = BandSplitRNN(FOUR, **SMALL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks = model(torch.randn(2, 2, 64, 6))
    assert masks.dtype == torch.float32
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 2, 64, 6))


def test_the_config_builds_through_the_registry_and_refuses_what_it_cannot_take(tiny_run):
    node = OmegaConf.to_container(tiny_run("model=band_split").model, resolve=True)
    model = build(MODEL, node, "model")
    assert isinstance(model, BandSplitRNN) and sum(model.band_widths) == node["n_bins"]
    with pytest.raises(RefusedConfig, match=r"model.encoder_channels is not an argument of BandSplitRNN"):
        build(MODEL, {**node, "encoder_channels": [4, 8]}, "model")
    with pytest.raises(RefusedConfig, match=r"model cannot build BandSplitRNN \(the bands cover"):
        build(MODEL, {**node, "band_counts": [100, 8, 8]}, "model")


def test_the_shipped_config_has_the_documented_size(tiny_run):
    """conf/model/band_split.yaml as shipped: 32 bands over 513 bins, a conv stem, one block, about 3.1M parameters."""
    cfg = tiny_run("model=band_split", "model.features=64", "model.hidden_size=64", "model.num_layers=1")
    model = build(MODEL, OmegaConf.to_container(cfg.model, resolve=True), "model")
    assert len(model.band_widths) == 32
    assert model.stem is not None and 3.0e6 < sum(p.numel() for p in model.parameters()) < 3.2e6


def test_the_experiment_trains_and_its_checkpoint_rebuilds_and_separates(tiny_run, tmp_path):
    """experiment=sepnet_band_split at test size: a real run, its checkpoint rebuilt from the path alone."""
    import math

    from sepnet.checkpoints import checkpoint
    from sepnet.train import run_training

    _, summary = run_training(tiny_run("experiment=sepnet_band_split", "model=band_split", "logger=none"))
    assert math.isfinite(summary["best_val_sdr"])
    loaded = checkpoint.load(tmp_path / "run" / "checkpoints" / "best.ckpt")  # weights: the EMA average
    assert isinstance(loaded.separator.model, BandSplitRNN) and loaded.config.optim.lr == 3e-3
    mixture = torch.randn(2, 2, 22050)
    with torch.no_grad():
        stems = loaded.separator(mixture)
    assert stems.shape == (2, 4, 2, 22050) and torch.isfinite(stems).all()


def test_an_input_of_the_wrong_shape_names_the_shape_expected():
    with pytest.raises(ValueError, match=r"expected input \(batch, 2, 64, frames\), got \(1, 1, 64, 5\)"):
        BandSplitRNN(FOUR, **SMALL)(torch.randn(1, 1, 64, 5))
