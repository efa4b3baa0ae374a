"""``python -m sepnet.compare <run dirs or a sweep dir>``: loss curves and val SDR of runs, overlaid.

    python -m sepnet.compare outputs/multirun/crnn/2026-01-05_19-25-01          # every job of a sweep
    python -m sepnet.compare outputs/crnn_large_final_tune/* outputs/crnn_large_ultimate_4db/* --out runs.png

Reads each run's ``logs/metrics.csv`` (every folder below the given ones that
has one), draws one PNG with three panels (training loss, validation loss and
validation SDR per epoch, all runs overlaid) and prints a table of each run's
best ``val/sdr`` and its epoch, also written beside the PNG as markdown. A run
whose training loss kept falling while its validation got worse for
``--patience`` validations in a row is flagged as overfitting
(:mod:`sepnet.training.overfitting`, the check ``sepnet.train`` also runs live).
"""
from __future__ import annotations

import argparse
import sys

from sepnet.errors import exit_on_user_error
from sepnet.evaluation.curves import compare

__all__ = ["compare", "main"]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sepnet.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders and/or sweep folders (searched for logs/metrics.csv)")
    parser.add_argument("--out", help="PNG to write (default: <the folder>/compare.png, or ./compare.png for several)")
    parser.add_argument("--patience", type=int, default=3, help="diverging validations in a row that flag overfitting")
    args = parser.parse_intermixed_args(argv)  # options may stand between the run folders
    out, markdown = compare(args.runs, args.out, args.patience)
    print(markdown)
    print(f"plot: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
