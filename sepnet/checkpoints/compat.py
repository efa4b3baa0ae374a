"""Where two configs differ: the one comparison behind resume, merge, init.pretrained and evaluate.

Each of those refuses a checkpoint that does not match something (the run that
resumes it, the other checkpoints of a merge, the run fine-tuning it, the
user's overrides) and names the first difference in its own words; the finding
of differences is shared, so they all treat a class that moved the same way:
two ``_target_`` names of one registered class (``sepnet.spectral.SpectralFrontEnd``
and ``sepnet.dsp.frontend.SpectralFrontEnd``) are equal.

Configs here are plain nested dicts (``OmegaConf.to_container`` or a checkpoint's
stored config), never OmegaConf objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sepnet.registry import FRONT_END, MODEL, registered

SIZES_KEY = "_sizes_"


class _Missing:
    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()
"""Stands for a key one side does not have (``repr`` is ``missing``)."""


@dataclass(frozen=True)
class Difference:
    """One leaf where ``a`` and ``b`` differ: its dotted ``key`` and both values (:data:`MISSING` when absent)."""

    key: str
    a: Any
    b: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.a!r} vs {self.b!r}"


def registered_class(name: Any) -> type | None:
    """The model or front-end class a ``_target_`` name stands for in sepnet's registry; None for any other name."""
    if not isinstance(name, str):
        return None
    return registered(MODEL).get(name) or registered(FRONT_END).get(name)


def same_value(key: str, a: Any, b: Any) -> bool:
    """Leaf equality; a ``_target_`` naming a registered class equals every other name of that class."""
    if a == b:
        return True
    if key.rpartition(".")[2] == "_target_":
        cls = registered_class(a)
        return cls is not None and cls is registered_class(b)
    return False


def select(config: Any, dotted: str) -> Any:
    """``config``'s value at a dotted key (``data.stems``); :data:`MISSING` when any part is absent."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def differences(a: Any, b: Any, keys: Iterable[str] | None = None, prefix: str = "") -> list[Difference]:
    """Every leaf where the nested configs ``a`` and ``b`` differ, in ``a``'s key order then ``b``'s extra keys.

    Args:
        a, b: plain nested dicts (or leaves).
        keys: dotted keys to compare (``("model", "frontend.n_fft")``); None compares all of ``a`` and ``b``.
        prefix: the dotted key ``a`` and ``b`` sit at, for the names in the result.
    """
    if keys is not None:
        join = f"{prefix}." if prefix else ""
        return [d for k in keys for d in differences(select(a, k), select(b, k), prefix=f"{join}{k}")]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        found = []
        for k in [*a, *(k for k in b if k not in a)]:
            if k == SIZES_KEY:  # a model's named smaller sizes say nothing about the model itself
                continue
            key = f"{prefix}.{k}" if prefix else str(k)
            found += differences(a.get(k, MISSING), b.get(k, MISSING), prefix=key)
        return found
    return [] if same_value(prefix, a, b) else [Difference(prefix, a, b)]
