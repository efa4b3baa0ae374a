"""Weight-averaging checkpoints of one model into a new sepnet checkpoint (``python -m sepnet.merge``).

``merged[key] = sum(w_i * state_i[key])``, with these rules:

- the checkpoints must share the model config, the front end's settings
  (sample_rate, n_fft, hop_length, n_bins) and every tensor's name and shape;
  otherwise the merge is refused with one line naming the first difference;
- weights must be non-negative; they are normalised to sum 1 (and it says so);
- floating-point tensors (weights, BatchNorm running statistics) are averaged;
  integer and boolean buffers (BatchNorm ``num_batches_tracked``, the front
  end's ``fitted`` flag) are taken from the first checkpoint;
- the front end's normalisation statistics (``bin_mean``, ``bin_std``) are the
  first checkpoint's unless all match: every parent's weights were trained on
  inputs normalised its own way, and averaging statistics would normalise like
  none of them;
- the output is a sepnet checkpoint (``sepnet.checkpoints.checkpoint.load``, ``init.pretrained``,
  evaluate and separate take it) whose lineage records the parents, the weights
  and the parents' own lineage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

from sepnet import __version__
from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, SEPARATOR_PREFIX, read_checkpoint, rebuild
from sepnet.checkpoints.compat import differences
from sepnet.errors import SepnetError
from sepnet.numbers import is_real

log = logging.getLogger(__name__)



def lightning_version() -> str | None:
    """The installed Lightning's version, which Lightning expects in a checkpoint, read without importing it."""
    try:
        return metadata.version("lightning")
    except metadata.PackageNotFoundError:
        return None

FRONT_END_SETTINGS = ("sample_rate", "n_fft", "hop_length", "n_bins")
NORMALISATION_STATISTICS = (SEPARATOR_PREFIX + "front_end.bin_mean", SEPARATOR_PREFIX + "front_end.bin_std")


def check_compatible(paths: Sequence[Path], raws: Sequence[dict]) -> None:
    """Raise :class:`SepnetError` naming the first difference between checkpoint 0 and any other.

    Checked in order: model config, front-end settings, tensor names, tensor shapes.
    """
    first_path, first = paths[0], raws[0]
    first_cfg = first[CHECKPOINT_KEY]["config"]
    first_state = first["state_dict"]
    for path, raw in zip(paths[1:], raws[1:]):
        cfg = raw[CHECKPOINT_KEY]["config"]
        pair = f"'{first_path}' vs '{path}'"
        found = differences(first_cfg, cfg, ("model", *(f"frontend.{k}" for k in FRONT_END_SETTINGS)))
        difference = f"{found[0].key} is {found[0].a!r} vs {found[0].b!r}" if found else None
        state = raw["state_dict"]
        if difference is None:
            only_first = [k for k in first_state if k not in state]
            only_other = [k for k in state if k not in first_state]
            if only_first or only_other:
                name = (only_first or only_other)[0]
                difference = f"tensor {name} is {'only in the first' if only_first else 'missing from the first'}"
        if difference is None:
            difference = next(
                (
                    f"tensor {k} has shape {list(v.shape)} vs {list(state[k].shape)}"
                    for k, v in first_state.items()
                    if v.shape != state[k].shape
                ),
                None,
            )
        if difference is not None:
            raise SepnetError(f"cannot merge {pair}: {difference}; merge checkpoints of one model and front end")


def check_weights(weights: Sequence, count: int) -> list[float]:
    """``weights`` as floats if there is one per checkpoint and each is a finite number >= 0; else one line."""
    if not isinstance(weights, (list, tuple)):
        raise SepnetError(f"weights={weights!r} is not a list; give one weight per checkpoint, e.g. weights=[0.8,0.2]")
    weights = list(weights)
    if len(weights) != count:
        raise SepnetError(f"weights has {len(weights)} values for {count} ckpts; give one weight per checkpoint")
    bad = [w for w in weights if not (is_real(w) and w >= 0)]
    if bad:
        what = "a negative value" if is_real(bad[0]) else "not a finite number"
        raise SepnetError(
            f"weights={weights} holds {bad[0]!r}, {what}; merge weights must be finite numbers >= 0, "
            f"e.g. weights=[0.8,0.2]"
        )
    return [float(w) for w in weights]


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights summing to 1 (uniform when None); says so when it had to rescale them."""
    if weights is None:
        return [1.0 / count] * count
    weights = check_weights(weights, count)
    total = sum(weights)
    if total <= 0:
        raise SepnetError(f"weights={weights} sum to 0; give at least one positive weight")
    if abs(total - 1.0) > 1e-9:
        scaled = [w / total for w in weights]
        print(
            f"weights {weights} sum to {total:g}: normalised to [{', '.join(f'{w:.6g}' for w in scaled)}]",
            flush=True,
        )
        return scaled
    return weights


def average_state(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> tuple[dict, list[str]]:
    """Element-wise weighted mean of floating tensors; the rest from ``states[0]``.

    Returns the merged state and the names of the tensors copied rather than averaged.
    """
    merged, copied = {}, []
    for key, first in states[0].items():
        if key in NORMALISATION_STATISTICS or not (first.is_floating_point() or first.is_complex()):
            merged[key] = first.clone()
            copied.append(key)
            continue
        total = sum(w * s[key].double() for w, s in zip(weights, states))
        merged[key] = total.to(first.dtype)
    return merged, copied


def merge_checkpoints(ckpts: Sequence[str | Path], weights: Sequence[float] | None = None) -> dict:
    """Merge sepnet checkpoints into one checkpoint dict (see the module docstring for the rules)."""
    if len(ckpts) < 2:
        raise SepnetError(f"ckpts has {len(ckpts)} checkpoint(s); give at least two: ckpts=[a.ckpt,b.ckpt]")
    requested = None if weights is None else check_weights(weights, len(ckpts))  # before reading any file
    weights = normalised_weights(requested, len(ckpts))
    paths = [Path(p).expanduser() for p in ckpts]
    raws = [read_checkpoint(p) for p in paths]
    for path, raw in zip(paths, raws):
        if not isinstance(raw, dict) or CHECKPOINT_KEY not in raw or "state_dict" not in raw:
            raise SepnetError(f"'{path}' is not a sepnet checkpoint (no '{CHECKPOINT_KEY}' entry); merge .ckpt files written by sepnet")
        rebuild(path, raw)  # refuses (one line) a file naming anything but sepnet's classes, or whose tensors do not fit
    check_compatible(paths, raws)

    states = [raw["state_dict"] for raw in raws]
    merged, copied = average_state(states, weights)
    statistics_match = all(
        torch.equal(states[0][k], s[k]) for s in states[1:] for k in NORMALISATION_STATISTICS if k in states[0]
    )
    if not statistics_match:
        log.warning("front-end normalisation statistics differ between the checkpoints: kept those of '%s'", paths[0])

    infos = [raw[CHECKPOINT_KEY] for raw in raws]
    lineage = {
        "parents": [str(p.resolve()) for p in paths],
        "merge": {
            "weights": weights,
            "requested_weights": requested,
            "copied_from_first": copied,
            "normalisation_statistics": "all parents match" if statistics_match else f"from {paths[0].resolve()}",
            "parent_metrics": [info.get("metrics", {}) for info in infos],
        },
        "parent_lineage": [info.get("lineage", {}) for info in infos],
    }
    return {
        "state_dict": merged,
        "pytorch-lightning_version": lightning_version(),
        CHECKPOINT_KEY: {"config": infos[0]["config"], "lineage": lineage, "metrics": {}, "epoch": None, "version": __version__},
    }
