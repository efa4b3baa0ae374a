"""Runs named by their parents: ``init.from_run=<run name>`` instead of a hand-copied path.

    python -m sepnet.train experiment=crnn_large_final_tune      # init.from_run: crnn_large_finetune_ver1

A run name resolves to the best checkpoint of the newest finished run of that
name, ``<outputs_root>/<run_name>/<newest>/checkpoints/best.ckpt`` (run folders
are named by time, so the newest sorts last); a run folder or a checkpoint path
is taken as given. Merges (``sepnet.merge name=...``) write into the same
layout, so a merged checkpoint is a parent like any run.

The resolved parent is loaded into the new run's separator (model weights and
the front end's normalisation statistics) and recorded in its checkpoints'
lineage: ``{"parents": [path], "from_run": name, "parent_lineage": {...}}``, so
every checkpoint carries its whole chain.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from sepnet.checkpoints.pretrained import load_pretrained
from sepnet.errors import SepnetError
from sepnet.inference.separator import Separator

log = logging.getLogger(__name__)

BEST = Path("checkpoints") / "best.ckpt"


def _finished_runs(folder: Path) -> list[Path]:
    """Run folders under ``folder`` holding a best checkpoint, newest (by name) first."""
    return [d for d in sorted(folder.iterdir(), reverse=True) if (d / BEST).is_file()]


def resolve_run_checkpoint(run_name: str, outputs_root: str | Path = "outputs") -> Path:
    """The best checkpoint of the newest finished run named ``run_name``.

    Args:
        run_name: a run name (``crnn_large_finetune_ver1``), a run folder
            (``outputs/x/2025-12-27_17-11-18``, or ``outputs/x`` for its newest run),
            or a checkpoint file.
        outputs_root: where run folders live (``paths.outputs_root``).

    Raises:
        SepnetError: no such run, or no run of that name has finished (no ``best.ckpt``).
    """
    given = Path(str(run_name)).expanduser()
    if given.is_file():
        return given.resolve()
    if (given / BEST).is_file():
        return (given / BEST).resolve()
    as_path = given.is_absolute() or len(given.parts) > 1
    folder = given if as_path else Path(outputs_root) / given
    if not folder.is_dir():
        raise SepnetError(
            f"init.from_run={run_name}: there is no run folder '{folder}'; train that run first "
            f"(python -m sepnet.train experiment={given.name}) or set paths.outputs_root"
        )
    runs = _finished_runs(folder)
    if not runs:
        raise SepnetError(
            f"init.from_run={run_name}: no run under '{folder}' has finished ({BEST} missing); "
            f"let that run finish, or name a run folder or checkpoint path"
        )
    newest = max(folder.iterdir())
    if runs[0] != newest:
        log.warning("init.from_run=%s: the newest run '%s' has no %s; using '%s'", run_name, newest, BEST, runs[0])
    return (runs[0] / BEST).resolve()


def parent_checkpoint(init: DictConfig | None, outputs_root: str | Path) -> Path | None:
    """The checkpoint a run starts from: ``init.from_run`` resolved, or ``init.pretrained``, or None."""
    if init is None:
        return None
    from_run, pretrained = init.get("from_run"), init.get("pretrained")
    if from_run and pretrained:
        raise SepnetError(
            f"init.from_run={from_run} and init.pretrained={pretrained} both name a parent; set only one"
        )
    if from_run:
        return resolve_run_checkpoint(str(from_run), outputs_root)
    return Path(pretrained).expanduser() if pretrained else None


def init_lineage(separator: Separator, cfg: DictConfig) -> dict:
    """Load the run's parent (``init.from_run`` / ``init.pretrained``) into ``separator``; returns the lineage."""
    init = cfg.get("init")
    path = parent_checkpoint(init, cfg.paths.get("outputs_root", "outputs"))
    if path is None:
        return {"parents": []}
    strict = bool(init.get("strict", True))
    report = load_pretrained(separator, path, strict=strict)
    lineage = {
        "parents": [str(report.path)],
        "pretrained": report.lineage_entry(strict),
        "parent_metrics": report.parent_info.get("metrics", {}),
        "parent_lineage": report.parent_info.get("lineage", {}),
    }
    if init.get("from_run"):
        lineage["from_run"] = str(init.from_run)
    return lineage
