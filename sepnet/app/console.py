"""The console scripts (``sepnet-train``, ``sepnet-evaluate``, ...): the same start as ``python -m sepnet.<entry>``.

``pyproject.toml``'s ``[project.scripts]`` points each Hydra entry point's script at a
function here. A script imports its module, so the module's ``if __name__ == "__main__"``
block never runs; these functions do what that block does, in the same order: choose
OpenMP's wait policy before the entry point's import loads torch, then
:func:`~sepnet.app.scaffold.run_entry_point` (argv checks, Hydra, the one-line user error).
Importing this module imports nothing heavy.
"""

from __future__ import annotations

import importlib

from sepnet.app.wait_policy import choose_wait_policy


def launch(entry: str) -> None:
    """Run ``sepnet.<entry>``'s Hydra entry point (its ``main``) on this process's command line."""
    choose_wait_policy()  # before torch loads OpenMP, which reads its wait policy once
    module = importlib.import_module(f"sepnet.{entry}")
    from sepnet.app.scaffold import run_entry_point

    run_entry_point(module.main)  # returns None: a script's exit status comes from sys.exit inside, or 0


def train() -> None:
    launch("train")


def evaluate() -> None:
    launch("evaluate")


def separate() -> None:
    launch("separate")


def merge() -> None:
    launch("merge")


def export() -> None:
    launch("export")


def import_weights() -> None:
    launch("import_weights")


def check_data() -> None:
    launch("check_data")


def reproduce() -> None:
    launch("reproduce")
