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
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, read_checkpoint, rebuild
from sepnet.checkpoints.compat import MISSING, differences, registered_class, select
from sepnet.errors import SepnetError
from sepnet.registry import is_plain, shown

log = logging.getLogger(__name__)

LAST = "last.ckpt"
# What must match between a checkpoint and the run that resumes it.
MUST_MATCH = ("model", "frontend", "data.stems")


# Settings a resumed run may change (named in one line): where and how long it runs, not what it computes.
MAY_CHANGE = (
    "trainer.max_epochs", "trainer.max_steps", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "data.num_workers", "data.persistent_workers", "data.pin_memory", "data.cache_dir", "data.source.root",
    "data.train_dir", "data.val_dir", "data.test_dir", "logger", "tags",
)
# Groups whose class is looked up in sepnet's registry by name (never built from the file's ``_target_``).
REGISTRY_GROUPS = ("model", "frontend")
# Settings that never count as a difference: where this invocation writes, and how it was asked to resume.
NOT_COMPARED = ("paths", "resume", "ckpt_path", "hydra")


@dataclass
class ResumePoint:
    """Where a run continues from: ``checkpoint`` (None: a fresh start), the run dir to write into, and the
    lineage stored in that checkpoint (the resumed run keeps it: its parents are never looked up again),
    and the run's composed config as the checkpoint stores it."""

    checkpoint: Path | None
    run_dir: Path
    lineage: dict | None = None
    config: dict | None = None
    changed: list[str] = field(default_factory=list)
    global_step: int | None = None  # the checkpoint's: metrics logged after it are redone by the resumed run


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
    raw = read_checkpoint(point.checkpoint)
    info = check_safe(point.checkpoint, raw)
    point.global_step = raw.get("global_step") if isinstance(raw.get("global_step"), int) else None
    point.lineage = info.get("lineage", {"parents": []})
    point.config = info.get("config") if isinstance(info.get("config"), dict) else None
    point.changed = resumed_config(cfg, point, command_line_keys())
    check_same_model(point.checkpoint, info, cfg)
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
    info = check_safe(checkpoint, read_checkpoint(checkpoint))
    check_same_model(checkpoint, info, cfg)
    return info


def check_safe(checkpoint: Path, raw: dict) -> dict:
    """Refuse (one line) a checkpoint (``raw``, as read) that is unsafe or not one ``sepnet.train`` wrote;
    returns its sepnet record."""
    info = raw.get(CHECKPOINT_KEY) if isinstance(raw, dict) else None
    if info is None or "state_dict" not in raw or "loops" not in raw:
        raise SepnetError(
            f"'{checkpoint}' is not a checkpoint sepnet.train wrote (no training state to resume); "
            f"to start from its weights use init.pretrained=<path> instead of resume"
        )
    rebuild(checkpoint, raw)  # its config names only sepnet's classes, and its weights fit them
    check_saved_paths(checkpoint, raw)
    return info


def check_same_model(checkpoint: Path, info: dict, cfg: DictConfig) -> None:
    """Refuse (one line) resuming ``checkpoint`` as a run of another model or front end than ``cfg``'s."""
    current = OmegaConf.to_container(cfg, resolve=True)
    found = differences(info["config"], current, MUST_MATCH)
    if found:
        first = found[0]
        raise SepnetError(
            f"cannot resume from '{checkpoint}': {first.key}={first.a!r} in the checkpoint but {first.b!r} here; "
            f"repeat the run's own overrides (its .hydra/overrides.yaml) or start a new run without resume"
        )


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def command_line_keys() -> list[str] | None:
    """The keys this run's command line set (``model``, ``trainer.max_epochs``), from Hydra; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    try:
        overrides = HydraConfig.get().overrides.task
    except Exception:  # noqa: BLE001 - a config without Hydra's overrides: every difference counts as given
        return None
    return [str(o).partition("=")[0].lstrip("+~") for o in overrides if "=" in str(o)]


def resumed_config(cfg: DictConfig, point: ResumePoint, given: list[str] | None) -> list[str]:
    """Make ``cfg`` the stored run's config again; returns the changes the user asked for, as ``key=value`` words.

    A resumed run is the run it continues: every setting where ``cfg`` (the defaults plus this command
    line) differs from the run's stored config takes the stored value (the run's own overrides, e.g.
    ``data.examples_per_epoch=16``; a group whose class differs, e.g. the run's ``loss=focal``, is taken
    whole). A difference the user typed (``given``: the command line's keys; None: every difference counts
    as typed) is refused in one line, unless it only says where and how long the run goes on
    (:data:`MAY_CHANGE`: ``trainer.max_epochs``, ``data.num_workers``, ...): those are kept and returned,
    for the caller to name. Keys only one side has (settings added to or removed from sepnet since) keep
    this version's value.
    """
    stored = point.config
    if point.checkpoint is None or stored is None:
        return []
    current = OmegaConf.to_container(cfg, resolve=True)
    kept, taken_whole = [], []
    for found in differences(stored, current):
        key = found.key
        if _under(key, NOT_COMPARED) or _under(key, taken_whole):
            continue
        typed = given is None or _under(key, given)
        if typed:
            if found.b is not MISSING and _under(key, MAY_CHANGE):
                kept.append(f"{key}={found.b!r} (the run had {found.a!r})")
                continue
            shown_a = "nothing" if found.a is MISSING else repr(found.a)
            shown_b = "nothing" if found.b is MISSING else repr(found.b)
            raise SepnetError(
                f"cannot resume from '{point.checkpoint}' with {key}={shown_b}: the run was trained with "
                f"{key}={shown_a}; a resumed run goes on as it was: drop that override (only where and how long "
                f"it runs may change, e.g. trainer.max_epochs), or start a new run from its weights with "
                f"init.pretrained={point.checkpoint}"
            )
        parent, _, leaf = key.rpartition(".")
        if leaf == "_target_" and parent:  # another class: the run's whole group, not a mix of two
            if found.a is MISSING or found.b is MISSING:
                continue
            if parent not in REGISTRY_GROUPS or registered_class(found.a) is None:
                raise SepnetError(
                    f"cannot resume from '{point.checkpoint}': the run used {key}={found.a!r} but this command "
                    f"composes {found.b!r}; repeat the run's choice for {parent} on the command line (its "
                    f".hydra/overrides.yaml lists them)"
                )
            taken = select(stored, parent)
            _take(cfg, parent, {k: v for k, v in taken.items() if k != "_target_"}, point, found, whole=taken)
            taken_whole.append(parent)
        elif found.a is not MISSING and found.b is not MISSING:
            _take(cfg, key, found.a, point, found)  # the run's own value (this run's default differed)
    return kept


def _plain(value) -> bool:
    """:func:`sepnet.registry.is_plain` with no ``_name_`` keys."""
    return is_plain(value, special_keys=False)


def _take(cfg: DictConfig, key: str, checked, point: ResumePoint, found, whole=None) -> None:
    """Put the stored run's value at ``key`` (``whole`` when given; ``checked`` is what must be plain data)."""
    if not _plain(checked):  # a checkpoint's config is data: never a node that Hydra would build or resolve
        raise SepnetError(
            f"cannot resume from '{point.checkpoint}': {found.key}={found.a!r} in the checkpoint but {found.b!r} here; "
            f"it is not plain data, so sepnet.train did not write it: start a new run without resume"
        )
    _set(cfg, key, checked if whole is None else whole)


def _set(cfg: DictConfig, key: str, value) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if node is not None and OmegaConf.is_dict(node):
        with open_dict(node):
            node[leaf] = value
