"""Beat targets (the dataset's beats.txt or librosa's tracker, cached), and mir_eval's beat F-measure."""

import shutil

import mir_eval
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_SOURCE, compose_config

from sepnet.audio.cache import AudioCache
from sepnet.check_data import run_check
from sepnet.data.beats import (
    activation_beat_times,
    beat_activation_target,
    beat_f_measure,
    chunk_beat_positions,
    positions_to_times,
    read_beat_file,
    tracked_beats,
)
from sepnet.data.datamodule import load_track
from sepnet.data.sources import read_track_folder
from sepnet.data.synthetic import DEFAULT_TRACKS, _track_seed, generate_track
from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.errors import SepnetError
from sepnet.evaluation.rhythm import score_track_beats, track_beat_activation
from sepnet.inference.overlap_add import OverlapAdd
from sepnet.inference.separator import Separator
from sepnet.models import SeparationModel

RATE = 22050
STEMS = ["bass", "drums", "other", "vocals"]


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


def test_f_measure_is_mir_evals_optimal_matching_not_a_greedy_one():
    # Greedy nearest-first pairs 1.12 with 1.061 and leaves both others unmatched; the optimal
    # matching (mir_eval's) pairs 1.0-1.061 and 1.12-1.185.
    reference, estimate = np.array([1.0, 1.12]), np.array([1.061, 1.185])
    assert beat_f_measure(reference, estimate) == 1.0 == mir_eval.beat.f_measure(reference, estimate)
    # No 5 s trimming: beats of a short chunk count.
    assert beat_f_measure(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == 1.0


# -- the tracker -------------------------------------------------------------------------------


def clicks(times: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """(2, samples) decaying noise bursts at ``times``: a click track."""
    audio = np.zeros((2, round(seconds * RATE)), np.float32)
    burst = 0.5 * np.exp(-np.arange(600) / 80)
    for t in times:
        start = round(t * RATE)
        n = min(600, audio.shape[-1] - start)
        audio[:, start : start + n] += burst[:n] * rng.standard_normal(n)
    return audio


def write_click_track(folder, click_times, seconds=8.0, click_stem="drums", beats_txt=None):
    """A track folder at 22050 Hz: ``click_stem`` clicks, the other stems quiet noise (drums silent unless clicked)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for stem in STEMS:
        if stem == click_stem:
            audio = clicks(click_times, seconds, rng)
        elif stem == "drums":
            audio = np.zeros((2, round(seconds * RATE)), np.float32)
        else:
            audio = (0.003 * rng.standard_normal((2, round(seconds * RATE)))).astype(np.float32)
        sf.write(folder / f"{stem}.wav", audio.T, RATE, subtype="FLOAT")
    if beats_txt is not None:
        (folder / "beats.txt").write_text("".join(f"{t}\n" for t in beats_txt))
    return read_track_folder(folder, STEMS)


@pytest.fixture
def beat_track_calls(monkeypatch):
    """Counts the calls of librosa.beat.beat_track (the tracker still runs)."""
    import librosa

    calls = []
    real = librosa.beat.beat_track

    def counted(*args, **kwargs):
        calls.append(kwargs.get("sr"))
        return real(*args, **kwargs)

    monkeypatch.setattr(librosa.beat, "beat_track", counted)
    return calls


def found(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Share of the reference beats with a tracked beat within 70 ms (one-to-one, as mir_eval matches)."""
    return len(mir_eval.util.match_events(reference, estimate, 0.07)) / len(reference)


def test_click_track_on_the_drums_is_tracked_once_and_then_read_from_the_cache(tmp_path, beat_track_calls):
    truth = np.arange(0.25, 8.0, 60 / 110)  # 110 BPM
    files = write_click_track(tmp_path / "data" / "clicks", truth)
    track = load_track(files, STEMS, AudioCache(tmp_path / "cache", RATE), beats=True)
    assert track.beat_source == "librosa:drums" and len(beat_track_calls) == 1
    assert found(truth, track.beats) >= 0.9
    assert beat_f_measure(truth, track.beats) >= 0.9

    # A new run (a new cache object over the same folder): the beats come from the cache, unchanged.
    cache = AudioCache(tmp_path / "cache", RATE)
    again = load_track(files, STEMS, cache, beats=True)
    assert len(beat_track_calls) == 1 and cache.beats_reused == 1 and cache.beats_tracked == 0
    np.testing.assert_array_equal(again.beats, track.beats)
    assert again.beat_source == "librosa:drums"
    assert len(list((tmp_path / "cache").glob("*.beats.json"))) == 1

    # A changed stem file is a new track: tracked again, and the old entry goes.
    shifted = truth[:-1] + 0.2
    write_click_track(tmp_path / "data2" / "clicks", shifted)
    shutil.copy(tmp_path / "data2" / "clicks" / "drums.wav", files.stems["drums"])
    changed = load_track(read_track_folder(files.folder, STEMS), STEMS, cache, beats=True)
    assert len(beat_track_calls) == 2 and found(shifted, changed.beats) >= 0.9
    assert len(list((tmp_path / "cache").glob("*.beats.json"))) == 1


def test_silent_drums_fall_back_to_the_mixture(tmp_path, beat_track_calls):
    truth = np.arange(0.4, 8.0, 60 / 95)
    files = write_click_track(tmp_path / "data" / "quiet_drums", truth, click_stem="other")
    track = load_track(files, STEMS, AudioCache(tmp_path / "cache", RATE), beats=True)
    assert track.beat_source == "librosa:mixture" and len(beat_track_calls) == 1
    assert found(truth, track.beats) >= 0.9
    # Without a drums stem read at all, the mixture of the stems read is tracked as well.
    no_drums = load_track(files, ["other", "vocals"], AudioCache(tmp_path / "cache2", RATE), beats=True)
    assert no_drums.beat_source == "librosa:mixture" and found(truth, no_drums.beats) >= 0.9


def test_a_datasets_beats_txt_wins_over_the_tracker(tmp_path, beat_track_calls):
    written = [0.5, 1.5, 2.5, 3.25]  # not where the clicks are
    files = write_click_track(tmp_path / "data" / "annotated", np.arange(0.25, 8.0, 0.5), beats_txt=written)
    track = load_track(files, STEMS, AudioCache(tmp_path / "cache", RATE), beats=True)
    assert track.beat_source == "beats.txt" and beat_track_calls == []
    np.testing.assert_array_equal(track.beats, written)
    # Milliseconds instead of seconds: one line naming the file.
    (files.folder / "beats.txt").write_text("500\n1500\n2500\n")
    with pytest.raises(SepnetError, match=r"beat file '.*annotated/beats.txt' has times outside the track \(0 to 8.00 s\)"):
        load_track(files, STEMS, AudioCache(tmp_path / "cache", RATE), beats=True)


def test_embedded_set_beats_are_tracked_within_70_ms_of_the_generators_truth(tiny_data_root, tiny_run, tmp_path):
    from hydra.utils import instantiate

    datamodule = instantiate(tiny_run().data)
    datamodule.prepare_data()  # generates the tiny embedded set (4 s tracks) if no test did yet
    hits = total = 0
    for split in ("train", "valid", "test"):
        for folder in sorted((tiny_data_root / split).iterdir()):
            copy = tmp_path / split / folder.name
            shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("beats.txt"))
            track = load_track(read_track_folder(copy, STEMS), STEMS, AudioCache(tmp_path / "cache", RATE), beats=True)
            assert track.beat_source == "librosa:drums"
            truth = read_beat_file(folder / "beats.txt")
            hits += len(mir_eval.util.match_events(truth, track.beats, 0.07))
            total += len(truth)
    assert total > 50 and hits / total >= 0.9


@pytest.mark.slow
def test_default_embedded_set_beats_are_tracked_within_70_ms_of_the_generators_truth():
    """All 30 tracks of the default embedded set (10 s each): the tempo from the mixture matters here."""
    hits = total = 0
    for split, count in DEFAULT_TRACKS.items():
        for index in range(count):
            stems, truth = generate_track(_track_seed(0, split, index), 10.0, RATE)
            beats, source = tracked_beats(stems["drums"], sum(stems.values()), RATE)
            assert source == "librosa:drums"
            hits += len(mir_eval.util.match_events(truth, beats, 0.07))
            total += len(truth)
    assert hits / total >= 0.9


# -- check_data shows where the beats come from ---------------------------------------------------------


def test_check_data_shows_each_tracks_beat_source(tmp_path, capsys):
    write_click_track(tmp_path / "train" / "annotated", np.arange(0.25, 8.0, 0.5), beats_txt=[0.25, 0.75, 1.25])
    write_click_track(tmp_path / "train" / "clicks", np.arange(0.25, 8.0, 60 / 110))
    write_click_track(tmp_path / "val" / "quiet_drums", np.arange(0.4, 8.0, 60 / 95), click_stem="other")
    overrides = ["data=folder", f"data.train_dir={tmp_path / 'train'}", f"data.val_dir={tmp_path / 'val'}",
                 "data.beats=true", "check.splits=[train,valid]"]
    assert run_check(compose_config("check_data", overrides, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith(("train ", "valid "))}
    assert "beats.txt (3)" in rows["annotated"]
    assert "librosa:drums (" in rows["clicks"] and "librosa:mixture (" in rows["quiet_drums"]
    assert "note: beats: 1 from beats.txt, 1 from librosa:drums, 1 from librosa:mixture" in out
    assert "beats of 2 tracks tracked, 0 reused" in out
    assert run_check(compose_config("check_data", overrides, tmp_path / "run2")) == 0
    assert "beats of 0 tracks tracked, 2 reused" in capsys.readouterr().out

    # Without data.beats the tracker does not run; the column says so.
    plain = [o for o in overrides if o != "data.beats=true"]
    assert run_check(compose_config("check_data", plain, tmp_path / "run3")) == 0
    out = capsys.readouterr().out
    assert "note: beats: not read (data.beats=false)" in out
    assert all(row.split()[-2] == "-" for row in out.splitlines() if row.startswith(("train ", "valid ")))


# -- the rhythm head on whole tracks (evaluate) ----------------------------------------------------------


class LoudFrames(SeparationModel):
    """A stand-in rhythm head: beat logit = how much louder a frame is than its chunk's median frame."""

    auxiliary_heads = ("beats",)

    def __init__(self):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = ["drums"], 512, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_heads(x)[0]

    def forward_with_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, C, F, T) -> (masks (B, 1, C, F, T), {"beats": logits (B, T)})."""
        energy = x.mean(dim=(1, 2))
        logits = 10 * (energy - energy.median(dim=-1, keepdim=True).values) - 2
        return torch.ones_like(x)[:, None], {"beats": logits}


@pytest.mark.parametrize("chunk_seconds", [1.3, 20.0])  # many chunks across the track, or one piece
def test_whole_track_activation_stitches_chunks_on_the_tracks_frames(chunk_seconds):
    truth = np.arange(0.3, 7.5, 0.55)
    mixture = clicks(truth, 7.77, np.random.default_rng(1))
    runner = OverlapAdd(Separator(SpectralFrontEnd(), LoudFrames()), chunk_seconds, overlap=0.3, batch_size=2, device="cpu")
    activation, frame_rate = track_beat_activation(runner, mixture)
    assert activation.shape == (mixture.shape[-1] // 256 + 1,) and frame_rate == RATE / 256
    scores = score_track_beats(runner, mixture, truth, threshold=0.5)
    assert scores["beat_f1"] == 1.0 and scores["estimated_beats"] == len(truth)
    estimate = activation_beat_times(torch.from_numpy(activation[None]), frame_rate, 0.5)[0]
    np.testing.assert_allclose(estimate, truth, atol=0.03)


@pytest.mark.slow
def test_multitask_run_reports_beat_f1_in_its_summary_the_sweep_table_and_evaluate(tiny_run, tiny_data_root, tmp_path):
    """A tiny multi-task run: summary.json carries the best epoch's val/beat_f1 (mir_eval), a sweep table
    over two such summaries has the column, and evaluate scores the rhythm head on whole tracks."""
    import csv
    import json

    from omegaconf import OmegaConf

    from sepnet.app.hydra_callbacks import SweepTable
    from sepnet.checkpoints.checkpoint import read_checkpoint
    from sepnet.evaluate import run_evaluation
    from sepnet.train import run_training
    from sepnet.training.module import CHECKPOINT_KEY

    cfg = tiny_run("model=unet_crnn_mtl", "logger=none", "trainer.max_epochs=1", output_dir=tmp_path / "sweep" / "0")
    _, summary = run_training(cfg)
    stored = read_checkpoint(summary["best_checkpoint"])[CHECKPOINT_KEY]["metrics"]
    assert 0.0 <= summary["best_val_beat_f1"] <= 1.0 and summary["best_val_beat_f1"] == stored["val/beat_f1"]
    on_disk = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    assert on_disk["best_val_beat_f1"] == summary["best_val_beat_f1"]

    # The sweep table (as after `-m`): a second job whose summary differs only in its numbers.
    (tmp_path / "sweep" / "1").mkdir()
    (tmp_path / "sweep" / "1" / "summary.json").write_text(json.dumps({**on_disk, "best_val_beat_f1": 0.25}))
    for job, lr in (("0", "1e-3"), ("1", "1e-4")):
        (tmp_path / "sweep" / job / ".hydra").mkdir(exist_ok=True)
        (tmp_path / "sweep" / job / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n")
    SweepTable().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert [float(r["best_val_beat_f1"]) for r in rows] == [summary["best_val_beat_f1"], 0.25]

    overrides = [f"ckpt={summary['best_checkpoint']}", f"data.source.root={tiny_data_root}", "report=false",
                 *TINY_SOURCE]
    results = run_evaluation(compose_config("evaluate", overrides, tmp_path / "evaluate"))
    assert 0.0 <= results["beat_f1"] <= 1.0 and results["beat_references"] == "2 beats.txt"
    with open(tmp_path / "evaluate" / "beats.csv") as f:
        per_track = list(csv.DictReader(f))
    assert [r["reference_source"] for r in per_track] == ["beats.txt", "beats.txt"]
    reference_counts = [len(read_beat_file(tiny_data_root / "test" / r["track"] / "beats.txt")) for r in per_track]
    assert [int(r["reference_beats"]) for r in per_track] == reference_counts
    assert results["beat_f1"] == pytest.approx(np.mean([float(r["beat_f1"]) for r in per_track]))
    assert json.loads((tmp_path / "evaluate" / "results.json").read_text())["beat_f1"] == results["beat_f1"]
    assert "rhythm head: beat F-measure" in (tmp_path / "evaluate" / "summary.md").read_text()

