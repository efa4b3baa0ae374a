"""The spectral front end: the one path from waveform to model input and back.

Training, validation, ``evaluate`` and ``separate`` all call this module, and its
settings and normalisation statistics live in the model's state dict, so a
checkpoint cannot be evaluated with a different STFT, log scaling or
normalisation than it was trained with.

    waveform (batch, channels, samples)
      -> stft            complex (batch, channels, n_fft//2 + 1, frames)
      -> keep bins 0..n_bins-1 (the Nyquist bin is dropped: 513 -> 512, a size
         the encoder's stride-2 convolutions halve cleanly)
      -> the representation the model declares (``input_kind``, :mod:`sepnet.models.contract`):
         "log_magnitude": log1p(|X|), normalised per bin   (batch, channels, n_bins, frames)
         "complex": real parts, then imaginary parts        (batch, 2 * channels, n_bins, frames)
    and back: masked complex spectrogram, Nyquist restored as zero -> istft.

It knows representations by name, not models: nothing here imports :mod:`sepnet.models`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sepnet.registry import register_front_end

REPRESENTATIONS = ("log_magnitude", "complex")
"""What :meth:`SpectralFrontEnd.represent` can give a model."""
SAMPLE_RATES = (1000, 384000)
"""Sample rates a front end takes, Hz (inclusive): telephone audio to the highest studio rate."""
N_FFTS = (16, 65536)
"""FFT sizes a front end takes (inclusive): 1.5 s at 44.1 kHz is far more than any separation model uses."""
MAX_FRAMES_PER_WINDOW = 16
"""``hop_length`` is at least ``n_fft / 16``: 16 frames over every sample already overlap far more than
the usual 4; a hop of one sample would make a 3-minute track 8 million frames."""


# Checkpoints written before the package had sub-packages name it by its old module.
@register_front_end(aliases=("sepnet.spectral.SpectralFrontEnd",))
class SpectralFrontEnd(nn.Module):
    """STFT analysis/synthesis plus per-bin normalisation of log-magnitudes.

    Args:
        sample_rate: rate the waveforms are at, Hz (stored so a checkpoint knows it), in :data:`SAMPLE_RATES`.
        n_fft: FFT size, in :data:`N_FFTS`; ``n_fft // 2 + 1`` bins come out of the STFT.
        hop_length: hop between frames, samples: from ``n_fft / MAX_FRAMES_PER_WINDOW`` to ``n_fft``.
        n_bins: bins kept (from 0); the rest are dropped on the way in and
            restored as zeros on the way out.

    Raises:
        ValueError: a setting outside those bounds: a checkpoint or config asking for
            ``n_fft=2**30`` or ``hop_length=1`` is refused before anything is allocated.
    """

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 256, n_bins: int = 512):
        super().__init__()
        if not SAMPLE_RATES[0] <= sample_rate <= SAMPLE_RATES[1]:
            raise ValueError(f"sample_rate must be in {SAMPLE_RATES[0]}..{SAMPLE_RATES[1]} Hz, got {sample_rate}")
        if not N_FFTS[0] <= n_fft <= N_FFTS[1]:
            raise ValueError(f"n_fft must be in {N_FFTS[0]}..{N_FFTS[1]}, got {n_fft}")
        shortest_hop = -(-n_fft // MAX_FRAMES_PER_WINDOW)
        if not shortest_hop <= hop_length <= n_fft:
            raise ValueError(
                f"hop_length must be in {shortest_hop}..{n_fft} for n_fft={n_fft} (n_fft/{MAX_FRAMES_PER_WINDOW} "
                f"to n_fft), got {hop_length}"
            )
        if not 0 < n_bins <= n_fft // 2 + 1:
            raise ValueError(f"n_bins must be in 1..{n_fft // 2 + 1} for n_fft={n_fft}, got {n_bins}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_bins = n_bins
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # Statistics of log1p(|X|) per bin, fitted once on training data; buffers so
        # they travel in every checkpoint and follow the model to its device.
        self.register_buffer("bin_mean", torch.zeros(n_bins))
        self.register_buffer("bin_std", torch.ones(n_bins))
        self.register_buffer("fitted", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, n_bins={self.n_bins}"

    @property
    def settings(self) -> dict[str, int]:
        """The analysis settings two checkpoints must share to be compatible."""
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop_length": self.hop_length, "n_bins": self.n_bins}

    def num_frames(self, samples: int) -> int:
        """Frames the (centred) STFT gives for ``samples`` samples."""
        return samples // self.hop_length + 1

    def stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., samples) real -> (..., n_bins, frames) complex, Nyquist side dropped."""
        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window.to(waveform.dtype),
            center=True,
            return_complex=True,
        )
        spec = spec[:, : self.n_bins]
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(..., n_bins, frames) complex -> (..., length) real; dropped bins restored as zero."""
        shape = spec.shape
        spec = spec.reshape(-1, *shape[-2:])
        missing = self.n_fft // 2 + 1 - self.n_bins
        if missing:
            spec = torch.cat([spec, spec.new_zeros(spec.shape[0], missing, spec.shape[-1])], dim=1)
        wave = torch.istft(
            spec,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window.to(spec.real.dtype),
            center=True,
            length=length,
        )
        return wave.reshape(*shape[:-2], length)

    @staticmethod
    def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
        """Complex spectrogram -> log1p(|X|), same shape."""
        return torch.log1p(spec.abs())

    def normalise(self, log_mag: torch.Tensor) -> torch.Tensor:
        """(..., n_bins, frames) log-magnitudes -> per-bin standardised model input."""
        return (log_mag - self.bin_mean[:, None]) / self.bin_std[:, None]

    def represent(self, spec: torch.Tensor, kind: str = "log_magnitude") -> torch.Tensor:
        """Complex STFT (batch, channels, n_bins, frames) -> the model input ``kind`` names.

        ``log_magnitude``: (batch, channels, n_bins, frames) normalised log1p(|X|);
        ``complex``: (batch, 2 * channels, n_bins, frames), real parts then imaginary parts.
        """
        if kind == "log_magnitude":
            return self.normalise(self.log_magnitude(spec))
        if kind == "complex":
            return torch.cat([spec.real, spec.imag], dim=1)
        raise ValueError(f"the front end has no representation {kind!r}; it gives {', '.join(REPRESENTATIONS)}")

    def forward(self, waveform: torch.Tensor, kind: str = "log_magnitude") -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, channels, samples) -> (model input as :meth:`represent` gives it, complex STFT (batch, channels, n_bins, frames))."""
        spec = self.stft(waveform)
        return self.represent(spec, kind), spec

    @torch.no_grad()
    def fit_statistics(self, waveforms: Iterable[torch.Tensor]) -> None:
        """Set the per-bin mean and std of log1p(|X|) from training waveforms.

        Args:
            waveforms: an iterable of (batch, channels, samples) tensors (mixtures).
        """
        total = torch.zeros(self.n_bins, dtype=torch.float64, device=self.bin_mean.device)
        total_sq = torch.zeros_like(total)
        count = 0
        for waveform in waveforms:
            log_mag = self.log_magnitude(self.stft(waveform.to(self.bin_mean.device))).double()
            log_mag = log_mag.transpose(-2, -1).reshape(-1, self.n_bins)  # (observations, bins)
            total += log_mag.sum(0)
            total_sq += log_mag.square().sum(0)
            count += log_mag.shape[0]
        if count == 0:
            raise ValueError("fit_statistics got no waveforms")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
        self.bin_mean.copy_(mean.float())
        # A bin that is silent in all training data would divide by zero.
        self.bin_std.copy_(std.float().clamp_min(1e-4))
        self.fitted.fill_(True)
