"""Where the configs live, and the command line every entry point reads before Hydra does.

``conf/`` sits at the repository root (an installed wheel carries a copy as
``sepnet/conf``); every entry point composes from it through
:mod:`sepnet.app.scaffold` (``@hydra.main(config_path=CONFIG_DIR, ...)``) and runs :func:`prepare_command_line` first: Hydra's options may stand anywhere
(``evaluate ckpt=x -m eval.mask_scale=0.5,1``), and a wrong group option or a
mistyped key ends in one line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_INSTALLED_CONFIGS = Path(__file__).resolve().parents[1] / "conf"  # a wheel ships conf/ here (setup.py)
CONFIG_DIR = str(_INSTALLED_CONFIGS if _INSTALLED_CONFIGS.is_dir() else Path(__file__).resolve().parents[2] / "conf")
"""Absolute path of the configs: ``conf/`` at the repository top, or ``sepnet/conf`` in an installed wheel."""


# Hydra's command-line options (hydra/_internal/utils.py get_args_parser) that take a value: the next
# word, or after "=" in the same word. --info/-i takes one only when the next word is one of its choices.
HYDRA_VALUE_OPTIONS = frozenset(
    {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
     "--experimental-rerun"}
)
OTHER_CONFIG_OPTIONS = frozenset({"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"})
HYDRA_INFO_OPTIONS = frozenset({"--info", "-i"})
HYDRA_INFO_CHOICES = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def split_command_line(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` as (Hydra's options, each followed by its value; the overrides), both in the order given.

    ``["ckpt=a", "-m", "x=1,2", "--cfg", "job"]`` -> ``(["-m", "--cfg", "job"], ["ckpt=a", "x=1,2"])``.
    Hydra's own parser reads overrides only before its first option, so ``options + overrides`` is the
    order it accepts, whatever order the user typed.
    """
    options: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if not word.startswith("-"):
            overrides.append(word)
            continue
        options.append(word)
        more = i < len(argv)
        if more and (word in HYDRA_VALUE_OPTIONS or (word in HYDRA_INFO_OPTIONS and argv[i] in HYDRA_INFO_CHOICES)):
            options.append(argv[i])
            i += 1
    return options, overrides


def hydra_value(value: str | Path) -> str:
    """A path as a Hydra override value: quoted when it holds characters the override grammar splits on."""
    text = str(value)
    return text if re.fullmatch(r"[\w./:+-]+", text) else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def positional_override(overrides: list[str], key: str, many: bool) -> list[str]:
    """``overrides`` with the words that are no override (no ``=``) turned into ``key=<word>``, or with
    ``many`` into ``key=[<word>,...]``: ``lineage outputs/x`` means ``lineage root=outputs/x``."""
    words = [o for o in overrides if "=" not in o and not o.startswith(("+", "~"))]
    if not words:
        return overrides
    rest = [o for o in overrides if o not in words]
    if any(o.partition("=")[0] == key for o in rest):
        print(f"sepnet: error: {' '.join(words)} and {key}=... both name the {key}; give one of them", file=sys.stderr)
        sys.exit(2)
    if len(words) > 1 and not many:
        print(f"sepnet: error: {' '.join(words)}: one {key} only, or {key}=<value> (words without '=' are the {key})", file=sys.stderr)
        sys.exit(2)
    value = f"[{','.join(hydra_value(w) for w in words)}]" if many else hydra_value(words[0])
    return [f"{key}={value}", *rest]


def prepare_command_line(config_name: str, positional: str | None = None, many: bool = False) -> None:
    """Run by every Hydra entry point's ``__main__`` before Hydra: put ``sys.argv`` in the order Hydra
    parses (options first, overrides after) and check the overrides against ``conf/<config_name>.yaml``
    (:func:`check_group_choices`, :func:`check_override_keys`): a mistake exits with one line. With
    ``positional``, bare words are that key's value (:func:`positional_override`)."""
    options, overrides = split_command_line(sys.argv[1:])
    if positional is not None:
        overrides = positional_override(overrides, positional, many)
    sys.argv[1:] = options + overrides
    if any(o.partition("=")[0] in OTHER_CONFIG_OPTIONS for o in options):
        return  # another config than conf/<config_name>.yaml: Hydra checks the overrides against it
    check_key_lengths(overrides)
    check_group_choices(overrides)
    check_extras(overrides)
    check_override_keys(config_name, overrides)


def check_extras(argv: list[str]) -> None:
    """Exit with one line when a command-line choice needs an extra that is not installed
    (``hparams_search=optuna`` without hydra-optuna-sweeper: ``pip install 'sepnet[optuna]'``)."""
    from sepnet.app.extras import require_for_overrides
    from sepnet.errors import SepnetError

    try:
        require_for_overrides(argv)
    except SepnetError as missing:
        print(f"sepnet: error: {missing}", file=sys.stderr)
        sys.exit(2)


def search_path(argv: list[str]) -> list[Path]:
    """sepnet's ``conf/``, then the user's own config folders of ``hydra.searchpath=[/my/conf,...]``.

    A user's folder may add options to any group (``/my/conf/model/mine.yaml``: ``model=mine``);
    the checks below know them as Hydra does.
    """
    folders = [Path(CONFIG_DIR)]
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "hydra.searchpath":
            for entry in value.strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    entry = entry.removeprefix("file://")
                if entry and "://" not in entry:
                    folders.append(Path(entry))
    return folders


def group_options(group: str, folders: list[Path] | None = None) -> list[str]:
    """The options of a config group: ``group_options("model") -> ["crnn", "large", ...]``."""
    return sorted({p.stem for folder in folders or [Path(CONFIG_DIR)] for p in (folder / group).glob("*.yaml")})


def check_group_choices(argv: list[str]) -> None:
    """Exit with one line when a command-line override picks an option a group does not have.

    Hydra's own message for ``model=foo`` spans a dozen lines of search paths;
    this names the group and lists its options instead.
    """
    folders = search_path(argv)
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key.startswith("hydra") or not _is_group(key):
            continue
        options = group_options(key, folders)
        for choice in value.strip("[]").split(","):
            if choice and choice != "null" and choice not in options:
                print(
                    f"sepnet: error: {key}={choice} is not a config option; {key} can be: {', '.join(options)}",
                    file=sys.stderr,
                )
                sys.exit(2)


def _is_group(key: str) -> bool:
    """Whether ``key`` names a config group (a folder of ``conf/``); a name no folder can have is none."""
    if "." in key or not key or "/" in key or "\0" in key:
        return False
    try:
        return (Path(CONFIG_DIR) / key).is_dir()
    except (OSError, ValueError):  # ENAMETOOLONG and the like
        return False


MAX_KEY_LENGTH = 200
"""Longer override keys are refused: no setting has such a name, and the OS refuses it as a file name."""


def check_key_lengths(argv: list[str]) -> None:
    """Exit with one line when an override's key is too long to be any setting (a pasted value, a runaway script)."""
    for arg in argv:
        key = arg.partition("=")[0].lstrip("+~")
        if len(key) > MAX_KEY_LENGTH:
            print(
                f"sepnet: error: the override key '{key[:40]}...' is {len(key)} characters long, too long for any "
                f"setting (at most {MAX_KEY_LENGTH}); check the command line (settings look like optim.lr=1e-3)",
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
    groups = [a for a in settings if _is_group(a.partition("=")[0]) and "," not in a.partition("=")[2]]
    keys = [a.partition("=")[0] for a in settings if a not in groups]
    groups += [a for a in argv if a.lstrip("+").startswith("hydra.searchpath=")]  # the user's own options
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
            hint = f"did you mean {close[0]}? " if close else f"{parent or 'the config'} has: {', '.join(known)}; " if known else ""
        else:
            hint = ""
        print(
            f"sepnet: error: {key} is not a setting of this run; {hint}(+{key}=... adds a new key on purpose)",
            file=sys.stderr,
        )
        sys.exit(2)
