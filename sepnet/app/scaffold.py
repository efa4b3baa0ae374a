"""What every Hydra entry point does around its task: argv checks, Hydra, the user-error exit.

Each ``sepnet/<entry>.py`` ends in::

    main = hydra_entry_point("evaluate", evaluate)

    if __name__ == "__main__":
        run_entry_point(main)

and starts (before its imports, since torch must not be loaded yet) with::

    if __name__ == "__main__":
        from sepnet.app.wait_policy import choose_wait_policy

        choose_wait_policy()
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from sepnet.app.configs import CONFIG_DIR, Option, prepare_command_line
from sepnet.app.run_dir import remove_failed_start
from sepnet.errors import exit_on_user_error
from sepnet.registry import import_plugins

Task = Callable[[DictConfig], Any]


def hydra_entry_point(
    config_name: str,
    task: Task,
    *,
    exit_with_status: bool = False,
    positional: str | None = None,
    many: bool = False,
    options: tuple[Option, ...] = (),
    usage: str | None = None,
) -> Callable[[], Any]:
    """The ``@hydra.main`` function that composes ``conf/<config_name>.yaml`` and runs ``task`` on it.

    A :class:`~sepnet.errors.SepnetError` from ``task`` ends the process with one
    line and status 2, and removes the run folder this start created when it holds
    nothing of value (:func:`~sepnet.app.run_dir.remove_failed_start`). The function returns what ``task`` returns (Hydra sweepers
    optimise it); with ``exit_with_status`` a non-zero result is the process's exit
    status instead (``check_data``'s verdict). ``positional``/``many``, ``options`` and ``usage``
    describe the command line (:func:`run_entry_point`, :func:`~sepnet.app.configs.prepare_command_line`),
    wherever it is started from (``python -m``, a console script, ``sepnet <command>``). Hydra names the job after the module
    ``task`` is defined in, as it would for ``@hydra.main`` written there.
    """
    import hydra

    def with_plugins(cfg: DictConfig) -> Any:
        # The user's own model modules (plugins=[mypkg.models]) register their classes before anything is built.
        import_plugins(cfg.get("plugins"))
        return task(cfg)

    guarded = exit_on_user_error(with_plugins)

    @functools.wraps(task)  # Hydra names the job and finds the calling file through ``__wrapped__``
    def main(cfg: DictConfig) -> Any:
        try:
            result = guarded(cfg)
        except SystemExit as stopped:
            if stopped.code == 2:  # a user's mistake: the half-built run folder goes (unless it holds a checkpoint)
                remove_failed_start()
            raise
        if exit_with_status and result:
            sys.exit(result)
        return None if exit_with_status else result

    entry_point = hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")(main)
    entry_point.config_name = config_name  # type: ignore[attr-defined]
    entry_point.command_line = {"positional": positional, "many": many, "options": options, "usage": usage}  # type: ignore[attr-defined]
    return entry_point


def run_entry_point(main: Callable[[], Any], positional: str | None = None, many: bool = False) -> None:
    """Run an entry point built by :func:`hydra_entry_point` on this process's command line.

    ``sys.argv`` is first put in the order Hydra parses and checked against the
    config (:func:`~sepnet.app.configs.prepare_command_line`): a wrong group option
    or a mistyped key ends in one line. With ``positional``, words without ``=``
    are that key's value (``lineage outputs/x`` is ``lineage root=outputs/x``; with
    ``many``, a list: ``compare a b`` is ``compare runs=[a,b]``).
    """
    line = dict(getattr(main, "command_line", {}))
    if positional is not None:
        line.update(positional=positional, many=many)
    prepare_command_line(main.config_name, **line)  # type: ignore[attr-defined]
    main()
