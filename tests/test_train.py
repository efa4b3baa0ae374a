"""A real tiny training run, end to end, and the checkpoint it leaves."""

import json

import torch

from sepnet.checkpoints import checkpoint
from sepnet.train import run_training


def test_tiny_run_writes_checkpoints_that_rebuild_identically(tiny_run, tmp_path, capsys):
    cfg = tiny_run()
    module, summary = run_training(cfg)
    best = summary["best_val_sdr"]
    run_dir = tmp_path / "run"
    out = capsys.readouterr().out
    assert "best val/sdr" in out and "uniform-mask baseline" in out
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config_resolved.yaml").is_file()
    assert (run_dir / "logs" / "metrics.csv").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_val_sdr"] == best
    assert set(summary["val_sdr_per_stem"]) == {"bass", "drums", "other", "vocals"}

    # load() needs only the path: no model sizes typed by hand.
    loaded = checkpoint.load(run_dir / "checkpoints" / "best.ckpt")
    assert loaded.config.model.hidden_size == 16
    assert bool(loaded.separator.front_end.fitted)
    assert loaded.metrics["val/sdr"] == best
    assert loaded.separator.target_stems == ["bass", "drums", "other", "vocals"]

    # last.ckpt holds the final weights: rebuilt from the path alone, it separates
    # exactly as the module that was just trained.
    last = checkpoint.load(run_dir / "checkpoints" / "last.ckpt")
    trained = module.separator.eval()
    mixture = torch.randn(2, 2, 22050)
    with torch.no_grad():
        expected, rebuilt = trained(mixture), last.separator(mixture)
    assert expected.shape == (2, 4, 2, 22050)
    assert torch.equal(expected, rebuilt)
    raw = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert raw["sepnet"]["config"]["frontend"]["n_fft"] == 1024
