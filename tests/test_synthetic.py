"""The embedded synthetic dataset: deterministic tracks, MUSDB18-HQ layout on disk, a safe cache."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepnet import STEMS
from sepnet.data.synthetic import GENERATOR_VERSION, ensure_synthetic_dataset, generate_track
from sepnet.errors import SepnetError

RATE = 22050
SMALL = {"train": 2, "valid": 1, "test": 1}
DURATION = 3.0
FILES = ("mixture", *STEMS)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """A 4-track, 3-second set generated once for the layout tests."""
    return ensure_synthetic_dataset(
        tmp_path_factory.mktemp("synthetic") / "data", sample_rate=RATE, tracks=SMALL, duration=DURATION, seed=0
    )


def _magnitudes(stereo: np.ndarray) -> np.ndarray:
    """|STFT| (frames, bins) of the channel mean: 1024-point Hann frames, hop 256."""
    frames = np.lib.stride_tricks.sliding_window_view(stereo.mean(0), 1024)[::256] * np.hanning(1024)
    return np.abs(np.fft.rfft(frames, axis=1))


def _band_shares(stereo: np.ndarray, bands: list[tuple[float, float]]) -> np.ndarray:
    """Fraction of the stem's energy in each (low, high) Hz band."""
    power = np.abs(np.fft.rfft(stereo.mean(0))) ** 2
    freqs = np.fft.rfftfreq(stereo.shape[-1], 1 / RATE)
    return np.array([power[(freqs >= low) & (freqs < high)].sum() for low, high in bands]) / power.sum()


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- one track


def test_generate_track_is_deterministic():
    stems, beats = generate_track(3, 2.0, RATE)
    again, beats_again = generate_track(3, 2.0, RATE)
    other, _ = generate_track(4, 2.0, RATE)
    assert set(stems) == set(STEMS)
    for stem in STEMS:
        np.testing.assert_array_equal(stems[stem], again[stem])
        assert not np.array_equal(stems[stem], other[stem])
    np.testing.assert_array_equal(beats, beats_again)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_track_is_well_formed(seed):
    stems, beats = generate_track(seed, DURATION, RATE)
    samples = int(DURATION * RATE)
    mixture = sum(stems.values())
    for stem, audio in stems.items():
        assert audio.shape == (2, samples) and audio.dtype == np.float32, stem
        assert np.isfinite(audio).all(), stem
        assert np.sqrt(np.mean(audio**2)) > 1e-3, f"{stem} is silent"
    assert np.abs(mixture).max() <= 0.9
    assert beats.dtype == np.float64 and np.all(np.diff(beats) > 0)
    assert beats.min() >= 0 and beats.max() < DURATION
    # A steady quarter-note grid between 80 and 150 BPM.
    spacing = np.diff(beats)
    np.testing.assert_allclose(spacing, spacing[0], atol=1e-9)
    assert 60 / 150 - 1e-9 <= spacing[0] <= 60 / 80 + 1e-9
    assert len(beats) >= int(DURATION / spacing[0])


def test_tracks_differ_in_tempo():
    tempos = {round(float(np.diff(generate_track(seed, 2.0, RATE)[1])[0]), 4) for seed in range(6)}
    assert len(tempos) > 1


def test_stems_overlap_in_frequency_but_are_distinct():
    bands = [(20, 250), (250, 1000), (1000, 4000)]
    for seed in range(3):
        stems, _ = generate_track(seed, DURATION, RATE)
        shares = {stem: _band_shares(audio, bands) for stem, audio in stems.items()}
        # Kick and bass share the lows; keys and voice the mids; snare, keys and voice the upper mids.
        assert shares["bass"][0] > 0.01 and shares["drums"][0] > 0.01
        assert shares["other"][1] > 0.01 and shares["vocals"][1] > 0.01
        assert min(shares["drums"][2], shares["other"][2], shares["vocals"][2]) > 1e-3
        magnitudes = {stem: _magnitudes(audio) for stem, audio in stems.items()}
        for a, b in itertools.combinations(STEMS, 2):
            correlation = np.corrcoef(stems[a].ravel(), stems[b].ravel())[0, 1]
            assert abs(correlation) < 0.2, (seed, a, b, correlation)
            similarity = np.sum(magnitudes[a] * magnitudes[b]) / np.sqrt(
                np.sum(magnitudes[a] ** 2) * np.sum(magnitudes[b] ** 2)
            )
            assert similarity < 0.8, (seed, a, b, similarity)


def test_unusual_rates_and_very_short_tracks():
    for rate, duration in [(8000, 1.0), (44100, 0.5), (16000, 0.01)]:
        stems, beats = generate_track(5, duration, rate)
        assert all(a.shape == (2, round(duration * rate)) and np.isfinite(a).all() for a in stems.values())
        assert np.all((beats >= 0) & (beats < duration))


def test_bad_parameters_are_user_errors():
    with pytest.raises(SepnetError, match="duration"):
        generate_track(0, 0.0, RATE)
    with pytest.raises(SepnetError, match="sample_rate"):
        generate_track(0, 1.0, 100)


# ----------------------------------------------------------------------------- the dataset on disk


def test_layout_on_disk(small_set):
    names = []
    for split, count in SMALL.items():
        tracks = sorted(p for p in (small_set / split).iterdir() if p.is_dir())
        assert len(tracks) == count
        names += [t.name for t in tracks]
        for track in tracks:
            lengths = set()
            for name in FILES:
                info = sf.info(str(track / f"{name}.wav"))
                assert (info.channels, info.samplerate, info.subtype) == (2, RATE, "PCM_16")
                lengths.add(info.frames)
            assert lengths == {int(DURATION * RATE)}
            beats = np.loadtxt(track / "beats.txt", ndmin=1)
            assert len(beats) > 2 and np.all(np.diff(beats) > 0)
            assert beats[0] >= 0 and beats[-1] < DURATION
    assert sorted(names) == [f"synth_{i:03d}" for i in range(sum(SMALL.values()))]
    manifest = json.loads((small_set / "manifest.json").read_text())
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert (manifest["sample_rate"], manifest["duration"], manifest["seed"], manifest["tracks"]) == (
        RATE,
        DURATION,
        0,
        SMALL,
    )
    assert not list(small_set.parent.glob("data.*")), "temporary folders left behind"


def test_files_match_generate_track(small_set):
    # The first test track is exactly what generate_track renders, quantised to 16 bits.
    manifest = json.loads((small_set / "manifest.json").read_text())
    track = small_set / "train" / manifest["track_names"]["train"][0]
    from sepnet.data.synthetic import _track_seed

    stems, beats = generate_track(_track_seed(0, "train", 0), DURATION, RATE)
    for stem in STEMS:
        written, _ = sf.read(str(track / f"{stem}.wav"), dtype="float32", always_2d=True)
        np.testing.assert_allclose(written.T, stems[stem], atol=2 / 32768)
    np.testing.assert_allclose(np.loadtxt(track / "beats.txt", ndmin=1), beats, atol=1e-6)


def test_mixture_is_the_sum_of_the_stems(small_set):
    for track in (small_set / "train").iterdir():
        audio = {name: sf.read(str(track / f"{name}.wav"), dtype="float64")[0] for name in FILES}
        total = sum(audio[stem] for stem in STEMS)
        # Five roundings of half a 16-bit step at most: four stems and the mixture.
        assert np.abs(audio["mixture"] - total).max() <= 3 / 32768
        assert np.abs(audio["mixture"]).max() <= 0.9


def test_cache_is_reused_and_invalidated(tmp_path):
    root = tmp_path / "nested" / "synthetic"
    tracks = {"train": 1, "test": 1}
    ensure_synthetic_dataset(root, sample_rate=8000, tracks=tracks, duration=1.0, seed=7)
    before = _mtimes(root)
    first_train = sf.read(str(root / "train" / "synth_000" / "bass.wav"))[0]

    assert ensure_synthetic_dataset(root, sample_rate=8000, tracks=tracks, duration=1.0, seed=7) == root
    assert _mtimes(root) == before, "a matching manifest must not rewrite anything"

    # Another split size regenerates, but a track's audio depends only on (seed, split, index).
    ensure_synthetic_dataset(root, sample_rate=8000, tracks={"train": 1, "test": 2}, duration=1.0, seed=7)
    assert json.loads((root / "manifest.json").read_text())["tracks"] == {"train": 1, "test": 2}
    assert len(list((root / "test").iterdir())) == 2
    np.testing.assert_array_equal(sf.read(str(root / "train" / "synth_000" / "bass.wav"))[0], first_train)

    ensure_synthetic_dataset(root, sample_rate=8000, tracks={"train": 1, "test": 2}, duration=0.5, seed=7)
    assert sf.info(str(root / "train" / "synth_000" / "mixture.wav")).frames == 4000
    assert sorted(p.name for p in tmp_path.joinpath("nested").iterdir()) == ["synthetic"]


def test_incomplete_dataset_is_regenerated(tmp_path):
    root = ensure_synthetic_dataset(tmp_path / "data", sample_rate=8000, tracks={"train": 1}, duration=0.5)
    (root / "train" / "synth_000" / "vocals.wav").unlink()
    ensure_synthetic_dataset(root, sample_rate=8000, tracks={"train": 1}, duration=0.5)
    assert (root / "train" / "synth_000" / "vocals.wav").is_file()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    from sepnet.data import synthetic
    calls = []

    def failing_track(*args):
        calls.append(args)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return generate_track(*args)

    monkeypatch.setattr(synthetic, "generate_track", failing_track)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_dataset(tmp_path / "data", sample_rate=8000, tracks={"train": 3}, duration=0.5)
    assert list(tmp_path.iterdir()) == []


def test_a_set_another_process_finished_first_is_kept(tmp_path, monkeypatch):
    """Two runs rendering the same set at once: the later one must not swap out the set the earlier
    one published and is already using (here: a decoded-audio cache file written into it)."""
    from sepnet.data import synthetic
    root = tmp_path / "data"
    write_dataset = synthetic._write_dataset

    def other_process_finishes_first(tmp, *args):
        write_dataset(tmp, *args)
        shutil.copytree(tmp, root)  # the other run's finished set, published while ours rendered
        (root / ".sepnet-cache").mkdir()
        (root / ".sepnet-cache" / "in-use.npy").write_bytes(b"x")

    monkeypatch.setattr(synthetic, "_write_dataset", other_process_finishes_first)
    assert ensure_synthetic_dataset(root, sample_rate=8000, tracks={"train": 1}, duration=0.5) == root
    assert (root / ".sepnet-cache" / "in-use.npy").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # our copy is gone


def test_root_that_is_a_file_is_a_user_error(tmp_path):
    root = tmp_path / "data"
    root.write_text("not a folder")
    with pytest.raises(SepnetError, match=str(root)):
        ensure_synthetic_dataset(root, tracks={"train": 1}, duration=0.5)


def test_foreign_folder_is_never_overwritten(tmp_path):
    root = tmp_path / "music"
    (root / "song").mkdir(parents=True)
    with pytest.raises(SepnetError, match="not hold a sepnet synthetic dataset"):
        ensure_synthetic_dataset(root, tracks={"train": 1}, duration=0.5)
    assert (root / "song").is_dir()


def test_unwritable_location_is_a_user_error(tmp_path):
    # A parent that is a file cannot hold the folder, whoever runs the test (root ignores permissions).
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SepnetError, match="cannot write"):
        ensure_synthetic_dataset(blocker / "data", tracks={"train": 1}, duration=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_empty_split_still_gets_a_folder(tmp_path):
    root = ensure_synthetic_dataset(tmp_path / "data", sample_rate=8000, tracks={"train": 1, "test": 0}, duration=0.5)
    assert (root / "test").is_dir() and not list((root / "test").iterdir())
