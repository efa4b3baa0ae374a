"""The model contract: every model is a class plus a YAML, the layers read top-down, and a model of
the user's own goes through every entry point without a change to sepnet."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_BASE, TINY_SOURCE, compose_config, tiny_size
from omegaconf import OmegaConf

import sepnet
from sepnet.app.configs import CONFIG_DIR
from sepnet.checkpoints.checkpoint import read_checkpoint
from sepnet.models.contract import INPUT_KINDS, MASK_KINDS, SeparationModel
from sepnet.registry import MODEL, build, public_names, registered

PACKAGE = Path(sepnet.__file__).parent
MODEL_OPTIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
ENTRY_POINTS = sorted(p.stem for p in PACKAGE.glob("*.py") if "run_entry_point(" in p.read_text())


# -- every model of conf/model, at its tiny size --------------------------------------------------


@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_every_model_option_builds_at_its_tiny_size_and_keeps_the_contract(option, tmp_path):
    cfg = compose_config("train", [f"model={option}", *tiny_size([f"model={option}"])], tmp_path)
    model = build(MODEL, OmegaConf.to_container(cfg.model, resolve=True), "model")
    assert isinstance(model, SeparationModel)
    assert model.input_kind in INPUT_KINDS and model.mask_kind in MASK_KINDS
    assert model.front_end_requirements()["n_bins"] == cfg.frontend.n_bins
    assert sum(p.numel() for p in model.parameters()) < 4e5, "the tiny size is not tiny"
    x = torch.randn(2, model.input_channels, model.n_bins, 9)
    masks, heads = model.forward_with_heads(x)
    shape = (2, len(model.target_stems), model.audio_channels, model.n_bins, 9)
    if model.mask_kind == "complex":  # real and imaginary parts last (sepnet/dsp/masking.py)
        assert masks.shape == (*shape, 2) and bool(torch.isfinite(masks).all())
    else:
        assert masks.shape == shape
        assert 0 <= masks.min() and masks.max() <= 1
    assert sorted(heads) == sorted(model.auxiliary_heads)
    if model.batches_recurrent_stage:  # the chunk-wise inference path gives the same masks
        sequence = model.eval().recurrent_sequence([x[:1], x[1:]])
        with torch.no_grad():
            torch.testing.assert_close(model.masks_from_sequence(x[1:], sequence[1:]), model(x)[1:])


def test_every_registered_model_has_a_yaml():
    named = {OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{o}.yaml").get("_target_") for o in MODEL_OPTIONS}
    classes = {registered(MODEL)[name] for name in named if name in registered(MODEL)}
    for name in public_names(MODEL):
        assert registered(MODEL)[name] in classes, f"{name} has no conf/model YAML"


# -- layers ----------------------------------------------------------------------------------------


def imports_of(path: Path) -> set[str]:
    """Every ``sepnet...`` module a file imports (absolute imports, at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m == "sepnet" or m.startswith("sepnet.")}


def package_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


FORBIDDEN = {
    "models": ("sepnet.dsp", "sepnet.inference", "sepnet.checkpoints", "sepnet.training", "sepnet.evaluation", "sepnet.data", "sepnet.app"),
    "dsp": ("sepnet.models", "sepnet.inference", "sepnet.checkpoints", "sepnet.training", "sepnet.evaluation", "sepnet.app"),
    "inference": ("sepnet.checkpoints", "sepnet.training", "sepnet.evaluation", "sepnet.data", "sepnet.app", "sepnet.commands"),
    "checkpoints": ("sepnet.training", "sepnet.evaluation", "sepnet.commands", "lightning.pytorch"),
    "evaluation": ("sepnet.training", "sepnet.reproduction", "sepnet.commands"),
    "app": ("sepnet.training", "sepnet.evaluation", "sepnet.reproduction", "sepnet.commands", "sepnet.checkpoints"),
}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards_and_nothing_imports_an_entry_point(path):
    imported = imports_of(path)
    entry_points = {f"sepnet.{name}" for name in ENTRY_POINTS}
    if path.stem != "__main__":  # the command launcher (python -m sepnet <command>) stands above the entry points
        assert not imported & entry_points - {f"sepnet.{path.stem}"}, "an entry point is imported"
    for banned in FORBIDDEN.get(package_of(path), ()):
        assert not any(m == banned or m.startswith(banned + ".") for m in imported), f"imports {banned}"


def test_no_capability_is_probed_with_hasattr_on_a_model():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
                assert "model" not in ast.unparse(node.args[0]), f"{path}: {ast.unparse(node)}"


# -- a model of the user's own, through every entry point --------------------------------------------

TOY_MODULE = '''
"""A user's own model: one 3x3 convolution, masks shared by a softmax."""
import torch
from torch import nn

from sepnet.models import SeparationModel
from sepnet.registry import register_model


@register_model
class ToyMasks(SeparationModel):
    def __init__(self, target_stems: list[str], n_bins: int, audio_channels: int, width: int):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = list(target_stems), n_bins, audio_channels
        self.hidden = nn.Conv2d(audio_channels, width, 3, padding=1)
        self.out = nn.Conv2d(width, len(self.target_stems) * audio_channels, 3, padding=1)

    def forward(self, x):
        b, c, f, t = x.shape
        logits = self.out(torch.relu(self.hidden(x))).reshape(b, -1, c, f, t)
        return torch.softmax(logits.float(), dim=1)
'''

TOY_YAML = """
_target_: toy_sepnet_model.ToyMasks
target_stems: ${data.target_stems}
n_bins: ${frontend.n_bins}
audio_channels: 2
width: 4
_sizes_:
  tiny: {width: 3}
"""


def run(module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", f"sepnet.{module}", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, f"{module}: {result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_model_of_ones_own_trains_evaluates_separates_merges_and_resumes(tiny_data_root, tiny_checkpoint, tmp_path):
    """A class in a temporary module and a YAML in a temporary config folder: no file of sepnet changes."""
    code, conf = tmp_path / "code", tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    code.mkdir()
    (code / "toy_sepnet_model.py").write_text(textwrap.dedent(TOY_MODULE))
    (conf / "model" / "toy.yaml").write_text(TOY_YAML)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(PACKAGE.parent)])}
    mine = [f"hydra.searchpath=[file://{conf}]", "plugins=[toy_sepnet_model]"]
    data = [f"data.source.root={tiny_data_root}", *TINY_SOURCE]

    run_dir = tmp_path / "train"
    train = [*mine, "model=toy", "model.width=3", *data, *TINY_BASE, "logger=csv"]
    run("train", *train, f"hydra.run.dir={run_dir}", env=env)
    best = run_dir / "checkpoints" / "best.ckpt"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.isfinite(summary["best_val_sdr"])

    # resume: one more epoch of the stored run
    run("train", *train, f"resume={run_dir}", "trainer.max_epochs=3", env=env)
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 2  # the third epoch (0-based) ran

    evaluated = tmp_path / "evaluate"
    run("evaluate", "plugins=[toy_sepnet_model]", f"ckpt={best}", *data, "eval.max_tracks=1", "report=false",
        f"hydra.run.dir={evaluated}", env=env)
    assert np.isfinite(json.loads((evaluated / "results.json").read_text())["sdr"])

    song = tmp_path / "song.wav"
    sf.write(song, np.random.default_rng(0).standard_normal((22050, 2)).astype(np.float32) * 0.1, 22050)
    run("separate", "plugins=[toy_sepnet_model]", f"ckpt={best}", f"input={song}", f"out={tmp_path / 'stems'}",
        f"hydra.run.dir={tmp_path / 'separate'}", env=env)
    assert sorted(p.stem for p in (tmp_path / "stems" / "song").iterdir()) == ["bass", "drums", "other", "vocals"]

    blend = tmp_path / "blend.ckpt"
    run("merge", "plugins=[toy_sepnet_model]", f"ckpts=[{best},{run_dir / 'checkpoints' / 'last.ckpt'}]",
        f"out={blend}", f"hydra.run.dir={tmp_path / 'merge'}", env=env)
    assert blend.is_file()

    # Without the plugin, the checkpoint names a class sepnet does not have: one line saying how.
    refused = subprocess.run([sys.executable, "-m", "sepnet.separate", f"ckpt={best}", f"input={song}",
                              f"out={tmp_path / 'x'}", f"hydra.run.dir={tmp_path / 'y'}"],
                             capture_output=True, text=True, env=env, timeout=300, check=False)
    assert refused.returncode != 0 and "plugins=[<module>]" in refused.stderr.strip().splitlines()[-1]
