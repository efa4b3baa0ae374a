"""Training curves of finished runs: read ``logs/metrics.csv``, plot them overlaid, tabulate the best ``val/sdr``.

:func:`compare` is what ``python -m sepnet.compare`` runs: it finds every run
folder at or below the given ones, draws one PNG with three panels against the
optimiser step (training loss per logged step, smoothed, with the raw trace faint;
validation loss and validation SDR at the steps they were measured), writes the
plotted series as JSON and a markdown table of each run's best ``val/sdr`` beside
it, and flags a run whose training loss kept falling while its validation got
worse (:mod:`sepnet.training.overfitting`). Plotting against steps, a one-epoch
run is a curve (``train/loss`` is logged every ``trainer.log_every_n_steps``), not
one dot per run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from sepnet.app.run_dir import ensure_writable
from sepnet.atomic import write_text
from sepnet.errors import SepnetError, printable
from sepnet.evaluation.divergence import Divergence, find_divergence

log = logging.getLogger(__name__)

METRICS = Path("logs") / "metrics.csv"
TENSORBOARD = Path("tensorboard")
LABEL_CHARS = 160
"""A run's label (its folder and the overrides it varied) is cut to this many characters."""


@dataclass
class RunCurves:
    """The curves of one run: per epoch (the table, the overfitting check) and per optimiser step (the plot).

    Attributes:
        label: how the run is named in the plot and table.
        epochs: epochs with any value, ascending.
        epoch_steps: the optimiser step each epoch's values were logged at (its end).
        train_loss: mean training loss per epoch (``train/loss_epoch``, else the mean of logged steps).
        val_loss, val_sdr: validation metrics per epoch (NaN where an epoch has none).
        steps, step_loss: ``train/loss`` at each step it was logged (every ``trainer.log_every_n_steps``).
        loss: the loss class it trained with (``MaskBCELoss``), or None when its config is not there.
    """

    label: str
    path: Path
    epochs: list[int] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_sdr: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    loss: str | None = None

    def best(self) -> tuple[float, int] | None:
        """(best val/sdr, its epoch), or None when never validated."""
        scored = [(s, e) for s, e in zip(self.val_sdr, self.epochs) if not math.isnan(s)]
        return max(scored) if scored else None

    def step_of(self, epoch: int) -> int:
        return self.epoch_steps[self.epochs.index(epoch)]

    def divergence(self, patience: int) -> Divergence | None:
        validated = [i for i, s in enumerate(self.val_sdr) if not math.isnan(s) or not math.isnan(self.val_loss[i])]
        pick = lambda values: [values[i] for i in validated]
        return find_divergence(pick(self.epochs), pick(self.train_loss), pick(self.val_loss), pick(self.val_sdr), patience)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _count(text: str | None) -> int | None | bool:
    """An epoch or step cell: its whole number, None when empty, False when it is no finite number."""
    value = _number(text)
    if value is None:
        return None if text in (None, "") else False
    return int(value) if math.isfinite(value) else False


def read_curves(run_dir: Path, label: str) -> RunCurves:
    """A run's curves from ``<run_dir>/logs/metrics.csv`` (Lightning's CSVLogger: one row per logging call), or,
    for a run logged with ``logger=tensorboard`` only, from its event files (``<run_dir>/tensorboard/``).

    A row whose epoch or step is not a finite number (``inf``, ``nan``, text) is skipped, and one warning
    line names the file and how many rows that was."""
    path = run_dir / METRICS
    if not path.is_file() and tensorboard_events(run_dir):
        curves = curves_from_rows(tensorboard_rows(run_dir), run_dir, label, run_dir / TENSORBOARD)
    else:
        try:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except UnicodeDecodeError:
            raise SepnetError(f"'{printable(path)}' is not a text CSV file; it should be the metrics.csv a run's csv logger writes") from None
        except (OSError, csv.Error) as exc:
            raise SepnetError(f"cannot read '{printable(path)}' ({printable(exc, 200)}); is the run still writing it?") from None
        curves = curves_from_rows(rows, run_dir, label, path)
    curves.loss = loss_kind(run_dir)
    return curves


def tensorboard_events(run_dir: Path) -> list[Path]:
    """The TensorBoard event files of a run (``logger=tensorboard`` writes ``<run>/tensorboard/events.out.tfevents.*``)."""
    folder = run_dir / TENSORBOARD
    return sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []


def tensorboard_rows(run_dir: Path) -> list[dict]:
    """The run's scalars from its event files, as metrics.csv rows: ``{"epoch", "step", <tag>: value}`` strings.

    Lightning logs an ``epoch`` scalar beside every logging call; a value's epoch is the one logged at its step."""
    require_tensorboard = "reading a run logged with logger=tensorboard needs the tensorboard extra: pip install 'sepnet[tensorboard]'"
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise SepnetError(require_tensorboard) from None
    rows: list[dict] = []
    for events in tensorboard_events(run_dir):
        try:
            accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
            accumulator.Reload()
            tags = accumulator.Tags().get("scalars", [])
            epochs = {e.step: e.value for e in accumulator.Scalars("epoch")} if "epoch" in tags else {}
            for tag in tags:
                if tag == "epoch" or tag not in ("train/loss", "train/loss_epoch", "val/loss", "val/sdr"):
                    continue
                for event in accumulator.Scalars(tag):
                    epoch = epochs.get(event.step)
                    rows.append({"epoch": "" if epoch is None else str(int(epoch)), "step": str(event.step), tag: repr(event.value)})
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign event file: one line naming it
            raise SepnetError(f"cannot read the TensorBoard events '{printable(events)}' ({printable(exc, 200)}); is the run still writing them?") from None
    return rows


def loss_kind(run_dir: Path) -> str | None:
    """The loss class a run trained with (``MaskBCELoss``), from its resolved config; None when unknown."""
    for name in ("config_resolved.yaml", ".hydra/config.yaml"):
        try:
            text = (run_dir / name).read_text()
        except (OSError, ValueError):
            continue
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.rstrip() == "loss:":
                for inner in lines[i + 1 :]:
                    if not inner.startswith(" "):
                        break
                    key, _, value = inner.strip().partition(":")
                    if key == "_target_":
                        return printable(value.strip().rpartition(".")[2], 60) or None
        return None
    return None


def curves_from_rows(rows: list[dict], run_dir: Path, label: str, path: Path) -> RunCurves:
    """:class:`RunCurves` from metrics rows (metrics.csv's, or :func:`tensorboard_rows`)."""
    step_losses: dict[int, list[float]] = defaultdict(list)
    values: dict[int, dict[str, float]] = defaultdict(dict)
    last_step: dict[int, int] = {}
    curves = RunCurves(label, run_dir)
    skipped = 0
    for row in rows:
        epoch, step = _count(row.get("epoch")), _count(row.get("step"))
        if epoch is False or step is False:
            skipped += 1
            continue
        if epoch is None:
            continue
        for key in ("train/loss_epoch", "val/loss", "val/sdr"):
            value = _number(row.get(key))
            if value is not None:
                values[epoch][key] = value
                if step is not None:
                    last_step[epoch] = max(step, last_step.get(epoch, step))
        step_loss = _number(row.get("train/loss"))
        if step_loss is not None:
            step_losses[epoch].append(step_loss)
            if step is not None:
                curves.steps.append(step)
                curves.step_loss.append(step_loss)
                last_step.setdefault(epoch, step)
    for epoch in sorted(set(values) | set(step_losses)):
        v = values[epoch]
        steps = step_losses.get(epoch)
        train = v.get("train/loss_epoch", sum(steps) / len(steps) if steps else math.nan)
        curves.epochs.append(epoch)
        curves.epoch_steps.append(last_step.get(epoch, epoch))
        curves.train_loss.append(train)
        curves.val_loss.append(v.get("val/loss", math.nan))
        curves.val_sdr.append(v.get("val/sdr", math.nan))
    if skipped:
        log.warning("compare: %s: skipped %d row%s whose epoch or step is not a finite number", printable(path), skipped,
                    "s" if skipped != 1 else "")
    return curves


def _is_run(folder: Path) -> bool:
    return (folder / METRICS).is_file() or bool(tensorboard_events(folder))


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders (holding ``logs/metrics.csv`` or ``tensorboard/`` event files) at or below ``paths``, in order,
    without repeats."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise SepnetError(f"'{path}' is not a folder; pass run folders (outputs/<run>/<time>) or a sweep folder")
        if _is_run(path):
            found = [path]
        else:
            below = {p.parent.parent for p in path.rglob(str(METRICS))}
            below |= {p.parent.parent for p in path.rglob(f"{TENSORBOARD}/events.out.tfevents.*")}
            found = sorted(below)
        if not found:
            raise SepnetError(
                f"no run under '{path}' has {METRICS} or {TENSORBOARD}/ event files; train with logger=csv (the default) "
                f"or logger=tensorboard"
            )
        runs += [r for r in found if r not in runs]
    return runs


def run_overrides(run: Path) -> list[str]:
    """The command-line overrides a run was started with (``.hydra/overrides.yaml``), or []."""
    overrides = run / ".hydra" / "overrides.yaml"
    try:
        text = overrides.read_text() if overrides.is_file() else ""
    except (OSError, ValueError):  # unreadable, or not text: the label only loses the overrides
        return []
    return [line.removeprefix("- ").strip() for line in text.splitlines() if line.startswith("- ")]


def run_labels(runs: list[Path], root: Path) -> list[str]:
    """Each run's folder relative to ``root``, plus the overrides not shared by all runs (what a sweep varied)."""
    overrides = [run_overrides(r) for r in runs]
    shared = set.intersection(*map(set, overrides)) if len(runs) > 1 else set().union(*map(set, overrides))
    labels = []
    for run, items in zip(runs, overrides):
        name = str(run.relative_to(root)) if run != root and run.is_relative_to(root) else run.name
        varied = [i for i in items if i not in shared]
        labels.append(printable(f"{name} ({' '.join(varied)})" if varied else name, LABEL_CHARS))  # names may hold ANSI codes
    return labels


def smooth(values: list[float]) -> list[float]:
    """Exponential moving average of ``values``, bias-corrected (no pull towards 0 at the start, as in
    TensorBoard), over a span of about an eighth of the trace (2 to 50 points)."""
    span = min(50.0, max(2.0, len(values) / 8))
    keep = 1 - 2 / (span + 1)
    out, average, weight = [], 0.0, 0.0
    for value in values:
        if math.isfinite(value):
            average = keep * average + (1 - keep) * value
            weight = keep * weight + (1 - keep)
        out.append(average / weight if weight else math.nan)
    return out


def plotted_series(run: RunCurves, divergence: Divergence | None) -> dict:
    """What :func:`draw` plots for ``run``, against the optimiser step: ``train_loss`` (per logged step,
    raw and smoothed; epoch means when no step was logged), ``val_loss``, ``val_sdr``, ``best`` and
    ``overfitting`` (the flagged epoch's step) or None."""
    if run.steps:
        train = {"source": "train/loss", "step": run.steps, "raw": run.step_loss, "smoothed": smooth(run.step_loss)}
    else:
        points = [(st, v) for st, v in zip(run.epoch_steps, run.train_loss) if not math.isnan(v)]
        train = {"source": "train/loss_epoch", "step": [p[0] for p in points], "raw": [p[1] for p in points], "smoothed": None}

    def at_steps(values: list[float]) -> dict:
        points = [(st, v) for st, v in zip(run.epoch_steps, values) if not math.isnan(v)]
        return {"step": [p[0] for p in points], "value": [p[1] for p in points]}

    best = run.best()
    flagged = None
    if divergence is not None and divergence.flagged_epoch in run.epochs:
        flagged = {"epoch": divergence.flagged_epoch, "step": run.step_of(divergence.flagged_epoch)}
    return {
        "label": run.label,
        "loss": run.loss,
        "train_loss": train,
        "val_loss": at_steps(run.val_loss),
        "val_sdr": at_steps(run.val_sdr),
        "best": {"val_sdr": best[0], "epoch": best[1], "step": run.step_of(best[1])} if best else None,
        "overfitting": flagged,
    }


LEGEND_CHARS = 70
"""A legend entry is wrapped at this many characters a line (the table, ``compare.md``, has the whole label)."""


def loss_kinds(series: list[dict]) -> list[str | None]:
    """The loss classes of the runs, in order of first appearance (None: a run whose config is gone)."""
    kinds: list[str | None] = []
    for run in series:
        if run.get("loss") not in kinds:
            kinds.append(run.get("loss"))
    return kinds


def _kind_name(kind: str | None) -> str:
    return kind if kind else "loss not recorded"


def draw(series: list[dict]) -> Figure:
    """Panels against the optimiser step, every run overlaid: training loss (raw faint, smoothed solid) and
    validation loss, one pair per loss class (a BCE and a magnitude MSE are not on one axis), and validation
    SDR (star: the best). The legend sits below the panels, each run's label wrapped, so no label squashes
    a panel or covers a curve."""
    import textwrap

    kinds = loss_kinds(series)
    rows = len(kinds)
    fig = Figure(figsize=(16, 3.6 * rows + 1.2), layout="constrained")  # no pyplot: the process's backend stays alone
    grid = fig.add_gridspec(rows, 3)
    loss_axes: dict[str | None, tuple] = {}
    sdr_axis = None
    for row, kind in enumerate(kinds):
        train_ax = fig.add_subplot(grid[row, 0])
        val_ax = fig.add_subplot(grid[row, 1])
        if sdr_axis is None:
            sdr_axis = fig.add_subplot(grid[:, 2])
        loss_axes[kind] = (train_ax, val_ax)
    handles, labels = [], []
    last = 0
    for index, run in enumerate(series):
        colour = f"C{index % 10}"
        label = f"{run['label']} [overfitting]" if run["overfitting"] else run["label"]
        train_ax, val_ax = loss_axes[run.get("loss")]
        train = run["train_loss"]
        if train["smoothed"] is not None:
            train_ax.plot(train["step"], train["raw"], color=colour, alpha=0.25, linewidth=0.8)
            train_ax.plot(train["step"], train["smoothed"], color=colour, linewidth=1.6)
        elif train["step"]:
            train_ax.plot(train["step"], train["raw"], color=colour, marker="o", markersize=4)
        for ax, key in ((val_ax, "val_loss"), (sdr_axis, "val_sdr")):
            if run[key]["step"]:
                ax.plot(run[key]["step"], run[key]["value"], color=colour, marker="o", markersize=4)
        if run["best"] is not None:
            sdr_axis.plot([run["best"]["step"]], [run["best"]["val_sdr"]], marker="*", markersize=13, color=colour)
        if run["overfitting"] is not None:
            step = run["overfitting"]["step"]
            for ax, key in ((val_ax, "val_loss"), (sdr_axis, "val_sdr")):
                points = dict(zip(run[key]["step"], run[key]["value"]))
                if step in points:
                    ax.plot([step], [points[step]], marker="x", markersize=11, color="red")
        last = max([last, *train["step"], *run["val_loss"]["step"], *run["val_sdr"]["step"]])
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=colour, marker="o", markersize=5, linewidth=1.6))
        wrapped = "\n".join(textwrap.wrap(label, LEGEND_CHARS, break_on_hyphens=False)) or label
        labels.append(f"{index + 1}. {wrapped}" if len(series) > 1 else wrapped)
    axes = []
    for kind, (train_ax, val_ax) in loss_axes.items():
        named = f" ({_kind_name(kind)})" if kind or len(kinds) > 1 else ""
        train_ax.set_title(f"training loss{named}", fontsize=10)
        val_ax.set_title(f"validation loss{named}", fontsize=10)
        axes += [train_ax, val_ax]
    sdr_axis.set_title("val/sdr (dB)", fontsize=10)
    for ax in [*axes, sdr_axis]:
        ax.set_xlabel("optimiser step")
        ax.set_xlim(0, max(1.0, last * 1.04))  # steps start at 0; a single point does not get a +-0.04 axis
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    longest = max((max(len(line) for line in lab.splitlines()) for lab in labels), default=1)
    fig.legend(handles, labels, loc="outside lower center", ncol=max(1, min(len(labels), 150 // max(longest, 20))),
               fontsize=8, frameon=False)
    note = "training loss: faint each logged step, solid smoothed   star: best val/sdr   red x: overfitting flagged"
    if len(kinds) > 1:
        note += "   one row per loss: losses of different kinds are not comparable"
    fig.suptitle(note, fontsize=9)
    return fig


def _finite(value):
    """``value`` with NaN and infinities as None: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def plot(runs: list[RunCurves], divergences: list[Divergence | None], out: Path) -> Path:
    """Draw the panels into ``out`` (PNG) and the plotted series into ``out`` with ``.json``."""
    series = [plotted_series(run, divergence) for run, divergence in zip(runs, divergences)]
    out.parent.mkdir(parents=True, exist_ok=True)
    draw(series).savefig(out, dpi=100)
    write_text(out.with_suffix(".json"), json.dumps(_finite(series), indent=1, allow_nan=False))
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
        lines.append(f"| {run.label.replace('|', chr(92) + '|')} | {sdr} | {epoch} | {len(run.epochs)} | {flag} |")
    return "\n".join(lines)


def compare(
    paths: list[str | Path], out: str | Path | None = None, patience: int = 3, out_key: str = "--out"
) -> tuple[Path, str]:
    """Plot and tabulate the runs at or below ``paths``; returns (PNG path, markdown table).

    ``out`` is the PNG to write, or a folder to write ``compare.png`` into (default: the one
    folder given, else the working folder); ``compare.md`` and ``compare.json`` (the plotted
    series) go beside it. ``out_key`` names the setting in messages (``--out`` or ``out``).
    """
    paths = [Path(p).expanduser() for p in paths]
    if not paths:
        raise SepnetError("no run folder given; usage: python -m sepnet.compare runs=[<run or sweep dir>,...] [out=<folder>]")
    run_dirs = [r.resolve() for r in find_runs(paths)]
    # Labels are relative to the folder given, or to the deepest folder the runs share.
    root = paths[0].resolve() if len(paths) == 1 else Path(*_common_parts(run_dirs))
    runs = [read_curves(r, label) for r, label in zip(run_dirs, run_labels(run_dirs, root))]
    divergences = [run.divergence(patience) for run in runs]
    out = Path(out).expanduser() if out is not None else (paths[0] if len(paths) == 1 else Path.cwd())
    if out.is_dir() or not out.suffix:
        out = out / "compare.png"
    ensure_writable(out.parent, key=out_key, value="<file.png>" if out_key.startswith("-") else "<folder or file.png>")
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
