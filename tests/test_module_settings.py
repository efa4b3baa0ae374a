"""The module takes the ``sched`` and ``freeze`` nodes as the YAML writes them."""

import pytest

from sepnet.train import build_module
from sepnet.training.module import Freeze
from sepnet.training.schedules import Schedule, WarmupCosineLR


@pytest.mark.parametrize(
    ("overrides", "scheduler_class", "monitor", "interval"),
    [
        (["sched=cosine"], WarmupCosineLR, "val/sdr", "step"),
        (["sched=plateau", "sched.monitor=val/loss"], "ReduceLROnPlateau", "val/loss", "epoch"),
    ],
)
def test_sched_node_reaches_lightning_unchanged(tiny_run, overrides, scheduler_class, monitor, interval):
    module = build_module(tiny_run(*overrides, "freeze=encoder"))
    assert isinstance(module.sched, Schedule) and (module.sched.monitor, module.sched.interval) == (monitor, interval)
    assert module.frozen == [module.separator.model.encoder]
    scheduler = module.configure_optimizers()["lr_scheduler"]
    kind = type(scheduler["scheduler"])
    assert kind is scheduler_class or kind.__name__ == scheduler_class
    assert (scheduler["monitor"], scheduler["interval"]) == (monitor, interval)


def test_no_scheduler_and_nothing_frozen_by_default(tiny_run):
    module = build_module(tiny_run("sched=none", "freeze=none"))
    assert module.sched.scheduler is None and module.frozen == []
    assert not isinstance(module.configure_optimizers(), dict)
    assert Freeze().modules == ()
