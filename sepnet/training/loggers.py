"""What a run shows on dashboards: the wandb logger sepnet configures, and validation media.

``logger=wandb`` (``conf/logger/wandb.yaml``) builds :class:`WandbLogger`:
project ``sepnet``, run name and group from ``run_name`` (an experiment's name),
tags from ``tags``, the resolved config in the run (``sepnet.train`` logs it),
files under the run dir (``<run dir>/wandb/``). Without an API key
(``WANDB_API_KEY`` or a ``wandb login`` entry in ``~/.netrc``) it runs offline,
never prompting; ``wandb sync <run dir>/wandb/offline-run-*`` uploads later.
``sepnet.train`` finishes the wandb run at the end of each job, so every job of
a multirun is its own wandb run.

:class:`ValidationMedia` logs, each validation, a few examples' audio (mixture
and estimated stems) and spectrogram images to the wandb and TensorBoard loggers.
"""

from __future__ import annotations

import logging
import netrc
import os

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from sepnet.evaluation.pictures import spectrogram_rgb

log = logging.getLogger(__name__)


def wandb_credentials_available() -> bool:
    """True when wandb could log in without asking: ``WANDB_API_KEY`` set or a netrc entry for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(LightningWandbLogger):
    """Lightning's wandb logger, offline unless credentials exist, finished explicitly by the run.

    Args:
        offline: True/False forces the mode; None (default) is offline without
            credentials (or when ``WANDB_MODE=offline``).
        **kwargs: as :class:`lightning.pytorch.loggers.WandbLogger` (project, name,
            group, tags, save_dir, ... are passed on to ``wandb.init``).
    """

    def __init__(self, offline: bool | None = None, **kwargs):
        if offline is None:
            offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_credentials_available()
        if offline:
            log.info("wandb runs offline (no API key): sync later with `wandb sync <run dir>/wandb/offline-run-*`")
        kwargs.setdefault("tags", None)
        kwargs["tags"] = list(kwargs["tags"]) if kwargs["tags"] else None
        super().__init__(offline=offline, **kwargs)

    def finish(self, exit_code: int = 0) -> None:
        """End this wandb run (flushes its files); the next job of a sweep starts a new one."""
        if self._experiment is not None:
            self._experiment.finish(exit_code=exit_code)
            self._experiment = None


def finish_loggers(loggers: list, exit_code: int = 0) -> None:
    """Finish the loggers that hold an external run (wandb)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.finish(exit_code)


class ValidationMedia(L.Callback):
    """Logs audio and spectrograms of the first ``examples`` validation chunks, every ``every_n_epochs``.

    For each example: the mixture and each estimated stem as audio (channel mean),
    and one image stacking the spectrograms of mixture and estimates (:func:`sepnet.evaluation.pictures.spectrogram_rgb`).

    Args:
        examples: how many chunks of the first validation batch.
        every_n_epochs: log on epochs divisible by this.
    """

    def __init__(self, examples: int = 2, every_n_epochs: int = 1):
        self.examples = examples
        self.every_n_epochs = every_n_epochs

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, (LightningWandbLogger, TensorBoardLogger))]
        if not loggers:
            return
        separator = pl_module.separator
        mixture = batch["mixture"][: self.examples]  # (n, channels, samples)
        estimates = separator(mixture)  # (n, stems, channels, samples)
        rate = separator.front_end.sample_rate
        names = ["mixture", *separator.target_stems]
        step = trainer.global_step
        for i in range(mixture.shape[0]):
            waves = [mixture[i].mean(0), *estimates[i].mean(1)]  # each (samples,)
            waves = [w.float().cpu().numpy() for w in waves]
            panels = [mixture[i], *estimates[i]]  # each (channels, samples)
            image = spectrogram_rgb([(n, w.float().cpu().numpy()) for n, w in zip(names, panels)], rate)
            caption = " / ".join(names) + " (top to bottom)"
            for logger in loggers:
                if isinstance(logger, LightningWandbLogger):
                    logger.log_audio(f"val/audio_{i}", waves, step=step, sample_rate=[rate] * len(waves), caption=names)
                    logger.log_image(f"val/spectrogram_{i}", [image], step=step, caption=[caption])
                else:
                    for name, wave in zip(names, waves):
                        logger.experiment.add_audio(f"val/audio_{i}/{name}", wave[None], step, sample_rate=rate)
                    logger.experiment.add_image(f"val/spectrogram_{i}", image, step, dataformats="HWC")
