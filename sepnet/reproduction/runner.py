"""Running the research log's chain: each step as its real entry point in a subprocess, and the table.

:func:`run_chain` runs the steps of :data:`sepnet.reproduction.chain.CHAIN` that ``cfg.reproduce``
selects, in dependency order, with the budget's overrides, and rewrites ``reproduce.md`` /
``reproduce.csv`` under the chain's root after every step (see ``python -m sepnet.reproduce``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import sepnet
from sepnet.app.configs import hydra_value
from sepnet.app.progress import progress
from sepnet.app.tables import markdown_table, write_csv
from sepnet.atomic import write_text
from sepnet.checkpoints.parents import BEST, resolve_run_checkpoint
from sepnet.errors import SepnetError
from sepnet.evaluation.lineage_drawing import write_lineage
from sepnet.reproduction.chain import (
    CHAIN,
    EVALUATE,
    MERGE,
    TRAIN,
    Step,
    documented_sdr,
    experiment_size,
    loads_whole_parent,
    step_parents,
)  # fmt: skip
from sepnet.reproduction.claims import check_claims

FINE_TUNE = "fine_tune"
"""A budget's overrides for train steps that start from all of a parent's weights, after its ``train`` ones."""
STAMP = "%Y-%m-%d_%H-%M-%S"
"""Run folder names, as Hydra's (``init.from_run`` takes the newest by name)."""

CLAIM_HEADERS = ["claim", "the log", "sepnet measured", "verdict"]
TABLE_HEADERS = ["step", "kind", "parent(s)", "sepnet SDR (dB)", "vocals (dB)", "measured as", "documented SDR"]
CSV_HEADERS = [
    "step", "kind", "parents", "sdr", "sdr_vocals", "measured", "documented", "documented_sdr", "seconds", "output",
]  # fmt: skip


@dataclass
class Row:
    """One line of the table: a step (or one job of a sweep step) and its result."""

    step: str
    kind: str
    parents: str
    sdr: float | None  # mean over the model's target stems
    vocals: float | None  # the log's figures are vocals SDRs
    measured: str
    documented: str
    seconds: float
    output: str  # the step's run dir, relative to the reproduce root


class StepFailed(SepnetError):
    """A step's subprocess exited non-zero (its one line names the step and its log)."""


# -- choosing the steps -------------------------------------------------------------------


def select_steps(names: list[str] | None) -> list[Step]:
    """The chain's steps named in ``names`` (all when None), in chain order."""
    if names is None:
        return list(CHAIN)
    known = [s.name for s in CHAIN]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SepnetError(f"reproduce.steps: {unknown[0]} is not a step of the chain; steps are: {', '.join(known)}")
    return [s for s in CHAIN if s.name in names]


def check_parents(steps: list[Step], root: Path) -> None:
    """Every parent is an earlier selected step or a run already finished under ``root``; else one line."""
    done: set[str] = set()
    for step in steps:
        for parent in step_parents(step):
            if parent in done:
                continue
            try:
                resolve_run_checkpoint(parent, root)
            except SepnetError:
                raise SepnetError(
                    f"step {step.name} needs {parent}, which is neither in reproduce.steps nor finished under "
                    f"'{root}'; add {parent} to reproduce.steps or set paths.outputs_root to a reproduce root that has it"
                ) from None
        done.add(step.name)


# -- commands -----------------------------------------------------------------------------------


def knob_label(overrides: tuple[str, ...] | list[str]) -> str:
    """``("eval.mask_scale=1.2",) -> "mask_scale=1.2"``."""
    return " ".join(o.removeprefix("eval.") for o in overrides)


class ChainRunner:
    """Builds and runs each step's command under ``root`` and reads its result back.

    Args:
        root: the reproduce root (``paths.outputs_root`` of every step).
        overrides: ``{"data"|"train"|"fine_tune"|"merge"|"evaluate": [override, ...]}``, budget then user's.
        model_size: the named size (``tiny``) every train step's model takes from its conf/model
            YAML (:func:`budget_model_size`), before ``train``'s overrides; None: the configured size.
        dry_run: print the commands instead of running them.
    """

    def __init__(
        self, root: Path, overrides: dict[str, list[str]], model_size: str | None = None, dry_run: bool = False
    ):
        self.root, self.overrides, self.dry_run = root, overrides, dry_run
        self.model_size = model_size
        self.python = sys.executable
        # Children import this very sepnet (a worktree's, not whichever one is installed).
        package_root = str(Path(sepnet.__file__).resolve().parent.parent)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.count = 0

    # paths

    def checkpoint(self, run: str) -> str:
        """The best checkpoint of ``run`` under the root (a placeholder in a dry run, when not there yet)."""
        try:
            return str(resolve_run_checkpoint(run, self.root))
        except SepnetError:
            if self.dry_run:
                return str(self.root / run / "<time>" / BEST)
            raise

    def run_dir(self, name: str) -> Path:
        return self.root / name / time.strftime(STAMP)

    def evaluate_dir(self, name: str) -> Path:
        return self.root / "evaluate" / name

    # commands

    def module(self, name: str) -> list[str]:
        return [self.python, "-m", f"sepnet.{name}"]

    def train_command(self, step: Step, out: Path) -> list[str]:
        return [
            *self.module("train"), f"experiment={step.name}", f"paths.outputs_root={hydra_value(self.root)}",
            f"hydra.run.dir={hydra_value(out)}", *self.overrides["data"], *self.sizes(step), *self.overrides["train"],
            *(self.overrides[FINE_TUNE] if loads_whole_parent(step) else []),
        ]

    def sizes(self, step: Step) -> list[str]:
        """A train step's model at the budget's named size (its YAML's ``_sizes_``); none for the configured size."""
        return experiment_size(step.name, self.model_size) if self.model_size else []

    def merge_command(self, step: Step, out: Path) -> list[str]:
        ckpts = ",".join(hydra_value(self.checkpoint(p)) for p in step.parents)
        weights = [f"weights=[{','.join(f'{w:g}' for w in step.weights)}]"] if step.weights else []
        return [
            *self.module("merge"), f"name={step.name}", f"ckpts=[{ckpts}]", *weights,
            f"paths.outputs_root={hydra_value(self.root)}", f"hydra.run.dir={hydra_value(out)}", *self.overrides["merge"],
        ]

    def evaluate_command(self, ckpt: str, knobs: tuple[str, ...], out: Path, sweep: list[str] | None = None) -> list[str]:
        where = [f"hydra.sweep.dir={hydra_value(out)}"] if sweep else [f"hydra.run.dir={hydra_value(out)}"]
        return [
            *self.module("evaluate"), *(["-m"] if sweep else []), f"ckpt={hydra_value(ckpt)}", *knobs, *(sweep or []),
            *where, *self.overrides["data"], *self.overrides["evaluate"],
        ]

    # running

    def call(self, step: Step, command: list[str]) -> float:
        """Run one command of ``step`` with its output in ``logs/``; returns its seconds. Raises :class:`StepFailed`."""
        self.count += 1
        if self.dry_run:
            print(shlex.join(command), flush=True)
            return 0.0
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = logs / f"{self.count:02d}_{step.name}.log"
        start = time.perf_counter()
        with log_file.open("w") as out:
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            rc = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        if rc != 0:
            lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
            cause = lines[-1] if len(lines) > 1 else "no output"
            raise StepFailed(
                f"reproduce step {step.name} ({step.kind}) failed with exit status {rc}: {cause} (output: {log_file}; "
                f"the steps before it are kept in {self.root})"
            )
        return time.perf_counter() - start

    def run(self, step: Step) -> list[Row]:
        """Run ``step``; returns its table rows (none in a dry run)."""
        parents = step_parents(step)
        if step.kind == TRAIN:
            out = self.run_dir(step.name)
            seconds = self.call(step, self.train_command(step, out))
            if self.dry_run:
                return []
            summary = read_json(out / "summary.json", step)
            score = (summary.get("best_val_sdr"), summary.get("val_sdr_per_stem") or {})
            return [self.row(step, ", ".join(parents) or "-", score, "val/sdr", step.documented, seconds, out)]
        if step.kind == MERGE:
            out = self.run_dir(step.name)
            seconds = self.call(step, self.merge_command(step, out))
            scored = self.evaluate_dir(step.name)
            seconds += self.call(step, self.evaluate_command(str(out / BEST), step.knobs, scored))
            if self.dry_run:
                return []
            score = evaluate_score(read_json(scored / "results.json", step))
            weights = step.weights or [1 / len(parents)] * len(parents)
            label = ", ".join(f"{p} x{w:.2g}" for p, w in zip(parents, weights))
            return [self.row(step, label, score, measured_as(step.knobs), step.documented, seconds, out)]
        if step.kind == EVALUATE:
            ckpt, out = self.checkpoint(parents[0]), self.evaluate_dir(step.name)
            if step.sweep is None:
                seconds = self.call(step, self.evaluate_command(ckpt, step.knobs, out))
                if self.dry_run:
                    return []
                score = evaluate_score(read_json(out / "results.json", step))
                return [self.row(step, parents[0], score, measured_as(step.knobs), step.documented, seconds, out)]
            key, documented = step.sweep
            seconds = self.call(step, self.evaluate_command(ckpt, step.knobs, out, [f"{key}={','.join(documented)}"]))
            if self.dry_run:
                return []
            rows = []
            for job, value, results in sweep_jobs(out, key, step):
                row = self.row(
                    step, parents[0], evaluate_score(results), measured_as((*step.knobs, f"{key}={value}")),
                    documented.get(value, "-"), seconds / max(1, len(documented)), job,
                )  # fmt: skip
                row.step = f"{step.name} [{knob_label([f'{key}={value}'])}]"
                rows.append(row)
            return rows
        raise AssertionError(f"unknown step kind {step.kind}")

    def row(self, step: Step, parents: str, score: tuple, measured: str, documented: str, seconds: float, out: Path) -> Row:
        """A row from ``score = (mean SDR, {stem: SDR})``; one target stem is named in ``measured``."""
        sdr, per_stem = score
        if len(per_stem) == 1:
            measured += f" ({next(iter(per_stem))} only)"
        vocals = per_stem.get("vocals")
        return Row(step.name, step.kind, parents, sdr, vocals, measured, documented, seconds, self.relative(out))

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


def evaluate_score(results: dict) -> tuple[float | None, dict]:
    """``(mean SDR, {stem: SDR})`` of an evaluate run's ``results.json``."""
    return results.get("sdr"), results.get("sdr_per_stem") or {}


def measured_as(knobs: tuple[str, ...]) -> str:
    """What an evaluate step's SDR is: the test split's, at these knobs."""
    return f"test SDR, {knob_label(knobs)}" if knobs else "test SDR"


def read_json(path: Path, step: Step) -> dict:
    if not path.is_file():
        raise StepFailed(f"reproduce step {step.name} ({step.kind}) finished without writing '{path}'")
    return json.loads(path.read_text())


def sweep_jobs(sweep_dir: Path, key: str, step: Step) -> list[tuple[Path, str, dict]]:
    """``(job dir, swept value, results)`` of each job of an evaluate sweep, in job order."""
    jobs = []
    for job in sorted((d for d in sweep_dir.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)):
        overrides = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        value = next(o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}="))
        jobs.append((job, value, read_json(job / "results.json", step)))
    return jobs


# -- the table ------------------------------------------------------------------------------------


def sdr_cell(value) -> float | None:
    return None if value is None else float(value)


def write_table(root: Path, rows: list[Row], budget: str, seconds: float, complete: bool) -> str:
    """Write ``reproduce.md`` and ``reproduce.csv`` under ``root``; returns the markdown."""
    table = markdown_table(
        TABLE_HEADERS,
        [[r.step, r.kind, r.parents, sdr_cell(r.sdr), sdr_cell(r.vocals), r.measured, r.documented] for r in rows],
    )
    state = "" if complete else " (incomplete: the chain stopped or is still running)"
    verdicts = check_claims(rows, root)
    claims = markdown_table(CLAIM_HEADERS, [[v.claim, v.log, v.evidence, v.verdict] for v in verdicts])
    markdown = (
        f"# sepnet reproduce: budget {budget}, {len(rows)} rows in {seconds:.0f} s{state}\n\n"
        f"Root: `{root}`. sepnet SDR: `val/sdr` of the best checkpoint for a train step, the test split's "
        f"SDR (`results.json`) for evaluate and merge steps, as the mean over the model's target stems and for "
        f"vocals alone. Documented: the research log's figures (vocals on the author's data/val), not comparable "
        f"with the embedded data.\n\n{table}\n\n"
        f"## The log's claims on this data\n\n{claims}\n"
    )
    write_text(root / "reproduce.md", markdown)
    write_csv(
        root / "reproduce.csv",
        CSV_HEADERS,
        [
            [r.step, r.kind, r.parents, sdr_cell(r.sdr), sdr_cell(r.vocals), r.measured, r.documented, documented_sdr(r.documented),
             round(r.seconds, 1), r.output]
            for r in rows
        ],
    )  # fmt: skip
    return markdown


# -- the run -----------------------------------------------------------------------------------------


def earlier_rows(root: Path, rerun: list[Step]) -> list[Row]:
    """The rows of ``root/reproduce.csv`` whose steps are not run again, so a rerun of part of a chain
    tables (and checks the claims on) the whole of it."""
    path = root / "reproduce.csv"
    if not path.is_file():
        return []
    names = {s.name for s in rerun}
    with path.open(newline="") as f:
        return [
            Row(r["step"], r["kind"], r["parents"], _float(r["sdr"]), _float(r["sdr_vocals"]), r["measured"],
                r["documented"], float(r["seconds"] or 0), r["output"])
            for r in csv.DictReader(f)
            if r["step"].split(" [")[0] not in names
        ]  # fmt: skip


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def in_chain_order(rows: list[Row]) -> list[Row]:
    order = {s.name: i for i, s in enumerate(CHAIN)}
    return sorted(rows, key=lambda r: order.get(r.step.split(" [")[0], len(order)))  # stable: sweep rows keep order


def budget_overrides(cfg: DictConfig) -> dict[str, list[str]]:
    """``{"data", "train", "fine_tune", "merge", "evaluate": [...]}``: the budget's overrides, then ``reproduce.overrides``'."""
    name = cfg.reproduce.budget
    if name not in cfg.budgets:
        raise SepnetError(f"reproduce.budget={name} is not a budget; budgets are: {', '.join(cfg.budgets)}")
    budget, extra = cfg.budgets[name], cfg.reproduce.get("overrides") or {}
    return {
        kind: [str(o) for o in [*(budget.get(kind) or []), *(extra.get(kind) or [])]]
        for kind in ("data", TRAIN, FINE_TUNE, MERGE, EVALUATE)
    }


def budget_model_size(cfg: DictConfig) -> str | None:
    """The budget's ``model_size`` (``tiny``, ``medium``): the named size of every model's YAML; None: as configured.

    Models take different size arguments (``encoder_channels`` vs ``features``), so each
    model's YAML says what its named sizes are (``_sizes_``) and a budget only names one.
    """
    size = cfg.budgets[cfg.reproduce.budget].get("model_size")
    return str(size) if size else None


def format_sdr(value) -> str:
    return "NaN" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f} dB"


def run_chain(cfg: DictConfig) -> list[Row]:
    """Run the selected steps of the chain as ``cfg`` says; returns the table's rows (also written)."""
    root = Path(cfg.paths.outputs_root).expanduser().resolve()
    names = cfg.reproduce.get("steps")
    if isinstance(names, str):
        names = [names]
    steps = select_steps(None if names is None else [str(n) for n in names])
    overrides = budget_overrides(cfg)
    dry_run = bool(cfg.reproduce.get("dry_run"))
    if not dry_run:
        check_parents(steps, root)
    root.mkdir(parents=True, exist_ok=True)
    runner = ChainRunner(root, overrides, budget_model_size(cfg), dry_run)
    budget = str(cfg.reproduce.budget)
    print(f"reproduce: {len(steps)} steps, budget {budget}, under {root}", flush=True)
    kept = [] if dry_run else earlier_rows(root, steps)
    rows: list[Row] = []
    start = time.perf_counter()
    complete = False
    try:
        for i, step in enumerate(progress(steps, "reproduce", unit="step"), 1):
            print(f"[{i:2d}/{len(steps)}] {step.kind:8s} {step.name}", end="" if not dry_run else "\n", flush=True)
            new = runner.run(step)
            rows += new
            if not dry_run:
                results = ", ".join(format_sdr(r.sdr) for r in new)
                print(f"  {sum(r.seconds for r in new):.1f} s  {new[0].measured if len(new) == 1 else 'SDR'}: {results}", flush=True)
                write_table(root, in_chain_order(kept + rows), budget, time.perf_counter() - start, complete=False)
        complete = True
    except BaseException:
        print(flush=True)  # end the progress line before the error
        raise
    finally:
        if rows:
            markdown = write_table(root, in_chain_order(kept + rows), budget, time.perf_counter() - start, complete)
            if complete:
                print(f"\n{markdown}\ntable: {root / 'reproduce.md'}, {root / 'reproduce.csv'}", flush=True)
    if complete and not dry_run:
        pictures = write_lineage(root)  # the chain's graph: lineage.md (Mermaid), lineage.svg/.png
        print(f"lineage: {pictures['md']}, {pictures['png']}", flush=True)
    return rows
