"""The research log's chain of runs, merges and evaluations, in dependency order.

This is the one place the log's documented SDRs live in code (``DOCUMENTED``);
``experiments/README.md`` and the ``Documented:`` line of each experiment header
are checked against it (``tests/test_reproduce.py``). A train step's parent is not
repeated here: it is the experiment's own ``init.from_run`` (``experiment_parent``).

Steps (``Step.kind``):

- ``train``: ``python -m sepnet.train experiment=<name>``;
- ``merge``: ``python -m sepnet.merge name=<name> ckpts=[<parents' best.ckpt>] weights=...``,
  then ``sepnet.evaluate`` of the merged checkpoint (the log scored its merges);
- ``evaluate``: ``python -m sepnet.evaluate ckpt=<parent's best.ckpt>`` with the
  inference knobs the documented figure was measured at, or an ``evaluate -m`` sweep.

The documented figures are the log's (vocals on the author's MUSDB18-style
``data/val``): they are there to compare against, not to be matched on the
embedded synthetic data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from sepnet.app.configs import CONFIG_DIR
from sepnet.registry import size_overrides

TRAIN, MERGE, EVALUATE = "train", "merge", "evaluate"

DOCUMENTED: dict[str, str] = {
    "crnn_long": "3.20 dB",
    "crnn_large_finetune": "unknown",
    "crnn_large_finetune_ver1": "3.7966 dB (mask_scale 1.2, threshold 0.0)",
    "crnn_large_final_tune": "3.9331 dB",
    "crnn_large_merged_3.96": "3.9631 dB",
    "crnn_large_ultimate_4db": "2.0048 dB",
    "crnn_large_final_fix": "2.0953 dB",
    "crnn_large_merged_0.8_0.2": "2.8281 dB (mask_scale 1.1, threshold 0.1)",
    "crnn_large_merged_0.9_0.1": "no improvement (not given)",
    "retrain_with_augmentation": "not scored (noisy/quiet by ear)",
    "stem_aware_finetune": "negative (-0.5 to -2.0 dB over 55 loops)",
    "layer_freeze": "not separately scored (negative)",
    "unet_crnn": "not scored",
    "unet_crnn_mtl": "not scored",
    # Not the log's: sepnet's own recipe, trained at the same budget so the chain ends comparing with it.
    "sepnet_recipe": "not in the log (sepnet's recipe)",
    "sepnet_band_split": "not in the log (sepnet's recipe)",
}
"""The log's result per run or merge, as the log states it (experiments/README.md's column)."""

ULTIMATE_SWEEP = {"0.8": "2.2692 dB", "1.0": DOCUMENTED["crnn_large_ultimate_4db"], "1.5": "not given (strong squeeze)"}
"""``eval.mask_scale`` value -> the log's figure for crnn_large_ultimate_4db (1.0 is the run's own score)."""


def documented_sdr(text: str) -> float | None:
    """The number of a documented figure (``"3.7966 dB (mask_scale 1.2, ...)" -> 3.7966``); None when it has none."""
    found = re.match(r"(-?\d+(?:\.\d+)?) dB", text)
    return float(found.group(1)) if found else None


@dataclass(frozen=True)
class Step:
    """One step of the chain.

    Args:
        name: the step's name (``reproduce.steps`` selects by it); for train and merge
            steps also the run name their children resolve with ``init.from_run``.
        kind: ``train``, ``merge`` or ``evaluate``.
        parents: run names whose best checkpoints the step reads (merge: in weight order;
            evaluate: the run scored). Train steps leave it empty: see :func:`step_parents`.
        documented: the log's figure for the step.
        weights: merge weights (None: uniform).
        knobs: evaluate overrides the documented figure was measured at (``eval.mask_scale=1.2``).
        sweep: an ``evaluate -m`` sweep as ``(key, {value: documented})``, one row per value.
    """

    name: str
    kind: str
    parents: tuple[str, ...] = ()
    documented: str = "-"
    weights: tuple[float, ...] | None = None
    knobs: tuple[str, ...] = ()
    sweep: tuple[str, dict[str, str]] | None = field(default=None, hash=False)


def _train(name: str) -> Step:
    return Step(name, TRAIN, documented=DOCUMENTED[name])


def _test(run: str, *knobs: str) -> Step:
    """Score ``run``'s best checkpoint on the test split."""
    return Step(f"test_{run}", EVALUATE, (run,), DOCUMENTED[run], knobs=knobs)


CHAIN: tuple[Step, ...] = (
    _train("crnn_long"),
    _train("crnn_large_finetune"),
    _train("crnn_large_finetune_ver1"),
    _train("crnn_large_final_tune"),
    # The log does not name the two averaged models; final_tune and its parent are the likely pair.
    Step("crnn_large_merged_3.96", MERGE, ("crnn_large_final_tune", "crnn_large_finetune_ver1"), DOCUMENTED["crnn_large_merged_3.96"]),
    _train("crnn_large_ultimate_4db"),
    Step(
        "crnn_large_ultimate_4db_mask_scale", EVALUATE, ("crnn_large_ultimate_4db",),
        sweep=("eval.mask_scale", ULTIMATE_SWEEP),
    ),
    Step("crnn_large_ultimate_4db_threshold", EVALUATE, ("crnn_large_ultimate_4db",), "1.5643 dB", knobs=("eval.threshold=0.05",)),
    _train("crnn_large_final_fix"),
    Step(
        "crnn_large_merged_0.8_0.2", MERGE, ("crnn_large_final_tune", "crnn_large_ultimate_4db"),
        DOCUMENTED["crnn_large_merged_0.8_0.2"], weights=(0.8, 0.2), knobs=("eval.mask_scale=1.1", "eval.threshold=0.1"),
    ),
    Step(
        "crnn_large_merged_0.9_0.1", MERGE, ("crnn_large_final_tune", "crnn_large_ultimate_4db"),
        DOCUMENTED["crnn_large_merged_0.9_0.1"], weights=(0.9, 0.1),
    ),
    _train("retrain_with_augmentation"),
    _train("stem_aware_finetune"),
    _train("layer_freeze"),
    _train("unet_crnn"),
    _train("unet_crnn_mtl"),
    _train("sepnet_recipe"),
    _train("sepnet_band_split"),
    # The main checkpoints on the test split (ultimate_4db is scored by its sweep above).
    _test("crnn_long"),
    _test("crnn_large_finetune_ver1", "eval.mask_scale=1.2", "eval.threshold=0.0"),
    _test("crnn_large_final_tune"),
    _test("crnn_large_final_fix"),
    _test("unet_crnn"),
    _test("unet_crnn_mtl"),
    _test("sepnet_recipe"),
    _test("sepnet_band_split"),
    # Like-for-like scores for the claims (sepnet.reproduction.claims): without the knobs the log used.
    Step("test_crnn_large_finetune_ver1_no_knobs", EVALUATE, ("crnn_large_finetune_ver1",)),
    Step("test_crnn_large_merged_0.8_0.2_no_knobs", EVALUATE, ("crnn_large_merged_0.8_0.2",)),
)  # fmt: skip
"""Every step, parents before children."""


@cache
def experiment_config(name: str):
    """``experiment=<name>``'s train config as composed by Hydra (inherited experiments included)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside an entry point's hydra.main: same conf/
        return compose(config_name="train", overrides=[f"experiment={name}"])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment={name}"])


def experiment_init(name: str) -> tuple[str | None, bool]:
    """``(init.from_run, init.strict)`` of ``experiment=<name>``."""
    cfg = experiment_config(name)
    parent = cfg.init.get("from_run")
    return (str(parent) if parent else None), bool(cfg.init.get("strict", True))


def experiment_size(name: str, size: str) -> list[str]:
    """The ``model.<key>=<value>`` overrides of ``experiment=<name>``'s model at its YAML's named ``size``."""
    return size_overrides(experiment_config(name).model, size)


def experiment_parent(name: str) -> str | None:
    """``init.from_run`` of ``experiment=<name>``."""
    return experiment_init(name)[0]


def loads_whole_parent(step: Step) -> bool:
    """A train step that starts from all of its parent's weights (``init.strict=true``): a fine-tune.

    A partial load (``init.strict=false``, e.g. four stems -> vocals) re-learns the layers whose
    shapes changed, so budgets train it as a run from scratch."""
    parent, strict = experiment_init(step.name) if step.kind == TRAIN else (None, True)
    return parent is not None and strict


def step_parents(step: Step) -> tuple[str, ...]:
    """The run names a step needs finished first (a train step's from its experiment config)."""
    if step.kind == TRAIN:
        parent = experiment_parent(step.name)
        return (parent,) if parent else ()
    return step.parents
