"""Output gains: the one resolver of a gain setting (``eval.gain``, ``separate.gain``) into a gain per stem.

The research log scaled outputs by hand (x3.1); sepnet measures the least-squares gain g*
(:func:`sepnet.evaluation.metrics.optimal_gain`) and lets a run apply a fixed number, one
number per stem, or ``auto``: gains learned elsewhere (``evaluate`` learns them on the valid
split; ``separate`` reads what an ``evaluate`` run learned).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sepnet.errors import SepnetError
from sepnet.numbers import is_positive


def resolve_gains(
    setting: Any, stems: Sequence[str], key: str, learn: Callable[[], tuple[np.ndarray, str]]
) -> tuple[np.ndarray, str]:
    """``(stems,)`` float32 gains and where they came from, for a gain ``setting``.

    Args:
        setting: a number > 0 (every stem), ``{stem: number > 0}`` (others 1), or ``"auto"``.
        stems: the model's target stems, in order.
        key: the setting's config key, for messages (``eval.gain``).
        learn: called for ``auto``: returns the learned gains and a description.

    Raises:
        SepnetError: a setting that is none of the above (NaN, 0, a bool, an unknown stem).
    """
    if isinstance(setting, str) and setting == "auto":
        return learn()
    if is_positive(setting):
        return np.full(len(stems), float(setting), dtype=np.float32), f"{float(setting):g} ({key})"
    if isinstance(setting, Mapping):
        plain = {str(k): v for k, v in setting.items()}
        if any(k not in stems for k in plain) or not all(is_positive(v) for v in plain.values()):
            raise SepnetError(f"{key}={plain} is not valid; give a gain > 0 per stem of {', '.join(stems)}")
        return np.array([float(plain.get(s, 1.0)) for s in stems], dtype=np.float32), f"per stem ({key})"
    raise SepnetError(f"{key}={setting!r} is not valid; set it to a number > 0, {{stem: number}} or auto")
