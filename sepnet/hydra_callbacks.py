"""Hydra callbacks: checks that must run before Hydra itself touches the disk.

Hydra creates the run (or sweep) folder before calling the task, and a failure
there surfaces as a traceback. :class:`OutputDirCheck` tries the folder first
and turns a failure into sepnet's one-line error.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sepnet.errors import SepnetError
from sepnet.run_dir import ensure_writable


def _check_writable(folder: str, key: str) -> None:
    try:
        ensure_writable(folder, key)
    except SepnetError as exc:
        print(f"sepnet: error: {exc}", file=sys.stderr)
        sys.exit(2)


class OutputDirCheck(Callback):
    """Fail with one line when the run or sweep folder cannot be created or written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # lets ${hydra:...} in the folder name resolve
        _check_writable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        _check_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
