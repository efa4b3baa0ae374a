"""``lineage`` and ``compare`` on records of an odd shape, names no terminal or file format expects, and sizes
no run makes: a warning line naming the file (or one error line), never a traceback, and seconds, not minutes.

Every input is a real file on disk, written as a careless user, another program or someone handing out an
outputs folder would write it: checkpoints with sepnet's entry (:data:`CHECKPOINT_KEY`) whose lineage,
metrics or run name hold a string where a mapping belongs or a list where a number does, ``summary.json``
and ``results.json`` of the wrong shape, folder and run names holding newlines, ``|`` and ANSI codes, a merge
of 5000 parents with a 100 KB run name, and CSVLogger ``metrics.csv`` files with ``inf``/``nan`` epochs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import TINY_RUN, compose_config

from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, write_checkpoint
from sepnet.errors import printable
from sepnet.evaluation.lineage import NAME_CHARS, PARENTS_DRAWN, LineageGraph, collect_lineage, drawn_part
from sepnet.evaluation.lineage_drawing import write_lineage

REPO = Path(__file__).resolve().parent.parent
TIME = "2026-01-01_00-00-00"
ANSI = "\x1b[31m"
HOSTILE_NAME = f"line one\nline two | {ANSI}red\x1b[0m <b>x</b> & \x07bell \x00nul"


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` as a user runs it (the worktree's sepnet), stdout and stderr kept apart."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def no_traceback(result: subprocess.CompletedProcess) -> str:
    """stdout and stderr together, after checking that neither holds a traceback."""
    both = result.stdout + result.stderr
    assert "Traceback" not in both and "Error executing job" not in both, both[-3000:]
    return both


@pytest.fixture(scope="module")
def blank(tmp_path_factory) -> dict:
    """A sepnet checkpoint of an untrained tiny model, as a dict: each test gives it a name, lineage and metrics."""
    from sepnet.train import build_module

    module = build_module(compose_config("train", [*TINY_RUN], tmp_path_factory.mktemp("blank")))
    return {"state_dict": module.state_dict(),
            CHECKPOINT_KEY: {"config": module.run_config, "lineage": {"parents": []}, "metrics": {}, "epoch": 0}}  # fmt: skip


def write_run(root: Path, blank: dict, folder: str, *, run_name=None, lineage=None, metrics=None, epoch=0) -> Path:
    """``<root>/<folder>/<time>/checkpoints/best.ckpt`` with the given (possibly odd) entry fields."""
    raw = copy.deepcopy(blank)
    entry = raw[CHECKPOINT_KEY]
    entry["config"]["run_name"] = folder if run_name is None else run_name
    entry["lineage"] = {"parents": []} if lineage is None else lineage
    entry["metrics"] = {} if metrics is None else metrics
    entry["epoch"] = epoch
    return write_checkpoint(raw, root / folder / TIME / "checkpoints" / "best.ckpt")


def write_results(root: Path, folder: str, results) -> Path:
    path = root / "evaluate" / folder / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(results if isinstance(results, str) else json.dumps(results))
    return path


# -- 1. records of an odd shape ---------------------------------------------------------------------


def test_lineage_leaves_out_odd_fields_and_names_each_odd_file_once(blank, tmp_path):
    root = tmp_path / "outputs"
    good = write_run(root, blank, "good", metrics={"val/sdr": 3.0})
    odd_checkpoints = {
        "parents_text": {"lineage": {"parents": "abc"}},  # a string where a list is: once drawn as parents a, b, c
        "merge_text": {"lineage": {"parents": [str(good)], "merge": "x"}},
        "weights_text": {"lineage": {"parents": [str(good)], "merge": {"weights": "ab"}}},
        "weights_nested": {"lineage": {"parents": [str(good)], "merge": {"weights": [[1]], "parent_metrics": "x"}}},
        "pretrained_text": {"lineage": {"parents": [str(good)], "pretrained": "x", "from_run": ["a"]}},
        "ancestry_odd": {"lineage": {"parents": ["/gone/old/t/checkpoints/best.ckpt"], "parent_metrics": [1],
                                     "parent_lineage": {"parents": 5}}},
        "sdr_list": {"metrics": {"val/sdr": [1, 2]}, "epoch": [3]},
        "sdr_text": {"metrics": {"val/sdr": "high"}},
        "name_list": {"run_name": ["a", "b"]},
    }
    ckpts = {folder: write_run(root, blank, folder, **fields) for folder, fields in odd_checkpoints.items()}
    summaries = {"summary_odd": {"best_val_sdr": {"a": 1}, "best_epoch": [1]}, "summary_list": [1, 2]}
    for folder, summary in summaries.items():
        write_run(root, blank, folder, metrics={"val/sdr": 1.0})
        (root / folder / TIME / "summary.json").write_text(json.dumps(summary))
    (root / "summary_bad" / TIME).mkdir(parents=True)
    write_run(root, blank, "summary_bad", metrics={"val/sdr": 1.5})
    (root / "summary_bad" / TIME / "summary.json").write_bytes(b"\xff\xfe{not json")
    results = {
        "ev_checkpoint_list": {"checkpoint": [1], "sdr": 1.0},
        "ev_sdr_text": {"checkpoint": str(good), "sdr": "x", "tracks": "many"},
        "ev_knobs_text": {"checkpoint": str(good), "sdr": 1.0, "knobs": "abc", "lineage": "x", "checkpoint_metrics": [1]},
        "ev_sdr_list": {"checkpoint": str(good), "sdr": [1.0], "split": ["test"]},
        "ev_list": [1, 2],
        "ev_not_json": "{",
    }
    result_paths = {folder: write_results(root, folder, r) for folder, r in results.items()}
    write_results(root, "ev_fine", {"checkpoint": str(good), "sdr": 2.0, "tracks": 2})

    result = run_module("sepnet.lineage", str(root), f"out={tmp_path / 'pictures'}", cwd=tmp_path)
    output = no_traceback(result)
    assert result.returncode == 0, output[-3000:]
    warnings = [line for line in output.splitlines() if "left out what is not of the shape sepnet writes" in line]
    odd_files = [*ckpts.values(), *(root / f / TIME / "summary.json" for f in [*summaries, "summary_bad"]), *result_paths.values()]
    for path in odd_files:  # every odd file named in exactly one line
        assert sum(str(path) in line for line in warnings) == 1, (path, output[-3000:])
    assert len(warnings) == len(odd_files)
    assert "lineage.merge is 'x', not a mapping" in output and "metrics.val/sdr is [1, 2], not a number" in output
    assert "results.json: left out what is not of the shape sepnet writes: it cannot be read as JSON" in output

    graph = collect_lineage(root)  # what was well-formed is all there
    names = {n.name: n for n in graph.nodes.values()}
    assert names["good"].details[0] == "val/sdr 3.00 dB (epoch 0)" and names["good"].test_sdr == 2.0
    assert names["sdr_list"].val_sdr is None and names["sdr_text"].val_sdr is None
    assert names["summary_odd"].details == ["val/sdr 1.00 dB (epoch 0)"]  # an odd summary leaves the checkpoint's figures
    assert names["summary_list"].val_sdr == 1.0 and names["summary_bad"].val_sdr == 1.5
    assert "name_list" in names  # the run is named by its folder
    assert names["ev_sdr_text"].details == ["test SDR n/a"]
    edges = {(graph.nodes[e.source].name, graph.nodes[e.target].name): e.label for e in graph.edges}
    assert edges[("good", "merge_text")] == "merge 1 of 1" and edges[("good", "weights_nested")] == "merge ? of ?"
    assert edges[("good", "pretrained_text")] == "fine-tune" and ("old", "ancestry_odd") in edges
    assert not any(name.startswith("ev_checkpoint_list") or name in ("ev_list", "ev_not_json") for name in names)
    ET.parse(tmp_path / "pictures" / "lineage.svg")


def test_a_folder_of_unreadable_records_ends_in_one_line(tmp_path):
    root = tmp_path / "outputs"
    (root / "junk" / TIME / "checkpoints").mkdir(parents=True)
    (root / "junk" / TIME / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint at all")
    write_results(root, "nothing", [1, 2])
    result = run_module("sepnet.lineage", str(root), cwd=tmp_path)
    output = no_traceback(result)
    assert result.returncode == 2
    (warning,) = [line for line in output.splitlines() if line.startswith("lineage: left out")]
    assert str(root / "junk" / TIME / "checkpoints" / "best.ckpt") in warning  # the file, and what is wrong with it
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("sepnet: error: root=") and "no checkpoint" in error


# -- 2. names holding newlines, | and ANSI codes ----------------------------------------------------


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the node table's rows (the lines after its header), split at unescaped ``|``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| node |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(re.split(r"(?<!\\)\|", line)[1:-1])
    return rows


def test_hostile_names_keep_the_table_one_row_per_node_and_the_svg_valid_xml(blank, tmp_path):
    root = tmp_path / "outputs"
    parent = write_run(root, blank, "parent", run_name=HOSTILE_NAME, metrics={"val/sdr": 1.0})
    write_run(root, blank, "child", run_name="child | of\nparent", lineage={"parents": [str(parent)], "from_run": HOSTILE_NAME})
    folder = f"eval {ANSI}x\x1b[0m|\nnext"  # a folder name of the same kind
    write_results(root, folder, {"checkpoint": str(parent), "sdr": 1.0, "knobs": {"mask_scale": f"0.5{ANSI}|\n"}})

    result = run_module("sepnet.lineage", str(root), f"out={tmp_path / 'pictures'}", cwd=tmp_path)
    output = no_traceback(result)
    assert result.returncode == 0, output[-3000:]
    assert "\x1b" not in output  # nothing printed colours the terminal

    markdown = (tmp_path / "pictures" / "lineage.md").read_text()
    assert "\x1b" not in markdown and "\x00" not in markdown and "\x07" not in markdown
    rows = table_rows(markdown)
    assert len(rows) == 2 + 3 and all(len(row) == 6 for row in rows), rows  # header, rule, three nodes
    shown_name = printable(HOSTILE_NAME)
    assert shown_name == r"line one\nline two | \x1b[31mred\x1b[0m <b>x</b> & \x07bell \x00nul"
    cell = shown_name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    assert [row[1].strip() for row in rows[2:] if row[0].strip() == cell] == ["train"]
    mermaid = markdown.split("```mermaid\n")[1].split("```")[0].splitlines()
    assert len(mermaid) == 1 + 3 + 2 + 2 * 2  # the header, 3 nodes, 2 edges, 2 node kinds with a class line each
    assert all(line.count('"') in (0, 2) for line in mermaid)

    svg = ET.parse(tmp_path / "pictures" / "lineage.svg").getroot()  # valid XML
    texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert r"line one\nline two" in texts and r"\x1b" in texts and "\x1b" not in texts


# -- 3. thousands of parents, a 100 KB name ---------------------------------------------------------


def test_thousands_of_parents_and_a_100_kb_name_take_seconds(blank, tmp_path, capsys):
    root = tmp_path / "outputs"
    n = 5000
    parents = [f"/gone/parent_{i}/{TIME}/checkpoints/best.ckpt" for i in range(n)]
    long_name = "x" * 100_000
    write_run(root, blank, "blend", run_name=long_name, lineage={"parents": parents, "merge": {"weights": [1 / n] * n}})
    write_run(root, blank, "other", lineage={"parents": [f"/gone/{'y' * 100_000}.ckpt"], "from_run": long_name})

    start = time.perf_counter()
    graph = collect_lineage(root)
    collected = time.perf_counter() - start
    written = write_lineage(root, tmp_path / "pictures")
    total = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  {n} parents + 100 KB names: graph built in {collected:.2f} s, graph + lineage.md/svg/png in {total:.2f} s")
    assert total < 20, total  # was minutes: add_edge looked through every edge for every edge

    assert len(graph.nodes) == n + 3 and len(graph.edges) == n + 1
    assert all(len(node.name) <= NAME_CHARS for node in graph.nodes.values())
    assert all(len(line) <= NAME_CHARS for node in graph.nodes.values() for line in node.details)
    drawn, note = drawn_part(graph)
    assert len(drawn.nodes) == 3 + PARENTS_DRAWN and "folded into one '+N more parents' box" in note
    assert written["note"] == note
    svg = ET.parse(written["svg"]).getroot()
    texts = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert f"+{n - PARENTS_DRAWN + 1} more parents" in texts
    rows = table_rows(written["md"].read_text())
    assert len(rows) == 2 + n + 3 and all(len(row) == 6 for row in rows)
    assert written["md"].stat().st_size < 3_000_000  # names and labels cut: no 100 KB cells


def test_add_edge_is_linear():
    graph = LineageGraph(Path("/"))
    start = time.perf_counter()
    for i in range(50_000):
        graph.add_edge(f"p{i}", "child", "merge", "merge")
        graph.add_edge(f"p{i}", "child", "merge", "merge")  # a repeat is kept once
    elapsed = time.perf_counter() - start
    assert len(graph.edges) == 50_000 and len(graph.parents("child")) == 50_000 and graph.children("p7") == ["child"]
    assert elapsed < 5, elapsed  # 100,000 calls; quadratic took minutes for 5000


# -- 4. compare: inf/nan epochs, ANSI in folder names -------------------------------------------------


def test_compare_skips_non_finite_epochs_and_escapes_folder_names(tmp_path):
    sweep = tmp_path / "sweep"
    hostile = sweep / f"run {ANSI}red\x1b[0m|x"
    for run, text in {
        hostile: "epoch,step,train/loss,train/loss_epoch,val/loss,val/sdr\n"
                 "0,7,0.9,,,\n0,15,,,0.8,1.0\n"
                 "inf,20,0.5,,,\nnan,21,0.5,,,\n-inf,21,,,0.1,9.0\n1,nan,0.4,,,\n1,inf,,,0.7,2.0\n"
                 "1,31,0.6,,,\n1,31,,,0.7,1.5\n",
        sweep / "plain": "epoch,step,train/loss,val/loss,val/sdr\n0,3,0.5,,\n0,3,,0.6,0.5\n",
    }.items():  # fmt: skip
        (run / "logs").mkdir(parents=True)
        (run / "logs" / "metrics.csv").write_text(text)

    result = run_module("sepnet.compare", str(sweep), f"out={tmp_path / 'report'}", cwd=tmp_path)
    output = no_traceback(result)
    assert result.returncode == 0, output[-3000:]
    assert "\x1b" not in output
    (warning,) = [line for line in output.splitlines() if "skipped" in line]
    assert warning.endswith("skipped 5 rows whose epoch or step is not a finite number")
    assert printable(hostile / "logs" / "metrics.csv") in warning
    table = (tmp_path / "report" / "compare.md").read_text()
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in table.splitlines()]
    assert all(len(row) == 5 for row in rows), rows
    (row,) = [r for r in rows if "red" in r[0]]
    assert row[0].strip() == r"run \x1b[31mred\x1b[0m\|x" and row[1:4] == [" 1.50 ", " 1 ", " 2 "]
    series = json.loads((tmp_path / "report" / "compare.json").read_text())
    assert [s["train_loss"]["step"] for s in series if "red" in s["label"]] == [[7, 31]]


def test_compare_on_a_metrics_csv_that_is_not_text_is_one_line(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_bytes(b"epoch,step\n\xff\xfe\x00\x81")
    result = run_module("sepnet.compare", str(run), cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sepnet: error: ") and "metrics.csv' is not a text CSV file" in line
