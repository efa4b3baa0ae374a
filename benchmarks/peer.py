"""Open-Unmix (and at full band HTDemucs) beside sepnet's recipes: the same budget, data and seed, scored the same way, in one run.

    python benchmarks/peer.py                               # peer + every run of peer.yaml (~65 min on 2 cores)
    python benchmarks/peer.py --sample-rate 44100           # full band: peer_fullband.yaml, Open-Unmix + HTDemucs
    python benchmarks/peer.py --runs open-unmix large       # some rows only
    python benchmarks/peer.py --steps 20 --batch 4          # another budget (chunk: --chunk-seconds)
    python benchmarks/peer.py --data /path/to/musdb18hq     # any MUSDB18-HQ-layout folder (default: the embedded set)
    python benchmarks/peer.py --write                       # also put the table into benchmarks/README.md

Rows:
- ``open-unmix``: four ``openunmix.model.OpenUnmix`` (one per target; hidden 512, 3 BiLSTM
  layers) trained as Open-Unmix's ``scripts/train.py`` trains one: its own STFT and magnitude
  (``openunmix.transforms``, torch backend, ``center=False``), input mean/scale from its
  ``get_statistics`` (per-bin mean and standard deviation of the channel-averaged magnitude over
  every whole, unaugmented training track; std floored at 1e-4 of its maximum), MSE on
  magnitudes, Adam (lr 1e-3, weight decay 1e-5). Its batches come from sepnet's own data module
  with Open-Unmix's augmentation (``peer.data`` in peer.yaml: every source from a random track,
  gain 0.25-1.25, channel swap), so the audio is read exactly as the sepnet rows read it. One
  optimiser step is one batch, on which each of the four models takes its step.
  At ``--sample-rate 44100`` (peer_fullband.yaml) it uses its own full-band STFT, n_fft 4096 and
  hop 1024 (``peer.n_fft``/``peer.hop_length``; else sepnet's front end's), for training and separation.
- ``htdemucs`` (configs with an ``htdemucs`` section: peer_fullband.yaml): ``demucs.htdemucs.HTDemucs``
  with the package's defaults (26.9M parameters) and its recipe (demucs' ``conf/config.yaml``: Adam lr
  3e-4, L1 on waveforms, fp32), training length = the budget's chunk, on sepnet's batches with
  demucs-like augmentation (``htdemucs.data``). Its CPU step is several times slower than the others',
  so it gets equal wall-clock, not equal steps: it trains for as long as the row
  ``htdemucs.wall_clock_of`` trained in the same run (or ``--htdemucs-seconds``), and always runs last.
  It is separated by demucs' own ``apply_model`` (segments of its training length, overlap 0.25, no
  random shifts); it has no Wiener column (its estimates are waveforms).
- one row per sepnet recipe (``runs`` in the config: Hydra overrides of ``python -m sepnet.train``),
  trained by sepnet's own ``run_training`` at the same budget.

``--sample-rate`` picks the config (22050: peer.yaml; 44100: peer_fullband.yaml, whose ``common``
puts every row, peers included, on ``frontend=fullband``, so the embedded set is rendered and every
track scored at 44.1 kHz) and the README markers ``--write`` fills.

Every row runs in a fresh process (so timings and memory are its own) with the same seed and the
same OpenMP wait policy. Scoring is the same code for all rows: each test track is separated whole
by sepnet's overlap-add runner (``conf/inference/default.yaml`` chunking) with and without one
multichannel Wiener iteration (``sepnet.dsp.wiener``, also for Open-Unmix's magnitude estimates,
which enter as ratio masks of the mixture magnitude: the estimate with the mixture's phase, as
Open-Unmix's own separator starts its filter), and scored by ``sepnet.evaluation.bsseval``
(BSSEval v4 SDR, median over 1 s frames, median over tracks). Open-Unmix is separated with
sepnet's centred STFT keeping all 513 bins, which is what its ``Separator`` does (torch
filterbank, ``center=True``).

``train s`` is the training loop alone (batches drawn, forward, backward, optimiser steps; no
statistics, validation or scoring); ``examples/s`` is steps x batch over it; ``minutes`` is
the row's whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from same_budget import overrides as yaml_overrides
from same_budget import write_readme

README = HERE / "README.md"
CONFIGS = {
    22050: (HERE / "peer.yaml", ("<!-- peer:start -->", "<!-- peer:end -->")),
    44100: (HERE / "peer_fullband.yaml", ("<!-- peer-fullband:start -->", "<!-- peer-fullband:end -->")),
}
"""--sample-rate -> (config, the README markers its table goes between)."""
PEER, HTDEMUCS = "open-unmix", "htdemucs"
PEERS = {PEER: "peer", HTDEMUCS: "htdemucs"}
"""Peer rows -> the config section that describes them (a config without the section has no such row)."""


# -- the child process: one row --------------------------------------------------------------


def compose_train(overrides: list[str], output_dir: Path):
    """``conf/train.yaml`` composed with ``overrides`` as ``python -m sepnet.train`` would, writing into ``output_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sepnet.app.configs import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


def inference_knobs(wiener_iters: int):
    """``conf/inference/default.yaml`` (the chunking ``evaluate`` uses) with ``wiener_iters`` set."""
    from omegaconf import OmegaConf

    from sepnet.app.configs import CONFIG_DIR

    knobs = OmegaConf.load(Path(CONFIG_DIR) / "inference" / "default.yaml")
    knobs.wiener_iters = wiener_iters
    return knobs


def sepnet_runners(separator) -> dict:
    """``{"plain": runner, "wiener": runner}``: sepnet's overlap-add runner around ``separator``, without
    and with one multichannel Wiener iteration."""
    from sepnet.inference.overlap_add import build_runner

    return {key: build_runner(separator, inference_knobs(iterations), "eval") for key, iterations in (("plain", 0), ("wiener", 1))}


def score_test(runners: dict, stems: list[str], datamodule) -> dict:
    """``{"plain"|"wiener": {stem: SDR, "mean": SDR} | None, "tracks": n}`` on the test split: each runner
    (``separate((channels, samples)) -> (stems, channels, samples)``) scored by BSSEval v4, median over
    frames and tracks; ``wiener`` is None for a row without a Wiener runner (HTDemucs: a waveform model)."""
    from sepnet.evaluation.scoring import aggregate, mean_over_stems, score_track

    datamodule.prepare_data()
    tracks = [datamodule.read_track(f) for f in datamodule.source.tracks("test", datamodule.stems)]
    tracks = [t for t in tracks if t is not None]
    index = [datamodule.stems.index(s) for s in stems]
    result: dict = {"tracks": len(tracks), "wiener": None}
    for key, runner in runners.items():
        per_track = []
        for track in tracks:
            audio = track.audio
            per_track.append(score_track(audio[index], runner.separate(audio.sum(0)), stems, datamodule.sample_rate))
        per_stem = aggregate(per_track, stems)
        result[key] = {**{s: per_stem[s]["sdr_median"] for s in stems}, "mean": mean_over_stems(per_stem, "sdr_median")}
    return result


def train_sepnet(spec: dict) -> dict:
    """Train one sepnet recipe with ``sepnet.training.run.run_training`` (what ``python -m sepnet.train`` runs)."""
    import lightning as L
    from hydra.utils import instantiate

    from sepnet.checkpoints import checkpoint
    from sepnet.training import run as training

    class TrainTimer(L.Callback):
        """Seconds from the first training epoch's start to the last training batch's end (no validation)."""

        def __init__(self):
            self.start = self.end = None
            self.batches = 0

        def on_train_epoch_start(self, trainer, module):
            if self.start is None:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.end = time.perf_counter()
            self.batches += 1

    cfg = compose_train(spec["overrides"], Path(spec["out"]))
    timer = TrainTimer()
    build_trainer = training.build_trainer
    # The same Trainer, plus the timer (run_training builds its callbacks itself).
    training.build_trainer = lambda cfg, callbacks, loggers, out: build_trainer(cfg, [*callbacks, timer], loggers, out)
    _, summary = training.run_training(cfg)
    loaded = checkpoint.load(summary["best_checkpoint"])
    return {
        "params": sum(p.numel() for p in loaded.separator.model.parameters()),
        "steps": timer.batches,
        "train_seconds": timer.end - timer.start,
        "scores": score_test(sepnet_runners(loaded.separator), list(loaded.separator.target_stems), instantiate(cfg.data)),
    }


def scaler_statistics(encoder, tracks) -> tuple:
    """Open-Unmix's ``get_statistics``: per-bin mean and std of the channel-averaged magnitude over
    every frame of every whole training mixture (unaugmented), as sklearn's StandardScaler fits them
    (population std, a constant bin's std set to 1), the std floored at 1e-4 of its maximum."""
    import numpy as np
    import torch

    total = total_sq = None
    count = 0
    with torch.no_grad():
        for track in tracks:
            mixture = torch.from_numpy(np.ascontiguousarray(track.audio.sum(0)))[None]  # (1, channels, samples)
            frames = encoder(mixture).mean(1)[0].T.double()  # (frames, bins)
            total = frames.sum(0) if total is None else total + frames.sum(0)
            total_sq = frames.square().sum(0) if total_sq is None else total_sq + frames.square().sum(0)
            count += frames.shape[0]
    mean = (total / count).numpy()
    scale = np.sqrt(np.maximum((total_sq / count).numpy() - mean**2, 0.0))
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, np.maximum(scale, 1e-4 * np.max(scale))


def peer_separator(models: dict, sample_rate: int, n_fft: int, hop_length: int):
    """A sepnet :class:`~sepnet.inference.separator.Separator` around Open-Unmix's target models, for sepnet's
    overlap-add runner, Wiener filter and scoring: model input is the linear magnitude of sepnet's centred
    STFT with all ``n_fft // 2 + 1`` bins, and each model's magnitude estimate becomes the ratio mask
    ``estimate / |mixture|`` (Open-Unmix multiplies its output by the mixture magnitude, so the mask is
    its output before that product), which the Separator applies to the complex mixture."""
    import torch
    from torch import nn

    from sepnet.dsp.frontend import SpectralFrontEnd
    from sepnet.inference.separator import Separator
    from sepnet.models import SeparationModel

    class MagnitudeFrontEnd(SpectralFrontEnd):
        def forward(self, waveform, kind="log_magnitude"):
            """(batch, channels, samples) -> (magnitude, complex STFT), each (batch, channels, bins, frames)."""
            spec = self.stft(waveform)
            return spec.abs(), spec

    class OpenUnmixMasks(SeparationModel):
        def __init__(self):
            super().__init__()
            self.targets = nn.ModuleDict(models)
            self.target_stems = list(models)
            self.n_bins, self.audio_channels = n_fft // 2 + 1, 2

        def forward(self, magnitude):
            """(batch, channels, bins, frames) magnitude -> (batch, stems, channels, bins, frames) ratio masks."""
            estimates = torch.stack([m(magnitude) for m in self.targets.values()], 1)
            return estimates / magnitude[:, None].clamp_min(torch.finfo(magnitude.dtype).tiny)

    front_end = MagnitudeFrontEnd(sample_rate, n_fft, hop_length, n_fft // 2 + 1)
    return Separator(front_end, OpenUnmixMasks())


def peer_data(spec: dict):
    """``(cfg, datamodule)`` for a peer row: its composed train config (its augmentation) and sepnet's data
    module set up for training, after seeding torch with the budget's seed."""
    import torch
    from hydra.utils import instantiate

    cfg = compose_train(spec["overrides"], Path(spec["out"]))
    torch.manual_seed(spec["budget"]["seed"])
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return cfg, datamodule


def train_peer(spec: dict) -> dict:
    """Train Open-Unmix, one model per target, with its own recipe on sepnet's batches (module docstring)."""
    import torch
    from umx import openunmix

    umx = openunmix()
    settings = spec["peer"]
    cfg, datamodule = peer_data(spec)
    # Its own STFT where the config gives one (at 44.1 kHz: n_fft 4096, hop 1024), else sepnet's front end's.
    rate = datamodule.sample_rate
    n_fft, hop = int(settings.get("n_fft") or cfg.frontend.n_fft), int(settings.get("hop_length") or cfg.frontend.hop_length)
    stft, _ = umx.transforms.make_filterbanks(n_fft=n_fft, n_hop=hop, sample_rate=rate)  # center=False, as train.py
    encoder = torch.nn.Sequential(stft, umx.model.ComplexNorm(mono=False))
    mean, std = scaler_statistics(encoder, datamodule.tracks["train"])
    max_bin = int(umx.utils.bandwidth_to_max_bin(rate, n_fft, settings["bandwidth"]))
    targets = list(datamodule.target_stems)
    models = {
        stem: umx.model.OpenUnmix(
            nb_bins=n_fft // 2 + 1, nb_channels=2, hidden_size=settings["hidden_size"], nb_layers=settings["nb_layers"],
            input_mean=mean, input_scale=std, max_bin=max_bin,
        )
        for stem in targets
    }
    optimizers = {
        stem: torch.optim.Adam(m.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
        for stem, m in models.items()
    }
    index = {stem: datamodule.stems.index(stem) for stem in targets}
    for m in models.values():
        m.train()
    steps = 0
    start = time.perf_counter()
    for batch in datamodule.train_dataloader():
        X = encoder(batch["mixture"])  # (batch, channels, bins, frames) magnitude
        for stem, model in models.items():
            optimizers[stem].zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), encoder(batch["stems"][:, index[stem]].contiguous()))
            loss.backward()
            optimizers[stem].step()
        steps += 1
    train_seconds = time.perf_counter() - start
    separator = peer_separator(models, rate, n_fft, hop)
    return {
        "params": sum(p.numel() for p in separator.model.parameters()),
        "steps": steps,
        "train_seconds": train_seconds,
        "scores": score_test(sepnet_runners(separator), targets, datamodule),
    }


class DemucsRunner:
    """demucs' own chunked inference (``apply_model``: overlapping segments of the training length,
    overlap 0.25, no random shifts) with sepnet's runner interface."""

    def __init__(self, model, apply_model):
        self.model, self.apply_model = model.eval(), apply_model

    def separate(self, mixture):
        """(channels, samples) -> (stems, channels, samples)."""
        import numpy as np
        import torch

        with torch.no_grad():
            mix = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))[None]
            return self.apply_model(self.model, mix, shifts=0, split=True, overlap=0.25)[0].numpy()


def train_htdemucs(spec: dict) -> dict:
    """Train HTDemucs with its own recipe (demucs' conf/config.yaml: the model's defaults, Adam lr 3e-4,
    L1 on the waveforms, fp32) on sepnet's batches, for ``spec["seconds"]`` of training loop."""
    import torch
    from demucs_peer import htdemucs

    HTDemucs, apply_model = htdemucs()
    settings, budget = spec["htdemucs"], spec["budget"]
    _, datamodule = peer_data(spec)
    targets = list(datamodule.target_stems)
    index = [datamodule.stems.index(stem) for stem in targets]
    # segment: the training length, which its transformer's positions and apply_model's chunks follow
    model = HTDemucs(sources=targets, audio_channels=2, samplerate=datamodule.sample_rate, segment=budget["chunk_seconds"])
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"], betas=(0.9, 0.999))
    model.train()
    steps, epoch = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < spec["seconds"]:
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.l1_loss(model(batch["mixture"]), batch["stems"][:, index])
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - start >= spec["seconds"]:
                break
        epoch += 1
    train_seconds = time.perf_counter() - start
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "train_seconds": train_seconds,
        "scores": score_test({"plain": DemucsRunner(model, apply_model)}, targets, datamodule),
    }


# -- the parent: rows, table, README -----------------------------------------------------------


def row_overrides(config: dict, args: argparse.Namespace, name: str, extra: list[str]) -> list[str]:
    """The Hydra overrides of one row: data, common, the row's own, the command line's, then the budget (wins)."""
    budget = config["budget"]
    data = ["data=stem_folder", f"data.source.root={args.data}"] if args.data else []
    if args.data and not (args.data / "valid").is_dir():
        # MUSDB18-HQ has train/ and test/ only. sepnet's one validation pass (one epoch: it selects
        # nothing, best.ckpt is the last) then reads test; the peer never validates.
        data.append("data.source.splits={train:train,valid:test,test:test}")
    same = [f"seed={budget['seed']}", f"data.batch_size={budget['batch']}", f"data.chunk_seconds={budget['chunk_seconds']}",
            f"data.examples_per_epoch={budget['steps'] * budget['batch']}"]
    common = yaml_overrides(config.get("common") or [])
    if name in PEERS:  # a peer reads sepnet's data with its own augmentation and trains with its own loop
        return [*data, *common, *yaml_overrides(config[PEERS[name]].get("data") or []), *extra, *same]
    steps = ["trainer.max_epochs=1", f"trainer.max_steps={budget['steps']}"]
    return [*data, *common, *yaml_overrides(config["runs"][name]), *extra, *same, *steps]


def run_row(name: str, spec: dict, out: Path) -> dict:
    """Run one row in a fresh process; returns its result with ``seconds`` (the whole process)."""
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    print(f"[{name}] {' '.join(spec['overrides'])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--row", str(spec_file)], cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)},
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-5000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"[{name}] failed with exit status {result.returncode}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row.update(name=name, seconds=seconds)
    (out / "result.json").write_text(json.dumps(row, indent=2))
    s = row["scores"]
    wiener = f", with Wiener {s['wiener']['mean']:.2f} dB" if s["wiener"] else ""
    print(f"[{name}] SDR {s['plain']['mean']:.2f} dB{wiener}; {row['steps']} steps, "
          f"{row['steps'] * spec['budget']['batch'] / row['train_seconds']:.2f} examples/s; {seconds / 60:.1f} min", flush=True)
    return row


def table(rows: list[dict], budget: dict, data: str, sample_rate: int) -> str:
    stems = [k for k in rows[0]["scores"]["plain"] if k != "mean"]
    examples = budget["steps"] * budget["batch"]
    lines = [
        (
            f"Budget (every row but htdemucs): {budget['steps']} optimiser steps x batch {budget['batch']} x "
            f"{budget['chunk_seconds']:g} s stereo chunks at {sample_rate / 1000:g} kHz ({examples} examples), seed "
            f"{budget['seed']}; data: {data}. SDR: BSSEval v4 (sepnet.evaluation.bsseval) at {sample_rate / 1000:g} kHz, "
            f"median over 1 s frames, median over the {rows[0]['scores']['tracks']} test tracks, dB; `+W`: one "
            "multichannel Wiener iteration (sepnet.dsp.wiener) on both sides."
        ),
        "",
        "| run | params | " + " | ".join(stems) + " | mean | " + " | ".join(f"{s} +W" for s in stems)
        + " | mean +W | steps | train s | examples/s | minutes |",
        "|---|" + "---:|" * (2 * len(stems) + 7),
    ]
    for r in rows:
        plain, wiener = r["scores"]["plain"], r["scores"]["wiener"]
        cells = [f"{plain[s]:.2f}" for s in [*stems, "mean"]]
        cells += [f"{wiener[s]:.2f}" for s in [*stems, "mean"]] if wiener else ["-"] * (len(stems) + 1)
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.2f}M | " + " | ".join(cells) + f" | {r['steps']}"
            + f" | {r['train_seconds']:.1f} | {r['steps'] * budget['batch'] / r['train_seconds']:.2f} | {r['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-rate", type=int, choices=sorted(CONFIGS), default=22050,
                        help="22050: peer.yaml (sepnet's default front end); 44100: peer_fullband.yaml (full band, "
                        "Open-Unmix at its own STFT, HTDemucs at equal wall-clock)")
    parser.add_argument("--config", type=Path, help="a config of one's own (default: the --sample-rate's)")
    parser.add_argument("--runs", nargs="+", help=f"rows: {', '.join(PEERS)} and/or names from the config's runs (default: all)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the config's budget)")
    parser.add_argument("--batch", type=int, help="batch size")
    parser.add_argument("--chunk-seconds", type=float, help="seconds per training example")
    parser.add_argument("--seed", type=int, help="seed of every row")
    parser.add_argument("--data", type=Path, help="a MUSDB18-HQ-layout folder (default: the embedded dataset)")
    parser.add_argument("--peer-hidden", type=int, help="Open-Unmix's hidden size (default: the config's, 512)")
    parser.add_argument("--htdemucs-seconds", type=float,
                        help="HTDemucs's training seconds (default: the train seconds of the config's htdemucs.wall_clock_of row)")
    parser.add_argument("--out", type=Path, help="where each row's run and result.json go (default: outputs/peer[_44100])")
    parser.add_argument("--write", action="store_true", help="also write the table into benchmarks/README.md")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every row, e.g. data.source.duration=4.0")
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)  # internal: run one row's spec
    args = parser.parse_args()
    if args.row:
        spec = json.loads(args.row.read_text())
        train = {PEER: train_peer, HTDEMUCS: train_htdemucs}.get(spec["name"], train_sepnet)
        print(json.dumps(train(spec)))
        return

    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()  # once, here: every row's process inherits the same OpenMP wait policy
    config_file, markers = CONFIGS[args.sample_rate]
    config = yaml.safe_load((args.config or config_file).read_text())
    sample_rate = config.get("sample_rate", 22050)
    if sample_rate != args.sample_rate and args.config is None:
        raise SystemExit(f"{config_file} is written for {sample_rate} Hz, not --sample-rate {args.sample_rate}")
    out = args.out or ROOT / "outputs" / ("peer" if sample_rate == 22050 else f"peer_{sample_rate}")
    budget = config["budget"]
    for key, value in (("steps", args.steps), ("batch", args.batch), ("chunk_seconds", args.chunk_seconds), ("seed", args.seed)):
        if value is not None:
            budget[key] = value
    if args.peer_hidden is not None:
        config["peer"]["hidden_size"] = args.peer_hidden
    available = [name for name in PEERS if PEERS[name] in config] + list(config["runs"])
    names = args.runs or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SystemExit(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    if HTDEMUCS in names:  # last: its budget is another row's wall-clock time
        names = [n for n in names if n != HTDEMUCS] + [HTDEMUCS]
        paced_by = config[PEERS[HTDEMUCS]]["wall_clock_of"]
        if args.htdemucs_seconds is None and paced_by not in names:
            raise SystemExit(f"htdemucs trains for {paced_by}'s wall-clock time: add {paced_by} to --runs, "
                             "or give --htdemucs-seconds")
    rows = []
    for name in names:
        spec = {"name": name, "overrides": row_overrides(config, args, name, args.overrides), "budget": budget,
                "peer": config.get("peer"), "htdemucs": config.get(PEERS[HTDEMUCS]),
                "out": str(out / re.sub(r"[^A-Za-z0-9_.-]", "_", name))}
        if name == HTDEMUCS:
            spec["seconds"] = args.htdemucs_seconds or next(r["train_seconds"] for r in rows if r["name"] == paced_by)
        rows.append(run_row(name, spec, Path(spec["out"])))
        if name != HTDEMUCS and rows[-1]["steps"] != budget["steps"]:
            raise SystemExit(f"[{name}] took {rows[-1]['steps']} optimiser steps, not the budget's {budget['steps']}")
    text = table(rows, budget, str(args.data) if args.data else "the embedded dataset (conf/data/synthetic.yaml)", sample_rate)
    if HTDEMUCS in names:
        pace = f"{args.htdemucs_seconds:g} s" if args.htdemucs_seconds else f"{paced_by}'s training time (equal wall-clock)"
        text += (f"\n\nhtdemucs trained for {pace}, not for the budget's steps: its step is several times slower on a "
                 "CPU; its output is a waveform, so it has no `+W` column.")
    print(text)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (timings are this machine's, now)")
    if args.write:
        write_readme(text, *markers)
        print(f"table written to {README}")


if __name__ == "__main__":
    main()
