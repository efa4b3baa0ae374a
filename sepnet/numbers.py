"""The checks a number from a config or a file must pass before sepnet uses it.

YAML and Python let ``true`` pass as 1 and ``.nan``/``.inf`` pass as floats; a setting that
is a gain, a weight or a size must be none of those. Each check says yes or no; the caller
words the one-line error, since only it knows the key and the fix.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_real(value: Any) -> bool:
    """A finite int or float (NumPy scalars too), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_positive(value: Any) -> bool:
    """:func:`is_real` and > 0: a gain, a weight, a duration."""
    return is_real(value) and value > 0


def is_count(value: Any, minimum: int = 0) -> bool:
    """An int (not a bool) >= ``minimum``: a batch size, a number of iterations."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
