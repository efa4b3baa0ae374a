"""Every loss and metric of a training or validation step is autocast-safe, shown on the CPU.

CUDA autocast refuses ``binary_cross_entropy`` (``F.binary_cross_entropy``,
``nn.BCELoss``, the aten op) whatever the inputs' dtype; CPU autocast lets it
through. :class:`CudaAutocastBans` makes the CPU as strict: it fails a test the
moment one of those ops is reached while autocast is on. Each loss then runs on
bf16 masks from a bf16-autocast forward pass, as ``trainer=gpu`` produces them,
and must give exactly the float32 value.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch
from hydra.utils import instantiate
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from sepnet.checkpoints import checkpoint
from sepnet.evaluation.metrics import chunk_sdr
from sepnet.train import build_module, run_training
from sepnet.training.losses import (
    FocalMaskLoss,
    MagnitudeL1Loss,
    MaskBCELoss,
    MaskedMagnitudeLoss,
    MaskedSpectrumLoss,
    MultiResolutionSTFTLoss,
    WaveformL1Loss,
)

BANNED_NAMES = {"binary_cross_entropy", "aten::binary_cross_entropy"}


def _is_banned(func) -> bool:
    """``F.binary_cross_entropy``, ``torch._C._nn.binary_cross_entropy`` and ``torch.ops.aten.binary_cross_entropy``
    (packet or overload); ``BCELoss`` calls the first. ``binary_cross_entropy_with_logits`` is allowed."""
    name = getattr(func, "__name__", None)
    if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        name = func._schema.name if isinstance(func, torch._ops.OpOverload) else func._qualified_op_name
    return name in BANNED_NAMES


class AutocastBanned(AssertionError):
    """An op that CUDA autocast refuses was reached with autocast enabled."""


class CudaAutocastBans(TorchFunctionMode):
    """Fails on any op CUDA autocast bans reached while autocast is enabled (on the CPU or CUDA).

    A torch-function mode sees calls at the Python level, where the autocast state
    is the caller's (below the dispatcher's autocast layer it always reads off).
    Counts what it saw, so a test can check the guarded code really ran:
    ``autocast_calls`` (any op under autocast) and ``bce_outside_autocast``.
    """

    def __init__(self):
        super().__init__()
        self.autocast_calls = 0
        self.bce_outside_autocast = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        enabled = torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
        self.autocast_calls += enabled
        if _is_banned(func):
            if enabled:
                raise AutocastBanned(f"{func} reached with autocast enabled (CUDA autocast refuses it)")
            self.bce_outside_autocast += 1
        return func(*args, **(kwargs or {}))


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_the_guard_fails_on_a_plain_bce_under_autocast():
    p, y = torch.rand(2, 8), torch.rand(2, 8)
    naive = [
        lambda: F.binary_cross_entropy(p.float(), y.float()),  # casting to float32 does not make it safe
        lambda: torch.nn.BCELoss()(p, y),
        lambda: torch.ops.aten.binary_cross_entropy(p, y),
        lambda: torch.ops.aten.binary_cross_entropy.default(p, y),
    ]
    for call in naive:
        with bf16_autocast(), CudaAutocastBans(), pytest.raises(AutocastBanned):
            call()
    with bf16_autocast(), CudaAutocastBans() as guard:
        F.binary_cross_entropy_with_logits(p, y)  # allowed under CUDA autocast
        with torch.autocast("cpu", enabled=False):
            F.binary_cross_entropy(p, y)
    assert guard.bce_outside_autocast == 1
    with CudaAutocastBans():
        F.binary_cross_entropy(p, y)  # no autocast: fine


def test_the_guard_fails_on_the_bce_loss_without_its_autocast_wrapper(module_outputs):
    """The bce loss's own body, without :func:`~sepnet.training.losses.without_autocast` (the code before the fix)."""
    outputs = module_outputs["separation"]
    unwrapped = MaskBCELoss.forward.__wrapped__
    with bf16_autocast(), CudaAutocastBans(), pytest.raises(AutocastBanned):
        unwrapped(MaskBCELoss(), outputs["masks"], outputs["targets"])


@pytest.fixture(scope="module")
def module_outputs(tiny_data_root, tmp_path_factory):
    """Per module kind: a batch and the outputs of a bf16-autocast forward pass of the tiny model."""
    from conftest import TINY_RUN, TINY_SOURCE, compose_config

    results = {}
    for kind, overrides in {"separation": [], "multitask": ["model=unet_crnn_mtl"]}.items():
        cfg = compose_config(
            "train",
            [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *TINY_RUN, "logger=none", *overrides],
            tmp_path_factory.mktemp(kind),
        )
        torch.manual_seed(0)
        data = instantiate(cfg.data)
        data.prepare_data()
        data.setup("fit")
        batch = next(iter(data.val_dataloader()))
        module = build_module(cfg)
        module.separator.front_end.fit_statistics(data.statistics_waveforms())
        with torch.no_grad(), bf16_autocast():
            outputs = module.forward_batch(batch)
        results[kind] = {"module": module, "batch": batch, **outputs}
    return results


LOSSES = {
    "bce": MaskBCELoss(),
    "bce-magnitude": MaskBCELoss("magnitude"),
    "bce-none": MaskBCELoss("none"),
    "focal-quality": FocalMaskLoss(modulation="quality"),
    "focal-classic": FocalMaskLoss(modulation="classic", alpha=0.25),
    "focal-gamma0": FocalMaskLoss(gamma=0.0),
    "l1": MagnitudeL1Loss(),
    "magnitude-mse": MaskedMagnitudeLoss("mse"),
    "spectrum-mse": MaskedSpectrumLoss("mse"),
    "spectrum-l1-mixed": MaskedSpectrumLoss("l1", magnitude_weight=0.5),
    "waveform": WaveformL1Loss(),
    "mrstft": MultiResolutionSTFTLoss([256, 128], hop_length=37),
}


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_is_autocast_safe_and_equals_float32(module_outputs, name):
    outputs = module_outputs["separation"]
    masks, targets = outputs["masks"], outputs["targets"]
    assert masks.dtype == torch.bfloat16  # what a bf16 autocast model hands the loss
    loss = LOSSES[name]
    with bf16_autocast(), CudaAutocastBans() as guard:
        mixed = loss(masks, targets)
    reference = loss(masks.float(), targets)  # the float32 computation, no autocast
    assert mixed.dtype == torch.float32 and torch.isfinite(reference)
    torch.testing.assert_close(mixed, reference, rtol=1e-6, atol=0)
    assert guard.bce_outside_autocast == name.startswith("bce")  # the bce op ran, with autocast off


def test_rhythm_and_mask_loss_of_the_multitask_module_equal_float32(module_outputs):
    outputs = module_outputs["multitask"]
    module, batch = outputs["module"], outputs["batch"]
    assert outputs["masks"].dtype == torch.bfloat16 and outputs["beat_logits"].dtype == torch.bfloat16
    with bf16_autocast(), CudaAutocastBans() as guard:
        mixed = module.loss_terms(outputs, batch)
    as_float32 = {**outputs, "masks": outputs["masks"].float(), "beat_logits": outputs["beat_logits"].float()}
    reference = module.loss_terms(as_float32, batch)
    assert set(mixed) == {"loss", "mask_loss", "rhythm_loss"}
    for name, value in mixed.items():
        assert value.dtype == torch.float32 and torch.isfinite(reference[name]), name
        torch.testing.assert_close(value, reference[name], rtol=1e-6, atol=0)
    assert guard.bce_outside_autocast == 1  # the default mask loss is bce


def test_validation_sdr_equals_float32(module_outputs):
    outputs = module_outputs["separation"]
    module, batch = outputs["module"], outputs["batch"]
    with torch.no_grad(), bf16_autocast(), CudaAutocastBans():
        estimates = module.separator.apply_masks(outputs["masks"], outputs["mixture_spec"], batch["mixture"].shape[-1])
        references = batch["stems"][:, module.target_index]
        mixed = chunk_sdr(references, estimates.bfloat16())
    reference = chunk_sdr(references, estimates.bfloat16().float())
    assert mixed.shape == (batch["mixture"].shape[0], 4) and torch.isfinite(reference).all()
    torch.testing.assert_close(mixed, reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["separation", "multitask"])
def test_training_and_validation_steps_reach_no_banned_op(module_outputs, kind):
    """The module's own steps (forward, every loss term, every logged metric) under bf16 autocast."""
    module, batch = module_outputs[kind]["module"], module_outputs[kind]["batch"]
    module.log = lambda *args, **kwargs: None  # outside a Trainer: nothing to log to
    with bf16_autocast(), CudaAutocastBans() as guard:
        loss = module.training_step(batch, 0)
        loss.backward()
        with torch.no_grad():
            module.validation_step(batch, 0)
    assert torch.isfinite(loss) and guard.bce_outside_autocast == 2  # the bce of each step


def test_bf16_mixed_trains_the_default_model_end_to_end_on_the_cpu(tiny_run, tmp_path):
    """``trainer.precision=bf16-mixed``: the real sepnet.train path under Lightning's bf16 autocast,
    with every step guarded against the ops CUDA autocast refuses."""
    cfg = tiny_run("trainer.precision=bf16-mixed", "logger=csv")
    with CudaAutocastBans() as guard:
        _, summary = run_training(cfg)
    assert guard.autocast_calls > 0  # Lightning really ran the steps under autocast
    assert guard.bce_outside_autocast >= 4  # the bce loss of each of the 4 training steps ran, autocast off
    run_dir = tmp_path / "run"
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r[key]) for r in rows for key in ("train/loss_epoch", "val/loss") if r.get(key)]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)  # 2 epochs: train and val loss each
    assert math.isfinite(summary["best_val_sdr"])
    loaded = checkpoint.load(run_dir / "checkpoints" / "best.ckpt")
    assert loaded.metrics["val/sdr"] == summary["best_val_sdr"]
    with torch.no_grad():
        estimates = loaded.separator(torch.randn(1, 2, 22050))
    assert estimates.shape == (1, 4, 2, 22050) and torch.isfinite(estimates).all()
