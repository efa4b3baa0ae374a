"""The one spectrogram picture of sepnet: the listening report and the loggers' validation media draw it.

A grid of titled mono log-magnitude spectrograms (log frequency in Hz, time in seconds, one
dB scale for the whole figure with a colour bar: 80 dB below its loudest bin), rendered by
matplotlib's Agg backend either as JPEG bytes (for HTML) or as an RGB array (for wandb and
TensorBoard); and the evaluation's per-track SDR picture (:func:`sdr_figure`: box and dots
per stem, SDR per track).
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


FREQUENCY_TICKS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
"""Hz marked on the log-frequency axis (those below the Nyquist frequency)."""
LOWEST_HZ = 40.0
"""The log-frequency axis starts here (below it a music spectrogram holds little but the first bins)."""


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:g}k" if hz >= 1000 else f"{hz:g}"


def spectrogram_figure(rows: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 2, n_fft: int = 1024, hop: int = 256):
    """A matplotlib figure: a grid of spectrograms, ``rows`` of ``(title, (channels, samples))``, row by row.

    Log frequency (Hz, from :data:`LOWEST_HZ` to Nyquist), time in seconds, one colour scale for every panel:
    dB below the loudest bin of the figure (so a quiet estimate looks quiet beside its reference), with a
    colour bar, down to :data:`DYNAMIC_RANGE_DB`. A panel with no samples is left empty. The caller closes
    the figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    n_rows = math.ceil(len(rows) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(5.4 * columns + 1.0, 2.3 * n_rows + 0.3), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    specs = [(title, audio, log_spectrogram(audio, n_fft, hop)) for title, audio in rows if audio.shape[-1] > 0]
    peak = max((float(spec.max()) for _, _, spec in specs), default=0.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    low = max(LOWEST_HZ, float(freqs[1]))
    keep = freqs >= low
    nyquist = sample_rate / 2
    image = None
    panel = 0
    for i, (title, audio) in enumerate(rows):
        if audio.shape[-1] == 0:  # an empty panel
            continue
        spec = specs[panel][2] - peak
        panel += 1
        ax = axes[i // columns][i % columns]
        times = (np.arange(spec.shape[1]) * hop + n_fft / 2) / sample_rate
        image = ax.pcolormesh(times, freqs[keep], spec[keep], shading="nearest", cmap="magma",
                              vmin=-DYNAMIC_RANGE_DB, vmax=0.0, rasterized=True)
        ax.axis("on")
        ax.set_yscale("log")
        ax.set_ylim(low, nyquist)
        ax.yaxis.set_major_locator(FixedLocator([f for f in FREQUENCY_TICKS if low <= f <= nyquist]))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticklabels([_hz_label(f) for f in FREQUENCY_TICKS if low <= f <= nyquist])
        ax.set_title(title, fontsize=11)
        ax.tick_params(labelsize=9)
        ax.set_ylabel("Hz", fontsize=9)
        if i // columns == n_rows - 1 or i + columns >= len(rows):
            ax.set_xlabel("seconds", fontsize=9)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=min(1.0, 0.9 if n_rows > 2 else 1.0), pad=0.01,
                           aspect=max(20, 12 * n_rows))
        bar.set_label("dB below the loudest bin", fontsize=9)
        bar.ax.tick_params(labelsize=9)
    return fig


TRACK_NAME_CHARS = 28
"""A track's name on the per-track axis is cut to this many characters."""


def sdr_figure(per_track: list[tuple[str, dict]], stems: list[str], metric: str = "sdr"):
    """Per-track SDR at a glance: a box per stem with every track as a dot (left), and each track's SDR per stem
    (right, the tracks in order; left out beyond 60 tracks, where the dots on the left say it). NaN (a silent
    reference) is not drawn. The caller closes the figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    values = [[float(scores[stem][metric]) for _, scores in per_track] for stem in stems]
    finite = [[v for v in column if math.isfinite(v)] for column in values]
    per_track_panel = 1 < len(per_track) <= 60
    names = [name if len(name) <= TRACK_NAME_CHARS else name[: TRACK_NAME_CHARS - 1] + "…" for name, _ in per_track]
    width = 4.5 + 0.9 * len(stems) + (min(11.0, 2.5 + 0.2 * len(per_track)) if per_track_panel else 0.0)
    height = 4.2 + (0.055 * max(map(len, names), default=0) if per_track_panel else 0.0)
    fig = plt.figure(figsize=(width, height), layout="constrained")
    grid = fig.add_gridspec(1, 2 if per_track_panel else 1, width_ratios=[1.0, 1.6] if per_track_panel else [1.0])
    ax = fig.add_subplot(grid[0, 0])
    rng = np.random.default_rng(0)  # the same jitter every time: the picture is reproducible
    shown = [i for i, column in enumerate(finite) if column]
    if shown:
        ax.boxplot([finite[i] for i in shown], positions=[i + 1 for i in shown], widths=0.55, showfliers=False,
                   medianprops={"color": "black", "linewidth": 1.6})
    for i, column in enumerate(finite):
        x = i + 1 + rng.uniform(-0.15, 0.15, len(column))
        ax.scatter(x, column, s=22, color=f"C{i % 10}", alpha=0.8, zorder=3, edgecolors="none")
    ax.set_xticks(range(1, len(stems) + 1), stems, fontsize=10, rotation=30 if len(stems) > 5 else 0)
    ax.set_ylabel(f"{metric.upper()} (dB)", fontsize=10)
    missing = sum(len(column) - len(kept) for column, kept in zip(values, finite))
    note = f"\n{missing} NaN (silent reference) not drawn" if missing else ""
    ax.set_title(f"{metric.upper()} per stem ({len(per_track)} track{'s' if len(per_track) != 1 else ''}, a dot each){note}", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(axis="y", alpha=0.3)
    if per_track_panel:
        right = fig.add_subplot(grid[0, 1], sharey=ax)
        x = np.arange(len(per_track))
        for i, stem in enumerate(stems):
            right.plot(x, values[i], marker="o", linestyle="none", markersize=5, color=f"C{i % 10}", label=stem)
        right.set_xticks(x, names, rotation=60 if len(per_track) <= 20 else 90, ha="right" if len(per_track) <= 20 else "center",
                         fontsize=8 if len(per_track) > 20 else 9)
        right.set_title(f"{metric.upper()} per track", fontsize=11)
        right.grid(axis="y", alpha=0.3)
        right.tick_params(axis="y", labelsize=9)
        right.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def figure_png(fig, dpi: int = 100) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def spectrogram_jpeg(rows: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 2) -> bytes:
    """:func:`spectrogram_figure` as JPEG bytes (small enough to embed in an HTML report)."""
    from matplotlib import pyplot as plt

    fig = spectrogram_figure(rows, sample_rate, columns)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=100, pil_kwargs={"quality": 82})
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
