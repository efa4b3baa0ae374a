"""``python -m sepnet`` (and the ``sepnet`` console script): list the commands, or run ``sepnet <command> ...``.

    sepnet separate ckpt=best.ckpt song.flac -o stems
    sepnet train model=large

is ``python -m sepnet.<command> ...`` with the same command line. Importing this module imports
nothing heavy; OpenMP's wait policy is chosen before the command's import loads torch.
"""

from __future__ import annotations

import difflib
import sys

COMMANDS = {
    "train": "train a model (conf/train.yaml; experiment=<name> runs a documented one)",
    "evaluate": "score a checkpoint with BSSEval v4 (ckpt=<path>)",
    "separate": "separate songs into stems (ckpt=<path> song.flac [-o out] [--mp3] ...)",
    "merge": "average the weights of checkpoints (ckpts=[a,b] weights=[...])",
    "compare": "draw the curves of several runs side by side (compare <run folders>)",
    "lineage": "draw how runs and checkpoints descend from each other (lineage <folder>)",
    "check_data": "check a dataset before training on it",
    "reproduce": "reproduce the research log's chain of runs",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join([
        "usage: sepnet <command> [options and key=value settings]   (or: python -m sepnet.<command> ...)",
        "", "commands:", *lines, "", "sepnet <command> --help lists what a command reads.",
    ])


def main(argv: list[str] | None = None) -> None:
    """Run the command ``argv[0]`` (default ``sys.argv[1:]``) on the rest of the line; a list without one."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if argv else 2)
    command = argv[0].replace("-", "_")
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        print(f"sepnet: error: '{argv[0]}' is not a sepnet command; {hint}the commands: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"sepnet {command}", *argv[1:]]
    if command == "compare":
        from sepnet.app.wait_policy import choose_wait_policy

        choose_wait_policy()
        from sepnet.compare import main as compare

        compare(argv[1:])
        return
    from sepnet.app.console import launch

    launch(command)


if __name__ == "__main__":
    main()
