"""``python -m sepnet.export ckpt=... format=onnx|torchscript [out=...]``: the mask model in a portable file.

    python -m sepnet.export ckpt=outputs/.../best.ckpt format=onnx     # best.onnx + best.json beside it
    python -m sepnet.export ckpt=outputs/.../best.ckpt format=torchscript out=model.pt

What is exported and how to run it (the STFT and iSTFT outside) is
:mod:`sepnet.inference.export`'s; ONNX needs the ``export`` extra (``pip install 'sepnet[export]'``).
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

import importlib.util
from pathlib import Path

from omegaconf import DictConfig

from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.errors import SepnetError, exit_on_user_error

__all__ = ["export_checkpoint"]


@exit_on_user_error
def export_checkpoint(cfg: DictConfig) -> Path:
    """Export ``cfg.ckpt``'s mask model as ``cfg.format`` to ``cfg.out``; returns the model file written."""
    from sepnet.checkpoints.checkpoint import load
    from sepnet.inference.export import FORMATS, export

    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise SepnetError(f"format={fmt} is not an export format; use format=onnx or format=torchscript")
    if fmt == "onnx" and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        raise SepnetError("format=onnx needs the onnx and onnxruntime packages: pip install 'sepnet[export]'")
    ckpt = Path(str(cfg.ckpt)).expanduser()
    out = Path(str(cfg.out)).expanduser() if cfg.get("out") else ckpt.with_suffix(FORMATS[fmt])
    if out.is_dir():
        raise SepnetError(f"out={cfg.out} is a folder; name the file to write, e.g. out={out / ('model' + FORMATS[fmt])}")
    if out.suffix == ".json" or out.suffix == ".ckpt":
        raise SepnetError(f"out={cfg.out} would be overwritten by the export's own files; use out=<name>{FORMATS[fmt]}")
    loaded = load(ckpt)
    written, description = export(loaded.separator, fmt, out, checkpoint=ckpt)
    print(f"{fmt}: {written}", flush=True)
    print(f"front end: {description}", flush=True)
    return written


main = hydra_entry_point("export", export_checkpoint)


if __name__ == "__main__":
    run_entry_point(main)
