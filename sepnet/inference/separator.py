"""Waveform-to-waveform separation: front end -> model -> masks -> post-processing -> iSTFT.

The same :class:`Separator` runs in training, validation, ``evaluate`` and ``separate``,
for every model: it asks the model's contract (:mod:`sepnet.models.contract`) what to
feed it (``input_kind``), what comes back (``mask_kind``, ``auxiliary_heads``) and
whether its recurrent stage batches across chunks (``batches_recurrent_stage``). The
inference knobs (:class:`InferenceSettings`: mask_scale, threshold, clip, Wiener
iterations, precision) are identity by default, so training never sees them, and
``evaluate``/``separate`` pass the ``conf/inference`` values in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sepnet import STEMS
from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.dsp.masking import masked_spectra, scale_masks
from sepnet.dsp.wiener import wiener
from sepnet.models.contract import INPUT_KINDS, MASK_KINDS, SeparationModel

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

    Waveforms in and out are at the model's sample rate, ``front_end.sample_rate`` (the
    checkpoint's, e.g. 22050 Hz): nothing here resamples, and audio at another rate is
    separated wrongly without a word. :func:`sepnet.load` (:mod:`sepnet.api`) takes audio at
    any rate and resamples it in and out.

    Args:
        front_end: STFT settings and normalisation statistics.
        model: a :class:`~sepnet.models.contract.SeparationModel`; its input is what
            ``front_end.represent`` gives for ``model.input_kind``.
        inference: mask post-processing; the default changes nothing (training, validation).

    Raises:
        TypeError: ``model`` is not a SeparationModel.
        ValueError: ``model`` was built for other front-end sizes.
    """

    def __init__(self, front_end: SpectralFrontEnd, model: SeparationModel, inference: InferenceSettings | None = None):
        super().__init__()
        if not isinstance(model, SeparationModel):
            raise TypeError(f"{type(model).__name__} is not a sepnet.models.SeparationModel")
        if model.mask_kind not in MASK_KINDS or model.input_kind not in INPUT_KINDS:
            raise ValueError(f"{type(model).__name__} declares input {model.input_kind!r} and masks {model.mask_kind!r}; "
                             f"sepnet knows inputs {', '.join(INPUT_KINDS)} and masks {', '.join(MASK_KINDS)}")
        wrong = {k: v for k, v in model.front_end_requirements().items() if getattr(front_end, k, v) != v}
        if wrong:
            raise ValueError(
                f"{type(model).__name__} was built for the front end's "
                + ", ".join(f"{k}={v} (the front end has {getattr(front_end, k)})" for k, v in wrong.items())
            )
        self.front_end = front_end
        self.model = model
        self.inference = inference or InferenceSettings()

    @property
    def target_stems(self) -> list[str]:
        return list(self.model.target_stems)

    def postprocess(self, masks: torch.Tensor) -> torch.Tensor:
        """Apply mask_scale, clip and threshold to real or complex masks (:mod:`sepnet.dsp.masking`): on their
        magnitude, phase kept. Real masks (batch, stems, channels, bins, frames) stay in [0, 1] with clip."""
        settings = self.inference
        return scale_masks(masks, settings.mask_scale, settings.mask_clip, settings.threshold)

    def _model_arithmetic(self, device_type: str):
        """The context the model runs in: bf16 autocast for ``precision="bf16"``, else nothing (a training
        autocast, if any, stays in force)."""
        if self.inference.precision == "bf16":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def analyse(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, samples) -> (the model's input for its ``input_kind``, mixture STFT (B, C, F, frames))."""
        return self.front_end(mixture, self.model.input_kind)

    def raw_outputs(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(B, C, samples) -> (masks (B, S, C, F, frames), mixture STFT, ``{head: output}`` of ``auxiliary_heads``).

        The model's masks before :meth:`postprocess`: what training and validation score, so
        the inference knobs never reach the loss.
        """
        model_input, mixture_spec = self.analyse(mixture)
        with self._model_arithmetic(model_input.device.type):
            if self.model.auxiliary_heads:
                masks, heads = self.model.forward_with_heads(model_input)
            else:
                masks, heads = self.model(model_input), {}
        if self.inference.precision == "bf16":
            masks, heads = masks.float(), {name: value.float() for name, value in heads.items()}
        return masks, mixture_spec, heads

    def raw_masks(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`raw_outputs` without the heads: (masks (B, S, C, F, frames), mixture STFT (B, C, F, frames))."""
        masks, mixture_spec, _ = self.raw_outputs(mixture)
        return masks, mixture_spec

    def apply_masks(self, masks: torch.Tensor, mixture_spec: torch.Tensor, length: int) -> torch.Tensor:
        """Masks (B, S, C, F, frames[, 2]) x mixture STFT (B, C, F, frames) -> stems (B, S, C, length).

        Real masks keep the mixture's phase; complex masks (``mask_kind="complex"``) change it.
        """
        return self.front_end.istft(masked_spectra(masks, mixture_spec), length)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) mixture -> (batch, stems, channels, samples) estimates.

        In training mode the batch goes through as one; in eval mode through
        :meth:`iter_separated`, the inference path (same estimates, bounded memory).
        """
        if not self.training:
            return torch.stack(self.separate_chunks(list(mixture)))
        length = mixture.shape[-1]
        mixture = self._pad_short(mixture)
        masks, mixture_spec = self.raw_masks(mixture)
        return self._estimates(masks, mixture_spec, mixture.shape[-1])[..., :length]

    def separate_chunks(self, chunks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Equal-length ``(channels, samples)`` chunks -> their ``(stems, channels, samples)`` estimates."""
        return list(self.iter_separated(chunks))

    def iter_separated(self, chunks: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The inference path for every model: each chunk's ``(stems, channels, samples)`` estimates, in turn.

        What :class:`~sepnet.inference.overlap_add.OverlapAdd` runs. The STFT, the model's
        full-resolution stages, masking and iSTFT see one chunk at a time (tensors of about
        30 MB for 10 s), so memory follows one chunk whatever the batch. Only a model that
        declares ``batches_recurrent_stage`` (every CRNN) has a stage that sees all chunks at
        once (``recurrent_sequence``), where batching pays: a BiLSTM's per-frame matmuls are
        (batch x hidden), and one sequence leaves the cores idle. A model without one gains
        nothing from a batch (a band-split model's sequences are already bands x chunk).
        """
        length = chunks[0].shape[-1]
        padded = [self._pad_short(chunk[None]) for chunk in chunks]  # (1, channels, samples') each
        device = chunks[0].device.type
        if not self.model.batches_recurrent_stage:
            for chunk in padded:
                masks, spec = self.raw_masks(chunk)
                yield self._estimates(masks.float(), spec, chunk.shape[-1])[0, ..., :length]
            return
        fronts = [self.analyse(chunk) for chunk in padded]  # (model input, STFT) each
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
        spec = wiener(masked_spectra(masks, mixture_spec), mixture_spec, iterations, residual=residual)
        return self.front_end.istft(spec, samples)
