"""``python -m sepnet.evaluate ckpt=<path> [data=...] [split=test] [eval.<knob>=...]``: score a checkpoint.

    python -m sepnet.evaluate ckpt=outputs/crnn/.../checkpoints/best.ckpt
    python -m sepnet.evaluate ckpt=... data=stem_folder data.source.root=~/musdb18hq split=valid
    python -m sepnet.evaluate ckpt=... eval.gain=auto                 # median g* learned on valid
    python -m sepnet.evaluate ckpt=... -m eval.mask_scale=0.5,1.0,2.0  # a sweep: sweep.csv/.md at its root

The checkpoint supplies the model and front end; the data config reads the
tracks of ``split`` at the checkpoint's sample rate (so scores are at that rate).
Every track is separated whole (:mod:`sepnet.inference.overlap_add`) and scored
(:mod:`sepnet.evaluation.scoring`): BSSEval v4 SDR per track (median over 1 s frames), its
median and mean over tracks, the MDX new SDR, and gain tracking. The run dir gets
``results.json``, ``per_track.csv``, ``summary.md`` (also printed),
``report.html`` (the listening report, by default for sets of at most 10 tracks)
and, with ``eval.full_metrics=true``, museval's own per-track JSON files with
SDR/ISR/SIR/SAR under ``museval/<subset>/``. ``main`` returns the mean over stems
of the median SDR, so sweepers can optimise it.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

from omegaconf import DictConfig

from sepnet.app.allocator import keep_freed_memory
from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.errors import exit_on_user_error
from sepnet.evaluation.evaluator import bind_checkpoint, output_gains, run_evaluation, summary_markdown

__all__ = ["bind_checkpoint", "evaluate", "main", "output_gains", "run_evaluation", "summary_markdown"]


@exit_on_user_error
def evaluate(cfg: DictConfig) -> float:
    """Evaluate as ``cfg`` says; returns the mean over stems of the median SDR (NaN if nothing scored)."""
    keep_freed_memory()
    return run_evaluation(cfg)["sdr"]


main = hydra_entry_point("evaluate", evaluate)


if __name__ == "__main__":
    run_entry_point(main)
