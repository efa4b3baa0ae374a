"""Progress of the long loops that are not a Lightning fit: a bar in a terminal, plain lines in a log.

    for job in progress(jobs, "separate", unit="file"):
        ...

Used by ``separate`` (files), ``evaluate`` and ``check_data`` (tracks), ``reproduce`` (steps) and
the synthetic generator (tracks). Lightning keeps its own bar for training.

- stderr is a terminal: a rich bar (the library Lightning draws its own bar with when rich is
  installed, as sepnet's dependencies make it) with count, elapsed time and ETA. What the loop
  prints or logs to the terminal meanwhile appears above the bar.
- otherwise (a log file, a pipe, CI): plain log lines (logger ``sepnet.app.progress``, INFO, so
  under Hydra they go where the run's other log lines go: the console and ``<run dir>/<job>.log``),
  one per tenth of the items (every item when there are at most ten), e.g.
  ``separate: 3/10 files (30%), elapsed 0:12, ETA 0:28``. stderr stays for errors: a user's
  mistake is still the one line there.
"""

from __future__ import annotations

import io
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TextIO, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

LINES_PER_LOOP = 10
"""A loop in a log prints at most this many progress lines (about one per 10%)."""

WHOLE_RUN = 7 * 24 * 3600.0
"""Seconds of history the bar's ETA averages over: all of any real loop, as the plain lines' ETA does."""


def progress(
    items: Iterable[T], description: str, *, unit: str = "track", total: int | None = None, stream: TextIO | None = None
) -> Iterator[T]:
    """Yield ``items`` while showing how far the loop got and when it will end.

    Args:
        items: what the loop runs over; its ``len`` is the total unless ``total`` is given.
        description: the job, e.g. ``"separate"``; starts every line.
        unit: one item's name, singular (``"file"`` -> ``"3/10 files"``).
        total: the number of items, for an iterable without ``len`` (None: count only, no ETA).
        stream: the terminal a bar is drawn on, if it is one (default ``sys.stderr``, read when the
            loop starts); when it is not a terminal the progress is logged instead.
    """
    stream = sys.stderr if stream is None else stream
    if total is None and isinstance(items, Sized):
        total = len(items)
    if _is_terminal(stream):
        yield from _bar(items, description, unit, total, stream)
    else:
        yield from _lines(items, description, unit, total)


@contextmanager
def steps(description: str, total: int, *, unit: str = "chunk", stream: TextIO | None = None) -> Iterator[Callable[[int], None]]:
    """Progress inside one item of a loop (the chunks of one long file): yields ``advance(n=1)``.

    Under a :func:`progress` bar it is a second row of that bar (count, elapsed, ETA), removed when
    the block ends; on its own in a terminal it is a bar; in a log it is plain lines, one per tenth
    (``separate song.wav: 12/40 chunks (30%), elapsed 0:09, ETA 0:21``).
    """
    stream = sys.stderr if stream is None else stream
    bar = _active_bar
    if bar is not None:
        task = bar.add_task(description, total=total)
        bar.advance(task, 0)
        try:
            yield lambda n=1: bar.advance(task, n)
        finally:
            bar.remove_task(task)
        return
    if _is_terminal(stream):
        items = iter(_bar(iter(int, 1), description, unit, total, stream))  # an endless source, advanced by hand
        next(items)
        try:
            yield lambda n=1: [next(items) for _ in range(n)]
        finally:
            items.close()
        return
    points = _report_points(total)
    start, done = time.monotonic(), 0

    def advance(n: int = 1) -> None:
        nonlocal done
        for _ in range(n):
            done += 1
            if points is None or done in points:
                log.info(progress_line(description, min(done, total), total, unit, time.monotonic() - start))

    yield advance


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def clock(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(description: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    """One plain line: ``"evaluate: 3/10 tracks (30%), elapsed 0:12, ETA 0:28"`` (no ETA without a total)."""
    units = unit if done == 1 and total in (None, 1) else f"{unit}s"
    if total is None:
        return f"{description}: {done} {units}, elapsed {clock(elapsed)}"
    eta = elapsed / done * (total - done) if done else math.nan
    eta_text = clock(eta) if math.isfinite(eta) else "?"
    share = 100 * done // total if total else 100
    return f"{description}: {done}/{total} {units} ({share}%), elapsed {clock(elapsed)}, ETA {eta_text}"


def _report_points(total: int | None) -> set[int] | None:
    """Counts after which a log gets a line: every tenth of ``total`` (None: after every item)."""
    if total is None:
        return None
    return {math.ceil(k * total / LINES_PER_LOOP) for k in range(1, LINES_PER_LOOP + 1)}


def _lines(items: Iterable[T], description: str, unit: str, total: int | None) -> Iterator[T]:
    points = _report_points(total)
    start = time.monotonic()
    for done, item in enumerate(items, 1):
        yield item
        if points is None or done in points:
            log.info(progress_line(description, done, total, unit, time.monotonic() - start))


def _bar(items: Iterable[T], description: str, unit: str, total: int | None, stream: TextIO) -> Iterator[T]:
    global _bar_active
    if _bar_active:  # a loop inside a loop that has the bar: its lines appear above that bar
        yield from _lines(items, description, unit, total)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream, force_terminal=True)  # the caller checked isatty (a test's stream may fake it)
    columns = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    bar = Progress(
        *columns,
        console=console,
        redirect_stdout=False,  # done by _output_above, which keeps partial lines together
        redirect_stderr=False,
        speed_estimate_period=WHOLE_RUN,  # rich's default 30 s window has no speed when one item takes longer
    )
    global _active_bar
    _bar_active = True
    _active_bar = bar
    try:
        with bar, _output_above(console, stream):
            task = bar.add_task(description, total=total)
            bar.advance(task, 0)  # a first sample at the start: the ETA exists from the first finished item on
            for item in items:
                yield item
                bar.advance(task)
    finally:
        _bar_active = False
        _active_bar = None


_bar_active = False
_active_bar = None  # the rich Progress of the loop that has the bar: steps() adds its row to it
"""True while a bar is drawn: a nested loop then writes plain lines, which appear above it."""


class _AboveBar(io.TextIOBase):
    """A text stream whose whole lines are printed above the bar (``console.out``); a partial line
    (``print(..., end="")``) waits for its end, even across ``flush``."""

    def __init__(self, console, file: TextIO):
        self._console = console
        self._file = file
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.out(line, highlight=False)
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def finish(self) -> None:
        if self._partial:
            self._console.out(self._partial, highlight=False, end="")
            self._partial = ""

    def isatty(self) -> bool:
        return _is_terminal(self._file)

    def fileno(self) -> int:
        return self._file.fileno()

    def __getattr__(self, name: str):
        return getattr(self._file, name)


@contextmanager
def _output_above(console, stream: TextIO) -> Iterator[None]:
    """While the bar is drawn, route what would be written across it to above it.

    ``sys.stdout`` and ``sys.stderr`` are replaced when they are the bar's terminal (or another
    terminal, the same screen); console log handlers (Hydra's ``logging.StreamHandler``) keep the
    stream they were given, so theirs is swapped too. All are restored afterwards.
    """
    originals = {"stdout": sys.stdout, "stderr": sys.stderr}
    proxies = {
        file: _AboveBar(console, file) for file in originals.values() if file is stream or _is_terminal(file)
    }
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    handlers = [
        h for lg in loggers for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) and h.stream in proxies
    ]
    swapped = [(h, h.stream) for h in handlers]
    for name, file in originals.items():
        if file in proxies:
            setattr(sys, name, proxies[file])
    for handler, file in swapped:
        handler.setStream(proxies[file])
    try:
        yield
    finally:
        for handler, file in swapped:
            handler.setStream(file)
        for name, file in originals.items():
            setattr(sys, name, file)
        for proxy in proxies.values():
            proxy.finish()
