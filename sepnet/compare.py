"""``python -m sepnet.compare runs=[<run or sweep dirs>]``: loss curves and val SDR of runs, overlaid.

    python -m sepnet.compare runs=[outputs/multirun/crnn/2026-01-05_19-25-01]         # every job of a sweep
    python -m sepnet.compare runs=[outputs/crnn_large_final_tune/<time>,outputs/crnn_large_ultimate_4db/<time>] out=reports
    python -m sepnet.compare outputs/multirun/crnn/2026-01-05_19-25-01 --out runs.png  # the older form still works

Reads each run's ``logs/metrics.csv`` (every folder below the given ones that
has one) and draws one PNG with three panels against the optimiser step: the
training loss of every logged step (``trainer.log_every_n_steps``) faint with its
smoothed curve, and validation loss and ``val/sdr`` at the steps they were
measured, so even a one-epoch run is a curve. Beside it: ``compare.md``, each
run's best ``val/sdr`` and its epoch (also printed), and ``compare.json``, the
plotted series. A run whose training loss kept falling while its validation got
worse for ``patience`` validations in a row is flagged as overfitting
(:mod:`sepnet.training.overfitting`, the check ``sepnet.train`` also runs live).

Hydra-style settings are checked like every entry point's (``outt=x`` is named in one
line); words without ``=`` are run folders (``runs``).
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

import argparse
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.errors import SepnetError, exit_on_user_error, printable
from sepnet.evaluation.curves import compare

__all__ = ["compare", "compare_runs", "main"]

USAGE = "python -m sepnet.compare runs=[<run or sweep dir>,...] [out=<folder or file.png>] [patience=3]"
OPTIONS = ("--out", "--patience")
"""The older form's options: a command line with one of them is read by argparse."""


def report(out: Path, markdown: str) -> None:
    print(markdown)
    print(f"plot: {printable(out)}")


@exit_on_user_error
def compare_runs(cfg: DictConfig) -> Path:
    """Compare the runs ``cfg.runs`` (``conf/compare.yaml``); returns the PNG written."""
    if OmegaConf.is_missing(cfg, "runs"):
        raise SepnetError(f"no run folder given; usage: {USAGE}")
    runs = cfg.runs if OmegaConf.is_list(cfg.runs) else [cfg.runs]
    out, markdown = compare([str(r) for r in runs], cfg.out, int(cfg.patience), out_key="out")
    report(out, markdown)
    return out


hydra_main = hydra_entry_point("compare", compare_runs)


def option_form(argv: list[str]) -> None:
    """``compare <run dirs> [--out file.png] [--patience N]``, read by argparse."""
    parser = argparse.ArgumentParser(prog="python -m sepnet.compare", usage=f"{USAGE}\n   or: %(prog)s <run dirs> [--out file.png]")
    parser.add_argument("runs", nargs="+", help="run folders and/or sweep folders (searched for logs/metrics.csv)")
    parser.add_argument("--out", help="PNG to write, or a folder for compare.png (default: the folder given, or ./)")
    parser.add_argument("--patience", type=int, default=3, help="diverging validations in a row that flag overfitting")
    args = parser.parse_intermixed_args(argv)  # options may stand between the run folders
    report(*compare(args.runs, args.out, args.patience, out_key="--out"))


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """The command line: Hydra-style settings (``runs=[a,b] out=x``, bare words are ``runs``), or the
    older ``<run dirs> --out file.png`` form when ``--out``/``--patience`` is used."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(word.partition("=")[0] in OPTIONS for word in argv):
        option_form(argv)
        return
    saved, sys.argv[1:] = sys.argv[1:], argv
    try:
        run_entry_point(hydra_main, positional="runs", many=True)
    finally:
        sys.argv[1:] = saved


if __name__ == "__main__":
    main()
