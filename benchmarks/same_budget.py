"""Train every model of ``benchmarks/same_budget.yaml`` with the same budget and tabulate ``val/sdr`` per stem.

    python benchmarks/same_budget.py                 # all runs, then rewrite the table in benchmarks/README.md
    python benchmarks/same_budget.py --runs crnn large
    python benchmarks/same_budget.py --no-write      # print only

Each run is a real ``python -m sepnet.train`` (a fresh process) writing into
``outputs/same_budget/<run>/``; its ``summary.json`` gives the best checkpoint's
``val/sdr_<stem>`` (the checkpoint monitor picks the epoch with the best mean)
and ``logs/metrics.csv`` the last epoch's mean. The table goes between the
``same-budget`` markers of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "same_budget.yaml"
README = HERE / "README.md"
START, END = "<!-- same-budget:start -->", "<!-- same-budget:end -->"


def hydra_value(value) -> str:
    """A YAML value in Hydra's override grammar: true/false, [a,b], {k:v}."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def overrides(items: list) -> list[str]:
    """YAML ``[{key: value}, "key=value", ...]`` -> Hydra override strings."""
    out = []
    for item in items:
        if isinstance(item, dict):
            out += [f"{k}={hydra_value(v)}" for k, v in item.items()]
        else:
            out.append(str(item))
    return out


def last_epoch_sdr(run_dir: Path) -> float | None:
    path = run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return None
    values = [float(row["val/sdr"]) for row in csv.DictReader(path.open()) if row.get("val/sdr")]
    return values[-1] if values else None


def run(name: str, extra: list[str], out_root: Path) -> dict:
    run_dir = out_root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    command = [sys.executable, "-m", "sepnet.train", *extra, f"hydra.run.dir={run_dir}", f"run_name=same_budget_{run_dir.name}"]
    print(f"[{name}] {' '.join(command[3:])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"[{name}] failed with exit status {result.returncode}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(name=name, seconds=seconds, last_val_sdr=last_epoch_sdr(run_dir))
    print(f"[{name}] best val/sdr {summary['best_val_sdr']:.2f} dB (epoch {summary['best_epoch']}) in {seconds / 60:.1f} min",
          flush=True)
    return summary


def table(results: list[dict], budget: list[str]) -> str:
    stems = list(results[0]["val_sdr_per_stem"])
    lines = [
        f"Budget (every run): `{' '.join(budget)}`; one seed each. val/sdr is the whole-chunk SDR in dB on the",
        "embedded valid split at the best epoch (the checkpoint monitor's choice); `last` is the final epoch's mean.",
        "",
        "| run | " + " | ".join(stems) + " | mean (best) | best epoch | mean (last) | minutes |",
        "|---|" + "---:|" * (len(stems) + 4),
    ]
    for r in results:
        per_stem = " | ".join(f"{r['val_sdr_per_stem'][s]:.2f}" for s in stems)
        last = f"{r['last_val_sdr']:.2f}" if r["last_val_sdr"] is not None else "-"
        lines.append(f"| {r['name']} | {per_stem} | {r['best_val_sdr']:.2f} | {r['best_epoch']} | {last} | {r['seconds'] / 60:.1f} |")
    base = results[0]["uniform_mask_sdr_per_stem"]
    lines.append(
        "| uniform mask (mixture/4) | " + " | ".join(f"{base[s]:.2f}" for s in stems)
        + f" | {results[0]['uniform_mask_sdr']:.2f} | - | - | - |"
    )
    return "\n".join(lines)


def write_readme(text: str, start: str = START, end: str = END) -> None:
    """Put ``text`` between the ``start`` and ``end`` markers of benchmarks/README.md."""
    readme = README.read_text()
    if start not in readme or end not in readme:
        raise SystemExit(f"{README} has no {start} ... {end} markers to write the table between")
    head, rest = readme.split(start, 1)
    README.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--runs", nargs="+", help="names from the config's runs (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "same_budget")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    budget = overrides(config["budget"])
    names = args.runs or list(config["runs"])
    results = [run(name, budget + overrides(config["runs"][name]), args.out) for name in names]
    text = table(results, budget)
    print(text)
    if not args.no_write:
        write_readme(text)
        print(f"table written to {README}")


if __name__ == "__main__":
    main()
