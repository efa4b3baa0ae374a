"""Self-describing checkpoints: one path rebuilds model, front end and config; a checkpoint is data, never code.

A sepnet checkpoint is a Lightning checkpoint whose ``"sepnet"`` entry holds the
resolved run config (model, front end, stems), the lineage (parents, merge
weights) and the validation metrics at save time. Nothing else is needed to
evaluate, separate, merge or fine-tune it, so no model setting is ever typed
again (and mistyped) at evaluation time.

Reading one never runs code from it: the file is loaded with
``torch.load(weights_only=True)`` (no pickled objects), the model and front end
are rebuilt from :mod:`sepnet.registry` (sepnet's own classes, by name,
arguments checked against the constructor), nothing read from a file reaches
``hydra.utils.instantiate``, and the stored config stays plain data
(:class:`StoredConfig`): no ``${...}`` in it is ever resolved. Every refusal is
one line naming the file and the config key. This module imports no Lightning.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepnet import __version__
from sepnet.atomic import save_torch
from sepnet.errors import SepnetError
from sepnet.inference.separator import Separator
from sepnet.registry import FRONT_END, MODEL, RefusedConfig, build, check, shown

CHECKPOINT_KEY = "sepnet"
"""Where a checkpoint keeps what makes it self-describing (config, lineage, metrics, version)."""
SEPARATOR_PREFIX = "separator."
SHOWN_TENSORS = 4
"""Tensor names listed per kind in a one-line message."""
AUDIO_HEADERS = {b"RIFF": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"FORM": "AIFF", b"\xff\xfb": "MP3"}


class StoredConfig(dict):
    """A checkpoint's run config as plain data: nested dicts with attribute access (``config.model.hidden_size``).

    Never an OmegaConf object, so no interpolation a file holds is ever resolved.
    """

    def __init__(self, data: Mapping):
        super().__init__({k: _stored(v) for k, v in data.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _stored(value: Any) -> Any:
    if isinstance(value, Mapping):
        return StoredConfig(value)
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


@dataclass
class LoadedCheckpoint:
    """What :func:`load` returns.

    Attributes:
        path: the file read.
        separator: front end + model with the checkpoint's weights, in eval mode.
        config: the run's resolved config, as plain data.
        lineage: ``{"parents": [...], ...}`` as recorded by the run or merge.
        metrics: validation metrics when it was saved (``val/sdr``, ``val/sdr_<stem>``, ...).
    """

    path: Path
    separator: Separator
    config: StoredConfig
    lineage: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


class IncompleteEntry(SepnetError):
    """A ``"sepnet"`` entry without the config a rebuild needs: another version's or another program's file."""


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a PyTorch checkpoint (neither a zip archive nor a pickle), or None."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch.save's zip format, or the legacy pickle
        return None
    audio = next((kind for magic, kind in AUDIO_HEADERS.items() if head.startswith(magic)), None)
    if audio:
        return f"it is an audio file ({audio})"
    return "it is empty" if not head else "it is neither a PyTorch checkpoint nor a pickle"


def read_checkpoint(path: str | Path) -> Any:
    """The raw checkpoint object, loaded without running pickled code (``weights_only=True``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise SepnetError(
            f"checkpoint '{path}' is a folder; pass a .ckpt file (a run keeps its own in <run dir>/checkpoints/best.ckpt)"
        )
    if not path.is_file():
        raise SepnetError(f"checkpoint '{path}' does not exist; pass the path of a .ckpt written by sepnet.train")
    try:
        why = _not_a_checkpoint(path)
    except OSError as exc:
        raise SepnetError(f"checkpoint '{path}' cannot be read ({exc.strerror}); check its permissions") from None
    if why:
        raise SepnetError(f"'{path}' is not a checkpoint: {why}; pass the path of a .ckpt written by sepnet.train")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it would call {found.group(1)} when loaded" if found else "it is not plain tensors and data"
        raise SepnetError(
            f"checkpoint '{path}' was refused: {what}, and sepnet never runs code from a checkpoint; "
            f"use a checkpoint written by sepnet, or re-save a trusted one as a plain state_dict of tensors"
        ) from None
    except (RuntimeError, EOFError, OSError, IndexError, KeyError, ValueError) as exc:
        raise SepnetError(f"checkpoint '{path}' cannot be read ({exc}); it may be truncated: use another checkpoint") from None


def refused(path: Path, problem: str, info: Mapping | None = None) -> SepnetError:
    """The one line for a checkpoint whose content sepnet will not use: names the file and the problem."""
    version = info.get("version") if isinstance(info, Mapping) else None
    if version not in (None, __version__):  # a newer sepnet may know classes this one does not
        return SepnetError(
            f"checkpoint '{path}' was refused: {problem}; it was written by sepnet {shown(version)} and this is "
            f"sepnet {__version__}: load it with the version that wrote it"
        )
    return SepnetError(
        f"checkpoint '{path}' was refused: {problem}; sepnet builds only its own classes from a checkpoint "
        f"and never runs code from one: use a checkpoint written by sepnet.train or sepnet.merge"
    )


def _check_data(value: Any, key: str) -> None:
    """Plain data all the way down (dicts with string keys, lists, scalars), and no interpolation in any string."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise RefusedConfig(f"{key}[{shown(k)}]", "is not a string key")
            _check_data(v, f"{key}.{k}" if key else k)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_data(v, f"{key}[{i}]")
    elif isinstance(value, str):
        if "${" in value:
            raise RefusedConfig(key, f"is {shown(value)}, an interpolation (a checkpoint holds resolved values only)")
    elif not isinstance(value, (bool, int, float, type(None))):
        raise RefusedConfig(key, f"is {shown(value)} (a {type(value).__name__}), not plain data")


def sepnet_entry(path: Path, raw: Any) -> dict:
    """The checked ``"sepnet"`` entry of a raw checkpoint: config, lineage and metrics are plain data, and the
    config's ``model`` and ``frontend`` name registered sepnet classes with arguments their constructors take.

    Raises:
        SepnetError: one line naming ``path`` and the key (``model._target_``, ``frontend.sample_rate``, ...).
    """
    info = raw.get(CHECKPOINT_KEY) if isinstance(raw, Mapping) else None
    if info is None or not isinstance(raw.get("state_dict"), Mapping):
        raise SepnetError(
            f"'{path}' is not a sepnet checkpoint (no '{CHECKPOINT_KEY}' entry); "
            f"a plain state_dict is used with init.pretrained=<path> instead"
        )
    config = info.get("config") if isinstance(info, Mapping) else None
    if isinstance(config, Mapping):
        lacking = next((f"config.{node}" for node in ("model", "frontend") if node not in config), None)
    else:
        lacking = "config"
    if lacking:
        raise IncompleteEntry(
            f"checkpoint '{path}' has no {CHECKPOINT_KEY}.{lacking} entry: it was not written by sepnet {__version__}'s "
            f"sepnet.train or sepnet.merge; start from its weights with init.pretrained=<path> init.strict=false"
        )
    try:
        for name in ("lineage", "metrics"):
            if not isinstance(info.get(name, {}), Mapping):
                raise RefusedConfig(name, f"is {shown(info[name])}, not a mapping")
            _check_data(info.get(name, {}), name)
        _check_data(config, "")
        check(FRONT_END, config["frontend"], "frontend")
        check(MODEL, config["model"], "model")
    except RefusedConfig as exc:
        raise refused(path, str(exc), info) from None
    return dict(info)


def _names(items: list[str]) -> str:
    more = f", +{len(items) - SHOWN_TENSORS} more" if len(items) > SHOWN_TENSORS else ""
    return f" ({', '.join(items[:SHOWN_TENSORS])}{more})" if items else ""


def fit_state(separator: Separator, state: Mapping, path: Path) -> None:
    """Load ``state`` into ``separator``, all tensors present and of the right shape; else one line saying which."""
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise refused(path, f"state_dict entry {shown(not_tensors[0])} is {shown(state[not_tensors[0]])}, not a tensor")
    own = separator.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [str(k) for k in state if k not in own]
    mismatched = [f"{k} {list(v.shape)} vs {list(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise SepnetError(
            f"checkpoint '{path}' does not fit the {type(separator.model).__name__} its config describes: "
            f"{len(missing)} missing{_names(missing)}, {len(unexpected)} unexpected{_names(unexpected)}, "
            f"{len(mismatched)} shape-mismatched{_names(mismatched)} [file vs model]; the file was changed after "
            f"sepnet wrote it: use the file as sepnet.train or sepnet.merge wrote it, or take its matching tensors "
            f"with init.pretrained=<path> init.strict=false"
        )
    separator.load_state_dict(dict(state))


def rebuild(path: Path, raw: Any) -> tuple[Separator, dict]:
    """The separator a raw checkpoint describes, with its weights, in eval mode; and its checked sepnet entry."""
    info = sepnet_entry(path, raw)
    config = info["config"]
    try:
        separator = Separator(build(FRONT_END, config["frontend"], "frontend"), build(MODEL, config["model"], "model"))
    except RefusedConfig as exc:
        raise refused(path, str(exc), info) from None
    fit_state(separator, separator_state(raw["state_dict"]), path)
    return separator.eval(), info


def build_separator(config: Any) -> Separator:
    """A fresh (untrained) separator from a run config's ``frontend`` and ``model`` nodes (the user's YAML).

    Built through :mod:`sepnet.registry` like a checkpoint is, so whatever trains
    is guaranteed to load back.
    """
    from omegaconf import DictConfig, OmegaConf

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node

    try:
        front_end: nn.Module = build(FRONT_END, plain(config["frontend"]), "frontend")
        model: nn.Module = build(MODEL, plain(config["model"]), "model")
    except RefusedConfig as exc:
        raise SepnetError(
            f"{exc}; fix it in the config or on the command line (a new model class registers itself with "
            f"sepnet.registry.register_model)"
        ) from None
    return Separator(front_end, model)


def separator_state(state_dict: Mapping) -> dict:
    """The separator's part of a LightningModule state dict, with the prefix removed."""
    return {k[len(SEPARATOR_PREFIX) :]: v for k, v in state_dict.items() if isinstance(k, str) and k.startswith(SEPARATOR_PREFIX)}


def load(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the separator a checkpoint describes, with its weights, on the CPU, in eval mode."""
    path = Path(path).expanduser()
    separator, info = rebuild(path, read_checkpoint(path))
    return LoadedCheckpoint(
        path, separator, StoredConfig(info["config"]), dict(info.get("lineage", {})), dict(info.get("metrics", {}))
    )


def write_checkpoint(raw: dict, path: str | Path) -> Path:
    """Save a checkpoint dict atomically (:func:`sepnet.atomic.save_torch`): a crash never leaves half a file."""
    path = Path(path).expanduser()
    return save_torch(raw, path, fix="choose another output path", label=f"checkpoint '{path}'")
