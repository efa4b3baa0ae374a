"""The multi-task LightningModule: masks as :class:`SeparationModule`, plus the rhythm head's beat activations.

Chosen by ``model=unet_crnn_mtl`` (its YAML overrides the ``module`` group), not
by a branch: training and validation of the masks are inherited unchanged.

    loss = mask loss (the ``loss`` group) + rhythm_weight x BCE(beat logits, beat target)

The beat target comes from ``batch["beats"]`` (padded sample positions, see
:mod:`sepnet.data.beats`: the dataset's ``beats.txt`` or librosa's beat tracker)
rendered on the front end's frames; validation also logs ``val/beat_f1``:
``mir_eval.beat.f_measure`` (±``beat_tolerance`` s, no 5 s trimming: see
:func:`~sepnet.data.beats.beat_f_measure`) of the peak-picked activations against
each chunk's beats, averaged over the chunks. ``summary.json`` reports it for the
best checkpoint and ``evaluate`` scores the head on whole tracks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from sepnet.data.beats import activation_beat_times, beat_activation_target, beat_f_measure, positions_to_times
from sepnet.errors import SepnetError
from sepnet.models.contract import BEATS
from sepnet.training.module import SeparationModule


class MultiTaskSeparationModule(SeparationModule):
    """Trains a mask model with a rhythm head (a model whose ``auxiliary_heads`` has ``beats``).

    Args:
        rhythm_weight: weight of the beat loss added to the mask loss.
        beat_pos_weight: weight of the beat frames in the beat BCE (beats are sparse:
            about one frame in twenty at 120 BPM).
        beat_threshold: activation a peak needs to count as a beat in ``val/beat_f1``.
        beat_tolerance: seconds an estimated beat may sit from a reference beat.
        (others as :class:`SeparationModule`)
    """

    def __init__(
        self,
        *args,
        rhythm_weight: float = 0.2,
        beat_pos_weight: float = 4.0,
        beat_threshold: float = 0.5,
        beat_tolerance: float = 0.07,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if BEATS not in self.separator.model.auxiliary_heads:
            raise SepnetError(
                f"module=multitask needs a model with a rhythm head, but model is "
                f"{type(self.separator.model).__name__}; use model=unet_crnn_mtl or module=separation"
            )
        self.rhythm_weight = rhythm_weight
        self.beat_pos_weight = beat_pos_weight
        self.beat_threshold = beat_threshold
        self.beat_tolerance = beat_tolerance

    def forward_batch(self, batch: dict) -> dict[str, Any]:
        """Adds ``beat_logits`` (batch, frames) and ``beat_target`` (batch, frames) to the mask outputs."""
        if "beats" not in batch:
            raise SepnetError("the multi-task model needs beats in every batch; set data.beats=true")
        front_end = self.separator.front_end
        masks, mixture_spec, heads = self.separator.raw_outputs(batch["mixture"])
        beat_logits = heads[BEATS]
        target = beat_activation_target(batch["beats"], front_end.hop_length, beat_logits.shape[-1])
        return {
            "masks": masks,
            "mixture_spec": mixture_spec,
            "targets": self.spectral_targets(batch, mixture_spec),
            "beat_logits": beat_logits,
            "beat_target": target,
        }

    def loss_terms(self, outputs: dict[str, Any], batch: dict) -> dict[str, torch.Tensor]:
        mask_loss = self.loss(outputs["masks"], outputs["targets"])
        logits = outputs["beat_logits"]
        # In float32 with autocast off, like the mask losses: the same value under mixed precision.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            rhythm_loss = F.binary_cross_entropy_with_logits(
                logits, outputs["beat_target"].float(), pos_weight=logits.new_tensor(self.beat_pos_weight)
            )
        return {"loss": mask_loss + self.rhythm_weight * rhythm_loss, "mask_loss": mask_loss, "rhythm_loss": rhythm_loss}

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        outputs = super().validation_step(batch, batch_idx)
        front_end = self.separator.front_end
        frame_rate = front_end.sample_rate / front_end.hop_length
        estimates = activation_beat_times(torch.sigmoid(outputs["beat_logits"]), frame_rate, self.beat_threshold)
        references = positions_to_times(batch["beats"], front_end.sample_rate)
        f1 = np.mean([beat_f_measure(r, e, self.beat_tolerance) for r, e in zip(references, estimates)])
        self.log("val/beat_f1", float(f1), batch_size=len(references), sync_dist=True)
        return outputs
