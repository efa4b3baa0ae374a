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

import contextlib
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepnet import __version__
from sepnet.atomic import save_torch
from sepnet.checkpoints import declared
from sepnet.errors import SepnetError
from sepnet.inference.separator import Separator
from sepnet.registry import FRONT_END, MODEL, SHOWN_CHARS, RefusedConfig, build, check, shown

CHECKPOINT_KEY = "sepnet"
"""Where a checkpoint keeps what makes it self-describing (config, lineage, metrics, version)."""
SEPARATOR_PREFIX = "separator."
SHOWN_TENSORS = 4
"""Tensor names listed per kind in a one-line message."""
FRONT_END_STD = "front_end.bin_std"
"""The front end's per-bin normalisation divisor, in a separator state dict."""
TENSOR_BUDGET_SLACK = 16
"""Registrations a model may make beyond twice the file's tensors (non-persistent buffers, replaced ones)."""
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
        separator: front end + model with the checkpoint's weights, in eval mode; it takes waveforms
            at ``separator.front_end.sample_rate`` only (:func:`sepnet.load` resamples any rate).
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
        too_much = declared.shortfall(path)  # before torch.load allocates what the pickle declares
    except Exception as exc:  # noqa: BLE001 - any failure to walk a hostile file's pickle is an unreadable file
        raise SepnetError(
            f"checkpoint '{path}' cannot be read ({' '.join(str(exc).split())[:SHOWN_CHARS]}); it may be truncated: "
            f"use another checkpoint"
        ) from None
    if too_much:
        raise SepnetError(
            f"checkpoint '{path}' was refused before reading its tensors: {too_much}; it was cut short or forged: "
            f"use another checkpoint"
        )
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


NEVER_CODE = "sepnet builds only its own classes from a checkpoint and never runs code from one"
CANNOT_HOLD = "its config describes a model sepnet cannot build with the tensors the file holds"


def refused(path: Path, problem: str, info: Mapping | None = None, why: str = NEVER_CODE) -> SepnetError:
    """The one line for a checkpoint whose content sepnet will not use: names the file, the problem and ``why``."""
    version = info.get("version") if isinstance(info, Mapping) else None
    if version not in (None, __version__):  # a newer sepnet may know classes this one does not
        return SepnetError(
            f"checkpoint '{path}' was refused: {problem}; it was written by sepnet {shown(version)} and this is "
            f"sepnet {__version__}: load it with the version that wrote it"
        )
    return SepnetError(
        f"checkpoint '{path}' was refused: {problem}; {why}: use a checkpoint written by sepnet.train or sepnet.merge"
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


def check_values(state: Mapping, path: Path) -> None:
    """Every entry of a separator ``state`` is a tensor, every floating one finite, and ``front_end.bin_std`` > 0.

    A NaN weight or statistic separates every file into NaN without a word, and a zero
    ``bin_std`` divides by zero; such a file is refused in one line naming it and the tensor.
    Cost: one pass over the file's tensors (milliseconds for sepnet's models).
    """
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise refused(path, f"state_dict entry {shown(name)} is {shown(value)}, not a tensor")
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise SepnetError(
                f"checkpoint '{path}' holds NaN or inf in tensor {shown(name)} ({bad} of {value.numel()} values): "
                f"a run that diverged or a merge with non-finite weights wrote it; use an earlier checkpoint of the run"
            )
    std = state.get(FRONT_END_STD)
    if isinstance(std, torch.Tensor) and std.numel() and not bool((std > 0).all()):
        raise SepnetError(
            f"checkpoint '{path}' holds {FRONT_END_STD} <= 0 (smallest {float(std.min()):g}): its input normalisation "
            f"would divide by zero; use a checkpoint written by sepnet.train or sepnet.merge"
        )


def check_fit(shapes: Mapping[str, torch.Size], state: Mapping, path: Path, model_name: str) -> None:
    """One line unless ``state``'s tensors have exactly the names and shapes in ``shapes`` (a separator's own)."""
    missing = [k for k in shapes if k not in state]
    unexpected = [str(k) for k in state if k not in shapes]
    mismatched = [f"{k} {list(v.shape)} vs {list(shapes[k])}" for k, v in state.items() if k in shapes and v.shape != shapes[k]]
    if missing or unexpected or mismatched:
        raise SepnetError(
            f"checkpoint '{path}' does not fit the {model_name} its config describes: "
            f"{len(missing)} missing{_names(missing)}, {len(unexpected)} unexpected{_names(unexpected)}, "
            f"{len(mismatched)} shape-mismatched{_names(mismatched)} [file vs model]; the file was changed after "
            f"sepnet wrote it: use the file as sepnet.train or sepnet.merge wrote it, or take its matching tensors "
            f"with init.pretrained=<path> init.strict=false"
        )


def fit_state(separator: Separator, state: Mapping, path: Path) -> None:
    """Load ``state`` (checked by :func:`check_values`) into ``separator``, all tensors present and of the right shape;
    else one line saying which."""
    check_fit({k: v.shape for k, v in separator.state_dict().items()}, state, path, type(separator.model).__name__)
    separator.load_state_dict(dict(state))


@contextlib.contextmanager
def tensor_budget(limit: int, prefix: str) -> Iterator[None]:
    """Stop any module construction inside the block once it registers more than ``limit`` parameters and buffers.

    Raises :class:`RefusedConfig` (for ``prefix``) from the constructor: a config asking for
    10,000 layers is refused after ``limit`` registrations, not after building them all
    (minutes even on the ``meta`` device).
    """
    count = 0

    def count_one(module: nn.Module, name: str, value: Any) -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise RefusedConfig(prefix, f"builds more than {limit} tensors, far more than the file holds")

    handles = [
        nn.modules.module.register_module_parameter_registration_hook(count_one),
        nn.modules.module.register_module_buffer_registration_hook(count_one),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_before_building(path: Path, config: Mapping, front_end: nn.Module, state: Mapping) -> None:
    """Compare the model a config describes with the file's tensors without allocating it; else one line.

    The model's ``n_bins`` is compared with the front end's, then the model is built on the
    ``meta`` device (shapes, no memory) under a :func:`tensor_budget` of about twice the
    file's tensors: a file declaring a hidden size of 10^7, 10^4 layers or 10^7 bands is
    refused in milliseconds, before anything is allocated for it.
    """
    model_bins = config["model"].get("n_bins")
    if model_bins is not None and model_bins != front_end.n_bins:
        raise RefusedConfig("model.n_bins", f"is {shown(model_bins)} but frontend.n_bins is {front_end.n_bins}; they must agree")
    with torch.device("meta"), tensor_budget(2 * len(state) + TENSOR_BUDGET_SLACK, "model"):
        model = build(MODEL, config["model"], "model")
    shapes = {f"model.{k}": v.shape for k, v in model.state_dict().items()}
    shapes.update({f"front_end.{k}": v.shape for k, v in front_end.state_dict().items()})
    check_fit(shapes, state, path, type(model).__name__)


def rebuild(path: Path, raw: Any) -> tuple[Separator, dict]:
    """The separator a raw checkpoint describes, with its weights, in eval mode; and its checked sepnet entry.

    Nothing is allocated for the model before the file's tensors are known to be finite
    (:func:`check_values`) and to be exactly the model's (:func:`check_before_building`).
    """
    info = sepnet_entry(path, raw)
    config = info["config"]
    state = separator_state(raw["state_dict"])
    check_values(state, path)
    try:
        front_end = build(FRONT_END, config["frontend"], "frontend")  # bounded settings: a few kB
        check_before_building(path, config, front_end, state)
        separator = Separator(front_end, build(MODEL, config["model"], "model"))
    except RefusedConfig as exc:
        raise refused(path, str(exc), info, CANNOT_HOLD) from None
    fit_state(separator, state, path)
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
