"""sepnet's own buildable classes by name: the only classes a model or front-end config may name.

A model or front-end node is ``{"_target_": <name>, <argument>: <value>, ...}``,
in the user's YAML (``conf/model/*.yaml``, ``conf/train.yaml``'s ``frontend``)
and in every checkpoint. :func:`build` turns such a node into an object without
Hydra: the name is looked up here (never imported), every argument must be a
parameter of the class's constructor, and every value must be plain data of the
type the parameter is annotated with (bool, int, float, str, None, lists of
those; a dict only where the constructor takes a mapping). A string holding
``${`` is refused: a stored config is resolved, and nothing here resolves it.
This is what makes a checkpoint data, never code: a file can name only a class
registered below, with arguments its constructor accepts.

A class registers itself::

    @register_model
    class CRNN(nn.Module): ...

under its public name ``sepnet.models.CRNN`` (what ``conf/model/*.yaml`` and
checkpoints write) and its module-qualified name ``sepnet.models.crnn.CRNN``;
``aliases`` keep old names loading after a class moves. This module imports no
Lightning: inference loads checkpoints without the training stack.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from sepnet.errors import SepnetError

MODEL, FRONT_END = "model", "front end"
REGISTRIES: dict[str, dict[str, type]] = {MODEL: {}, FRONT_END: {}}
"""kind -> {name -> class}."""

BUILTIN_MODULES = ("sepnet.models", "sepnet.dsp.frontend")
"""Where sepnet's registered classes live; imported before the first look-up."""

SCALARS = (bool, int, float, str, type(None))
CONSTRUCTION_ERRORS = (ValueError, TypeError, RuntimeError, MemoryError, ArithmeticError, LookupError)
"""What a constructor given sizes from a file may raise (torch's allocation failures are RuntimeErrors):
each becomes one :class:`RefusedConfig` line, never a traceback."""
SHOWN_CHARS = 200
"""Stored values are quoted up to this many characters in messages."""


class RefusedConfig(SepnetError):
    """A model or front-end node that cannot be built: ``key`` (``model.hidden_size``) and what is wrong with it."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem


def _register(kind: str, cls: type, names: tuple[str, ...]) -> type:
    registry = REGISTRIES[kind]
    for name in (*names, f"{cls.__module__}.{cls.__qualname__}"):
        if registry.get(name, cls) is not cls:
            raise ValueError(f"{kind} name {name} is already registered for {registry[name]}")
        registry[name] = cls
    return cls


def register_model(cls: type | None = None, *, aliases: tuple[str, ...] = ()) -> Any:
    """Class decorator: ``cls`` can be built from a node naming ``sepnet.models.<Name>`` (or an alias)."""

    def add(cls: type) -> type:
        return _register(MODEL, cls, (f"sepnet.models.{cls.__name__}", *aliases))

    return add(cls) if cls is not None else add


def register_front_end(cls: type | None = None, *, aliases: tuple[str, ...] = ()) -> Any:
    """Class decorator: ``cls`` can be built from a ``frontend`` node naming its module-qualified name (or an alias)."""

    def add(cls: type) -> type:
        return _register(FRONT_END, cls, (f"{cls.__module__}.{cls.__qualname__}", *aliases))

    return add(cls) if cls is not None else add


def registered(kind: str) -> dict[str, type]:
    """``{name: class}`` of one kind (``MODEL`` or ``FRONT_END``), every built-in class included."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return REGISTRIES[kind]


def public_names(kind: str) -> list[str]:
    """One name per registered class (the first it registered under), sorted: what a message lists."""
    first: dict[type, str] = {}
    for name, cls in registered(kind).items():
        first.setdefault(cls, name)
    return sorted(first.values())


def shown(value: Any) -> str:
    """A stored value for a one-line message: its repr (newlines escaped), cut to :data:`SHOWN_CHARS`."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "").replace("collections.abc.", "")


def _plain(value: Any, key: str) -> None:
    """Refuse anything but scalars and lists of scalars, and strings that hold an interpolation."""
    if isinstance(value, str):
        if "${" in value:
            raise RefusedConfig(key, f"is {shown(value)}, an interpolation (a stored config holds resolved values only)")
        if not value.isprintable():
            raise RefusedConfig(key, f"is {shown(value)}, which holds control characters")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if not isinstance(item, SCALARS):
                raise RefusedConfig(f"{key}[{i}]", f"is {shown(item)} (a {type(item).__name__}); a list argument holds numbers or strings only")
            _plain(item, f"{key}[{i}]")
        return
    if not isinstance(value, SCALARS):
        raise RefusedConfig(key, f"is {shown(value)} (a {type(value).__name__}); arguments are numbers, strings, booleans, null or lists of those")


def _fits(hint: Any, value: Any) -> bool:
    """Whether plain ``value`` is of type ``hint`` (a constructor annotation)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(arm, value) for arm in args)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence, typing.Sequence) and not isinstance(value, str):
        item = args[0] if args else Any  # Sequence[int], tuple[int, ...]
        return isinstance(value, (list, tuple)) and all(_fits(item, v) for v in value)
    return False


def _takes_mapping(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_takes_mapping(arm) for arm in typing.get_args(hint))
    return origin in (dict, Mapping, collections.abc.Mapping) or hint in (dict, Mapping)


def check_arguments(cls: type, node: Mapping, prefix: str) -> dict[str, Any]:
    """The keyword arguments of ``node`` (less ``_target_``), each checked against ``cls.__init__``.

    Raises:
        RefusedConfig: an argument the constructor does not have, a value that is not
            plain data of the annotated type, or a required argument missing.
    """
    signature = inspect.signature(cls.__init__)
    hints = typing.get_type_hints(cls.__init__)
    parameters = {
        name: p for name, p in signature.parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }  # fmt: skip
    arguments = {}
    for name, value in node.items():
        key = f"{prefix}.{name}"
        if name == "_target_":
            continue
        if not isinstance(name, str) or name not in parameters:
            raise RefusedConfig(
                f"{prefix}.{name}" if isinstance(name, str) else f"{prefix}[{shown(name)}]",
                f"is not an argument of {cls.__name__} (it takes {', '.join(parameters)})",
            )
        hint = hints.get(name, Any)
        if isinstance(value, Mapping):
            if not _takes_mapping(hint):
                raise RefusedConfig(key, f"is {shown(value)} (a dict), but {cls.__name__} takes {_type_name(hint)}")
            for inner, item in value.items():
                _plain(item, f"{key}.{inner}")
            value = dict(value)
        else:
            _plain(value, key)
            if not _fits(hint, value):
                raise RefusedConfig(key, f"is {shown(value)} (a {type(value).__name__}), but {cls.__name__} takes {_type_name(hint)}")
            if isinstance(value, tuple):
                value = list(value)
        arguments[name] = value
    missing = [n for n, p in parameters.items() if p.default is p.empty and n not in arguments]
    if missing:
        raise RefusedConfig(f"{prefix}.{missing[0]}", f"is missing ({cls.__name__} needs it)")
    return arguments


def lookup(kind: str, node: Any, prefix: str) -> type:
    """The registered class ``node["_target_"]`` names."""
    if not isinstance(node, Mapping):
        raise RefusedConfig(prefix, f"is {shown(node)} (a {type(node).__name__}), not a {kind} config")
    if "_target_" not in node:
        raise RefusedConfig(f"{prefix}._target_", f"is missing; name a sepnet {kind}: {', '.join(public_names(kind))}")
    name = node["_target_"]
    cls = registered(kind).get(name) if isinstance(name, str) else None
    if cls is None:
        raise RefusedConfig(f"{prefix}._target_", f"is {shown(name)}, not a sepnet {kind} ({', '.join(public_names(kind))})")
    return cls


def build(kind: str, node: Any, prefix: str) -> Any:
    """The object a model or front-end node describes, built from sepnet's own classes only.

    Args:
        kind: ``MODEL`` or ``FRONT_END``.
        node: plain data, ``{"_target_": name, argument: value, ...}``.
        prefix: the node's key in the config, for messages (``model``, ``frontend``).

    Raises:
        RefusedConfig: see :func:`lookup` and :func:`check_arguments`; also a value the
            constructor itself rejects or cannot build (any of :data:`CONSTRUCTION_ERRORS`:
            ``n_bins`` not divisible, a negative size, a size too large to allocate).
    """
    cls = lookup(kind, node, prefix)
    arguments = check_arguments(cls, node, prefix)
    try:
        return cls(**arguments)
    except CONSTRUCTION_ERRORS as exc:
        detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        detail = " ".join(detail.split())  # torch's messages span lines; this is one
        raise RefusedConfig(prefix, f"cannot build {cls.__name__} ({detail[:SHOWN_CHARS]})") from None


def check(kind: str, node: Any, prefix: str) -> None:
    """:func:`build`'s checks without building anything (for a node whose object is not needed)."""
    check_arguments(lookup(kind, node, prefix), node, prefix)
