"""Real files in tmp dirs: every bad input gives its error (or skip), and each source finds its tracks."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_RUN, compose_config, write_track
from hydra.utils import instantiate

from sepnet.data import sources
from sepnet.errors import SepnetError, user_error_in


def folder_data(tmp_path: Path, *overrides: str, stage: str | None = "fit"):
    """The data module of ``data=folder`` on ``tmp_path/{train,val}``, set up for ``stage``."""
    cfg = compose_config(
        "train",
        ["data=folder", f"data.train_dir={tmp_path / 'train'}", f"data.val_dir={tmp_path / 'val'}", *TINY_RUN, *overrides],
        tmp_path / "run",
    )
    datamodule = instantiate(cfg.data)
    if stage is not None:
        datamodule.prepare_data()
        datamodule.setup(stage)
    return datamodule


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Two good train tracks and one valid track (16 kHz, resampled to the model's 22.05 kHz)."""
    write_track(tmp_path / "train" / "a", seed=1)
    write_track(tmp_path / "train" / "b", seed=2, suffix=".flac")
    write_track(tmp_path / "val" / "c", seed=3)
    return tmp_path


def test_folder_source_reads_any_format_and_resamples(dataset):
    # Track b in every format at once: 32-bit int WAV, MP3 (where libsndfile has it), OGG, FLAC.
    b = dataset / "train" / "b"
    formats = {"bass": (".wav", "PCM_32"), "drums": (".mp3", None), "other": (".ogg", None), "vocals": (".flac", None)}
    if "MP3" not in sf.available_formats():
        formats["drums"] = (".wav", "PCM_16")
    for stem, (suffix, subtype) in formats.items():
        audio, rate = sf.read(b / f"{stem}.flac")
        (b / f"{stem}.flac").unlink()
        sf.write(b / f"{stem}{suffix}", audio, rate, subtype=subtype)
    datamodule = folder_data(dataset)
    train = datamodule.tracks["train"]
    assert [t.name for t in train] == ["a", "b"]
    assert all(len(t.stems) == 4 and t.stems[0].shape == (2, round(2.5 * 22050)) for t in train)
    for stem, decoded in zip(["bass", "drums", "other", "vocals"], train[1].stems):
        original = sf.read(next(b.glob(f"{stem}.*")), dtype="float32")[0]
        # Decoded and resampled, not replaced: the level survives (lossy codecs included).
        assert np.std(decoded) == pytest.approx(np.std(original), rel=0.1), stem


def _break(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    elif how == "not audio":
        path.write_text("these are not the samples you are looking for\n")
    elif how == "empty":
        sf.write(path, np.zeros((0, 2), dtype=np.float32), 16000)
    elif how == "nan":
        x = np.full((16000, 2), 0.1, dtype=np.float32)
        x[100, 0] = np.nan
        sf.write(path, x, 16000, subtype="FLOAT")
    elif how == "3 channels":
        sf.write(path, np.zeros((16000, 3), dtype=np.float32), 16000)


BAD = {
    "missing": "has no file for stem\\(s\\) vocals",
    "corrupt": "is not a readable audio file",
    "not audio": "is not a readable audio file",
    "empty": "is empty",
    "nan": "contains NaN/Inf",
    "3 channels": "has 3 channels",
}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_file_is_one_clear_error_naming_it_or_a_skip(dataset, how, caplog):
    broken = dataset / "train" / "a" / "vocals.wav"
    _break(broken, how)
    where = str(broken.parent) if how == "missing" else str(broken)
    with pytest.raises(SepnetError, match=BAD[how]) as error:
        folder_data(dataset)
    message = str(error.value)
    assert "\n" not in message and where in message and "data.on_error=skip" in message

    with caplog.at_level(logging.WARNING):
        datamodule = folder_data(dataset, "data.on_error=skip")
    assert [t.name for t in datamodule.tracks["train"]] == ["b"]
    assert re.search(r"skipped 1 train track\(s\) with errors \(data.on_error=skip\): a \(.*" + BAD[how], caplog.text)


def test_mono_becomes_fake_stereo(dataset):
    sf.write(dataset / "train" / "a" / "bass.wav", np.full(40000, 0.2, dtype=np.float32), 16000)
    bass = folder_data(dataset).tracks["train"][0].stems[0]
    np.testing.assert_array_equal(bass[0], bass[1])


def test_unequal_lengths_are_trimmed_with_a_warning_past_a_tenth_of_a_second(dataset, caplog):
    rate = 16000
    sf.write(dataset / "train" / "a" / "drums.wav", np.zeros((round(2.3 * rate), 2), np.float32), rate)  # 0.2 s short
    sf.write(dataset / "train" / "b" / "other.flac", np.zeros((round(2.45 * rate), 2), np.float32), rate)  # 0.05 s
    with caplog.at_level(logging.WARNING):
        train = folder_data(dataset).tracks["train"]
    assert train[0].samples == round(2.3 * 22050) and train[1].samples == round(2.45 * 22050)
    assert all(s.shape[-1] == train[0].samples for s in train[0].stems)
    assert "track 'a': stems differ in length" in caplog.text and "drums 2.30 s" in caplog.text
    assert "track 'b'" not in caplog.text


def test_mixed_sample_rates_are_resampled(dataset):
    x = np.zeros((round(2.5 * 44100), 2), np.float32)
    sf.write(dataset / "train" / "a" / "vocals.wav", x, 44100)
    track = folder_data(dataset).tracks["train"][0]
    assert {s.shape for s in track.stems} == {(2, round(2.5 * 22050))}


def test_no_usable_track_stops_at_start_up(dataset):
    for track in ("a", "b"):
        (dataset / "train" / track / "vocals.wav").unlink(missing_ok=True)
        (dataset / "train" / track / "vocals.flac").unlink(missing_ok=True)
    with pytest.raises(SepnetError, match=r"the train split of data.train_dir '.*' has no usable track.*2 skipped"):
        folder_data(dataset, "data.on_error=skip")


def test_unknown_stem_names_fail_at_start_up_listing_the_valid_ones(dataset):
    with pytest.raises(SepnetError, match=r"data.stems has voice, which .* does not hold; valid stems: bass, drums, "
                                          r"other, vocals"):
        folder_data(dataset, "data.stems=[bass,voice]")
    with pytest.raises(Exception) as error:  # raised inside hydra's instantiate: entry points unwrap it
        folder_data(dataset, "data.stems=[bass,vocals]", "data.target_stems=[piano]", stage=None)
    assert str(user_error_in(error.value)) == "data.target_stems has piano; valid target stems (data.stems): bass, vocals"


def test_other_stem_sets_and_target_stems_reach_the_model(dataset):
    for track in ("train/a", "train/b", "val/c"):
        write_track(dataset / track / "extra", stems=("piano",))  # a nested folder is not a stem
        sf.write(dataset / track / "piano.ogg", np.zeros((40000, 2), np.float32), 16000)
    cfg = compose_config(
        "train",
        ["data=folder", f"data.train_dir={dataset / 'train'}", f"data.val_dir={dataset / 'val'}", *TINY_RUN,
         "data.stems=[piano,vocals]", "data.target_stems=[vocals]"],
        dataset / "run",
    )
    assert list(cfg.model.target_stems) == ["vocals"]
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.source.stem_names() == ["bass", "drums", "other", "piano", "vocals"]
    assert datamodule.target_mask.tolist() == [False, True]


def test_missing_folder_names_the_key(tmp_path):
    (tmp_path / "train").mkdir()
    datamodule = folder_data(tmp_path, f"data.val_dir={tmp_path / 'nowhere'}", stage=None)
    with pytest.raises(SepnetError, match=r"data.val_dir '.*nowhere' does not exist; set data.val_dir="):
        datamodule.prepare_data()


# -- MUSDB18 -------------------------------------------------------------------


def test_musdb_hq_uses_the_official_split(tmp_path):
    validation = sources._musdb_setup()["validation_tracks"]
    root = tmp_path / "musdb18hq"
    for name in ("Zz Train Song", validation[0]):
        write_track(root / "train" / name, seconds=2.5)
    write_track(root / "test" / "Test Song", seconds=2.5)
    source = sources.MusdbSource(str(root), is_wav=True)
    source.prepare()
    assert [t.name for t in source.tracks("train")] == ["Zz Train Song"]
    assert [t.name for t in source.tracks("valid")] == [validation[0]]
    assert [t.name for t in source.tracks("test")] == ["Test Song"]
    assert source.stem_names() == ["bass", "drums", "other", "vocals"]
    with pytest.raises(SepnetError, match="holds track folders .*set data.source.is_wav=true"):
        sources.MusdbSource(str(root), is_wav=False).tracks("train")


@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="needs ffmpeg")
def test_musdb_stem_mp4_streams_are_decoded_once_through_the_cache(tmp_path):
    import stempeg

    rate, seconds = 44100, 2.2
    rng = np.random.default_rng(0)
    levels = np.array([0.05, 0.1, 0.2, 0.3])[:, None, None]  # a level per stream, to check the mapping
    sources_ = (levels * rng.standard_normal((4, round(rate * seconds), 2))).astype(np.float32)
    # MUSDB18's stream order: mixture, drums, bass, other, vocals.
    streams = np.concatenate([sources_.sum(0, keepdims=True), sources_])
    for subset, name in (("train", "Song A"), ("test", "Song B")):
        (tmp_path / subset).mkdir()
        stempeg.write_stems(str(tmp_path / subset / f"{name}.stem.mp4"), streams, sample_rate=rate,
                            writer=stempeg.StreamsWriter(codec="aac", bitrate=128000))
    cfg = compose_config("train", ["data=musdb", f"data.source.root={tmp_path}", "data.source.is_wav=false",
                                   *TINY_RUN, "data.val_chunk_seconds=1.0"], tmp_path / "run")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    train = datamodule.load_split("train", 22050)
    assert datamodule.cache.decoded == 4 and [t.name for t in train] == ["Song A"]
    assert abs(train[0].samples - round(seconds * 22050)) < 0.05 * 22050
    # data.stems order (bass, drums, other, vocals) from MUSDB streams (2, 1, 3, 4): each keeps its own
    # level (white noise loses the same share above 11 kHz in every stream).
    ratios = [np.std(decoded) / levels[stream - 1, 0, 0] for decoded, stream in zip(train[0].stems, (2, 1, 3, 4))]
    assert max(ratios) / min(ratios) < 1.1
