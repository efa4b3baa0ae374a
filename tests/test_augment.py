"""Augmentation from the real configs: probabilities within binomial tolerance, ranges, mixture = sum of stems."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hydra.utils import instantiate

from sepnet.data.augment import Augment, SilenceStems
from sepnet.data.datamodule import RandomChunks, Track
from sepnet.errors import SepnetError, user_error_in

DRAWS = 3000
TARGETS = np.array([False, False, False, True])  # data.target_stems=[vocals]


def within_binomial(hits: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(hits / n - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def examples(augment: Augment, draws: int = DRAWS) -> list[dict]:
    """``draws`` training examples from 8 constant tracks: every stem has 1.0 on the left and 2.0 on the right."""
    stem = np.stack([np.full(400, 1.0, np.float32), np.full(400, 2.0, np.float32)])
    tracks = [Track(f"t{i}", [stem] * 4) for i in range(8)]
    dataset = RandomChunks(tracks, 100, draws, seed=0, augment=augment, targets=TARGETS)
    return [dataset[(0, i)] for i in range(draws)]


def test_remix_silence_probabilities_and_ranges(tiny_run):
    cfg = tiny_run("augment=remix_silence", "augment.sign_flip.prob=0.5")
    augment = instantiate(cfg.augment)
    assert augment.remix_prob == 0.5 and augment.silence.others_prob == augment.silence.target_prob == 0.1
    batch = examples(augment)
    stems = np.stack([e["stems"].numpy()[..., 0] for e in batch])  # (draws, stems, channels): constant chunks
    for e in batch[:50]:
        np.testing.assert_allclose(e["mixture"].numpy(), e["stems"].numpy().sum(0), rtol=1e-6)

    remixed = sum(e["track"].startswith("remix:") for e in batch)
    assert within_binomial(remixed, DRAWS, 0.5)
    silent = np.all(stems == 0, axis=2)  # (draws, stems)
    others_silenced = silent[:, ~TARGETS].all(1) & ~silent[:, TARGETS].any(1)
    target_silenced = silent[:, TARGETS].all(1) & ~silent[:, ~TARGETS].any(1)
    assert within_binomial(int(others_silenced.sum()), DRAWS, 0.1)
    assert within_binomial(int(target_silenced.sum()), DRAWS, 0.1)
    assert (others_silenced | target_silenced).sum() == silent.any(1).sum()  # nothing else goes silent

    sounding = stems[~silent]  # (n, channels)
    swapped = np.abs(sounding[:, 0]) > np.abs(sounding[:, 1])
    assert within_binomial(int(swapped.sum()), len(sounding), 0.5)
    flipped = sounding[:, 0] < 0
    assert within_binomial(int(flipped.sum()), len(sounding), 0.5)
    gains = np.abs(sounding).min(1)
    assert gains.min() >= 0.25 and gains.max() <= 1.25
    assert np.histogram(gains, bins=4, range=(0.25, 1.25))[0].min() > len(gains) / 4 * 0.85  # uniform


def test_without_remix_stems_stay_aligned_and_none_changes_nothing(tiny_run):
    none = instantiate(tiny_run("augment=none").augment)
    for e in examples(none, 50):
        assert not e["track"].startswith("remix:")
        np.testing.assert_array_equal(e["stems"][:, 0].numpy(), 1.0)
    remix = instantiate(tiny_run("augment=remix", "augment.remix_prob=0.0").augment)
    assert not any(e["track"].startswith("remix:") for e in examples(remix, 200))


def test_silencing_needs_a_target_subset():
    stems = np.ones((4, 2, 10), np.float32)
    rng = np.random.default_rng(0)
    always = SilenceStems(others_prob=1.0, target_prob=0.0)
    assert always(stems, rng, np.ones(4, bool)) is stems  # every stem a target: nothing to silence
    np.testing.assert_array_equal(always(stems, rng, TARGETS)[:3], 0.0)


@pytest.mark.parametrize("override,message", [
    ("augment.remix_prob=1.5", "augment.remix_prob=1.5 is not a probability"),
    ("augment.silence.others_prob=0.7", "others_prob \\+ target_prob = 1.4 > 1"),
    ("augment.gain.low=2.0", "augment.gain needs 0 <= low <= high"),
])
def test_bad_settings_are_one_line(tiny_run, override, message):
    cfg = tiny_run("augment=remix_silence", override, *(["augment.silence.target_prob=0.7"] if "silence" in override else []))
    with pytest.raises(Exception) as error:  # raised inside hydra's instantiate: entry points unwrap it
        instantiate(cfg.augment)
    assert isinstance(user_error_in(error.value), SepnetError)
    assert re.search(message, str(user_error_in(error.value)))
