"""The lineage graph as a picture: a layered left-to-right layout, drawn with matplotlib into SVG and PNG.

No graph-drawing program is needed. The layout is the classic layered one (Sugiyama):

1. layers: a node sits one column right of its furthest parent (roots in column 0);
2. an edge spanning several columns gets a waypoint in each column it crosses, so it
   passes between boxes, never through one;
3. the order within each column is improved by barycentre sweeps (fewest crossings kept);
4. each column's vertical positions are the closest to the mean of its neighbours'
   that keep the boxes in order and apart (an isotonic regression, solved exactly by
   pool-adjacent-violators), alternating left-to-right and right-to-left sweeps;
5. columns are as wide as their widest box, gaps as wide as their widest edge label.

All coordinates are in points (1/72 inch), so text measured by matplotlib fits its box.
"""

from __future__ import annotations

import io
import itertools
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from sepnet.atomic import write_bytes
from sepnet.errors import printable
from sepnet.evaluation.lineage import EVALUATE, MERGE, OUTSIDE, TRAIN, LineageGraph, drawn_part

FONT_SIZE = 9.0
TITLE_SIZE = 9.5
LINE_HEIGHT = 12.5
PAD_X, PAD_Y = 8.0, 6.0
NODE_GAP = 14.0
"""Vertical space between two boxes of a column."""
LABEL_SIZE = 7.5
LABEL_LINE = 9.5
LABEL_WRAP = 26
"""Edge labels wrap at this many characters."""
MIN_COLUMN_GAP = 56.0
MARGIN = 24.0
WAYPOINT_HEIGHT = 10.0
PART_GAP = 26.0
"""Vertical space between two unconnected parts of the graph."""
NAME_WRAP = 30
PNG_PIXELS = 60_000
"""The longest side of ``lineage.png`` in pixels (matplotlib's limit is 2^16)."""

STYLES = {
    TRAIN: {"face": "#dbe9f6", "edge": "#3b75af", "style": "solid", "round": 7.0},
    MERGE: {"face": "#fde2c8", "edge": "#c8640a", "style": "solid", "round": 2.0},
    EVALUATE: {"face": "#dff2dc", "edge": "#3f8f3a", "style": "solid", "round": 12.0},
    OUTSIDE: {"face": "#eeeeee", "edge": "#888888", "style": "dashed", "round": 7.0},
}
EDGE_COLOURS = {"fine-tune": "#3b75af", "merge": "#c8640a", "evaluate": "#3f8f3a"}
LEGEND = [(TRAIN, "run (train / fine-tune)"), (MERGE, "merge"), (EVALUATE, "evaluation"), (OUTSIDE, "parent outside the folder")]


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width of ``text`` in points as matplotlib renders it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    props = FontProperties(size=size, weight="bold" if bold else "normal")
    width, _, _ = TextToPath().get_text_width_height_descent(text, props, ismath=False)
    return width


def wrap_name(name: str, width: int = NAME_WRAP) -> list[str]:
    """A long name over lines of about equal length, at most ``width`` characters where it can be,
    broken after ``_``, ``-`` or ``/`` (a longer stretch without them: every ``width`` characters)."""
    if len(name) <= width:
        return [name]
    pieces, current = [], ""
    for char in name:
        current += char
        if char in "_-/" or len(current) == width:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    target = len(name) / math.ceil(len(name) / width)
    lines, line = [], ""
    for piece in pieces:
        # a piece moves to the next line when most of it would stick out past the target length
        if line and (len(line) + len(piece) > width or len(line) + len(piece) / 2 > target):
            lines.append(line)
            line = ""
        line += piece
    return [*lines, line] if line else lines


@dataclass
class Box:
    """A node (or an edge's waypoint, ``key`` starting with ``~``) at its place: centre ``x, y``, size ``w, h``."""

    key: str
    layer: int
    lines: list[str] = field(default_factory=list)  # the name's lines first (bold), then details
    title_lines: int = 1
    w: float = 0.0
    h: float = WAYPOINT_HEIGHT
    x: float = 0.0
    y: float = 0.0

    @property
    def waypoint(self) -> bool:
        return self.key.startswith("~")


@dataclass
class Route:
    """An edge as drawn: the boxes it passes, source first, and its label's lines and place."""

    boxes: list[Box]
    kind: str
    label: list[str]
    label_x: float = 0.0
    label_y: float = 0.0
    label_w: float = 0.0
    label_h: float = 0.0
    gap: int = 0  # the column gap holding the label (between layers gap and gap + 1)


@dataclass
class Layout:
    boxes: dict[str, Box]
    routes: list[Route]
    width: float
    height: float
    column_x: list[float]


def assign_layers(graph: LineageGraph) -> dict[str, int]:
    """Column of each node: 0 for a node without parents, else one more than its furthest parent.

    Depth first without recursion (a chain of thousands of runs is fine); a cycle, which real runs cannot
    make, is broken where it closes (a hand-made record)."""
    layers: dict[str, int] = {}
    parents = {k: [p for p in graph.parents(k) if p in graph.nodes] for k in graph.nodes}
    for start in graph.nodes:
        if start in layers:
            continue
        stack, on_path = [(start, iter(parents[start]))], {start}
        while stack:
            key, pending = stack[-1]
            parent = next((p for p in pending if p not in layers and p not in on_path), None)
            if parent is not None:
                stack.append((parent, iter(parents[parent])))
                on_path.add(parent)
                continue
            stack.pop()
            on_path.discard(key)
            layers[key] = 1 + max((layers[p] for p in parents[key] if p in layers), default=-1)
    return layers


def pava(targets: list[float], weights: list[float]) -> list[float]:
    """The non-decreasing sequence closest to ``targets`` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for t, w in zip(targets, weights):
        blocks.append([t, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out: list[float] = []
    for mean, _, count in blocks:
        out += [mean] * count
    return out


def place_in_order(column: list[Box], desired: list[float], weights: list[float], gap: float) -> None:
    """Set ``y`` of ``column``'s boxes, in their order and at least ``gap`` apart, closest to ``desired``."""
    offsets, total = [], 0.0
    for i, box in enumerate(column):
        if i:
            total += (column[i - 1].h + box.h) / 2 + (gap if not (box.waypoint and column[i - 1].waypoint) else 4.0)
        offsets.append(total)
    z = pava([d - o for d, o in zip(desired, offsets)], weights)
    for box, zi, o in zip(column, z, offsets):
        box.y = zi + o


def crossings(columns: list[list[Box]], links: list[tuple[str, str]], position: dict[str, int]) -> int:
    by_gap: dict[int, list[tuple[int, int]]] = {}
    layer_of = {b.key: b.layer for col in columns for b in col}
    for a, b in links:
        by_gap.setdefault(layer_of[a], []).append((position[a], position[b]))
    total = 0
    for pairs in by_gap.values():
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                total += (a1 - a2) * (b1 - b2) < 0
    return total


def connected_parts(keys: list[str], links: list[tuple[str, str]]) -> list[set[str]]:
    """The weakly connected parts of the graph, each as its set of keys, in the order of their first key."""
    root = {k: k for k in keys}

    def find(k: str) -> str:
        while root[k] != k:
            root[k] = root[root[k]]
            k = root[k]
        return k

    for a, b in links:
        root[find(a)] = find(b)
    parts: dict[str, set[str]] = {}
    for k in keys:
        parts.setdefault(find(k), set()).add(k)
    return list(parts.values())


def arrange(columns: list[list[Box]], links: list[tuple[str, str]], left: dict, right: dict, boxes: dict[str, Box]) -> None:
    """Order the boxes of each column (barycentre sweeps, fewest crossings kept) and give them their ``y``
    (each column pulled towards its neighbours, boxes kept in order and apart), in place."""
    n_layers = len(columns)

    def positions() -> dict[str, int]:
        return {b.key: i for col in columns for i, b in enumerate(col)}

    best_order = [list(c) for c in columns]
    best_crossings = crossings(columns, links, positions())
    for sweep in range(8):
        down = sweep % 2 == 0
        for layer in range(1, n_layers) if down else range(n_layers - 2, -1, -1):
            pos, neighbours = positions(), left if down else right

            def barycentre(box: Box, pos=pos, neighbours=neighbours) -> float:
                linked = neighbours[box.key]
                return sum(pos[k] for k in linked) / len(linked) if linked else pos[box.key]

            columns[layer].sort(key=barycentre)
        count = crossings(columns, links, positions())
        if count < best_crossings:
            best_crossings, best_order = count, [list(c) for c in columns]
    columns[:] = best_order

    for column in columns:  # start stacked, then pull each column towards its neighbours
        place_in_order(column, [0.0] * len(column), [1.0] * len(column), NODE_GAP)
    for sweep in range(12):
        down = sweep % 2 == 0
        for layer in range(1, n_layers) if down else range(n_layers - 2, -1, -1):
            column = columns[layer]
            desired, weights = [], []
            for box in column:
                linked = (left if down else right)[box.key] or (right if down else left)[box.key]
                desired.append(sum(boxes[k].y for k in linked) / len(linked) if linked else box.y)
                weights.append(4.0 if box.waypoint else 1.0 + len(linked))  # straight long edges matter most
            place_in_order(column, desired, weights, NODE_GAP)


def layout(graph: LineageGraph) -> Layout:
    """Place every node and route every edge of ``graph`` (see the module's docstring)."""
    layers = assign_layers(graph)
    boxes: dict[str, Box] = {}
    for key, node in graph.nodes.items():
        title = wrap_name(node.name)
        box = Box(key, layers[key], [*title, *node.details], len(title))
        widths = [text_width(t, TITLE_SIZE, bold=True) for t in title] + [text_width(t, FONT_SIZE) for t in node.details]
        box.w = max(widths) + 2 * PAD_X
        box.h = len(box.lines) * LINE_HEIGHT + 2 * PAD_Y
        boxes[key] = box

    # Waypoints: one per column an edge crosses.
    routes: list[Route] = []
    links: list[tuple[str, str]] = []  # consecutive boxes of every route, left to right
    for i, edge in enumerate(graph.edges):
        source, target = boxes[edge.source], boxes[edge.target]
        path = [source]
        for layer in range(source.layer + 1, target.layer):
            waypoint = Box(f"~{i}.{layer}", layer)
            boxes[waypoint.key] = waypoint
            path.append(waypoint)
        path.append(target)
        links += [(a.key, b.key) for a, b in itertools.pairwise(path)]
        label = textwrap.wrap(edge.label, LABEL_WRAP, break_on_hyphens=False) or [""]
        routes.append(Route(path, edge.kind, label))

    n_layers = 1 + max(b.layer for b in boxes.values())
    columns: list[list[Box]] = [[] for _ in range(n_layers)]
    for box in boxes.values():  # discovery order: parents before children, siblings together
        columns[box.layer].append(box)
    left = {b.key: [] for b in boxes.values()}
    right = {b.key: [] for b in boxes.values()}
    for a, b in links:
        right[a].append(b)
        left[b].append(a)

    # Each connected part of the graph is arranged alone, then the parts are stacked top to bottom.
    top = 0.0
    for members in connected_parts(list(boxes), links):
        part = [[b for b in column if b.key in members] for column in columns]
        arrange(part, [link for link in links if link[0] in members], left, right, boxes)
        placed = [boxes[k] for k in members]
        shift = top - min(b.y - b.h / 2 for b in placed)
        for box in placed:
            box.y += shift
        top = max(b.y + b.h / 2 for b in placed) + PART_GAP

    # Labels sit in the gap left of the box an edge enters: near the target when it has one parent,
    # near the source when several edges arrive (a merge), in the middle otherwise.
    for route in routes:
        route.label_w = max(text_width(t, LABEL_SIZE) for t in route.label) + 6
        route.label_h = len(route.label) * LABEL_LINE + 3
        route.gap = route.boxes[-2].layer
    gap_widths = [MIN_COLUMN_GAP] * max(0, n_layers - 1)
    for route in routes:
        gap_widths[route.gap] = max(gap_widths[route.gap], route.label_w + 28)
    column_widths = [max((b.w for b in col), default=0.0) for col in columns]
    column_x, x = [], MARGIN
    for i, width in enumerate(column_widths):
        column_x.append(x + width / 2)
        x += width + (gap_widths[i] if i < len(gap_widths) else 0)
    for column, cx in zip(columns, column_x):
        for box in column:
            box.x = cx

    top = min(b.y - b.h / 2 for b in boxes.values())
    for box in boxes.values():
        box.y += MARGIN + 30 - top  # room for the title and legend above

    in_degree = {k: len(graph.parents(k)) for k in graph.nodes}
    out_degree = {k: len(graph.children(k)) for k in graph.nodes}
    for route in routes:
        a, b = route.boxes[-2], route.boxes[-1]
        if in_degree[b.key] <= 1:
            t = 0.62
        elif a.waypoint or out_degree.get(a.key, 1) <= 1:
            t = 0.3
        else:
            t = 0.5
        x0, x1 = _right(a, column_widths), _left(b, column_widths)
        route.label_x, route.label_y = _bezier(x0, a.y, x1, b.y, t)
        lo, hi = x0 + route.label_w / 2 + 3, x1 - route.label_w / 2 - 3
        route.label_x = min(max(route.label_x, lo), max(lo, hi))
    for gap in range(len(gap_widths)):  # labels of one gap: in their order, never on top of each other
        here = sorted((r for r in routes if r.gap == gap), key=lambda r: r.label_y)
        if here:
            offsets, total = [], 0.0
            for i, r in enumerate(here):
                if i:
                    total += (here[i - 1].label_h + r.label_h) / 2 + 2
                offsets.append(total)
            z = pava([r.label_y - o for r, o in zip(here, offsets)], [1.0] * len(here))
            for r, zi, o in zip(here, z, offsets):
                r.label_y = zi + o

    width = x + MARGIN
    bottom = max([b.y + b.h / 2 for b in boxes.values()] + [r.label_y + r.label_h / 2 for r in routes])
    return Layout(boxes, routes, width, bottom + MARGIN, column_x)


def _right(box: Box, column_widths: list[float]) -> float:
    """Where an edge leaves ``box``: its right side (a waypoint: its column's right side)."""
    return box.x + (column_widths[box.layer] / 2 if box.waypoint else box.w / 2)


def _left(box: Box, column_widths: list[float]) -> float:
    return box.x - (column_widths[box.layer] / 2 if box.waypoint else box.w / 2)


def _bezier(x0: float, y0: float, x1: float, y1: float, t: float) -> tuple[float, float]:
    """Point at ``t`` of the cubic from (x0, y0) to (x1, y1) leaving and arriving horizontally."""
    cx = (x0 + x1) / 2
    points = [(x0, y0), (cx, y0), (cx, y1), (x1, y1)]
    coefficients = [(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3]
    return sum(c * p[0] for c, p in zip(coefficients, points)), sum(c * p[1] for c, p in zip(coefficients, points))


def draw(graph: LineageGraph, title: str | None = None):
    """A matplotlib :class:`~matplotlib.figure.Figure` of ``graph`` at 1 point per unit (no pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MplPath

    graph, note = drawn_part(graph)  # a picture of thousands of boxes is unreadable, and slow to draw
    title = printable(f"{title} ({note})" if title and note else title or note or "") or None
    placed = layout(graph)
    width, height = placed.width, placed.height
    legend_width = sum(text_width(t, FONT_SIZE) + 40 for _, t in LEGEND)
    width = max(width, legend_width + 2 * MARGIN, text_width(title or "", 11, bold=True) + 2 * MARGIN)
    fig = Figure(figsize=(width / 72, height / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y grows downwards, like the layout
    ax.axis("off")
    column_widths = [0.0] * len(placed.column_x)
    for box in placed.boxes.values():
        column_widths[box.layer] = max(column_widths[box.layer], box.w)

    for route in placed.routes:
        colour = EDGE_COLOURS.get(route.kind, "#555555")
        vertices, codes = [], []
        for a, b in itertools.pairwise(route.boxes):
            x0, x1 = _right(a, column_widths), _left(b, column_widths)
            if not vertices:
                vertices.append((x0, a.y))
                codes.append(MplPath.MOVETO)
            else:  # across a waypoint's column, straight
                vertices.append((x0, a.y))
                codes.append(MplPath.LINETO)
            cx = (x0 + x1) / 2
            vertices += [(cx, a.y), (cx, b.y), (x1 - 6, b.y)]
            codes += [MplPath.CURVE4] * 3
        ax.add_patch(PathPatch(MplPath(vertices, codes), fill=False, edgecolor=colour, linewidth=1.2,
                               linestyle="dashed" if route.kind == EVALUATE else "solid", zorder=1))
        tip_x, tip_y = vertices[-1]
        ax.add_patch(PathPatch(MplPath([(tip_x, tip_y - 3.5), (tip_x + 6, tip_y), (tip_x, tip_y + 3.5), (tip_x, tip_y - 3.5)]),
                               facecolor=colour, edgecolor=colour, linewidth=0.5, zorder=1))
        ax.text(route.label_x, route.label_y, "\n".join(printable(t) for t in route.label), fontsize=LABEL_SIZE, color=colour, ha="center",
                va="center", linespacing=1.15, zorder=3, parse_math=False,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})

    for box in placed.boxes.values():
        if box.waypoint:
            continue
        kind = graph.nodes[box.key].kind
        style = STYLES[kind]
        ax.add_patch(FancyBboxPatch((box.x - box.w / 2, box.y - box.h / 2), box.w, box.h,
                                    boxstyle=f"round,pad=0,rounding_size={style['round']}", facecolor=style["face"],
                                    edgecolor=style["edge"], linewidth=1.3, linestyle=style["style"], zorder=2))
        y = box.y - box.h / 2 + PAD_Y + LINE_HEIGHT / 2
        for i, line in enumerate(box.lines):
            bold = i < box.title_lines
            ax.text(box.x, y, printable(line), fontsize=TITLE_SIZE if bold else FONT_SIZE, fontweight="bold" if bold else "normal",
                    ha="center", va="center", color="#111111", zorder=4, parse_math=False)
            y += LINE_HEIGHT

    if title:
        ax.text(MARGIN, MARGIN - 6, title, fontsize=11, fontweight="bold", ha="left", va="center", color="#111111", parse_math=False)
    x = MARGIN
    for kind, text in LEGEND:  # the legend, one line under the title
        style = STYLES[kind]
        ax.add_patch(FancyBboxPatch((x, MARGIN + 6), 22, 11, boxstyle=f"round,pad=0,rounding_size={min(style['round'], 5)}",
                                    facecolor=style["face"], edgecolor=style["edge"], linestyle=style["style"], linewidth=1.0))
        ax.text(x + 28, MARGIN + 11.5, text, fontsize=FONT_SIZE, va="center", ha="left", color="#333333")
        x += text_width(text, FONT_SIZE) + 40
    return fig


def save_pictures(graph: LineageGraph, out_dir: Path, title: str | None = None, dpi: int = 110) -> tuple[Path, Path]:
    """Write ``lineage.svg`` (text kept as text) and ``lineage.png`` into ``out_dir``; returns both paths."""
    import matplotlib

    fig = draw(graph, title)
    svg, png = io.BytesIO(), io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(svg, format="svg")
    largest = max(fig.get_size_inches())  # a PNG is at most 2^16 pixels a side: a very tall graph gets a lower dpi
    fig.savefig(png, format="png", dpi=min(dpi, PNG_PIXELS / largest))
    return write_bytes(out_dir / "lineage.svg", svg.getvalue()), write_bytes(out_dir / "lineage.png", png.getvalue())


def write_lineage(root: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Collect the lineage under ``root`` and write ``lineage.svg``, ``lineage.png`` and ``lineage.md`` into
    ``out`` (default: ``root``); returns ``{"svg", "png", "md": path, "graph": the graph, "note": what the
    pictures leave out (:func:`~sepnet.evaluation.lineage.drawn_part`) or None}``."""
    from sepnet.app.run_dir import ensure_writable
    from sepnet.atomic import write_text
    from sepnet.evaluation.lineage import collect_lineage, lineage_markdown

    graph = collect_lineage(root)
    out_dir = ensure_writable(Path(out).expanduser() if out is not None else graph.root, key="out", value="<folder>")
    svg, png = save_pictures(graph, out_dir, title=f"lineage of {printable(graph.root, 200)}")
    md = write_text(out_dir / "lineage.md", lineage_markdown(graph, picture=svg.name))
    return {"svg": svg, "png": png, "md": md, "graph": graph, "note": drawn_part(graph)[1]}
