"""The U-Net CRNN, and its multi-task variant with a rhythm head.

    input (batch, channels, bins, frames)
    encoder blocks (stride 2 along frequency) ──────── skip at every scale ────────┐
    -> BiLSTM bottleneck -> decoder blocks, each fed [features ; encoder skip] <───┘
    -> sigmoid masks (batch, stems, channels, bins, frames)

The multi-task variant adds a rhythm head on the BiLSTM's output sequence:

    LSTM sequence (batch, frames, 2*hidden)
    -> Linear(2*hidden -> head_size) -> LayerNorm -> ReLU -> Dropout(0.4) -> Linear(head_size -> 1)
    -> beat logits (batch, frames)

a funnel from the LSTM's width to one beat activation per frame, narrowing in
two steps because squeezing 2*hidden straight to one unit loses too much.

Time is never strided, so odd frame counts and any batch size pass through.
"""

from __future__ import annotations

import torch
from torch import nn

from sepnet.models.contract import BEATS
from sepnet.models.crnn import CRNN, extend_signature
from sepnet.registry import register_model


@register_model
class UNetCRNN(CRNN):
    """The standard CRNN with the encoder's output at every scale concatenated into the decoder.

    Same arguments as :class:`CRNN` (``conf/model/unet_crnn.yaml`` sets the sizes:
    hidden 512, 4 layers). With the same sizes its encoder and BiLSTM have the
    same parameter names and shapes as a CRNN's, so a CRNN checkpoint's encoder
    and LSTM load into it with ``init.strict=false``.
    """

    skip_connections = True


class RhythmHead(nn.Module):
    """Per-frame funnel from the LSTM sequence to beat logits: (B, T, in_features) -> (B, T).

    Linear -> LayerNorm -> ReLU -> Dropout -> Linear.
    """

    def __init__(self, in_features: int, head_size: int, dropout: float):
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

    ``forward`` returns only the masks (so the :class:`~sepnet.inference.separator.Separator`
    uses it like any mask model); :meth:`forward_with_heads` returns both, the beat logits
    as the ``beats`` head (``auxiliary_heads``).

    Args:
        head_size: width of the rhythm head's hidden layer (the funnel's middle).
        head_dropout: dropout in the rhythm head.
        (others as :class:`UNetCRNN`; ``inspect.signature`` lists them all)
    """

    auxiliary_heads = (BEATS,)

    @extend_signature(UNetCRNN.__init__)
    def __init__(self, *args, head_size: int, head_dropout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.rhythm_head = RhythmHead(2 * self.hidden_size, head_size, head_dropout)

    def forward_with_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, C, F, T) -> (masks (B, stems, C, F, T), {"beats": beat logits (B, T)})."""
        masks, sequence = self.forward_features(x)
        return masks, {BEATS: self.rhythm_head(sequence)}
