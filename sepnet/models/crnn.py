"""The standard CRNN mask estimator.

    input  (batch, channels, bins, frames)   normalised log-magnitude
    Conv2D encoder: stride 2 along frequency only, so every frame survives
    -> flatten (channels x bins) per frame -> Linear -> BiLSTM -> Linear
    -> ConvTranspose2D decoder back to full frequency resolution
    -> masks (batch, stems, channels, bins, frames) in [0, 1]: a sigmoid per stem, or
       masks that share the mixture between the stems (``mask_activation``,
       :mod:`sepnet.models.masks`)

Time is never strided, so any frame count (odd ones too) passes through
unchanged; the bin count must be divisible by ``2 ** len(encoder_channels)``.
"""

from __future__ import annotations

import inspect
import itertools
import typing
from collections.abc import Callable, Sequence

import torch
from torch import nn

from sepnet.models.contract import SeparationModel, check_model_input
from sepnet.models.masks import activate_masks, mask_outputs
from sepnet.registry import register_model


class EncoderBlock(nn.Module):
    """Conv2d (3x3, stride 2 along frequency) -> BatchNorm -> ReLU: (B, Cin, F, T) -> (B, Cout, F/2, T)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=(2, 1), padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DecoderBlock(nn.Module):
    """ConvTranspose2d doubling frequency: (B, Cin, F, T) -> (B, Cout, 2F, T); BatchNorm+ReLU unless last."""

    def __init__(self, in_channels: int, out_channels: int, last: bool = False):
        super().__init__()
        # kernel 4 / stride 2 / padding 1 along frequency gives exactly 2F; 3/1/1 along time keeps T.
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=(4, 3), stride=(2, 1), padding=1)
        self.post = nn.Identity() if last else nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x))


class RecurrentBottleneck(nn.Module):
    """Per-frame BiLSTM over the encoder's flattened features.

    (B, C, F, T) -> Linear(C*F -> hidden) -> BiLSTM(hidden, layers) -> (B, T, 2*hidden) sequence,
    then Linear(2*hidden -> C*F) back to (B, C, F, T).
    """

    def __init__(self, channels: int, bins: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.channels, self.bins = channels, bins
        features = channels * bins
        self.project_in = nn.Sequential(nn.Linear(features, hidden_size), nn.LayerNorm(hidden_size), nn.ReLU())
        self.lstm = nn.LSTM(
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.project_out = nn.Sequential(nn.Linear(2 * hidden_size, features), nn.ReLU())

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) encoder features -> the BiLSTM's input (B, T, hidden)."""
        batch, channels, bins, frames = x.shape
        return self.project_in(x.permute(0, 3, 1, 2).reshape(batch, frames, channels * bins))

    def recur(self, projected: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) from :meth:`project` -> the BiLSTM's output sequence (B, T, 2*hidden)."""
        return self.lstm(projected)[0]

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) encoder features -> the BiLSTM's output sequence (B, T, 2*hidden)."""
        return self.recur(self.project(x))

    def features(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, T, 2*hidden) sequence -> (B, C, F, T) features for the decoder."""
        batch, frames, _ = sequence.shape
        return self.project_out(sequence).reshape(batch, frames, self.channels, self.bins).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, F, T) -> (features (B, C, F, T), lstm sequence (B, T, 2*hidden))."""
        seq = self.sequence(x)
        return self.features(seq), seq


@register_model
class CRNN(SeparationModel):
    """Conv2D encoder -> BiLSTM -> ConvTranspose2D decoder -> one mask per target stem.

    Args:
        target_stems: stems the model estimates masks for, e.g. ``[vocals]`` or all four.
        hidden_size: BiLSTM hidden units per direction.
        num_layers: BiLSTM layers.
        encoder_channels: channels of each encoder block; the decoder mirrors them.
        n_bins: frequency bins of the input (must divide by 2 ** len(encoder_channels)).
        audio_channels: waveform channels (2: stereo), used as the convolutions' input channels.
        dropout: between LSTM layers.
        mask_activation: ``sigmoid`` (one per stem, independent), ``softmax`` (across the
            stems: each bin divided between them) or ``normalised`` (sigmoids divided by
            their sum where it exceeds 1).
        residual: with ``softmax``, one more output takes what no target stem claims (the
            target masks then sum to <= 1); required for a softmax over a single target.

    The sizes have no default: they live in ``conf/model/*.yaml`` (where users look and
    override them), and every checkpoint stores all of them. ``mask_activation`` and
    ``residual`` default to what checkpoints written before they existed did (sigmoid,
    no residual), so those still rebuild unchanged.
    """

    skip_connections = False
    batches_recurrent_stage = True  # recurrent_sequence / masks_from_sequence: the BiLSTM sees many chunks at once

    def __init__(
        self,
        target_stems: Sequence[str],
        hidden_size: int,
        num_layers: int,
        encoder_channels: Sequence[int],
        n_bins: int,
        audio_channels: int,
        dropout: float,
        mask_activation: str = "sigmoid",
        residual: bool = False,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.target_stems = list(target_stems)
        # The residual's logits are one more stem's worth of outputs, dropped from the masks.
        n_outputs = mask_outputs(self.target_stems, mask_activation, residual) * audio_channels
        scale = 2 ** len(encoder_channels)
        if n_bins % scale:
            raise ValueError(f"n_bins={n_bins} must be divisible by 2**{len(encoder_channels)}={scale}")
        self.n_bins = n_bins
        self.audio_channels = audio_channels
        self.mask_activation = mask_activation
        self.residual = residual

        widths = [audio_channels, *encoder_channels]
        self.encoder = nn.ModuleList(EncoderBlock(a, b) for a, b in itertools.pairwise(widths))
        self.bottleneck = RecurrentBottleneck(encoder_channels[-1], n_bins // scale, hidden_size, num_layers, dropout)
        skip = 2 if self.skip_connections else 1
        # Mirror of the encoder: 64 -> 32 -> 16 -> stems*channels, each doubling frequency.
        decoder_out = [*reversed(widths[1:-1]), n_outputs]
        decoder_in = list(reversed(encoder_channels))
        self.decoder = nn.ModuleList(
            DecoderBlock(cin * skip, cout, last=i == len(decoder_out) - 1)
            for i, (cin, cout) in enumerate(zip(decoder_in, decoder_out))
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, F, T) -> (deepest features, every block's output for skips)."""
        # Channels-last activations take oneDNN's fast convolution kernels on CPU (ConvTranspose2d ~3x).
        x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        return x, skips

    def decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Deepest features (B, C', F', T) -> mask logits (B, stems*channels, F, T)."""
        x = x.contiguous(memory_format=torch.channels_last)
        for block, skip in zip(self.decoder, reversed(skips)):
            if self.skip_connections:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return x

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return check_model_input(self, x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, F, T) -> (masks (B, stems, C, F, T), LSTM sequence (B, T, 2*hidden))."""
        deepest, skips = self.encode(self._check_input(x))
        deepest, sequence = self.bottleneck(deepest)
        return self._masks(self.decode(deepest, skips), x), sequence

    def recurrent_sequence(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inputs ``(b_i, C, F, T)`` with equal T -> the BiLSTM's output sequence ``(sum b_i, T, 2*hidden)``.

        With :meth:`masks_from_sequence`, the same masks as :meth:`forward` on the
        concatenated inputs, computed for inference in another order: the encoder runs one
        input at a time and keeps only the BiLSTM's input ``(T, hidden)``, while the BiLSTM takes all
        of them as one batch. Its per-frame matmuls are ``(batch x hidden)``: one sequence
        leaves the cores idle (``model=large``, bf16, 2 cores: 0.26 s per 10 s chunk at batch
        4, 0.08 s at batch 16), whereas the full-resolution convolutions gain nothing from a
        batch and their activations are the largest tensors.
        """
        # Projected per input: only the (T, hidden) BiLSTM inputs are concatenated, not the wide features.
        projected = torch.cat([self.bottleneck.project(self.encode(self._check_input(x))[0]) for x in inputs])
        return self.bottleneck.recur(projected)

    def masks_from_sequence(self, x: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        """One input ``(b, C, F, T)`` and its rows ``(b, T, 2*hidden)`` of :meth:`recurrent_sequence` -> masks.

        A U-Net's skips are recomputed from ``x`` (the encoder is a few percent of a forward
        pass) instead of being kept for every input. Returns ``(b, stems, C, F, T)``.
        """
        skips = self.encode(self._check_input(x))[1] if self.skip_connections else [None] * len(self.encoder)
        return self._masks(self.decode(self.bottleneck.features(sequence), skips), x)

    def _masks(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``(B, outputs * C, F, T)`` for input ``x`` ``(B, C, F, T)`` -> masks (B, stems, C, F, T)."""
        batch, channels, bins, frames = x.shape
        return self.masks_from_logits(logits.reshape(batch, -1, channels, bins, frames))

    def masks_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Decoder logits (B, stems [+ residual], C, F, T) -> masks (B, stems, C, F, T) in [0, 1]."""
        return activate_masks(logits, self.mask_activation, len(self.target_stems))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, bins, frames) normalised log-magnitude -> masks (batch, stems, channels, bins, frames)."""
        return self.forward_features(x)[0]


def extend_signature(parent_init: Callable[..., None]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a subclass ``__init__(self, *args, extra..., **kwargs)`` the parent's arguments plus its own extras.

    The registry checks stored and configured arguments against
    ``inspect.signature`` and the type hints of a model's constructor, so a
    subclass that forwards ``*args, **kwargs`` must still list (and annotate)
    every argument; this writes the merged signature and annotations once
    instead of restating the parent's list.
    """

    def decorate(init: Callable[..., None]) -> Callable[..., None]:
        parent = inspect.signature(parent_init)
        own = inspect.signature(init)
        extras = [p.replace(kind=p.KEYWORD_ONLY) for p in own.parameters.values() if p.kind is p.KEYWORD_ONLY]
        init.__signature__ = parent.replace(parameters=[*parent.parameters.values(), *extras])
        hints = typing.get_type_hints(parent_init)
        hints.update({name: hint for name, hint in typing.get_type_hints(init).items() if name != "return"})
        init.__annotations__ = hints
        return init

    return decorate
