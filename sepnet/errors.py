"""User-facing errors: one clear line naming the thing and the fix, never a traceback.

A :class:`SepnetError` is a user's mistake (bad path, unknown stem, corrupt file,
incompatible checkpoint). Entry points wrap their main in :func:`exit_on_user_error`
so such an error ends the process with one line on stderr and exit status 2; any
other exception is a bug in sepnet and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class SepnetError(Exception):
    """A mistake in the user's input; the message names the file or key and the fix."""


def printable(text: object, limit: int | None = None) -> str:
    """``text`` (a name read from a file or a folder) safe to show on a terminal, in markdown or in XML.

    Characters that are not printable (newlines, tabs, ANSI escape codes, NUL, lone surrogates of an
    undecodable file name) are written as their Python escapes (``\\n``, ``\\x1b``), so what is shown
    stays on one line, colours nothing and names the character; ``limit`` cuts the result to that many
    characters, ending in ``…``. Linear in ``limit``, whatever the length of ``text``.
    """
    text = str(text)
    if limit is not None:
        text = text[: limit + 1]  # an escape is never shorter than its character: this is all that can show
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def user_error_in(exc: BaseException) -> SepnetError | None:
    """The :class:`SepnetError` behind ``exc`` (directly or as a cause), if any.

    Hydra's ``instantiate`` and some Lightning hooks wrap exceptions; the user's
    mistake is then found along the ``__cause__``/``__context__`` chain. A
    mandatory config value (``???``) that was never set is the user's mistake too.
    """
    from omegaconf.errors import MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SepnetError):
            return exc
        if isinstance(exc, MissingMandatoryValue) and getattr(exc, "full_key", None):  # a ``???`` left unset
            return SepnetError(f"{exc.full_key} is not set (it has no default); pass {exc.full_key}=<value>")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def exit_on_user_error(main: F) -> F:
    """Decorate an entry point so a :class:`SepnetError` prints one line and exits 2.

    Idempotent: a function already decorated is returned as it is, so the entry-point
    scaffold can guard every task without wrapping the decorated ones twice.
    """
    if getattr(main, "_exits_on_user_error", False):
        return main

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as exc:  # re-raised unless it is the user's mistake
            user_error = user_error_in(exc)
            if user_error is None:
                raise
            print(f"sepnet: error: {user_error}", file=sys.stderr, flush=True)
            sys.exit(2)

    wrapper._exits_on_user_error = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
