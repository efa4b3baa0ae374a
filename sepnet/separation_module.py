"""The LightningModule that trains any mask model on the shared data module.

Training compares masks with ideal ratio masks (or whatever the configured loss
needs); validation separates each chunk through the same :class:`Separator`
that ``evaluate`` and ``separate`` use and logs the whole-chunk SDR per stem.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import lightning as L
import torch
from torch import nn

from sepnet.errors import SepnetError
from sepnet.losses import SpectralTargets
from sepnet.metrics import chunk_sdr
from sepnet.separator import Separator

CHECKPOINT_KEY = "sepnet"
"""Where a checkpoint keeps what makes it self-describing (config, lineage, metrics)."""


class SeparationModule(L.LightningModule):
    """Trains ``separator.model`` to estimate masks for its target stems.

    Args:
        separator: front end + mask model (the object that is saved and reloaded).
        loss: ``loss(masks, SpectralTargets) -> scalar``.
        optimizer: ``optimizer(params) -> torch.optim.Optimizer`` (a Hydra ``_partial_``).
        scheduler: ``scheduler(optimizer)`` or None; ``scheduler_monitor``/``scheduler_interval``
            are passed to Lightning with it.
        data_stems: the stems of a batch's ``stems`` tensor, in order.
        run_config: the resolved run config, stored in every checkpoint.
        lineage: parents of this run (checkpoint paths, merge weights), stored too.
    """

    def __init__(
        self,
        separator: Separator,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        data_stems: Sequence[str],
        scheduler: Callable[..., Any] | None = None,
        scheduler_monitor: str = "val/sdr",
        scheduler_interval: str = "epoch",
        run_config: dict | None = None,
        lineage: dict | None = None,
    ):
        super().__init__()
        self.separator = separator
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_monitor = scheduler_monitor
        self.scheduler_interval = scheduler_interval
        self.data_stems = list(data_stems)
        unknown = [s for s in separator.target_stems if s not in self.data_stems]
        if unknown:
            raise SepnetError(
                f"model.target_stems has {', '.join(unknown)}, which data.stems ({', '.join(self.data_stems)}) "
                f"does not read; add it to data.stems or drop it from model.target_stems"
            )
        self.target_index = [self.data_stems.index(s) for s in separator.target_stems]
        self.run_config = run_config or {}
        self.lineage = lineage or {"parents": []}

    @property
    def target_stems(self) -> list[str]:
        return self.separator.target_stems

    # -- the front end's statistics are fitted once, before the first step --
    def on_fit_start(self) -> None:
        front_end = self.separator.front_end
        if not bool(front_end.fitted):
            datamodule = self.trainer.datamodule
            front_end.fit_statistics(w.to(self.device) for w in datamodule.statistics_waveforms())

    # -- steps --
    def spectral_targets(self, batch: dict, mixture_spec: torch.Tensor) -> SpectralTargets:
        stem_specs = self.separator.front_end.stft(batch["stems"])
        return SpectralTargets.from_spectrograms(stem_specs, self.target_index, mixture_spec)

    def step_masks(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, SpectralTargets]:
        """Forward a batch: (masks (B, S, C, F, frames), mixture STFT, loss targets)."""
        model_input, mixture_spec = self.separator.front_end(batch["mixture"])
        masks = self.separator.model(model_input)
        return masks, mixture_spec, self.spectral_targets(batch, mixture_spec)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        masks, _, targets = self.step_masks(batch)
        loss = self.loss(masks, targets)
        self.log("train/loss", loss, prog_bar=True, batch_size=masks.shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        masks, mixture_spec, targets = self.step_masks(batch)
        batch_size = masks.shape[0]
        self.log("val/loss", self.loss(masks, targets), batch_size=batch_size, sync_dist=True)
        estimates = self.separator.apply_masks(masks, mixture_spec, batch["mixture"].shape[-1])
        sdr = chunk_sdr(batch["stems"][:, self.target_index], estimates)  # (batch, stems)
        self.log("val/sdr", sdr.mean(), prog_bar=True, batch_size=batch_size, sync_dist=True)
        for i, stem in enumerate(self.target_stems):
            self.log(f"val/sdr_{stem}", sdr[:, i].mean(), batch_size=batch_size, sync_dist=True)

    # -- optimisation --
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.scheduler_factory(optimizer),
            "monitor": self.scheduler_monitor,
            "interval": self.scheduler_interval,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- self-describing checkpoints --
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        metrics = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1
        }
        checkpoint[CHECKPOINT_KEY] = {
            "config": self.run_config,
            "lineage": self.lineage,
            "metrics": metrics,
            "epoch": self.current_epoch,
        }
