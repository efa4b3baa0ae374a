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

from sepnet.checkpoint import read_checkpoint, separator_state
from sepnet.errors import SepnetError
from sepnet.separation_module import CHECKPOINT_KEY
from sepnet.separator import Separator

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


def load_parent(separator: Separator, path: Path, strict: bool = True) -> dict:
    """Copy a sepnet checkpoint's separator weights (model + front-end statistics) into ``separator``.

    With ``strict=False`` only tensors whose name and shape match are copied
    (e.g. all but the output layer when the target stems differ).

    Returns:
        The lineage entry for the new run: parents, what was loaded, the parent's own lineage.

    Raises:
        SepnetError: not a sepnet checkpoint, other front-end settings, or (strict) any tensor differs.
    """
    raw = read_checkpoint(path)
    info = raw.get(CHECKPOINT_KEY) if isinstance(raw, dict) else None
    if info is None or "state_dict" not in raw:
        raise SepnetError(f"parent '{path}' is not a sepnet checkpoint (no '{CHECKPOINT_KEY}' entry); name a .ckpt written by sepnet")
    parent_front = info["config"].get("frontend") or {}
    for key, value in separator.front_end.settings.items():
        if key in parent_front and parent_front[key] != value:
            raise SepnetError(
                f"parent '{path}' was trained with frontend.{key}={parent_front[key]} (this run: {value}); set it to match"
            )
    parent = separator_state(raw["state_dict"])
    own = separator.state_dict()
    matching = {k: v for k, v in parent.items() if k in own and own[k].shape == v.shape}
    left_out = sorted(set(own) - set(matching))
    unexpected = sorted(set(parent) - set(own))
    if (left_out or unexpected) and strict:
        name = (left_out or unexpected)[0]
        raise SepnetError(
            f"parent '{path}' does not fit this model ({len(left_out)} tensors missing or of another shape, "
            f"{len(unexpected)} unexpected, e.g. {name}); use the parent's model settings or init.strict=false"
        )
    separator.load_state_dict(matching, strict=False)
    log.info("init: loaded %d/%d tensors from '%s'%s", len(matching), len(own), path, f"; left out {left_out}" if left_out else "")
    return {
        "parents": [str(Path(path).resolve())],
        "pretrained": {"path": str(Path(path).resolve()), "strict": strict, "left_out": left_out},
        "parent_metrics": info.get("metrics", {}),
        "parent_lineage": info.get("lineage", {}),
    }


def init_lineage(separator: Separator, cfg: DictConfig) -> dict:
    """Load the run's parent (``init.from_run`` / ``init.pretrained``) into ``separator``; returns the lineage."""
    init = cfg.get("init")
    path = parent_checkpoint(init, cfg.paths.get("outputs_root", "outputs"))
    if path is None:
        return {"parents": []}
    lineage = load_parent(separator, path, strict=bool(init.get("strict", True)))
    if init.get("from_run"):
        lineage["from_run"] = str(init.from_run)
    return lineage
