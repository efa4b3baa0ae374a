"""Dataset inspection behind ``python -m sepnet.check_data``: measure every track as training reads it.

One row per track: duration, the files' sample rate(s) and channel count(s), peak /
RMS (dBFS) and share of silent frames per stem, clipped samples, the residual
between the mixture file and the sum of the stems (dB relative to the mixture), and
where the track's beats come from (``beats.txt``, ``librosa:drums`` or
``librosa:mixture``, with their count; tracked, and cached, only when the data reads
beats: ``data.beats=true``, which multi-task models set); then a summary, and every
warning and error in full. Tracks are read by
:meth:`SeparationDataModule.read_track`, through the training cache, so the same stem
checks apply and a check also warms the cache. ``plot_batch`` draws one augmented
training batch as the model sees it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from sepnet.app.progress import progress
from sepnet.app.run_dir import ensure_writable
from sepnet.audio.io import audio_info
from sepnet.data.datamodule import SeparationDataModule
from sepnet.data.sources import TrackFiles
from sepnet.errors import SepnetError

log = logging.getLogger(__name__)

REQUIRED_SPLITS = ("train", "valid")


@dataclass
class StemStats:
    """Level figures of one stem at the model's rate."""

    peak_db: float
    rms_db: float
    silent: float  # share of frames below the silence threshold, 0..1


@dataclass
class TrackReport:
    """What :func:`check_track` found in one track."""

    split: str
    name: str
    duration: float = math.nan
    rates: list[int] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    stems: dict[str, StemStats] = field(default_factory=dict)
    clipped: int = 0
    residual_db: float | None = None
    beat_source: str | None = None  # one of sepnet.data.beats.BEAT_SOURCES; None: beats not read
    beat_count: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        return "ERROR" if self.error else ("warn" if self.warnings else "ok")


@dataclass
class Thresholds:
    """What counts as silent, clipped or a mismatched mixture (``conf/check_data.yaml``)."""

    silence_db: float = -60.0
    frame_seconds: float = 0.1
    clip_level: float = 0.999
    residual_warn_db: float = -30.0
    min_seconds: float = 0.0  # shorter tracks are left out of training


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 0 else -math.inf


def stem_stats(audio: np.ndarray, sample_rate: int, limits: Thresholds) -> StemStats:
    """Peak and RMS in dBFS and the share of silent frames of ``(channels, samples)`` audio."""
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(audio).max())
    frame = max(1, round(limits.frame_seconds * sample_rate))
    n_frames = max(1, audio.shape[-1] // frame)
    frames = audio[:, : n_frames * frame].reshape(audio.shape[0], n_frames, -1) if audio.shape[-1] >= frame else audio[:, None]
    frame_power = (frames.astype(np.float64) ** 2).mean(axis=(0, 2))
    silent = float((frame_power < 10 ** (limits.silence_db / 10)).mean())
    return StemStats(20 * math.log10(peak) if peak > 0 else -math.inf, _db(float((audio.astype(np.float64) ** 2).mean())), silent)


def _header(path: Path, stream: int | None) -> tuple[int, int]:
    """(sample rate, channels) of a file or a stream of it, from the header only."""
    info = audio_info(path, stream)
    return info.sample_rate, info.channels


def check_track(split: str, files: TrackFiles, datamodule: SeparationDataModule, limits: Thresholds) -> TrackReport:
    """Decode one track as training reads it (:meth:`SeparationDataModule.read_track`) and measure it.

    Errors and warnings are recorded in the report, not raised, whatever ``data.on_error`` says.
    """
    report = TrackReport(split, files.name)
    stems, cache = datamodule.stems, datamodule.audio_cache()
    rate = cache.sample_rate
    try:
        errors: list[str] = []
        track = datamodule.read_track(
            files, skipped=errors, warn=report.warnings.append, on_error="skip", beats=datamodule.beats
        )
        if track is None:
            report.error = errors[0].removeprefix(f"{files.name} (").removesuffix(")")
            return report
        headers = {stem: _header(files.stems[stem], files.streams.get(stem)) for stem in stems}
        mixture = None
        if files.mixture is not None:
            headers["mixture"] = _header(files.mixture, files.streams.get("mixture"))
            mixture = cache.load(files.mixture, files.streams.get("mixture"))
    except SepnetError as exc:
        report.error = str(exc)
        return report

    report.duration = track.samples / rate
    if track.beats is not None:
        report.beat_source, report.beat_count = track.beat_source, len(track.beats)
        if not len(track.beats):
            report.warnings.append(f"no beats found ({track.beat_source}): the rhythm head gets no beat target here")
    report.rates = sorted({r for r, _ in headers.values()})
    report.channels = sorted({c for _, c in headers.values()})
    for stem, audio in zip(stems, track.stems):
        report.stems[stem] = stats = stem_stats(audio, rate, limits)
        if stats.silent >= 1.0:
            report.warnings.append(f"{stem} is silent throughout (below {limits.silence_db:g} dBFS)")
        report.clipped += int((np.abs(audio) >= limits.clip_level).sum())
    mono = [name for name, (_, channels) in headers.items() if channels == 1]
    if mono:
        report.warnings.append(f"mono file(s) read as fake stereo: {', '.join(mono)}")
    surround = [f"{name} ({channels} ch)" for name, (_, channels) in headers.items() if channels > 2]
    if surround:
        report.warnings.append(f"file(s) downmixed to stereo (ITU-R BS.775): {', '.join(surround)}")
    if len(report.rates) > 1:
        detail = ", ".join(f"{name} {r} Hz" for name, (r, _) in headers.items())
        report.warnings.append(f"mixed sample rates ({detail}); all resampled to {rate} Hz")
    if mixture is not None:
        report.clipped += int((np.abs(mixture) >= limits.clip_level).sum())
        length = min(mixture.shape[-1], track.samples)
        mix = np.asarray(mixture[:, :length], dtype=np.float64)
        total = sum(np.asarray(s[:, :length], dtype=np.float64) for s in track.stems)
        report.residual_db = _db(float(((mix - total) ** 2).sum())) - _db(float((mix**2).sum()))
        if report.residual_db > limits.residual_warn_db:
            report.warnings.append(
                f"mixture differs from the sum of the stems by {report.residual_db:.1f} dB "
                f"(> {limits.residual_warn_db:g} dB): are the stems complete and aligned?"
            )
    if report.clipped:
        report.warnings.append(f"{report.clipped} clipped sample(s) (|x| >= {limits.clip_level:g})")
    if report.duration < limits.min_seconds:
        report.warnings.append(
            f"{report.duration:.2f} s is shorter than one training chunk ({limits.min_seconds:g} s): left out of training"
        )
    return report


# -- printing ------------------------------------------------------------------


def _fmt_db(value: float | None, width: int) -> str:
    if value is None:
        return "-".rjust(width)
    return ("-inf" if value == -math.inf else f"{value:.1f}").rjust(width)


def _stem_cell(stats: StemStats | None) -> str:
    if stats is None:
        return f"{'':>17}"
    return f"{_fmt_db(stats.peak_db, 5)}/{_fmt_db(stats.rms_db, 5)}/{stats.silent * 100:3.0f}%"


def format_table(reports: list[TrackReport], stems: list[str]) -> list[str]:
    """One line per track, under a two-line header."""
    name_width = max([5, *(len(r.name) for r in reports)])
    head = f"{'split':<6}{'track':<{name_width + 2}}{'dur s':>7}{'rate':>13}{'ch':>5}  "
    head += "".join(f"{stem + ' pk/rms/sil':>18}" for stem in stems)
    head += f"{'clip':>7}{'resid dB':>10}  {'beats':<21}status"
    lines = [head, "-" * len(head)]
    for r in reports:
        rates = "/".join(str(x) for x in r.rates) or "-"
        channels = "/".join(str(x) for x in r.channels) or "-"
        duration = "-" if math.isnan(r.duration) else f"{r.duration:.2f}"
        line = f"{r.split:<6}{r.name:<{name_width + 2}}{duration:>7}{rates:>13}{channels:>5}  "
        line += "".join(f" {_stem_cell(r.stems.get(stem))}" for stem in stems)
        clipped = "-" if r.error else str(r.clipped)
        beats = f"{r.beat_source} ({r.beat_count})" if r.beat_source else "-"
        line += f"{clipped:>7}{_fmt_db(r.residual_db, 10)}  {beats:<21}{r.status}"
        lines.append(line)
    return lines


def beat_summary(reports: list[TrackReport], beats_read: bool) -> str:
    """One line: how many tracks got their beats from where (or why none were read)."""
    if not beats_read:
        return "beats: not read (data.beats=false); multi-task models (model=unet_crnn_mtl) read them: add data.beats=true"
    counts: dict[str, int] = {}
    for r in reports:
        if r.beat_source:
            counts[r.beat_source] = counts.get(r.beat_source, 0) + 1
    return "beats: " + (", ".join(f"{n} from {source}" for source, n in counts.items()) or "none")


def summary_lines(reports: list[TrackReport], notes: list[str], rate: int) -> list[str]:
    splits = {}
    for r in reports:
        splits[r.split] = splits.get(r.split, 0) + 1
    errors = [r for r in reports if r.error]
    warned = [r for r in reports if not r.error and r.warnings]
    minutes = sum(r.duration for r in reports if not r.error) / 60
    lines = [
        (
            f"{len(reports)} tracks ({', '.join(f'{s} {n}' for s, n in splits.items())}), {minutes:.1f} min of audio "
            f"at {rate} Hz: {len(reports) - len(errors) - len(warned)} ok, {len(warned)} with warnings, "
            f"{len(errors)} with errors"
        )
    ]
    lines += [f"note: {note}" for note in notes]
    lines += [f"ERROR {r.split}/{r.name}: {r.error}" for r in errors]
    lines += [f"warning {r.split}/{r.name}: {w}" for r in reports for w in r.warnings]
    return lines


# -- the batch plot ------------------------------------------------------------


def plot_batch(cfg: DictConfig, datamodule: SeparationDataModule, path: Path, examples: int = 4) -> Path:
    """Write a PNG of the first training batch of epoch 0 as the model sees it.

    One row per example (channel means): the normalised model input of the
    mixture, then ``log1p|X|`` of the mixture and of each target stem on one
    colour scale per row (a silenced stem is black). Titles name the track(s)
    and any silencing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors
    import matplotlib.pyplot as plt
    import torch

    datamodule.setup("fit")
    front_end = instantiate(cfg.frontend)
    with torch.no_grad():
        front_end.fit_statistics(datamodule.statistics_waveforms())
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(0)
        batch = next(iter(loader))
        model_input, _ = front_end(batch["mixture"])
        targets = [datamodule.stems.index(s) for s in datamodule.target_stems]
        target_mag = front_end.log_magnitude(front_end.stft(batch["stems"][:, targets]))
        mixture_mag = front_end.log_magnitude(front_end.stft(batch["mixture"]))
    n = min(examples, model_input.shape[0])
    cols = 2 + len(targets)
    fig, axes = plt.subplots(n, cols, figsize=(3.0 * cols, 2.3 * n), squeeze=False, constrained_layout=True)
    seconds = batch["mixture"].shape[-1] / front_end.sample_rate
    top_khz = front_end.sample_rate / 2000 * front_end.n_bins / (front_end.n_fft // 2 + 1)
    extent = (0, seconds, 0, top_khz)
    others = [i for i in range(len(datamodule.stems)) if i not in targets]
    for row in range(n):
        name = batch["track"][row]
        name = name if len(name) <= 34 else name[:31] + "..."
        stems = batch["stems"][row]
        if not stems[targets].any():
            event = "targets silenced"
        elif others and not stems[others].any():
            event = "others silenced"
        else:
            event = ""
        # log1p|X| panels share one colour scale per row, so a silenced stem shows black.
        norm = matplotlib.colors.PowerNorm(0.5, vmin=0.0, vmax=max(float(mixture_mag[row].max()), 1e-6))
        panels = [("model input (normalised)", model_input[row].mean(0), "coolwarm", None)]
        panels += [("mixture log1p|X|", mixture_mag[row].mean(0), "magma", norm)]
        panels += [
            (f"target {datamodule.target_stems[i]} log1p|X|", target_mag[row, i].mean(0), "magma", norm)
            for i in range(len(targets))
        ]
        for col, (title, image, cmap, colour_norm) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image.numpy(), origin="lower", aspect="auto", cmap=cmap, extent=extent, norm=colour_norm)
            label = f"{name}{' | ' + event if event else ''}\n{title}" if col == 0 else f"\n{title}"
            ax.set_title(label, fontsize=8, loc="left")
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel("kHz", fontsize=7)
            if row == n - 1:
                ax.set_xlabel("s", fontsize=7)
    augment = cfg.get("augment")
    fig.suptitle(
        f"one training batch, epoch 0 (augment={cfg.check.augment_name}, remix_prob="
        f"{augment.remix_prob if augment is not None else 0})",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the entry point -----------------------------------------------------------


def run_check(cfg: DictConfig) -> int:
    """Check the dataset ``cfg.data`` describes; print the report; return the exit status (0 or 1)."""
    datamodule: SeparationDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.check_stems()
    cache = datamodule.audio_cache()
    limits = Thresholds(
        silence_db=cfg.check.silence_db,
        frame_seconds=cfg.check.frame_seconds,
        clip_level=cfg.check.clip_level,
        residual_warn_db=cfg.check.residual_warn_db,
        min_seconds=cfg.data.chunk_seconds,
    )
    reports, notes = [], []
    for split in cfg.check.splits:
        try:
            track_files = datamodule.source.tracks(split, datamodule.stems)
        except SepnetError as exc:
            if split in REQUIRED_SPLITS:
                reports.append(TrackReport(split, "(split)", error=str(exc)))
            else:
                notes.append(f"no {split} split: {exc}")
            continue
        if not track_files:
            message = f"{datamodule.source.describe(split)} holds no track folders"
            if split in REQUIRED_SPLITS:
                reports.append(TrackReport(split, "(split)", error=message))
            else:
                notes.append(message)
        for files in progress(track_files, f"check_data {split}"):
            reports.append(check_track(split, files, datamodule, limits))

    print(f"data: {datamodule.source.describe('train')} | stems {', '.join(datamodule.stems)}"
          f" | targets {', '.join(datamodule.target_stems)} | cache {cache.folder} "
          f"({cache.decoded} decoded, {cache.reused} reused"
          + (f"; beats of {cache.beats_tracked} tracks tracked, {cache.beats_reused} reused)" if datamodule.beats else ")"))
    for line in format_table(reports, datamodule.stems):
        print(line)
    print()
    notes.append(beat_summary(reports, datamodule.beats))
    for line in summary_lines(reports, notes, datamodule.sample_rate):
        print(line)

    if cfg.get("plot", False):
        with open_dict(cfg):
            cfg.data.on_error = "skip"
        plotted = instantiate(cfg.data)
        path = plot_batch(cfg, plotted, ensure_writable(Path(cfg.paths.output_dir)) / "batch.png")
        print(f"batch plot: {path}")
    return 1 if any(r.error for r in reports) else 0
