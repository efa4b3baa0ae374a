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

A class registers itself where it is defined::

    @register_model
    class CRNN(SeparationModel): ...

under its public name ``sepnet.models.CRNN`` (what ``conf/model/*.yaml`` and
checkpoints write) and its module-qualified name ``sepnet.models.crnn.CRNN``;
``aliases`` keep old names loading after a class moves. Nothing lists the models:
before the first look-up the registry imports every module of the ``sepnet.models``
package, the front end, and every module another package declares under the entry-point
group ``sepnet.models`` (``[project.entry-points."sepnet.models"] mine = "mypkg.models"``);
a user's own module can also be named in a run's ``plugins=[mypkg.models]``
(:func:`import_plugins`), which the entry points import before composing anything
else. A class named in a *checkpoint* is never imported because the checkpoint names it:
only these sources register classes.

This module sits at the bottom of the package (beside :mod:`sepnet.errors`): the models
and the front end import it, it imports them only by name at look-up time, and it
imports no Lightning, so inference loads checkpoints without the training stack.
"""

from __future__ import annotations

import collections.abc
import importlib
import importlib.metadata
import inspect
import pkgutil
import types
import typing
from collections.abc import Mapping
from typing import Any

from sepnet.errors import SepnetError

MODEL, FRONT_END = "model", "front end"
REGISTRIES: dict[str, dict[str, type]] = {MODEL: {}, FRONT_END: {}}
"""kind -> {name -> class}."""

MODEL_PACKAGE = "sepnet.models"
"""The package whose every module is imported before the first look-up (models register themselves there)."""
FRONT_END_MODULES = ("sepnet.dsp.frontend",)
ENTRY_POINT_GROUP = "sepnet.models"
"""Other packages' model modules, declared as entry points of this group."""
METADATA_KEYS = ("_target_", "_sizes_")
"""Keys of a model node that are not constructor arguments: the class name, and the named
smaller sizes of ``conf/model/*.yaml`` (``_sizes_.tiny``) that tests and budgets apply."""
_discovered = False

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
    if kind == MODEL:
        from sepnet.models.contract import SeparationModel  # by name: the contract sits above this module

        if not (isinstance(cls, type) and issubclass(cls, SeparationModel)):
            raise TypeError(f"{cls} is registered as a model but does not derive from sepnet.models.SeparationModel")
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


def discover() -> None:
    """Import every module that registers classes: ``sepnet.models.*``, the front end, entry points (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(MODEL_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__, f"{MODEL_PACKAGE}."):
        importlib.import_module(info.name)
    for module in FRONT_END_MODULES:
        importlib.import_module(module)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def import_plugins(modules: Any, key: str = "plugins") -> None:
    """Import the user's own model modules named in a run's config (``plugins=[mypkg.models]``).

    Raises:
        SepnetError: a name that is not a module path, or a module that cannot be imported.
    """
    if modules in (None, ""):
        return
    names = [modules] if isinstance(modules, str) else list(modules)
    for name in names:
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise SepnetError(f"{key} holds {shown(name)}, not a module name; name importable modules, e.g. {key}=[mypkg.models]")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SepnetError(
                f"{key} names module '{name}', which cannot be imported ({exc}); put its folder on PYTHONPATH "
                f"or install its package"
            ) from None


def registered(kind: str) -> dict[str, type]:
    """``{name: class}`` of one kind (``MODEL`` or ``FRONT_END``), every discovered class included."""
    discover()
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


def is_plain(value: Any, special_keys: bool = True) -> bool:
    """Plain data, safe to copy from a checkpoint into a config: numbers, booleans, None, strings without an
    interpolation, lists and string-keyed dicts of those; with ``special_keys=False`` no ``_name_`` key
    (``_target_`` and its kind: what Hydra would instantiate)."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return "${" not in value
    if isinstance(value, list):
        return all(is_plain(v, special_keys) for v in value)
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and (special_keys or not (k.startswith("_") and k.endswith("_"))) and is_plain(v, special_keys)
            for k, v in value.items()
        )
    return False


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
        if name in METADATA_KEYS:
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
        raise RefusedConfig(
            f"{prefix}._target_",
            f"is {shown(name)}, not a sepnet {kind} ({', '.join(public_names(kind))})"
            + ("; a model of your own registers when its module is imported: name it in plugins=[<module>]" if kind == MODEL else ""),
        )
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


def size_overrides(model_node: Any, size: str) -> list[str]:
    """The ``model.<key>=<value>`` overrides of a model node's named size ``_sizes_.<size>`` (``tiny``).

    ``conf/model/*.yaml`` gives each model its smaller sizes beside its full ones, so tests
    and the reproduce budgets shrink any model without knowing its class.

    Raises:
        RefusedConfig: the model's YAML has no such size.
    """
    sizes = model_node.get("_sizes_") if isinstance(model_node, Mapping) else None
    if not isinstance(sizes, Mapping) or size not in sizes:
        target = model_node.get("_target_") if isinstance(model_node, Mapping) else None
        raise RefusedConfig(
            "model._sizes_", f"has no size '{size}' for {shown(target)}; add `_sizes_: {{{size}: {{<argument>: <value>}}}}` to its conf/model YAML"
        )
    return [f"model.{key}={_override_value(value)}" for key, value in (sizes[size] or {}).items()]


def _override_value(value: Any) -> str:
    """A plain value as Hydra's override grammar writes it: ``[4,8,8]``, ``true``, ``null``, ``0.5``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)) or (not isinstance(value, str) and isinstance(value, collections.abc.Sequence)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)
