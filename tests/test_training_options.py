"""Training options composed from the real configs: the multi-task model, freezing, pretrained starts."""

import csv
import logging

import pytest
import torch
from hydra.utils import instantiate

from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.pretrained import load_pretrained
from sepnet.data.beats import read_beat_file
from sepnet.errors import SepnetError
from sepnet.train import build_module, run_training

# One short epoch, no validation: enough to move every trainable weight.
QUICK = ["trainer.max_epochs=1", "+trainer.limit_val_batches=0", "logger=none"]


def fit(cfg, module) -> None:
    """Train ``module`` on cfg.data with cfg.trainer, as sepnet.train would (no checkpoints)."""
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[])
    trainer.fit(module, datamodule=instantiate(cfg.data))


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.separator.model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "option, frozen_prefixes",
    [
        ("none", ()),
        ("encoder", ("encoder.",)),
        ("encoder_lstm", ("encoder.", "bottleneck.project_in.", "bottleneck.lstm.")),
    ],
)
def test_freeze_keeps_frozen_weights_bit_identical_and_trains_the_rest(tiny_run, option, frozen_prefixes):
    cfg = tiny_run(f"freeze={option}", *QUICK)
    module = build_module(cfg)
    before = snapshot(module)
    fit(cfg, module)
    after = snapshot(module)

    frozen = [k for k in before if k.startswith(frozen_prefixes)]
    trained = [k for k in before if not k.startswith(frozen_prefixes) and "num_batches_tracked" not in k]
    assert bool(frozen) == (option != "none") and trained
    # Weights and BatchNorm running statistics of frozen blocks: bit-identical.
    assert all(torch.equal(before[k], after[k]) for k in frozen), [k for k in frozen if not torch.equal(before[k], after[k])]
    assert any("running_mean" in k for k in frozen) == (option != "none")
    # Everything else moved.
    assert all(not torch.equal(before[k], after[k]) for k in trained), [k for k in trained if torch.equal(before[k], after[k])]
    # Frozen parameters are not in the optimiser, and frozen blocks stayed in eval mode.
    optimised = {id(p) for group in module.trainer.optimizers[0].param_groups for p in group["params"]}
    model = module.separator.model
    assert {id(p) for p in model.parameters() if p.requires_grad} == optimised - {
        id(p) for p in module.separator.front_end.parameters()
    }
    assert all(id(p) not in optimised for name, p in model.named_parameters() if name.startswith(frozen_prefixes))
    module.train()
    assert all(not m.training for name, m in model.named_modules() if name and (name + ".").startswith(frozen_prefixes))


def test_freeze_with_an_unknown_module_names_the_key(tiny_run):
    cfg = tiny_run("freeze.modules=[encodr]")
    with pytest.raises(SepnetError, match="freeze.modules names 'encodr'"):
        build_module(cfg)


@pytest.mark.slow
def test_unet_crnn_mtl_run_logs_beat_f1_and_its_checkpoint_separates(tiny_run, tmp_path):
    cfg = tiny_run("model=unet_crnn_mtl", "loss=focal", "optim=adamw", "sched=cosine")
    assert cfg.data.beats and cfg.module._target_.endswith("MultiTaskSeparationModule")
    module, summary = run_training(cfg)
    metrics = module.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/beat_f1"]) <= 1.0
    assert float(metrics["val/rhythm_loss"]) > 0 and float(metrics["train/mask_loss"]) > 0
    with open(tmp_path / "run" / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(1 for row in rows if row.get("val/beat_f1")) == 2  # one per epoch
    # The cosine schedule ran over the whole run: 2 epochs x 2 batches, warm-up then decay to 1% of lr.
    schedule = module.trainer.lr_scheduler_configs[0].scheduler
    assert schedule.total_steps == 4
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(cfg.optim.lr * 0.01)
    loaded = checkpoint.load(summary["best_checkpoint"])
    assert type(loaded.separator.model).__name__ == "MultiTaskUNetCRNN"
    with torch.no_grad():
        assert loaded.separator(torch.randn(1, 2, 5001)).shape == (1, 4, 2, 5001)


def test_batches_carry_the_datasets_beats(tiny_run, tiny_data_root):
    cfg = tiny_run("model=unet_crnn_mtl")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    first = datamodule.tracks["valid"][0]
    expected = read_beat_file(tiny_data_root / "valid" / first.name / "beats.txt")
    expected = expected[expected < cfg.data.val_chunk_seconds]
    positions = batch["beats"][0]
    torch.testing.assert_close(positions[positions >= 0].double() / 22050, torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=0)
    assert next(iter(datamodule.train_dataloader()))["beats"].shape[0] == cfg.data.batch_size


def test_multitask_module_refuses_a_model_without_rhythm_head(tiny_run):
    with pytest.raises(SepnetError, match="use model=unet_crnn_mtl"):
        build_module(tiny_run("module=multitask"))


@pytest.fixture
def parent(tiny_run, tmp_path):
    """A trained tiny CRNN: (its module, path of its last.ckpt)."""
    module, _ = run_training(tiny_run(*QUICK, output_dir=tmp_path / "parent"))
    return module, tmp_path / "parent" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_pretrained_strict_and_non_strict_loading_with_report(tiny_run, parent, tmp_path, caplog):
    parent_module, path = parent
    parent_state = parent_module.separator.state_dict()

    # Strict into the same model: every tensor, statistics included; lineage names the parent.
    child = build_module(tiny_run(f"init.pretrained={path}"))
    for k, v in child.separator.state_dict().items():
        assert torch.equal(v, parent_state[k]), k
    assert bool(child.separator.front_end.fitted)
    assert child.lineage["parents"] == [str(path.resolve())]

    # Strict into a U-Net CRNN of the same size: one line naming the shape mismatches and the fix.
    with pytest.raises(SepnetError) as error:
        build_module(tiny_run("model=unet_crnn", f"init.pretrained={path}"))
    message = str(error.value)
    assert "\n" not in message and "shape-mismatched (decoder.0.conv.weight" in message
    assert "init.strict=false" in message

    # Non-strict: encoder and LSTM load, the decoder's first blocks are reported as left out.
    with caplog.at_level(logging.WARNING, logger="sepnet.checkpoints.pretrained"):
        unet = build_module(tiny_run("model=unet_crnn", f"init.pretrained={path}", "init.strict=false"))
    assert "left out" in caplog.text and "decoder.0.conv.weight" in caplog.text
    unet_state = unet.separator.state_dict()
    for k in parent_state:
        if k.startswith(("model.encoder.", "model.bottleneck.", "front_end.")):
            assert torch.equal(unet_state[k], parent_state[k]), k
    entry = unet.lineage["pretrained"]
    assert entry["strict"] is False and "decoder.0.conv.weight" in entry["mismatched"]

    # Fine-tuning keeps the parent's statistics (no refit) and the child's checkpoint records its parent.
    run = tmp_path / "child"
    tuned, _ = run_training(
        tiny_run("model=unet_crnn", f"init.pretrained={path}", "init.strict=false", *QUICK, output_dir=run)
    )
    for name in ("bin_mean", "bin_std"):
        assert torch.equal(getattr(tuned.separator.front_end, name), getattr(parent_module.separator.front_end, name))
    raw = checkpoint.read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert raw["sepnet"]["lineage"]["parents"] == [str(path.resolve())]
    assert checkpoint.load(run / "checkpoints" / "last.ckpt").lineage["pretrained"]["front_end_statistics"] is True


def test_pretrained_plain_state_dict_and_bad_files(tiny_run, tmp_path):
    cfg = tiny_run()
    source = build_module(cfg).separator
    pth = tmp_path / "model.pth"
    torch.save(source.model.state_dict(), pth)
    target = build_module(cfg).separator
    report = load_pretrained(target, pth)
    assert report.complete and not report.front_end_statistics and not bool(target.front_end.fitted)
    assert all(torch.equal(a, b) for a, b in zip(source.model.state_dict().values(), target.model.state_dict().values()))

    with pytest.raises(SepnetError, match="does not exist"):
        build_module(tiny_run(f"init.pretrained={tmp_path / 'nope.ckpt'}"))
    junk = tmp_path / "junk.pth"
    torch.save({"lr": 1e-3}, junk)
    with pytest.raises(SepnetError, match="no state_dict of tensors"):
        load_pretrained(target, junk)
    # A model of another size shares nothing strictly loadable: strict refuses with the counts.
    with pytest.raises(SepnetError, match="does not fit CRNN: .* shape-mismatched"):
        load_pretrained(build_module(tiny_run("model.hidden_size=8")).separator, pth)
