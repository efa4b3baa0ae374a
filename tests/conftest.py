"""Shared fixtures: real configs composed with Hydra, and a tiny embedded dataset on disk."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from sepnet.app.configs import CONFIG_DIR

TINY_DATA = {"train": 4, "valid": 2, "test": 2}

# The embedded dataset at test size.
TINY_SOURCE = [
    f"data.source.tracks_per_split={{train:{TINY_DATA['train']},valid:{TINY_DATA['valid']},test:{TINY_DATA['test']}}}",
    "data.source.duration=4.0",
]
# A run small enough for a test: tiny data, two short epochs (TINY_RUN adds the default model's tiny size,
# tiny_overrides the tiny size of the model an override picks: its conf/model YAML's `_sizes_.tiny`).
TINY_BASE = [
    "data.chunk_seconds=1.0",
    "data.val_chunk_seconds=2.0",
    "data.examples_per_epoch=8",
    "data.batch_size=4",
    "data.stats_chunks=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as the entry point would, with the run dir at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """Root of a tiny embedded dataset, generated once per test session."""
    return tmp_path_factory.mktemp("data") / "synthetic"


def tiny_size(overrides: tuple[str, ...] | list[str] = (), config_name: str = "train") -> list[str]:
    """The ``model.<key>=<value>`` overrides of the tiny size of the model ``overrides`` pick (its YAML's ``_sizes_.tiny``)."""
    return list(_tiny_size(tuple(overrides), config_name))


@functools.cache
def _tiny_size(overrides: tuple[str, ...], config_name: str) -> tuple[str, ...]:
    from sepnet.registry import size_overrides

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        model = compose(config_name=config_name, overrides=list(overrides)).model
    return tuple(size_overrides(model, "tiny"))


def tiny_overrides(overrides: tuple[str, ...] | list[str]) -> list[str]:
    """TINY_BASE plus the tiny size of the model ``overrides`` pick (``model=band_split``, an experiment)."""
    return [*TINY_BASE, *tiny_size([o for o in overrides if o.startswith(("model=", "experiment="))])]


TINY_RUN = [*TINY_BASE, *tiny_size()]
"""A tiny run of the default model (conf/train.yaml's)."""


@pytest.fixture
def tiny_run(tiny_data_root, tmp_path):
    """``tiny_run(*overrides) -> cfg``: the train config at test size, writing into tmp_path/run."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config(
            "train",
            [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *tiny_overrides(overrides), *overrides],
            output_dir or tmp_path / "run",
        )

    return make


def write_track(
    folder: Path,
    seconds: float = 2.5,
    rate: int = 16000,
    stems: tuple[str, ...] = ("bass", "drums", "other", "vocals"),
    seed: int = 0,
    suffix: str = ".wav",
) -> dict:
    """Write a track folder of noise stems (stereo, ``suffix`` format) and their mixture; returns the stems."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    audio = {stem: (0.1 * rng.standard_normal((2, round(seconds * rate)))).astype(np.float32) for stem in stems}
    for stem, x in audio.items():
        sf.write(folder / f"{stem}{suffix}", x.T, rate)
    sf.write(folder / "mixture.wav", sum(audio.values()).T, rate, subtype="FLOAT")
    return audio


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data_root, tmp_path_factory) -> Path:
    """A checkpoint of a tiny four-stem model trained on the tiny embedded dataset, once per session."""
    from sepnet.train import run_training

    run_dir = tmp_path_factory.mktemp("tiny_checkpoint")
    cfg = compose_config("train", [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *tiny_overrides([]), "logger=none"], run_dir)
    _, summary = run_training(cfg)
    return Path(summary["best_checkpoint"])


def write_fresh_checkpoint(cfg, path, seed: int, fill_statistics: float | None = None) -> dict:
    """A sepnet checkpoint of an untrained module (as on_save_checkpoint writes it), with distinct buffers."""
    import torch

    from sepnet.checkpoints import checkpoint
    from sepnet.train import build_module
    from sepnet.training.module import CHECKPOINT_KEY

    torch.manual_seed(seed)
    module = build_module(cfg)
    state = module.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_()
        elif key.endswith("num_batches_tracked"):
            value.fill_(seed * 10 + 1)
    if fill_statistics is not None:
        state["separator.front_end.bin_mean"].fill_(fill_statistics)
        state["separator.front_end.fitted"].fill_(True)
    raw = {"state_dict": state, CHECKPOINT_KEY: {"config": module.run_config, "lineage": module.lineage, "metrics": {"val/sdr": float(seed)}, "epoch": 0}}
    checkpoint.write_checkpoint(raw, path)
    return state


def model_options() -> str:
    """The ``model`` group's options, as Hydra and sepnet's messages list them: ``band_split, crnn, ...``."""
    return ", ".join(sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml")))


def registered_models() -> str:
    """The registered model classes, as the registry's messages list them: ``sepnet.models.BandSplitRNN, ...``."""
    from sepnet.registry import MODEL, public_names

    return ", ".join(public_names(MODEL))
