"""A file at a higher rate than the model's keeps the band the model does not hear (sepnet/commands/top_band.py)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import compose_config

from sepnet.commands.top_band import FRAME, shares
from sepnet.separate import run_separation

RATE = 44100


def band_energy(x: np.ndarray, low_hz: float) -> float:
    """Energy of ``x`` (samples, channels) above ``low_hz``."""
    spectrum = np.fft.rfft(x, axis=0)
    freqs = np.fft.rfftfreq(x.shape[0], 1 / RATE)
    return float(np.sum(np.abs(spectrum[freqs > low_hz]) ** 2))


@pytest.mark.parametrize("top_band", ["share", "drop"])
def test_a_44k_file_through_a_22k_model_keeps_its_top_octave_in_the_stems(tiny_checkpoint, tmp_path, capsys, top_band):
    noise = (0.1 * np.random.default_rng(0).standard_normal((3 * RATE, 2))).astype(np.float32)
    song = tmp_path / "noise.wav"
    sf.write(song, noise, RATE, subtype="FLOAT")
    cfg = compose_config(
        "separate",
        [f"ckpt={tiny_checkpoint}", f"input={song}", f"out={tmp_path / 'out'}", f"separate.top_band={top_band}"],
        tmp_path / "run",
    )
    paths = run_separation(cfg)
    line = next(line for line in capsys.readouterr().out.splitlines() if "the model does not hear" in line)
    assert "is at 44100 Hz and the model runs at 22050 Hz: the band above 11025 Hz" in line
    total = sum(sf.read(p, dtype="float32")[0] for p in paths if p.stem != "accompaniment")
    assert total.shape == noise.shape
    kept = band_energy(total, 11500) / band_energy(noise, 11500)
    if top_band == "share":
        assert 10 * np.log10(kept) > -1.0, f"only {10 * np.log10(kept):.1f} dB of the top octave kept"
        # and it is the mixture's band: the stems' sum matches the input there
        residual = band_energy(total - noise, 11500) / band_energy(noise, 11500)
        assert 10 * np.log10(residual) < -20
    else:
        assert 10 * np.log10(kept) < -40


def test_shares_sum_to_one_and_follow_the_stem_that_holds_the_highs():
    rng = np.random.default_rng(0)
    m = 5 * FRAME
    estimates = np.zeros((3, 2, m), np.float32)
    estimates[0] = 0.1 * rng.standard_normal((2, m))  # noise: all of the top band
    estimates[1] = np.sin(np.linspace(0, 20, m))[None]  # a low tone: none of it
    weights = shares(estimates)
    assert weights.shape == (3, 1, m)
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-5)
    assert weights[0].min() > 0.99 and weights[2].max() < 1e-6
    silent = shares(np.zeros((4, 1, 100), np.float32))
    np.testing.assert_allclose(silent, 0.25)
