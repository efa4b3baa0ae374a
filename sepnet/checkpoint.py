"""Self-describing checkpoints: one path rebuilds model, front end and config.

A sepnet checkpoint is a Lightning checkpoint whose ``"sepnet"`` entry holds the
resolved run config (model, front end, stems), the lineage (parents, merge
weights) and the validation metrics at save time. Nothing else is needed to
evaluate, separate, merge or fine-tune it: the research log's hand-typed
``--hidden_size 512 --num_layers 4`` at evaluation time cannot happen here.
"""

from __future__ import annotations

import os
import pickle
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sepnet.errors import SepnetError
from sepnet.separation_module import CHECKPOINT_KEY
from sepnet.separator import Separator

SEPARATOR_PREFIX = "separator."


@dataclass
class LoadedCheckpoint:
    """What :func:`load` returns.

    Attributes:
        path: the file read.
        separator: front end + model with the checkpoint's weights, in eval mode.
        config: the run's resolved config.
        lineage: ``{"parents": [...], ...}`` as recorded by the run or merge.
        metrics: validation metrics when it was saved (``val/sdr``, ``val/sdr_<stem>``, ...).
    """

    path: Path
    separator: Separator
    config: DictConfig
    lineage: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, loaded without running pickled code (``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SepnetError(f"checkpoint '{path}' does not exist; pass the path of a .ckpt written by sepnet.train")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it would call {found.group(1)} when loaded" if found else "it is not plain tensors and data"
        raise SepnetError(
            f"checkpoint '{path}' was refused: {what}, and sepnet never runs code from a checkpoint; "
            f"use a checkpoint written by sepnet, or re-save a trusted one as a plain state_dict of tensors"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise SepnetError(f"checkpoint '{path}' cannot be read ({exc}); it may be truncated: use another checkpoint") from None


def build_separator(config: DictConfig) -> Separator:
    """A fresh (untrained) separator from a run config's ``frontend`` and ``model`` nodes."""
    return Separator(instantiate(config.frontend), instantiate(config.model))


def separator_state(state_dict: dict) -> dict:
    """The separator's part of a LightningModule state dict, with the prefix removed."""
    return {k[len(SEPARATOR_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(SEPARATOR_PREFIX)}


def load(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the separator a checkpoint describes, with its weights, on the CPU, in eval mode."""
    raw = read_checkpoint(path)
    info = raw.get(CHECKPOINT_KEY)
    if info is None or "state_dict" not in raw:
        raise SepnetError(
            f"'{path}' is not a sepnet checkpoint (no '{CHECKPOINT_KEY}' entry); "
            f"a plain state_dict is used with init.pretrained=<path> instead"
        )
    config = OmegaConf.create(info["config"])
    separator = build_separator(config)
    separator.load_state_dict(separator_state(raw["state_dict"]))
    separator.eval()
    return LoadedCheckpoint(Path(path), separator, config, info.get("lineage", {}), info.get("metrics", {}))


def write_checkpoint(raw: dict, path: str | Path) -> Path:
    """Save a checkpoint dict atomically (temporary file, then rename): a crash never leaves half a file."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepnetError(f"cannot create folder '{path.parent}' ({exc.strerror}); choose another output path") from None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        torch.save(raw, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise SepnetError(f"cannot write checkpoint '{path}' ({exc.strerror}); choose another output path") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
