"""Training throughput and peak memory per model on this machine.

    python benchmarks/train_speed.py                       # every conf/model/*.yaml, batch 8, 3 s chunks, CPU
    python benchmarks/train_speed.py --models crnn --steps 5
    python benchmarks/train_speed.py --device cuda --precision bf16
    python benchmarks/train_speed.py --models crnn --compile          # torch.compile (sepnet's compile=true)
    python benchmarks/train_speed.py --data                           # + share of step time waiting for data
    python benchmarks/train_speed.py --device cuda --precision bf16 --data trainer=gpu   # + Hydra overrides

Each model is built from the real Hydra config (``conf/model/<name>.yaml``, with
the module it selects: the multi-task one for unet_crnn_mtl) and timed on full
training steps (front end, masks, loss, backward, Adam) on random stereo audio
(plus random beats for the rhythm head); each runs in a fresh process so peak
memory is its own. Prints examples/s, seconds per step, parameters and peak
memory: resident set size on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU.
With ``--data`` the batches come from the real data module (embedded dataset)
and the share of step time spent waiting for the next batch is printed too.
Further arguments are Hydra overrides of the train config (``trainer=gpu`` gives
the data loaders that option sets: workers, persistent, pinned).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from sepnet.app.configs import group_options


def measure(
    model_name: str,
    batch_size: int,
    chunk_seconds: float,
    steps: int,
    warmup: int,
    device: str,
    precision: str,
    compile_model: bool = False,
    data: bool = False,
    overrides: tuple[str, ...] = (),
) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from sepnet.app.configs import CONFIG_DIR
    from sepnet.train import build_module

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", "run_name=bench", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "."
    module = build_module(cfg).to(device)
    if compile_model:
        module.separator.model.compile()
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):  # with a scheduler: {"optimizer": ..., "lr_scheduler": ...}
        optimizer = optimizer["optimizer"]
    rate = cfg.frontend.sample_rate
    samples = round(chunk_seconds * rate)
    generator = torch.Generator().manual_seed(0)
    stems = 0.1 * torch.randn(batch_size, len(cfg.data.stems), 2, samples, generator=generator)
    # Two beats a second, as sample positions padded with -1 (what data.beats=true gives).
    beats = torch.full((batch_size, 4 * round(chunk_seconds) + 1), -1, dtype=torch.long)
    beats[:, : 2 * round(chunk_seconds)] = torch.arange(0, samples, rate // 2)[: 2 * round(chunk_seconds)]
    fixed = {"mixture": stems.sum(1), "stems": stems, "beats": beats}
    batches = None
    if data:
        datamodule = instantiate(cfg.data, batch_size=batch_size, chunk_seconds=chunk_seconds)
        datamodule.prepare_data()
        datamodule.setup("fit")
        batches = iter(datamodule.train_dataloader())
    module.train()
    dtype = {"bf16": torch.bfloat16, "32": None}[precision]
    times, waits = [], []
    for step in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        batch = next(batches) if batches is not None else fixed
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        fetched = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = module.loss_terms(module.forward_batch(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
            waits.append(fetched - start)
    step_time = sorted(times)[len(times) // 2]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model_name,
        "parameters": sum(p.numel() for p in module.parameters()),
        "seconds_per_step": step_time,
        "examples_per_second": batch_size / step_time,
        "peak_mib": peak,
        "data_wait_fraction": sum(waits) / sum(times) if data else None,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=group_options("model"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="bf16: autocast (for GPUs)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the mask model (compile=true)")
    parser.add_argument("--data", action="store_true", help="batches from the real data module; report data wait")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config, e.g. trainer=gpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.chunk_seconds, args.steps, args.warmup,
                                 args.device, args.precision, args.compile, args.data, tuple(args.overrides))))
        return
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    memory = "peak alloc MiB" if args.device == "cuda" else "peak RSS MiB"
    print(f"training step, batch {args.batch_size} x {args.chunk_seconds:g} s stereo at 22050 Hz, {where}, "
          f"precision {args.precision}, median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'model':<16}{'params':>10}{'s/step':>10}{'examples/s':>12}{memory:>16}")
    for name in args.models:
        command = [sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size),
                   "--chunk-seconds", str(args.chunk_seconds), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--device", args.device, "--precision", args.precision]
        command += ["--compile"] * args.compile + ["--data"] * args.data + args.overrides
        r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{r['model']:<16}{r['parameters'] / 1e6:>9.2f}M{r['seconds_per_step']:>10.3f}"
              f"{r['examples_per_second']:>12.2f}{r['peak_mib']:>16.0f}"
              + (f"   data wait {100 * r['data_wait_fraction']:.1f}% of step time" if args.data else ""), flush=True)


if __name__ == "__main__":
    main()
