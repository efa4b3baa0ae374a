"""One test per bad input: the exact one-line message a user sees, and nothing already written is lost.

Data inputs go through the data module; everything a user types goes through the
entry points (``python -m sepnet.train / separate / merge``) in a subprocess, as
the user runs them: one line on stderr, exit status 2, no traceback.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_RUN, TINY_SOURCE, compose_config, model_options, registered_models, write_fresh_checkpoint

import sepnet
from sepnet.app.configs import split_command_line
from sepnet.check_data import check
from sepnet.compare import main as compare_main
from sepnet.data.datamodule import SeparationDataModule
from sepnet.data.sources import StemFolderSource
from sepnet.errors import SepnetError
from sepnet.evaluate import evaluate
from sepnet.merge import merge
from sepnet.separate import separate

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
    with caplog.at_level(logging.WARNING, logger="sepnet.data.datamodule"):
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


def run_entry_point(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` as a user runs it; the result is returned whatever the exit status."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def run_train(*args: str) -> subprocess.CompletedProcess:
    return run_entry_point("sepnet.train", *args, timeout=180)


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


# -- checkpoints that do not fit -------------------------------------------------------------


@pytest.fixture
def unet_checkpoint(tmp_path) -> Path:
    """A sepnet checkpoint of a (fresh) tiny U-Net CRNN: another model than the default CRNN."""
    path = tmp_path / "unet.ckpt"
    write_fresh_checkpoint(compose_config("train", ["model=unet_crnn", *TINY_RUN], tmp_path / "unet_run"), path, seed=1)
    return path


def test_pretrained_checkpoint_of_another_model(unet_checkpoint, tiny_data_root, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        f"data.source.root={tiny_data_root}", *TINY_SOURCE, *TINY_RUN,
        f"init.pretrained={unet_checkpoint}", f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (f"sepnet: error: init.pretrained '{unet_checkpoint}' does not fit CRNN (it is a UNetCRNN checkpoint): "
        "0 missing, 0 unexpected, 3 shape-mismatched (decoder.0.conv.weight [16, 8, 4, 3] vs [8, 8, 4, 3], "
        "decoder.1.conv.weight [16, 4, 4, 3] vs [8, 4, 4, 3], decoder.2.conv.weight [8, 8, 4, 3] vs [4, 8, 4, 3]) "
        "[parent vs model]; use the parent's model settings, or init.strict=false to load the 48 matching tensors")
    ]
    assert not (run_dir / "checkpoints").exists()
    assert unet_checkpoint.stat().st_size > 0


def test_merge_of_checkpoints_of_different_models(tiny_checkpoint, unet_checkpoint, tmp_path):
    out = tmp_path / "merged.ckpt"
    before = [p.read_bytes() for p in (tiny_checkpoint, unet_checkpoint)]
    result = run_entry_point(
        "sepnet.merge", f"ckpts=[{tiny_checkpoint},{unet_checkpoint}]", f"out={out}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (f"sepnet: error: cannot merge '{tiny_checkpoint}' vs '{unet_checkpoint}': model._target_ is "
        "'sepnet.models.CRNN' vs 'sepnet.models.UNetCRNN'; merge checkpoints of one model and front end")
    ]
    assert not out.exists()
    assert [p.read_bytes() for p in (tiny_checkpoint, unet_checkpoint)] == before



def edited_checkpoint(tiny_checkpoint: Path, path: Path, edit) -> Path:
    """A copy of a real checkpoint with ``edit(raw)`` applied."""
    import torch

    raw = torch.load(tiny_checkpoint, weights_only=True)
    edit(raw)
    torch.save(raw, path)
    return path


def evaluate_args(ckpt: Path, tmp_path: Path, tiny_data_root: Path) -> list[str]:
    return [f"ckpt={ckpt}", f"data.source.root={tiny_data_root}", *TINY_SOURCE, f"hydra.run.dir={tmp_path / 'run'}"]


def separate_args(ckpt: Path, tmp_path: Path) -> list[str]:
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4000, 2), np.float32), RATE)
    return [f"ckpt={ckpt}", f"input={song}", f"out={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"]


def assert_one_line(result: subprocess.CompletedProcess, line: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [f"sepnet: error: {line}"]


EDITED_FIX = (
    "the file was changed after sepnet wrote it: use the file as sepnet.train or sepnet.merge wrote it, or take its "
    "matching tensors with init.pretrained=<path> init.strict=false"
)


def test_separate_checkpoint_whose_state_dict_lacks_tensors(tiny_checkpoint, tmp_path):
    def drop(raw):
        for key in ("separator.model.decoder.0.conv.weight", "separator.model.decoder.0.conv.bias"):
            del raw["state_dict"][key]

    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "cut.ckpt", drop)
    assert_one_line(
        run_entry_point("sepnet.separate", *separate_args(ckpt, tmp_path)),
        f"checkpoint '{ckpt}' does not fit the CRNN its config describes: 2 missing (model.decoder.0.conv.weight, "
        f"model.decoder.0.conv.bias), 0 unexpected, 0 shape-mismatched [file vs model]; {EDITED_FIX}",
    )
    assert not (tmp_path / "out").exists()


def test_evaluate_checkpoint_with_extra_and_reshaped_tensors(tiny_checkpoint, tiny_data_root, tmp_path):
    import torch

    def add(raw):
        raw["state_dict"]["separator.model.extra_head.weight"] = torch.zeros(3)
        raw["state_dict"]["separator.front_end.bin_mean"] = torch.zeros(7)

    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "extra.ckpt", add)
    assert_one_line(
        run_entry_point("sepnet.evaluate", *evaluate_args(ckpt, tmp_path, tiny_data_root)),
        f"checkpoint '{ckpt}' does not fit the CRNN its config describes: 0 missing, 1 unexpected "
        f"(model.extra_head.weight), 1 shape-mismatched (front_end.bin_mean [7] vs [512]) [file vs model]; {EDITED_FIX}",
    )


def test_separate_with_an_audio_file_as_the_checkpoint(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4000, 2), np.float32), RATE)
    assert_one_line(
        run_entry_point("sepnet.separate", *separate_args(song, tmp_path)),
        f"'{song}' is not a checkpoint: it is an audio file (WAV); pass the path of a .ckpt written by sepnet.train",
    )


def test_separate_with_a_text_file_as_the_checkpoint(tmp_path):
    notes = tmp_path / "notes.ckpt"
    notes.write_text("best run: outputs/crnn/2026-01-05\n")
    assert_one_line(
        run_entry_point("sepnet.separate", *separate_args(notes, tmp_path)),
        f"'{notes}' is not a checkpoint: it is neither a PyTorch checkpoint nor a pickle; pass the path of a .ckpt "
        "written by sepnet.train",
    )


def test_evaluate_with_a_folder_as_the_checkpoint(tiny_checkpoint, tiny_data_root, tmp_path):
    run_dir = tiny_checkpoint.parent.parent
    assert_one_line(
        run_entry_point("sepnet.evaluate", *evaluate_args(run_dir, tmp_path, tiny_data_root)),
        f"checkpoint '{run_dir}' is a folder; pass a .ckpt file (a run keeps its own in <run dir>/checkpoints/best.ckpt)",
    )


def test_separate_checkpoint_of_a_newer_sepnet(tiny_checkpoint, tmp_path):
    def newer(raw):
        raw["sepnet"]["version"] = "0.4.0"
        raw["sepnet"]["config"]["model"]["_target_"] = "sepnet.models.MelBandRoformer"  # a class of a future sepnet

    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "newer.ckpt", newer)
    assert_one_line(
        run_entry_point("sepnet.separate", *separate_args(ckpt, tmp_path)),
        f"checkpoint '{ckpt}' was refused: model._target_ is 'sepnet.models.MelBandRoformer', not a sepnet model "
        f"({registered_models()}); a model of your own registers when its module is imported: name it in "
        "plugins=[<module>]; it was written by sepnet "
        f"'0.4.0' and this is sepnet {sepnet.__version__}: load it with the version that wrote it",
    )


def test_evaluate_checkpoint_without_the_config_entry(tiny_checkpoint, tiny_data_root, tmp_path):
    ckpt = edited_checkpoint(tiny_checkpoint, tmp_path / "bare.ckpt", lambda raw: raw["sepnet"]["config"].pop("frontend"))
    assert_one_line(
        run_entry_point("sepnet.evaluate", *evaluate_args(ckpt, tmp_path, tiny_data_root)),
        f"checkpoint '{ckpt}' has no sepnet.config.frontend entry: it was not written by sepnet {sepnet.__version__}'s "
        "sepnet.train or sepnet.merge; start from its weights with init.pretrained=<path> init.strict=false",
    )


# -- separate: very short and very long files, hostile names ---------------------------------------

# Runs sepnet.separate's entry point and reports its own peak resident memory on stderr.
MEASURED_SEPARATE = """
import resource, runpy, sys
sys.argv = ["sepnet.separate", *sys.argv[1:]]
try:
    runpy.run_module("sepnet.separate", run_name="__main__")
finally:
    print("peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)
"""


def separate_measured(ckpt: Path, audio: Path, out: Path, run_dir: Path, *overrides: str) -> float:
    """Separate ``audio`` through the entry point in a fresh process; returns its peak RSS in MiB."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURED_SEPARATE, f"ckpt={ckpt}", f"input={audio}", f"out={out}",
         f"hydra.run.dir={run_dir}", *overrides],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr
    return float(result.stderr.strip().splitlines()[-1].split()[-1])


def write_long_song(path: Path, minutes: float, rate: int = 44100) -> None:
    """A stereo 16-bit WAV of ``minutes`` of tones and noise, written block by block (never whole in memory)."""
    rng = np.random.default_rng(0)
    block = 10 * rate
    with sf.SoundFile(path, "w", rate, 2, "PCM_16") as f:
        for start in range(0, round(minutes * 60 * rate), block):
            t = (start + np.arange(block)) / rate
            tone = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(block)
            f.write(np.stack([tone, 0.8 * tone], 1).astype(np.float32))


def test_separate_a_tenth_of_a_second(tiny_checkpoint, tmp_path):
    rate = 44100
    sf.write(tmp_path / "blip.wav", 0.2 * np.ones((rate // 10, 2), np.float32), rate)
    out = tmp_path / "out"
    separate_measured(tiny_checkpoint, tmp_path / "blip.wav", out, tmp_path / "run")
    written = sorted(out.rglob("*.wav"))
    assert [p.name for p in written] == [f"{s}.wav" for s in STEMS]
    for path in written:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (rate, 2, rate // 10)


@pytest.mark.slow
def test_separate_a_ten_minute_file_in_bounded_memory(tiny_checkpoint, tmp_path):
    peaks = {}
    for minutes in (1, 10):
        song = tmp_path / f"song_{minutes:g}min.wav"
        write_long_song(song, minutes)
        # One chunk per forward pass: the transient per chunk is then small beside what a whole track would take.
        peaks[minutes] = separate_measured(
            tiny_checkpoint, song, tmp_path / "out", tmp_path / f"run_{minutes:g}", "separate.batch_size=1"
        )
        stems = sorted((tmp_path / "out" / song.stem).glob("*.wav"))
        assert len(stems) == 4 and all(sf.info(p).frames == sf.info(song).frames for p in stems)
        for path in [song, *stems]:  # 0.5 GB of WAVs: free the disk as we go
            path.unlink()
    # Streaming read, chunked model, streaming write: 10x the audio, about the same memory.
    # Holding the 10-minute track whole would add > 400 MiB (its float32 input, four stems, spectrograms).
    assert peaks[10] - peaks[1] < 100, peaks


def test_track_name_with_parent_folders_stays_inside_the_output_folder(tiny_checkpoint, tmp_path):
    (tmp_path / "music" / "a" / "b").mkdir(parents=True)
    sf.write(tmp_path / "music" / "..x.wav", 0.1 * np.ones((4410, 2), np.float32), 44100)
    out = tmp_path / "music" / "a" / "b" / "out"
    # The input path climbs out of the output folder's parents: ../../..x.wav
    separate_measured(tiny_checkpoint, out.parent / ".." / ".." / "..x.wav", out, tmp_path / "run")
    written = sorted(p.relative_to(out) for p in out.rglob("*.wav"))
    assert [str(p) for p in written] == [f"x/{s}.wav" for s in STEMS]
    assert sorted(p.name for p in (tmp_path / "music").iterdir()) == ["..x.wav", "a"]


# -- README's commands, as printed: Hydra's options anywhere ------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands(heading: str) -> list[list[str]]:
    """The ``python -m sepnet.<X> ...`` lines of README's section ``heading`` as argv lists (comments dropped)."""
    text = README.read_text()
    start = next(i for i, line in enumerate(text.splitlines()) if line.lstrip("#").strip().startswith(heading))
    commands = []
    for line in text.splitlines()[start + 1 :]:
        if line.startswith("#"):
            break
        if line.strip().startswith("python -m sepnet."):
            commands.append(shlex.split(line.strip(), comments=True)[2:])  # ["sepnet.evaluate", "ckpt=...", ...]
    return commands


NEXT_STEPS = readme_commands("Next steps")
SCORE = readme_commands("Score, listen, separate")


def readme_command(commands: list[list[str]], module: str, *words: str) -> list[str]:
    """The one README command of ``module`` that holds every word of ``words``."""
    (found,) = [c for c in commands if c[0] == module and all(w in c for w in words)]
    return found


def with_values(argv: list[str], **values: str) -> list[str]:
    """``argv`` with the value of each ``key=`` in ``values`` replaced (README's placeholders; ``__`` for ``.``)."""
    values = {key.replace("__", "."): value for key, value in values.items()}
    return [f"{a.partition('=')[0]}={values[a.partition('=')[0]]}" if a.partition("=")[0] in values else a for a in argv]


def test_readme_holds_the_commands_tested_here():
    assert len(NEXT_STEPS) >= 8 and len(SCORE) >= 6
    sweep = readme_command(SCORE, "sepnet.evaluate", "-m")
    assert sweep.index("-m") < len(sweep) - 1  # an override after the option: what Hydra's parser refuses


def test_readme_knob_sweep_with_overrides_after_the_option(tiny_checkpoint, tiny_data_root, tmp_path):
    module, *args = with_values(readme_command(SCORE, "sepnet.evaluate", "-m"), ckpt=str(tiny_checkpoint))
    sweep = tmp_path / "sweep"
    result = run_entry_point(
        module, *args, f"data.source.root={tiny_data_root}", *TINY_SOURCE, "eval.max_tracks=1", "report=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scales = [float(v) for v in next(a for a in args if a.startswith("eval.mask_scale=")).partition("=")[2].split(",")]
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [float(r["eval.mask_scale"]) for r in rows] == scales
    for job, scale in enumerate(scales):
        results = json.loads((sweep / str(job) / "results.json").read_text())
        assert (results["split"], results["knobs"]["mask_scale"]) == ("valid", scale)


def test_readme_separate_and_merge_as_printed(tiny_checkpoint, tmp_path):
    song = tmp_path / "song.flac"
    sf.write(song, 0.1 * np.random.default_rng(0).standard_normal((22050, 2)).astype(np.float32), 22050)
    module, *args = with_values(readme_command(SCORE, "sepnet.separate"), ckpt=str(tiny_checkpoint), input=str(song),
                                out=str(tmp_path / "separated"))
    result = run_entry_point(module, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "separated" / "song").iterdir()) == [f"{s}.wav" for s in STEMS]

    module, *args = with_values(readme_command(SCORE, "sepnet.merge"), ckpts=f"[{tiny_checkpoint},{tiny_checkpoint}]")
    result = run_entry_point(module, *args, f"paths.outputs_root={tmp_path / 'outputs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    (merged,) = (tmp_path / "outputs").glob("blend_0.8_0.2/*/checkpoints/best.ckpt")
    assert result.stdout.strip().splitlines()[-1] == f"checkpoint: {merged}"


def test_readme_check_data_as_printed(tiny_checkpoint, tiny_data_root, tmp_path):
    module, *args = with_values(
        readme_command(SCORE, "sepnet.check_data"),
        data__train_dir=str(tiny_data_root / "train"), data__val_dir=str(tiny_data_root / "valid"),
    )
    result = run_entry_point(module, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "6 tracks (train 4, valid 2)" in result.stdout


def test_readme_train_commands_compose_and_options_stand_anywhere(tmp_path):
    trains = [c[1:] for c in NEXT_STEPS if c[0] == "sepnet.train"]
    for argv in trains:
        options, overrides = split_command_line(argv)
        if "-m" in options:  # a sweep: compose its first job
            overrides = [o.split(",")[0] if "[" not in o else o for o in overrides]
        assert options in ([], ["-m"], ["--cfg", "job"], ["--help"]), argv
        compose_config("train", overrides, tmp_path / "run")
    # --cfg job and --help with an override after them (Hydra's parser alone refuses both)
    cfg_job = readme_command(NEXT_STEPS, "sepnet.train", "--cfg")
    result = run_entry_point(*cfg_job, "trainer.max_epochs=3", "model=large", f"hydra.run.dir={tmp_path / 'shown'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max_epochs: 3" in result.stdout and "hidden_size: 512" in result.stdout
    assert not (tmp_path / "shown").exists()  # shown, not run
    result = run_entry_point(*readme_command(NEXT_STEPS, "sepnet.train", "--help"), "model=large")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model: {model_options()}" in result.stdout


@pytest.mark.parametrize(
    "argv,options,overrides",
    [
        (["a=1", "-m", "b=1,2"], ["-m"], ["a=1", "b=1,2"]),
        (["a=1", "--cfg", "job", "b=2", "--resolve"], ["--cfg", "job", "--resolve"], ["a=1", "b=2"]),
        (["-i", "a=1"], ["-i"], ["a=1"]),  # --info's value is optional: a=1 is an override
        (["a=1", "--info", "defaults", "-cn=evaluate", "--multirun"], ["--info", "defaults", "-cn=evaluate", "--multirun"], ["a=1"]),
        (["+x=1", "~y", "--help"], ["--help"], ["+x=1", "~y"]),
    ],
)
def test_hydra_options_are_moved_before_the_overrides(argv, options, overrides):
    assert split_command_line(argv) == (options, overrides)


@pytest.mark.parametrize(
    "module,typo,meant",
    [
        ("sepnet.evaluate", "eval.mask_scal", "eval.mask_scale"),
        ("sepnet.separate", "separate.mask_scal", "separate.mask_scale"),
        ("sepnet.merge", "weigths", "weights"),
        ("sepnet.check_data", "check.silence_bd", "check.silence_db"),
        ("sepnet.reproduce", "paths.outputs_rot", "paths.outputs_root"),
    ],
)
def test_every_entry_point_names_a_mistyped_key_in_one_line(module, typo, meant, tmp_path):
    result = run_entry_point(module, f"hydra.run.dir={tmp_path / 'run'}", "--cfg", "job", f"{typo}=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sepnet: error: {typo} is not a setting of this run; did you mean {meant}? (+{typo}=... adds a new key on purpose)"
    ]


# -- every entry point, careless inputs: one line naming the thing and the fix, nothing lost ------------


def one_line_error(entry_point, cfg_or_argv, capsys) -> str:
    """Run a decorated entry point in-process; it must exit 2 with exactly one line on stderr, which is returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        entry_point(cfg_or_argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sepnet: error: ")
    return lines[0].removeprefix("sepnet: error: ")


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file the user keeps, given where a folder belongs (fails for root too, unlike chmod)."""
    path = tmp_path / "notes.txt"
    path.write_text("the user's notes")
    return path


def folder_data(tiny_data_root, tmp_path, **dirs: Path | None) -> list[str]:
    """``data=folder`` overrides on the tiny dataset's train/valid folders, any of them replaced by ``dirs``."""
    chosen = {"train_dir": tiny_data_root / "train", "val_dir": tiny_data_root / "valid", **dirs}
    return ["data=folder", f"data.cache_dir={tmp_path / 'cache'}",
            *(f"data.{key}={value}" for key, value in chosen.items() if value is not None)]


def evaluate_config(tiny_checkpoint, tmp_path, *overrides: str):
    return compose_config("evaluate", [f"ckpt={tiny_checkpoint}", "report=false", *overrides], tmp_path / "eval_run")


def test_evaluate_on_an_empty_folder_split(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    empty = tmp_path / "test_tracks"
    empty.mkdir()
    cfg = evaluate_config(tiny_checkpoint, tmp_path, *folder_data(tiny_data_root, tmp_path, test_dir=empty))
    assert one_line_error(evaluate, cfg, capsys) == (
        f"split=test: data.test_dir '{empty}' holds no track folders; add tracks there, point the data config at "
        "the folder that has them, or pick another split"
    )
    assert list(empty.iterdir()) == []


def test_evaluate_on_a_folder_split_that_is_not_set(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    cfg = evaluate_config(tiny_checkpoint, tmp_path, *folder_data(tiny_data_root, tmp_path))
    assert one_line_error(evaluate, cfg, capsys) == (
        "no test tracks: data.test_dir is not set; set it to a folder of track folders"
    )


def test_evaluate_gain_auto_without_valid_tracks(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    empty = tmp_path / "val_tracks"
    empty.mkdir()
    overrides = folder_data(tiny_data_root, tmp_path, val_dir=empty, test_dir=tiny_data_root / "test")
    cfg = evaluate_config(tiny_checkpoint, tmp_path, *overrides, "eval.gain=auto")
    assert one_line_error(evaluate, cfg, capsys) == (
        f"eval.gain=auto learns the gain on the valid split, but data.val_dir '{empty}' holds no tracks; "
        "add tracks there or set eval.gain to a number"
    )


def test_a_mandatory_setting_left_unset(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    cfg = evaluate_config(tiny_checkpoint, tmp_path, "data=folder", f"data.test_dir={tiny_data_root / 'test'}")
    assert one_line_error(evaluate, cfg, capsys) == (
        "data.train_dir is not set (it has no default); pass data.train_dir=<value>"
    )


def check_data_config(tmp_path, *overrides: str):
    return compose_config("check_data", list(overrides), tmp_path / "check_run")


def test_data_folders_that_are_files(tiny_data_root, blocker, tmp_path, capsys):
    cfg = check_data_config(tmp_path, *folder_data(tiny_data_root, tmp_path, train_dir=blocker))
    assert one_line_error(check, cfg, capsys) == (
        f"data.train_dir '{blocker}' is a file, not a folder; set data.train_dir to a folder of track folders"
    )
    cfg = check_data_config(tmp_path, "data=stem_folder", f"data.source.root={blocker}")
    assert one_line_error(check, cfg, capsys) == (
        f"data.source.root '{blocker}' is a file, not a folder; set it to the dataset's root folder"
    )
    assert blocker.read_text() == "the user's notes"


def test_check_data_on_empty_folders(tmp_path, capsys):
    empty = tmp_path / "tracks"
    (empty / "train").mkdir(parents=True)
    (empty / "valid").mkdir()
    cfg = check_data_config(tmp_path, "data=folder", f"data.train_dir={empty / 'train'}", f"data.val_dir={empty / 'valid'}")
    assert one_line_error(check, cfg, capsys) == (
        f"found no stem files in data.train_dir '{empty / 'train'}'; each track folder needs <stem>.wav files"
    )
    cfg = check_data_config(tmp_path, "data=stem_folder", f"data.source.root={empty}")
    assert one_line_error(check, cfg, capsys) == (
        f"found no stem files in '{empty / 'train'}'; each track folder needs <stem>.wav files"
    )
    assert sorted(p.name for p in empty.rglob("*")) == ["train", "valid"]  # nothing written into the data


def separate_config(tiny_checkpoint, tmp_path, *overrides: str):
    return compose_config("separate", [f"ckpt={tiny_checkpoint}", *overrides], tmp_path / "separate_run")


def test_separate_inputs_that_are_not_audio(tiny_checkpoint, blocker, tmp_path, capsys):
    out = tmp_path / "separated"
    cfg = separate_config(tiny_checkpoint, tmp_path, f"input={blocker}", f"out={out}")
    assert one_line_error(separate, cfg, capsys) == (
        f"'{blocker}' is not a readable audio file (ffmpeg: Invalid data found when processing input); "
        "re-export it as WAV/FLAC or remove the track"
    )
    no_audio = tmp_path / "docs"
    no_audio.mkdir()
    (no_audio / "readme.md").write_text("no music here")
    cfg = separate_config(tiny_checkpoint, tmp_path, f"input={no_audio}", f"out={out}")
    assert one_line_error(separate, cfg, capsys) == (
        f"input folder '{no_audio}' holds no audio files and no track folders with a mixture file; "
        "pass a file or a folder of them"
    )
    assert blocker.read_text() == "the user's notes" and not any(out.rglob("*.wav"))


def test_separate_a_missing_input(tiny_checkpoint, tmp_path, capsys):
    cfg = separate_config(tiny_checkpoint, tmp_path, f"input={tmp_path / 'song.wav'}")
    assert one_line_error(separate, cfg, capsys) == (
        f"input '{tmp_path / 'song.wav'}' does not exist; pass input=<audio file or folder>"
    )
    cfg = separate_config(tiny_checkpoint, tmp_path)  # input: ??? left as it is
    assert one_line_error(separate, cfg, capsys) == "no input given; pass input=<path>"


def test_separate_into_a_folder_under_a_file(tiny_checkpoint, blocker, tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4410, 2), np.float32), 44100)
    cfg = separate_config(tiny_checkpoint, tmp_path, f"input={song}", f"out={blocker / 'stems'}")
    assert one_line_error(separate, cfg, capsys) == (
        f"output folder '{blocker / 'stems'}' cannot be written (Not a directory); "
        "choose another with out=<folder> or fix its permissions"
    )
    assert blocker.read_text() == "the user's notes"


def test_merge_into_impossible_places(tiny_checkpoint, blocker, tmp_path, capsys):
    before = tiny_checkpoint.read_bytes()
    cfg = compose_config("merge", [f"ckpts=[{tiny_checkpoint},{tiny_checkpoint}]", f"out={blocker / 'blend.ckpt'}"], tmp_path / "m")
    assert one_line_error(merge, cfg, capsys) == (
        f"output folder '{blocker}' cannot be written (it is a file, not a folder); "
        "choose another with out=<path of a .ckpt> or fix its permissions"
    )
    folder = tmp_path / "blends"
    folder.mkdir()
    cfg = compose_config("merge", [f"ckpts=[{tiny_checkpoint},{tiny_checkpoint}]", f"out={folder}"], tmp_path / "m")
    assert one_line_error(merge, cfg, capsys) == (
        f"out={folder} is a folder; name the checkpoint file to write, e.g. out={folder / 'merged.ckpt'}"
    )
    assert blocker.read_text() == "the user's notes" and list(folder.iterdir()) == []
    assert tiny_checkpoint.read_bytes() == before


def test_compare_plot_into_a_folder_under_a_file(blocker, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text("epoch,step,train/loss,val/loss,val/sdr\n0,3,0.5,,\n0,3,,0.4,1.5\n")
    out = blocker / "compare.png"
    assert one_line_error(compare_main, [str(run), "--out", str(out)], capsys) == (
        f"output folder '{blocker}' cannot be written (it is a file, not a folder); "
        "choose another with --out=<file.png> or fix its permissions"
    )
    assert blocker.read_text() == "the user's notes"


def test_evaluate_run_dir_under_a_file_through_the_entry_point(tiny_checkpoint, blocker):
    result = run_entry_point("sepnet.evaluate", f"ckpt={tiny_checkpoint}", f"hydra.run.dir={blocker / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            f"sepnet: error: output folder '{blocker / 'run'}' cannot be written (Not a directory); "
            "choose another with hydra.run.dir=<folder> or fix its permissions"
        )
    ]
    assert blocker.read_text() == "the user's notes"
