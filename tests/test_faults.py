"""A NaN loss or gradient stops training with a one-line reason and leaves the last good checkpoint."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from sepnet.checkpoints.checkpoint import read_checkpoint
from sepnet.train import train
from sepnet.training.faults import NonFiniteGuard, TrainingDiverged, out_of_memory_error
from sepnet.training.losses import MaskBCELoss


class NaNAtCall(MaskBCELoss):
    """Test-only loss: the usual BCE, but NaN on its ``nan_at``-th training call (0-based)."""

    def __init__(self, nan_at: int, weighting: str = "magnitude"):
        super().__init__(weighting)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, masks, targets):
        loss = super().forward(masks, targets)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls - 1 == self.nan_at:
                return loss * float("nan")
        return loss


@pytest.mark.slow
def test_nan_loss_stops_with_epoch_step_tracks_and_keeps_last_good_checkpoint(tiny_run, tmp_path, capsys):
    # 2 steps per epoch: the 4th step (epoch 1, global step 3) gets a NaN loss.
    cfg = tiny_run("loss._target_=test_faults.NaNAtCall", "+loss.nan_at=3")
    data = instantiate(cfg.data)
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    loader.sampler.set_epoch(1)
    tracks = list(loader)[1]["track"]

    with pytest.raises(SystemExit) as exit_:
        train(cfg)
    assert exit_.value.code == 2
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"sepnet: error: the training loss is nan at epoch 1, step 3 (tracks: {', '.join(dict.fromkeys(tracks))}); "
        f"training stopped, last good checkpoint: {last}; lower optim.lr or check those tracks, and "
        "trainer.detect_anomaly=true names the operation that made it"
    )
    saved = read_checkpoint(last)
    assert saved["global_step"] == 2  # the end of epoch 0: nothing was saved over it
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_non_finite_gradient_stops_before_the_optimiser_step():
    class Trainer:
        current_epoch, global_step = 4, 17

    module = nn.Linear(2, 1)
    module.weight.grad = torch.tensor([[1.0, float("inf")]])
    guard = NonFiniteGuard()
    guard.on_train_batch_start(Trainer(), module, {"track": ["a", "b", "a"]}, 0)
    with pytest.raises(TrainingDiverged) as error:
        guard.on_before_optimizer_step(Trainer(), module, None)
    assert str(error.value).startswith(
        "the gradient of weight is not finite at epoch 4, step 17 (tracks: a, b); training stopped, "
        "no checkpoint was written yet;"
    )


def test_detect_anomaly_is_a_trainer_option(tiny_run):
    trainer = instantiate(tiny_run("trainer.detect_anomaly=true").trainer, logger=False, enable_checkpointing=False)
    assert trainer._detect_anomaly is True


def test_out_of_memory_names_the_settings_to_shrink():
    error = out_of_memory_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"), 8, 3.0)
    assert str(error) == (
        "out of memory while training (CUDA out of memory. Tried to allocate 2.00 GiB); use a smaller "
        "data.batch_size (now 8, try 4) or data.chunk_seconds (now 3, try 1.5)"
    )
    assert out_of_memory_error(ValueError("shapes differ"), 8, 3.0) is None
