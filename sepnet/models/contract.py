"""The model contract: what every separation model takes, returns and may offer.

A separation model is one class deriving from :class:`SeparationModel` in a module of
``sepnet/models/`` (or of the user's own package), registered where it is defined with
:func:`sepnet.registry.register_model`, plus one YAML file in ``conf/model/``. Nothing else
names it: the registry discovers ``sepnet.models``' modules, the Separator, the
LightningModules, ``evaluate`` and the rhythm evaluation ask the members below, and the
tests iterate the registry and ``conf/model/``.

What a model takes (``input_kind``), from :class:`sepnet.dsp.frontend.SpectralFrontEnd`::

    "log_magnitude"  (batch, audio_channels, n_bins, frames)       per-bin normalised log1p(|X|)
    "complex"        (batch, 2 * audio_channels, n_bins, frames)   the STFT, unnormalised:
                                                                   real parts, then imaginary parts

What it returns (``mask_kind``), applied by :class:`sepnet.inference.separator.Separator`
to the mixture's STFT (batch, audio_channels, n_bins, frames)::

    "real"     masks (batch, stems, audio_channels, n_bins, frames) in [0, 1], the mixture's phase kept
    "complex"  masks (batch, stems, audio_channels, n_bins, frames, 2): real and imaginary parts, bounded
               (|m| <= 1 for the band-split RNN's), applied as (re + j im) x X: phase-aware
               (:mod:`sepnet.dsp.masking`)

The front-end sizes it needs: ``n_bins`` (the bins kept by the front end) and
``audio_channels``; :meth:`SeparationModel.front_end_requirements` says so, and
checkpoints and training check the front end against it.

Optional capabilities, declared members with defaults (callers never probe with ``hasattr``):

- ``batches_recurrent_stage``: inference may run the model's recurrent stage over many
  chunks in one batch and everything else one chunk at a time
  (:meth:`SeparationModel.recurrent_sequence`, :meth:`SeparationModel.masks_from_sequence`);
  a model without it is run one chunk at a time, so separation memory follows one chunk.
- ``state_from_reference``: a classmethod mapping a reference implementation's state dict onto
  the model's names (the RoFormers: ``bs-roformer``'s), for ``python -m sepnet.import_weights``.
- ``auxiliary_heads``: names of extra per-frame outputs (``("beats",)`` for the rhythm head),
  returned by :meth:`SeparationModel.forward_with_heads` beside the masks. The training
  module that weights their losses (``module=multitask``) checks the model has them.

Sizes live in the YAML, not in Python defaults: ``conf/model/<name>.yaml`` sets every size,
and its ``_sizes_`` node gives the named smaller sizes (``tiny`` for tests and the smoke
budget) as ``model.<key>=<value>`` overrides, so no test or budget knows a model by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

INPUT_KINDS = ("log_magnitude", "complex")
"""What a model can take from the front end (see the module docstring)."""

MASK_KINDS = ("real", "complex")
"""What a model can return (see the module docstring)."""

BEATS = "beats"
"""The rhythm head's name among ``auxiliary_heads``: beat logits (batch, frames); ``module=multitask``
trains it and ``evaluate`` scores it."""


class SeparationModel(nn.Module):
    """Base class of every separation model: spectrogram in, masks for ``target_stems`` out.

    A subclass sets, in ``__init__``, ``self.target_stems`` (the stems it estimates, in output
    order), ``self.n_bins`` and ``self.audio_channels``, and implements :meth:`forward`; the
    class members below keep their defaults unless it offers more. ``input_kind`` and
    ``mask_kind`` may also be set per instance in ``__init__`` (a constructor option such as
    the band-split RNN's ``complex_masks``).
    """

    input_kind: ClassVar[str] = "log_magnitude"
    mask_kind: ClassVar[str] = "real"
    batches_recurrent_stage: ClassVar[bool] = False
    auxiliary_heads: ClassVar[tuple[str, ...]] = ()

    target_stems: list[str]
    n_bins: int
    audio_channels: int

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.input_kind not in INPUT_KINDS:
            raise TypeError(f"{cls.__name__}.input_kind is {cls.input_kind!r}; use one of {', '.join(INPUT_KINDS)}")
        if cls.mask_kind not in MASK_KINDS:
            raise TypeError(f"{cls.__name__}.mask_kind is {cls.mask_kind!r}; use one of {', '.join(MASK_KINDS)}")

    @property
    def input_channels(self) -> int:
        """Channels of the input tensor: ``audio_channels``, doubled for the complex STFT's two parts."""
        return self.audio_channels * (2 if self.input_kind == "complex" else 1)

    def front_end_requirements(self) -> dict[str, int]:
        """The front-end settings this model was built for (``{"n_bins": 512}``); the front end must match."""
        return {"n_bins": self.n_bins}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, input_channels, n_bins, frames) -> masks (batch, stems, audio_channels, n_bins, frames[, 2])."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def forward_with_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masks as :meth:`forward`, and ``{head: output}`` for every name in ``auxiliary_heads``.

        A rhythm head's output is beat logits (batch, frames). The default has no heads.
        """
        return self(x), {}

    @classmethod
    def state_from_reference(cls, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Another implementation's state dict of this architecture -> this class's tensor names
        (``python -m sepnet.import_weights``). The default knows none: ``NotImplementedError``;
        ``ValueError`` names what a known format holds that this class cannot.
        """
        raise NotImplementedError(f"{cls.__name__} imports no other implementation's weights")

    def recurrent_sequence(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inputs ``(b_i, C, F, T)`` with equal T -> the recurrent stage's output ``(sum b_i, T, features)``.

        Only for ``batches_recurrent_stage``: with :meth:`masks_from_sequence`, the same
        masks as :meth:`forward` on the concatenated inputs.
        """
        raise NotImplementedError(f"{type(self).__name__} does not batch a recurrent stage (batches_recurrent_stage)")

    def masks_from_sequence(self, x: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        """One input ``(b, C, F, T)`` and its rows ``(b, T, features)`` of :meth:`recurrent_sequence` -> masks."""
        raise NotImplementedError(f"{type(self).__name__} does not batch a recurrent stage (batches_recurrent_stage)")


def check_model_input(model: SeparationModel, x: torch.Tensor) -> torch.Tensor:
    """``x`` if it is (batch, input_channels, n_bins, frames); else ``ValueError`` naming the shape expected."""
    if x.ndim != 4 or x.shape[1] != model.input_channels or x.shape[2] != model.n_bins:
        raise ValueError(f"expected input (batch, {model.input_channels}, {model.n_bins}, frames), got {tuple(x.shape)}")
    return x
