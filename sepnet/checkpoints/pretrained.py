"""Starting a run from a parent's weights: ``init.pretrained=<path>`` (a sepnet .ckpt or a plain .pth state_dict).

    python -m sepnet.train init.pretrained=outputs/crnn/.../best.ckpt
    python -m sepnet.train model=unet_crnn init.pretrained=crnn.ckpt init.strict=false

Strict by default: any missing, unexpected or shape-mismatched model tensor
stops the run with one line saying which and how many. ``init.strict=false``
loads every tensor whose name and shape match and reports what it left out
(e.g. a CRNN's encoder and LSTM load into a U-Net CRNN; its decoder does not).

The parent's front-end statistics (``front_end.bin_mean/bin_std/fitted``) are
loaded with it, so fine-tuning normalises exactly as the parent did and the
statistics are not refitted. A plain model ``state_dict`` has none: the run
then fits its own, and says so. The parent is recorded in the new checkpoint's
lineage. Files are read with ``torch.load(weights_only=True)``, and a sepnet
checkpoint's config is checked like every checkpoint's (:func:`sepnet.checkpoints.checkpoint.sepnet_entry`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sepnet.checkpoints.checkpoint import (
    CHECKPOINT_KEY,
    IncompleteEntry,
    check_values,
    read_checkpoint,
    separator_state,
    sepnet_entry,
)
from sepnet.checkpoints.compat import differences
from sepnet.errors import SepnetError
from sepnet.inference.separator import Separator

log = logging.getLogger(__name__)

MODEL_PREFIX = "model."
FRONT_END_PREFIX = "front_end."
SHOWN = 4
"""Names listed per category in a one-line report."""


@dataclass
class LoadReport:
    """What loading a parent did.

    Attributes:
        path: the parent file.
        loaded: model tensors copied from the parent.
        missing: model tensors the parent does not have.
        unexpected: parent tensors the model does not have.
        mismatched: ``name -> (parent shape, model shape)`` for tensors present in both.
        front_end_statistics: True when the parent's normalisation statistics were kept.
        parent_info: the parent's sepnet entry (config, metrics, lineage); empty for a plain .pth.
    """

    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    front_end_statistics: bool = False
    parent_info: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: what was left out, with the first few names of each kind."""

        def names(items: list[str]) -> str:
            more = f", +{len(items) - SHOWN} more" if len(items) > SHOWN else ""
            return f" ({', '.join(items[:SHOWN])}{more})" if items else ""

        shapes = [f"{k} {list(a)} vs {list(b)}" for k, (a, b) in self.mismatched.items()]
        return (
            f"{len(self.missing)} missing{names(self.missing)}, "
            f"{len(self.unexpected)} unexpected{names(self.unexpected)}, "
            f"{len(self.mismatched)} shape-mismatched{names(shapes)} [parent vs model]"
        )

    def lineage_entry(self, strict: bool) -> dict:
        """What the child's checkpoint records about this parent."""
        return {
            "path": str(self.path),
            "role": "pretrained",
            "strict": strict,
            "loaded": len(self.loaded),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "mismatched": sorted(self.mismatched),
            "front_end_statistics": self.front_end_statistics,
        }


def parent_state(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The separator-level state dict (``model.*``, maybe ``front_end.*``) of a parent, and its sepnet info."""
    raw = read_checkpoint(path)
    info = raw.get(CHECKPOINT_KEY) if isinstance(raw, dict) else None
    if info is not None:  # checked as evaluate checks it: its config names only sepnet's classes, as plain data
        try:
            info = sepnet_entry(path, raw)
        except IncompleteEntry:  # no config to compare with: its tensors are used like a plain state_dict's
            log.warning("init.pretrained '%s' has no complete sepnet config: loading its tensors only", path)
            info = None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SepnetError(
            f"init.pretrained '{path}' holds no state_dict of tensors; pass a sepnet .ckpt or a .pth saved "
            f"with torch.save(model.state_dict(), path)"
        )
    if any(k.startswith("separator.") for k in state):  # a Lightning checkpoint of a SeparationModule
        state = separator_state(state)
    if not any(k.startswith((MODEL_PREFIX, FRONT_END_PREFIX)) for k in state):  # a bare model state_dict
        state = {MODEL_PREFIX + k: v for k, v in state.items()}
    check_values(state, path)  # a NaN parent would fail the fine-tune later, blaming the data or the learning rate
    return state, info


def parent_config_group(info: dict | None, group: str) -> dict:
    """One group (``frontend``, ``model``...) of the run config a sepnet checkpoint carries; {} for a plain .pth."""
    return ((info or {}).get("config") or {}).get(group) or {}


def check_front_end_settings(path: Path, info: dict | None, separator: Separator) -> None:
    """A parent analysed with another STFT cannot be fine-tuned: its weights expect other inputs."""
    parent, settings = parent_config_group(info, "frontend"), separator.front_end.settings
    differ = differences(parent, settings, [k for k in settings if k in parent], prefix="frontend")
    if differ:
        text = ", ".join(f"{d.key}={d.a} (this run: {d.b})" for d in differ)
        raise SepnetError(f"init.pretrained '{path}' was trained with {text}; set those to match the parent")


def load_pretrained(separator: Separator, path: str | Path, strict: bool = True) -> LoadReport:
    """Copy a parent's weights (and front-end statistics) into ``separator``; returns what was done.

    Raises:
        SepnetError: with ``strict``, when any model tensor is missing, unexpected or
            of another shape; with or without it, when nothing matches at all or the
            parent's STFT settings differ.
    """
    path = Path(path).expanduser()
    state, info = parent_state(path)
    check_front_end_settings(path, info, separator)
    report = LoadReport(path.resolve(), parent_info=info or {})

    own = separator.state_dict()
    model_own = {k: v for k, v in own.items() if k.startswith(MODEL_PREFIX)}
    model_parent = {k: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    strip = len(MODEL_PREFIX)
    report.missing = [k[strip:] for k in model_own if k not in model_parent]
    report.unexpected = [k[strip:] for k in model_parent if k not in model_own]
    report.mismatched = {
        k[strip:]: (tuple(v.shape), tuple(model_own[k].shape))
        for k, v in model_parent.items()
        if k in model_own and v.shape != model_own[k].shape
    }
    matching = {k: v for k, v in model_parent.items() if k in model_own and v.shape == model_own[k].shape}
    report.loaded = [k[strip:] for k in matching]
    model = type(separator.model).__name__
    parent_model = parent_config_group(info, "model").get("_target_", "").rsplit(".", 1)[-1]
    if parent_model and parent_model != model:  # say so: the commonest cause is a checkpoint of another model
        model = f"{model} (it is a {parent_model} checkpoint)"
    if strict and not report.complete:
        raise SepnetError(
            f"init.pretrained '{path}' does not fit {model}: {report.summary()}; "
            f"use the parent's model settings, or init.strict=false to load the {len(matching)} matching tensors"
        )
    if not matching:
        raise SepnetError(f"init.pretrained '{path}' shares no tensor with {model}: {report.summary()}")

    front_end = {k: v for k, v in state.items() if k.startswith(FRONT_END_PREFIX) and k in own}
    statistics = ("front_end.bin_mean", "front_end.bin_std", "front_end.fitted")
    if all(k in front_end and front_end[k].shape == own[k].shape for k in statistics) and bool(front_end["front_end.fitted"]):
        matching.update({k: front_end[k] for k in statistics})
        report.front_end_statistics = True
    separator.load_state_dict(matching, strict=False)

    (log.info if report.complete else log.warning)(
        "init.pretrained %s: loaded %d/%d model tensors%s; %s",
        path,
        len(report.loaded),
        len(model_own),
        "" if report.complete else f"; left out {report.summary()}",
        "kept the parent's front-end statistics"
        if report.front_end_statistics
        else "the parent has no front-end statistics: they are fitted on this run's training data",
    )
    return report
