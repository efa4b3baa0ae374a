"""``python -m sepnet.train [overrides]``: train a separator as the composed config says.

    python -m sepnet.train                                  # standard CRNN, embedded data
    python -m sepnet.train model=large optim.lr=1e-4
    python -m sepnet.train -m optim.lr=1e-3,1e-4            # a sweep, one run dir per job
    python -m sepnet.train model=unet_crnn_mtl loss=focal optim=adamw sched=cosine
    python -m sepnet.train model=large init.pretrained=parent.ckpt freeze=encoder_lstm optim.lr=1e-5

Writes into the run dir (``outputs/<run_name>/<time>/``): the resolved config,
``checkpoints/best.ckpt`` (highest ``val/sdr``) and ``last.ckpt``, ``metrics.csv``
and ``summary.json``; prints the best ``val/sdr`` beside the uniform-mask
baseline. ``main`` returns the best ``val/sdr`` so Hydra sweepers can optimise it.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

import logging
import sys

from omegaconf import DictConfig

from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.errors import exit_on_user_error
from sepnet.training.faults import TrainingInterrupted
from sepnet.training.run import build_loggers, build_module, build_trainer, run_training

__all__ = ["build_loggers", "build_module", "build_trainer", "main", "run_training", "train"]

log = logging.getLogger(__name__)


@exit_on_user_error
def train(cfg: DictConfig) -> float | None:
    """Train the run ``cfg`` describes; returns its best ``val/sdr`` (None if validation never ran).

    A run stopped by SIGTERM/Ctrl-C saves ``last.ckpt``, prints how to resume and
    exits with ``128 + signal`` (143 for SIGTERM, 130 for Ctrl-C). Under DDP that is
    rank 0; the other ranks stopped with it and exit quietly with status 0 (a
    non-zero status of a rank Lightning launched makes it kill every process).
    """
    try:
        return run_training(cfg)[1].get("best_val_sdr")
    except TrainingInterrupted as stopped:
        if stopped.rank != 0:
            log.info("rank %d: %s (rank 0 saved the checkpoint)", stopped.rank, stopped)
            return None
        run_dir = stopped.checkpoint.parent.parent if stopped.checkpoint is not None else cfg.paths.output_dir
        print(f"sepnet: {stopped}; continue with: python -m sepnet.train resume={run_dir}", file=sys.stderr, flush=True)
        sys.exit(128 + stopped.signum)


main = hydra_entry_point("train", train)


if __name__ == "__main__":
    run_entry_point(main)
