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

import sys

import hydra
from omegaconf import DictConfig

from sepnet.app.configs import CONFIG_DIR, prepare_command_line
from sepnet.data.inspection import run_check
from sepnet.errors import exit_on_user_error

__all__ = ["check", "main", "run_check"]


@exit_on_user_error
def check(cfg: DictConfig) -> int:
    return run_check(cfg)


@hydra.main(config_path=CONFIG_DIR, config_name="check_data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = check(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    prepare_command_line("check_data")
    main()
