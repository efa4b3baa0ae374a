"""``python -m sepnet.import_weights weights=<file> model=bs_roformer|mel_roformer``: another implementation's
weights as a sepnet checkpoint.

    python -m sepnet.import_weights weights=bs_roformer.ckpt model=bs_roformer model.dim=384 model.depth=12 \\
        data.target_stems=[vocals] name=bs_roformer_vocals
    python -m sepnet.evaluate ckpt=outputs/bs_roformer_vocals/<time>/checkpoints/best.ckpt

The rules (which files, how tensors are renamed and checked) are :mod:`sepnet.checkpoints.importing`'s.
The written checkpoint evaluates, separates, merges and fine-tunes (``init.pretrained=<path>``)
like one sepnet trained.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sepnet.app.run_dir import ensure_writable
from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.checkpoints.checkpoint import write_checkpoint
from sepnet.checkpoints.importing import import_weights as imported_checkpoint
from sepnet.errors import SepnetError, exit_on_user_error

__all__ = ["import_weights"]

STORED = ("run_name", "data", "frontend", "model")
"""The nodes of this command's config a checkpoint keeps (what rebuilds and describes the model)."""


@exit_on_user_error
def import_weights(cfg: DictConfig) -> Path:
    """Turn ``cfg.weights`` into a sepnet checkpoint at ``cfg.out`` for ``cfg.model`` and ``cfg.frontend``."""
    out = Path(str(cfg.out)).expanduser()
    if out.is_dir():
        raise SepnetError(f"out={cfg.out} is a folder; name the checkpoint file to write, e.g. out={out / 'imported.ckpt'}")
    ensure_writable(out.parent, key="out", value="<path of a .ckpt>")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["run_name"] = cfg.name
    config = {key: resolved[key] for key in STORED if key in resolved}
    raw = imported_checkpoint(str(cfg.weights), config)
    out = write_checkpoint(raw, out)
    print(f"imported {cfg.weights} as {config['model']['_target_'].rsplit('.', 1)[-1]}", flush=True)
    print(f"checkpoint: {out}", flush=True)
    return out


main = hydra_entry_point("import_weights", import_weights)


if __name__ == "__main__":
    run_entry_point(main)
