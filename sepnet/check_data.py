"""``python -m sepnet.check_data data=... [+plot=true]``: look at a dataset before training on it.

    python -m sepnet.check_data                                   # the embedded dataset
    python -m sepnet.check_data data=folder data.train_dir=data/train data.val_dir=data/val
    python -m sepnet.check_data data=musdb data.source.root=~/musdb18hq augment=remix_silence +plot=true

Composes the same config as ``sepnet.train`` (so the same overrides check the
same data) and prints one row per track: duration, the files' sample rate(s)
and channel count(s), peak / RMS (dBFS) and share of silent frames per stem,
clipped samples, and the residual between the mixture file and the sum of the
stems (dB relative to the mixture). Then a summary, and every warning and error
in full. Exits 1 when a track has errors (warnings are fine), 2 on a config
mistake.

Decoding goes through the same cache as training, so a check also warms it.
``+plot=true`` writes ``batch.png`` into the run dir: one augmented training
batch as the model sees it (normalised mixture spectrogram and target stems).
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

from omegaconf import DictConfig

from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.data.inspection import run_check
from sepnet.errors import exit_on_user_error

__all__ = ["check", "main", "run_check"]


@exit_on_user_error
def check(cfg: DictConfig) -> int:
    return run_check(cfg)


main = hydra_entry_point("check_data", check, exit_with_status=True)


if __name__ == "__main__":
    run_entry_point(main)
