"""The lineage graph of an outputs folder: runs, merges and evaluations, and how each came from the others.

Every sepnet checkpoint records its parents (``init.from_run`` / ``init.pretrained``: one
parent; a merge: several, with weights) and their own lineage; every ``evaluate`` run's
``results.json`` names the checkpoint it scored and the inference knobs it used.
:func:`collect_lineage` reads those records under a folder (checkpoints with the safe
reader: no code, no model rebuilt) into a :class:`LineageGraph`:

- a node per run folder with checkpoints (``train`` or ``merge``): its run name, best
  ``val/sdr`` and, when an evaluation at the default inference knobs exists, its test SDR;
- a node per evaluation (each job of an ``evaluate -m`` sweep): its folder and SDR;
- an ``outside`` node for a parent that is not under the folder (read from its file when
  it still exists, else from what the child recorded about it);
- edges parent -> child labelled ``fine-tune``, ``merge 0.8 of 0.8/0.2`` or
  ``evaluate mask_scale=0.8`` (the knobs that differ from the defaults or were set on
  the command line).

:func:`mermaid` writes the graph as a Mermaid ``flowchart LR`` (GitHub renders it);
:mod:`sepnet.evaluation.lineage_drawing` draws it as SVG and PNG.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sepnet.app.configs import CONFIG_DIR
from sepnet.checkpoints.checkpoint import read_checkpoint, sepnet_entry
from sepnet.errors import SepnetError

log = logging.getLogger(__name__)

TRAIN, MERGE, EVALUATE, OUTSIDE = "train", "merge", "evaluate", "outside"
FINE_TUNE = "fine-tune"
CHECKPOINT_NAMES = ("best.ckpt", "last.ckpt")
"""The checkpoint of a run folder that stands for the run, in order of preference."""
SCORE_NEUTRAL_KNOBS = frozenset({"device", "batch_size", "workers"})
"""Evaluation settings that do not change a score: never named on an edge."""
SCOPE_KNOBS = frozenset({"max_tracks", "full_metrics", "win", "hop"})
"""Settings of how much or how a score is computed, not of the separation: a run's test SDR may come
from an evaluation that changed them (the edge still names them)."""


@dataclass
class Node:
    """One box of the graph.

    Attributes:
        key: identity (the run or evaluation folder, or a parent checkpoint's path).
        kind: ``train``, ``merge``, ``evaluate`` or ``outside``.
        name: the run name (train, merge), the evaluation's folder below the root, or the parent's name.
        details: further lines: ``val/sdr -0.60 dB (epoch 1)``, ``test SDR 1.02 dB``.
        path: the folder or file it was read from (None: only known from a child's record).
    """

    key: str
    kind: str
    name: str
    details: list[str] = field(default_factory=list)
    path: Path | None = None
    val_sdr: float | None = None
    test_sdr: float | None = None


@dataclass
class Edge:
    """``source`` -> ``target`` (node keys), ``kind`` one of fine-tune/merge/evaluate, ``label`` as drawn."""

    source: str
    target: str
    kind: str
    label: str


@dataclass
class LineageGraph:
    """Nodes (in discovery order: parents before children where known) and edges of a folder's lineage."""

    root: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def parents(self, key: str) -> list[str]:
        return [e.source for e in self.edges if e.target == key]

    def children(self, key: str) -> list[str]:
        return [e.target for e in self.edges if e.source == key]

    def add_edge(self, source: str, target: str, kind: str, label: str) -> None:
        if not any(e.source == source and e.target == target and e.label == label for e in self.edges):
            self.edges.append(Edge(source, target, kind, label))


def format_db(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f} dB"


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def default_knobs() -> dict[str, Any]:
    """``evaluate``'s ``eval`` block as ``conf/`` defines it (the shared inference knobs, then evaluate's own)."""
    conf = Path(CONFIG_DIR)
    knobs = OmegaConf.to_container(OmegaConf.load(conf / "inference" / "default.yaml"))
    knobs.update(OmegaConf.to_container(OmegaConf.load(conf / "evaluate.yaml")).get("eval", {}))
    return knobs


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def command_line(run_dir: Path) -> list[str]:
    """The overrides a run was started with (``.hydra/overrides.yaml``), or [] when it has no record."""
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return []
    try:
        return [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides)) or []]
    except Exception:  # noqa: BLE001 - an unreadable record only loses a label, never the graph
        return []


def command_line_knobs(run_dir: Path) -> list[str]:
    """The ``eval.*`` keys set on an evaluation's command line, without ``eval.``."""
    return [o.partition("=")[0].removeprefix("eval.") for o in command_line(run_dir) if o.startswith("eval.")]


def changed_knobs(knobs: dict[str, Any], defaults: dict[str, Any], given: list[str]) -> dict[str, Any]:
    """The knobs of an evaluation that differ from ``defaults`` or were given on its command line, in knob order."""
    return {
        k: v
        for k, v in knobs.items()
        if k not in SCORE_NEUTRAL_KNOBS and (k in given or k not in defaults or not _same(v, defaults[k]))
    }


class _Collector:
    """Builds a :class:`LineageGraph` from the folders and records under ``root``."""

    def __init__(self, root: Path):
        self.graph = LineageGraph(root)
        self.run_of_dir: dict[Path, str] = {}  # resolved run folder -> node key
        self.by_tail: dict[tuple[str, str], str] = {}  # (run name folder, time folder) -> node key
        self.defaults = default_knobs()

    # -- runs ----------------------------------------------------------------------------------

    def add_runs(self) -> None:
        root = self.graph.root
        run_dirs = sorted({p.parent.parent for p in root.rglob("*.ckpt") if p.parent.name == "checkpoints"})
        entries = []
        for run_dir in run_dirs:
            ckpt = next((run_dir / "checkpoints" / n for n in CHECKPOINT_NAMES if (run_dir / "checkpoints" / n).is_file()), None)
            ckpt = ckpt or max((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
            info = self.read_entry(ckpt)
            if info is None:
                continue
            key = str(run_dir.resolve())
            self.run_of_dir[run_dir.resolve()] = key
            self.by_tail[run_dir.parts[-2:]] = key
            entries.append((key, run_dir, ckpt, info))
        # Nodes in the order the runs were made (Hydra names run folders by time): siblings stay in that order.
        for key, run_dir, ckpt, info in sorted(entries, key=lambda e: _run_time(e[1])):
            self.add_checkpoint_node(key, info, run_dir, ckpt)
        for key, _, _, info in entries:
            self.add_parent_edges(key, info.get("lineage") or {})

    def read_entry(self, ckpt: Path) -> dict | None:
        """A checkpoint's checked sepnet entry (config, lineage, metrics), or None (with a warning) if unreadable."""
        try:
            return sepnet_entry(ckpt, read_checkpoint(ckpt))  # data only: no code run, no model built
        except SepnetError as exc:
            log.warning("lineage: left out %s (%s)", ckpt, exc)
            return None

    def add_checkpoint_node(self, key: str, info: dict, run_dir: Path | None, ckpt: Path | None, outside: bool = False) -> Node:
        lineage = info.get("lineage") or {}
        config = info.get("config") or {}
        kind = OUTSIDE if outside else MERGE if "merge" in lineage else TRAIN
        name = str(config.get("run_name") or (run_dir.parent.name if run_dir else Path(key).stem))
        node = Node(key, kind, name, path=run_dir or ckpt)
        summary = _read_json(run_dir / "summary.json") if run_dir else None
        val_sdr = (summary or {}).get("best_val_sdr", (info.get("metrics") or {}).get("val/sdr"))
        epoch = (summary or {}).get("best_epoch", info.get("epoch"))
        node.val_sdr = val_sdr
        if val_sdr is not None:
            node.details.append(f"val/sdr {format_db(val_sdr)}" + (f" (epoch {epoch})" if epoch is not None else ""))
        elif kind == MERGE:
            node.details.append(f"merge of {len(lineage.get('parents') or [])}")
        self.graph.nodes[key] = node
        return node

    def parent_node(self, path: str, name: str | None, metrics: dict, lineage: dict) -> str:
        """The node of a parent checkpoint ``path``: a run under the root, its file read, or what the child recorded."""
        parent = Path(path)
        run_dir = parent.parent.parent if parent.parent.name == "checkpoints" else None
        if run_dir is not None:
            known = self.run_of_dir.get(_resolved(run_dir)) or self.by_tail.get(run_dir.parts[-2:])
            if known:
                return known
        key = str(parent)
        if key in self.graph.nodes:
            return key
        info = self.read_entry(parent) if parent.is_file() else None
        if info is None:  # the file is gone: the child's record of it is all there is
            info = {"config": {"run_name": name or (run_dir.parent.name if run_dir else parent.stem)}, "metrics": metrics, "lineage": lineage}
        node = self.add_checkpoint_node(key, info, None, parent, outside=True)
        node.details.append("outside this folder" if parent.is_file() else "file not found")
        self.add_parent_edges(key, info.get("lineage") or {})
        return key

    def add_parent_edges(self, key: str, lineage: dict) -> None:
        parents = [str(p) for p in lineage.get("parents") or []]
        merge = lineage.get("merge")
        ancestry = lineage.get("parent_lineage")
        if merge is not None:
            weights = [float(w) for w in merge.get("weights") or []] or [1 / max(1, len(parents))] * len(parents)
            shares = "/".join(f"{w:.2g}" for w in weights)
            metrics = merge.get("parent_metrics") or [{}] * len(parents)
            ancestries = ancestry if isinstance(ancestry, list) else [{}] * len(parents)
            for path, weight, parent_metrics, parent_lineage in zip(parents, weights, metrics, ancestries):
                source = self.parent_node(path, None, parent_metrics or {}, parent_lineage or {})
                self.graph.add_edge(source, key, MERGE, f"merge {weight:.2g} of {shares}")
            return
        pretrained = lineage.get("pretrained") or {}
        label = FINE_TUNE if pretrained.get("strict", True) else f"{FINE_TUNE} (partial load)"
        for path in parents:
            source = self.parent_node(path, lineage.get("from_run"), lineage.get("parent_metrics") or {}, ancestry if isinstance(ancestry, dict) else {})
            self.graph.add_edge(source, key, FINE_TUNE, label)

    # -- evaluations ------------------------------------------------------------------------------

    def add_evaluations(self) -> None:
        root = self.graph.root
        for results_path in sorted(root.rglob("results.json")):
            results = _read_json(results_path)
            if not isinstance(results, dict) or "checkpoint" not in results:
                continue
            run_dir = results_path.parent
            source = self.parent_node(
                str(results["checkpoint"]), None, results.get("checkpoint_metrics") or {}, results.get("lineage") or {}
            )
            knobs = changed_knobs(results.get("knobs") or {}, self.defaults, command_line_knobs(run_dir))
            split = str(results.get("split", "test"))
            name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
            name = name.removeprefix("evaluate/")
            key = str(run_dir.resolve())
            node = Node(key, EVALUATE, name, path=run_dir, test_sdr=results.get("sdr"))
            node.details.append(f"{split} SDR {format_db(results.get('sdr'))}")
            if results.get("tracks") is not None:
                node.details[-1] += f", {results['tracks']} track{'s' if results['tracks'] != 1 else ''}"
            self.graph.nodes[key] = node
            label = " ".join(["evaluate", *(f"{k}={format_value(v)}" for k, v in knobs.items())])
            self.graph.add_edge(source, key, EVALUATE, label)
            checkpoint = self.graph.nodes[source]
            if split == "test" and not set(knobs) - SCOPE_KNOBS and checkpoint.test_sdr is None:
                checkpoint.test_sdr = results.get("sdr")
                checkpoint.details.append(f"test SDR {format_db(results.get('sdr'))}")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def _run_time(run_dir: Path) -> tuple[str, str]:
    """Sort key putting older runs first: Hydra names run folders by time (``<name>/<time>``)."""
    return (run_dir.name, str(run_dir))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tell_apart(graph: LineageGraph) -> None:
    """Runs of one name (the jobs of a sweep, reruns) get a second line: their folder (``<time>/<job>``)
    and the overrides that differ between them (what a sweep varied)."""
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes.values():
        if node.kind in (TRAIN, MERGE) and node.path is not None:
            groups.setdefault(node.name, []).append(node)
    for nodes in groups.values():
        if len(nodes) < 2:
            continue
        overrides = [command_line(n.path) for n in nodes]
        shared = set.intersection(*map(set, overrides))
        for node, items in zip(nodes, overrides):
            inside = node.path.is_relative_to(graph.root) and node.path != graph.root
            parts = node.path.relative_to(graph.root).parts if inside else node.path.parts
            tail = parts[-2:] if parts[-1].isdigit() else parts[-1:]  # a sweep job: <sweep time>/<job number>
            node.details.insert(0, " ".join(["/".join(tail), *(i for i in items if i not in shared)]))


def collect_lineage(root: str | Path) -> LineageGraph:
    """The lineage graph of every run, merge and evaluation at or below ``root`` (an outputs folder or one run's)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SepnetError(f"root={root}: not a folder; pass an outputs folder or a run folder (outputs/<run>/<time>)")
    collector = _Collector(root.resolve())
    collector.add_runs()
    collector.add_evaluations()
    _tell_apart(collector.graph)
    if not collector.graph.nodes:
        raise SepnetError(
            f"root={root}: no checkpoint (<run>/checkpoints/*.ckpt) or evaluation (results.json) below it; "
            f"pass the outputs folder of sepnet.train/merge/evaluate runs"
        )
    return collector.graph


# -- Mermaid ---------------------------------------------------------------------------------------

MERMAID_CLASSES = {
    TRAIN: "fill:#dbe9f6,stroke:#3b75af,color:#102a43",
    MERGE: "fill:#fde2c8,stroke:#c8640a,color:#3d1f00",
    EVALUATE: "fill:#dff2dc,stroke:#3f8f3a,color:#0f2e0c",
    OUTSIDE: "fill:#eeeeee,stroke:#888888,color:#333333,stroke-dasharray:4 3",
}
MERMAID_SHAPES = {TRAIN: ('("', '")'), MERGE: ('{{"', '"}}'), EVALUATE: ('(["', '"])'), OUTSIDE: ('("', '")')}


def mermaid_text(text: str) -> str:
    """``text`` safe inside a quoted Mermaid label: the characters Mermaid or markdown would read as syntax
    become Mermaid's ``#<code>;`` entities (``#`` first, since entities start with it)."""
    out = text.replace("#", "#35;")
    for char in '"<>&|`':
        out = out.replace(char, f"#{ord(char)};")
    return out


def node_ids(graph: LineageGraph) -> dict[str, str]:
    return {key: f"n{i}" for i, key in enumerate(graph.nodes)}


def mermaid(graph: LineageGraph) -> str:
    """The graph as a Mermaid ``flowchart LR`` (without the markdown fence)."""
    ids = node_ids(graph)
    lines = ["flowchart LR"]
    for key, node in graph.nodes.items():
        opening, closing = MERMAID_SHAPES[node.kind]
        label = "<br>".join(mermaid_text(t) for t in [node.name, *node.details])
        lines.append(f"  {ids[key]}{opening}{label}{closing}")
    for edge in graph.edges:
        arrow = "-.->" if edge.kind == EVALUATE else "-->"
        lines.append(f'  {ids[edge.source]} {arrow}|"{mermaid_text(edge.label)}"| {ids[edge.target]}')
    for kind, style in MERMAID_CLASSES.items():
        members = [ids[k] for k, n in graph.nodes.items() if n.kind == kind]
        if members:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines)


def lineage_markdown(graph: LineageGraph, picture: str | None = "lineage.svg") -> str:
    """``lineage.md``: the Mermaid block, the picture, and a table of the nodes."""
    from sepnet.app.tables import markdown_table

    rows = []
    for node in graph.nodes.values():
        inside = node.path is not None and node.path.is_relative_to(graph.root)
        where = str(node.path.relative_to(graph.root)) if inside else str(node.path or "-")
        sources = [f"{graph.nodes[e.source].name} ({e.label})" for e in graph.edges if e.target == node.key]
        rows.append([node.name, node.kind, node.val_sdr, node.test_sdr, "; ".join(sources) or "-", where])
    table = markdown_table(["node", "kind", "val/sdr (dB)", "test SDR (dB)", "from", "folder"], rows)
    image = f"\n![lineage]({picture})\n" if picture else ""
    return (
        f"# Lineage of `{graph.root}`\n\n"
        f"{len(graph.nodes)} nodes, {len(graph.edges)} edges (python -m sepnet.lineage).\n\n"
        f"```mermaid\n{mermaid(graph)}\n```\n{image}\n{table}\n"
    )
