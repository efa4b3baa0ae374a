"""What Lightning prints that says nothing about a sepnet run, left out; and its progress bar and summary without noise.

Silenced, each by its own message (every other warning still shows):

- the ``💡 Tip: ... litlogger`` advertisement Lightning logs when a Trainer is built;
- ``isinstance(treespec, LeafSpec)` is deprecated`` (Lightning's own use of a torch API);
- ``The number of training batches (n) is smaller than the logging interval``: a short run logs
  ``train/loss_epoch`` anyway, and ``sepnet.compare`` plots that;
- ``v_num: logs`` in the progress bar (the csv logger's folder name, not a version);
- the model summary's ``FLOPs`` column and ``Total FLOPs: 0`` (Lightning counts FLOPs only for a
  module with an ``example_input_array``, which sepnet's have not).
"""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks import ModelSummary, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.model_summary.model_summary import get_formatted_model_size, get_human_readable_count

NOISY_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)
NOISY_LOG_LINES = ("💡 Tip: For seamless cloud logging", "Trainer already configured with model summary callbacks")
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISY_LOG_LINES)


_FILTER = _DropTips()


def silence_lightning_noise() -> None:
    """Install the filters above (idempotent: each is added once)."""
    for message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _without_version(items: dict) -> dict:
    items.pop("v_num", None)
    return items


class QuietRichProgressBar(RichProgressBar):
    """Lightning's rich progress bar without ``v_num``."""

    def get_metrics(self, trainer, pl_module):
        return _without_version(super().get_metrics(trainer, pl_module))


class QuietTQDMProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar (no ``rich``) without ``v_num``."""

    def get_metrics(self, trainer, pl_module):
        return _without_version(super().get_metrics(trainer, pl_module))


def progress_bar():
    """The progress bar callback: rich where it is installed, else tqdm."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return QuietTQDMProgressBar()
    return QuietRichProgressBar()


class ParameterSummary(ModelSummary):
    """The model summary without the FLOPs Lightning cannot count here: layers, parameters, size."""

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops=0, **summarize_kwargs) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        widths = [max(len(name), *(len(str(v)) for v in values)) if values else len(name) for name, values in columns]
        lines = ["  ".join(name.ljust(w) for (name, _), w in zip(columns, widths))]
        for row in zip(*(values for _, values in columns)):
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
        lines.append(
            f"trainable params {get_human_readable_count(int(trainable_parameters))}, total "
            f"{get_human_readable_count(int(total_parameters))}, {get_formatted_model_size(model_size)} MB"
        )
        print("\n".join(lines), flush=True)
