"""Result tables as CSV files and markdown text (evaluation summaries, sweep tables)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sepnet.atomic import write_text


def format_cell(value: Any, digits: int = 2) -> str:
    """Floats with ``digits`` decimals (NaN/None as ``NaN``/empty), everything else as ``str``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub-flavoured markdown table; numbers right-aligned."""
    def align(i: int) -> str:
        numeric = rows and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
        return "---:" if numeric else "---"

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align(i) for i in range(len(headers))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(v, digits).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def write_csv(path: str | Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write ``rows`` under ``headers``; floats keep full precision, NaN/None become empty cells."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row])
    return write_text(path, text.getvalue())
