"""``python -m sepnet.lineage <outputs dir or run dir>``: the graph of runs, merges and evaluations, drawn.

    python -m sepnet.lineage outputs/reproduce/2026-01-05_19-25-01      # the reproduce chain
    python -m sepnet.lineage root=outputs out=docs                      # every run under outputs/, pictures in docs/

Reads the lineage every checkpoint records (parents, merge weights) and each
``evaluate`` run's ``results.json`` (:mod:`sepnet.evaluation.lineage`), and writes
``lineage.svg``, ``lineage.png`` (:mod:`sepnet.evaluation.lineage_drawing`) and
``lineage.md`` (a Mermaid flowchart GitHub renders, and a table of the nodes) into ``out``
(default: the folder given). Nodes show the run name, best ``val/sdr`` and test SDR;
edges say ``fine-tune``, ``merge 0.8 of 0.8/0.2`` or ``evaluate mask_scale=0.8``.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.errors import SepnetError, exit_on_user_error, printable
from sepnet.evaluation.lineage_drawing import write_lineage

__all__ = ["lineage", "main", "write_lineage"]

USAGE = "python -m sepnet.lineage <outputs dir or run dir> [out=<folder>]  (or root=<dir>)"


@exit_on_user_error
def lineage(cfg: DictConfig) -> dict[str, Path]:
    """Draw the lineage under ``cfg.root`` into ``cfg.out``; returns the files written."""
    if OmegaConf.is_missing(cfg, "root"):
        raise SepnetError(f"no folder given; usage: {USAGE}")
    written = write_lineage(cfg.root, cfg.out)
    graph, note = written.pop("graph"), written.pop("note")
    print(f"lineage: {len(graph.nodes)} nodes, {len(graph.edges)} edges under {printable(graph.root)}", flush=True)
    if note:
        print(f"lineage: in the pictures, {note}", flush=True)
    for path in written.values():
        print(f"  {printable(path)}", flush=True)
    return written


main = hydra_entry_point("lineage", lineage, positional="root")


if __name__ == "__main__":
    run_entry_point(main, positional="root")
