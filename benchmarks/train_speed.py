"""Training throughput and peak memory per model on this machine.

    python benchmarks/train_speed.py                       # model=crnn and model=large, batch 8, 3 s chunks
    python benchmarks/train_speed.py --models crnn --steps 5

Each model is built from the real Hydra config (``conf/model/<name>.yaml``) and
timed on full training steps (front end, masks, loss, backward, Adam) on random
stereo audio; each runs in a fresh process so peak RSS is its own.
Prints examples/s, seconds per step, parameters and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def measure(model_name: str, batch_size: int, chunk_seconds: float, steps: int, warmup: int) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from sepnet.config import CONFIG_DIR
    from sepnet.train import build_module

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", "run_name=bench"])
    with open_dict(cfg):
        cfg.paths.output_dir = "."
    module = build_module(cfg)
    optimizer = module.configure_optimizers()
    rate = cfg.frontend.sample_rate
    samples = round(chunk_seconds * rate)
    generator = torch.Generator().manual_seed(0)
    stems = 0.1 * torch.randn(batch_size, len(cfg.data.stems), 2, samples, generator=generator)
    batch = {"mixture": stems.sum(1), "stems": stems}
    module.train()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        masks, _, targets = module.step_masks(batch)
        loss = module.loss(masks, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    step_time = sorted(times)[len(times) // 2]
    return {
        "model": model_name,
        "parameters": sum(p.numel() for p in module.parameters()),
        "seconds_per_step": step_time,
        "examples_per_second": batch_size / step_time,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["crnn", "large"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.chunk_seconds, args.steps, args.warmup)))
        return
    print(f"training step, batch {args.batch_size} x {args.chunk_seconds:g} s stereo at 22050 Hz, CPU, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'model':<12}{'params':>12}{'s/step':>10}{'examples/s':>12}{'peak RSS MiB':>14}")
    for name in args.models:
        command = [sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size),
                   "--chunk-seconds", str(args.chunk_seconds), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{r['model']:<12}{r['parameters'] / 1e6:>11.2f}M{r['seconds_per_step']:>10.2f}"
              f"{r['examples_per_second']:>12.2f}{r['peak_rss_mib']:>14.0f}")


if __name__ == "__main__":
    main()
