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


def check_override_keys(config_name: str, argv: list[str]) -> None:
    """Exit with one line when a command-line override sets a key the composed config does not have.

    ``optim.lrr=1`` makes Hydra print a multi-line error; this names the key, the
    closest existing one, and how to add a new key on purpose (``+key=value``).
    Group choices on the command line are applied first, so keys of the chosen
    options are known; sweeps (``a=1,2``), ``+``/``~`` overrides and ``hydra.*``
    keys are left to Hydra.
    """
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    settings = [a for a in argv if "=" in a and not a.startswith(("-", "+", "~")) and not a.startswith("hydra")]
    groups = [a for a in settings if "." not in a.partition("=")[0] and "," not in a.partition("=")[2]]
    keys = [a.partition("=")[0] for a in settings if a not in groups]
    if not keys:
        return
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=groups)
    except Exception:  # noqa: BLE001 - an override Hydra itself rejects: let Hydra explain it
        return
    finally:
        GlobalHydra.instance().clear()
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if node is not None and OmegaConf.is_dict(node) and leaf in node.keys():  # noqa: SIM118 - `in node` is False for ???
            continue
        if node is not None and OmegaConf.is_dict(node):
            known = [f"{parent}.{k}" if parent else str(k) for k in node]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else f"{parent or 'the config'} has: {', '.join(known)}; "
        else:
            hint = ""
        print(
            f"sepnet: error: {key} is not a setting of this run; {hint}(+{key}=... adds a new key on purpose)",
            file=sys.stderr,
        )
        sys.exit(2)
