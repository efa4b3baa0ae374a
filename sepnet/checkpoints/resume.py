"""Continuing a run exactly where it stopped: which checkpoint, which run dir, and whether it fits.

    python -m sepnet.train resume=outputs/crnn/2026-01-05_19-25-01          # the run dir: its checkpoints/last.ckpt
    python -m sepnet.train resume=outputs/crnn/.../checkpoints/last.ckpt
    python -m sepnet.train hydra.run.dir=outputs/crnn/run1 ckpt_path=last   # same command after every preemption

Lightning restores model, optimiser, scheduler, epoch, global step and the
callbacks' state from the checkpoint. The rest of a run's randomness is keyed so
that it needs no saved stream: training examples by ``(seed, epoch, index)``
(:mod:`sepnet.data.datamodule`, whose ``state_dict`` records how far into the epoch the run
got) and the model's own randomness (dropout) by ``(seed, rank, global step)``
(:class:`sepnet.training.resuming.StepSeed`). A resumed run therefore ends with the same weights as an
uninterrupted one.

A resumed run keeps writing into the run dir its checkpoint came from, and adds
to its ``metrics.csv`` instead of replacing it
(:func:`sepnet.training.resuming.keep_previous_metrics`). It takes its lineage from the
checkpoint: ``init.from_run`` / ``init.pretrained`` are not resolved or read
again, so a parent that was moved, deleted or followed by a newer run of its
name changes nothing.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, read_checkpoint, rebuild
from sepnet.checkpoints.compat import differences
from sepnet.errors import SepnetError
from sepnet.registry import shown

log = logging.getLogger(__name__)

LAST = "last.ckpt"
# What must match between a checkpoint and the run that resumes it.
MUST_MATCH = ("model", "frontend", "data.stems")


@dataclass
class ResumePoint:
    """Where a run continues from: ``checkpoint`` (None: a fresh start), the run dir to write into, and the
    lineage stored in that checkpoint (the resumed run keeps it: its parents are never looked up again)."""

    checkpoint: Path | None
    run_dir: Path
    lineage: dict | None = None


def run_dir_of(checkpoint: Path, default: Path) -> Path:
    """The run dir a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), else ``default``."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else default


def resume_point(cfg: DictConfig, output_dir: Path) -> ResumePoint:
    """Resolve ``resume`` (a run dir or a checkpoint) and ``ckpt_path`` (``last`` or a checkpoint).

    ``ckpt_path=last`` with no ``last.ckpt`` in this run's dir is a fresh start, so
    a preemptible job can be requeued with one unchanging command. Every other
    named checkpoint must exist, load safely and describe the same model.
    """
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume is not None and ckpt_path is not None:
        raise SepnetError("both resume and ckpt_path are set; give one: resume=<run dir or .ckpt> or ckpt_path=last")
    if resume is None and ckpt_path is None:
        return ResumePoint(None, output_dir)
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / LAST
        if not last.is_file():
            log.info("ckpt_path=last: no %s yet, starting a fresh run", last)
            return ResumePoint(None, output_dir)
        point = ResumePoint(last, output_dir)
    else:
        key, given = ("resume", resume) if resume is not None else ("ckpt_path", ckpt_path)
        path = Path(str(given)).expanduser()
        if path.is_dir():
            path = path / "checkpoints" / LAST
            if not path.is_file():
                raise SepnetError(
                    f"{key}={given}: the run dir has no checkpoints/{LAST}; name a .ckpt file or a run dir "
                    f"that saved one (a run saves last.ckpt after its first epoch)"
                )
        elif not path.is_file():
            raise SepnetError(f"{key}={given} does not exist; pass a run dir (outputs/<run>/<time>) or a .ckpt file")
        point = ResumePoint(path, run_dir_of(path, output_dir))
    point.lineage = check_compatible(point.checkpoint, cfg).get("lineage", {"parents": []})
    # sepnet's data module goes on mid-epoch by itself (its state_dict), which Lightning cannot see.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    return point


def check_saved_paths(checkpoint: Path, raw: dict) -> None:
    """Refuse a ``ModelCheckpoint`` state naming files outside the folder it saved into.

    Lightning restores those paths on resume and later deletes the ones it thinks
    stale (it checks only that ``dirpath`` is among a path's parents, so
    ``<dirpath>/../x`` passes); a resumed run must never touch another file.
    """
    callbacks = raw.get("callbacks")
    for name, state in (callbacks.items() if isinstance(callbacks, dict) else ()):
        if not str(name).startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        folder = state.get("dirpath")
        best_k = state.get("best_k_models")
        named = [(k, state.get(k)) for k in ("best_model_path", "kth_best_model_path", "last_model_path")]
        named += [("best_k_models", p) for p in (best_k if isinstance(best_k, dict) else {})]
        for key, saved in named:
            if saved in (None, ""):
                continue
            if not (isinstance(saved, str) and isinstance(folder, str) and os.path.dirname(os.path.normpath(saved)) == os.path.normpath(folder)):
                raise SepnetError(
                    f"checkpoint '{checkpoint}' was refused: callbacks.ModelCheckpoint.{key} is {shown(saved)}, not a file in "
                    f"the folder it saved into ({shown(folder)}); resume only from a last.ckpt written by sepnet.train"
                )


def check_compatible(checkpoint: Path, cfg: DictConfig) -> dict:
    """Refuse (one line) a checkpoint that is unsafe, not sepnet's, or of another model than ``cfg``;
    returns its sepnet record (config, lineage, metrics)."""
    raw = read_checkpoint(checkpoint)
    info = raw.get(CHECKPOINT_KEY) if isinstance(raw, dict) else None
    if info is None or "state_dict" not in raw or "loops" not in raw:
        raise SepnetError(
            f"'{checkpoint}' is not a checkpoint sepnet.train wrote (no training state to resume); "
            f"to start from its weights use init.pretrained=<path> instead of resume"
        )
    rebuild(checkpoint, raw)  # its config names only sepnet's classes, and its weights fit them
    check_saved_paths(checkpoint, raw)
    current = OmegaConf.to_container(cfg, resolve=True)
    found = differences(info["config"], current, MUST_MATCH)
    if found:
        first = found[0]
        raise SepnetError(
            f"cannot resume from '{checkpoint}': {first.key}={first.a!r} in the checkpoint but {first.b!r} here; "
            f"repeat the run's own overrides (its .hydra/overrides.yaml) or start a new run without resume"
        )
    return info
