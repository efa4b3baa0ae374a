"""Audio I/O: real files written to tmp_path, read back through sepnet.audio.io."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from sepnet.audio.io import AudioInfo, audio_info, read_audio, resample, write_audio
from sepnet.errors import SepnetError


def _noise(channels: int, frames: int, seed: int = 0) -> np.ndarray:
    """(channels, frames) float32 in [-0.5, 0.5)."""
    return (np.random.default_rng(seed).random((channels, frames)) - 0.5).astype(np.float32)


def _sf_write(path, audio: np.ndarray, rate: int, subtype: str | None = None) -> None:
    """Write a fixture file with soundfile itself, (channels, frames) in."""
    sf.write(path, audio.T, rate, subtype=subtype)


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


# -- reading ---------------------------------------------------------------------


def test_mono_is_read_as_identical_stereo(tmp_path):
    mono = _noise(1, 1000)
    _sf_write(tmp_path / "mono.wav", mono, 8000, "FLOAT")
    audio = read_audio(tmp_path / "mono.wav")
    assert audio.shape == (2, 1000) and audio.dtype == np.float32 and audio.flags.c_contiguous
    np.testing.assert_array_equal(audio[0], audio[1])
    np.testing.assert_array_equal(audio[0], mono[0])


@pytest.mark.parametrize(
    "name, subtype, atol",
    [
        ("s16.wav", "PCM_16", 2**-15),
        ("s24.wav", "PCM_24", 2**-23),
        ("f32.wav", "FLOAT", 0.0),
        ("s16.flac", "PCM_16", 2**-15),
        ("s24.flac", "PCM_24", 2**-23),
    ],
)
def test_stereo_roundtrip(tmp_path, name, subtype, atol):
    stereo = _noise(2, 2000)
    written = write_audio(tmp_path / name, stereo, 16000, subtype=subtype)
    assert written == tmp_path / name
    assert sf.info(written).subtype == subtype
    audio = read_audio(written)
    assert audio.shape == (2, 2000) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, stereo, rtol=0, atol=atol)


def test_default_subtypes_are_float_wav_and_24bit_flac(tmp_path):
    stereo = _noise(2, 100)
    assert sf.info(write_audio(tmp_path / "a.wav", stereo, 8000)).subtype == "FLOAT"
    assert sf.info(write_audio(tmp_path / "a.flac", stereo, 8000)).subtype == "PCM_24"


def test_write_accepts_a_torch_tensor(tmp_path):
    stereo = torch.from_numpy(_noise(2, 300)).requires_grad_()
    path = write_audio(tmp_path / "t.wav", stereo, 8000)
    np.testing.assert_array_equal(read_audio(path), stereo.detach().numpy())


def test_one_sample_file_is_valid(tmp_path):
    _sf_write(tmp_path / "one.wav", np.array([[0.25]], np.float32), 8000, "FLOAT")
    assert audio_info(tmp_path / "one.wav").frames == 1
    audio = read_audio(tmp_path / "one.wav")
    assert audio.shape == (2, 1)
    np.testing.assert_array_equal(audio, [[0.25], [0.25]])


def test_audio_info_reads_the_header(tmp_path):
    _sf_write(tmp_path / "x.flac", _noise(2, 44100), 44100, "PCM_16")
    info = audio_info(str(tmp_path / "x.flac"))
    assert info == AudioInfo(tmp_path / "x.flac", 44100, 2, 44100)
    assert info.duration == pytest.approx(1.0)


@pytest.mark.parametrize("from_rate", [48000, 8000])
def test_resampling_keeps_length_and_frequency(tmp_path, from_rate):
    seconds, hz, to_rate = 2.0, 440.0, 22050
    t = np.arange(int(seconds * from_rate)) / from_rate
    sine = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    _sf_write(tmp_path / "sine.wav", sine[None], from_rate, "FLOAT")

    audio = read_audio(tmp_path / "sine.wav", sample_rate=to_rate)

    assert audio.shape[0] == 2
    assert abs(audio.shape[1] - seconds * to_rate) <= 1
    assert _dominant_hz(audio[0], to_rate) == pytest.approx(hz, abs=1.0)
    # Away from the edges the resampled signal is the same sine, at full level.
    np.testing.assert_allclose(np.abs(audio[0, 1000:-1000]).max(), 0.5, atol=0.01)


def test_resample_identity_and_shape():
    audio = _noise(2, 4800)
    assert resample(audio, 48000, 48000) is audio
    out = resample(audio, 48000, 22050)
    assert out.shape == (2, 2205) and out.dtype == np.float32 and out.flags.c_contiguous
    with pytest.raises(ValueError):
        resample(audio[0], 48000, 22050)


def test_start_and_duration_read_only_that_span(tmp_path):
    rate = 1000
    ramp = (np.arange(5 * rate, dtype=np.float32) / (5 * rate))[None].repeat(2, axis=0)
    path = write_audio(tmp_path / "ramp.wav", ramp, rate)

    np.testing.assert_array_equal(read_audio(path, start=1.5, duration=2.0), ramp[:, 1500:3500])
    np.testing.assert_array_equal(read_audio(path, start=4.0), ramp[:, 4000:])
    # A span running past the end stops at the end.
    np.testing.assert_array_equal(read_audio(path, start=4.5, duration=3.0), ramp[:, 4500:])
    # start/duration are in the file's seconds, also when resampling.
    assert read_audio(path, 2000, start=1.0, duration=1.0).shape == (2, 2000)


@pytest.mark.parametrize("start, duration", [(-1.0, None), (0.0, 0.0), (0.0, -2.0), (float("nan"), None)])
def test_bad_span_is_a_user_error(tmp_path, start, duration):
    path = write_audio(tmp_path / "x.wav", _noise(2, 100), 1000)
    with pytest.raises(SepnetError, match="x.wav"):
        read_audio(path, start=start, duration=duration)


def test_start_past_the_end_is_a_user_error(tmp_path):
    path = write_audio(tmp_path / "short.wav", _noise(2, 1000), 1000)
    with pytest.raises(SepnetError, match=r"short\.wav.*only 1\.000s long"):
        read_audio(path, start=1.0)


# -- loud loading ----------------------------------------------------------------


def _assert_one_line_naming(exc_info, path) -> str:
    message = str(exc_info.value)
    assert f"'{path}'" in message
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "vocals.wav"
    for load in (audio_info, read_audio):
        with pytest.raises(SepnetError) as exc_info:
            load(path)
        assert "does not exist" in _assert_one_line_naming(exc_info, path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(SepnetError) as exc_info:
        read_audio(tmp_path)
    assert "directory" in _assert_one_line_naming(exc_info, tmp_path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "vocals.wav"
    path.write_text("this is not audio\n" * 20)
    for load in (audio_info, read_audio):
        with pytest.raises(SepnetError) as exc_info:
            load(path)
        message = _assert_one_line_naming(exc_info, path)
        assert "not a readable audio file" in message and "re-export" in message


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 2), np.float32), 8000)
    for load in (audio_info, read_audio):
        with pytest.raises(SepnetError) as exc_info:
            load(path)
        assert "empty (0 samples)" in _assert_one_line_naming(exc_info, path)


@pytest.mark.parametrize("keep", [0.0, 0.02, 0.5, 0.999])
@pytest.mark.parametrize("name, subtype", [("t.wav", "PCM_16"), ("t.wav", "FLOAT"), ("t.flac", "PCM_16")])
def test_truncated_file_reads_what_is_there_or_fails_cleanly(tmp_path, name, subtype, keep):
    full = tmp_path / f"full_{name}"
    stereo = _noise(2, 4000)
    _sf_write(full, stereo, 8000, subtype)
    data = full.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: max(1, int(len(data) * keep))])

    try:
        audio = read_audio(path)
    except SepnetError as exc:  # the only acceptable failure
        assert f"'{path}'" in str(exc)
    else:
        assert audio.shape[0] == 2 and 0 < audio.shape[1] <= 4000
        assert audio.dtype == np.float32 and np.isfinite(audio).all()


def test_truncated_wav_reads_the_frames_present(tmp_path):
    path = tmp_path / "cut.wav"
    stereo = _noise(2, 1000)
    _sf_write(path, stereo, 8000, "PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 400 * 4])  # drop the last 400 stereo int16 frames

    audio = read_audio(path)
    assert audio.shape == (2, 600)
    np.testing.assert_allclose(audio, stereo[:, :600], atol=2**-15)


def test_three_channels(tmp_path):
    path = tmp_path / "surround.wav"
    _sf_write(path, _noise(3, 100), 8000, "PCM_16")
    assert audio_info(path).channels == 3  # the header is reported as is
    with pytest.raises(SepnetError) as exc_info:
        read_audio(path)
    message = _assert_one_line_naming(exc_info, path)
    assert "3 channels" in message and "downmix" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_samples(tmp_path, bad):
    path = tmp_path / "bad.wav"
    audio = _noise(2, 100)
    audio[1, 42] = bad
    _sf_write(path, audio, 8000, "FLOAT")
    with pytest.raises(SepnetError) as exc_info:
        read_audio(path)
    assert "NaN/Inf" in _assert_one_line_naming(exc_info, path)


# -- writing ---------------------------------------------------------------------


def test_write_creates_parents_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "b" / "mix.wav"
    write_audio(path, _noise(2, 500), 8000)
    write_audio(path, _noise(1, 700, seed=1), 8000)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["mix.wav"]
    assert audio_info(path).frames == 700


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "stem.flac"
    old = _noise(2, 500)
    write_audio(path, old, 8000)
    # 8 MHz does not fit FLAC's header: libsndfile fails while the temp file is open.
    with pytest.raises(SepnetError) as exc_info:
        write_audio(path, _noise(2, 500, seed=1), 8_000_000)
    _assert_one_line_naming(exc_info, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stem.flac"]
    np.testing.assert_allclose(read_audio(path), old, atol=2**-23)


def test_write_under_a_file_is_a_user_error(tmp_path):
    (tmp_path / "out").write_text("a file, not a directory")
    for path in (tmp_path / "out" / "x.wav", tmp_path / "out" / "deeper" / "x.wav"):
        with pytest.raises(SepnetError) as exc_info:
            write_audio(path, _noise(2, 10), 8000)
        message = _assert_one_line_naming(exc_info, path)
        assert f"'{tmp_path / 'out'}' is a file" in message


def test_write_onto_a_directory_is_a_user_error(tmp_path):
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(SepnetError) as exc_info:
        write_audio(tmp_path / "x.wav", _noise(2, 10), 8000)
    assert "directory" in _assert_one_line_naming(exc_info, tmp_path / "x.wav")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_write_into_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for path in (ro / "x.wav", ro / "sub" / "x.wav"):
            with pytest.raises(SepnetError) as exc_info:
                write_audio(path, _noise(2, 10), 8000)
            _assert_one_line_naming(exc_info, path)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("name, subtype", [("x.xyz", None), ("noext", None), ("x.flac", "FLOAT")])
def test_unwritable_format_is_a_user_error(tmp_path, name, subtype):
    with pytest.raises(SepnetError) as exc_info:
        write_audio(tmp_path / name, _noise(2, 10), 8000, subtype=subtype)
    _assert_one_line_naming(exc_info, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_samples_by_channels_layout(tmp_path):
    with pytest.raises(ValueError, match="channels, samples"):
        write_audio(tmp_path / "x.wav", _noise(1000, 2), 8000)
