"""Training curves of finished runs: read ``logs/metrics.csv``, plot them overlaid, tabulate the best ``val/sdr``.

:func:`compare` is what ``python -m sepnet.compare`` runs: it finds every run
folder at or below the given ones, draws one PNG with three panels (training
loss, validation loss and validation SDR per epoch), writes a markdown table of
each run's best ``val/sdr`` beside it, and flags a run whose training loss kept
falling while its validation got worse (:mod:`sepnet.training.overfitting`).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from sepnet.app.run_dir import ensure_writable
from sepnet.atomic import write_text
from sepnet.errors import SepnetError
from sepnet.training.overfitting import Divergence, find_divergence

METRICS = Path("logs") / "metrics.csv"


@dataclass
class RunCurves:
    """Per-epoch curves of one run (NaN where an epoch has no value).

    Attributes:
        label: how the run is named in the plot and table.
        epochs: epochs with any value, ascending.
        train_loss: mean training loss per epoch (``train/loss_epoch``, else the mean of logged steps).
        val_loss, val_sdr: validation metrics per epoch.
    """

    label: str
    path: Path
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_sdr: list[float] = field(default_factory=list)

    def best(self) -> tuple[float, int] | None:
        """(best val/sdr, its epoch), or None when never validated."""
        scored = [(s, e) for s, e in zip(self.val_sdr, self.epochs) if not math.isnan(s)]
        return max(scored) if scored else None

    def divergence(self, patience: int) -> Divergence | None:
        validated = [i for i, s in enumerate(self.val_sdr) if not math.isnan(s) or not math.isnan(self.val_loss[i])]
        pick = lambda values: [values[i] for i in validated]
        return find_divergence(pick(self.epochs), pick(self.train_loss), pick(self.val_loss), pick(self.val_sdr), patience)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_curves(run_dir: Path, label: str) -> RunCurves:
    """A run's per-epoch curves from ``<run_dir>/logs/metrics.csv`` (Lightning's CSVLogger)."""
    path = run_dir / METRICS
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error) as exc:
        raise SepnetError(f"cannot read '{path}' ({exc}); is the run still writing it?") from None
    step_losses: dict[int, list[float]] = defaultdict(list)
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        epoch = int(epoch)
        for key in ("train/loss_epoch", "val/loss", "val/sdr"):
            value = _number(row.get(key))
            if value is not None:
                values[epoch][key] = value
        step_loss = _number(row.get("train/loss"))
        if step_loss is not None:
            step_losses[epoch].append(step_loss)
    curves = RunCurves(label, run_dir)
    for epoch in sorted(set(values) | set(step_losses)):
        v = values[epoch]
        steps = step_losses.get(epoch)
        train = v.get("train/loss_epoch", sum(steps) / len(steps) if steps else math.nan)
        curves.epochs.append(epoch)
        curves.train_loss.append(train)
        curves.val_loss.append(v.get("val/loss", math.nan))
        curves.val_sdr.append(v.get("val/sdr", math.nan))
    return curves


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders (holding ``logs/metrics.csv``) at or below ``paths``, in order, without repeats."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise SepnetError(f"'{path}' is not a folder; pass run folders (outputs/<run>/<time>) or a sweep folder")
        found = [path] if (path / METRICS).is_file() else sorted(p.parent.parent for p in path.rglob(str(METRICS)))
        if not found:
            raise SepnetError(f"no run under '{path}' has {METRICS}; train with the csv logger (logger=csv, the default)")
        runs += [r for r in found if r not in runs]
    return runs


def run_overrides(run: Path) -> list[str]:
    """The command-line overrides a run was started with (``.hydra/overrides.yaml``), or []."""
    overrides = run / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return []
    return [line.removeprefix("- ").strip() for line in overrides.read_text().splitlines() if line.startswith("- ")]


def run_labels(runs: list[Path], root: Path) -> list[str]:
    """Each run's folder relative to ``root``, plus the overrides not shared by all runs (what a sweep varied)."""
    overrides = [run_overrides(r) for r in runs]
    shared = set.intersection(*map(set, overrides)) if len(runs) > 1 else set().union(*map(set, overrides))
    labels = []
    for run, items in zip(runs, overrides):
        name = str(run.relative_to(root)) if run != root and run.is_relative_to(root) else run.name
        varied = [i for i in items if i not in shared]
        labels.append(f"{name} ({' '.join(varied)})" if varied else name)
    return labels


def plot(runs: list[RunCurves], divergences: list[Divergence | None], out: Path) -> Path:
    """Draw the three overlaid panels into ``out`` (PNG)."""
    fig = Figure(figsize=(16, 4.8))  # no pyplot: drawing a PNG leaves the process's backend and figures alone
    axes = fig.subplots(1, 3)
    panels = [("train_loss", "training loss (epoch mean)"), ("val_loss", "validation loss"), ("val_sdr", "val/sdr (dB)")]
    for index, (run, divergence) in enumerate(zip(runs, divergences)):
        colour = f"C{index % 10}"
        for ax, (attr, _) in zip(axes, panels):
            points = [(e, v) for e, v in zip(run.epochs, getattr(run, attr)) if not math.isnan(v)]
            if points:
                label = f"{run.label} [overfitting]" if divergence else run.label
                ax.plot(*zip(*points), marker=".", color=colour, label=label if attr == "val_sdr" else None)
        best = run.best()
        if best is not None:
            axes[2].plot([best[1]], [best[0]], marker="*", markersize=12, color=colour)
        if divergence is not None:
            for ax, attr in zip(axes, ("train_loss", "val_loss", "val_sdr")):
                values = dict(zip(run.epochs, getattr(run, attr)))
                if not math.isnan(values.get(divergence.flagged_epoch, math.nan)):
                    ax.plot([divergence.flagged_epoch], [values[divergence.flagged_epoch]], marker="x", markersize=11, color="red")
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8, loc="best")
    fig.suptitle("star: best val/sdr   red x: overfitting flagged (train loss falling, validation worse)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def table(runs: list[RunCurves], divergences: list[Divergence | None]) -> str:
    """Markdown table: run, best val/sdr, its epoch, epochs run, overfitting flag."""
    lines = ["| run | best val/sdr (dB) | best epoch | epochs | overfitting |", "|---|---|---|---|---|"]
    for run, divergence in zip(runs, divergences):
        best = run.best()
        sdr, epoch = (f"{best[0]:.2f}", str(best[1])) if best else ("-", "-")
        flag = (
            f"yes: {divergence.metric} worse since epoch {divergence.best_epoch} (flagged at {divergence.flagged_epoch})"
            if divergence
            else "no"
        )
        lines.append(f"| {run.label} | {sdr} | {epoch} | {len(run.epochs)} | {flag} |")
    return "\n".join(lines)


def compare(paths: list[str | Path], out: str | Path | None = None, patience: int = 3) -> tuple[Path, str]:
    """Plot and tabulate the runs at or below ``paths``; returns (PNG path, markdown table)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise SepnetError("no run folder given; usage: python -m sepnet.compare <run dirs or a sweep dir>")
    run_dirs = [r.resolve() for r in find_runs(paths)]
    # Labels are relative to the folder given, or to the deepest folder the runs share.
    root = paths[0].resolve() if len(paths) == 1 else Path(*_common_parts(run_dirs))
    runs = [read_curves(r, label) for r, label in zip(run_dirs, run_labels(run_dirs, root))]
    divergences = [run.divergence(patience) for run in runs]
    out = Path(out) if out else (paths[0] if len(paths) == 1 else Path.cwd()) / "compare.png"
    if out.is_dir():
        raise SepnetError(f"--out {out} is a folder; name the PNG to write, e.g. --out {out / 'compare.png'}")
    ensure_writable(out.parent, key="--out", value="<file.png>")
    plot(runs, divergences, out)
    markdown = table(runs, divergences)
    write_text(out.with_suffix(".md"), markdown + "\n")
    return out, markdown


def _common_parts(paths: list[Path]) -> tuple[str, ...]:
    parts = paths[0].parts
    for path in paths[1:]:
        n = 0
        while n < min(len(parts), len(path.parts)) and parts[n] == path.parts[n]:
            n += 1
        parts = parts[:n]
    return parts
