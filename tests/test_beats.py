"""Beat targets and beat F-measure for the rhythm head."""

import numpy as np
import pytest
import torch

from sepnet.data.beats import (
    activation_beat_times,
    beat_activation_target,
    beat_f_measure,
    chunk_beat_positions,
    drum_onset_times,
    positions_to_times,
)


def test_beat_f_measure_counts_hits_within_70_ms_once():
    reference = np.array([0.5, 1.0, 1.5, 2.0])
    assert beat_f_measure(reference, reference) == 1.0
    assert beat_f_measure(reference, reference + 0.06) == 1.0
    assert beat_f_measure(reference, reference + 0.08) == 0.0
    # Two hits of four references, two estimates: precision 1, recall 0.5.
    assert beat_f_measure(reference, np.array([0.5, 1.52])) == pytest.approx(2 / 3)
    # One estimate cannot match two references.
    assert beat_f_measure(np.array([1.0, 1.05]), np.array([1.02])) == pytest.approx(2 / 3)
    assert beat_f_measure(reference, np.array([])) == 0.0


def test_positions_render_to_frames_and_peak_picking_recovers_them():
    sample_rate, hop, samples = 22050, 256, 3 * 22050
    times = np.array([0.0, 0.41, 0.93, 1.5, 2.2, 2.9, 3.4])  # 3.4 s lies past the chunk
    positions = torch.stack([chunk_beat_positions(times, 0, samples, sample_rate)])
    assert (positions[0] >= 0).sum() == 6 and positions[0, 6:].eq(-1).all()
    frames = samples // hop + 1
    target = beat_activation_target(positions, hop, frames)
    assert target.shape == (1, frames) and target.max() == 1.0
    assert target[0, round(0.41 * sample_rate / hop)] == 1.0
    assert target[0, round(0.41 * sample_rate / hop) + 1] == 0.5
    estimates = activation_beat_times(target, sample_rate / hop, threshold=0.9)[0]
    reference = positions_to_times(positions, sample_rate)[0]
    assert beat_f_measure(reference, estimates) == 1.0
    np.testing.assert_allclose(estimates, reference, atol=hop / sample_rate)


def test_chunk_positions_are_relative_to_the_chunk():
    positions = chunk_beat_positions(np.array([1.0, 2.0, 3.0]), offset=22050, samples=22050, sample_rate=22050)
    assert positions[0] == 0 and positions[1:].eq(-1).all()


def test_drum_onsets_find_clicks():
    sample_rate = 22050
    rng = np.random.default_rng(0)
    clicks = np.array([0.25, 0.8, 1.3, 1.75, 2.4, 2.9])
    audio = 0.001 * rng.standard_normal((2, 3 * sample_rate))
    for t in clicks:
        start = round(t * sample_rate)
        audio[:, start : start + 400] += np.exp(-np.arange(400) / 60) * rng.standard_normal(400)
    onsets = drum_onset_times(audio, sample_rate)
    assert beat_f_measure(clicks, onsets) == 1.0
