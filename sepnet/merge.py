"""``python -m sepnet.merge ckpts=[a,b,...] weights=[...]``: weight-average checkpoints of one model.

    python -m sepnet.merge ckpts=[a.ckpt,b.ckpt]                                  # uniform mean
    python -m sepnet.merge ckpts=[final_tune.ckpt,ultimate.ckpt] weights=[0.8,0.2] name=crnn_large_merged_0.8_0.2

The research log's ``merged[key] = sd1[key]*0.8 + sd2[key]*0.2``, made safe:

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

By default the output is ``outputs/<name>/<time>/checkpoints/best.ckpt``, so a
later run can start from it with ``init.from_run=<name>`` like from any run.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from sepnet import __version__
from sepnet.app.run_dir import ensure_writable
from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, SEPARATOR_PREFIX, read_checkpoint, rebuild, write_checkpoint
from sepnet.errors import SepnetError, exit_on_user_error

log = logging.getLogger(__name__)

FRONT_END_SETTINGS = ("sample_rate", "n_fft", "hop_length", "n_bins")
NORMALISATION_STATISTICS = (SEPARATOR_PREFIX + "front_end.bin_mean", SEPARATOR_PREFIX + "front_end.bin_std")


def first_difference(a: Any, b: Any, key: str) -> str | None:
    """The first place two nested config values differ, as ``"key: a vs b"``; None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{key}.{k} is {'missing' if k not in a else repr(a[k])} vs {'missing' if k not in b else repr(b[k])}"
            found = first_difference(a[k], b[k], f"{key}.{k}")
            if found:
                return found
        return None
    return None if a == b else f"{key} is {a!r} vs {b!r}"


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
        difference = first_difference(first_cfg.get("model"), cfg.get("model"), "model")
        if difference is None:
            a, b = first_cfg.get("frontend") or {}, cfg.get("frontend") or {}
            difference = next(
                (f"frontend.{k} is {a.get(k)!r} vs {b.get(k)!r}" for k in FRONT_END_SETTINGS if a.get(k) != b.get(k)),
                None,
            )
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


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights summing to 1 (uniform when None); says so when it had to rescale them."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise SepnetError(f"weights has {len(weights)} values for {count} ckpts; give one weight per checkpoint")
    if any(w < 0 for w in weights):
        raise SepnetError(f"weights={weights} has a negative value; merge weights must be >= 0")
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
    paths = [Path(p).expanduser() for p in ckpts]
    raws = [read_checkpoint(p) for p in paths]
    for path, raw in zip(paths, raws):
        if not isinstance(raw, dict) or CHECKPOINT_KEY not in raw or "state_dict" not in raw:
            raise SepnetError(f"'{path}' is not a sepnet checkpoint (no '{CHECKPOINT_KEY}' entry); merge .ckpt files written by sepnet")
        rebuild(path, raw)  # refuses (one line) a file naming anything but sepnet's classes, or whose tensors do not fit
    check_compatible(paths, raws)
    requested = None if weights is None else [float(w) for w in weights]
    weights = normalised_weights(requested, len(paths))

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
        "pytorch-lightning_version": L.__version__,
        CHECKPOINT_KEY: {"config": infos[0]["config"], "lineage": lineage, "metrics": {}, "epoch": None, "version": __version__},
    }


@exit_on_user_error
def merge(cfg: DictConfig) -> Path:
    """Merge ``cfg.ckpts`` with ``cfg.weights`` into ``cfg.out``; returns the path written."""
    out = Path(str(cfg.out)).expanduser()
    if out.is_dir():
        raise SepnetError(f"out={cfg.out} is a folder; name the checkpoint file to write, e.g. out={out / 'merged.ckpt'}")
    ensure_writable(out.parent, key="out", value="<path of a .ckpt>")  # before minutes of loading and averaging
    weights = OmegaConf.to_container(cfg.weights) if cfg.weights is not None else None
    raw = merge_checkpoints(list(cfg.ckpts), weights)
    if cfg.get("name"):
        raw[CHECKPOINT_KEY]["config"]["run_name"] = cfg.name
    out = write_checkpoint(raw, cfg.out)
    shares = ", ".join(f"{w:.3g} x {p}" for w, p in zip(raw[CHECKPOINT_KEY]["lineage"]["merge"]["weights"], cfg.ckpts))
    print(f"merged {shares}", flush=True)
    print(f"checkpoint: {out}", flush=True)
    return out


main = hydra_entry_point("merge", merge)


if __name__ == "__main__":
    run_entry_point(main)
