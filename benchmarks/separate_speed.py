"""Real-time factor and peak memory of ``sepnet.separate`` on long stereo 44.1 kHz files.

    python benchmarks/separate_speed.py                      # model=large; 3-minute RTF, 1 vs 10 minutes RSS
    python benchmarks/separate_speed.py --model crnn --rtf-minutes 1 --rss-minutes 0.5 2

A checkpoint of the configured model with fresh weights (speed does not depend on
training) is written to a temporary folder with music-like test files; each file
is separated by ``sepnet.separate.run_separation`` (the entry point's code: streaming
read, soxr resampling to the model's rate, chunked overlap-add, resampling back,
streaming write of every stem) in a fresh process, so peak RSS is that file's own.
Prints audio seconds, separation wall time (after imports and checkpoint loading),
real-time factor (audio seconds per wall second) and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def write_checkpoint(model: str, path: Path) -> None:
    """A sepnet checkpoint of ``model`` with fresh weights (the format sepnet.checkpoints.checkpoint.load reads)."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from sepnet.app.configs import CONFIG_DIR
    from sepnet.train import build_module
    from sepnet.training.module import CHECKPOINT_KEY

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", "run_name=bench", "logger=none"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(path.parent)
    module = build_module(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    torch.save({"state_dict": module.state_dict(), CHECKPOINT_KEY: {"config": config, "lineage": {"parents": []}, "metrics": {}}}, path)


def write_music(path: Path, seconds: float, rate: int = 44100, seed: int = 0) -> None:
    """Stereo 16-bit WAV of tones, noise bursts and a bass line, written in blocks (bounded memory)."""
    rng = np.random.default_rng(seed)
    block = 10 * rate
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
        for start in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            bass = 0.3 * np.sin(2 * np.pi * 55 * (1 + (t.astype(int) % 4) / 4) * t)
            chord = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
            hits = 0.2 * rng.standard_normal(n) * np.exp(-((t * 4) % 1) * 30)
            f.write(np.stack([bass + chord + hits, bass + 0.8 * chord + hits], 1).astype(np.float32))


def measure(ckpt: str, audio: str, out: str, overrides: list[str]) -> dict:
    """Separate one file in this process; returns timings and peak RSS."""
    import torch
    from hydra import compose, initialize_config_dir

    from sepnet.app.configs import CONFIG_DIR
    from sepnet.separate import run_separation

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("separate", overrides=[f"ckpt={ckpt}", f"input={audio}", f"out={out}", *overrides])
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.paths.output_dir = out
    start = time.perf_counter()
    run_separation(cfg)
    wall = time.perf_counter() - start
    seconds = sf.info(audio).duration
    return {
        "audio_seconds": seconds,
        "wall_seconds": wall,
        "rtf": seconds / wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def run_one(ckpt: Path, audio: Path, out: Path, overrides: list[str], threads: int) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--one", str(ckpt), str(audio), str(out), *overrides]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large")
    parser.add_argument("--rtf-minutes", type=float, default=3.0, help="length of the real-time-factor file")
    parser.add_argument("--rss-minutes", type=float, nargs=2, default=[1.0, 10.0], help="short and long file for RSS")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    parser.add_argument("overrides", nargs="*", help="separate.* overrides, e.g. separate.batch_size=2")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: ckpt audio out
    args, extra = parser.parse_known_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(*args.one, [*args.overrides, *extra])))
        return
    overrides = [*args.overrides, *extra]
    with tempfile.TemporaryDirectory(prefix="sepnet-bench-") as tmp:
        tmp = Path(tmp)
        ckpt = tmp / f"{args.model}.ckpt"
        write_checkpoint(args.model, ckpt)
        lengths = sorted({args.rtf_minutes, *args.rss_minutes})
        files = {m: tmp / f"{m:g}min.wav" for m in lengths}
        for m, f in files.items():
            write_music(f, 60 * m)
        print(f"sepnet.separate, model={args.model} (fresh weights), stereo 44.1 kHz 16-bit WAV input, "
              f"overrides: {' '.join(overrides) or '(defaults)'}")
        print(f"{'file':<10}{'audio s':>9}{'wall s':>9}{'x real time':>13}{'peak RSS MiB':>14}")
        results = {}
        for m in lengths:
            r = run_one(ckpt, files[m], tmp / f"out{m:g}", overrides, args.threads)
            results[m] = r
            print(f"{m:g} min{'':<5}{r['audio_seconds']:>9.0f}{r['wall_seconds']:>9.1f}{r['rtf']:>13.1f}{r['peak_rss_mib']:>14.0f}",
                  flush=True)
        short, long = (results[m] for m in args.rss_minutes)
        print(f"device {r['device']}, torch threads {r['threads']}, load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")
        print(f"peak RSS {args.rss_minutes[1]:g} min / {args.rss_minutes[0]:g} min: "
              f"{long['peak_rss_mib'] / short['peak_rss_mib']:.2f}x")
        print(f"real-time factor on the {args.rtf_minutes:g}-minute file: {results[args.rtf_minutes]['rtf']:.1f}x")


if __name__ == "__main__":
    main()
