"""DDP on two CPU processes (trainer=ddp_cpu): sharded data, metrics over the whole val set, rank 0 writes."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_RUN, TINY_SOURCE, compose_config
from hydra.utils import instantiate

from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.checkpoint import read_checkpoint
from sepnet.checkpoints.lightning_io import stale_temp_files
from sepnet.data.datamodule import EpochSampler, ShardSampler
from sepnet.evaluation.metrics import chunk_sdr


@pytest.mark.parametrize("length,world_size", [(8, 2), (9, 2), (7, 3), (5, 1)])
def test_ranks_share_examples_without_repeats_or_losses(length, world_size):
    train = [list(EpochSampler(length, rank, world_size)) for rank in range(world_size)]
    assert len({len(share) for share in train}) == 1  # every rank steps equally often
    keys = [key for share in train for key in share]
    assert len(keys) == len(set(keys))
    assert {index for _, index in keys} >= set(range(length))  # one process's examples, then a few more
    assert len(keys) - length < world_size

    val = [list(ShardSampler(length, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for share in val for i in share) == list(range(length))  # each scored exactly once


def test_resumed_epoch_skips_what_each_rank_already_trained_on():
    sampler = EpochSampler(16, rank=1, world_size=2)
    sampler.skip = (3, 2)  # epoch 3, two examples of this rank done
    sampler.set_epoch(3)
    assert list(sampler) == [(3, 5), (3, 7), (3, 9), (3, 11), (3, 13), (3, 15)]
    sampler.set_epoch(4)
    assert len(list(sampler)) == 8


@pytest.mark.slow
def test_ddp_cpu_run_reduces_metrics_over_ranks_and_writes_once(tiny_data_root, tmp_path):
    run_dir = tmp_path / "ddp"
    overrides = [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *TINY_RUN, "data.val_chunk_seconds=1.3"]
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.train", "trainer=ddp_cpu", *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    # One run dir; rank 0 alone wrote checkpoints, metrics and the summary.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("metrics.csv")] == ["logs/metrics.csv"]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr  # two processes really ran
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    assert files == [
        ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", ".sepnet-run.lock",  # the run owns its folder
        "checkpoints/best.ckpt", "checkpoints/last.ckpt", "config_resolved.yaml", "logs/hparams.yaml", "logs/metrics.csv",
        "summary.json", "train.log",
        "train_ddp_process_1.log",  # Hydra's job log of rank 1 (Lightning relaunches the entry point)
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    assert result.stdout.count("best val/sdr") == 1

    # The logged val/sdr of the last epoch is the mean over the whole val set (6 chunks, 3 per rank),
    # recomputed here in one process from last.ckpt (saved right after that validation).
    rows = list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))
    logged = [float(r["val/sdr"]) for r in rows if r.get("val/sdr")][-1]
    cfg = compose_config("train", overrides, tmp_path / "unused")
    data = instantiate(cfg.data)
    data.prepare_data()
    data.setup("validate")
    separator = checkpoint.load(run_dir / "checkpoints" / "last.ckpt").separator
    scores = []
    with torch.no_grad():
        for batch in data.val_dataloader(sharded=False):
            scores.append(chunk_sdr(batch["stems"], separator(batch["mixture"])))
    scores = torch.cat(scores)
    assert scores.shape[0] == 6
    assert logged == pytest.approx(float(scores.mean()), abs=1e-3)
    half = float(scores[0::2].mean())  # what rank 0 alone saw
    assert abs(half - float(scores.mean())) > 1e-3  # (so the check above can tell the difference)


# Three epochs of four steps on each rank: a signal sent once epoch 0 is saved lands with steps to spare.
DDP_EPOCHS = ["trainer.max_epochs=3", "data.examples_per_epoch=32"]
STEPS = 12


def ddp_train_command(tiny_data_root, run_dir, *overrides: str) -> list[str]:
    """A 2-process trainer=ddp_cpu run at test size that logs every checkpoint it writes."""
    return [
        sys.executable, "-m", "sepnet.train", "trainer=ddp_cpu", f"data.source.root={tiny_data_root}", *TINY_SOURCE,
        *TINY_RUN, *DDP_EPOCHS, "logger=none", "hydra.verbose=[sepnet.checkpoints.lightning_io]", f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def checkpoint_writes(log_file, name: str) -> list[int]:
    """The steps at which the run's log says ``name`` was written (sepnet.checkpoints.lightning_io's debug lines)."""
    pattern = re.compile(rf"wrote \S*/{re.escape(name)} \(epoch \d+, step (\d+)\)")
    return [int(m.group(1)) for m in pattern.finditer(log_file.read_text())] if log_file.exists() else []


def separator_weights(path) -> dict:
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith("separator.")}


@pytest.mark.slow
def test_sigterm_to_every_ddp_rank_saves_last_ckpt_once_and_resume_matches_uninterrupted_run(tiny_data_root, tmp_path):
    straight = tmp_path / "straight"
    result = subprocess.run(
        ddp_train_command(tiny_data_root, straight), capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]

    run_dir = tmp_path / "stopped"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        ddp_train_command(tiny_data_root, run_dir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # last.ckpt appears (atomically) once epoch 0 is validated and saved
        assert last.is_file(), process.communicate()[1][-3000:]
        first_save_step = read_checkpoint(last)["global_step"]
        os.killpg(process.pid, signal.SIGTERM)  # both ranks, as SLURM and a terminal send it
        _, stderr = process.communicate(timeout=120)  # also waits for rank 1, which shares the pipes
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()

    assert process.returncode == 128 + signal.SIGTERM, stderr[-4000:]
    stopped = read_checkpoint(last)
    epoch, step = stopped["epoch"], stopped["global_step"]
    assert first_save_step < step < STEPS  # saved at the signal, not at the end of training
    assert [line for line in stderr.splitlines() if "continue with" in line] == [
        (
            f"sepnet: training stopped by SIGTERM at epoch {epoch}, step {step}; saved {last}; "
            f"continue with: python -m sepnet.train resume={run_dir}"
        )
    ]
    # Rank 0 alone wrote last.ckpt, once at the stop (after epoch 0's save), and left no temporary file.
    assert checkpoint_writes(run_dir / "train.log", "last.ckpt") == [first_save_step, step]
    assert checkpoint_writes(run_dir / "train_ddp_process_1.log", "last.ckpt") == []
    assert "rank 1: training stopped by SIGTERM" in (run_dir / "train_ddp_process_1.log").read_text()
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert stale_temp_files(last) == []

    result = subprocess.run(
        ddp_train_command(tiny_data_root, tmp_path / "unused", f"resume={run_dir}"),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert read_checkpoint(last)["global_step"] == STEPS
    resumed, expected = separator_weights(last), separator_weights(straight / "checkpoints" / "last.ckpt")
    assert resumed.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=1e-5, msg=key)
