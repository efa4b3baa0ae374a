"""The config choices that need an optional extra (``pip install 'sepnet[<extra>]'``), and their check.

sepnet never imports these packages itself: Lightning imports wandb or tensorboard when
its logger is built, Hydra finds the Optuna sweeper and the submitit launcher as plugins.
Without the package each fails in its own words (a Hydra "Could not load" block, a
Lightning ``ModuleNotFoundError`` inside an instantiate error); :func:`require` turns the
choice into one line naming the extra instead. The extras themselves are defined in
``pyproject.toml`` (``tests/test_packaging.py`` checks that both agree).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from sepnet.errors import SepnetError


@dataclass(frozen=True)
class Extra:
    """What a config choice needs: the extra that installs it, and the modules that must import.

    ``modules`` are all needed; ``"a|b"`` means either will do (Lightning's TensorBoard
    logger takes tensorboard or tensorboardX).
    """

    name: str
    package: str
    modules: tuple[str, ...]


TENSORBOARD = Extra("tensorboard", "tensorboard", ("tensorboard|tensorboardX",))
WANDB = Extra("wandb", "wandb", ("wandb",))
OPTUNA = Extra("optuna", "hydra-optuna-sweeper", ("hydra_plugins.hydra_optuna_sweeper", "optuna"))
SLURM = Extra("slurm", "hydra-submitit-launcher", ("hydra_plugins.hydra_submitit_launcher", "submitit"))

NEEDS: dict[str, Extra] = {
    "logger=tensorboard": TENSORBOARD,
    "logger=wandb": WANDB,
    "hparams_search=optuna": OPTUNA,
    "hydra/sweeper=optuna": OPTUNA,
    "hydra/launcher=slurm": SLURM,
    "hydra/launcher=submitit_slurm": SLURM,
    "hydra/launcher=submitit_local": SLURM,
}
"""``<group>=<option>`` -> the extra it needs (a logger's option is also its key under ``logger``)."""


def importable(module: str) -> bool:
    """Whether ``module`` (dotted, or ``"a|b"`` for either) can be imported, without importing it."""
    for name in module.split("|"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):  # a missing parent package; a module set to None in sys.modules
            continue
    return False


def require(choice: str) -> None:
    """Raise a one-line :class:`SepnetError` when ``choice`` (``"logger=wandb"``) needs an extra that is missing."""
    extra = NEEDS.get(choice)
    if extra is None or all(importable(m) for m in extra.modules):
        return
    raise SepnetError(f"{choice} needs the {extra.package} package: pip install 'sepnet[{extra.name}]'")


def require_for_overrides(overrides: list[str]) -> None:
    """:func:`require` for every ``group=option`` choice on a command line (``logger=[csv,wandb]`` is two)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            continue
        for option in value.strip("[]").split(","):
            require(f"{key.lstrip('+~')}={option.strip()}")
