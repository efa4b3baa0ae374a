"""The training job behind ``python -m sepnet.train``: the module, loggers and Trainer a run config
describes, the fit itself (resume, graceful stop, out-of-memory message) and the run's summary.

A library module so that tests, benchmarks and sweeps run training in-process;
``sepnet.train`` is the command-line entry point around :func:`run_training`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from omegaconf import DictConfig, OmegaConf

from sepnet.app.extras import require
from sepnet.app.run_dir import claim, ensure_writable, is_main_process, release
from sepnet.atomic import write_text
from sepnet.checkpoints.checkpoint import build_separator, read_checkpoint
from sepnet.checkpoints.lightning_io import AtomicCheckpointIO
from sepnet.checkpoints.parents import init_lineage
from sepnet.checkpoints.resume import resume_point
from sepnet.errors import SepnetError
from sepnet.evaluation.metrics import chunk_sdr
from sepnet.numbers import is_count, is_positive, is_real
from sepnet.training.faults import GracefulStop, NonFiniteGuard, out_of_memory_error
from sepnet.training.loggers import ValidationMedia, finish_loggers
from sepnet.training.module import CHECKPOINT_KEY, Freeze, SeparationModule
from sepnet.training.overfitting import OverfittingMonitor
from sepnet.training.quiet import ParameterSummary, progress_bar, silence_lightning_noise
from sepnet.training.resuming import StepSeed, keep_previous_metrics
from sepnet.training.schedules import Schedule

__all__ = ["build_loggers", "build_module", "build_trainer", "run_training"]

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, lineage: dict | None = None) -> SeparationModule:
    """The LightningModule for a composed run config: the ``module`` group's class (chosen by the model),
    fresh weights or its parent's (``init.from_run`` / ``init.pretrained``), ``freeze.modules`` frozen.

    ``lineage`` given (a resumed run's, from its checkpoint): the parent is not loaded, the weights come
    from that checkpoint."""
    sched = cfg.sched
    separator = build_separator(cfg)
    if lineage is None:
        lineage = init_lineage(separator, cfg)
    module_class = instantiate(cfg.module)
    return module_class(
        separator=separator,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim),
        stems=list(cfg.data.stems),
        sched=Schedule(
            scheduler=instantiate(sched.scheduler) if sched.scheduler is not None else None,
            monitor=sched.monitor,
            interval=sched.interval,
        ),
        run_config=OmegaConf.to_container(cfg, resolve=True),
        lineage=lineage,
        freeze=Freeze(modules=list(cfg.freeze.modules)),
    )


def build_loggers(cfg: DictConfig) -> list:
    loggers = cfg.get("logger") or {}
    for name in loggers:  # the key is the logger=<option> that chose it
        require(f"logger={name}")
    return [instantiate(node) for node in loggers.values()]


@torch.no_grad()
def uniform_mask_sdr(datamodule, target_stems: list[str]) -> dict[str, float]:
    """Validation SDR of the trivial estimate mixture / number of stems, per target stem."""
    index = [datamodule.stems.index(s) for s in target_stems]
    scores = []
    for batch in datamodule.val_dataloader(sharded=False):
        estimate = batch["mixture"][:, None] / len(datamodule.stems)
        scores.append(chunk_sdr(batch["stems"][:, index], estimate.expand(-1, len(index), -1, -1)))
    per_stem = torch.cat(scores).mean(0)
    return {stem: float(v) for stem, v in zip(target_stems, per_stem)}


def summarise(output_dir: Path, checkpoint: ModelCheckpoint, baseline: dict[str, float]) -> dict:
    """Write ``summary.json`` and print the results lines; returns the summary."""
    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    metrics, epoch = {}, None
    if best_path is not None and best_path.is_file():
        info = read_checkpoint(best_path)[CHECKPOINT_KEY]
        metrics, epoch = info["metrics"], info["epoch"]
    summary = {
        "best_val_sdr": metrics.get("val/sdr"),
        "best_epoch": epoch,
        "val_sdr_per_stem": {k.removeprefix("val/sdr_"): v for k, v in metrics.items() if k.startswith("val/sdr_")},
        "uniform_mask_sdr": sum(baseline.values()) / len(baseline),
        "uniform_mask_sdr_per_stem": baseline,
        "best_checkpoint": str(best_path) if best_path else None,
        "last_checkpoint": checkpoint.last_model_path or None,
    }
    if "val/beat_f1" in metrics:  # a multi-task model: its rhythm head's mir_eval F-measure at the best epoch
        summary["best_val_beat_f1"] = metrics["val/beat_f1"]
    write_text(output_dir / "summary.json", json.dumps(summary, indent=2))
    if summary["best_val_sdr"] is None:
        print("no validation ran: no best checkpoint", flush=True)
        return summary
    stems = "  ".join(f"{k} {v:.2f}" for k, v in summary["val_sdr_per_stem"].items())
    print(
        f"best val/sdr {summary['best_val_sdr']:.2f} dB (epoch {epoch}) | {stems} | "
        f"uniform-mask baseline {summary['uniform_mask_sdr']:.2f} dB"
        + (f" | val/beat_f1 {summary['best_val_beat_f1']:.3f}" if "best_val_beat_f1" in summary else ""),
        flush=True,
    )
    print(f"checkpoint: {best_path}", flush=True)
    return summary


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, output_dir: Path) -> L.Trainer:
    """The configured Trainer with sepnet's fixed parts: atomic, safely loaded checkpoints, and data
    sharded by the data module itself (explicit and deterministic under DDP); Lightning's noise left out
    (:mod:`sepnet.training.quiet`). A setting Lightning refuses (``trainer=gpu`` without a GPU) is one line."""
    silence_lightning_noise()
    trainer_cfg = cfg.trainer
    callbacks = list(callbacks)
    if trainer_cfg.get("enable_progress_bar", True):
        callbacks.append(progress_bar())
    if trainer_cfg.get("enable_model_summary", True):
        callbacks.append(ParameterSummary())
    check_accelerator(trainer_cfg)
    try:
        return instantiate(
            trainer_cfg,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=output_dir,
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,
        )
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            reason = " ".join(str(cause).split())
            raise SepnetError(f"Lightning refuses the trainer settings: {reason}; fix the trainer.* setting it names, or pick another trainer= option (cpu, gpu, ddp, ddp_cpu)") from None
        raise


def check_accelerator(trainer_cfg) -> None:
    """Refuse in one line a GPU trainer (``trainer=gpu``, ``trainer=ddp``) on a machine without a usable GPU."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator not in ("gpu", "cuda"):
        return
    if torch.cuda.is_available() or (accelerator == "gpu" and torch.backends.mps.is_available()):
        return
    raise SepnetError(
        f"trainer.accelerator={accelerator} but this machine has no usable GPU (torch.cuda.is_available() is "
        f"False); train on the CPU with trainer=cpu (or trainer=ddp_cpu), or run on a machine with a GPU"
    )


def run_training(cfg: DictConfig) -> tuple[SeparationModule, dict]:
    """Train the run ``cfg`` describes; returns the trained module and the run's summary.

    Under DDP every rank runs this; only rank 0 writes the config, checkpoints,
    logs and summary (the summary of other ranks is empty).
    """
    check_settings(cfg)
    point = resume_point(cfg, Path(cfg.paths.output_dir))
    if point.run_dir != Path(cfg.paths.output_dir):
        log.info("resuming %s: writing into its run dir %s", point.checkpoint, point.run_dir)
        cfg.paths.output_dir = str(point.run_dir)
    if point.changed:
        print(f"resuming {point.checkpoint} with {', '.join(point.changed)}", flush=True)
    output_dir = Path(cfg.paths.output_dir)
    claimed = False  # this run's folder is its own (a DDP rank > 0 writes into rank 0's)
    if is_main_process():
        claimed = claim(output_dir, "hydra.run.dir")
    else:
        ensure_writable(output_dir)
    try:
        return _train(cfg, point, output_dir)
    finally:
        if claimed:  # a job of an in-process sweep: the next job may not need it, but nobody else may take it early
            release(output_dir)


def check_settings(cfg: DictConfig) -> None:
    """Refuse, in one line naming the key and the fix, a setting Lightning or the optimiser would reject with a
    traceback (the ``data.`` sizes are the data module's to check)."""
    optim = cfg.get("optim") or {}
    if "lr" in optim and not is_positive(optim.lr):
        raise SepnetError(f"optim.lr={optim.lr!r} is not valid; set it to a number > 0, e.g. optim.lr=1e-3")
    if optim.get("weight_decay") is not None and not (is_real(optim.weight_decay) and optim.weight_decay >= 0):
        raise SepnetError(
            f"optim.weight_decay={optim.weight_decay!r} is not valid; set it to a number >= 0, e.g. optim.weight_decay=0"
        )
    trainer = cfg.get("trainer") or {}
    for key, example in (("max_epochs", 6), ("max_steps", -1)):
        value = trainer.get(key)
        if value is not None and not is_count(value, -1):
            raise SepnetError(
                f"trainer.{key}={value!r} is not valid; set it to a whole number >= 0 (or -1 for no limit), "
                f"e.g. trainer.{key}={example}"
            )


def _train(cfg: DictConfig, point, output_dir: Path) -> tuple[SeparationModule, dict]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    module = build_module(cfg, lineage=point.lineage)
    if cfg.get("compile"):
        module.separator.model.compile()  # in place: state_dict keys (and checkpoints) stay the same
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor="val/sdr",
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    loggers = build_loggers(cfg)
    last = output_dir / "checkpoints" / "last.ckpt"
    stop = GracefulStop(last)
    callbacks = [checkpoint, NonFiniteGuard(last), stop, StepSeed(cfg.seed), OverfittingMonitor()]
    if loggers:
        callbacks += [LearningRateMonitor(logging_interval="epoch"), ValidationMedia()]
    trainer = build_trainer(cfg, callbacks, loggers, output_dir)
    if trainer.is_global_zero:
        config_file = output_dir / "config_resolved.yaml"
        if point.checkpoint is not None and config_file.exists():  # keep the original run's config
            config_file = output_dir / f"config_resolved.resumed-{trainer.global_step}-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
        write_text(config_file, OmegaConf.to_yaml(cfg, resolve=True))
        if point.checkpoint is not None:
            keep_previous_metrics(trainer.loggers, point.global_step)
        for logger in loggers:
            logger.log_hyperparams(module.run_config)
    try:
        fit(trainer, module, datamodule, point.checkpoint, stop, cfg)
        summary = {}
        if trainer.is_global_zero:
            summary = summarise(output_dir, checkpoint, uniform_mask_sdr(datamodule, module.target_stems))
    except BaseException:
        finish_loggers(loggers, exit_code=1)
        raise
    finish_loggers(loggers)  # each job of a multirun ends its own wandb run
    return module, summary


def fit(trainer: L.Trainer, module: SeparationModule, datamodule, ckpt_path: str | None, stop: GracefulStop, cfg) -> None:
    """``trainer.fit``, with a signal-stopped run and an out-of-memory error turned into one clear line."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        if stop.interrupted is not None:
            wait_for_other_ranks(trainer)
            raise stop.interrupted from None
        raise
    except Exception as exc:
        oom = out_of_memory_error(exc, cfg.data.batch_size, cfg.data.chunk_seconds)
        if oom is not None:
            raise oom from None
        raise


def wait_for_other_ranks(trainer: L.Trainer, timeout_s: float = 120.0) -> None:
    """Let the DDP processes this one launched finish before it exits, so its exit status is the run's last word."""
    for process in getattr(trainer.strategy.launcher, "procs", None) or []:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("DDP process %d did not exit within %g s of the stop; leaving it", process.pid, timeout_s)
