"""Hydra callbacks: checks before Hydra touches the disk, and a table after a sweep.

Hydra creates the run (or sweep) folder before calling the task, and a failure
there surfaces as a traceback. :class:`OutputDirCheck` tries the folder first
and turns a failure into sepnet's one-line error; it also claims the folder for
this run (:mod:`sepnet.app.run_dir`): a folder another running process holds is
refused in one line, or, when it is the default timestamped one, replaced by a
fresh ``<folder>-2`` beside it.

:class:`SweepTable` runs when a multirun ends: it reads each job's results file
(``results.json`` from ``evaluate``, ``summary.json`` from ``train``) and writes
one row per job to ``sweep.csv`` and ``sweep.md`` at the sweep root.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sepnet.app.configs import hydra_value
from sepnet.app.run_dir import claim, claim_fresh, is_main_process
from sepnet.app.tables import markdown_table, write_csv
from sepnet.atomic import write_text
from sepnet.errors import SepnetError


def _claim_folder(config: DictConfig, mode: str) -> None:
    """Claim ``hydra.<mode>.dir`` for this process, or exit with one line; a default (timestamped) folder that
    another run holds is replaced by a fresh one, written back into the config Hydra goes on with."""
    key = f"hydra.{mode}.dir"
    node = config.hydra[mode]
    folder = str(node.dir)
    if not is_main_process():  # DDP ranks > 0 write into rank 0's folder
        return
    timestamped = "${now:" in str(OmegaConf.to_container(node, resolve=False).get("dir", ""))
    try:
        if timestamped:
            chosen = str(claim_fresh(folder, key))
        else:
            claim(folder, key)
            chosen = folder
    except SepnetError as exc:
        print(f"sepnet: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if timestamped and chosen != folder:
        with read_write(config.hydra), open_dict(config.hydra):
            node.dir = chosen
            if mode == "sweep":  # each job's config is composed again from these overrides
                config.hydra.overrides.hydra.append(f"{key}={hydra_value(chosen)}")


class OutputDirCheck(Callback):
    """Fail with one line when the run or sweep folder cannot be created or written, or another run holds it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # lets ${hydra:...} in the folder name resolve
        _claim_folder(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        _claim_folder(config, "sweep")


def flatten_numbers(data: dict, exclude: Sequence[str] = (), prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{"a.b": value}`` (None -> NaN); keys in ``exclude`` (top level) skipped."""
    flat: dict[str, float] = {}
    for key, value in data.items():
        if not prefix and key in exclude:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, (), f"{name}."))
        elif value is None:
            flat[name] = math.nan
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def _job_number(folder: Path, root: Path) -> list:
    """Natural sort key: job 10 after job 9."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(folder.relative_to(root)))]


class SweepTable(Callback):
    """After a multirun, tabulate every job's overrides and results at the sweep root.

    Args:
        files: results files looked for in each job's folder, first found wins
            (``results.json``: evaluate; ``summary.json``: train).
        exclude: top-level keys of those files left out of the table (config dumps, per-stem detail).
    """

    def __init__(
        self,
        files: Sequence[str] = ("results.json", "summary.json"),
        exclude: Sequence[str] = (
            "config", "checkpoint_config", "lineage", "checkpoint_metrics", "per_stem", "knobs", "sample_rate",
        ),
    ):
        self.files = list(files)
        self.exclude = list(exclude)

    def rows(self, sweep_dir: Path) -> tuple[list[str], list[list]]:
        """``(headers, rows)``: job, the overrides that differ between jobs, then the results' numbers."""
        jobs = []
        for overrides_file in sorted(sweep_dir.rglob(".hydra/overrides.yaml"), key=lambda p: _job_number(p.parent.parent, sweep_dir)):
            job_dir = overrides_file.parent.parent
            found = next((job_dir / f for f in self.files if (job_dir / f).is_file()), None)
            overrides = dict(
                o.split("=", 1) for o in OmegaConf.to_container(OmegaConf.load(overrides_file)) if "=" in o
            )
            numbers = flatten_numbers(json.loads(found.read_text()), self.exclude) if found else {}
            jobs.append((str(job_dir.relative_to(sweep_dir)), overrides, numbers))
        keys = list(dict.fromkeys(k for _, o, _ in jobs for k in o))
        swept = [k for k in keys if len({o.get(k) for _, o, _ in jobs}) > 1] or keys
        metrics = list(dict.fromkeys(m for _, _, n in jobs for m in n))
        headers = ["job", *swept, *metrics]
        rows = [[job, *(o.get(k) for k in swept), *(n.get(m, math.nan) for m in metrics)] for job, o, n in jobs]
        return headers, rows

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        headers, rows = self.rows(sweep_dir)
        if not rows:
            return
        write_csv(sweep_dir / "sweep.csv", headers, rows)
        table = markdown_table(headers, rows)
        write_text(sweep_dir / "sweep.md", table + "\n")
        print(f"\nsweep ({len(rows)} jobs): {sweep_dir / 'sweep.csv'}\n{table}", flush=True)
