"""``python -m sepnet.merge ckpts=[a,b,...] weights=[...]``: weight-average checkpoints of one model.

    python -m sepnet.merge ckpts=[a.ckpt,b.ckpt]                                  # uniform mean
    python -m sepnet.merge ckpts=[final_tune.ckpt,ultimate.ckpt] weights=[0.8,0.2] name=crnn_large_merged_0.8_0.2

The rules (which checkpoints merge, what is averaged, what is copied) are
:mod:`sepnet.checkpoints.merging`'s. By default the output is
``outputs/<name>/<time>/checkpoints/best.ckpt``, so a later run can start from it
with ``init.from_run=<name>`` like from any run.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sepnet.app.run_dir import ensure_writable
from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, write_checkpoint
from sepnet.checkpoints.merging import merge_checkpoints
from sepnet.errors import SepnetError, exit_on_user_error

__all__ = ["merge", "merge_checkpoints"]


@exit_on_user_error
def merge(cfg: DictConfig) -> Path:
    """Merge ``cfg.ckpts`` with ``cfg.weights`` into ``cfg.out``; returns the path written."""
    out = Path(str(cfg.out)).expanduser()
    if out.is_dir():
        raise SepnetError(f"out={cfg.out} is a folder; name the checkpoint file to write, e.g. out={out / 'merged.ckpt'}")
    for i, ckpt in enumerate(cfg.ckpts if OmegaConf.is_list(cfg.ckpts) else []):
        if _same_file(out, Path(str(ckpt)).expanduser()):
            raise SepnetError(
                f"out={cfg.out} is ckpts[{i}], one of the checkpoints being merged; writing it would replace that "
                f"parent and its training state: choose another out=<path of a .ckpt>"
            )
    ensure_writable(out.parent, key="out", value="<path of a .ckpt>")  # before minutes of loading and averaging
    weights = OmegaConf.to_container(cfg.weights) if OmegaConf.is_list(cfg.weights) else cfg.weights  # checked there
    raw = merge_checkpoints(list(cfg.ckpts), weights)
    if cfg.get("name"):
        raw[CHECKPOINT_KEY]["config"]["run_name"] = cfg.name
    out = write_checkpoint(raw, cfg.out)
    shares = ", ".join(f"{w:.3g} x {p}" for w, p in zip(raw[CHECKPOINT_KEY]["lineage"]["merge"]["weights"], cfg.ckpts))
    print(f"merged {shares}", flush=True)
    print(f"checkpoint: {out}", flush=True)
    return out


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (a link or another spelling of the path included)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


main = hydra_entry_point("merge", merge)


if __name__ == "__main__":
    run_entry_point(main)
