"""Multiruns: a train sweep with offline wandb runs, an Optuna search, the SLURM launcher config."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RUN, TINY_SOURCE, compose_config

from sepnet.compare import compare

ROOT = Path(__file__).resolve().parent.parent
# One short epoch: a multirun job here only has to run, log and finish.
QUICK = [*TINY_SOURCE, *TINY_RUN, "trainer.max_epochs=1", "data.examples_per_epoch=4"]


def run_train(tmp_path: Path, data_root: Path, *args: str, multirun: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path / "home")  # no ~/.netrc login: wandb must go offline by itself
    command = [sys.executable, "-m", "sepnet.train", *(["-m"] if multirun else []), f"paths.outputs_root={tmp_path / 'out'}", f"data.source.root={data_root}", *QUICK, *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_train_multirun_each_job_its_own_offline_wandb_run(tmp_path, tiny_data_root):
    run_train(tmp_path, tiny_data_root, "optim.lr=1e-3,1e-4", "logger=[csv,wandb]", "tags=[sweep]", multirun=True)
    (sweep,) = (tmp_path / "out" / "multirun" / "crnn").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    run_ids = set()
    for job, lr in zip(jobs, ["0.001", "0.0001"]):
        assert f"optim.lr={lr}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert (job / "logs" / "metrics.csv").is_file() and (job / "summary.json").is_file()
        (run,) = (job / "wandb").glob("offline-run-*")  # under the job's own folder, one run per job
        (log,) = run.glob("run-*.wandb")
        data = log.read_bytes()
        for key in (b"val/sdr", b"val/sdr_vocals", b"val/loss", b"train/loss_epoch", b"lr-Adam", b"spectrogram_0", b"audio_0"):
            assert key in data, key
        assert b"sepnet" in data and b"sweep" in data  # project and tags
        assert list((run / "files" / "media" / "images").rglob("*.png")), "no spectrogram image"
        assert list((run / "files" / "media" / "audio").rglob("*.wav")), "no audio example"
        run_ids.add(log.stem)
    assert len(run_ids) == 2

    # The sweep table at the sweep root: one row per job, the swept value beside its val/sdr.
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [row["optim.lr"] for row in rows] == ["0.001", "0.0001"]
    assert all(row["best_val_sdr"] for row in rows)
    assert "| optim.lr |" in (sweep / "sweep.md").read_text()

    png, markdown = compare([sweep])
    assert png == sweep / "compare.png" and png.is_file()
    assert "0 (optim.lr=0.001)" in markdown and "1 (optim.lr=0.0001)" in markdown


@pytest.mark.slow
def test_optuna_search_runs_with_the_installed_optuna(tmp_path, tiny_data_root):
    result = run_train(tmp_path, tiny_data_root, "hparams_search=optuna", "hydra.sweeper.n_trials=1", "logger=none")
    (sweep,) = (tmp_path / "out" / "multirun" / "crnn").iterdir()
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optim.lr", "optim.weight_decay"}
    assert 1e-5 <= results["best_params"]["optim.lr"] <= 1e-2
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 1  # one trial: enough to prove sweeper and optuna work together
    assert "best val/sdr" in result.stdout


def test_slurm_launcher_configs_compose(tmp_path):
    cfg = compose_config("train", ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"], tmp_path)
    assert cfg.run_name == "crnn"  # hydra node is dropped by compose_config; the job config is intact
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sepnet.app.configs import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for launcher in ("submitit_slurm", "slurm"):
            full = compose("train", overrides=[f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu"], return_hydra_config=True)
            node = full.hydra.launcher
            assert node._target_.endswith("SlurmLauncher") and node.partition == "gpu"
        assert (node.gpus_per_node, node.tasks_per_node, node.timeout_min, node.mem_gb) == (1, 1, 720, 32)
