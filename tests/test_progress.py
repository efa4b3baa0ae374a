"""Long loops that are not a Lightning fit show progress: a bar with an ETA in a terminal, plain lines in a log."""

from __future__ import annotations

import io
import logging
import re
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_RUN, TINY_SOURCE, compose_config, write_fresh_checkpoint

from sepnet.app import progress as progress_module
from sepnet.app.progress import clock, progress, progress_line

PROGRESS_LOGGER = "sepnet.app.progress"


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal, as a user's stderr does."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    """``time.monotonic`` as the progress module reads it; a test moves ``now`` on as its loop body would take."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(progress_module.time, "monotonic", lambda: self.now)


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]


def test_a_log_gets_a_line_per_tenth_with_elapsed_time_and_eta(monkeypatch, caplog):
    clock_ = FakeClock(monkeypatch)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    log_file = io.StringIO()  # not a terminal
    seen = []
    for item in progress(range(20), "evaluate", stream=log_file):
        clock_.now += 3.0  # every track takes 3 s
        seen.append(item)
    assert seen == list(range(20))
    lines = progress_lines(caplog)
    assert len(lines) == 10
    assert lines[0] == "evaluate: 2/20 tracks (10%), elapsed 0:06, ETA 0:54"
    assert lines[4] == "evaluate: 10/20 tracks (50%), elapsed 0:30, ETA 0:30"
    assert lines[-1] == "evaluate: 20/20 tracks (100%), elapsed 1:00, ETA 0:00"
    assert log_file.getvalue() == ""  # no bar, no escape codes in the log


def test_a_short_loop_logs_every_item(monkeypatch, caplog):
    clock_ = FakeClock(monkeypatch)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    for _ in progress(["a", "b", "c"], "reproduce", unit="step", stream=io.StringIO()):
        clock_.now += 65.0
    assert progress_lines(caplog) == [
        "reproduce: 1/3 steps (33%), elapsed 1:05, ETA 2:10",
        "reproduce: 2/3 steps (66%), elapsed 2:10, ETA 1:05",
        "reproduce: 3/3 steps (100%), elapsed 3:15, ETA 0:00",
    ]


def test_line_formats():
    assert clock(75.2) == "1:15" and clock(3725) == "1:02:05"
    assert progress_line("separate", 1, 1, "file", 2.0) == "separate: 1/1 file (100%), elapsed 0:02, ETA 0:00"
    assert progress_line("synthetic", 4, None, "track", 8.0) == "synthetic: 4 tracks, elapsed 0:08"  # no total, no ETA


def test_a_terminal_gets_a_bar_and_output_appears_above_it(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)  # prints go to the same screen as the bar
    handler = logging.StreamHandler(terminal)  # as Hydra's console handler holds the stream it was given
    logger = logging.getLogger("sepnet.test_progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in progress(range(3), "separate", unit="file", stream=terminal):
            assert sys.stdout is not terminal and handler.stream is not terminal  # routed above the bar
            print(f"[{i + 1}/3] song_{i}.wav", end="", flush=True)  # a line finished later, as reproduce prints
            print(" done")
            logger.info("logged %d", i)
    finally:
        logger.removeHandler(handler)
    assert sys.stdout is terminal and handler.stream is terminal  # restored
    screen = terminal.getvalue()
    assert "\x1b[" in screen and "━" in screen  # drawn with escape codes: a bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"separate .*3/3 files 0:00:0\d ETA 0:00:00", plain), plain[-300:]
    for i in range(3):  # each printed line whole (the partial line waited for its end), then the log record
        assert f"[{i + 1}/3] song_{i}.wav done\n" in plain
        assert f"logged {i}\n" in plain


def test_an_error_in_the_loop_restores_the_streams(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)

    def fails_at_the_second_item():
        for i in progress(range(5), "evaluate", stream=terminal):
            if i == 1:
                raise ValueError("a corrupt track")

    with pytest.raises(ValueError, match="a corrupt track"):
        fails_at_the_second_item()
    assert sys.stdout is terminal
    assert progress_module._bar_active is False


def test_nested_loops_draw_one_bar(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    for _ in progress(range(2), "reproduce", unit="step", stream=terminal):
        assert list(progress(range(3), "inner", stream=terminal)) == [0, 1, 2]


# -- the loops that use it -----------------------------------------------------------------


@pytest.mark.slow
def test_check_data_and_the_synthetic_generator_log_progress(tmp_path, caplog):
    from sepnet.data.inspection import run_check

    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    cfg = compose_config(
        "check_data",
        [f"data.source.root={tmp_path / 'synthetic'}", "data.source.tracks_per_split={train:2,valid:1,test:1}",
         "data.source.duration=2.0", "data.chunk_seconds=1.0", "data.val_chunk_seconds=1.0"],
        tmp_path / "run",
    )
    assert run_check(cfg) == 0
    lines = progress_lines(caplog)
    assert [line.split(", elapsed")[0] for line in lines] == [
        "synthetic train: 1/2 tracks (50%)", "synthetic train: 2/2 tracks (100%)",
        "synthetic valid: 1/1 track (100%)", "synthetic test: 1/1 track (100%)",
        "check_data train: 1/2 tracks (50%)", "check_data train: 2/2 tracks (100%)",
        "check_data valid: 1/1 track (100%)", "check_data test: 1/1 track (100%)",
    ]
    assert all("ETA" in line for line in lines)


@pytest.mark.slow
def test_separate_over_a_folder_and_evaluate_log_progress(tiny_data_root, tmp_path, caplog):
    from sepnet.evaluation.evaluator import run_evaluation
    from sepnet.separate import run_separation

    ckpt = tmp_path / "fresh.ckpt"
    write_fresh_checkpoint(compose_config("train", [*TINY_RUN], tmp_path / "train"), ckpt, seed=0, fill_statistics=0.0)
    songs = tmp_path / "songs"
    songs.mkdir()
    for name in ("a", "b"):
        sf.write(songs / f"{name}.wav", np.zeros((8000, 2), np.float32), 22050)
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    run_separation(compose_config("separate", [f"ckpt={ckpt}", f"input={songs}", f"out={tmp_path / 'out'}"], tmp_path / "s"))
    evaluate = [f"ckpt={ckpt}", f"data.source.root={tiny_data_root}", *TINY_SOURCE, "report=false"]
    run_evaluation(compose_config("evaluate", evaluate, tmp_path / "e"))
    lines = [line.split(", elapsed")[0] for line in progress_lines(caplog)]
    assert lines[:2] == ["separate: 1/2 files (50%)", "separate: 2/2 files (100%)"]
    assert lines[-2:] == ["evaluate: 1/2 tracks (50%)", "evaluate: 2/2 tracks (100%)"]


def test_reproduce_logs_progress_per_step(tmp_path, caplog):
    from sepnet.reproduction.runner import run_chain

    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    cfg = compose_config(
        "reproduce",
        [f"paths.outputs_root={tmp_path / 'chain'}", "reproduce.dry_run=true",
         "reproduce.steps=[crnn_long,crnn_large_finetune]"],
        tmp_path / "chain",
    )
    run_chain(cfg)
    assert [line.split(", elapsed")[0] for line in progress_lines(caplog)] == [
        "reproduce: 1/2 steps (50%)", "reproduce: 2/2 steps (100%)"
    ]
