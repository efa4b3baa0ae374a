"""The RoFormer family against the reference implementation (``bs-roformer``, lucidrains, a test-only
dependency), weights imported with ``python -m sepnet.import_weights``, and trained end to end."""

from __future__ import annotations

import math

import pytest
import torch

from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.inference.separator import Separator
from sepnet.models.roformer import BSRoFormer, MelRoFormer, bands_in_bins, reference_state_to_sepnet

try:  # the reference implementation (the dev extra; make install puts it in with --no-deps)
    import bs_roformer as reference
except ImportError:
    pytest.skip("the reference implementation is not installed: pip install --no-deps bs-roformer", allow_module_level=True)

STEMS = ["drums", "vocals"]
SAMPLE_RATE, N_FFT, HOP = 8000, 256, 64
BINS = N_FFT // 2 + 1
BS_BANDS = (2, 2, 2, 2, 4, 4, 4, 4, 8, 8, 16, 16, 24, 33)
TINY = {"dim": 16, "depth": 2, "heads": 2, "dim_head": 8}


def randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random (RMSNorm gains included, which start at 1), so no weight goes untested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.endswith("rotary_embed.freqs"):
                p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if p.ndim > 1 else 0.2) + (1.0 if name.endswith("gamma") else 0.0))


def reference_bs() -> torch.nn.Module:
    """The reference BSRoformer at a tiny size; ``num_residual_streams=1``: no hyper-connections, as the paper."""
    return reference.BSRoformer(
        stereo=True, num_stems=len(STEMS), time_transformer_depth=1, freq_transformer_depth=1, freqs_per_bands=BS_BANDS,
        num_residual_streams=1, stft_n_fft=N_FFT, stft_hop_length=HOP, stft_win_length=N_FFT, mask_estimator_depth=2,
        **TINY,
    ).eval()


def reference_mel() -> torch.nn.Module:
    """The reference MelBandRoformer at a tiny size: no linear-attention transformer, no value residual and no
    hyper-connections (the paper's model); its ``mask_estimator_depth=1`` is sepnet's 2 (it counts hidden layers)."""
    return reference.MelBandRoformer(
        stereo=True, num_stems=len(STEMS), time_transformer_depth=1, freq_transformer_depth=1, linear_transformer_depth=0,
        num_bands=12, sample_rate=SAMPLE_RATE, num_residual_streams=1, add_value_residual=False, stft_n_fft=N_FFT,
        stft_hop_length=HOP, stft_win_length=N_FFT, mask_estimator_depth=1, **TINY,
    ).eval()


def sepnet_bs() -> BSRoFormer:
    return BSRoFormer(STEMS, BINS, 2, band_widths=list(BS_BANDS), value_residual=True, mask_estimator_depth=2, **TINY).eval()


def sepnet_mel() -> MelRoFormer:
    return MelRoFormer(STEMS, BINS, 2, num_bands=12, sample_rate=SAMPLE_RATE, n_fft=N_FFT, mask_estimator_depth=2,
                       **TINY).eval()


@pytest.mark.parametrize("variant", ["bs", "mel"])
def test_estimates_and_masks_agree_with_the_reference_given_its_weights(variant):
    """What is compared, for both variants, within 1e-4 (absolute):

    - the separated waveforms: the reference's ``forward(audio)`` (its own STFT: n_fft 256, hop 64,
      Hann window of n_fft, centred, not normalised; its masks; its iSTFT) against sepnet's
      ``Separator(SpectralFrontEnd(8000, 256, 64, 129 bins), model)`` in eval mode (sepnet's STFT at the
      same settings, all 129 bins, the model's complex input, ``masked_spectra``, iSTFT), on the same
      0.5 s stereo random mixture, for 2 stems;
    - the complex masks: for BS-RoFormer the reference's mask-estimator outputs (caught by forward
      hooks, laid out as (stems, channels, bins, frames, re/im)) against sepnet's model output; for
      Mel-RoFormer the reference's per-band estimator outputs averaged over the bands holding each bin
      (its own ``freq_indices`` and ``num_bands_per_freq``) against sepnet's.
    sepnet's weights are the reference's (every parameter randomised first), mapped by
    :func:`reference_state_to_sepnet` and loaded strictly. BS-RoFormer's reference mixes values
    into later layers (hard-wired), so sepnet's ``value_residual=True`` there; depth 2 exercises it.
    """
    torch.manual_seed(0)
    ref, ours = (reference_bs(), sepnet_bs()) if variant == "bs" else (reference_mel(), sepnet_mel())
    randomise(ref)
    ours.load_state_dict(reference_state_to_sepnet(ref.state_dict()), strict=True)
    mixture = torch.randn(1, 2, SAMPLE_RATE // 2 // HOP * HOP)

    caught = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: caught.append(out)) for m in ref.mask_estimators]
    with torch.no_grad():
        expected = ref(mixture)
        front_end = SpectralFrontEnd(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_bins=BINS)
        separator = Separator(front_end, ours).eval()
        estimates = separator(mixture)
        masks = ours(front_end(mixture, "complex")[0])
    for hook in hooks:
        hook.remove()
    assert estimates.shape == expected.shape == (1, len(STEMS), 2, mixture.shape[-1])
    assert (estimates - expected).abs().max() < 1e-4

    per_band = torch.stack(caught, dim=1)  # (b, stems, t, (f s c)) over the bands' bins in order
    per_band = per_band.reshape(*per_band.shape[:3], -1, 2, 2)  # (b, n, t, f', s, c)
    if variant == "mel":
        bins = ref.freq_indices.reshape(-1, 2)[:, 0] // 2
        summed = torch.zeros(*per_band.shape[:3], BINS, 2, 2).index_add_(3, bins, per_band)
        per_band = summed / ref.num_bands_per_freq[:, None, None]
    expected_masks = per_band.permute(0, 1, 4, 3, 2, 5)  # (b, n, s, f, t, c)
    assert masks.shape == expected_masks.shape
    assert (masks - expected_masks).abs().max() < 1e-4


def test_the_yaml_layout_is_the_references_at_full_band_and_cut_at_22_khz():
    layout = {"band_widths": None, "band_widths_hz": [43.06640625, 86.1328125, 258.3984375, 516.796875, 1033.59375, 2756.25],
                  "band_counts": [24, 12, 8, 8, 8, 0]}
    assert tuple(bands_in_bins(1025, sample_rate=44100, n_fft=2048, **layout)) == reference.bs_roformer.DEFAULT_FREQS_PER_BANDS
    at_22k = bands_in_bins(512, sample_rate=22050, n_fft=1024, **layout)
    assert sum(at_22k) == 512 and len(at_22k) == 55 and at_22k[-1] == 32


def test_mel_bands_overlap_and_cover_every_bin():
    model = sepnet_mel()
    assert model.overlapping and int(model.bands_per_bin.min()) >= 1 and int(model.bands_per_bin.max()) == 2
    cut = MelRoFormer(STEMS, 100, 2, num_bands=12, sample_rate=SAMPLE_RATE, n_fft=N_FFT, **TINY)
    assert cut(torch.randn(1, 4, 100, 5)).shape == (1, 2, 2, 100, 5, 2)


@pytest.mark.parametrize("variant", ["bs", "mel"])
def test_mask_bound_limits_every_mask_and_keeps_its_phase(variant):
    """mask_bound=b: |mask| <= b in every bin, the unbounded model's phase, nearly its value where |mask| << b."""
    from sepnet.models.masks import soft_bound_complex

    build = {"bs": sepnet_bs, "mel": sepnet_mel}[variant]
    free, bounded = build(), build()
    randomise(free, seed=1)
    for mlp in free.mask_estimators:  # masks far above 1, as an untrained or diverging model may give
        for band in mlp:
            band[-2].weight.data *= 30
    bounded.mask_bound = 2.0
    bounded.load_state_dict(free.state_dict())
    x = torch.randn(2, 4, BINS, 9)
    with torch.no_grad():
        unbounded, limited = free(x), bounded(x)
    magnitude, limited_magnitude = unbounded.norm(dim=-1), limited.norm(dim=-1)
    assert magnitude.max() > 10 and limited_magnitude.max() <= 2.0 + 1e-5
    some = magnitude > 1e-3  # the phase of the masks that have one
    assert torch.allclose((limited / limited_magnitude[..., None])[some], (unbounded / magnitude[..., None])[some], atol=1e-4)
    small = magnitude < 0.2  # b tanh(r / b) = r (1 - r^2 / 3b^2 ...): within 0.4% below r = 0.2
    assert torch.allclose(limited_magnitude[small], magnitude[small], rtol=5e-3)
    zero = torch.zeros(3, 2, requires_grad=True)  # a zero mask has a gradient, not a NaN
    soft_bound_complex(zero, 1.0).sum().backward()
    assert torch.isfinite(zero.grad).all()
    with pytest.raises(ValueError, match="mask_bound must be a positive number"):
        BSRoFormer(STEMS, BINS, 2, band_widths=list(BS_BANDS), mask_bound=0.0, **TINY)


@pytest.mark.parametrize("option", ["bs_roformer", "mel_roformer"])
def test_roformers_train_end_to_end_under_bf16_autocast(tiny_run, option):
    from sepnet.train import run_training

    # bs_roformer with its masks bounded (the option), mel_roformer unbounded (the papers')
    bound = ["model.mask_bound=2.0"] if option == "bs_roformer" else []
    cfg = tiny_run(f"model={option}", "loss=mrstft", "logger=none", "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                   *bound)
    _, summary = run_training(cfg)
    assert math.isfinite(summary["best_val_sdr"])


def test_import_weights_turns_a_reference_state_dict_into_a_checkpoint_that_separates_as_the_reference(tmp_path):
    """python -m sepnet.import_weights on a tiny reference BSRoformer's saved state dict: the written checkpoint
    loads through sepnet's registry (data only) and its separator gives the reference's estimates."""
    from conftest import compose_config

    from sepnet.checkpoints.checkpoint import load
    from sepnet.import_weights import import_weights

    ref = reference_bs()
    randomise(ref, seed=1)
    weights = tmp_path / "reference.pth"
    torch.save({"state_dict": ref.state_dict()}, weights)
    out = tmp_path / "imported.ckpt"
    settings = [
        f"weights={weights}", f"out={out}", "model=bs_roformer", f"data.target_stems=[{','.join(STEMS)}]",
        f"frontend.sample_rate={SAMPLE_RATE}", f"frontend.n_fft={N_FFT}", f"frontend.hop_length={HOP}", f"frontend.n_bins={BINS}",
        f"model.band_widths=[{','.join(map(str, BS_BANDS))}]", "model.band_widths_hz=null", "model.band_counts=null",
        *[f"model.{k}={v}" for k, v in TINY.items()], "model.value_residual=true", "model.mlp_expansion=4",
    ]
    assert import_weights(compose_config("import_weights", settings, tmp_path)) == out
    loaded = load(out)
    assert loaded.lineage["imported_from"] == str(weights.resolve())
    mixture = torch.randn(1, 2, 63 * HOP)
    with torch.no_grad():
        expected = ref(mixture)
        estimates = loaded.separator(mixture)
    assert (estimates - expected).abs().max() < 1e-4


def test_import_weights_names_what_does_not_fit_in_one_line(tmp_path):
    from conftest import compose_config
    from omegaconf import OmegaConf

    from sepnet.checkpoints.importing import import_weights as importing
    from sepnet.errors import SepnetError
    from sepnet.import_weights import import_weights

    weights = tmp_path / "reference.pth"
    torch.save(reference_mel().state_dict(), weights)
    base = [f"weights={weights}", f"out={tmp_path / 'x.ckpt'}", f"frontend.sample_rate={SAMPLE_RATE}",
            f"frontend.n_fft={N_FFT}", f"frontend.hop_length={HOP}", f"frontend.n_bins={BINS}"]
    with pytest.raises(SystemExit) as stopped:
        import_weights(compose_config("import_weights", [*base, "model=bs_roformer"], tmp_path))
    assert stopped.value.code == 2
    cfg = compose_config("import_weights", [*base, "model=mel_roformer", "model.num_bands=12"], tmp_path)
    with pytest.raises(SepnetError, match="does not fit MelRoFormer as configured: .*other shapes"):
        importing(weights, {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "frontend", "model")})
