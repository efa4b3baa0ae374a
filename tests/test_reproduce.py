"""``python -m sepnet.reproduce``: the log's chain in order, its documented figures in one place, a short chain run."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
from conftest import compose_config
from test_lineage_graph import check_pictures

from sepnet.app.configs import group_options

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.parents import resolve_run_checkpoint
from sepnet.evaluation.lineage import collect_lineage
from sepnet.reproduce import reproduce
from sepnet.reproduction.chain import CHAIN, DOCUMENTED, MERGE, TRAIN, ULTIMATE_SWEEP, documented_sdr, step_parents

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"


def reproduce_config(tmp_path: Path, data_root: Path, *overrides: str):
    root = tmp_path / "reproduce"
    cfg = compose_config(
        "reproduce", [f"paths.outputs_root={root}", f"budgets.smoke.data_root={data_root}", *overrides], root
    )
    return cfg, root


def test_the_chain_runs_parents_first_and_covers_every_experiment():
    names = [s.name for s in CHAIN]
    assert len(names) == len(set(names))
    for i, step in enumerate(CHAIN):
        for parent in step_parents(step):
            assert parent in names[:i], f"{step.name} needs {parent} first"
    # every experiment, but those that say they are not in it (a new recipe, before its budget is measured)
    chained = {n for n in group_options("experiment") if "Not in the reproduce chain" not in (EXPERIMENTS / f"{n}.yaml").read_text()}
    assert {s.name for s in CHAIN if s.kind == TRAIN} == chained
    merges = {s.name: s for s in CHAIN if s.kind == MERGE}
    assert merges["crnn_large_merged_3.96"].parents == ("crnn_large_final_tune", "crnn_large_finetune_ver1")
    assert merges["crnn_large_merged_0.8_0.2"].weights == (0.8, 0.2)
    assert merges["crnn_large_merged_0.9_0.1"].weights == (0.9, 0.1)
    # train steps take their parent from the experiment itself (init.from_run)
    assert step_parents(next(s for s in CHAIN if s.name == "crnn_large_ultimate_4db")) == ("crnn_large_merged_3.96",)
    assert step_parents(next(s for s in CHAIN if s.name == "layer_freeze")) == ("crnn_large_finetune",)


def readme_cell(name: str) -> str:
    """The documented-SDR cell of ``name``'s row in experiments/README.md (either table)."""
    for line in (EXPERIMENTS / "README.md").read_text().splitlines():
        if line.startswith(f"| `{name}`"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            # runs: name | overrides | parent | SDR | command; merges: step | command | SDR
            return cells[3] if len(cells) == 5 else cells[2]
    raise AssertionError(f"experiments/README.md has no row for {name}")


def test_documented_figures_match_the_readme_and_the_experiment_headers():
    for name, text in DOCUMENTED.items():
        assert readme_cell(name).startswith(text), name  # the README shows the figure the table uses
        number = documented_sdr(text)
        header = EXPERIMENTS / f"{name}.yaml"
        if header.is_file() and number is not None:
            documented = next(line for line in header.read_text().splitlines() if "Documented:" in line)
            assert f"{text.split()[0]} dB" in documented, name
    # the sweep's and the threshold's figures are in the ultimate_4db header and README row
    ultimate = (EXPERIMENTS / "crnn_large_ultimate_4db.yaml").read_text()
    threshold = next(s for s in CHAIN if s.name == "crnn_large_ultimate_4db_threshold")
    assert f"threshold 0.05 -> {threshold.documented}" in ultimate
    assert f"mask_scale 0.8 -> {ULTIMATE_SWEEP['0.8']}" in ultimate
    assert f"0.8: {ULTIMATE_SWEEP['0.8']}" in (EXPERIMENTS / "README.md").read_text()
    assert f"uniform merge of two runs: {DOCUMENTED['crnn_large_merged_3.96']}" in ultimate
    assert documented_sdr("3.7966 dB (mask_scale 1.2, threshold 0.0)") == 3.7966
    assert documented_sdr("negative (-0.5 to -2.0 dB over 55 loops)") is None


def test_unknown_step_and_missing_parent_are_one_line(tmp_path, capsys):
    cfg, _ = reproduce_config(tmp_path, tmp_path / "data", "reproduce.steps=[crnn_long,no_such_step]")
    with pytest.raises(SystemExit) as exit_info:
        reproduce(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_step is not a step" in err and "crnn_large_final_tune" in err

    cfg, root = reproduce_config(tmp_path, tmp_path / "data", "reproduce.steps=[crnn_large_final_tune]")
    with pytest.raises(SystemExit):
        reproduce(cfg)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "step crnn_large_final_tune needs crnn_large_finetune_ver1" in err and str(root) in err
    assert not (root / "logs").exists()  # refused before anything ran


@pytest.mark.slow
def test_a_failed_step_stops_the_chain_naming_it(tmp_path, tiny_data_root, capsys):
    cfg, root = reproduce_config(
        tmp_path, tiny_data_root, "reproduce.steps=[crnn_long,crnn_large_finetune]", "reproduce.overrides.train=['optim.lrr=1']"
    )
    with pytest.raises(SystemExit) as exit_info:
        reproduce(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "reproduce step crnn_long (train) failed with exit status 2" in err and "optim.lrr" in err
    assert [p.name for p in (root / "logs").iterdir()] == ["01_crnn_long.log"]  # the chain stopped there


@pytest.mark.slow
def test_a_short_chain_tables_every_step_beside_the_documented_figure(tmp_path, tiny_data_root, capsys):
    steps = "reproduce.steps=[crnn_large_finetune_ver1,crnn_large_final_tune,crnn_large_merged_3.96]"
    cfg, root = reproduce_config(
        tmp_path, tiny_data_root, steps,
        "reproduce.overrides.train=['trainer.max_epochs=1']", "reproduce.overrides.evaluate=['eval.max_tracks=1']",
    )  # fmt: skip
    rows = reproduce(cfg)

    assert [(r.step, r.kind) for r in rows] == [
        ("crnn_large_finetune_ver1", TRAIN), ("crnn_large_final_tune", TRAIN), ("crnn_large_merged_3.96", MERGE),
    ]  # fmt: skip
    assert [r.parents for r in rows] == ["-", "crnn_large_finetune_ver1", "crnn_large_final_tune x0.5, crnn_large_finetune_ver1 x0.5"]
    assert [r.measured for r in rows] == ["val/sdr", "val/sdr", "test SDR"]
    assert [r.documented for r in rows] == [DOCUMENTED[r.step] for r in rows]
    assert all(isinstance(r.sdr, float) and math.isfinite(r.sdr) for r in rows)

    # init.from_run resolved inside the chain's root, and the merge's parents are the two runs' best checkpoints
    ver1, final_tune = (resolve_run_checkpoint(n, root) for n in ("crnn_large_finetune_ver1", "crnn_large_final_tune"))
    assert checkpoint.load(final_tune).lineage["parents"] == [str(ver1)]
    merged = checkpoint.load(resolve_run_checkpoint("crnn_large_merged_3.96", root))
    assert merged.lineage["parents"] == [str(final_tune), str(ver1)]
    assert (root / "evaluate" / "crnn_large_merged_3.96" / "results.json").is_file()

    markdown = (root / "reproduce.md").read_text()
    assert "budget smoke, 3 rows" in markdown and "incomplete" not in markdown
    number = r"-?\d+\.\d\d"
    assert re.search(
        rf"\| crnn_large_final_tune \| train \| crnn_large_finetune_ver1 \| {number} \| {number} \| val/sdr \| 3\.9331 dB \|",
        markdown,
    )
    assert all(isinstance(r.vocals, float) for r in rows)
    assert "| crnn_large_merged_3.96 | merge |" in markdown and "| 3.9631 dB |" in markdown
    with (root / "reproduce.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [t["step"] for t in table] == [r.step for r in rows]
    assert float(table[1]["documented_sdr"]) == 3.9331 and float(table[1]["sdr"]) == pytest.approx(rows[1].sdr)
    assert table[2]["output"].startswith("crnn_large_merged_3.96/")
    assert sorted(p.name for p in (root / "logs").iterdir()) == [
        "01_crnn_large_finetune_ver1.log", "02_crnn_large_final_tune.log", "03_crnn_large_merged_3.96.log",
        "04_crnn_large_merged_3.96.log",
    ]  # fmt: skip
    assert markdown.split("\n", 2)[2] in capsys.readouterr().out  # the table is printed too

    # The chain's lineage graph, drawn at its root: every step a node; a fine-tune, a weighted merge and an evaluation
    graph = collect_lineage(root)
    assert sorted((n.name, n.kind) for n in graph.nodes.values()) == [
        ("crnn_large_final_tune", TRAIN), ("crnn_large_finetune_ver1", TRAIN), ("crnn_large_merged_3.96", "evaluate"),
        ("crnn_large_merged_3.96", MERGE),
    ]  # fmt: skip
    edges = {(graph.nodes[e.source].name, graph.nodes[e.target].kind, e.label) for e in graph.edges}
    assert edges == {
        ("crnn_large_finetune_ver1", TRAIN, "fine-tune"),
        ("crnn_large_final_tune", MERGE, "merge 0.5 of 0.5/0.5"),
        ("crnn_large_finetune_ver1", MERGE, "merge 0.5 of 0.5/0.5"),
        ("crnn_large_merged_3.96", "evaluate", "evaluate max_tracks=1"),
    }
    check_pictures(root, ["crnn_large_finetune_ver1", "crnn_large_final_tune", "crnn_large_merged_3.96"])


@pytest.mark.parametrize("budget", ["smoke", "medium"])
def test_every_train_step_composes_at_each_budget_with_its_models_sizes(tmp_path, budget):
    """The CRNN family and the band-split RNN take different size arguments: each train step gets its own."""
    from omegaconf import OmegaConf

    from sepnet.registry import MODEL, build, size_overrides
    from sepnet.reproduction.runner import ChainRunner, budget_model_size, budget_overrides

    cfg, root = reproduce_config(tmp_path, tmp_path / "data", f"reproduce.budget={budget}")
    size = budget_model_size(cfg)
    assert size == {"smoke": "tiny", "medium": "medium"}[budget]
    runner = ChainRunner(root, budget_overrides(cfg), size, dry_run=True)
    for step in (s for s in CHAIN if s.kind == TRAIN):
        command = runner.train_command(step, tmp_path / "run")
        overrides = [a for a in command[3:] if not a.startswith("hydra.")]
        train_cfg = compose_config("train", overrides, tmp_path / "run")
        assert set(size_overrides(train_cfg.model, size)) <= set(command), step.name
        if budget == "smoke":  # shrunk, whatever the model's class (medium's full sizes are slow to build)
            model = build(MODEL, OmegaConf.to_container(train_cfg.model, resolve=True), "model")
            assert sum(p.numel() for p in model.parameters()) < 4e5, step.name
