"""The training hot path waits for the device once per step, so a GPU never idles on Python.

A host sync is any op whose result the host must read: ``.item()``, ``float(t)``,
``bool(t)`` (all ``aten._local_scalar_dense``), ``nonzero``, boolean-mask indexing,
``equal``... :class:`HostSyncs` records each one with the first caller outside
torch's own wrappers. On the CPU nothing actually waits, but the same calls on a
GPU would, so counting them here keeps the GPU path honest.
"""

from __future__ import annotations

import collections
import traceback

import pytest
import torch
from lightning.pytorch.loops.evaluation_loop import _EvaluationLoop
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sepnet.train import run_training
from sepnet.training.faults import NonFiniteGuard

aten = torch.ops.aten
SYNCING_OPS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
               aten.is_nonzero.default, aten.equal.default}
INDEXING_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}
# Frames that only forward a call (dispatch, dynamo's disable wrappers, Tensor dunders).
WRAPPERS = ("torch/utils/_python_dispatch", "torch/_dynamo/", "torch/_compile.py", "torch/_tensor.py", __file__)


def _syncs(func, args) -> bool:
    if func in SYNCING_OPS:
        return True
    if func in INDEXING_OPS:  # a boolean mask is turned into indices on the host
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] if i is not None)
    return False


class HostSyncs(TorchDispatchMode):
    """Records ``(phase, op, caller "file:line:function")`` of every host sync while :attr:`phase` is set.

    Calls from ``torch/optim`` are left out: they read the optimiser's step counters,
    which live on the CPU even when training on a GPU (``capturable=False``, the
    default), so they never wait for the device.
    """

    def __init__(self):
        super().__init__()
        self.phase: str | None = None
        self.found: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.phase is not None and _syncs(func, args):
            caller = next(f for f in reversed(traceback.extract_stack()) if not any(w in f.filename for w in WRAPPERS))
            if "torch/optim/" not in caller.filename:
                where = f"{caller.filename.rsplit('site-packages/', 1)[-1].rsplit('/sepnet/', 1)[-1]}:{caller.name}"
                self.found[(self.phase, str(func), where)] += 1
        return func(*args, **(kwargs or {}))


def record_phases(monkeypatch, syncs: HostSyncs) -> collections.Counter:
    """Set ``syncs.phase`` to ``train_step`` during each training batch (everything Lightning does for
    it: data, forward, backward, callbacks, logging) and ``val_step`` during each validation batch;
    returns the number of each."""
    entered = collections.Counter()

    def within(cls, name: str, phase: str):
        original = getattr(cls, name)

        def run(self, *args, **kwargs):
            entered[phase] += 1
            syncs.phase = phase
            try:
                return original(self, *args, **kwargs)
            finally:
                syncs.phase = None

        monkeypatch.setattr(cls, name, run)

    within(_TrainingEpochLoop, "advance", "train_step")
    within(_EvaluationLoop, "_evaluation_step", "val_step")
    return entered


@pytest.mark.parametrize("model", ["crnn", "unet_crnn_mtl"])
def test_a_training_step_of_the_gpu_config_syncs_once(tiny_run, monkeypatch, model):
    """trainer=gpu as composed (bf16-mixed, progress bar, logging every 50 steps) on the CPU: the only
    sync of a step is the non-finite check; validation adds none of sepnet's or Lightning's own
    (the multi-task model's beat F-measure picks peaks on the host, once per validation batch)."""
    cfg = tiny_run(
        f"model={model}", "trainer=gpu", "trainer.accelerator=cpu", "data.num_workers=0", "data.pin_memory=false",
        "trainer.enable_progress_bar=true", "trainer.max_epochs=1", "data.examples_per_epoch=20", "logger=csv",
    )
    syncs = HostSyncs()
    entered = record_phases(monkeypatch, syncs)
    with syncs:
        run_training(cfg)
    assert entered["train_step"] == 5 and entered["val_step"] >= 1
    train = {key: n for key, n in syncs.found.items() if key[0] == "train_step"}
    assert train == {("train_step", "aten._local_scalar_dense.default", "training/faults.py:on_before_optimizer_step"): 5}
    # torch.istft checks its window's overlap-add on the host; nothing else may read during validation.
    val = {key for key in syncs.found if key[0] == "val_step"}
    allowed = ("dsp/frontend.py:istft",) + (("data/beats.py:activation_beat_times",) if model == "unet_crnn_mtl" else ())
    assert all(where.endswith(allowed) for _, _, where in val), val


def test_the_non_finite_check_reads_one_flag_for_all_gradients():
    class Trainer:
        current_epoch, global_step = 0, 0

    module = nn.Sequential(*[nn.Linear(4, 4) for _ in range(10)])
    module(torch.randn(2, 4)).sum().backward()
    guard, syncs = NonFiniteGuard(), HostSyncs()
    syncs.phase = "step"
    with syncs:
        guard.on_before_backward(Trainer(), module, torch.tensor(1.5))
        guard.on_before_optimizer_step(Trainer(), module, None)
    assert sum(syncs.found.values()) == 1  # 20 gradients and the loss, one read
