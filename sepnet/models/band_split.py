"""The band-split RNN mask estimator (after Luo & Yu, "Music Source Separation with Band-split RNN", 2023).

    input (batch, channels, bins, frames)   normalised log-magnitude
    [conv stem: 2 x (Conv2d 3x3 -> GELU), conv_channels maps, concatenated to the input channels]
    split the bins into K bands: narrow at low frequencies, where pitch lives, wide at high ones
    -> per band: LayerNorm -> Linear(in_channels*width -> features)     (batch, K, frames, features)
    -> num_layers x [BiLSTM across time within each band ; BiLSTM across the bands within each frame],
       each a residual block (x + Linear(BiLSTM(LayerNorm(x))))
    -> per band: LayerNorm -> Linear(features -> 4*features) -> Tanh -> Linear -> GLU
    -> masks (batch, stems, channels, bins, frames), shared across the stems by default
       complex_masks: each share turned by a phase of its own, share x e^(j pi tanh(p)): (..., frames, 2)

Unlike the CRNN, whose BiLSTM sees one vector per frame for the whole spectrum,
every band keeps its own sequence, and the band-level BiLSTM lets bands exchange
what they hear (harmonics of one note span many bands). Time is never strided: any
frame count passes through, and the bands cover any bin count (the last band takes
what the configured widths leave).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from sepnet.models.contract import SeparationModel, check_model_input
from sepnet.models.masks import activate_masks, mask_outputs
from sepnet.registry import register_model


def bins_of_hz(widths_hz: Sequence[float], sample_rate: int, n_fft: int) -> list[int]:
    """Band widths in Hz -> in bins of an ``n_fft`` STFT at ``sample_rate`` (at least one bin each).

    172.27 Hz is 8 bins at 22.05 kHz / n_fft 1024 and at 44.1 kHz / n_fft 2048 (21.5 Hz a bin),
    7 at 48 kHz / n_fft 2048: one layout in Hz serves every rate.
    """
    return [max(1, round(width * n_fft / sample_rate)) for width in widths_hz]


def split_bins(n_bins: int, band_widths: Sequence[int], band_counts: Sequence[int]) -> list[int]:
    """The width of every band: ``band_counts[i]`` bands of ``band_widths[i]`` bins, low to high.

    The last band is widened to take the bins the others leave (513 bins with
    16x8 + 8x16 + 8x32 = 512: the last 32-bin band takes 33). A last count of 0 means
    "as many as fit": bands of the last width up to the top bin (``[16, 8, 0]``: 8 bands of 32
    for 513 bins, 24 for the 1025 of a full-band 44.1 kHz front end).

    Raises:
        ValueError: the lists differ in length, hold a non-positive number, or the bands
            need more bins than there are.
    """
    if len(band_widths) != len(band_counts) or not band_widths:
        raise ValueError(
            f"band_widths {list(band_widths)} and band_counts {list(band_counts)} must be equally long, non-empty lists"
        )
    if min([*band_widths, *band_counts[:-1]]) < 1 or band_counts[-1] < 0:
        raise ValueError(
            f"band_widths {list(band_widths)} and band_counts {list(band_counts)} must be positive "
            "(the last count may be 0: as many bands of the last width as fit)"
        )
    if band_counts[-1] == 0:
        below = sum(w * c for w, c in zip(band_widths[:-1], band_counts[:-1]))
        band_counts = [*band_counts[:-1], max(1, (n_bins - below) // band_widths[-1])]
    covered = sum(width * count for width, count in zip(band_widths, band_counts))
    if covered > n_bins:  # before the list of widths: 10^9 bands would be a list of 10^9
        raise ValueError(f"the bands cover {covered} bins but the input has n_bins={n_bins}; use fewer or narrower bands")
    widths = [width for width, count in zip(band_widths, band_counts) for _ in range(count)]
    widths[-1] += n_bins - sum(widths)
    return widths


class BandLinear(nn.Module):
    """One Linear per band, all applied in one batched matmul: (B, bands, T, in) -> (B, bands, T, out)."""

    def __init__(self, bands: int, in_features: int, out_features: int):
        super().__init__()
        bound = in_features**-0.5  # nn.Linear's initialisation, per band
        self.weight = nn.Parameter(torch.empty(bands, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(bands, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, bands, frames, features = x.shape
        # (bands, B*T, in) @ (bands, in, out): one bmm instead of a Linear call per band.
        y = torch.baddbmm(self.bias, x.transpose(0, 1).reshape(bands, batch * frames, features), self.weight)
        return y.reshape(bands, batch, frames, -1).transpose(0, 1)


class BandLayerNorm(nn.Module):
    """LayerNorm over the last axis with a scale and shift per band: (B, bands, T, features) -> the same shape."""

    def __init__(self, bands: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(bands, 1, features))
        self.bias = nn.Parameter(torch.zeros(bands, 1, features))
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The size as a constant (not x.shape[-1:]): the ONNX exporter cannot hold a traced normalized_shape.
        return nn.functional.layer_norm(x, (self.features,)) * self.weight + self.bias


class BandGroup(nn.Module):
    """Consecutive bands of one width: their embeddings in and mask logits out, each band with its own weights.

    :meth:`embed`: (B, in_channels, bands*width, T) bins -> (B, bands, T, features): LayerNorm -> Linear per band.
    :meth:`masks`: (B, bands, T, features) -> (B, outputs, mask_channels, bands*width, T) logits: LayerNorm ->
    Linear(features -> 4 features) -> Tanh -> Linear -> GLU per band, as in BSRNN (the gated
    linear unit lets a band switch its logits off as well as scale them).
    """

    def __init__(self, bands: int, width: int, in_channels: int, features: int, outputs: int, mask_channels: int):
        super().__init__()
        self.bands, self.width, self.outputs = bands, width, outputs
        self.embed_norm = BandLayerNorm(bands, in_channels * width)
        self.embed_linear = BandLinear(bands, in_channels * width, features)
        self.head_norm = BandLayerNorm(bands, features)
        self.head_hidden = BandLinear(bands, features, 4 * features)
        self.head_out = BandLinear(bands, 4 * features, 2 * outputs * mask_channels * width)

    def embed(self, bins: torch.Tensor) -> torch.Tensor:
        batch, channels, _, frames = bins.shape
        x = bins.reshape(batch, channels, self.bands, self.width, frames).permute(0, 2, 4, 1, 3)
        return self.embed_linear(self.embed_norm(x.reshape(batch, self.bands, frames, channels * self.width)))

    def masks(self, z: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.head_hidden(self.head_norm(z)))
        logits = nn.functional.glu(self.head_out(hidden), dim=-1)  # (B, bands, T, outputs * C * width)
        batch, bands, frames, _ = logits.shape
        logits = logits.reshape(batch, bands, frames, self.outputs, -1, self.width)  # (..., outputs, C, width)
        return logits.permute(0, 3, 4, 1, 5, 2).reshape(batch, self.outputs, -1, bands * self.width, frames)


class ResidualBiLSTM(nn.Module):
    """x + Linear(BiLSTM(LayerNorm(x))) along the sequence: (sequences, length, features) -> the same shape."""

    def __init__(self, features: int, hidden_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(features)
        self.lstm = nn.LSTM(features, hidden_size, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * hidden_size, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.lstm(self.norm(x))[0])


class BandSequenceBlock(nn.Module):
    """A BiLSTM across time within each band, then one across the bands within each frame: (B, K, T, N) -> same."""

    def __init__(self, features: int, hidden_size: int):
        super().__init__()
        self.across_time = ResidualBiLSTM(features, hidden_size)
        self.across_bands = ResidualBiLSTM(features, hidden_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, bands, frames, features = z.shape
        z = self.across_time(z.reshape(batch * bands, frames, features)).reshape(batch, bands, frames, features)
        z = z.transpose(1, 2).reshape(batch * frames, bands, features)
        return self.across_bands(z).reshape(batch, frames, bands, features).transpose(1, 2)


@register_model
class BandSplitRNN(SeparationModel):
    """Band-split RNN: per-band embeddings, BiLSTMs across time and across bands, per-band mask heads.

    Args:
        target_stems: stems the model estimates masks for, e.g. ``[vocals]`` or all four.
        n_bins: frequency bins of the input.
        audio_channels: waveform channels (2: stereo); a band's embedding sees all of them.
        features: width of every band's feature vector.
        hidden_size: hidden units per direction of every BiLSTM.
        num_layers: band-sequence blocks (each one BiLSTM across time, one across bands).
        band_widths: bins per band, low to high frequency (``[8, 16, 32]``); null when
            ``band_widths_hz`` gives them.
        band_counts: how many bands of each width (``[16, 8, 8]``; a last 0: as many as fit); see
            :func:`split_bins`.
        mask_activation: ``softmax`` (each bin divided between the stems: the estimates add
            up to the mixture), ``sigmoid`` or ``normalised``; see :mod:`sepnet.models.masks`.
        residual: with ``softmax``, one more output takes what no target stem claims;
            required for a softmax over a single target.
        conv_channels: feature maps of two 3x3 convolutions over the full-resolution spectrogram,
            given to the band embeddings beside the input (0: none): local time-frequency
            patterns (onsets, harmonics' shapes) before the split, as a U-Net's first block sees them.
        band_widths_hz: band widths in Hz instead of bins (``[172.27, 344.53, 689.06]``), converted
            with ``sample_rate`` and ``n_fft`` (:func:`bins_of_hz`), so one YAML fits any front end.
        sample_rate, n_fft: the front end's, needed with ``band_widths_hz``.
        complex_masks: phase-aware masks (``mask_kind="complex"``, :mod:`sepnet.dsp.masking`): each
            stem's mask (its share of the bin, as ``mask_activation`` gives it) is turned by a phase
            the model estimates, ``share x e^(j pi tanh(p))``: bounded by the share, and at p = 0 the
            real mask, so the option starts where the real-mask model does.

    The sizes have no default: they live in ``conf/model/band_split.yaml``.
    """

    def __init__(
        self,
        target_stems: Sequence[str],
        n_bins: int,
        audio_channels: int,
        features: int,
        hidden_size: int,
        num_layers: int,
        band_widths: Sequence[int] | None,
        band_counts: Sequence[int],
        mask_activation: str = "softmax",
        residual: bool = False,
        conv_channels: int = 0,
        band_widths_hz: Sequence[float] | None = None,
        sample_rate: int | None = None,
        n_fft: int | None = None,
        complex_masks: bool = False,
    ):
        super().__init__()
        self.target_stems = list(target_stems)
        outputs = mask_outputs(self.target_stems, mask_activation, residual)
        self.mask_kind = "complex" if complex_masks else "real"
        self.n_shares = outputs  # share logits first, then one phase per target stem (complex masks)
        outputs += len(self.target_stems) if complex_masks else 0
        if conv_channels < 0:
            raise ValueError(f"conv_channels must be >= 0, got {conv_channels}")
        self.stem = (
            nn.Sequential(
                nn.Conv2d(audio_channels, conv_channels, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(conv_channels, conv_channels, 3, padding=1),
                nn.GELU(),
            )
            if conv_channels
            else None
        )
        self.mask_activation, self.residual = mask_activation, residual
        self.n_bins, self.audio_channels, self.hidden_size = n_bins, audio_channels, hidden_size
        if (band_widths is None) == (band_widths_hz is None):
            raise ValueError("give the bands either in bins (band_widths) or in Hz (band_widths_hz), not both or neither")
        if band_widths_hz is not None:
            if not sample_rate or not n_fft:
                raise ValueError("band_widths_hz needs sample_rate and n_fft (the front end's: ${frontend.sample_rate})")
            band_widths = bins_of_hz(band_widths_hz, sample_rate, n_fft)
        self.band_widths = split_bins(n_bins, band_widths, band_counts)
        # Consecutive bands of one width form a group, each group one batched matmul.
        runs = [(width, len(list(same))) for width, same in itertools.groupby(self.band_widths)]
        in_channels = audio_channels + conv_channels  # the embeddings see the stem's maps beside the input
        self.groups = nn.ModuleList(
            BandGroup(count, width, in_channels, features, outputs, audio_channels) for width, count in runs
        )
        self.blocks = nn.ModuleList(BandSequenceBlock(features, hidden_size) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, bins, frames) normalised log-magnitude -> masks (batch, stems, channels, bins, frames)."""
        check_model_input(self, x)
        if self.stem is not None:
            # channels-last: oneDNN's convolutions run about twice as fast so (forward and backward, fp32 and bf16)
            maps = self.stem(x.contiguous(memory_format=torch.channels_last)).contiguous()
            x = torch.cat([x, maps], dim=1)  # (B, C + conv_channels, F, T)
        group_bins = x.split([group.bands * group.width for group in self.groups], dim=2)
        z = torch.cat([group.embed(bins) for group, bins in zip(self.groups, group_bins)], dim=1)  # (B, K, T, N)
        for block in self.blocks:
            z = block(z)
        group_features = z.split([group.bands for group in self.groups], dim=1)
        logits = torch.cat(
            [group.masks(f) for group, f in zip(self.groups, group_features)], dim=3
        )  # (B, out, C, F, T)
        masks = activate_masks(logits[:, : self.n_shares], self.mask_activation, len(self.target_stems))
        if self.mask_kind == "real":
            return masks
        phase = torch.pi * torch.tanh(logits[:, self.n_shares :].float())  # (B, stems, C, F, T)
        return torch.stack([masks * torch.cos(phase), masks * torch.sin(phase)], dim=-1)
