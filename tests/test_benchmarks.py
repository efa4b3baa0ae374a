"""Every benchmark script runs end to end at toy size and prints its figures.

The figures themselves are never asserted (timings are not tests); these only keep
the scripts working as the code under them changes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import TINY_SOURCE

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def run_benchmark(script: str, *args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_train_speed_prints_a_row_per_model():
    out = run_benchmark(
        "train_speed.py", "--models", "crnn", "unet_crnn_mtl",
        "--batch-size", "1", "--chunk-seconds", "0.5", "--steps", "1", "--warmup", "0",
    )
    for model in ("crnn", "unet_crnn_mtl"):
        row = next(line for line in out.splitlines() if line.startswith(model + " "))
        params, seconds, per_second, memory = row.split()[1:5]
        assert params.endswith("M") and float(seconds) > 0 and float(per_second) > 0 and float(memory) > 0


def test_separate_speed_prints_real_time_factor_and_memory():
    out = run_benchmark(
        "separate_speed.py", "--model", "crnn", "--rtf-minutes", "0.05", "--rss-minutes", "0.02", "0.05"
    )
    assert re.search(r"real-time|RTF", out, re.IGNORECASE), out
    assert re.search(r"MiB", out), out


def test_eval_speed_scores_with_both_implementations():
    out = run_benchmark("eval_speed.py", "--seconds", "3", "--sample-rate", "8000")
    assert "museval" in out and "sepnet" in out, out


def test_data_speed_reads_the_embedded_dataset(tiny_data_root):
    out = run_benchmark(
        "data_speed.py", "--model", "crnn", "--batch-size", "2", "--chunk-seconds", "0.5",
        "--batches", "2", "--workers", "0", "--steps", "1",
        f"data.source.root={tiny_data_root}", *TINY_SOURCE, "data.val_chunk_seconds=2.0",
    )
    assert "batches/s" in out or "examples/s" in out, out


def test_same_budget_tabulates_each_run(tiny_data_root, tmp_path):
    config = tmp_path / "budget.yaml"
    config.write_text(yaml.safe_dump({
        "budget": [
            {"data.source.root": str(tiny_data_root)},
            {"data.source.tracks_per_split": {"train": 4, "valid": 2, "test": 2}}, {"data.source.duration": 4.0},
            {"trainer.max_epochs": 1}, {"data.examples_per_epoch": 4}, {"data.batch_size": 2},
            {"data.val_chunk_seconds": 2.0}, {"data.stats_chunks": 4},
            {"model.hidden_size": 16}, {"model.num_layers": 1},
            {"trainer.enable_progress_bar": False}, {"trainer.enable_model_summary": False},
        ],
        "runs": {"crnn": ["model=crnn"], "unet_crnn": ["model=unet_crnn"]},
    }))
    out = run_benchmark("same_budget.py", "--config", str(config), "--out", str(tmp_path / "out"), "--no-write")
    rows = [line for line in out.splitlines() if line.startswith(("| crnn", "| unet_crnn"))]
    assert len(rows) == 2, out
