"""The U-Net CRNN of the research log's section 4, and its multi-task variant with a rhythm head.

    input (batch, channels, bins, frames)
    encoder blocks (stride 2 along frequency) ──────── skip at every scale ────────┐
    -> BiLSTM bottleneck -> decoder blocks, each fed [features ; encoder skip] <───┘
    -> sigmoid masks (batch, stems, channels, bins, frames)

The multi-task variant adds a rhythm head on the BiLSTM's output sequence:

    LSTM sequence (batch, frames, 2*hidden)
    -> Linear(2*hidden -> head_size) -> LayerNorm -> ReLU -> Dropout(0.4) -> Linear(head_size -> 1)
    -> beat logits (batch, frames)

a funnel from the LSTM's width to one beat activation per frame (the log's
"hidden 512 squeezed straight to 0/1 lost too much" is why it narrows in two steps).

Time is never strided, so odd frame counts and any batch size pass through.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sepnet.models.crnn import CRNN
from sepnet.models.registry import register_model


@register_model
class UNetCRNN(CRNN):
    """The standard CRNN with the encoder's output at every scale concatenated into the decoder.

    Same arguments as :class:`CRNN`; the defaults are the log's final size
    (hidden 512, 4 layers). With the same sizes its encoder and BiLSTM have the
    same parameter names and shapes as a CRNN's, so a CRNN checkpoint's encoder
    and LSTM load into it with ``init.strict=false``.
    """

    skip_connections = True

    def __init__(
        self,
        target_stems: Sequence[str],
        hidden_size: int = 512,
        num_layers: int = 4,
        encoder_channels: Sequence[int] = (16, 32, 64),
        n_bins: int = 512,
        audio_channels: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__(target_stems, hidden_size, num_layers, encoder_channels, n_bins, audio_channels, dropout)


class RhythmHead(nn.Module):
    """Per-frame funnel from the LSTM sequence to beat logits: (B, T, in_features) -> (B, T).

    Linear -> LayerNorm -> ReLU -> Dropout -> Linear.
    """

    def __init__(self, in_features: int, head_size: int = 128, dropout: float = 0.4):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, head_size),
            nn.LayerNorm(head_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_size, 1),
        )

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.layers(sequence).squeeze(-1)


@register_model
class MultiTaskUNetCRNN(UNetCRNN):
    """U-Net CRNN + rhythm head: masks as :class:`UNetCRNN`, plus one beat logit per frame.

    ``forward`` returns only the masks (so the :class:`~sepnet.models.separator.Separator`
    uses it like any mask model); :meth:`forward_multitask` returns both.

    Args:
        head_size: width of the rhythm head's hidden layer (the funnel's middle).
        head_dropout: dropout in the rhythm head (the log's 0.4).
        (others as :class:`UNetCRNN`)
    """

    def __init__(
        self,
        target_stems: Sequence[str],
        hidden_size: int = 512,
        num_layers: int = 4,
        encoder_channels: Sequence[int] = (16, 32, 64),
        n_bins: int = 512,
        audio_channels: int = 2,
        dropout: float = 0.0,
        head_size: int = 128,
        head_dropout: float = 0.4,
    ):
        super().__init__(target_stems, hidden_size, num_layers, encoder_channels, n_bins, audio_channels, dropout)
        self.rhythm_head = RhythmHead(2 * hidden_size, head_size, head_dropout)

    def forward_multitask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, F, T) -> (masks (B, stems, C, F, T), beat logits (B, T))."""
        masks, sequence = self.forward_features(x)
        return masks, self.rhythm_head(sequence)
