"""Lineage: init.from_run resolves a run by name, training records the parent, merges keep the chain."""

from __future__ import annotations

import math
import shutil
from typing import ClassVar

import pytest
import torch
from conftest import TINY_RUN, compose_config, write_fresh_checkpoint

from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.checkpoint import read_checkpoint
from sepnet.checkpoints.parents import resolve_run_checkpoint
from sepnet.compare import compare
from sepnet.errors import SepnetError
from sepnet.evaluation.divergence import find_divergence
from sepnet.merge import merge
from sepnet.train import run_training, train
from sepnet.training.module import CHECKPOINT_KEY
from sepnet.training.overfitting import OverfittingMonitor


def test_resolution_fails_clearly_and_skips_unfinished_runs(tmp_path):
    with pytest.raises(SepnetError, match=r"init.from_run=parent: there is no run folder .*parent"):
        resolve_run_checkpoint("parent", tmp_path)
    older, newer = tmp_path / "parent" / "2026-01-01_00-00-00", tmp_path / "parent" / "2026-01-02_00-00-00"
    newer.mkdir(parents=True)
    with pytest.raises(SepnetError, match="has finished"):
        resolve_run_checkpoint("parent", tmp_path)
    (older / "checkpoints").mkdir(parents=True)
    (older / "checkpoints" / "best.ckpt").write_bytes(b"x")
    assert resolve_run_checkpoint("parent", tmp_path) == (older / "checkpoints" / "best.ckpt").resolve()
    (newer / "checkpoints").mkdir()
    (newer / "checkpoints" / "best.ckpt").write_bytes(b"x")
    assert resolve_run_checkpoint("parent", tmp_path).parent.parent == newer.resolve()
    assert resolve_run_checkpoint(str(older), "elsewhere").parent.parent == older.resolve()  # a path as given


def test_unknown_parent_run_is_one_line(tiny_run, tmp_path, capsys):
    cfg = tiny_run("init.from_run=never_trained", f"paths.outputs_root={tmp_path}")
    with pytest.raises(SystemExit) as exit_info:
        train(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "init.from_run=never_trained" in err and "train that run first" in err


@pytest.mark.slow
def test_train_finetune_from_run_merge_chain(tiny_run, tmp_path):
    root = tmp_path / "outputs"
    parent_dir = root / "parent" / "2026-01-01_00-00-00"
    run_training(tiny_run("run_name=parent", "trainer.max_epochs=2", output_dir=parent_dir))
    parent_best = (parent_dir / "checkpoints" / "best.ckpt").resolve()

    child_dir = root / "child" / "2026-01-01_00-10-00"
    child_cfg = tiny_run("run_name=child", f"paths.outputs_root={root}", "init.from_run=parent", "optim.lr=1e-4", "trainer.max_epochs=1", output_dir=child_dir)
    _, child_summary = run_training(child_cfg)
    child = checkpoint.load(child_dir / "checkpoints" / "best.ckpt")
    parent = checkpoint.load(parent_best)
    assert child.lineage["parents"] == [str(parent_best)]
    assert child.lineage["from_run"] == "parent"
    assert child.lineage["parent_lineage"] == {"parents": []}
    assert child.lineage["parent_metrics"]["val/sdr"] == parent.metrics["val/sdr"]
    # the parent's normalisation came along (not refitted), so the child sees the same inputs
    assert torch.equal(child.separator.front_end.bin_mean, parent.separator.front_end.bin_mean)

    # merge parent and child 0.8/0.2 into outputs/blend/<time>/: a parent like any run
    blend = root / "blend" / "2026-01-01_00-20-00" / "checkpoints" / "best.ckpt"
    merge(compose_config("merge", [f"ckpts=[{parent_best},{child_dir}/checkpoints/best.ckpt]", "weights=[0.8,0.2]", "name=blend", f"out={blend}"], tmp_path / "m"))
    assert resolve_run_checkpoint("blend", root) == blend.resolve()
    merged = checkpoint.load(blend)
    assert merged.config.run_name == "blend"
    assert merged.lineage["merge"]["weights"] == pytest.approx([0.8, 0.2])
    assert merged.lineage["parent_lineage"][1]["from_run"] == "parent"  # the whole chain travels
    key = "model.decoder.0.conv.weight"
    expected = 0.8 * parent.separator.state_dict()[key] + 0.2 * child.separator.state_dict()[key]
    assert torch.allclose(merged.separator.state_dict()[key], expected, atol=1e-6)
    with torch.no_grad():
        stems = merged.separator(torch.randn(1, 2, 22050))
    assert stems.shape == (1, 4, 2, 22050) and torch.isfinite(stems).all()
    # (sepnet.evaluate ckpt=<blend> scores it once issue 5 is merged.)

    # compare the two runs: one PNG, one table with each best val/sdr and its epoch
    png, markdown = compare([parent_dir, child_dir], out=tmp_path / "cmp.png")
    assert png.stat().st_size > 10_000
    assert f"{child_summary['best_val_sdr']:.2f} | {child_summary['best_epoch']} | 1 |" in markdown
    assert "parent/2026-01-01_00-00-00" in markdown and "child/2026-01-01_00-10-00" in markdown
    header = (child_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_epoch" in header  # the overfitting monitor's epoch-mean training loss


def test_divergence_needs_falling_train_loss_and_worse_validation_in_a_row():
    epochs = list(range(8))
    train = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    healthy = [1.0, 0.9, 0.8, 0.75, 0.7, 0.72, 0.69, 0.68]  # one bad validation, then better again
    overfit = [1.0, 0.9, 0.8, 0.82, 0.85, 0.9, 0.95, 1.0]  # worse than its best (epoch 2) from epoch 3 on
    assert find_divergence(epochs, train, val_loss=healthy, patience=3) is None
    found = find_divergence(epochs, train, val_loss=overfit, patience=3)
    assert (found.metric, found.best_epoch, found.flagged_epoch) == ("val/loss", 2, 5)
    sdr = [1.0, 2.0, 3.0, 2.5, 2.4, 2.3, 2.0, 1.0]
    assert find_divergence(epochs, train, val_sdr=sdr, patience=4).flagged_epoch == 6
    # validation worse but training loss not falling either: underfitting/noise, not overfitting
    assert find_divergence(epochs, [1.0] * 8, val_loss=overfit, patience=3) is None
    assert find_divergence(epochs, train, val_loss=[math.nan] * 8, patience=3) is None


def test_overfitting_monitor_warns_in_the_log(caplog):
    class Trainer:  # the few attributes the callback reads, driven through Lightning's hook order
        sanity_checking = False
        current_epoch = 0
        callback_metrics: ClassVar[dict] = {}

    class Module:
        logged: ClassVar[dict] = {}

        def log(self, name, value, **kwargs):
            self.logged[name] = value

    monitor, trainer, module = OverfittingMonitor(patience=2), Trainer(), Module()
    for epoch, (train_losses, val_loss) in enumerate([([1.0, 0.8], 0.9), ([0.6, 0.5], 0.7), ([0.4, 0.3], 0.8), ([0.2, 0.1], 0.9)]):
        trainer.current_epoch = epoch
        monitor.on_train_epoch_start(trainer, module)
        for loss in train_losses:
            monitor.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, 0)
        trainer.callback_metrics = {"val/loss": torch.tensor(val_loss), "val/sdr": torch.tensor(-val_loss)}
        monitor.on_validation_epoch_end(trainer, module)
        with caplog.at_level("WARNING", logger="sepnet.training.overfitting"):
            monitor.on_train_epoch_end(trainer, module)
        assert module.logged["train/loss_epoch"] == pytest.approx(sum(train_losses) / 2)
        assert ("overfitting" in caplog.text) == (epoch == 3)


def stored_lineages(run_dir) -> dict[str, dict]:
    return {p.name: read_checkpoint(p)[CHECKPOINT_KEY]["lineage"] for p in sorted((run_dir / "checkpoints").glob("*.ckpt"))}


def test_resume_keeps_the_stored_lineage_and_never_looks_up_the_parent_again(tiny_run, tmp_path):
    root = tmp_path / "outputs"
    parent_dir = root / "parent" / "2026-01-01_00-00-00"
    run_training(tiny_run("run_name=parent", "trainer.max_epochs=1", output_dir=parent_dir))
    child_dir = root / "child" / "2026-01-01_00-10-00"
    child = ["run_name=child", f"paths.outputs_root={root}", "init.from_run=parent", "logger=none"]
    run_training(tiny_run(*child, "trainer.max_epochs=1", output_dir=child_dir))
    lineage = read_checkpoint(child_dir / "checkpoints" / "last.ckpt")[CHECKPOINT_KEY]["lineage"]
    assert lineage["from_run"] == "parent" and lineage["parents"] == [str((parent_dir / "checkpoints" / "best.ckpt").resolve())]

    # The parent's run moved away: `init.from_run=parent` no longer resolves, the resume does not need it.
    shutil.move(parent_dir, tmp_path / "archive")
    run_training(tiny_run(*child, "trainer.max_epochs=2", f"resume={child_dir}", output_dir=tmp_path / "unused"))
    assert read_checkpoint(child_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert stored_lineages(child_dir) == {"best.ckpt": lineage, "last.ckpt": lineage}

    # A newer run of the parent's name appears: the resumed child keeps its own parent.
    newer = root / "parent" / "2026-02-01_00-00-00" / "checkpoints" / "best.ckpt"
    write_fresh_checkpoint(compose_config("train", ["run_name=parent", *TINY_RUN], tmp_path / "newer"), newer, seed=3)
    run_training(tiny_run(*child, "trainer.max_epochs=3", f"resume={child_dir}", output_dir=tmp_path / "unused"))
    assert read_checkpoint(child_dir / "checkpoints" / "last.ckpt")["epoch"] == 2
    assert stored_lineages(child_dir) == {"best.ckpt": lineage, "last.ckpt": lineage}


def test_resume_does_not_read_init_pretrained_again(tiny_run, tmp_path):
    parent = tmp_path / "parent.ckpt"
    write_fresh_checkpoint(tiny_run(output_dir=tmp_path / "p"), parent, seed=2, fill_statistics=0.5)
    run_dir = tmp_path / "child"
    run_training(tiny_run(f"init.pretrained={parent}", "trainer.max_epochs=1", "logger=none", output_dir=run_dir))
    lineage = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")[CHECKPOINT_KEY]["lineage"]
    assert lineage["parents"] == [str(parent.resolve())]
    parent.unlink()  # deleted after the child started
    resumed, _ = run_training(
        tiny_run(f"init.pretrained={parent}", "trainer.max_epochs=2", "logger=none", f"resume={run_dir}",
                 output_dir=tmp_path / "unused")
    )
    assert resumed.lineage == lineage
    assert stored_lineages(run_dir)["last.ckpt"] == lineage
