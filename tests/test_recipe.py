"""The winning recipe's parts: masks that share the mixture, the level-free magnitude loss, the weight average."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config

from sepnet.checkpoints import checkpoint
from sepnet.errors import SepnetError
from sepnet.models import CRNN, UNetCRNN
from sepnet.registry import MODEL, RefusedConfig, build
from sepnet.training.ema import WeightAverage
from sepnet.training.losses import MaskedMagnitudeLoss, MaskedSpectrumLoss, SpectralTargets

SMALL = {"hidden_size": 8, "num_layers": 1, "encoder_channels": (4, 8, 8), "n_bins": 64, "audio_channels": 2, "dropout": 0.0}
FOUR = ["bass", "drums", "other", "vocals"]
RECIPE = ("model=shared_unet", "loss=magnitude", "module=ema")  # benchmarks/README.md "Recipe ablations"


def shared(target_stems=FOUR, mask_activation="softmax", residual=False) -> UNetCRNN:
    torch.manual_seed(0)
    return UNetCRNN(target_stems, **SMALL, mask_activation=mask_activation, residual=residual)


# -- masks that share the mixture --
def test_softmax_masks_divide_every_bin_between_the_stems():
    masks = shared()(torch.randn(3, 2, 64, 7))
    assert masks.shape == (3, 4, 2, 64, 7)
    torch.testing.assert_close(masks.sum(1), torch.ones(3, 2, 64, 7))


@pytest.mark.parametrize("target_stems", [["vocals"], FOUR])
def test_a_residual_takes_part_of_each_bin(target_stems):
    model = shared(target_stems, residual=True)
    assert model.decoder[-1].conv.out_channels == (len(target_stems) + 1) * 2
    masks = model(torch.randn(2, 2, 64, 5))
    assert masks.shape == (2, len(target_stems), 2, 64, 5)
    total = masks.sum(1)
    assert 0 < total.min() and total.max() < 1  # the residual's softmax share is never exactly 0


def test_normalised_masks_sum_to_at_most_one_and_keep_sigmoids_that_fit():
    model = shared(mask_activation="normalised")
    logits = torch.tensor([[-3.0, -3.0, -3.0, -3.0], [3.0, 3.0, -9.0, 0.0]])[:, :, None, None, None]
    masks = model.masks_from_logits(logits)
    sig = torch.sigmoid(logits)
    torch.testing.assert_close(masks[0], sig[0])  # sum 0.19 <= 1: unchanged
    torch.testing.assert_close(masks[1], sig[1] / sig[1].sum())  # sum 2.4 > 1: scaled to 1
    random = model(torch.randn(2, 2, 64, 5))
    assert random.min() >= 0 and random.sum(1).max() <= 1 + 1e-6


def test_shared_masks_train_every_parameter_and_keep_the_unet_parameter_names():
    model = shared()
    x = torch.randn(2, 2, 64, 5, requires_grad=True)
    (model(x) * torch.randn(2, 4, 2, 64, 5)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    torch.manual_seed(0)
    unet = UNetCRNN(FOUR, **SMALL)  # the default: independent sigmoids, as before the option existed
    assert unet.mask_activation == "sigmoid" and not unet.residual
    assert {k: v.shape for k, v in unet.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    logits = torch.randn(2, 4, 2, 64, 5)
    torch.testing.assert_close(unet.masks_from_logits(logits), torch.sigmoid(logits))


def test_a_plain_crnn_takes_the_mask_options_too():
    model = CRNN(FOUR, **SMALL, mask_activation="softmax", residual=True)
    torch.testing.assert_close(model(torch.randn(1, 2, 64, 3)).sum(1).le(1.0), torch.ones(1, 2, 64, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"mask_activation": "tanh", "residual": False}, "mask_activation must be one of sigmoid, softmax, normalised"),
        ({"mask_activation": "normalised", "residual": True}, "residual: true needs mask_activation: softmax"),
    ],
)
def test_bad_mask_settings_are_one_line_naming_the_key(arguments, problem):
    node = {"_target_": "sepnet.models.UNetCRNN", "target_stems": FOUR, **SMALL, **arguments}
    node["encoder_channels"] = list(SMALL["encoder_channels"])
    with pytest.raises(RefusedConfig, match=problem):
        build(MODEL, node, "model")
    with pytest.raises(RefusedConfig, match="set residual: true"):
        build(MODEL, {**node, "target_stems": ["vocals"], "mask_activation": "softmax", "residual": False}, "model")


def test_shared_unet_config_builds_through_the_registry_and_round_trips_a_checkpoint(tmp_path):
    from conftest import write_fresh_checkpoint

    cfg = compose_config("train", ["model=shared_unet", "model.hidden_size=8", "model.num_layers=1"], tmp_path)
    separator = checkpoint.build_separator(cfg)
    assert type(separator.model) is UNetCRNN and separator.model.mask_activation == "softmax"
    state = write_fresh_checkpoint(cfg, tmp_path / "fresh.ckpt", seed=3, fill_statistics=0.0)
    loaded = checkpoint.load(tmp_path / "fresh.ckpt")
    assert loaded.separator.model.mask_activation == "softmax" and loaded.config.model.hidden_size == 8
    for key, value in loaded.separator.state_dict().items():
        torch.testing.assert_close(value, state[f"separator.{key}"], msg=key)
    mixture = 0.1 * torch.randn(1, 2, 22050)
    with torch.no_grad():
        assert loaded.separator(mixture).shape == (1, 4, 2, 22050)


# -- the magnitude loss --
def magnitude_targets(scale: float = 1.0) -> SpectralTargets:
    g = torch.Generator().manual_seed(0)
    stems = scale * torch.randn(2, 4, 2, 16, 5, dtype=torch.complex64, generator=g)
    return SpectralTargets.from_spectrograms(stems, [0, 1, 2, 3], stems.sum(1))


@pytest.mark.parametrize("norm", MaskedMagnitudeLoss.NORMS)
def test_magnitude_loss_is_zero_for_the_exact_magnitudes_and_level_free(norm):
    loss = MaskedMagnitudeLoss(norm)
    targets = magnitude_targets()
    exact = targets.target_magnitudes / targets.mixture_magnitude[:, None]  # mask . |X| == |S|
    assert loss(exact, targets).item() == pytest.approx(0.0, abs=1e-6)
    masks = torch.rand(2, 4, 2, 16, 5, generator=torch.Generator().manual_seed(1))
    assert loss(masks, targets).item() == pytest.approx(loss(masks, magnitude_targets(scale=30.0)).item(), rel=1e-4)


def test_magnitude_loss_values_on_a_constructed_case():
    """All-zero masks: L1 is mean|S| / mean|X| per example, MSE mean|S|^2 / mean|X|^2, averaged over examples."""
    targets = magnitude_targets()
    zero = torch.zeros(2, 4, 2, 16, 5)
    s, x = targets.target_magnitudes, targets.mixture_magnitude
    l1 = (s.mean(dim=(1, 2, 3, 4)) / x.mean(dim=(1, 2, 3))).mean()
    mse = (s.square().mean(dim=(1, 2, 3, 4)) / x.square().mean(dim=(1, 2, 3))).mean()
    torch.testing.assert_close(MaskedMagnitudeLoss("l1")(zero, targets), l1)
    torch.testing.assert_close(MaskedMagnitudeLoss("mse")(zero, targets), mse)
    with pytest.raises(ValueError, match="loss.norm must be one of l1, mse"):
        MaskedMagnitudeLoss("l2")


def test_magnitude_loss_wiener_term_scores_the_filtered_estimates_and_trains_through_them():
    """wiener_weight adds the distance after one Wiener iteration, the filter eval.wiener_iters=1 applies."""
    from sepnet.dsp.wiener import wiener

    targets = magnitude_targets()
    logits = torch.randn(2, 4, 2, 16, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    masks = torch.softmax(logits, dim=1)
    plain, with_wiener = MaskedMagnitudeLoss("mse"), MaskedMagnitudeLoss("mse", wiener_weight=0.5)
    filtered = wiener(masks * targets.mixture_spectrum[:, None], targets.mixture_spectrum, 1)
    s, x = targets.target_magnitudes, targets.mixture_magnitude
    wiener_term = ((filtered.abs() - s).square().mean(dim=(1, 2, 3, 4)) / x.square().mean(dim=(1, 2, 3))).mean()
    loss = with_wiener(masks, targets)
    torch.testing.assert_close(loss, plain(masks, targets) + 0.5 * wiener_term)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # A vocals-only model's filter gets the residual as an extra source, as the Separator's does.
    vocals = SpectralTargets.from_spectrograms(
        torch.randn(1, 4, 2, 16, 5, dtype=torch.complex64, generator=torch.Generator().manual_seed(2)), [3],
        torch.randn(1, 2, 16, 5, dtype=torch.complex64, generator=torch.Generator().manual_seed(3)),
    )
    assert targets.targets_cover_mixture and not vocals.targets_cover_mixture
    assert torch.isfinite(with_wiener(torch.rand(1, 1, 2, 16, 5), vocals))
    with pytest.raises(ValueError, match="loss.wiener_weight must be >= 0"):
        MaskedMagnitudeLoss("mse", wiener_weight=-1.0)


# -- the spectrum (phase-sensitive) loss --
@pytest.mark.parametrize("norm", MaskedSpectrumLoss.NORMS)
def test_spectrum_loss_is_zero_where_the_mask_reproduces_the_stems_and_level_free(norm):
    """Stems that are real multiples of the mixture are reproduced exactly by a real mask."""
    g = torch.Generator().manual_seed(0)
    mixture = torch.randn(2, 2, 16, 5, dtype=torch.complex64, generator=g)
    shares = torch.softmax(torch.randn(2, 4, 2, 16, 5, generator=g), dim=1)
    targets = SpectralTargets.from_spectrograms(shares * mixture[:, None], [0, 1, 2, 3], mixture)
    loss = MaskedSpectrumLoss(norm)
    assert loss(shares, targets).item() == pytest.approx(0.0, abs=1e-6)
    masks = torch.rand(2, 4, 2, 16, 5, generator=torch.Generator().manual_seed(1))
    louder = SpectralTargets.from_spectrograms(30.0 * shares * mixture[:, None], [0, 1, 2, 3], 30.0 * mixture)
    assert loss(masks, targets).item() == pytest.approx(loss(masks, louder).item(), rel=1e-4)


def test_spectrum_loss_counts_phase_and_adds_the_magnitude_term():
    """A stem in quadrature with the mixture has |S|/|X| as its magnitude-ideal mask but Re(S/X) = 0."""
    g = torch.Generator().manual_seed(0)
    mixture = torch.randn(1, 2, 16, 5, dtype=torch.complex64, generator=g)
    stems = torch.stack([0.5j * mixture, mixture - 0.5j * mixture], dim=1)  # (1, 2, C, F, T), sum = mixture
    targets = SpectralTargets.from_spectrograms(stems, [0, 1], mixture)
    magnitude_ideal = targets.target_magnitudes / targets.mixture_magnitude[:, None]
    assert MaskedMagnitudeLoss("mse")(magnitude_ideal, targets).item() == pytest.approx(0.0, abs=1e-6)
    phase_aware = (stems / mixture[:, None]).real  # [0, 1]: the error left is the quadrature part only
    spectrum = MaskedSpectrumLoss("mse")
    assert spectrum(phase_aware, targets) < spectrum(magnitude_ideal, targets)
    # error |0.5j X|^2 + |-0.5j X|^2 = 0.5 |X|^2 per bin, over 2 stems -> 0.25 x mean |X|^2
    assert spectrum(phase_aware, targets).item() == pytest.approx(0.25, rel=1e-4)
    mixed = MaskedSpectrumLoss("mse", magnitude_weight=0.5)
    expected = spectrum(phase_aware, targets) + 0.5 * MaskedMagnitudeLoss("mse")(phase_aware, targets)
    torch.testing.assert_close(mixed(phase_aware, targets), expected)
    with pytest.raises(ValueError, match="loss.magnitude_weight must be >= 0"):
        MaskedSpectrumLoss("mse", magnitude_weight=-1.0)
    with pytest.raises(ValueError, match="needs complex spectra"):
        spectrum(phase_aware, SpectralTargets(targets.ideal_masks, targets.target_magnitudes, targets.mixture_magnitude))


# -- the weight average --
def test_weight_average_follows_the_warmed_up_ema_and_copies_integer_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(decay=0.9)
    assert [ema.decay_at(n) for n in (0, 1, 80, 10_000)] == [0.1, 2 / 11, 0.9, 0.9]
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema.update(model)  # the first update copies
    torch.testing.assert_close(ema.shadow["0.weight"], torch.ones(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    decay = 2 / 11
    torch.testing.assert_close(ema.shadow["0.weight"], torch.full((2, 2), decay * 1.0 + (1 - decay) * 3.0))
    assert ema.shadow["1.num_batches_tracked"].item() == 7 and ema.updates == 2
    with ema.swapped_in(model):
        torch.testing.assert_close(model[0].weight, ema.shadow["0.weight"])
    torch.testing.assert_close(model[0].weight, torch.full((2, 2), 3.0))
    with pytest.raises(ValueError, match=r"module.ema_decay must be in \(0, 1\)"):
        WeightAverage(1.0)


def test_the_recipe_trains_scores_and_saves_the_average_and_resumes_from_the_trained_weights(tiny_run, tmp_path):
    """A tiny real run of the recipe (model=shared_unet loss=magnitude module=ema): checkpoints hold the EMA weights."""
    from sepnet.train import build_module, run_training
    from sepnet.training.module import EMA_KEY

    module, summary = run_training(tiny_run(*RECIPE, "logger=none"))
    assert module.separator.model.mask_activation == "softmax" and module.ema.decay == 0.999
    assert summary["best_val_sdr"] is not None and summary["best_val_sdr"] == summary["best_val_sdr"]  # not NaN
    raw = checkpoint.read_checkpoint(summary["last_checkpoint"])
    trained = raw[EMA_KEY]["trained_weights"]
    live = module.separator.model.state_dict()
    name = "bottleneck.lstm.weight_hh_l0"
    torch.testing.assert_close(trained[name], live[name])  # the module trains on its own weights
    torch.testing.assert_close(raw["state_dict"][f"separator.model.{name}"], module.ema.shadow[name])
    assert not torch.allclose(module.ema.shadow[name], live[name])
    # evaluate/separate/merge load the average.
    loaded = checkpoint.load(summary["last_checkpoint"])
    torch.testing.assert_close(loaded.separator.model.state_dict()[name], module.ema.shadow[name])
    # Resuming puts the trained weights back into the model and the average into the EMA.
    fresh = build_module(tiny_run(*RECIPE, "logger=none", output_dir=tmp_path / "again"))
    fresh.on_load_checkpoint(raw)
    fresh.load_state_dict(raw["state_dict"])
    torch.testing.assert_close(fresh.separator.model.state_dict()[name], live[name])
    torch.testing.assert_close(fresh.ema.shadow[name], module.ema.shadow[name])
    assert fresh.ema.updates == module.ema.updates > 0


def test_ema_decay_outside_the_range_is_refused(tiny_run):
    from sepnet.train import build_module

    with pytest.raises(SepnetError, match=r"module.ema_decay is 1.5; use a decay in \(0, 1\)"):
        build_module(tiny_run("module.ema_decay=1.5"))
