"""Is data ever the bottleneck? Loader examples/s beside the training step rate of a model.

    python benchmarks/data_speed.py                          # embedded data, model=large
    python benchmarks/data_speed.py --batches 100 --model crnn
    python benchmarks/data_speed.py data=folder data.train_dir=data/train data.val_dir=data/val

Builds the training DataLoader from the real config (3 s stereo chunks, batch 8,
``augment=remix_silence`` with ``data.target_stems=[vocals]`` so silencing acts;
extra Hydra overrides are passed through) and times full batches (chunk slicing
from the memory-mapped cache, remixing, gain, channel swap, silencing, collation)
for 0, 1 and 2 workers, after the first batch (worker start-up is shown apart).
The model's rate comes from ``benchmarks/train_speed.py`` (same batch and chunk
size, its own process). Prints whether the loader is at least 5x faster than
the model consumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REQUIRED_RATIO = 5.0
TRAIN_SPEED = Path(__file__).resolve().parent / "train_speed.py"


def loader_rate(overrides: list[str], workers: int, batches: int) -> tuple[float, float]:
    """(examples/s after the first batch, seconds to the first batch) of the training loader."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from sepnet.app.configs import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.data, num_workers=workers)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()

    def endless():
        epoch = 0
        while True:
            loader.sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = endless()
    start = time.perf_counter()
    next(stream)
    first = time.perf_counter() - start
    start, examples = time.perf_counter(), 0
    for _ in range(batches):
        examples += next(stream)["mixture"].shape[0]
    return examples / (time.perf_counter() - start), first


def model_rate(model: str, batch_size: int, chunk_seconds: float, steps: int) -> dict:
    """train_speed.py's measurement of one model, in a fresh process."""
    command = [sys.executable, str(TRAIN_SPEED), "--one", model, "--batch-size", str(batch_size),
               "--chunk-seconds", str(chunk_seconds), "--steps", str(steps), "--warmup", "2"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--batches", type=int, default=60, help="timed batches per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps of the model")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data, e.g. data=folder ...")
    args = parser.parse_args()

    overrides = [
        "augment=remix_silence",
        "data.target_stems=[vocals]",
        f"data.chunk_seconds={args.chunk_seconds}",
        f"data.batch_size={args.batch_size}",
        f"data.examples_per_epoch={args.batch_size * 32}",
        *args.overrides,
    ]
    import torch

    print(f"loader: batch {args.batch_size} x {args.chunk_seconds:g} s stereo, {' '.join(overrides[:2])}; "
          f"{args.batches} batches timed after the first; {torch.get_num_threads()} torch threads")
    rates = {}
    for workers in args.workers:
        rates[workers], first = loader_rate(overrides, workers, args.batches)
        print(f"  workers={workers}: {rates[workers]:9.1f} examples/s   (first batch after {first:.2f} s)")

    r = model_rate(args.model, args.batch_size, args.chunk_seconds, args.steps)
    print(f"model={args.model}: {r['examples_per_second']:.2f} examples/s "
          f"({r['seconds_per_step']:.2f} s per training step of {args.batch_size}, median of {args.steps})")
    for workers, rate in rates.items():
        ratio = rate / r["examples_per_second"]
        verdict = "yes" if ratio >= REQUIRED_RATIO else "NO"
        print(f"  workers={workers}: loader / model = {ratio:8.1f}x   >= {REQUIRED_RATIO:g}x: {verdict}")


if __name__ == "__main__":
    main()
