"""A bad size, rate or count on the command line is one line naming the key and the fix, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_RUN, TINY_SOURCE, compose_config
from hydra.utils import instantiate

from sepnet.errors import SepnetError, user_error_in
from sepnet.training.run import check_settings

ROOT = Path(__file__).resolve().parents[1]

DATA = [
    ("data.batch_size=0", "data.batch_size=0 is not valid; set it to a whole number >= 1, e.g. data.batch_size=8"),
    ("data.batch_size=-1", "data.batch_size=-1 is not valid; set it to a whole number >= 1, e.g. data.batch_size=8"),
    ("data.chunk_seconds=0", "data.chunk_seconds=0 is not valid; set it to a duration in seconds > 0, e.g. data.chunk_seconds=3.0"),
    ("data.val_chunk_seconds=nan", "data.val_chunk_seconds=nan is not valid; set it to a duration in seconds > 0, e.g. data.val_chunk_seconds=3.0"),
    ("data.examples_per_epoch=0", "data.examples_per_epoch=0 is not valid; set it to a whole number >= 1, e.g. data.examples_per_epoch=256"),
]
RUN = [
    ("optim.lr=nan", "optim.lr=nan is not valid; set it to a number > 0, e.g. optim.lr=1e-3"),
    ("optim.lr=-1", "optim.lr=-1 is not valid; set it to a number > 0, e.g. optim.lr=1e-3"),
    ("trainer.max_epochs=-5", "trainer.max_epochs=-5 is not valid; set it to a whole number >= 0 (or -1 for no limit), e.g. trainer.max_epochs=6"),
    ("trainer.max_steps=1.5", "trainer.max_steps=1.5 is not valid; set it to a whole number >= 0 (or -1 for no limit), e.g. trainer.max_steps=-1"),
]


@pytest.mark.parametrize(("override", "message"), DATA, ids=[o for o, _ in DATA])
def test_bad_data_sizes_are_one_line(override, message, tmp_path):
    cfg = compose_config("train", [*TINY_SOURCE, *TINY_RUN, override], tmp_path)
    with pytest.raises(Exception) as error:  # Hydra wraps it; the user's line is found along the chain
        instantiate(cfg.data)
    assert str(user_error_in(error.value)) == message


@pytest.mark.parametrize(("override", "message"), RUN, ids=[o for o, _ in RUN])
def test_bad_optimiser_and_trainer_settings_are_one_line(override, message, tmp_path):
    cfg = compose_config("train", [*TINY_SOURCE, *TINY_RUN, override], tmp_path)
    with pytest.raises(SepnetError) as error:
        check_settings(cfg)
    assert str(error.value) == message


def run_train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sepnet.train", *overrides], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False,
    )


@pytest.mark.parametrize(("override", "message"), [DATA[0], RUN[2]], ids=["batch_size", "max_epochs"])
def test_the_command_prints_one_line_and_leaves_no_folder(override, message, tmp_path):
    result = run_train(tmp_path, override)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"sepnet: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_a_ten_thousand_character_key_is_one_short_line(tmp_path):
    result = run_train(tmp_path, "model." + "a" * 10_000 + "=1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "sepnet: error: the override key 'model.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is 10006 characters long, too "
        "long for any setting (at most 200); check the command line (settings look like optim.lr=1e-3)"
    )
