"""Any audio file in: FFmpeg-decoded formats (PyAV), surround downmix, and separate's learned gains.

Fixtures in formats libsndfile cannot write are encoded with PyAV itself (tests/av_encode.py),
so no ffmpeg program is needed. Lossy codecs pad the end to whole frames, so the decoded
length is the truth: stems must match it exactly, and the nominal duration within a frame.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import soundfile as sf
from av_encode import decoded_length, encode, tones
from conftest import TINY_SOURCE, compose_config, write_track

from sepnet.audio.io import audio_info, iter_audio_blocks, read_audio
from sepnet.check_data import run_check
from sepnet.data import sources
from sepnet.errors import SepnetError
from sepnet.separate import run_separation

STEMS = ["bass", "drums", "other", "vocals"]
AAC_FRAME = 1024  # samples: AAC pads the end up to one frame
OPUS_SLACK_SECONDS = 0.02  # one 20 ms Opus frame: WebM states its duration in ms, Opus frames are 20 ms


def separate(ckpt, input_path, out, tmp_path, *overrides):
    cfg = compose_config("separate", [f"ckpt={ckpt}", f"input={input_path}", f"out={out}", *overrides], tmp_path / "run")
    return run_separation(cfg)


def assert_stems(written, rate: int, channels: int, frames: int):
    assert sorted(p.name for p in written) == [f"{s}.wav" for s in STEMS]
    for path in written:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames), path
        audio, _ = sf.read(path, dtype="float32")
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0


# -- separate on what libsndfile cannot read ---------------------------------------------------


def test_separate_m4a_aac(tiny_checkpoint, tmp_path):
    rate, seconds = 44100, 2.0
    song = encode(tmp_path / "song.m4a", tones(2, seconds, rate), rate, "aac")
    frames = decoded_length(song)
    assert audio_info(song).decoder == "ffmpeg"
    assert abs(frames - seconds * rate) < AAC_FRAME  # decoded vs nominal: AAC's end padding only

    written = separate(tiny_checkpoint, song, tmp_path / "out", tmp_path)
    assert all(p.parent == tmp_path / "out" / "song" for p in written)
    assert_stems(written, rate, 2, frames)


def test_separate_opus_in_webm(tiny_checkpoint, tmp_path):
    rate, seconds = 48000, 1.5  # Opus always decodes at 48 kHz
    song = encode(tmp_path / "take.webm", tones(2, seconds, rate), rate, "libopus", 96_000)
    frames = decoded_length(song)
    assert abs(frames - seconds * rate) <= OPUS_SLACK_SECONDS * rate
    assert abs(audio_info(song).frames - frames) <= OPUS_SLACK_SECONDS * rate  # the header's nominal length

    assert_stems(separate(tiny_checkpoint, song, tmp_path / "out", tmp_path), rate, 2, frames)


def test_separate_5_1_wav_writes_stereo_stems_and_says_so_once(tiny_checkpoint, tmp_path, caplog):
    rate, frames = 22050, 33075  # 1.5 s
    sf.write(tmp_path / "film.wav", tones(6, frames / rate, rate).T, rate, subtype="PCM_24")
    with caplog.at_level(logging.INFO, logger="sepnet.audio.io"):
        written = separate(tiny_checkpoint, tmp_path / "film.wav", tmp_path / "out", tmp_path)
    assert_stems(written, rate, 2, frames)
    lines = [r.getMessage() for r in caplog.records if "downmixed to stereo" in r.getMessage()]
    assert len(lines) == 1 and "'" + str(tmp_path / "film.wav") + "' has 6 channels" in lines[0]
    assert "ITU-R BS.775" in lines[0]


def test_a_stem_mp4_input_is_its_mixture_stream_named_without_stem(tiny_checkpoint, tmp_path):
    rate = 44100
    streams = [tones(2, 1.0, rate, level) for level in (0.4, 0.1, 0.1, 0.1, 0.1)]
    song = encode(tmp_path / "Artist - Song.stem.mp4", streams, rate)
    written = separate(tiny_checkpoint, song, tmp_path / "out", tmp_path)
    assert {p.parent.name for p in written} == {"Artist - Song"}
    assert_stems(written, rate, 2, decoded_length(song, 0))


# -- the reader ----------------------------------------------------------------------------


def test_5_1_downmix_follows_bs775_and_cannot_clip(tmp_path):
    rate = 8000
    x = np.random.default_rng(0).uniform(-1, 1, (6, 4000)).astype(np.float32)
    x[:, 0] = [1, -1, 1, 1, 1, -1]  # the worst case for the left channel: everything in phase
    sf.write(tmp_path / "surround.wav", x.T, rate, subtype="FLOAT")
    left, centre, lfe, ls, rs = x[0], x[2], x[3], x[4], x[5]
    scale = 1 / (1 + 2 * math.sqrt(0.5))
    audio = read_audio(tmp_path / "surround.wav")
    assert audio.shape == (2, 4000)
    np.testing.assert_allclose(audio[0], scale * (left + math.sqrt(0.5) * (centre + ls)), atol=1e-6)
    np.testing.assert_allclose(audio[1], scale * (x[1] + math.sqrt(0.5) * (centre + rs)), atol=1e-6)
    assert audio[0, 0] == pytest.approx(1.0)  # full scale in phase stays at full scale
    assert np.abs(audio).max() <= 1.0 + 1e-6
    lfe_only = x.copy()
    lfe_only[[0, 1, 2, 4, 5]] = 0
    sf.write(tmp_path / "lfe.wav", lfe_only.T, rate, subtype="FLOAT")
    assert not read_audio(tmp_path / "lfe.wav").any() and lfe.any()  # LFE dropped


def test_aac_5_1_is_downmixed_by_its_channel_names(tmp_path):
    rate = 48000
    surround = np.zeros((6, rate), np.float32)
    surround[2] = tones(1, 1.0, rate)[0]  # centre only: equal in both outputs
    path = encode(tmp_path / "centre.m4a", surround, rate)
    assert audio_info(path).layout == ("FL", "FR", "FC", "LFE", "BL", "BR")
    audio = read_audio(path)
    assert audio.shape == (2, decoded_length(path))
    np.testing.assert_allclose(audio[0], audio[1], atol=1e-3)
    expected = np.sqrt(0.5) / (1 + 2 * np.sqrt(0.5)) * np.std(surround[2])
    assert np.std(audio[0]) == pytest.approx(expected, rel=0.05)


def test_pyav_streams_in_blocks_that_add_up_to_the_whole_read(tmp_path):
    rate = 44100
    path = encode(tmp_path / "a.m4a", tones(2, 2.0, rate), rate)
    blocks = list(iter_audio_blocks(path, block_frames=5000))
    assert all(b.shape[0] == 2 and 0 < b.shape[1] <= 5000 for b in blocks)
    assert all(b.shape[1] == 5000 for b in blocks[:-1])
    whole = read_audio(path)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)
    np.testing.assert_array_equal(read_audio(path, start=0.5, duration=0.25), whole[:, 22050:33075])
    assert read_audio(path, 22050).shape[1] == pytest.approx(whole.shape[1] / 2, abs=1)


def test_corrupt_m4a_is_one_line_naming_the_file(tmp_path):
    good = encode(tmp_path / "good.m4a", tones(2, 1.0, 44100), 44100)
    data = good.read_bytes()
    cases = {"cut.m4a": data[: len(data) // 2], "junk.m4a": b"\x00\x01junk" * 300, "empty.m4a": b""}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for load in (audio_info, read_audio):
            with pytest.raises(SepnetError) as error:
                load(path)
            message = str(error.value)
            assert f"'{path}' is not a readable audio file (ffmpeg: " in message and "\n" not in message


def test_a_missing_stream_is_one_line(tmp_path):
    path = encode(tmp_path / "two.mp4", [tones(2, 0.5, 44100), tones(2, 0.5, 44100)], 44100)
    with pytest.raises(SepnetError, match=r"has 2 audio stream\(s\), so stream 4 does not exist"):
        read_audio(path, stream=4)


# -- data sources and check_data --------------------------------------------------------------


def test_check_data_reads_an_m4a_stem_and_names_a_corrupt_one(tmp_path, capsys):
    rate = 16000
    root = tmp_path / "data"
    stems = write_track(root / "train" / "aac_song", seconds=2.0, rate=rate, seed=1)
    (root / "train" / "aac_song" / "vocals.wav").unlink()
    encode(root / "train" / "aac_song" / "vocals.m4a", stems["vocals"], rate)
    write_track(root / "train" / "broken", seconds=2.0, rate=rate, seed=2)
    (root / "train" / "broken" / "vocals.wav").unlink()
    (root / "train" / "broken" / "vocals.m4a").write_bytes(b"not an mp4 at all" * 50)
    write_track(root / "val" / "v", seconds=2.0, rate=rate, seed=3)

    cfg = compose_config(
        "check_data",
        ["data=folder", f"data.train_dir={root / 'train'}", f"data.val_dir={root / 'val'}",
         "data.chunk_seconds=1.0", "data.val_chunk_seconds=1.0"],
        tmp_path / "run",
    )
    assert run_check(cfg) == 1
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("train ")}
    assert not rows["aac_song"].endswith("ERROR") and " 2.0" in rows["aac_song"]
    assert rows["broken"].endswith("ERROR")
    broken = root / "train" / "broken" / "vocals.m4a"
    errors = [line for line in out.splitlines() if line.startswith("ERROR ")]
    expected = (f"ERROR train/broken: '{broken}' is not a readable audio file (ffmpeg: Invalid data found when "
                "processing input); re-export it as WAV/FLAC or remove the track")
    assert errors == [expected]


def test_check_data_warns_about_a_downmixed_stem(tmp_path, capsys):
    rate = 16000
    root = tmp_path / "data"
    write_track(root / "train" / "film", seconds=2.0, rate=rate, seed=1)
    sf.write(root / "train" / "film" / "other.wav", tones(6, 2.0, rate, 0.05).T, rate)
    write_track(root / "val" / "v", seconds=2.0, rate=rate, seed=3)
    cfg = compose_config("check_data", ["data=folder", f"data.train_dir={root / 'train'}",
                                        f"data.val_dir={root / 'val'}", "data.chunk_seconds=1.0",
                                        "data.val_chunk_seconds=1.0"], tmp_path / "run")
    run_check(cfg)
    out = capsys.readouterr().out
    assert "warning train/film: file(s) downmixed to stereo (ITU-R BS.775): other (6 ch)" in out


def test_musdb_stem_mp4_decodes_without_the_ffmpeg_program(tmp_path, monkeypatch):
    from conftest import TINY_RUN
    from hydra.utils import instantiate

    rate, seconds = 44100, 1.5
    levels = (0.025, 0.05, 0.1, 0.2)  # one level per source stream, a factor 2 apart, to check the stream mapping
    rng = np.random.default_rng(0)
    parts = [(level * rng.standard_normal((2, round(rate * seconds)))).astype(np.float32) for level in levels]
    for subset, name in (("train", "Song A"), ("test", "Song B")):
        (tmp_path / subset).mkdir()
        # MUSDB18's stream order: mixture, drums, bass, other, vocals.
        encode(tmp_path / subset / f"{name}.stem.mp4", [sum(parts), *parts], rate)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no ffmpeg, no ffprobe
    sources.MusdbSource(str(tmp_path), is_wav=False).prepare()
    cfg = compose_config("train", ["data=musdb", f"data.source.root={tmp_path}", "data.source.is_wav=false",
                                   *TINY_RUN, "data.val_chunk_seconds=1.0"], tmp_path / "run")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    train = datamodule.load_split("train", 22050)
    assert datamodule.cache.decoded == 4 and [t.name for t in train] == ["Song A"]
    assert abs(train[0].samples - round(seconds * 22050)) < AAC_FRAME
    # data.stems order (bass, drums, other, vocals) from MUSDB streams (2, 1, 3, 4).
    # White noise loses its top to the AAC encoder and the resampler (more at higher levels), but never
    # by a factor near 2: each stem is the nearest to its own stream's level.
    ratios = [np.std(decoded) / levels[stream - 1] for decoded, stream in zip(train[0].stems, (2, 1, 3, 4))]
    assert max(ratios) / min(ratios) < 1.3


# -- separate.gain=auto ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluate_results(tiny_checkpoint, tiny_data_root, tmp_path_factory):
    """results.json of one real evaluate run of the tiny checkpoint (one test track)."""
    from sepnet.evaluate import run_evaluation

    run_dir = tmp_path_factory.mktemp("evaluate_for_gain")
    cfg = compose_config("evaluate", [f"ckpt={tiny_checkpoint}", f"data.source.root={tiny_data_root}", *TINY_SOURCE,
                                      "eval.max_tracks=1", "report=false"], run_dir)
    run_evaluation(cfg)
    return run_dir / "results.json"


def test_gain_auto_applies_the_gains_of_an_evaluate_run(tiny_checkpoint, evaluate_results, tmp_path, capsys):
    rate = 22050
    sf.write(tmp_path / "mix.wav", tones(2, 1.0, rate).T, rate, subtype="FLOAT")
    plain = separate(tiny_checkpoint, tmp_path / "mix.wav", tmp_path / "plain", tmp_path)
    gained = separate(tiny_checkpoint, tmp_path / "mix.wav", tmp_path / "gained", tmp_path,
                      "separate.gain=auto", f"separate.gain_from={evaluate_results}")
    results = json.loads(evaluate_results.read_text())
    expected = {s: results["per_stem"][s]["gain_median"] for s in STEMS}  # eval.gain=1: the scored split's g*
    assert f"gain=auto from '{evaluate_results}'" in capsys.readouterr().out
    for a, b in zip(sorted(plain), sorted(gained)):
        g = expected[a.stem] if math.isfinite(expected[a.stem]) and expected[a.stem] > 0 else 1.0
        np.testing.assert_allclose(sf.read(b, dtype="float32")[0], g * sf.read(a, dtype="float32")[0], atol=1e-5)
    assert len({round(v, 3) for v in expected.values()}) > 1  # per stem, not one number


def test_gain_auto_takes_what_eval_gain_auto_applied_and_accepts_a_copied_checkpoint(
    tiny_checkpoint, evaluate_results, tmp_path
):
    import shutil

    rate = 22050
    sf.write(tmp_path / "mix.wav", tones(2, 0.5, rate).T, rate, subtype="FLOAT")
    results = json.loads(evaluate_results.read_text())
    learned = {"bass": 0.5, "drums": 1.5, "other": 2.0, "vocals": 0.25}
    results.update(gain=learned, gain_source="auto (median g* of 2 valid tracks)")
    (tmp_path / "auto.json").write_text(json.dumps(results))
    copy = shutil.copy(tiny_checkpoint, tmp_path / "moved.ckpt")  # same model, another path
    plain = separate(copy, tmp_path / "mix.wav", tmp_path / "plain", tmp_path)
    gained = separate(copy, tmp_path / "mix.wav", tmp_path / "gained", tmp_path,
                      "separate.gain=auto", f"separate.gain_from={tmp_path / 'auto.json'}")
    for a, b in zip(sorted(plain), sorted(gained)):
        np.testing.assert_allclose(sf.read(b, dtype="float32")[0], learned[a.stem] * sf.read(a, dtype="float32")[0],
                                   atol=1e-5)


def test_gain_auto_mistakes_are_one_line(tiny_checkpoint, evaluate_results, tmp_path):
    sf.write(tmp_path / "mix.wav", tones(2, 0.2, 8000).T, 8000)
    other = json.loads(evaluate_results.read_text())
    other["checkpoint"], other["checkpoint_config"] = "/elsewhere/best.ckpt", {}
    (tmp_path / "other.json").write_text(json.dumps(other))
    fewer = json.loads(evaluate_results.read_text())
    fewer["gain"].pop("bass")
    (tmp_path / "fewer.json").write_text(json.dumps(fewer))
    (tmp_path / "bad.json").write_text("{not json")
    cases = {
        ("separate.gain=auto",): "separate.gain=auto reads the gains an evaluate run learned: pass separate.gain_from",
        ("separate.gain=auto", f"separate.gain_from={tmp_path / 'nope.json'}"): "nope.json' does not exist",
        ("separate.gain=auto", f"separate.gain_from={tmp_path / 'bad.json'}"): "is not readable JSON",
        ("separate.gain=auto", f"separate.gain_from={tmp_path / 'other.json'}"): "holds the gains of checkpoint "
        "'/elsewhere/best.ckpt'",
        ("separate.gain=auto", f"separate.gain_from={tmp_path / 'fewer.json'}"): "has gains for drums, other, vocals "
        "but the checkpoint separates bass, drums, other, vocals",
        (f"separate.gain_from={evaluate_results}",): "separate.gain_from is set but separate.gain=1.0",
        ("separate.gain=-2",): "separate.gain=-2 is not valid",
    }
    for overrides, expected in cases.items():
        with pytest.raises(SepnetError) as error:
            separate(tiny_checkpoint, tmp_path / "mix.wav", tmp_path / "out", tmp_path, *overrides)
        assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()
