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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sepnet.app.configs import CONFIG_DIR
from sepnet.checkpoints.checkpoint import read_checkpoint, sepnet_entry
from sepnet.errors import SepnetError, printable
from sepnet.registry import shown

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
SHARES_SHOWN = 8
"""A merge edge's label lists up to this many parents' weights (``merge 0.8 of 0.8/0.2``), else counts them
(``merge 0.0002 of 5000 parents``)."""
NAME_CHARS = 100
"""A node's name, an edge's label or a detail line is cut to this many characters (ending in ``…``)."""
LINEAGE_DEPTH = 64
"""Generations of recorded ancestry followed (``parent_lineage`` inside ``parent_lineage``...)."""


def display(text: Any, limit: int = NAME_CHARS) -> str:
    """``text`` as drawn and tabulated: control characters escaped, cut to ``limit`` characters."""
    return printable(text, limit)


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
    _into: dict[str, list[Edge]] = field(default_factory=dict, repr=False, compare=False)
    _out_of: dict[str, list[Edge]] = field(default_factory=dict, repr=False, compare=False)
    _seen: set[tuple[str, str, str]] = field(default_factory=set, repr=False, compare=False)
    _indexed: int = field(default=0, repr=False, compare=False)

    def _index(self) -> None:
        """Index the edges appended since the last call (by target, by source, and as a set): every look-up
        is a dict or set look-up, so a graph of thousands of edges builds in linear time."""
        for edge in self.edges[self._indexed :]:
            self._into.setdefault(edge.target, []).append(edge)
            self._out_of.setdefault(edge.source, []).append(edge)
            self._seen.add((edge.source, edge.target, edge.label))
        self._indexed = len(self.edges)

    def edges_into(self, key: str) -> list[Edge]:
        self._index()
        return list(self._into.get(key, ()))

    def parents(self, key: str) -> list[str]:
        return [e.source for e in self.edges_into(key)]

    def children(self, key: str) -> list[str]:
        self._index()
        return [e.target for e in self._out_of.get(key, ())]

    def add_edge(self, source: str, target: str, kind: str, label: str) -> None:
        label = display(label)
        self._index()
        if (source, target, label) not in self._seen:
            self.edges.append(Edge(source, target, kind, label))
            self._index()


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


class Record:
    """The fields of one record file (a checkpoint's lineage and metrics, ``summary.json``, ``results.json``),
    each taken in the shape sepnet writes it: a field of another shape (a string where a mapping belongs, a
    list where a number does) is left out, and :meth:`warn` names the file and those fields in one line."""

    SHOWN = 3
    """Odd fields named in the warning; more are counted."""

    def __init__(self, path: Path):
        self.path = path
        self.odd: list[str] = []

    def _odd(self, key: str, value: Any, wanted: str) -> None:
        self.odd.append(f"{printable(key, 120)} is {shown(value)}, not {wanted}")

    def mapping(self, value: Any, key: str) -> Mapping:
        if value is None or isinstance(value, Mapping):
            return value or {}
        self._odd(key, value, "a mapping")
        return {}

    def number(self, value: Any, key: str) -> float | None:
        if value is None or _is_number(value):
            return None if value is None else float(value)
        self._odd(key, value, "a number")
        return None

    def integer(self, value: Any, key: str) -> int | None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        self._odd(key, value, "a whole number")
        return None

    def text(self, value: Any, key: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if _is_number(value):  # a run named 2024 on the command line is stored as a number
            return str(value)
        self._odd(key, value, "a string")
        return None

    def items(self, value: Any, key: str) -> list:
        if value is None or isinstance(value, (list, tuple)):
            return list(value or [])
        self._odd(key, value, "a list")
        return []

    def strings(self, value: Any, key: str) -> list[str]:
        items = self.items(value, key)
        odd = [v for v in items if not isinstance(v, str)]
        if odd:
            self._odd(f"{key}[{items.index(odd[0])}]", odd[0], "a string" + (f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""))
        return [v for v in items if isinstance(v, str)]

    def metrics(self, value: Any, key: str) -> dict:
        """Validation metrics: ``{"val/sdr": <number>}`` when it is there and a number, else ``{}``."""
        sdr = self.number(self.mapping(value, key).get("val/sdr"), f"{key}.val/sdr")
        return {} if sdr is None else {"val/sdr": sdr}

    def lineage(self, value: Any, key: str = "lineage", depth: int = 0) -> dict:
        """A checkpoint's lineage (:mod:`sepnet.checkpoints.parents`), with only the fields of the right shape."""
        lineage = self.mapping(value, key)
        if not lineage:
            return {}
        clean: dict[str, Any] = {"parents": self.strings(lineage.get("parents"), f"{key}.parents")}
        clean["from_run"] = self.text(lineage.get("from_run"), f"{key}.from_run")
        clean["parent_metrics"] = self.metrics(lineage.get("parent_metrics"), f"{key}.parent_metrics")
        strict = self.mapping(lineage.get("pretrained"), f"{key}.pretrained").get("strict", True)
        if not isinstance(strict, bool):
            self._odd(f"{key}.pretrained.strict", strict, "true or false")
            strict = True
        clean["pretrained"] = {"strict": strict}
        ancestry = lineage.get("parent_lineage")
        if ancestry is not None and depth >= LINEAGE_DEPTH:
            self.odd.append(f"lineage.parent_lineage goes back more than {LINEAGE_DEPTH} generations (the older ones)")
            ancestry = None
        merge = lineage.get("merge")
        if merge is not None:
            merge = self.mapping(merge, f"{key}.merge")
            weights = [self.number(w, f"{key}.merge.weights[{i}]") for i, w in enumerate(self.items(merge.get("weights"), f"{key}.merge.weights"))]
            if weights and len(weights) != len(clean["parents"]):
                self.odd.append(f"{key}.merge.weights has {len(weights)} weights for {len(clean['parents'])} parents")
                weights = []
            clean["merge"] = {
                "weights": weights,
                "parent_metrics": [self.metrics(m, f"{key}.merge.parent_metrics[{i}]")
                                   for i, m in enumerate(self.items(merge.get("parent_metrics"), f"{key}.merge.parent_metrics"))],
            }  # fmt: skip
            clean["parent_lineage"] = [self.lineage(a, f"{_ancestry(key, depth)}[{i}]", depth + 1)
                                       for i, a in enumerate(self.items(ancestry, _ancestry(key, depth)))]  # fmt: skip
        else:
            clean["parent_lineage"] = self.lineage(ancestry, _ancestry(key, depth), depth + 1)
        return clean

    def warn(self) -> None:
        """One warning line naming the file and what of it was left out, if anything was."""
        if self.odd:
            more = f" (and {len(self.odd) - self.SHOWN} more)" if len(self.odd) > self.SHOWN else ""
            log.warning(
                "lineage: %s: left out what is not of the shape sepnet writes: %s%s",
                printable(self.path, 300), "; ".join(self.odd[: self.SHOWN]), more,
            )
            self.odd = []


def _ancestry(key: str, depth: int) -> str:
    """The name of the ``parent_lineage`` below ``key`` in a message, short however deep it is."""
    return f"{key}.parent_lineage" if depth < 2 else f"lineage.parent_lineage (generation {depth + 1})"


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
            ckpt = ckpt or max((run_dir / "checkpoints").glob("*.ckpt"), key=_mtime)
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
        """A checkpoint's checked sepnet entry (config's run name, lineage, metrics, epoch, each of the shape
        sepnet writes), or None (with a warning) if unreadable."""
        try:
            info = sepnet_entry(ckpt, read_checkpoint(ckpt))  # data only: no code run, no model built
        except SepnetError as exc:
            log.warning("lineage: left out %s (%s)", printable(ckpt, 300), printable(exc, 1000))
            return None
        record = Record(ckpt)
        config = record.mapping(info.get("config"), "config")
        entry = {
            "config": {"run_name": record.text(config.get("run_name"), "config.run_name")},
            "lineage": record.lineage(info.get("lineage")),
            "metrics": record.metrics(info.get("metrics"), "metrics"),
            "epoch": record.integer(info.get("epoch"), "epoch"),
        }
        record.warn()
        return entry

    def add_checkpoint_node(self, key: str, info: dict, run_dir: Path | None, ckpt: Path | None, outside: bool = False) -> Node:
        lineage = info.get("lineage") or {}
        config = info.get("config") or {}
        kind = OUTSIDE if outside else MERGE if "merge" in lineage else TRAIN
        name = display(config.get("run_name") or (run_dir.parent.name if run_dir else Path(key).stem))
        node = Node(key, kind, name, path=run_dir or ckpt)
        val_sdr, epoch = (info.get("metrics") or {}).get("val/sdr"), info.get("epoch")
        summary_path = run_dir / "summary.json" if run_dir else None
        if summary_path is not None and _is_file(summary_path):
            record = Record(summary_path)
            summary = record.mapping(_read_json(summary_path, record), "summary.json")
            best = record.number(summary.get("best_val_sdr"), "best_val_sdr")
            if best is not None:  # the run's own summary; an odd one leaves the checkpoint's figures
                val_sdr = best
                epoch = record.integer(summary.get("best_epoch"), "best_epoch")
            record.warn()
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
        exists = _is_file(parent)
        info = self.read_entry(parent) if exists else None
        if info is None:  # the file is gone: the child's record of it is all there is
            info = {"config": {"run_name": name or (run_dir.parent.name if run_dir else parent.stem)}, "metrics": metrics, "lineage": lineage}
        node = self.add_checkpoint_node(key, info, None, parent, outside=True)
        node.details.append("outside this folder" if exists else "file not found")
        self.add_parent_edges(key, info.get("lineage") or {})
        return key

    def add_parent_edges(self, key: str, lineage: dict) -> None:
        """Edges from each parent a (checked, :meth:`Record.lineage`) lineage names to ``key``."""
        parents = lineage.get("parents") or []
        merge = lineage.get("merge")
        ancestry = lineage.get("parent_lineage")
        if merge is not None:
            weights = merge["weights"] or [1 / max(1, len(parents))] * len(parents)
            shares = "/".join(f"{w:.2g}" if w is not None else "?" for w in weights[:SHARES_SHOWN])
            shares = shares if len(weights) <= SHARES_SHOWN else f"{len(weights)} parents"
            metrics, ancestries = merge["parent_metrics"], ancestry if isinstance(ancestry, list) else []
            for i, (path, weight) in enumerate(zip(parents, weights)):
                parent_metrics = metrics[i] if i < len(metrics) else {}
                parent_lineage = ancestries[i] if i < len(ancestries) else {}
                source = self.parent_node(path, None, parent_metrics, parent_lineage)
                share = f"{weight:.2g}" if weight is not None else "?"
                self.graph.add_edge(source, key, MERGE, f"merge {share} of {shares}")
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
            record = Record(results_path)
            results = _read_json(results_path, record)
            if results is not None and not isinstance(results, Mapping):
                record.odd.append(f"it holds {shown(results)}, not a mapping (it is not an evaluation's record)")
            results = record.mapping(results, "results") if isinstance(results, Mapping) else {}
            checkpoint_path = record.text(results.get("checkpoint"), "checkpoint")
            if not checkpoint_path:  # not an evaluation's record (or unreadable, said above): not part of the graph
                record.warn()
                continue
            run_dir = results_path.parent
            source = self.parent_node(
                checkpoint_path, None, record.metrics(results.get("checkpoint_metrics"), "checkpoint_metrics"),
                record.lineage(results.get("lineage")),
            )
            knobs = changed_knobs(dict(record.mapping(results.get("knobs"), "knobs")), self.defaults, command_line_knobs(run_dir))
            split = record.text(results.get("split"), "split") or "test"
            sdr = record.number(results.get("sdr"), "sdr")
            tracks = record.integer(results.get("tracks"), "tracks")
            record.warn()
            name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
            name = display(name.removeprefix("evaluate/"))
            key = str(run_dir.resolve())
            node = Node(key, EVALUATE, name, path=run_dir, test_sdr=sdr)
            node.details.append(display(f"{split} SDR {format_db(sdr)}"))
            if tracks is not None:
                node.details[-1] += f", {tracks} track{'s' if tracks != 1 else ''}"
            self.graph.nodes[key] = node
            label = " ".join(["evaluate", *(f"{k}={format_value(v)}" for k, v in knobs.items())])
            self.graph.add_edge(source, key, EVALUATE, label)
            checkpoint = self.graph.nodes[source]
            if split == "test" and not set(knobs) - SCOPE_KNOBS and checkpoint.test_sdr is None:
                checkpoint.test_sdr = sdr
                checkpoint.details.append(f"test SDR {format_db(sdr)}")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def _run_time(run_dir: Path) -> tuple[str, str]:
    """Sort key putting older runs first: Hydra names run folders by time (``<name>/<time>``)."""
    return (run_dir.name, str(run_dir))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a dangling link: read (and refused) like any other file
        return 0.0


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a path the system cannot look up (too long, a NUL in it)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_json(path: Path, record: Record | None = None) -> Any:
    """The JSON in ``path``, or None (said in ``record``'s warning) when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        if record is not None:
            record.odd.append(f"it cannot be read as JSON ({printable(exc, 160)})")
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
            node.details.insert(0, display(" ".join(["/".join(tail), *(i for i in items if i not in shared)])))


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


# -- what is drawn ---------------------------------------------------------------------------------

PARENTS_DRAWN = 24
"""A node with more parents (a merge of thousands of checkpoints) is drawn with this many, the rest as one box."""
NODES_DRAWN = 300
"""The pictures and the Mermaid chart show at most this many nodes (the first found); the table lists every one."""


def drawn_part(graph: LineageGraph) -> tuple[LineageGraph, str | None]:
    """The part of ``graph`` a picture can show, and a note saying what was left out (None: all of it).

    A node with more than :data:`PARENTS_DRAWN` parents keeps the first ones; the others become one
    ``+N more parents`` box (their own ancestry, when nothing else drawn comes from it, goes with them).
    Of what remains, the first :data:`NODES_DRAWN` nodes are drawn. Linear in the graph's size.
    """
    dropped: set[int] = set()  # ids of the edges not drawn
    extra_nodes: list[Node] = []
    extra_edges: list[Edge] = []
    for key in graph.nodes:
        into = graph.edges_into(key)
        if len(into) > PARENTS_DRAWN:
            rest = into[PARENTS_DRAWN - 1 :]
            dropped.update(id(e) for e in rest)
            more = Node(f"{key}\n+more", OUTSIDE, f"+{len(rest)} more parents", ["listed in lineage.md"])
            extra_nodes.append(more)
            extra_edges.append(Edge(more.key, key, rest[0].kind, rest[0].kind))
    # A parent whose every child edge was dropped is not drawn, nor (in turn) its own parents' edges to it.
    kept_out = {k: len(graph.children(k)) for k in graph.nodes}
    gone: set[str] = set()
    work = [e.source for e in graph.edges if id(e) in dropped]
    for edge in graph.edges:
        if id(edge) in dropped:
            kept_out[edge.source] -= 1
    while work:
        key = work.pop()
        if key in gone or kept_out[key] > 0:
            continue
        gone.add(key)
        for edge in graph.edges_into(key):
            if id(edge) not in dropped:
                dropped.add(id(edge))
                kept_out[edge.source] -= 1
                work.append(edge.source)
    nodes = [n for k, n in graph.nodes.items() if k not in gone]
    nodes += extra_nodes
    notes = []
    if gone or extra_nodes:
        boxes = "one '+N more parents' box" if len(extra_nodes) == 1 else f"{len(extra_nodes)} '+N more parents' boxes"
        notes.append(f"{len(gone)} nodes are folded into {boxes} (a node shows its first {PARENTS_DRAWN - 1} parents)")
    if len(nodes) > NODES_DRAWN:
        notes.append(f"the first {NODES_DRAWN} of {len(graph.nodes)} nodes are drawn")
        nodes = nodes[:NODES_DRAWN]
    if not notes:
        return graph, None
    part = LineageGraph(graph.root, {n.key: n for n in nodes})
    for edge in [*(e for e in graph.edges if id(e) not in dropped), *extra_edges]:
        if edge.source in part.nodes and edge.target in part.nodes:
            part.edges.append(edge)
    return part, "; ".join(notes) + "; lineage.md's table lists every node"


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
        label = "<br>".join(mermaid_text(printable(t)) for t in [node.name, *node.details])
        lines.append(f"  {ids[key]}{opening}{label}{closing}")
    for edge in graph.edges:
        arrow = "-.->" if edge.kind == EVALUATE else "-->"
        lines.append(f'  {ids[edge.source]} {arrow}|"{mermaid_text(printable(edge.label))}"| {ids[edge.target]}')
    for kind, style in MERMAID_CLASSES.items():
        members = [ids[k] for k, n in graph.nodes.items() if n.kind == kind]
        if members:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines)


SOURCES_SHOWN = 12
"""The table's ``from`` column names this many parents of a node (a merge of thousands: the rest counted)."""


def _cell(value: Any) -> Any:
    """A table cell: text with its control characters escaped (one line per row) and ``&``, ``<``, ``>`` as
    HTML entities (shown as written, never read as a tag); numbers as they are (the table escapes ``|``)."""
    if not isinstance(value, str):
        return value
    return printable(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def lineage_markdown(graph: LineageGraph, picture: str | None = "lineage.svg") -> str:
    """``lineage.md``: the Mermaid block, the picture, and a table of the nodes."""
    from sepnet.app.tables import markdown_table

    rows = []
    for node in graph.nodes.values():
        inside = node.path is not None and node.path.is_relative_to(graph.root)
        where = str(node.path.relative_to(graph.root)) if inside else str(node.path or "-")
        into = graph.edges_into(node.key)
        sources = [f"{graph.nodes[e.source].name} ({e.label})" for e in into[:SOURCES_SHOWN]]
        sources += [f"+{len(into) - SOURCES_SHOWN} more"] if len(into) > SOURCES_SHOWN else []
        rows.append([node.name, node.kind, node.val_sdr, node.test_sdr, "; ".join(sources) or "-", display(where, 300)])
    rows = [[_cell(v) for v in row] for row in rows]
    table = markdown_table(["node", "kind", "val/sdr (dB)", "test SDR (dB)", "from", "folder"], rows)
    image = f"\n![lineage]({picture})\n" if picture else ""
    shown_part, note = drawn_part(graph)
    return (
        f"# Lineage of `{printable(graph.root, 300).replace('`', chr(39))}`\n\n"
        f"{len(graph.nodes)} nodes, {len(graph.edges)} edges (python -m sepnet.lineage)"
        f"{f'; in the chart and the picture, {note}' if note else ''}.\n\n"
        f"```mermaid\n{mermaid(shown_part)}\n```\n{image}\n{table}\n"
    )
