"""Another implementation's weights -> a sepnet checkpoint (``python -m sepnet.import_weights``).

The file (``.ckpt``, ``.pt``, ``.pth``) is read with ``torch.load(weights_only=True)``: tensors and
plain data only, never code. Its tensors are renamed by the model class's
:meth:`~sepnet.models.contract.SeparationModel.state_from_reference` (the RoFormers: the
``bs-roformer`` reference's names), the model is built from the user's model settings
through :mod:`sepnet.registry`, exactly as a checkpoint is rebuilt, and the tensors must
fit it name for name and shape for shape. The result is an ordinary sepnet checkpoint:
evaluate, separate, merge and fine-tune (``init.pretrained=<path>``) read it like a trained one.
A complex-input model uses no front-end statistics; the front end's are left unfitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sepnet import __version__
from sepnet.checkpoints.checkpoint import (
    CHECKPOINT_KEY,
    SEPARATOR_PREFIX,
    build_separator,
    check_values,
    read_checkpoint,
)
from sepnet.checkpoints.merging import lightning_version
from sepnet.errors import SepnetError

SHOWN = 3
"""Tensor names listed in a one-line refusal."""


def reference_state(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded file: the file itself, or its ``state_dict`` / ``model`` entry; a
    ``model.`` prefix on every name (a Lightning module's) is removed."""
    for key in ("state_dict", "model"):
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise SepnetError(f"'{path}' holds no state dict of tensors; pass the reference model's weights (torch.save(model.state_dict()))")
    state = {str(k): v for k, v in raw.items()}
    if all(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items()}
    return state


def import_weights(weights: str | Path, config: Mapping) -> dict:
    """The raw sepnet checkpoint holding ``weights`` (a reference model's state dict file) for the model and
    front end ``config`` describes (``{"model": ..., "frontend": ..., ...}``, resolved plain data).

    Raises:
        SepnetError: one line naming the file and the first tensor or setting that does not fit.
    """
    path = Path(weights).expanduser()
    state = reference_state(read_checkpoint(path), path)
    separator = build_separator(config)
    model = separator.model
    name = type(model).__name__
    try:
        mapped = model.state_from_reference(state)
    except NotImplementedError:
        raise SepnetError(f"model {name} imports no other implementation's weights; choose model=bs_roformer or mel_roformer") from None
    except ValueError as exc:
        raise SepnetError(f"'{path}' cannot be imported: {exc}") from None
    own = model.state_dict()
    missing = [k for k in own if k not in mapped]
    unexpected = [k for k in mapped if k not in own]
    wrong = [f"{k} {tuple(mapped[k].shape)} (the model's {tuple(own[k].shape)})" for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:SHOWN])}{', ...' if len(items) > SHOWN else ''}"
                 for label, items in (("missing", missing), ("not in the model", unexpected), ("other shapes", wrong)) if items]
        hint = " (to_gates: model.attention_gates; to_value_residual_mix: model.value_residual)" if any(
            "to_gates" in k or "value_residual" in k for k in missing + unexpected) else ""
        raise SepnetError(
            f"'{path}' does not fit {name} as configured: {'; '.join(parts)}; set the model's sizes to the weights' "
            f"(model.dim, model.depth, model.heads, model.dim_head, bands, stems{hint})"
        )
    model.load_state_dict(mapped, strict=True)
    full = {f"{SEPARATOR_PREFIX}{k}": v.detach().clone() for k, v in separator.state_dict().items()}
    check_values({k[len(SEPARATOR_PREFIX):]: v for k, v in full.items()}, path)
    return {
        "state_dict": full,
        "pytorch-lightning_version": lightning_version(),
        CHECKPOINT_KEY: {
            "config": dict(config),
            "lineage": {"parents": [], "imported_from": str(path.resolve())},
            "metrics": {},
            "epoch": None,
            "version": __version__,
        },
    }
