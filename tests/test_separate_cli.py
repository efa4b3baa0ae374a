"""``separate`` as Demucs users type it: bare paths and short options, ``sepnet <command>``, output formats and
clipping, ``--two-stems``, progress within a song, where the log goes, ensembles, ``--help``, README's section."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_RUN, compose_config, write_fresh_checkpoint

from sepnet.app.configs import expand_options
from sepnet.errors import SepnetError
from sepnet.separate import OPTIONS, run_separation

STEMS = ["bass", "drums", "other", "vocals"]
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def cli(*args: str, cwd: Path, module: str = "sepnet.separate") -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` run from ``cwd``, as a user does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def song(path: Path, seconds: float = 1.0, rate: int = 22050, amplitude: float = 0.1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = amplitude * np.random.default_rng(seed).standard_normal((round(seconds * rate), 2))
    sf.write(path, audio.astype(np.float32), rate, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


def separate(ckpt, input_path, out: Path, tmp_path: Path, *overrides: str) -> list[Path]:
    cfg = compose_config("separate", [f"ckpt={ckpt}", f"input={input_path}", f"out={out}", *overrides], tmp_path / "run")
    return run_separation(cfg)


def stems_of(folder: Path, suffix: str = ".wav") -> dict[str, np.ndarray]:
    return {p.stem: sf.read(p, dtype="float32", always_2d=True)[0] for p in sorted(folder.glob(f"*{suffix}"))}


# -- 1. the command line -------------------------------------------------------------------------------


def test_short_options_become_overrides():
    argv = ["ckpt=a.ckpt", "song.wav", "-o", "stems", "--device=cpu", "-n", "b.ckpt", "-n", "c.ckpt", "--mp3", "-m"]
    assert expand_options(argv, OPTIONS) == [
        "separate.format=mp3", "out=stems", "ckpt=[b.ckpt,c.ckpt]", "separate.device=cpu", "ckpt=a.ckpt", "song.wav", "-m",
    ]
    assert expand_options(["--two-stems", "vocals", "--int24", "--clip-mode", "clamp"], OPTIONS) == [
        "separate.bits=24", "separate.two_stems=vocals", "separate.clip_mode=clamp",
    ]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--devic", "cpu"], "unknown option --devic; did you mean --device?"),
        (["-o"], "-o needs a value"),
        (["-o", "a", "--out", "b"], "-o/--out given 2 times; give it once"),
    ],
)
def test_option_mistakes_are_one_line(argv, message, tmp_path):
    result = cli(*argv, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"sepnet: error: {message}"), line
    assert not list(tmp_path.iterdir())


def test_bare_paths_files_and_folders_with_short_options(tiny_checkpoint, tmp_path):
    song(tmp_path / "songs" / "song.wav")
    song(tmp_path / "other take.flac", seed=1)
    song(tmp_path / "album" / "a.wav", seed=2)
    result = cli(
        f"ckpt={tiny_checkpoint}", "songs/song.wav", "other take.flac", "album", "-o", "stems", "-d", "cpu",
        "separate.chunk_seconds=0.5", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for folder in ("song", "other take", "test/a"):
        assert sorted(stems_of(tmp_path / "stems" / folder)) == STEMS, folder
    assert "[3/3]" in result.stdout


def test_n_names_the_checkpoint_and_typos_are_still_caught(tiny_checkpoint, tmp_path):
    song(tmp_path / "song.wav")
    result = cli("-n", str(tiny_checkpoint), "song.wav", "separate.chunk_second=2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            "sepnet: error: separate.chunk_second is not a setting of this run; did you mean separate.chunk_seconds? "
            "(+separate.chunk_second=... adds a new key on purpose)"
        )
    ]
    result = cli("-n", str(tiny_checkpoint), "song.wav", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(stems_of(tmp_path / "separated" / "song")) == STEMS


def test_sepnet_lists_the_commands_and_runs_one(tiny_checkpoint, tmp_path):
    result = cli(cwd=tmp_path, module="sepnet")
    assert result.returncode == 2
    for command in ("train", "evaluate", "separate", "merge", "compare", "lineage", "check_data", "reproduce"):
        assert f"\n  {command} " in result.stdout, command
    assert cli("--help", cwd=tmp_path, module="sepnet").returncode == 0
    wrong = cli("seperate", cwd=tmp_path, module="sepnet")
    assert wrong.returncode == 2 and "did you mean separate?" in wrong.stderr
    song(tmp_path / "song.wav")
    result = cli("separate", "song.wav", "-n", str(tiny_checkpoint), "-o", "out", cwd=tmp_path, module="sepnet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(stems_of(tmp_path / "out" / "song")) == STEMS
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sepnet"] == "sepnet.__main__:main"


# -- 2. formats, clipping, two stems -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,suffix,subtype",
    [
        ([], ".wav", "FLOAT"),
        (["separate.bits=16"], ".wav", "PCM_16"),
        (["separate.bits=24"], ".wav", "PCM_24"),
        (["separate.format=flac"], ".flac", "PCM_24"),
        (["separate.format=flac", "separate.bits=16"], ".flac", "PCM_16"),
        (["separate.format=mp3"], ".mp3", "MPEG_LAYER_III"),
    ],
)
def test_output_formats(tiny_checkpoint, tmp_path, overrides, suffix, subtype):
    written = separate(tiny_checkpoint, song(tmp_path / "song.wav"), tmp_path / "out", tmp_path, *overrides)
    assert sorted(p.name for p in written) == [f"{s}{suffix}" for s in STEMS]
    for path in written:
        info = sf.info(path)
        assert (info.subtype, info.samplerate, info.channels) == (subtype, 22050, 2)
        if suffix != ".mp3":
            assert info.frames == 22050
        else:  # MP3 frames pad the ends
            assert abs(info.frames - 22050) < 3000
    assert not list((tmp_path / "out" / "song").glob(".*"))  # no temporary files left


@pytest.mark.parametrize("overrides,message", [
    (["separate.format=ogg"], "separate.format='ogg' is not a format sepnet writes; use wav, flac or mp3"),
    (["separate.format=flac", "separate.bits=float"], "separate.bits=float is not one of FLAC's: 16, 24"),
    (["separate.clip_mode=wrap"], "separate.clip_mode='wrap' is not an option"),
    (["separate.two_stems=piano"], "separate.two_stems=piano is not a stem of checkpoint"),
])
def test_bad_format_settings_are_one_line(tiny_checkpoint, tmp_path, overrides, message):
    with pytest.raises(SepnetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        separate(tiny_checkpoint, song(tmp_path / "song.wav"), tmp_path / "out", tmp_path, *overrides)


def test_clipping_is_rescaled_or_clamped_and_said(tiny_checkpoint, tmp_path, capsys):
    loud = song(tmp_path / "loud.wav", amplitude=1.5)
    separate(tiny_checkpoint, loud, tmp_path / "float", tmp_path)
    floats = stems_of(tmp_path / "float" / "loud")
    peak = max(np.abs(a).max() for a in floats.values())
    assert peak > 1.0  # the estimates of a loud input are beyond full scale
    assert "clipping: " not in capsys.readouterr().out  # float WAV holds them

    separate(tiny_checkpoint, loud, tmp_path / "rescaled", tmp_path, "separate.bits=16")
    line = capsys.readouterr().out
    assert f"clipping: '{loud}' peaked at {peak:.3g}" in line and "separate.clip_mode=rescale" in line
    rescaled = stems_of(tmp_path / "rescaled" / "loud")
    for stem in STEMS:  # one factor for every stem of the track, to 16-bit precision
        np.testing.assert_allclose(rescaled[stem], floats[stem] / peak, atol=2e-4)

    separate(tiny_checkpoint, loud, tmp_path / "clamped", tmp_path, "separate.bits=16", "separate.clip_mode=clamp")
    line = capsys.readouterr().out
    assert "were clamped" in line and "samples (" in line
    clamped = stems_of(tmp_path / "clamped" / "loud")
    for stem in STEMS:
        np.testing.assert_allclose(clamped[stem], np.clip(floats[stem], -1, 1), atol=2e-4)


def test_two_stems_writes_the_stem_and_the_rest(tiny_checkpoint, tmp_path):
    mix = song(tmp_path / "song.wav")
    separate(tiny_checkpoint, mix, tmp_path / "all", tmp_path)
    result = cli(f"ckpt={tiny_checkpoint}", str(mix), "--two-stems", "vocals", "-o", str(tmp_path / "two"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    every, two = stems_of(tmp_path / "all" / "song"), stems_of(tmp_path / "two" / "song")
    assert sorted(two) == ["no_vocals", "vocals"]
    np.testing.assert_allclose(two["vocals"], every["vocals"], atol=1e-6)
    np.testing.assert_allclose(two["no_vocals"], every["bass"] + every["drums"] + every["other"], atol=1e-5)


# -- 3. progress within a song ---------------------------------------------------------------------------------


def test_one_long_file_shows_its_chunks_and_an_eta(tiny_checkpoint, tmp_path, caplog):
    mix = song(tmp_path / "long.wav", seconds=6.0)
    with caplog.at_level(logging.INFO, logger="sepnet.app.progress"):
        separate(tiny_checkpoint, mix, tmp_path / "out", tmp_path, "separate.chunk_seconds=0.5", "separate.batch_size=1")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("separate long.wav:")]
    assert len(lines) == 10, lines  # one line per tenth of the chunks
    assert lines[0].startswith("separate long.wav: 2/14 chunks (14%), elapsed") and "ETA" in lines[0]
    assert lines[-1].startswith("separate long.wav: 14/14 chunks (100%)")


# -- 4. where the log goes -------------------------------------------------------------------------------------


def test_no_log_folder_where_it_is_run_from(tiny_checkpoint, tmp_path):
    song(tmp_path / "song.wav")
    result = cli(f"ckpt={tiny_checkpoint}", "song.wav", "-o", "stems", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav", "stems"]
    assert sorted(p.name for p in (tmp_path / "stems").iterdir()) == [".sepnet", "song"]  # the log is hidden beside the stems
    (log,) = (tmp_path / "stems" / ".sepnet").glob("separate_*/separate.log")
    assert "separate: 1/1 file (100%)" in log.read_text()
    result = cli(f"ckpt={tiny_checkpoint}", "song.wav", "-o", "stems2", f"hydra.run.dir={tmp_path / 'logs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "logs" / "separate.log").is_file() and not (tmp_path / "stems2" / ".sepnet").exists()


# -- 5. ensembles ---------------------------------------------------------------------------------------------


@pytest.fixture
def other_rate_checkpoint(tmp_path) -> Path:
    """An untrained checkpoint of the same four stems at 16 kHz (the tiny one runs at 22.05 kHz)."""
    path = tmp_path / "other_rate.ckpt"
    cfg = compose_config("train", [*TINY_RUN, "frontend.sample_rate=16000"], tmp_path / "other_run")
    write_fresh_checkpoint(cfg, path, seed=3, fill_statistics=0.0)
    return path


def test_ensemble_is_the_weighted_mean_of_the_single_runs(tiny_checkpoint, other_rate_checkpoint, tmp_path):
    mix = song(tmp_path / "song.wav", seconds=1.5, rate=44100)
    # The models' estimates alone: the band above their Nyquist frequency (separate.top_band) is given
    # once to the ensemble's stems, above the highest model's, not averaged from each single run.
    knobs = ["separate.chunk_seconds=0.5", "separate.top_band=drop"]
    separate(tiny_checkpoint, mix, tmp_path / "a", tmp_path, *knobs)
    separate(other_rate_checkpoint, mix, tmp_path / "b", tmp_path, *knobs)
    a, b = stems_of(tmp_path / "a" / "song"), stems_of(tmp_path / "b" / "song")
    separate(f"[{tiny_checkpoint},{other_rate_checkpoint}]", mix, tmp_path / "mean", tmp_path, *knobs)
    mean = stems_of(tmp_path / "mean" / "song")
    separate(f"[{tiny_checkpoint},{other_rate_checkpoint}]", mix, tmp_path / "weighted", tmp_path, *knobs,
             "separate.weights=[3,1]")
    weighted = stems_of(tmp_path / "weighted" / "song")
    for stem in STEMS:
        assert mean[stem].shape == (66150, 2)
        np.testing.assert_allclose(mean[stem], (a[stem] + b[stem]) / 2, atol=1e-6)
        np.testing.assert_allclose(weighted[stem], 0.75 * a[stem] + 0.25 * b[stem], atol=1e-6)
        assert not np.allclose(a[stem], b[stem], atol=1e-3)  # two different models


def test_ensemble_refuses_other_stems_and_wrong_weights(tiny_checkpoint, tmp_path):
    vocals = tmp_path / "vocals.ckpt"
    cfg = compose_config("train", [*TINY_RUN, "model.target_stems=[vocals]"], tmp_path / "vocals_run")
    write_fresh_checkpoint(cfg, vocals, seed=4)
    mix = song(tmp_path / "song.wav")
    with pytest.raises(SepnetError, match="an ensemble averages stem by stem: give checkpoints of the same stems"):
        separate(f"[{tiny_checkpoint},{vocals}]", mix, tmp_path / "out", tmp_path)
    with pytest.raises(SepnetError, match=r"separate.weights=\[1\] does not fit the 2 checkpoint\(s\) of ckpt"):
        separate(f"[{tiny_checkpoint},{tiny_checkpoint}]", mix, tmp_path / "out", tmp_path, "separate.weights=[1]")


# -- 6. --help ------------------------------------------------------------------------------------------------


def test_help_lists_only_what_separate_reads(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for shown in ("-o, --out", "-n, --ckpt", "-d, --device", "--two-stems", "--mp3", "inference@separate: default",
                  "clip_mode: rescale", "chunk_seconds"):
        assert shown in text, shown
    for hidden in ("optim", "trainer", "augment", "data/_common", "hparams_search", "experiment:"):
        assert hidden not in text, hidden
    assert not list(tmp_path.iterdir())


# -- README -----------------------------------------------------------------------------------------------------


def readme_section(heading: str) -> list[list[str]]:
    """The shell commands of README's section ``heading`` (lines starting with python or sepnet), as argv lists."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and line.lstrip("#").strip() == heading)
    commands = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.strip().startswith(("python -m sepnet", "sepnet ")):
            commands.append(shlex.split(line.strip(), comments=True))
    return commands


SEPARATE_A_SONG = readme_section("Separate a song")


def test_readme_separate_a_song_runs_as_printed(tiny_checkpoint, tmp_path):
    assert len(SEPARATE_A_SONG) >= 8
    song(tmp_path / "song.wav", seconds=1.5)
    song(tmp_path / "songs" / "a.flac", seed=1)
    song(tmp_path / "songs" / "b.wav", seed=2)
    (tmp_path / "best.ckpt").symlink_to(tiny_checkpoint)
    (tmp_path / "other.ckpt").symlink_to(tiny_checkpoint)
    for argv in SEPARATE_A_SONG:
        module = argv[2] if argv[0] == "python" else "sepnet"
        args = argv[3:] if argv[0] == "python" else argv[1:]
        result = cli(*args, cwd=tmp_path, module=module)
        assert result.returncode == 0, (argv, result.stderr[-3000:])
    assert not (tmp_path / "outputs").exists()
