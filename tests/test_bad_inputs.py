"""One test per bad input: the exact one-line message a user sees, and nothing already written is lost.

Cases that need code from other issues (``separate`` on 0.1 s and 10-minute files,
track names like ``../../x`` when writing estimates, ``init.pretrained`` with
another model's checkpoint, ``merge`` of incompatible checkpoints) are added
with that code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepnet.data import SeparationDataModule
from sepnet.errors import SepnetError
from sepnet.sources import StemFolderSource

RATE = 22050
STEMS = ("bass", "drums", "other", "vocals")


def write_dataset(root: Path, seconds: float = 0.5) -> Path:
    """A valid stem-folder dataset: one track per split, ``seconds`` of quiet noise per stem."""
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        for stem in STEMS:
            path = root / split / f"{split}_song" / f"{stem}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal((round(seconds * RATE), 2)).astype(np.float32), RATE)
    return root


def fingerprint(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


SKIP_HINT = " (or set data.on_error=skip to leave broken tracks out)"


def load(root: Path, **kwargs) -> SeparationDataModule:
    # The decoded-audio cache lives beside the data, so the data folder itself is only read.
    kwargs.setdefault("cache_dir", str(root.parent / "cache"))
    data = SeparationDataModule(StemFolderSource(str(root)), chunk_seconds=0.2, val_chunk_seconds=0.2, **kwargs)
    data.prepare_data()
    data.setup("fit")
    return data


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "data")


def expect_error(root: Path, message: str, **kwargs) -> None:
    before = fingerprint(root)
    with pytest.raises(SepnetError) as error:
        load(root, **kwargs)
    assert str(error.value) == message
    assert fingerprint(root) == before  # the data is never touched


def vocals(root: Path) -> Path:
    return root / "train" / "train_song" / "vocals.wav"


def test_empty_wav(dataset):
    sf.write(vocals(dataset), np.zeros((0, 2), np.float32), RATE)
    expect_error(dataset, f"'{vocals(dataset)}' is empty (0 samples); re-export it or remove the track" + SKIP_HINT)


def test_truncated_wav(dataset):
    vocals(dataset).write_bytes(vocals(dataset).read_bytes()[:30])  # cut inside the header
    expect_error(
        dataset,
        f"'{vocals(dataset)}' is not a readable audio file (soundfile: Error in WAV file. No 'data' chunk marker.); "
        "re-export it as WAV/FLAC or remove the track" + SKIP_HINT,
    )


def test_non_audio_file_named_wav(dataset):
    vocals(dataset).write_text("<html>404 not found</html>")
    expect_error(
        dataset,
        f"'{vocals(dataset)}' is not a readable audio file (soundfile: Format not recognised.); "
        "re-export it as WAV/FLAC or remove the track" + SKIP_HINT,
    )


def test_nan_samples(dataset):
    audio = np.zeros((RATE, 2), np.float32)
    audio[100, 1] = np.nan
    sf.write(vocals(dataset), audio, RATE, subtype="FLOAT")
    expect_error(
        dataset, f"'{vocals(dataset)}' contains NaN/Inf samples; re-export it (e.g. as 24-bit PCM) or remove the track" + SKIP_HINT
    )


def test_three_channel_file(dataset):
    sf.write(vocals(dataset), np.zeros((RATE, 3), np.float32), RATE)
    expect_error(dataset, f"'{vocals(dataset)}' has 3 channels; sepnet reads mono or stereo: downmix it to stereo first" + SKIP_HINT)


def test_missing_stem(dataset):
    vocals(dataset).unlink()
    expect_error(
        dataset,
        f"folder '{dataset / 'train' / 'train_song'}' has no file for stem(s) vocals "
        "(looked for <stem>.wav/.flac/.ogg/.mp3/.aiff); add it or remove the track" + SKIP_HINT,
    )


def test_unknown_stem_name(dataset):
    expect_error(
        dataset,
        f"data.stems has piano, which '{dataset / 'train'}' does not hold; valid stems: bass, drums, other, vocals",
        stems=["bass", "piano"],
    )


def test_one_sample_track_is_skipped_by_name_and_a_split_of_only_such_tracks_is_refused(dataset, caplog):
    short = dataset / "train" / "tiny_song"
    short.mkdir()
    for stem in STEMS:
        sf.write(short / f"{stem}.wav", np.zeros((1, 2), np.float32), RATE)
    with caplog.at_level(logging.WARNING, logger="sepnet.data"):
        data = load(dataset)
    assert [t.name for t in data.tracks["train"]] == ["train_song"]
    assert "skipping 1 train track(s) shorter than one chunk: tiny_song" in caplog.text

    for stem in STEMS:  # now the only train track is the 1-sample one
        sf.write(dataset / "train" / "train_song" / f"{stem}.wav", np.zeros((1, 2), np.float32), RATE)
    expect_error(
        dataset,
        f"the train split of '{dataset / 'train'}' has no usable track (each needs all of bass, drums, other, vocals "
        "and at least 0.2 s)",
    )


def test_mismatched_stem_lengths_are_trimmed_to_the_shortest(dataset):
    sf.write(vocals(dataset), np.zeros((RATE // 4, 2), np.float32), RATE)  # 0.25 s against 0.5 s
    data = load(dataset)
    assert data.tracks["train"][0].audio.shape == (4, 2, RATE // 4)


@pytest.mark.parametrize("file_rate", [48000, 8000])
def test_other_sample_rates_are_resampled(dataset, file_rate):
    sf.write(vocals(dataset), np.zeros((file_rate // 2, 2), np.float32), file_rate)  # 0.5 s
    data = load(dataset)
    assert data.tracks["train"][0].audio.shape == (4, 2, RATE // 2)


# -- entry points: one line on stderr, exit status 2, nothing written or lost --


def run_train(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sepnet.train", *args], capture_output=True, text=True, timeout=180, cwd=cwd, check=False
    )


def test_config_typo_is_one_line_and_writes_nothing(tmp_path):
    result = run_train("optim.lrr=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            "sepnet: error: optim.lrr is not a setting of this run; did you mean optim.lr? "
            "(+optim.lrr=... adds a new key on purpose)"
        )
    ]
    assert not (tmp_path / "run").exists()


def test_config_typo_in_a_chosen_group_option(tmp_path):
    result = run_train("sched=plateau", "sched.scheduler.patiense=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            "sepnet: error: sched.scheduler.patiense is not a setting of this run; did you mean "
            "sched.scheduler.patience? (+sched.scheduler.patiense=... adds a new key on purpose)"
        )
    ]


@pytest.mark.slow
def test_corrupt_file_through_the_entry_point_is_one_line(dataset, tmp_path):
    vocals(dataset).write_text("not audio")
    run_dir = tmp_path / "run"
    result = run_train("data=stem_folder", f"data.source.root={dataset}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"sepnet: error: '{vocals(dataset)}' is not a readable audio file (soundfile: Format not recognised.); "
        "re-export it as WAV/FLAC or remove the track" + SKIP_HINT
    )
    assert not (run_dir / "checkpoints").exists()


def test_output_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file the user keeps")
    result = run_train(f"hydra.run.dir={blocker / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            f"sepnet: error: output folder '{blocker / 'run'}' cannot be written (Not a directory); "
            "choose another with hydra.run.dir=<folder> or fix its permissions"
        )
    ]
    assert blocker.read_text() == "a file the user keeps"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; run the suite as a user")
def test_read_only_output_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "kept.txt").write_text("earlier results")
    locked.chmod(0o555)
    try:
        result = run_train(f"hydra.run.dir={locked / 'run'}")
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            f"sepnet: error: output folder '{locked / 'run'}' cannot be written (Permission denied); "
            "choose another with hydra.run.dir=<folder> or fix its permissions"
        )
    ]
    assert (locked / "kept.txt").read_text() == "earlier results"
