"""The one spectrogram picture of sepnet: the listening report and the loggers' validation media draw it.

A grid of titled mono log-magnitude spectrograms (dB, 80 dB range below each panel's
peak, time in seconds, frequency in kHz), rendered by matplotlib's Agg backend either as
JPEG bytes (for HTML) or as an RGB array (for wandb and TensorBoard).
"""

from __future__ import annotations

import io
import math

import numpy as np

DYNAMIC_RANGE_DB = 80.0
"""Each panel shows its loudest bin down to this many dB below it."""


def log_spectrogram(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Mono log-magnitude (dB) spectrogram ``(bins, frames)`` of ``(channels, samples)`` audio."""
    mono = np.asarray(audio, dtype=np.float64).mean(0)
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * np.hanning(n_fft)
    magnitude = np.abs(np.fft.rfft(frames, axis=-1)).T
    return 20 * np.log10(magnitude + 1e-6)


def spectrogram_figure(rows: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 2):
    """A matplotlib figure: a grid of spectrograms, ``rows`` of ``(title, (channels, samples))``, row by row.

    A panel with no samples is left empty. The caller closes the figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    n_rows = math.ceil(len(rows) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(4.2 * columns, 1.6 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (title, audio) in enumerate(rows):
        if audio.shape[-1] == 0:  # an empty panel
            continue
        ax = axes[i // columns][i % columns]
        spec = log_spectrogram(audio)
        ax.imshow(
            spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - DYNAMIC_RANGE_DB, vmax=spec.max(),
            extent=(0, audio.shape[-1] / sample_rate, 0, sample_rate / 2000),
        )
        ax.axis("on")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_ylabel("kHz", fontsize=6)
    fig.tight_layout()
    return fig


def spectrogram_jpeg(rows: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 2) -> bytes:
    """:func:`spectrogram_figure` as JPEG bytes (small enough to embed in an HTML report)."""
    from matplotlib import pyplot as plt

    fig = spectrogram_figure(rows, sample_rate, columns)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=72, pil_kwargs={"quality": 70})
    plt.close(fig)
    return buffer.getvalue()


def spectrogram_rgb(rows: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 1) -> np.ndarray:
    """:func:`spectrogram_figure` as an RGB uint8 array ``(height, width, 3)``, as the loggers take images."""
    from matplotlib import pyplot as plt

    fig = spectrogram_figure(rows, sample_rate, columns)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb
