"""What every mask model shares: the input it takes, and the activation from its logits to masks.

    input (B, C, F, T) -> ... -> logits (B, stems [+ residual], C, F, T) -> masks (B, stems, C, F, T) in [0, 1]

``sigmoid`` gives every stem its own mask: together they may take more than the
whole mixture from a time-frequency bin (vocals 0.9 and other 0.8), or leave part
of it unused. ``softmax`` divides every bin between the stems (masks sum to 1;
with ``residual`` an extra output, dropped from the result, takes what no target
stem claims, so they sum to <= 1: needed where the targets do not cover the
mixture, e.g. vocals only); ``normalised`` divides sigmoids by their sum where it
exceeds 1. Sharing is the mixture consistency Open-Unmix's Wiener filter and
Demucs's and band-split models' outputs have.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MASK_ACTIVATIONS = ("sigmoid", "softmax", "normalised")
STEM_NAME_CHARS = 64
"""Longest stem name: a stem names the file its estimate is written to (``<stem>.wav``)."""
STEM_NAME_FORBIDDEN = '/\\:*?"<>|'
"""Characters a stem name may not hold: path separators, and what Windows refuses in a file name."""


def check_stem_names(target_stems: Sequence[str]) -> None:
    """``ValueError`` unless every stem name is distinct (ignoring case) and a safe file name.

    A stem names the file ``separate`` writes its estimate to and a column of ``evaluate``'s
    tables, so it must be one harmless path component: not empty, at most
    :data:`STEM_NAME_CHARS` characters, printable, none of :data:`STEM_NAME_FORBIDDEN`, not starting with
    ``.`` (no hidden files, no ``..``) and no surrounding spaces. Two names that differ
    only in case would be one file on macOS and Windows.
    """
    seen: dict[str, str] = {}
    for name in target_stems:
        safe = (
            isinstance(name, str) and 0 < len(name) <= STEM_NAME_CHARS and name.isprintable()
            and not any(c in STEM_NAME_FORBIDDEN for c in name) and not name.startswith(".") and name == name.strip()
        )
        if not safe:
            raise ValueError(
                f"target_stems holds {name!r}, which is not a safe file name (1-{STEM_NAME_CHARS} printable "
                f"characters, none of {STEM_NAME_FORBIDDEN}, not starting with '.'): name stems like vocals or drums"
            )
        if name.casefold() in seen:
            twice = f"{name!r} twice" if name == seen[name.casefold()] else f"{seen[name.casefold()]!r} and {name!r} (one file on macOS and Windows)"
            raise ValueError(f"target_stems {list(target_stems)} names {twice}; name each stem once")
        seen[name.casefold()] = name


def mask_outputs(target_stems: Sequence[str], mask_activation: str, residual: bool) -> int:
    """How many mask outputs a model with these settings needs: its targets, plus one for the residual.

    Raises ``ValueError`` for no target stems, a name :func:`check_stem_names` refuses, an
    activation sepnet does not have, or a residual/softmax combination that cannot work.
    """
    if not target_stems:
        raise ValueError("target_stems is empty: name at least one stem")
    check_stem_names(target_stems)
    if mask_activation not in MASK_ACTIVATIONS:
        raise ValueError(f"mask_activation must be one of {', '.join(MASK_ACTIVATIONS)}, got '{mask_activation}'")
    if residual and mask_activation != "softmax":
        raise ValueError("residual: true needs mask_activation: softmax (the other masks may leave a rest already)")
    if mask_activation == "softmax" and len(target_stems) == 1 and not residual:
        raise ValueError("a softmax over one target stem is always 1: set residual: true")
    return len(target_stems) + int(residual)  # the residual's logits are dropped by activate_masks


def activate_masks(logits: torch.Tensor, mask_activation: str, n_targets: int) -> torch.Tensor:
    """Logits (B, n_targets [+ 1 residual], C, F, T) -> masks (B, n_targets, C, F, T) in [0, 1]."""
    if mask_activation == "softmax":
        # In float32: under bf16 autocast the sum over stems would drift from 1.
        return torch.softmax(logits.float(), dim=1)[:, :n_targets]
    masks = torch.sigmoid(logits)
    if mask_activation == "normalised":
        masks = masks / masks.sum(dim=1, keepdim=True).clamp(min=1.0)
    return masks


def check_mask_bound(bound: float | None) -> None:
    """A model's ``mask_bound``: None (unbounded) or a positive number; one line otherwise."""
    if bound is not None and not bound > 0:
        raise ValueError(f"mask_bound must be a positive number or null (unbounded), got {bound}")


def soft_bound_complex(masks: torch.Tensor, bound: float) -> torch.Tensor:
    """Complex masks (..., 2) -> the same phases with magnitudes ``r`` soft-limited to ``bound * tanh(r / bound)``.

    Below ``bound`` and smooth: a mask of magnitude 0.5 under a bound of 2 keeps 99.5% of it, one of 100
    becomes 2. In float32 (under bf16 autocast the tanh near saturation would round), with a tiny floor
    under the magnitude so a zero mask has a gradient.
    """
    check_mask_bound(bound)
    masks = masks.float()
    magnitude = masks.square().sum(dim=-1, keepdim=True).add(1e-12).sqrt()
    return masks * (bound * torch.tanh(magnitude / bound) / magnitude)
