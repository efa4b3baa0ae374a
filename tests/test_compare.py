"""``python -m sepnet.compare``: curves against the optimiser step, Hydra-style settings checked like every entry point's."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepnet.compare import main as compare_main
from sepnet.evaluation.curves import draw, read_curves, smooth
from sepnet.train import run_training

REPO = Path(__file__).resolve().parent.parent


def run_compare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "sepnet.compare", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def logged_losses(run: Path) -> tuple[list[int], list[float]]:
    with (run / "logs" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return [int(r["step"]) for r in rows], [float(r["train/loss"]) for r in rows]


@pytest.mark.slow
def test_one_epoch_runs_are_curves_against_the_optimiser_step(tiny_run, tmp_path):
    # Two one-epoch runs of 4 optimiser steps each, train/loss logged at every step.
    runs = []
    for lr in ("1e-3", "1e-2"):
        run = tmp_path / "outputs" / f"lr{lr}" / "2026-01-01_00-00-00"
        one_epoch = ["trainer.max_epochs=1", "data.examples_per_epoch=16", "trainer.log_every_n_steps=1"]
        run_training(tiny_run(f"optim.lr={lr}", *one_epoch, output_dir=run))
        runs.append(run)

    result = run_compare(f"runs=[{runs[0]},{runs[1]}]", f"out={tmp_path / 'report'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"plot: {tmp_path / 'report' / 'compare.png'}" in result.stdout
    assert (tmp_path / "report" / "compare.png").stat().st_size > 10_000
    series = json.loads((tmp_path / "report" / "compare.json").read_text())
    assert [s["label"] for s in series] == ["lr1e-3/2026-01-01_00-00-00", "lr1e-2/2026-01-01_00-00-00"]
    for run, plotted in zip(runs, series):
        steps, losses = logged_losses(run)
        train = plotted["train_loss"]
        assert train["source"] == "train/loss" and train["step"] == steps == [0, 1, 2, 3]  # a curve, not a dot
        assert train["raw"] == pytest.approx(losses) and len(train["smoothed"]) == 4
        assert plotted["val_sdr"]["step"] == [3] and plotted["best"]["step"] == 3  # validation at its step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "report"]  # nothing else written

    # The figure itself: per run a faint raw trace and a smoothed line of 4 points on a step axis from 0.
    fig = draw(series)
    train_axis = fig.axes[0]
    assert train_axis.get_xlabel() == "optimiser step" and train_axis.get_xlim()[0] == 0 and train_axis.get_xlim()[1] >= 3
    lines = train_axis.get_lines()
    assert len(lines) == 4 and all(list(line.get_xdata()) == [0, 1, 2, 3] for line in lines)
    assert [line.get_alpha() for line in lines] == [0.25, None, 0.25, None]  # raw faint, smoothed solid

    # The older form still works and writes the same series.
    legacy = run_compare(str(runs[0]), str(runs[1]), "--out", str(tmp_path / "legacy.png"), cwd=tmp_path)
    assert legacy.returncode == 0, legacy.stderr[-2000:]
    assert json.loads((tmp_path / "legacy.json").read_text()) == series


def test_epoch_rows_and_step_rows_of_metrics_csv(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text(
        "epoch,step,train/loss,train/loss_epoch,val/loss,val/sdr\n"
        ",0,,,,\n"  # the learning-rate monitor's row: no epoch
        "0,7,0.9,,,\n0,15,0.7,,,\n0,15,,,0.8,1.0\n0,15,,0.8,,\n"
        "1,23,0.6,,,\n1,31,0.5,,,\n1,31,,,0.75,1.5\n1,31,,0.55,,\n"
    )
    curves = read_curves(run, "run")
    assert curves.steps == [7, 15, 23, 31] and curves.step_loss == [0.9, 0.7, 0.6, 0.5]
    assert curves.epochs == [0, 1] and curves.epoch_steps == [15, 31]
    assert curves.train_loss == [0.8, 0.55] and curves.val_sdr == [1.0, 1.5] and curves.best() == (1.5, 1)
    smoothed = smooth([1.0, 0.0, 0.0, 0.0])
    assert smoothed[0] == 1.0 and 0 < smoothed[-1] < smoothed[1] < 1  # starts at the first value, lags behind


def one_line_error(argv: list[str], capsys) -> str:
    """``sepnet.compare``'s command line run in-process: exit status 2 and exactly one line on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        compare_main(argv)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_hydra_style_settings_are_checked_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert one_line_error([f"runs=[{tmp_path}]", "outt=x"], capsys) == (
        "sepnet: error: outt is not a setting of this run; did you mean out? (+outt=... adds a new key on purpose)"
    )
    assert one_line_error([], capsys) == (
        "sepnet: error: no run folder given; usage: python -m sepnet.compare runs=[<run or sweep dir>,...] "
        "[out=<folder or file.png>] [patience=3]"
    )
    nowhere = tmp_path / "nowhere"
    message = f"sepnet: error: '{nowhere}' is not a folder; pass run folders (outputs/<run>/<time>) or a sweep folder"
    assert one_line_error([f"runs=[{nowhere}]"], capsys) == message
    assert one_line_error([str(nowhere)], capsys) == message  # a bare word is a run folder
    assert list(tmp_path.iterdir()) == []  # a refused command writes nothing
