"""Real-time factor, peak memory and SDR of ``sepnet.separate`` (fp32 and bf16) beside Open-Unmix, on one file.

    python benchmarks/separate_speed.py                        # model=large, trained briefly once (cached)
    python benchmarks/separate_speed.py --ckpt outputs/.../best.ckpt
    python benchmarks/separate_speed.py --train-steps 0        # fresh weights: speed only, no meaningful SDR
    python benchmarks/separate_speed.py --model crnn --rtf-minutes 1 --rss-minutes 0.5 2 separate.batch_size=8

The test file is a ``--rtf-minutes`` (default 3) stereo 44.1 kHz 16-bit WAV mixture of songs of
the embedded generator (:func:`sepnet.data.synthetic.generate_track`, rendered at 44.1 kHz, 10 s
each, seeds unseen in training) whose stems are kept as references. Rows, each in a fresh process
so peak RSS is its own:

- ``sepnet fp32`` / ``sepnet bf16``: ``sepnet.separate.separate`` (the entry point's function:
  streaming read, soxr resampling to the model's rate, chunked overlap-add, resampling back,
  streaming write of every stem) with ``separate.precision=fp32`` / ``bf16``;
- ``open-unmix``: four ``openunmix.model.OpenUnmix`` of the peer's size (hidden 512, fresh
  weights: speed does not depend on training) in ``openunmix.model.Separator`` with its own
  STFT (torch filterbank, n_fft 1024, hop 256 at 22.05 kHz, ``niter=0`` like sepnet's default
  of no post-filter), the whole file at once: read, soxr to 22.05 kHz, separate, soxr back,
  write the four stems with the same writer.

Each row runs ``--repeat`` times (default 3) and shows the median wall time: one run of a few
seconds varies by 20-30% on a shared virtual machine. Wall time excludes imports; for sepnet it
includes loading the checkpoint (what a user of the command waits for), for Open-Unmix building
its four models is excluded. SDR is BSSEval v4 (sepnet.evaluation.bsseval,
median over 1 s frames) of each stem against its reference at 44.1 kHz, mean over stems;
``vs fp32`` is the difference to the fp32 row. A ``model=large`` trained for
``--train-steps`` (default 100) steps of 4 x 2 s on the embedded data is cached under
``outputs/benchmarks/separate_speed/`` and reused. Then peak RSS of the default path on a
short and a long file (``--rss-minutes``) shows that memory follows the chunk size, not the track.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / "outputs" / "benchmarks" / "separate_speed"
STEMS = ["bass", "drums", "other", "vocals"]


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


def trained_checkpoint(model: str, steps: int, overrides: list[str], cache: Path) -> Path:
    """``model`` trained for ``steps`` steps of 4 x 2 s on the embedded data, trained once and cached under ``cache``."""
    import hashlib

    key = hashlib.sha1(" ".join(overrides).encode()).hexdigest()[:8] if overrides else "default"
    run_dir = cache / f"{model}_{steps}steps_{key}"
    best = run_dir / "checkpoints" / "best.ckpt"
    if best.is_file():
        return best
    command = [
        sys.executable, "-m", "sepnet.train", f"model={model}", "seed=0", "trainer.max_epochs=1",
        f"trainer.max_steps={steps}", f"data.examples_per_epoch={4 * steps}", "data.batch_size=4",
        "data.chunk_seconds=2.0", "logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        f"hydra.run.dir={run_dir}", f"run_name=separate_speed_{model}", *overrides,
    ]
    print(f"training {model} for {steps} steps once (cached in {run_dir}): {' '.join(command[3:])}", flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=child_env())
    if result.returncode != 0 or not best.is_file():
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"training {model} for the benchmark failed (exit status {result.returncode})")
    return best


def write_reference_mix(folder: Path, seconds: float, rate: int = 44100) -> Path:
    """``folder/mixture.wav`` (16-bit stereo) of embedded-generator songs rendered at ``rate``, 10 s each,
    with their stems as ``folder/<stem>.wav`` (float); written once, reused when present."""
    from sepnet.data.synthetic import generate_track

    mixture = folder / "mixture.wav"
    if mixture.is_file() and all((folder / f"{s}.wav").is_file() for s in STEMS):
        return mixture
    folder.mkdir(parents=True, exist_ok=True)
    parts, left, seed = [], seconds, 90_000  # seeds far from the training set's
    while left > 1e-9:
        length = min(10.0, left)
        stems, _ = generate_track(seed, length, rate)
        parts.append(np.stack([stems[s] for s in STEMS]))
        left, seed = left - length, seed + 1
    audio = np.concatenate(parts, axis=-1)  # (stems, channels, samples)
    for stem, x in zip(STEMS, audio):
        sf.write(folder / f"{stem}.wav", x.T, rate, subtype="FLOAT")
    sf.write(mixture, audio.sum(0).T, rate, subtype="PCM_16")
    return mixture


CHILD_WAIT_POLICY: str | None = None
"""The OpenMP wait policy of every timed process, chosen once by :func:`main` (None: OpenMP's default)."""


def child_env() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("OMP_WAIT_POLICY", None)
    return env if CHILD_WAIT_POLICY is None else {**env, "OMP_WAIT_POLICY": CHILD_WAIT_POLICY}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(ckpt: str, audio: str, out: str, overrides: list[str]) -> dict:
    """Separate one file with ``sepnet.separate``'s own code in this process; returns timings and peak RSS."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from sepnet.app.configs import CONFIG_DIR
    from sepnet.separate import separate

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("separate", overrides=[f"ckpt={ckpt}", f"input={audio}", f"out={out}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = out
    start = time.perf_counter()
    separate(cfg)  # the entry point's function: its allocator setting included
    wall = time.perf_counter() - start
    seconds = sf.info(audio).duration
    return {"audio_seconds": seconds, "wall_seconds": wall, "rtf": seconds / wall, "peak_rss_mib": peak_rss_mib(),
            "threads": torch.get_num_threads()}


def measure_openunmix(audio: str, out: str, hidden: int) -> dict:
    """Open-Unmix's own separator on one file, whole, in this process (module docstring); timings and peak RSS."""
    import soxr
    import torch
    from umx import openunmix

    from sepnet.audio.io import AudioWriter

    umx = openunmix()
    rate, n_fft, hop = 22050, 1024, 256
    torch.manual_seed(0)
    models = {
        stem: umx.model.OpenUnmix(nb_bins=n_fft // 2 + 1, nb_channels=2, hidden_size=hidden, nb_layers=3,
                                  max_bin=int(umx.utils.bandwidth_to_max_bin(rate, n_fft, 16000)))
        for stem in STEMS
    }
    separator = umx.model.Separator(models, niter=0, sample_rate=rate, n_fft=n_fft, n_hop=hop, nb_channels=2,
                                    filterbank="torch").eval()
    folder = Path(out) / Path(audio).stem
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    mixture, input_rate = sf.read(audio, dtype="float32", always_2d=True)  # (samples, channels)
    at_model = soxr.resample(mixture, input_rate, rate, quality="HQ")
    with torch.inference_mode():
        estimates = separator(torch.from_numpy(np.ascontiguousarray(at_model.T))[None])[0]  # (stems, channels, samples)
    for stem, estimate in zip(STEMS, estimates.numpy()):
        back = soxr.resample(np.ascontiguousarray(estimate.T), rate, input_rate, quality="HQ")[: len(mixture)]
        with AudioWriter(folder / f"{stem}.wav", input_rate, back.shape[1]) as writer:
            writer.write(back.T)
    wall = time.perf_counter() - start
    seconds = len(mixture) / input_rate
    return {"audio_seconds": seconds, "wall_seconds": wall, "rtf": seconds / wall, "peak_rss_mib": peak_rss_mib(),
            "threads": torch.get_num_threads()}


def repeated(args: list[str], threads: int, repeat: int) -> dict:
    """:func:`child` ``repeat`` times: the median wall time (and its real-time factor), the largest peak RSS.

    One run of a few seconds on a shared virtual machine varies by 20-30% from run to run; the
    median of three is stable to a few percent."""
    runs = [child(args, threads) for _ in range(repeat)]
    wall = float(np.median([r["wall_seconds"] for r in runs]))
    return {**runs[-1], "wall_seconds": wall, "rtf": runs[-1]["audio_seconds"] / wall,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "walls": [r["wall_seconds"] for r in runs]}


def child(args: list[str], threads: int) -> dict:
    """Run this script's internal ``args`` in a fresh process; its last stdout line is the result."""
    command = [sys.executable, __file__, "--threads", str(threads), *args]
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, env=child_env())
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{' '.join(args[:2])} failed with exit status {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def stem_sdr(references: Path, estimates: Path) -> dict[str, float]:
    """BSSEval v4 SDR (median over 1 s frames) of each ``estimates/<stem>.wav`` against ``references/<stem>.wav``."""
    from sepnet.evaluation.bsseval import framewise_sdr, track_sdr

    refs = np.stack([sf.read(references / f"{s}.wav", dtype="float32", always_2d=True)[0] for s in STEMS])
    ests = np.stack([sf.read(estimates / f"{s}.wav", dtype="float32", always_2d=True)[0] for s in STEMS])
    rate = sf.info(references / "mixture.wav").samplerate
    scores = track_sdr(framewise_sdr(refs, ests, rate, on_silent="nan"))
    return dict(zip(STEMS, (float(x) for x in scores)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="large")
    parser.add_argument("--ckpt", type=Path, help="a trained sepnet checkpoint (default: --model, trained --train-steps)")
    parser.add_argument("--train-steps", type=int, default=100, help="steps of the cached model (0: fresh weights)")
    parser.add_argument("--train-override", action="append", default=[], help="a Hydra override for that training")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the trained model and the test mixture are kept")
    parser.add_argument("--rtf-minutes", type=float, default=3.0, help="length of the real-time-factor file")
    parser.add_argument("--rss-minutes", type=float, nargs=2, default=[1.0, 10.0], help="short and long file for RSS")
    parser.add_argument("--peer-hidden", type=int, default=512, help="Open-Unmix's hidden size")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the table shows the median wall time")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    parser.add_argument("overrides", nargs="*", help="separate.* overrides for both sepnet rows, e.g. separate.batch_size=8")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: ckpt audio out
    parser.add_argument("--umx", nargs=2, help=argparse.SUPPRESS)  # internal: audio out
    args, extra = parser.parse_known_args()
    if args.threads and (args.one or args.umx):  # a timed process (the parent passes --threads on)
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(*args.one, [*args.overrides, *extra])))
        return
    if args.umx:
        print(json.dumps(measure_openunmix(*args.umx, args.peer_hidden)))
        return

    from sepnet.app.wait_policy import choose_wait_policy

    global CHILD_WAIT_POLICY
    choose_wait_policy()  # once, here: every row's process gets it
    CHILD_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
    # This process scores rows with torch between timed runs: with spinning OpenMP threads it would
    # hold a core through every later row (it did: bf16 and Open-Unmix ran 30% slow).
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    overrides = [*args.overrides, *extra]
    with tempfile.TemporaryDirectory(prefix="sepnet-bench-") as tmp:
        tmp = Path(tmp)
        if args.ckpt is not None:
            ckpt, trained = args.ckpt, f"checkpoint {args.ckpt}"
        elif args.train_steps > 0:
            ckpt = trained_checkpoint(args.model, args.train_steps, args.train_override, args.cache)
            trained = f"trained {args.train_steps} steps of 4 x 2 s ({ckpt})"
        else:
            ckpt, trained = tmp / f"{args.model}.ckpt", "fresh weights: SDR is not meaningful"
            write_checkpoint(args.model, ckpt)
        references = args.cache / f"mix_{args.rtf_minutes:g}min"
        audio = write_reference_mix(references, 60 * args.rtf_minutes)
        print(f"sepnet.separate, model={args.model} ({trained}); {args.rtf_minutes:g}-minute stereo 44.1 kHz 16-bit WAV; "
              f"overrides: {' '.join(overrides) or '(defaults)'}; Open-Unmix: hidden {args.peer_hidden}, fresh weights")
        rows = {}
        for name, precision in (("sepnet fp32", "fp32"), ("sepnet bf16", "bf16")):
            out = tmp / name.replace(" ", "_")
            rows[name] = repeated(["--one", str(ckpt), str(audio), str(out), *overrides, f"separate.precision={precision}"],
                                  args.threads, args.repeat)
            rows[name]["sdr"] = stem_sdr(references, out / "mixture")
        rows["open-unmix"] = repeated(["--peer-hidden", str(args.peer_hidden), "--umx", str(audio), str(tmp / "umx")],
                                      args.threads, args.repeat)
        rows["open-unmix"]["sdr"] = None  # untrained: its SDR says nothing
        base_sdr = np.nanmean(list(rows["sepnet fp32"]["sdr"].values()))
        peer_rtf = rows["open-unmix"]["rtf"]
        print(f"{'row':<13}{'audio s':>9}{'wall s':>9}{'x real time':>13}{'vs open-unmix':>15}{'peak RSS MiB':>14}"
              f"{'SDR dB':>9}{'vs fp32 dB':>12}")
        for name, r in rows.items():
            sdr = np.nanmean(list(r["sdr"].values())) if r["sdr"] else None
            sdr_cells = f"{sdr:>9.3f}{sdr - base_sdr:>+12.3f}" if sdr is not None else f"{'-':>9}{'-':>12}"
            print(f"{name:<13}{r['audio_seconds']:>9.0f}{r['wall_seconds']:>9.1f}{r['rtf']:>13.1f}"
                  f"{r['rtf'] / peer_rtf:>14.2f}x{r['peak_rss_mib']:>14.0f}{sdr_cells}", flush=True)
        print(f"wall s of each of the {args.repeat} runs (the table shows their median): "
              + "; ".join(f"{name} " + " ".join(f"{w:.1f}" for w in r["walls"]) for name, r in rows.items()))
        fp32, bf16 = rows["sepnet fp32"]["sdr"], rows["sepnet bf16"]["sdr"]
        print("per-stem SDR bf16 - fp32 (dB): " + ", ".join(f"{s} {bf16[s] - fp32[s]:+.4f}" for s in STEMS))
        files = {m: tmp / f"{m:g}min.wav" for m in args.rss_minutes}
        rss = {}
        for m, f in files.items():
            write_music(f, 60 * m)
            rss[m] = child(["--one", str(ckpt), str(f), str(tmp / f"out{m:g}"), *overrides], args.threads)
        short, long = (rss[m] for m in args.rss_minutes)
        print(f"torch threads {rows['sepnet fp32']['threads']}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"peak RSS of the default path, {args.rss_minutes[1]:g} min / {args.rss_minutes[0]:g} min: "
              f"{long['peak_rss_mib']:.0f} / {short['peak_rss_mib']:.0f} MiB = {long['peak_rss_mib'] / short['peak_rss_mib']:.2f}x")
        print(f"real-time factor on the {args.rtf_minutes:g}-minute file: fp32 {rows['sepnet fp32']['rtf']:.1f}x, "
              f"bf16 {rows['sepnet bf16']['rtf']:.1f}x ({rows['sepnet bf16']['rtf'] / peer_rtf:.2f}x Open-Unmix's "
              f"{peer_rtf:.1f}x)")


if __name__ == "__main__":
    main()
