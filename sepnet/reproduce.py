"""``python -m sepnet.reproduce``: run the research log's whole chain and table its SDRs.

    python -m sepnet.reproduce                                   # smoke budget, embedded data (a few minutes)
    python -m sepnet.reproduce reproduce.budget=full             # the experiments as written
    python -m sepnet.reproduce reproduce.steps=[crnn_large_finetune_ver1,crnn_large_final_tune,crnn_large_merged_3.96]
    python -m sepnet.reproduce reproduce.dry_run=true            # the commands, nothing run

Each step of :data:`sepnet.reproduction.chain.CHAIN` runs, in dependency order, as the real
entry point in a subprocess (``python -m sepnet.train experiment=...``,
``sepnet.merge``, ``sepnet.evaluate``), with the budget's overrides
(``conf/reproduce.yaml``: the smoke budget shrinks data, epochs and the model, the
same for every run so merges and ``init.from_run`` stay compatible) and
``paths.outputs_root`` set to this run's root, ``outputs/reproduce/<time>/``, so
every ``init.from_run`` resolves to a run of this chain. Under the root:

    <run or merge name>/<time>/      train and merge run dirs (checkpoints/best.ckpt)
    evaluate/<step>/                 evaluate runs (results.json), sweeps (sweep.csv, one dir per job)
    logs/<nn>_<step>.log             each step's command and output
    reproduce.md, reproduce.csv      the table, rewritten after every step

The table has one row per step (a sweep: per swept value): its parents, sepnet's
SDR (``val/sdr`` from ``summary.json`` for a train step; the test-split SDR from
``results.json`` for an evaluate step and for a merge, whose checkpoint is
evaluated), the same for vocals alone (the log scored vocals) and the log's
documented figure (:data:`sepnet.reproduction.chain.DOCUMENTED`).
A failed step stops the chain with one line naming it; the steps done are kept.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()
from omegaconf import DictConfig

from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.errors import exit_on_user_error
from sepnet.reproduction.runner import Row, run_chain

__all__ = ["main", "reproduce"]


@exit_on_user_error
def reproduce(cfg: DictConfig) -> list[Row]:
    """Run the chain as ``cfg`` says (``conf/reproduce.yaml``); returns the table's rows."""
    return run_chain(cfg)


main = hydra_entry_point("reproduce", reproduce)


if __name__ == "__main__":
    run_entry_point(main)
