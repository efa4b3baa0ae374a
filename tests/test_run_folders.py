"""A run folder belongs to one run: claimed exclusively, fresh when the default one is taken, cleaned up
after a failed start; temporaries of live writers are never removed; merge never overwrites a parent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import compose_config

from sepnet.app import run_dir
from sepnet.app.run_dir import LOCK_NAME, FolderInUse, claim, claim_fresh, release, remove_failed_start
from sepnet.atomic import atomic_write, stale_temp_files, temp_path_for
from sepnet.errors import SepnetError
from sepnet.merge import merge

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

HOLDER = """
import sys, time
from sepnet.app.run_dir import claim
claim(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder():
    """``holder(folder)``: another process that claims ``folder`` and keeps it until killed; returns the process."""
    started = []

    def hold(folder: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
        assert process.stdout.readline().strip() == "held"
        started.append(process)
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_a_folder_another_run_holds_is_refused_or_replaced_by_a_fresh_one(tmp_path, holder):
    folder = tmp_path / "outputs" / "crnn" / "2026-01-01_00-00-00"
    other = holder(folder)
    assert (folder / LOCK_NAME).read_text().split()[0] == str(other.pid)
    with pytest.raises(FolderInUse) as error:
        claim(folder)
    assert str(error.value) == (
        f"run folder '{folder}' is in use by another sepnet run (process {other.pid} on {os.uname().nodename}); "
        "wait for it to end, or choose another folder with hydra.run.dir=<folder>"
    )
    fresh = claim_fresh(folder, "hydra.run.dir")  # a default (timestamped) folder: the second run gets its own
    assert fresh == folder.with_name(folder.name + "-2") and run_dir.holds(fresh)
    release(fresh)
    other.kill()
    other.wait()
    assert claim(folder)  # a killed run's lock goes with it: nothing stale to delete by hand
    release(folder)


def test_two_commands_into_one_explicit_folder_second_gets_one_line(tmp_path, holder):
    folder = tmp_path / "run"
    holder(folder)
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.train", f"hydra.run.dir={folder}", "trainer.max_epochs=1"],
        capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sepnet: error: run folder '{folder}' is in use by another sepnet run (process "
        + result.stderr.split("(process ")[1].split(")")[0]
        + "); wait for it to end, or choose another folder with hydra.run.dir=<folder>"
    ]
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing of the refused run was written


def test_a_default_folder_taken_in_the_same_second_becomes_a_fresh_one(tmp_path, holder):
    """``${now:%Y}`` stands for the default ``${now:%Y-%m-%d_%H-%M-%S}``: both runs resolve the same folder."""
    taken = tmp_path / "outputs" / "crnn" / time.strftime("%Y")
    holder(taken)
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.train", "hydra.run.dir=outputs/crnn/${now:%Y}", "trainer.max_epochs=1",
         "data.batch_size=0"],  # a failing start: quick, and its folder is removed again
        capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120, check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "data.batch_size=0 is not valid" in result.stderr
    fresh = taken.with_name(taken.name + "-2")
    assert not fresh.exists()  # it was created for the second run, then removed with its failed start
    assert sorted(p.name for p in taken.iterdir()) == [LOCK_NAME]  # the first run's folder was not touched


def test_a_failed_start_leaves_no_run_folder_behind(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.train", "optim.lr=nan"],
        capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sepnet: error: optim.lr=nan is not valid; set it to a number > 0, e.g. optim.lr=1e-3"
    ]
    assert list(tmp_path.iterdir()) == []  # not even outputs/crnn/, which the failed start made


def test_a_failed_start_keeps_a_folder_that_holds_a_checkpoint_or_existed(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir, "_CREATED", [])  # only this test's start
    made = tmp_path / "made"
    claim(made)
    (made / ".hydra").mkdir()
    (made / ".hydra" / "config.yaml").write_text("x: 1\n")
    (made / "train.log").write_text("log\n")
    valuable = tmp_path / "valuable"
    claim(valuable)
    (valuable / "checkpoints").mkdir()
    (valuable / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    existing = tmp_path / "existing"
    existing.mkdir()
    claim(existing)
    assert remove_failed_start() == [made]
    assert not made.exists() and (valuable / "checkpoints" / "last.ckpt").is_file() and existing.is_dir()
    release(valuable)
    release(existing)


def test_a_live_writers_temporary_is_never_removed(tmp_path):
    target = tmp_path / "last.ckpt"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        theirs = temp_path_for(target).with_name(f".last.ckpt.{live.pid}-0abc1234.tmp")
        theirs.write_bytes(b"another process is writing this right now")
        with atomic_write(target, remove_stale=True) as f:
            f.write(b"mine")
        assert theirs.is_file() and stale_temp_files(target) == []
    finally:
        live.kill()
        live.wait()
    assert stale_temp_files(target) == [theirs]  # its writer is gone now
    with atomic_write(target, remove_stale=True) as f:
        f.write(b"mine again")
    assert not theirs.exists() and target.read_bytes() == b"mine again"


def test_in_process_runs_claim_their_folder(tiny_run, tmp_path, holder):
    """Runs started from Python (tests, sweeps, benchmarks) claim their folder too."""
    from sepnet.train import run_training

    folder = tmp_path / "shared"
    holder(folder)
    with pytest.raises(SepnetError, match=f"run folder '{folder}' is in use by another sepnet run"):
        run_training(tiny_run("trainer.max_epochs=1", output_dir=folder))
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]


def test_merge_refuses_to_write_over_one_of_its_inputs(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a.write_bytes(b"parent a")
    b.write_bytes(b"parent b")
    (tmp_path / "link.ckpt").symlink_to(b)
    for out, index in ((a, 0), (tmp_path / "link.ckpt", 1), (tmp_path / "." / "b.ckpt", 1)):
        cfg = compose_config("merge", [f"ckpts=[{a},{b}]", f"out={out}"], tmp_path / "merge")
        with pytest.raises(SystemExit) as stopped:
            merge(cfg)
        assert stopped.value.code == 2
    assert a.read_bytes() == b"parent a" and b.read_bytes() == b"parent b"


def test_merge_names_the_input_it_would_overwrite(tmp_path, capsys):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a.write_bytes(b"parent a")
    b.write_bytes(b"parent b")
    cfg = compose_config("merge", [f"ckpts=[{a},{b}]", f"out={b}"], tmp_path / "merge")
    with pytest.raises(SystemExit):
        merge(cfg)
    assert capsys.readouterr().err.strip() == (
        f"sepnet: error: out={b} is ckpts[1], one of the checkpoints being merged; writing it would replace that "
        "parent and its training state: choose another out=<path of a .ckpt>"
    )

