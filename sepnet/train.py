"""``python -m sepnet.train [overrides]``: train a separator as the composed config says.

    python -m sepnet.train                                  # standard CRNN, embedded data
    python -m sepnet.train model=large optim.lr=1e-4
    python -m sepnet.train -m optim.lr=1e-3,1e-4            # a sweep, one run dir per job
    python -m sepnet.train model=unet_crnn_mtl loss=focal optim=adamw sched=cosine
    python -m sepnet.train model=large init.pretrained=parent.ckpt freeze=encoder_lstm optim.lr=1e-5

Writes into the run dir (``outputs/<run_name>/<time>/``): the resolved config,
``checkpoints/best.ckpt`` (highest ``val/sdr``) and ``last.ckpt``, ``metrics.csv``
and ``summary.json``; prints the best ``val/sdr`` beside the uniform-mask
baseline. ``main`` returns the best ``val/sdr`` so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from sepnet.checkpoint import build_separator, read_checkpoint
from sepnet.config import CONFIG_DIR, check_group_choices
from sepnet.dashboards import ValidationMedia, finish_loggers
from sepnet.errors import exit_on_user_error
from sepnet.lineage import init_lineage
from sepnet.metrics import chunk_sdr
from sepnet.overfitting import OverfittingMonitor
from sepnet.run_dir import ensure_writable
from sepnet.separation_module import CHECKPOINT_KEY, SeparationModule

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> SeparationModule:
    """The LightningModule for a composed run config: the ``module`` group's class (chosen by the model),
    fresh weights or its parent's (``init.from_run`` / ``init.pretrained``), ``freeze.modules`` frozen."""
    sched = cfg.sched
    separator = build_separator(cfg)
    lineage = init_lineage(separator, cfg)
    module_class = instantiate(cfg.module)
    return module_class(
        separator=separator,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim),
        data_stems=list(cfg.data.stems),
        scheduler=instantiate(sched.scheduler) if sched.scheduler is not None else None,
        scheduler_monitor=sched.monitor,
        scheduler_interval=sched.interval,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        lineage=lineage,
        freeze=list(cfg.freeze.modules),
    )


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(node) for node in (cfg.get("logger") or {}).values()]


@torch.no_grad()
def uniform_mask_sdr(datamodule, target_stems: list[str]) -> dict[str, float]:
    """Validation SDR of the trivial estimate mixture / number of stems, per target stem."""
    index = [datamodule.stems.index(s) for s in target_stems]
    scores = []
    for batch in datamodule.val_dataloader():
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
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if summary["best_val_sdr"] is None:
        print("no validation ran: no best checkpoint", flush=True)
        return summary
    stems = "  ".join(f"{k} {v:.2f}" for k, v in summary["val_sdr_per_stem"].items())
    print(
        f"best val/sdr {summary['best_val_sdr']:.2f} dB (epoch {epoch}) | {stems} | "
        f"uniform-mask baseline {summary['uniform_mask_sdr']:.2f} dB",
        flush=True,
    )
    print(f"checkpoint: {best_path}", flush=True)
    return summary


def run_training(cfg: DictConfig) -> tuple[SeparationModule, dict]:
    """Train the run ``cfg`` describes; returns the trained module and the run's summary."""
    output_dir = ensure_writable(Path(cfg.paths.output_dir))
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
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
    callbacks = [checkpoint, OverfittingMonitor()]
    if loggers:
        callbacks += [LearningRateMonitor(logging_interval="epoch"), ValidationMedia()]
        for logger in loggers:
            logger.log_hyperparams(module.run_config)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=output_dir)
    try:
        trainer.fit(module, datamodule=datamodule)
        baseline = uniform_mask_sdr(datamodule, module.target_stems)
        summary = summarise(output_dir, checkpoint, baseline)
    except BaseException:
        finish_loggers(loggers, exit_code=1)
        raise
    finish_loggers(loggers)  # each job of a multirun ends its own wandb run
    return module, summary


@exit_on_user_error
def train(cfg: DictConfig) -> float | None:
    """Train the run ``cfg`` describes; returns its best ``val/sdr`` (None if validation never ran)."""
    return run_training(cfg)[1]["best_val_sdr"]


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    main()
