"""Every option of every config group composes and instantiates."""

import inspect
import subprocess
import sys

import lightning as L
import pytest
import torch
from conftest import TINY_RUN, compose_config, model_options
from hydra.utils import instantiate

from sepnet.app.configs import group_options
from sepnet.train import build_loggers, build_module

GROUPS = ["data", "augment", "module", "model", "loss", "optim", "sched", "freeze", "trainer", "logger"]
# Where each real-data option is pointed (instantiation does not touch the disk).
DATA_PATHS = {"folder": ["data.train_dir={0}/train", "data.val_dir={0}/val"]}
CASES = [(group, option) for group in GROUPS for option in group_options(group)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_group_option_composes_and_instantiates(tiny_run, tmp_path, group, option):
    if group == "data" and option != "synthetic":
        paths = [p.format(tmp_path) for p in DATA_PATHS.get(option, ["data.source.root={0}"])]
        cfg = compose_config("train", [f"data={option}", *paths, *TINY_RUN], tmp_path / "run")
    elif group == "module" and option == "multitask":  # the multi-task module needs a model with a rhythm head
        cfg = tiny_run("model=unet_crnn_mtl", f"{group}={option}")
    else:
        cfg = tiny_run(f"{group}={option}")
    module = build_module(cfg)  # model, front end, loss, optimiser, scheduler
    module.configure_optimizers()
    instantiate(cfg.data)
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        # No GPU here: check every key is a Trainer argument; the GPU itself is not exercised.
        unknown = set(cfg.trainer) - {"_target_"} - set(inspect.signature(L.Trainer.__init__).parameters)
        assert not unknown, f"trainer={option} has keys Trainer does not take: {unknown}"
    else:
        instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    build_loggers(cfg)
    model = module.separator.model
    masks = model(torch.zeros(1, model.input_channels, cfg.frontend.n_bins, 5))
    assert masks.shape[:2] == (1, len(cfg.model.target_stems))


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sepnet.train", *args], capture_output=True, text=True, timeout=120, check=False)


def test_unknown_group_option_is_one_line():
    result = run_train("model=foo")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [f"sepnet: error: model=foo is not a config option; model can be: {model_options()}"]


def test_missing_data_path_is_one_line(tmp_path):
    result = run_train("data=stem_folder", f"data.source.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"sepnet: error: data root '{tmp_path / 'nowhere'}' does not exist; pass data.source.root=<folder with "
        "train/valid/test track folders> or use data=synthetic"
    )


def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_train(f"hydra.run.dir={blocker / 'run'}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(blocker) in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_an_installed_wheel_carries_the_configs(tmp_path):
    """``pip install .`` (not editable) must find conf/ with conf/experiment's files, away from the source tree."""
    import os
    from pathlib import Path

    top = Path(__file__).resolve().parents[1]
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", wheels, top], check=True, timeout=120,
                   cwd=tmp_path)
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", site, *wheels.glob("*.whl")], check=True,
                   timeout=120)
    env = {**os.environ, "PYTHONPATH": str(site)}
    shown = subprocess.run(
        [sys.executable, "-m", "sepnet.train", "experiment=crnn_large_final_tune", "--cfg", "job", "--package", "run_name"],
        env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120, check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "crnn_large_final_tune" in shown.stdout
    found = subprocess.run([sys.executable, "-c", "import sepnet.app.configs as c; print(c.CONFIG_DIR)"], env=env,
                           cwd=elsewhere, capture_output=True, text=True, timeout=60, check=True)
    assert Path(found.stdout.strip()) == site / "sepnet" / "conf"
    assert (site / "sepnet" / "conf" / "experiment").is_dir() and not (site / "sepnet" / "conf" / "experiment").is_symlink()
