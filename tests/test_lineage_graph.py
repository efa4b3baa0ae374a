"""``python -m sepnet.lineage``: the graph of runs, merges and evaluations read from real checkpoints, drawn.

The chain ``make reproduce`` runs is drawn in ``tests/test_reproduce.py`` (its short chain writes
``lineage.md``/``.svg``/``.png``); here a hand-built outputs folder covers every kind of node and edge.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RUN, compose_config

from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, write_checkpoint
from sepnet.checkpoints.merging import merge_checkpoints
from sepnet.evaluation.lineage import (
    EVALUATE,
    MERGE,
    OUTSIDE,
    TRAIN,
    collect_lineage,
    default_knobs,
    mermaid,
    mermaid_text,
)
from sepnet.evaluation.lineage_drawing import layout, wrap_name

REPO = Path(__file__).resolve().parent.parent
MOVED = Path("/somewhere/else/outputs")
"""Where the runs were when they recorded their parents: the folder was moved since."""
ODD_NAME = 'tune "b" #2 <x> & |y| $5$'


@pytest.fixture(scope="module")
def blank_checkpoint(tmp_path_factory) -> dict:
    """A sepnet checkpoint (untrained tiny model) as a dict, to be given each run's name and lineage."""
    from sepnet.train import build_module

    folder = tmp_path_factory.mktemp("blank")
    module = build_module(compose_config("train", [*TINY_RUN], folder))
    return {"state_dict": module.state_dict(), CHECKPOINT_KEY: {"config": module.run_config, "lineage": {"parents": []},
                                                              "metrics": {}, "epoch": 0}}


def write_run(root: Path, blank: dict, name: str, lineage: dict, val_sdr: float, run_name: str | None = None) -> Path:
    raw = copy.deepcopy(blank)
    raw[CHECKPOINT_KEY]["config"]["run_name"] = run_name or name
    raw[CHECKPOINT_KEY]["lineage"] = lineage
    raw[CHECKPOINT_KEY]["metrics"] = {"val/sdr": val_sdr}
    path = root / name / "2026-01-01_00-00-00" / "checkpoints" / "best.ckpt"
    write_checkpoint(raw, path)
    return path


def recorded(path: Path, root: Path) -> str:
    """``path`` as a run recorded it before ``root`` was moved away from :data:`MOVED`."""
    return str(MOVED / path.relative_to(root))


def write_evaluation(root: Path, name: str, ckpt: str, sdr: float, **knobs) -> None:
    folder = root / "evaluate" / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"ckpt={ckpt}", *(f"eval.{k}={v}" for k, v in knobs.items())]))
    results = {"sdr": sdr, "split": "test", "tracks": 2, "checkpoint": ckpt, "knobs": {**default_knobs(), **knobs}, "lineage": {}}
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def outputs(blank_checkpoint, tmp_path_factory) -> Path:
    """An outputs folder: a run fine-tuned from a checkpoint that is gone, two fine-tunes of it (one
    partial), their 0.8/0.2 merge, and two evaluations (default knobs; mask_scale=0.8)."""
    root = tmp_path_factory.mktemp("outputs")
    gone = MOVED.parent / "old" / "2025-12-01_00-00-00" / "checkpoints" / "best.ckpt"
    base_lineage = {
        "parents": [str(gone)], "pretrained": {"strict": True}, "parent_metrics": {"val/sdr": 2.5},
        "parent_lineage": {"parents": []},
    }  # fmt: skip
    base = write_run(root, blank_checkpoint, "base", base_lineage, 3.0)
    from_base = {"parents": [recorded(base, root)], "from_run": "base", "parent_metrics": {"val/sdr": 3.0}, "parent_lineage": base_lineage}
    tune_a = write_run(root, blank_checkpoint, "tune_a", from_base, 3.5)
    tune_b = write_run(root, blank_checkpoint, "tune_b", {**from_base, "pretrained": {"strict": False}}, 3.25, run_name=ODD_NAME)
    blend = merge_checkpoints([tune_a, tune_b], [0.8, 0.2])
    blend[CHECKPOINT_KEY]["config"]["run_name"] = "blend"
    blend[CHECKPOINT_KEY]["lineage"]["parents"] = [recorded(tune_a, root), recorded(tune_b, root)]
    blend_path = root / "blend" / "2026-01-02_00-00-00" / "checkpoints" / "best.ckpt"
    write_checkpoint(blend, blend_path)
    write_evaluation(root, "blend_squeezed", recorded(blend_path, root), 1.75, mask_scale=0.8)
    write_evaluation(root, "base_test", str(base), 2.0)
    return root


def test_the_graph_has_every_run_merge_evaluation_and_how_they_came_about(outputs):
    graph = collect_lineage(outputs)
    by_name = {n.name: n for n in graph.nodes.values()}
    assert {name: n.kind for name, n in by_name.items()} == {
        "old": OUTSIDE, "base": TRAIN, "tune_a": TRAIN, ODD_NAME: TRAIN, "blend": MERGE,
        "blend_squeezed": EVALUATE, "base_test": EVALUATE,
    }  # fmt: skip
    edges = {(graph.nodes[e.source].name, graph.nodes[e.target].name): e.label for e in graph.edges}
    assert edges == {
        ("old", "base"): "fine-tune",
        ("base", "tune_a"): "fine-tune",
        ("base", ODD_NAME): "fine-tune (partial load)",
        ("tune_a", "blend"): "merge 0.8 of 0.8/0.2",
        (ODD_NAME, "blend"): "merge 0.2 of 0.8/0.2",
        ("blend", "blend_squeezed"): "evaluate mask_scale=0.8",
        ("base", "base_test"): "evaluate",
    }
    assert by_name["base"].details == ["val/sdr 3.00 dB (epoch 0)", "test SDR 2.00 dB"]  # evaluated at the defaults
    assert by_name["blend"].test_sdr is None  # only at mask_scale 0.8: that SDR stays on the evaluation's node
    assert by_name["blend_squeezed"].details == ["test SDR 1.75 dB, 2 tracks"]
    assert by_name["old"].details == ["val/sdr 2.50 dB", "file not found"]  # what base recorded about its parent


def test_a_run_folder_shows_its_ancestry_from_the_files(outputs):
    graph = collect_lineage(outputs / "blend")
    names = {n.name: n.kind for n in graph.nodes.values()}
    # the parents' recorded paths are gone (the folder moved): they are drawn from what blend recorded,
    # named by their folders (a merge records paths, not run names), and so is their own ancestry
    assert names == {"blend": MERGE, "tune_a": OUTSIDE, "tune_b": OUTSIDE, "base": OUTSIDE, "old": OUTSIDE}
    edges = {(graph.nodes[e.source].name, graph.nodes[e.target].name): e.label for e in graph.edges}
    assert edges[("tune_a", "blend")] == "merge 0.8 of 0.8/0.2" and edges[("base", "tune_b")] == "fine-tune (partial load)"
    assert edges[("old", "base")] == "fine-tune"


def test_mermaid_escapes_labels_and_renders_every_node_and_edge(outputs):
    graph = collect_lineage(outputs)
    text = mermaid(graph)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    shapes = r'\(".*"\)|\{\{".*"\}\}|\(\[".*"\]\)'
    nodes = [line for line in lines if re.fullmatch(rf"  n\d+({shapes})", line)]
    edges = [line for line in lines if re.fullmatch(r'  n\d+ (-->|-\.->)\|"[^"]*"\| n\d+', line)]
    assert len(nodes) == len(graph.nodes) and len(edges) == len(graph.edges)
    assert all(line.startswith(("  classDef ", "  class ")) for line in lines[1 + len(nodes) + len(edges):])
    for line in nodes:  # one pair of quotes per label: the user's quotes, '<' and '#' are entities
        assert line.count('"') == 2 and "<x>" not in line
    assert mermaid_text(ODD_NAME) == "tune #34;b#34; #35;2 #60;x#62; #38; #124;y#124; $5$"
    assert mermaid_text(ODD_NAME) in text


def boxes_overlap(a, b) -> bool:
    return abs(a.x - b.x) < (a.w + b.w) / 2 and abs(a.y - b.y) < (a.h + b.h) / 2


def test_the_layout_runs_left_to_right_without_overlaps(outputs):
    graph = collect_lineage(outputs)
    placed = layout(graph)
    boxes = {k: b for k, b in placed.boxes.items() if not b.waypoint}
    for edge in graph.edges:  # every edge goes right
        assert boxes[edge.source].x < boxes[edge.target].x
    keys = list(boxes)
    for i, a in enumerate(keys):
        box = boxes[a]
        assert 0 < box.x - box.w / 2 and box.x + box.w / 2 < placed.width
        assert 0 < box.y - box.h / 2 and box.y + box.h / 2 < placed.height
        for b in keys[i + 1 :]:
            assert not boxes_overlap(box, boxes[b]), (graph.nodes[a].name, graph.nodes[b].name)
    labels = placed.routes
    for i, r in enumerate(labels):
        for s in labels[i + 1 :]:
            if r.gap == s.gap:
                assert abs(r.label_y - s.label_y) >= (r.label_h + s.label_h) / 2 - 1e-6
    assert wrap_name("crnn_large_ultimate_4db_mask_scale/0") == ["crnn_large_ultimate_", "4db_mask_scale/0"]


def check_pictures(folder: Path, names: list[str]) -> None:
    """``lineage.png`` decodes, ``lineage.svg`` is XML naming every node, ``lineage.md`` has the Mermaid block."""
    from matplotlib import image

    pixels = image.imread(folder / "lineage.png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert pixels[..., :3].std() > 0.05  # not a blank page
    svg = ET.parse(folder / "lineage.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    for name in names:
        assert wrap_name(name)[0] in texts, name
    markdown = (folder / "lineage.md").read_text()
    assert "```mermaid\nflowchart LR\n" in markdown and "![lineage](lineage.svg)" in markdown


def test_the_entry_point_writes_svg_png_and_mermaid(outputs, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.lineage", str(outputs), f"out={tmp_path / 'pictures'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lineage: 7 nodes, 7 edges" in result.stdout
    check_pictures(tmp_path / "pictures", ["base", "tune_a", "blend", "blend_squeezed", "old"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures"]  # no run folder, log or .hydra of its own

    typo = subprocess.run([sys.executable, "-m", "sepnet.lineage", f"roots={outputs}"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines() == [
        "sepnet: error: roots is not a setting of this run; did you mean root? (+roots=... adds a new key on purpose)"
    ]
