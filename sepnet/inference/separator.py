"""Waveform-to-waveform separation: front end -> mask model -> post-processing -> iSTFT.

The same :class:`Separator` runs in training, validation, ``evaluate`` and
``separate``; the inference knobs (:class:`InferenceSettings`: mask_scale,
threshold, clip, Wiener iterations) are identity by default, so training never
sees them, and ``evaluate``/``separate`` pass the ``conf/inference`` values in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sepnet import STEMS
from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.dsp.wiener import wiener

PRECISIONS = ("fp32", "bf16")
"""Arithmetic of the mask model's forward pass at inference (``separate.precision``)."""


@dataclass(frozen=True)
class InferenceSettings:
    """How masks are post-processed before use (``conf/inference/default.yaml``).

    Args:
        mask_scale: masks are multiplied by this before use (1.0: unchanged).
        threshold: mask values below this are set to 0 (0.0: unchanged).
        mask_clip: clip scaled masks to [0, 1] (True by default, so a scale > 1
            sharpens masks without amplifying the mixture).
        wiener_iters: multichannel Wiener EM iterations after masking (0: none);
            see :mod:`sepnet.dsp.wiener`.
        precision: ``"fp32"`` runs the mask model as it is; ``"bf16"`` runs its forward
            pass under bf16 autocast (separating, 1.6x faster on CPUs with AVX512-BF16), while
            the front end's STFT, mask application, Wiener and iSTFT stay float32.
    """

    mask_scale: float = 1.0
    threshold: float = 0.0
    mask_clip: bool = True
    wiener_iters: int = 0
    precision: str = "fp32"


class Separator(nn.Module):
    """Separates mixtures into the model's target stems.

    Args:
        front_end: STFT settings and normalisation statistics.
        model: maps (batch, channels, bins, frames) input to masks (batch, stems, channels, bins, frames).
        inference: mask post-processing; the default changes nothing (training, validation).
    """

    def __init__(self, front_end: SpectralFrontEnd, model: nn.Module, inference: InferenceSettings | None = None):
        super().__init__()
        self.front_end = front_end
        self.model = model
        self.inference = inference or InferenceSettings()

    @property
    def target_stems(self) -> list[str]:
        return list(self.model.target_stems)

    @property
    def runs_chunkwise(self) -> bool:
        """Whether the model runs chunk by chunk around one batched recurrent pass (a CRNN in eval mode)."""
        return not self.training and hasattr(self.model, "recurrent_sequence")

    def postprocess(self, masks: torch.Tensor) -> torch.Tensor:
        """Apply mask_scale, clip and threshold to (batch, stems, channels, bins, frames) masks."""
        settings = self.inference
        if settings.mask_scale != 1.0:
            masks = masks * settings.mask_scale
            if settings.mask_clip:
                masks = masks.clamp(0.0, 1.0)
        if settings.threshold > 0.0:
            masks = masks.masked_fill(masks < settings.threshold, 0.0)
        return masks

    def _model_arithmetic(self, device_type: str):
        """The context the mask model runs in: bf16 autocast for ``precision="bf16"``, else nothing."""
        if self.inference.precision == "bf16":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def raw_masks(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, samples) mixture -> (masks (B, S, C, F, frames), mixture STFT (B, C, F, frames)).

        The model's masks before :meth:`postprocess`: what training and validation
        score, so the inference knobs never reach the loss.
        """
        model_input, mixture_spec = self.front_end(mixture)
        if self.inference.precision == "bf16":
            with self._model_arithmetic(model_input.device.type):
                return self.model(model_input).float(), mixture_spec
        return self.model(model_input), mixture_spec  # under a training autocast, in its dtype

    def raw_masks_multitask(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`raw_masks`, plus the rhythm head's beat logits (B, frames); needs ``model.forward_multitask``."""
        model_input, mixture_spec = self.front_end(mixture)
        masks, beat_logits = self.model.forward_multitask(model_input)
        return masks, mixture_spec, beat_logits

    def apply_masks(self, masks: torch.Tensor, mixture_spec: torch.Tensor, length: int) -> torch.Tensor:
        """Masks (B, S, C, F, frames) x mixture STFT (B, C, F, frames), mixture phase -> stems (B, S, C, length)."""
        return self.front_end.istft(masks.float() * mixture_spec[:, None], length)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) mixture -> (batch, stems, channels, samples) estimates.

        In eval mode a model with a recurrent stage (every CRNN) goes through
        :meth:`separate_chunks`: the same estimates, computed chunk by chunk around one
        batched BiLSTM pass.
        """
        if self.runs_chunkwise:
            return torch.stack(self.separate_chunks(list(mixture)))
        length = mixture.shape[-1]
        mixture = self._pad_short(mixture)
        masks, mixture_spec = self.raw_masks(mixture)
        return self._estimates(masks, mixture_spec, mixture.shape[-1])[..., :length]

    def separate_chunks(self, chunks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Equal-length ``(channels, samples)`` chunks -> their ``(stems, channels, samples)`` estimates."""
        return list(self.iter_separated(chunks))

    def iter_separated(self, chunks: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """:meth:`separate_chunks`, yielding each chunk's estimates as soon as they are computed.

        What :class:`~sepnet.inference.overlap_add.OverlapAdd` runs. For a CRNN in eval mode the
        STFT, encoder, decoder, masking and iSTFT see one chunk at a time (tensors of about
        30 MB for 10 s) and only the recurrent stage sees them all at once
        (``CRNN.recurrent_sequence``), where batching pays: memory follows one chunk, the
        BiLSTM's speed the batch. Other models run :meth:`forward` on the stacked chunks.
        """
        if not self.runs_chunkwise:
            yield from self.forward(torch.stack(list(chunks)))
            return
        length = chunks[0].shape[-1]
        padded = [self._pad_short(chunk[None]) for chunk in chunks]  # (1, channels, samples') each
        fronts = [self.front_end(chunk) for chunk in padded]  # (model input, STFT) each
        device = chunks[0].device.type
        with self._model_arithmetic(device):
            sequence = self.model.recurrent_sequence([model_input for model_input, _ in fronts])
        for (model_input, spec), rows in zip(fronts, sequence.split(1)):
            with self._model_arithmetic(device):
                masks = self.model.masks_from_sequence(model_input, rows)
            yield self._estimates(masks.float(), spec, padded[0].shape[-1])[0, ..., :length]

    def _pad_short(self, mixture: torch.Tensor) -> torch.Tensor:
        """(..., samples) zero-padded to what the centred STFT needs (it reflects n_fft/2 samples at each end)."""
        shortfall = self.front_end.n_fft // 2 + 1 - mixture.shape[-1]
        return torch.nn.functional.pad(mixture, (0, shortfall)) if shortfall > 0 else mixture

    def _estimates(self, masks: torch.Tensor, mixture_spec: torch.Tensor, samples: int) -> torch.Tensor:
        """Raw masks (B, S, C, F, frames) -> post-processed, optionally Wiener-filtered waveforms (B, S, C, samples)."""
        masks = self.postprocess(masks)
        iterations = self.inference.wiener_iters
        if iterations <= 0:
            return self.apply_masks(masks, mixture_spec, samples)
        # Models that leave stems out get the residual as an extra Wiener source.
        residual = not set(STEMS) <= set(self.target_stems)
        spec = wiener(masks.float() * mixture_spec[:, None], mixture_spec, iterations, residual=residual)
        return self.front_end.istft(spec, samples)
