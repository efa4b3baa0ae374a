"""What each training loss costs: the step time of one model with each loss, and the loss's share of it.

    python benchmarks/loss_cost.py                               # model=band_split, batch 4 x 3 s, CPU
    python benchmarks/loss_cost.py --model band_split --batch-size 8 model.complex_masks=true

Each row is a full training step (front end, model, loss, backward, Adam) timed by
``benchmarks/train_speed.py`` in a fresh process, with one ``loss=`` setting. The loss's
share is (step - step with the cheapest loss on masks, ``loss=magnitude``) / step: what the
loss adds beyond a loss that needs no iSTFT. Rows: the masked-magnitude MSE (the recipe's),
the waveform L1, multi-resolution STFT L1 with sepnet's default three resolutions, and
BS-RoFormer's five (4096, 2048, 1024, 512, 256 at hop 147).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROWS = {
    "magnitude (recipe)": ["loss=magnitude"],
    "waveform L1": ["loss=waveform"],
    "mrstft, 3 resolutions (default)": ["loss=mrstft"],
    "mrstft, BS-RoFormer's 5 at hop 147": ["loss=mrstft", "loss.resolutions=[4096,2048,1024,512,256]", "loss.hop_length=147"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="band_split")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=len(ROWS), help="the first N rows only")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every row, e.g. model.complex_masks=true")
    args = parser.parse_args()
    speed = Path(__file__).with_name("train_speed.py")
    print(f"model={args.model}, batch {args.batch_size} x {args.chunk_seconds:g} s, median of {args.steps} steps; "
          f"overrides: {' '.join(args.overrides) or '(none)'}")
    print(f"{'loss':<38}{'s/step':>8}{'loss share':>12}")
    base = None
    for name, overrides in list(ROWS.items())[: args.rows]:
        command = [sys.executable, str(speed), "--one", args.model, "--batch-size", str(args.batch_size),
                   "--chunk-seconds", str(args.chunk_seconds), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   *overrides, *args.overrides]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        step = result["seconds_per_step"]
        base = step if base is None else base
        print(f"{name:<38}{step:>8.3f}{100 * (step - base) / step:>11.0f}%", flush=True)


if __name__ == "__main__":
    main()
