"""Every documented run composes, names its run, and its model builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from sepnet.app.configs import group_options
from sepnet.registry import MODEL, build

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
NAMES = group_options("experiment")

VOCALS_ONLY = {"retrain_with_augmentation", "stem_aware_finetune", "layer_freeze"}


def test_the_documented_runs_are_all_there():
    required = {
        "crnn_long", "crnn_large_finetune", "crnn_large_finetune_ver1", "crnn_large_final_tune",
        "crnn_large_ultimate_4db", "crnn_large_final_fix", "retrain_with_augmentation",
        "stem_aware_finetune", "layer_freeze", "unet_crnn", "unet_crnn_mtl",
    }  # fmt: skip
    assert required <= set(NAMES)
    readme = (EXPERIMENTS / "README.md").read_text()
    for name in NAMES:
        text = (EXPERIMENTS / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_\n"), name
        assert "Documented:" in text and "Parent:" in text, name
        assert f"| `{name}` |" in readme and f"experiment={name}" in readme, name


@pytest.mark.parametrize("name", NAMES)
def test_experiment_composes_and_builds_its_model(name, tmp_path):
    cfg = compose_config("train", [f"experiment={name}"], tmp_path)
    assert cfg.run_name == name
    model = build(MODEL, OmegaConf.to_container(cfg.model, resolve=True), "model")  # as training builds it
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    if "override /model: large" in text:
        assert (model.bottleneck.lstm.hidden_size, model.bottleneck.lstm.num_layers) == (512, 4)
    # The parent is set in the file or inherited from the experiment it extends.
    inherited = re.search(r"^  - (\w+)$", text, flags=re.MULTILINE)
    source = (EXPERIMENTS / f"{inherited.group(1)}.yaml").read_text() if inherited and "from_run" not in text else text
    parent = re.search(r"from_run: (\S+)", source)
    assert cfg.init.from_run == (parent.group(1) if parent else None)
    if name in VOCALS_ONLY:
        assert model.target_stems == ["vocals"]
