"""Where the configs live, and the checks Hydra does not make readable enough.

``conf/`` sits at the repository root (sepnet is installed editable); every
entry point composes from it with ``@hydra.main(config_path=CONFIG_DIR, ...)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
"""Absolute path of ``conf/``."""


def group_options(group: str) -> list[str]:
    """The options of a config group: ``group_options("model") -> ["crnn", "large", ...]``."""
    folder = Path(CONFIG_DIR) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def check_group_choices(argv: list[str]) -> None:
    """Exit with one line when a command-line override picks an option a group does not have.

    Hydra's own message for ``model=foo`` spans a dozen lines of search paths;
    this names the group and lists its options instead.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key.startswith("hydra") or "." in key or not (Path(CONFIG_DIR) / key).is_dir():
            continue
        options = group_options(key)
        for choice in value.strip("[]").split(","):
            if choice and choice != "null" and choice not in options:
                print(
                    f"sepnet: error: {key}={choice} is not a config option; {key} can be: {', '.join(options)}",
                    file=sys.stderr,
                )
                sys.exit(2)
