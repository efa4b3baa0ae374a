"""``resume=`` continues exactly the stored run: its own overrides, not the defaults; a difference the user types
is refused or named in one line; ``metrics.csv`` never lists a step (or an epoch) twice."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY_RUN, TINY_SOURCE, compose_config

from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, read_checkpoint
from sepnet.errors import SepnetError
from sepnet.train import run_training
from sepnet.training.resuming import rows_before

# The stored run's own settings, which a bare `resume=<dir>` must bring back (the defaults differ).
OWN = ["data.examples_per_epoch=12", "data.batch_size=4", "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "logger=csv"]


@pytest.fixture
def stopped_run(tiny_data_root, tmp_path) -> Path:
    """A run of one epoch with its own overrides, as if stopped there: its run dir."""
    run = tmp_path / "run"
    run_training(compose_config("train", [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *TINY_RUN, *OWN], run))
    return run


def metric_rows(run: Path) -> list[dict]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_bare_resume_continues_the_stored_runs_own_config(stopped_run, tmp_path, capsys):
    last = stopped_run / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 3  # 12 examples / batch 4
    rows = metric_rows(stopped_run)
    # A killed run logged steps after its last checkpoint; the resumed run redoes them, so they must go.
    with open(stopped_run / "logs" / "metrics.csv", "a", newline="") as f:
        csv.DictWriter(f, list(rows[0])).writerow({"epoch": 1, "step": 3, "train/loss": 0.5})
    capsys.readouterr()

    cfg = compose_config("train", [f"resume={stopped_run}", "trainer.max_epochs=2"], tmp_path / "unused")
    _, summary = run_training(cfg)

    assert "resuming" in capsys.readouterr().out  # the one change the user made is named
    final = read_checkpoint(last)
    assert final["epoch"] == 1 and final["global_step"] == 6  # the run's 12 examples per epoch, not the default 512
    stored = final[CHECKPOINT_KEY]["config"]
    assert stored["data"]["examples_per_epoch"] == 12 and stored["model"]["hidden_size"] == 16
    assert summary["last_checkpoint"] == str(last)
    steps = [(r["epoch"], r["step"]) for r in metric_rows(stopped_run) if r.get("train/loss")]
    assert len(steps) == len(set(steps)) == 6  # each training step once, the stale row gone
    assert not (tmp_path / "unused" / "checkpoints").exists()


def test_resume_names_a_permitted_change_in_one_line(stopped_run, tmp_path, capsys):
    cfg = compose_config("train", [f"resume={stopped_run}", "trainer.max_epochs=2"], tmp_path / "unused")
    from sepnet.checkpoints.resume import resume_point

    point = resume_point(cfg, Path(cfg.paths.output_dir))
    assert point.changed == ["trainer.max_epochs=2 (the run had 1)"]
    assert cfg.data.examples_per_epoch == 12 and cfg.data.batch_size == 4 and cfg.model.hidden_size == 16


@pytest.mark.parametrize(
    ("override", "key", "stored", "typed"),
    [("data.batch_size=2", "data.batch_size", 4, 2), ("optim.lr=0.1", "optim.lr", 0.0015, 0.1), ("seed=3", "seed", 0, 3)],
)
def test_resume_refuses_a_typed_difference_in_one_line(stopped_run, tmp_path, override, key, stored, typed):
    cfg = compose_config("train", [f"resume={stopped_run}", override], tmp_path / "unused")
    with pytest.raises(SepnetError) as error:
        run_training(cfg)
    last = stopped_run / "checkpoints" / "last.ckpt"
    assert str(error.value) == (
        f"cannot resume from '{last}' with {key}={typed!r}: the run was trained with {key}={stored!r}; a resumed run "
        "goes on as it was: drop that override (only where and how long it runs may change, e.g. trainer.max_epochs), "
        f"or start a new run from its weights with init.pretrained={last}"
    )


def test_rows_logged_after_the_checkpoint_are_dropped():
    text = "epoch,step,train/loss\n0,0,1.0\n0,1,0.9\n,2,\n1,2,0.8\n1,3,0.7\nbad\n"
    assert rows_before(text, 2) == "epoch,step,train/loss\n0,0,1.0\n0,1,0.9\nbad\n"
    assert rows_before(text, None) == text
    assert rows_before("a,b\n1,2\n", 0) == "a,b\n1,2\n"  # no step column: kept as it is
