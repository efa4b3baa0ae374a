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
from dataclasses import dataclass
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


HYDRA_OPTIONS = HYDRA_VALUE_OPTIONS | HYDRA_INFO_OPTIONS | frozenset(
    {"--help", "-h", "--hydra-help", "--version", "--resolve", "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc"}
)
"""Every option Hydra's own parser knows; any other option is a command's own (:class:`Option`) or a mistake."""


@dataclass(frozen=True)
class Option:
    """A command's own short option, turned into overrides before Hydra reads the line (Demucs' ``-o out``).

    ``names`` (``("-o", "--out")``) take a value for ``key`` (``out=<value>``; with ``many``, repeats
    make a list), or, with ``sets``, are flags that stand for those overrides (``--mp3``).
    """

    names: tuple[str, ...]
    key: str | None = None
    sets: tuple[str, ...] = ()
    many: bool = False
    help: str = ""


def expand_options(argv: list[str], options: tuple[Option, ...]) -> list[str]:
    """``argv`` with a command's own options replaced by the overrides they stand for; one line for an
    unknown option (with the closest known one) or a missing value."""
    import difflib

    by_name = {name: o for o in options for name in o.names}
    values: dict[str, list[str]] = {}
    flags: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        name, eq, inline = word.partition("=")
        if not word.startswith("-") or word in ("-",):
            rest.append(word)
            continue
        if name in by_name:
            option = by_name[name]
            if option.key is None:
                flags += option.sets
                continue
            if eq:
                value = inline
            elif i < len(argv):
                value, i = argv[i], i + 1
            else:
                _fail(f"{name} needs a value ({option.help or option.key})")
            values.setdefault(option.key, []).append(value)
            continue
        rest.append(word)
        if name in HYDRA_OPTIONS:
            if i < len(argv) and not eq and (
                name in HYDRA_VALUE_OPTIONS or (name in HYDRA_INFO_OPTIONS and argv[i] in HYDRA_INFO_CHOICES)
            ):
                rest.append(argv[i])
                i += 1
            continue
        known = sorted(set(by_name) | HYDRA_OPTIONS)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        _fail(f"unknown option {name}; {hint}--help lists the options (settings look like key=value)")
    expanded = list(flags)
    for option in {o.key: o for o in options if o.key}.values():
        given = values.get(option.key)
        if not given:
            continue
        if len(given) > 1 and not option.many:
            _fail(f"{'/'.join(option.names)} given {len(given)} times; give it once")
        value = f"[{','.join(hydra_value(v) for v in given)}]" if len(given) > 1 else hydra_value(given[0])
        expanded.append(f"{option.key}={value}")
    return expanded + rest


def _fail(message: str) -> None:
    print(f"sepnet: error: {message}", file=sys.stderr)
    sys.exit(2)


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


def prepare_command_line(
    config_name: str,
    positional: str | None = None,
    many: bool = False,
    options: tuple[Option, ...] = (),
    usage: str | None = None,
) -> None:
    """Run by every Hydra entry point's ``__main__`` before Hydra: put ``sys.argv`` in the order Hydra
    parses (options first, overrides after) and check the overrides against ``conf/<config_name>.yaml``
    (:func:`check_group_choices`, :func:`check_override_keys`): a mistake exits with one line. With
    ``positional``, bare words are that key's value (:func:`positional_override`)."""
    own_options = options
    options, overrides = split_command_line(expand_options(sys.argv[1:], own_options))
    if positional is not None:
        overrides = positional_override(overrides, positional, many)
    sys.argv[1:] = options + overrides
    if any(o.partition("=")[0] in OTHER_CONFIG_OPTIONS for o in options):
        return  # another config than conf/<config_name>.yaml: Hydra checks the overrides against it
    if "--help" in options or "-h" in options:
        print_help(config_name, overrides, own_options, usage)
        sys.exit(0)
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


def print_help(config_name: str, overrides: list[str], options: tuple[Option, ...] = (), usage: str | None = None) -> None:
    """``--help``: the command's usage and own options, the config groups it reads (with their options) and its
    settings, composed with ``overrides``; not the groups of other commands, nor internal ones (``data/_common``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    groups = [o for o in overrides if _is_group(o.partition("=")[0].lstrip("+")) or "@" in o.partition("=")[0]]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=groups, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    lines = [usage or f"usage: python -m sepnet.{config_name} [key=value ...] [-m] [--cfg job] [--help]", ""]
    if options:
        lines.append("options:")
        for o in options:
            shown = ", ".join(o.names) + ("" if o.key is None else " VALUE")
            stands = o.key + "=VALUE" if o.key else " ".join(o.sets)
            lines.append(f"  {shown:<24} {o.help} ({stands})" if o.help else f"  {shown:<24} {stands}")
        lines.append("")
    read = {
        k: v for k, v in choices.items()
        if not k.startswith("hydra") and not any(p.startswith("_") for p in k.partition("@")[0].split("/"))
    }
    if read:
        lines.append("config groups it reads (group=option):")
        folders = search_path(overrides)
        for key, chosen in read.items():
            group = key.partition("@")[0]
            lines.append(f"{key}: {', '.join(group_options(group, folders))} (now: {chosen})")
        lines.append("")
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra")
    lines += ["settings (key=value; conf/" + config_name + ".yaml):", OmegaConf.to_yaml(cfg)]
    print("\n".join(lines))
