"""The RoFormer family: band-split RoFormer (Lu et al., 2023) and mel-band RoFormer (Wang et al., 2023).

    input (batch, 2*channels, bins, frames)   the complex STFT, real parts then imaginary parts
    -> per bin: (channel, re/im) interleaved; the bins cut into K bands
       BS-RoFormer: consecutive, non-overlapping bands (narrow low, wide high; in Hz or bins)
       Mel-RoFormer: the supports of a mel filterbank, overlapping (a bin may sit in 2 bands)
    -> per band: RMSNorm -> Linear(2*channels*width -> dim)            (batch, frames, K, dim)
    -> depth x [transformer across time within each band ; transformer across the bands within each frame]
       each layer: x + Attention(RMSNorm(x)) (rotary positions, per-head sigmoid gates), x + FeedForward(x)
    -> per stem, per band: MLP (Tanh) -> GLU -> width*channels*2 values: the band's complex mask
       Mel-RoFormer: a bin in several bands gets the mean of their masks
    -> complex masks (batch, stems, channels, bins, frames, 2), applied as (re + j im) x mixture STFT

The layers follow the reference implementation ``bs-roformer`` (lucidrains/BS-RoFormer,
v1.2.4) so its weights load one to one (:func:`reference_state_to_sepnet`,
``python -m sepnet.import_weights``): RMSNorm is ``normalize(x) * sqrt(dim) * gamma``;
attention has per-head output gates (``attention_gates``) and, in BS-RoFormer, later layers
mix their values with the first layer's (``value_residual``, the reference's hard-wired
default); BS-RoFormer normalises once after the last layer, Mel-RoFormer after every
transformer. The papers' models have neither gates nor value residuals: both are options.
Masks are not bounded (a GLU's output), as in the papers and the reference, unless ``mask_bound`` is set
(magnitudes soft-limited to it, phases kept: :func:`sepnet.models.masks.soft_bound_complex`).

einops axes in the comments: b batch, t frames, k bands, f bins, s audio channels, c re/im, d features.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from rotary_embedding_torch import RotaryEmbedding
from torch import nn

from sepnet.models.contract import SeparationModel, check_model_input
from sepnet.models.masks import check_mask_bound, soft_bound_complex
from sepnet.registry import register_model

# -- bands ------------------------------------------------------------------------------------------


def bands_in_bins(
    n_bins: int,
    band_widths: Sequence[int] | None,
    band_widths_hz: Sequence[float] | None,
    band_counts: Sequence[int] | None,
    sample_rate: int | None,
    n_fft: int | None,
) -> list[int]:
    """The width in bins of every BS-RoFormer band, low to high; they add up to ``n_bins``.

    Either ``band_widths`` lists every band in bins (``[2, 2, ..., 128, 129]``, the reference's
    ``freqs_per_bands``; they must add up to ``n_bins``), or ``band_widths_hz`` and ``band_counts``
    give ``band_counts[i]`` bands of ``band_widths_hz[i]`` Hz each (converted with ``sample_rate`` and
    ``n_fft``), a last count of 0 meaning as many of the last width as fit, the remainder added to
    the last band. A layout wider than ``n_bins`` is cut at ``n_bins`` (a 44.1 kHz layout at 22.05 kHz
    keeps the bands below 11 kHz), one narrower gives the rest to its last band.
    """
    if band_widths is not None:
        if band_widths_hz is not None:
            raise ValueError("give the bands either in bins (band_widths) or in Hz (band_widths_hz), not both")
        widths = [int(w) for w in band_widths]
        if min(widths, default=0) < 1 or sum(widths) != n_bins:
            raise ValueError(f"band_widths must be positive and add up to n_bins={n_bins}, got sum {sum(widths)}")
        return widths
    if band_widths_hz is None or band_counts is None or not sample_rate or not n_fft:
        raise ValueError("give band_widths (bins), or band_widths_hz and band_counts with sample_rate and n_fft")
    if len(band_widths_hz) != len(band_counts) or not band_counts:
        raise ValueError("band_widths_hz and band_counts must be equally long, non-empty lists")
    widths_bins = [max(1, round(w * n_fft / sample_rate)) for w in band_widths_hz]
    if min(band_counts[:-1], default=1) < 1 or band_counts[-1] < 0:
        raise ValueError(f"band_counts must be positive (the last may be 0: as many as fit), got {list(band_counts)}")
    widths: list[int] = []
    for i, (width, count) in enumerate(zip(widths_bins, band_counts)):
        fill = count == 0 and i == len(band_counts) - 1
        while (fill or count > 0) and sum(widths) + width <= n_bins:
            widths.append(width)
            count -= 1
        if sum(widths) + width > n_bins and not fill:  # the layout reaches n_bins inside this width: cut
            if n_bins > sum(widths):
                widths.append(n_bins - sum(widths))
            return widths
    if not widths:
        return [n_bins]
    widths[-1] += n_bins - sum(widths)
    return widths


def mel_band_bins(n_bins: int, num_bands: int, sample_rate: int, n_fft: int) -> torch.Tensor:
    """(num_bands', n_bins) bool: which bins each mel band holds, as the Mel-RoFormer reference builds them.

    The supports of librosa's Slaney mel filterbank (``librosa.filters.mel(sr, n_fft, n_mels)``),
    with the first band reaching down to DC and the last up to Nyquist; neighbouring bands
    overlap. A front end keeping fewer than ``n_fft // 2 + 1`` bins cuts the bank there and
    drops the bands left empty.
    """
    from librosa import filters  # imported here: loading librosa costs a second, only mel bands need it

    bank = torch.from_numpy(filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_bands))
    bank[0, 0] = bank[0, 1] * 0.25  # as the reference: DC and Nyquist belong to the outer bands
    bank[-1, -1] = bank[-1, -2] * 0.25
    holds = (bank > 0)[:, :n_bins]
    holds = holds[holds.any(dim=1)]
    if not bool(holds.any(dim=0).all()):
        raise ValueError(f"{num_bands} mel bands leave bins uncovered at n_fft={n_fft}; use fewer bands or a larger n_fft")
    return holds


# -- layers -----------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(dim) * gamma over the last axis (the reference's form): (..., dim) -> (..., dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions: (sequences, length, dim) -> the same shape.

    Returns the output and this layer's values (sequences, heads, length, dim_head), which a
    value-residual model mixes into later layers' values.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float, gates: bool, value_residual: bool):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_value_residual_mix = nn.Linear(dim, heads) if value_residual else None
        self.to_gates = nn.Linear(dim, heads) if gates else None
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(
        self, x: torch.Tensor, rotary: RotaryEmbedding, value_residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(x)
        q, k, v = rearrange(self.to_qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.heads)
        values = v
        if self.to_value_residual_mix is not None and value_residual is not None:
            mix = rearrange(self.to_value_residual_mix(x), "b n h -> b h n 1").sigmoid()
            v = v.lerp(value_residual.to(v.dtype), mix.to(v.dtype))
        q, k = rotary.rotate_queries_or_keys(q), rotary.rotate_queries_or_keys(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if self.to_gates is not None:
            out = out * rearrange(self.to_gates(x), "b n h -> b h n 1").sigmoid()
        return self.to_out(rearrange(out, "b h n d -> b n (h d)")), values


class TransformerLayer(nn.Module):
    """x + Attention(x), then x + FeedForward(x): (sequences, length, dim) -> the same shape."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int, dropout: float, gates: bool, value_residual: bool):
        super().__init__()
        self.attention = Attention(dim, heads, dim_head, dropout, gates, value_residual)
        self.feedforward = nn.Sequential(  # indices as the reference's, so its weights map by name
            RMSNorm(dim),
            nn.Linear(dim, dim * ff_mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * ff_mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x, rotary, value_residual):
        out, values = self.attention(x, rotary, value_residual)
        x = x + out
        return x + self.feedforward(x), values


class Transformer(nn.Module):
    """``depth`` layers along one axis (time or bands), optionally RMSNorm after them; returns the first layer's values."""

    def __init__(self, depth: int, norm_output: bool, value_residual: bool, **layer):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(value_residual=value_residual, **layer) for _ in range(depth))
        self.norm = RMSNorm(layer["dim"]) if norm_output else None

    def forward(self, x, rotary, value_residual=None):
        first = None
        for layer in self.layers:
            x, values = layer(x, rotary, value_residual)
            first = values if first is None else first
        return (self.norm(x) if self.norm is not None else x), first


class AxialLayer(nn.Module):
    """A transformer across time within each band, then one across the bands within each frame: (b, t, k, d)."""

    def __init__(self, time_depth: int, band_depth: int, **transformer):
        super().__init__()
        self.time = Transformer(time_depth, **transformer)
        self.bands = Transformer(band_depth, **transformer)


def band_mlp(dim: int, out_features: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` Linear layers with Tanh between them, then a GLU: (..., dim) -> (..., out_features)."""
    dims = [dim, *[hidden] * (depth - 1), 2 * out_features]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(dims) - 2 else [])
    return nn.Sequential(*layers, nn.GLU(dim=-1))


# -- the model --------------------------------------------------------------------------------------


class RoFormer(SeparationModel):
    """The shared body of BS- and Mel-RoFormer; a subclass chooses the bands (``self.band_bins``).

    Args (shared by both):
        target_stems: the stems the model estimates, one mask estimator each.
        n_bins: bins of the input (the front end's ``n_bins``).
        audio_channels: waveform channels; every band's embedding sees all of them.
        dim: features per band and frame.
        depth: axial layers (each a time transformer and a band transformer): the papers' L.
        time_depth, band_depth: transformer layers per axis inside one axial layer (the papers: 1 each).
        heads, dim_head: attention heads and their width.
        ff_mult: the feed-forward's hidden width, in multiples of ``dim``.
        mask_estimator_depth: Linear layers of each band's mask MLP (2: one Tanh hidden layer of
            ``mlp_expansion * dim``). The reference counts the same in ``bs_roformer.py`` and one
            less (hidden layers) in ``mel_band_roformer.py``.
        mlp_expansion: the mask MLPs' hidden width, in multiples of ``dim``.
        dropout: attention and feed-forward dropout.
        attention_gates: per-head sigmoid gates on the attention output (the reference's; not in the papers).
        value_residual: layers after the first mix their values with the first layer's (the BS
            reference's, hard-wired there; not in the papers).
        mask_bound: None (the papers' and the reference's: unbounded masks; published weights expect
            it), or a positive number: every mask's magnitude soft-limited to it, ``b tanh(|m| / b)``,
            its phase kept, so no bin of a stem can be more than ``b`` times the mixture's.
    """

    input_kind = "complex"
    mask_kind = "complex"
    reference = "bs"  # which reference model's weights this class takes (reference_kind)
    norm_each_transformer = False  # Mel-RoFormer's reference: RMSNorm after every transformer, no final norm

    def _build(
        self,
        target_stems: Sequence[str],
        n_bins: int,
        audio_channels: int,
        band_bins: Sequence[Sequence[int]],
        dim: int,
        depth: int,
        time_depth: int,
        band_depth: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        mask_estimator_depth: int,
        mlp_expansion: int,
        dropout: float,
        attention_gates: bool,
        value_residual: bool,
        mask_bound: float | None = None,
    ) -> None:
        self.target_stems = list(target_stems)
        check_mask_bound(mask_bound)
        self.mask_bound = mask_bound
        self.n_bins, self.audio_channels = n_bins, audio_channels
        if min(dim, depth, time_depth, band_depth, heads, dim_head, ff_mult, mlp_expansion) < 1 or mask_estimator_depth < 1:
            raise ValueError("dim, depth, time_depth, band_depth, heads, dim_head, ff_mult, mlp_expansion and "
                             "mask_estimator_depth must be >= 1")
        # Plain Python here: a checkpoint's model is first built on the meta device, where no op computes.
        order = [int(i) for band in band_bins for i in band]  # the bins of band 0, band 1, ... (with repeats)
        counts = [0] * n_bins
        for i in order:
            counts[i] += 1
        self.overlapping = any(c != 1 for c in counts)
        if not self.overlapping and order != list(range(n_bins)):
            raise ValueError("non-overlapping bands must be consecutive, low to high")
        self.register_buffer("bin_order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("bands_per_bin", torch.tensor(counts, dtype=torch.float32), persistent=False)
        self.band_features = [2 * audio_channels * len(b) for b in band_bins]  # (f s c) per band
        self.band_split = nn.ModuleList(nn.Sequential(RMSNorm(n), nn.Linear(n, dim)) for n in self.band_features)
        self.time_rotary = RotaryEmbedding(dim=dim_head)
        self.band_rotary = RotaryEmbedding(dim=dim_head)
        layer = {"dim": dim, "heads": heads, "dim_head": dim_head, "ff_mult": ff_mult, "dropout": dropout, "gates": attention_gates}
        self.layers = nn.ModuleList(
            AxialLayer(time_depth, band_depth, norm_output=self.norm_each_transformer,
                       value_residual=value_residual and i > 0, **layer)
            for i in range(depth)
        )
        self.final_norm = None if self.norm_each_transformer else RMSNorm(dim)
        self.mask_estimators = nn.ModuleList(
            nn.ModuleList(band_mlp(dim, n, mlp_expansion * dim, mask_estimator_depth) for n in self.band_features)
            for _ in self.target_stems
        )

    @property
    def num_bands(self) -> int:
        return len(self.band_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 2*channels, bins, frames) complex STFT -> complex masks (batch, stems, channels, bins, frames, 2)."""
        check_model_input(self, x)
        batch, _, bins, _frames = x.shape
        x = rearrange(x, "b (c s) f t -> b t f s c", c=2)
        if self.overlapping:
            x = x[:, :, self.bin_order]  # the bands' bins in order, a bin once for every band holding it
        z = torch.stack(
            [embed(part) for embed, part in zip(self.band_split, x.flatten(2).split(self.band_features, dim=-1))],
            dim=2,
        )  # (b, t, k, d)
        time_values = band_values = None
        for layer in self.layers:
            z = rearrange(z, "b t k d -> (b k) t d")
            z, values = layer.time(z, self.time_rotary, time_values)
            time_values = values if time_values is None else time_values
            z = rearrange(z, "(b k) t d -> (b t) k d", b=batch)
            z, values = layer.bands(z, self.band_rotary, band_values)
            band_values = values if band_values is None else band_values
            z = rearrange(z, "(b t) k d -> b t k d", b=batch)
        if self.final_norm is not None:
            z = self.final_norm(z)
        bands = z.unbind(dim=2)
        masks = torch.stack(
            [torch.cat([mlp(band) for mlp, band in zip(estimator, bands)], dim=-1) for estimator in self.mask_estimators],
            dim=1,
        )  # (b, stems, t, (f s c)) over the bands' bins in order
        masks = rearrange(masks, "b n t (f s c) -> b n t f s c", s=self.audio_channels, c=2)
        if self.overlapping:  # a bin in several bands: the mean of their masks
            summed = masks.new_zeros(*masks.shape[:3], bins, *masks.shape[4:], dtype=torch.float32)
            masks = summed.index_add_(3, self.bin_order, masks.float()) / self.bands_per_bin[:, None, None]
        if self.mask_bound is not None:
            masks = soft_bound_complex(masks, self.mask_bound)
        return rearrange(masks, "b n t f s c -> b n s f t c")

    @classmethod
    def state_from_reference(cls, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A ``bs-roformer`` state dict (``BSRoformer`` for BS-RoFormer, ``MelBandRoformer`` for Mel-RoFormer)
        -> this class's names (:func:`reference_state_to_sepnet`)."""
        kind = reference_kind(state)
        if kind != cls.reference:
            theirs, ours = ("MelBandRoformer", "mel_roformer") if kind == "mel" else ("BSRoformer", "bs_roformer")
            raise ValueError(f"the weights are a {theirs}'s: use model={ours}")
        return reference_state_to_sepnet(state)


@register_model
class BSRoFormer(RoFormer):
    """Band-split RoFormer (Lu et al., "Music Source Separation with Band-Split RoPE Transformer", 2023).

    Args: those of :class:`RoFormer`, and the bands: either ``band_widths`` (every band in bins,
    the reference's ``freqs_per_bands``) or ``band_widths_hz`` with ``band_counts`` (see
    :func:`bands_in_bins`), ``sample_rate`` and ``n_fft`` being the front end's.
    The sizes have no default: they live in ``conf/model/bs_roformer.yaml``.
    """

    def __init__(
        self,
        target_stems: Sequence[str],
        n_bins: int,
        audio_channels: int,
        dim: int,
        depth: int,
        band_widths: Sequence[int] | None = None,
        band_widths_hz: Sequence[float] | None = None,
        band_counts: Sequence[int] | None = None,
        sample_rate: int | None = None,
        n_fft: int | None = None,
        time_depth: int = 1,
        band_depth: int = 1,
        heads: int = 8,
        dim_head: int = 64,
        ff_mult: int = 4,
        mask_estimator_depth: int = 2,
        mlp_expansion: int = 4,
        dropout: float = 0.0,
        attention_gates: bool = True,
        value_residual: bool = False,
        mask_bound: float | None = None,
    ):
        super().__init__()
        widths = bands_in_bins(n_bins, band_widths, band_widths_hz, band_counts, sample_rate, n_fft)
        starts = [sum(widths[:i]) for i in range(len(widths))]
        self._build(target_stems, n_bins, audio_channels, [range(s, s + w) for s, w in zip(starts, widths)], dim,
                    depth, time_depth, band_depth, heads, dim_head, ff_mult, mask_estimator_depth, mlp_expansion,
                    dropout, attention_gates, value_residual, mask_bound)


@register_model
class MelRoFormer(RoFormer):
    """Mel-band RoFormer (Wang et al., "Mel-Band RoFormer for Music Source Separation", 2023).

    Args: those of :class:`RoFormer`, and ``num_bands`` mel bands (overlapping; see
    :func:`mel_band_bins`) of an ``n_fft`` STFT at ``sample_rate`` (the front end's).
    The sizes have no default: they live in ``conf/model/mel_roformer.yaml``.
    """

    reference = "mel"
    norm_each_transformer = True

    def __init__(
        self,
        target_stems: Sequence[str],
        n_bins: int,
        audio_channels: int,
        dim: int,
        depth: int,
        num_bands: int,
        sample_rate: int,
        n_fft: int,
        time_depth: int = 1,
        band_depth: int = 1,
        heads: int = 8,
        dim_head: int = 64,
        ff_mult: int = 4,
        mask_estimator_depth: int = 2,
        mlp_expansion: int = 4,
        dropout: float = 0.0,
        attention_gates: bool = True,
        value_residual: bool = False,
        mask_bound: float | None = None,
    ):
        super().__init__()
        if value_residual:
            raise ValueError("value_residual is a BS-RoFormer option (the mel reference's differs); use false")
        holds = mel_band_bins(n_bins, num_bands, sample_rate, n_fft)
        self._build(target_stems, n_bins, audio_channels, [row.nonzero()[:, 0].tolist() for row in holds], dim,
                    depth, time_depth, band_depth, heads, dim_head, ff_mult, mask_estimator_depth, mlp_expansion,
                    dropout, attention_gates, False, mask_bound)


# -- the reference's weights ----------------------------------------------------------------------

_REFERENCE_RENAMES = [
    (r"^band_split\.to_features\.(\d+)\.", r"band_split.\1."),
    (r"^mask_estimators\.(\d+)\.to_freqs\.(\d+)\.0\.", r"mask_estimators.\1.\2."),
    (r"\.layers\.(\d+)\.0\.branch\.", r".layers.\1.attention."),
    (r"\.layers\.(\d+)\.1\.branch\.net\.", r".layers.\1.feedforward."),
    (r"\.learned_value_residual_mix\.0\.", r".to_value_residual_mix."),
    (r"\.to_out\.0\.", r".to_out."),
]


def reference_kind(state: Mapping[str, torch.Tensor]) -> str:
    """``"mel"`` or ``"bs"``: which reference model wrote ``state`` (the mel one has a norm after every transformer)."""
    return "mel" if any(re.fullmatch(r"layers\.\d+\.\d+\.norm\.gamma", k) for k in state) else "bs"


def reference_state_to_sepnet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``bs-roformer`` ``BSRoformer`` / ``MelBandRoformer`` state dict -> :class:`RoFormer`'s names.

    Its axial layers are ``layers.<i>.<0|1>`` (time, bands) in BS-RoFormer and ``layers.<i>.<1|2>``
    in Mel-RoFormer (index 0 is its optional linear-attention transformer, which sepnet has
    not: such weights are refused); hyper-connection wrappers (``.branch``) are dropped, and the
    rotary frequencies each attention layer lists become one per axis (``time_rotary``,
    ``band_rotary``). Raises ``ValueError`` naming the first key it cannot place.
    """
    mel = reference_kind(state) == "mel"
    axes = {"1": "time", "2": "bands"} if mel else {"0": "time", "1": "bands"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        found = re.match(r"^layers\.(\d+)\.(\d+)\.(.*)$", key)
        if found:
            axis = axes.get(found.group(2))
            if axis is None:
                raise ValueError(f"reference key {key!r}: linear-attention transformers are not part of sepnet's RoFormer")
            if key.endswith("rotary_embed.freqs"):  # one rotary embedding per axis, shared by its layers
                out["time_rotary.freqs" if axis == "time" else "band_rotary.freqs"] = value
                continue
            key = f"layers.{found.group(1)}.{axis}.{found.group(3)}"
        for pattern, replacement in _REFERENCE_RENAMES:
            key = re.sub(pattern, replacement, key)
        if ".residual_transform." in key or "expand_stream" in key or "reduce_stream" in key:
            raise ValueError(f"reference key {key!r}: hyper-connections (num_residual_streams > 1) are not supported")
        out[key] = value
    return out
