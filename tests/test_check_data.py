"""``sepnet.check_data``: one row per track, a summary, exit 1 on errors, and the batch plot."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_SOURCE, compose_config, write_track

from sepnet.check_data import run_check

SMALL = ["data.chunk_seconds=1.0", "data.val_chunk_seconds=2.0", "data.batch_size=4", "data.stats_chunks=8"]


def test_embedded_dataset_checks_clean_and_plots_a_batch(tiny_data_root, tmp_path, capsys):
    cfg = compose_config(
        "check_data",
        [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *SMALL, "augment=remix_silence",
         "data.target_stems=[vocals]", "+plot=true"],
        tmp_path / "run",
    )
    assert run_check(cfg) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("train ", "valid ", "test "))]
    assert len(rows) == 8 and all(row.endswith("ok") for row in rows)
    assert "8 tracks (train 4, valid 2, test 2)" in out and "0 with errors" in out
    image = matplotlib.image.imread(tmp_path / "run" / "batch.png")
    assert image.shape[0] > 400 and image.shape[1] > 600  # 4 rows x (input, mixture, vocals) panels
    assert image[..., :3].std() > 0.1  # not a blank canvas


def broken_folder(root):
    write_track(root / "train" / "good", seed=1)
    write_track(root / "train" / "mono", seed=2)
    sf.write(root / "train" / "mono" / "bass.wav", np.zeros(40000, np.float32), 16000)  # mono and silent
    write_track(root / "train" / "broken", seed=3)
    (root / "train" / "broken" / "drums.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_track(root / "val" / "v", seed=4)


@pytest.mark.slow
def test_a_broken_track_is_an_error_row_and_exit_status_1(tmp_path):
    broken_folder(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.check_data", "data=folder", f"data.train_dir={tmp_path / 'data/train'}",
         f"data.val_dir={tmp_path / 'data/val'}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("train ")}
    assert rows["good"].endswith("ok") and rows["mono"].endswith("warn") and rows["broken"].endswith("ERROR")
    assert "4 tracks (train 3, valid 1)" in result.stdout and "1 with errors" in result.stdout
    assert f"ERROR train/broken: '{tmp_path / 'data/train/broken/drums.wav'}' is not a readable audio file" in result.stdout
    assert "warning train/mono: mono file(s) read as fake stereo: bass" in result.stdout
    assert "warning train/mono: bass is silent throughout" in result.stdout
    assert "mixture differs from the sum of the stems" in result.stdout  # the mono bass replaced the real one
    assert "Traceback" not in result.stderr
