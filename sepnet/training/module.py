"""The LightningModule that trains any mask model on the shared data module.

Training compares masks with ideal ratio masks (or whatever the configured loss
needs); validation separates each chunk through the same :class:`Separator`
that ``evaluate`` and ``separate`` use and logs the whole-chunk SDR per stem.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from sepnet import __version__
from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, SEPARATOR_PREFIX
from sepnet.errors import SepnetError
from sepnet.evaluation.metrics import chunk_sdr
from sepnet.inference.separator import Separator
from sepnet.training.ema import WeightAverage
from sepnet.training.losses import SpectralTargets
from sepnet.training.schedules import Schedule

__all__ = ["CHECKPOINT_KEY", "EMA_KEY", "Freeze", "SeparationModule"]

EMA_KEY = "sepnet_ema"
"""Where a checkpoint of a run with ``module.ema_decay`` keeps the trained (not averaged) weights."""


@dataclass(frozen=True)
class Freeze:
    """A ``conf/freeze/`` node: ``modules``, the model's submodules that do not train (``freeze=encoder``)."""

    modules: Sequence[str] = ()


class SeparationModule(L.LightningModule):
    """Trains ``separator.model`` to estimate masks for its target stems.

    Args:
        separator: front end + mask model (the object that is saved and reloaded).
        loss: ``loss(masks, SpectralTargets) -> scalar``.
        optimizer: ``optimizer(params) -> torch.optim.Optimizer`` (a Hydra ``_partial_``).
        sched: the ``sched`` node (scheduler factory, monitor, interval); None: a constant rate.
        stems: ``data.stems``, the stems of a batch's ``stems`` tensor, in order.
        run_config: the resolved run config, stored in every checkpoint.
        lineage: parents of this run (checkpoint paths, merge weights), stored too.
        freeze: the ``freeze`` node; ``freeze.modules`` names submodules of the model to freeze
            (``encoder``, ``bottleneck.lstm``): their parameters get no gradient, stay out of the optimiser, and the
            submodules stay in eval mode (BatchNorm statistics and dropout frozen too).
        ema_decay: keep an exponential moving average of the model's weights with this decay per
            optimiser step (:mod:`sepnet.training.ema`); None: no average. Validation scores the
            average, and checkpoints hold it as their weights (what evaluate, separate, merge and
            init.pretrained load), with the trained weights kept aside for resuming.
    """

    def __init__(
        self,
        separator: Separator,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        stems: Sequence[str],
        sched: Schedule | None = None,
        run_config: dict | None = None,
        lineage: dict | None = None,
        freeze: Freeze | None = None,
        ema_decay: float | None = None,
    ):
        super().__init__()
        self.separator = separator
        self.loss = loss
        self.optimizer_factory = optimizer
        self.sched = sched or Schedule()
        self.data_stems = list(stems)
        unknown = [s for s in separator.target_stems if s not in self.data_stems]
        if unknown:
            raise SepnetError(
                f"model.target_stems has {', '.join(unknown)}, which data.stems ({', '.join(self.data_stems)}) "
                f"does not read; add it to data.stems or drop it from model.target_stems"
            )
        self.target_index = [self.data_stems.index(s) for s in separator.target_stems]
        # A loss declares whether it trains complex masks (sepnet.training.losses: takes_complex_masks).
        if separator.model.mask_kind == "complex" and not getattr(loss, "takes_complex_masks", False):
            raise SepnetError(
                f"{type(separator.model).__name__} gives complex masks but {type(loss).__name__} trains real masks; "
                "use loss=magnitude, spectrum, waveform or mrstft, or real masks (e.g. model.complex_masks=false)"
            )
        self.run_config = run_config or {}
        self.lineage = lineage or {"parents": []}
        self.frozen = [self._frozen_submodule(name) for name in (freeze or Freeze()).modules]
        for submodule in self.frozen:
            submodule.requires_grad_(False)
            submodule.eval()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise SepnetError(f"module.ema_decay is {ema_decay}; use a decay in (0, 1) such as 0.999, or null for no average")
        self.ema = WeightAverage(ema_decay) if ema_decay is not None else None
        self._ema_step = -1  # the global step the average last took in
        self._ema_swap = None  # the swap of the average's weights during validation

    def _frozen_submodule(self, name: str) -> nn.Module:
        try:
            return self.separator.model.get_submodule(name)
        except AttributeError:
            names = sorted(n for n, _ in self.separator.model.named_children())
            raise SepnetError(
                f"freeze.modules names '{name}', which {type(self.separator.model).__name__} does not have; "
                f"use submodules such as {', '.join(names)} (e.g. freeze=encoder)"
            ) from None

    def train(self, mode: bool = True) -> SeparationModule:
        """As ``nn.Module.train``, but frozen submodules always stay in eval mode."""
        super().train(mode)
        for submodule in self.frozen:
            submodule.eval()
        return self

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
        front_end, stems = self.separator.front_end, batch["stems"]
        stem_specs = front_end.stft(stems)
        length = stems.shape[-1]
        return SpectralTargets.from_spectrograms(
            stem_specs, self.target_index, mixture_spec, waveforms=stems, synthesise=lambda spec: front_end.istft(spec, length)
        )

    def step_masks(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, SpectralTargets]:
        """Forward a batch: (masks (B, S, C, F, frames), mixture STFT, loss targets)."""
        masks, mixture_spec = self.separator.raw_masks(batch["mixture"])
        return masks, mixture_spec, self.spectral_targets(batch, mixture_spec)

    def forward_batch(self, batch: dict) -> dict[str, Any]:
        """The model's outputs for a batch: ``masks``, ``mixture_spec``, ``targets`` (subclasses add more)."""
        masks, mixture_spec, targets = self.step_masks(batch)
        return {"masks": masks, "mixture_spec": mixture_spec, "targets": targets}

    def loss_terms(self, outputs: dict[str, Any], batch: dict) -> dict[str, torch.Tensor]:
        """Named scalar losses; ``"loss"`` is the one optimised (logged as ``train/loss``, ``val/loss``)."""
        return {"loss": self.loss(outputs["masks"], outputs["targets"])}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(self.forward_batch(batch), batch)
        batch_size = batch["mixture"].shape[0]
        # Not in the progress bar: Lightning turns progress-bar values into Python numbers after every
        # step, a host sync per step on a GPU (the bar shows train/loss_epoch instead).
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        return terms["loss"]

    def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
        # Once per optimiser step: with gradient accumulation a batch may end without one.
        if self.ema is not None and self.global_step != self._ema_step:
            self._ema_step = self.global_step
            self.ema.update(self.separator.model)

    # Validation scores the weight average; the trained weights come back before training goes on.
    def on_validation_epoch_start(self) -> None:
        if self.ema is not None:
            self._ema_swap = self.ema.swapped_in(self.separator.model)
            self._ema_swap.__enter__()

    def on_validation_epoch_end(self) -> None:
        swap = self._ema_swap
        if swap is not None:
            self._ema_swap = None
            swap.__exit__(None, None, None)

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        outputs = self.forward_batch(batch)
        masks, mixture_spec = outputs["masks"], outputs["mixture_spec"]
        batch_size = masks.shape[0]
        for name, value in self.loss_terms(outputs, batch).items():
            self.log(f"val/{name}", value, batch_size=batch_size, sync_dist=True)
        estimates = self.separator.apply_masks(masks, mixture_spec, batch["mixture"].shape[-1])
        sdr = chunk_sdr(batch["stems"][:, self.target_index], estimates)  # (batch, stems)
        self.log("val/sdr", sdr.mean(), prog_bar=True, batch_size=batch_size, sync_dist=True)
        for i, stem in enumerate(self.target_stems):
            self.log(f"val/sdr_{stem}", sdr[:, i].mean(), batch_size=batch_size, sync_dist=True)
        return outputs

    # -- optimisation --
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.sched.scheduler is None:
            return optimizer
        # A schedule over the whole run (e.g. warm-up + cosine) is told how long the run is.
        extra = {}
        if "total_steps" in inspect.signature(self.sched.scheduler).parameters:
            extra["total_steps"] = self.total_steps()
        scheduler = {
            "scheduler": self.sched.scheduler(optimizer, **extra),
            "monitor": self.sched.monitor,
            "interval": self.sched.interval,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def total_steps(self) -> int:
        """Optimiser steps in the whole run: the Trainer's estimate, or outside a Trainer (benchmarks,
        config checks) the run config's ``trainer.max_epochs`` x batches per epoch."""
        if self._trainer is not None:
            return int(self.trainer.estimated_stepping_batches)
        data, trainer = self.run_config.get("data", {}), self.run_config.get("trainer", {})
        batches = math.ceil(data.get("examples_per_epoch", 1) / data.get("batch_size", 1))
        return max(1, int(trainer.get("max_epochs") or 1) * batches)

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
            "version": __version__,
        }
        if self.ema is not None and self.ema.shadow:
            # The average becomes the checkpoint's weights; the trained ones are kept for resuming.
            state = checkpoint["state_dict"]
            prefix = f"{SEPARATOR_PREFIX}model."
            trained = {name: state[prefix + name] for name in self.ema.shadow}
            state.update({prefix + name: value.detach().clone() for name, value in self.ema.shadow.items()})
            checkpoint[EMA_KEY] = {"trained_weights": trained, "updates": self.ema.updates, "decay": self.ema.decay}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming a run with an average: train on from the trained weights, the average from the stored one."""
        stored = checkpoint.get(EMA_KEY)
        if stored is None or self.ema is None:
            return  # no average kept (or not wanted): the checkpoint's weights are the start
        state = checkpoint["state_dict"]
        prefix = f"{SEPARATOR_PREFIX}model."
        shadow = {name: state[prefix + name].clone() for name in stored["trained_weights"]}
        self.ema.load_state_dict({"updates": stored["updates"], "shadow": shadow})
        state.update({prefix + name: value for name, value in stored["trained_weights"].items()})
