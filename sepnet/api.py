"""The Python API: load a checkpoint once, separate arrays or tensors at any sample rate.

    import sepnet

    model = sepnet.load("outputs/.../checkpoints/best.ckpt")  # once: reads and checks the file
    stems = model.separate(audio, rate=44100)                 # {"bass": ..., "drums": ..., ...}

As Open-Unmix's ``openunmix.predict.separate(audio, rate)``: ``audio`` is a NumPy array or
a torch tensor, ``(channels, samples)`` or ``(samples,)`` mono, at any sample rate; it is
resampled (soxr, as :mod:`sepnet.audio` reads files) to the rate the checkpoint's front end
was trained at (``model.sample_rate``, read from the file, never assumed), separated by the
one inference path (:func:`~sepnet.inference.overlap_add.build_runner`: overlapping chunks,
the inference knobs of ``conf/inference/default.yaml``) and resampled back, so every stem
has the input's rate, length, channel count and type. Mono is separated as two identical
channels (what ``separate`` does with a mono file) and returned as the channels' mean.

The lower-level :class:`~sepnet.inference.separator.Separator` (``sepnet.checkpoints.checkpoint.load(path).separator``)
takes waveforms at the model's own rate only and resamples nothing.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sepnet.app.configs import CONFIG_DIR
from sepnet.audio.io import resample
from sepnet.checkpoints.checkpoint import LoadedCheckpoint
from sepnet.checkpoints.checkpoint import load as load_checkpoint
from sepnet.errors import SepnetError
from sepnet.inference.overlap_add import build_runner, nonfinite_stem

__all__ = ["Model", "inference_defaults", "load"]

KNOBS_PREFIX = "separate"
"""How the knobs are named in a refusal: ``separate.mask_scale=-1.0 is not valid; ...``."""


@cache
def inference_defaults() -> dict[str, Any]:
    """The inference knobs' defaults, from ``conf/inference/default.yaml`` (the one place they are written)."""
    from omegaconf import OmegaConf

    return dict(OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "inference" / "default.yaml")))


def load(path: str | Path) -> Model:
    """Read the checkpoint at ``path`` once (checked as every sepnet command checks it) -> a :class:`Model`.

    Raises:
        SepnetError: one line naming the file and the fix (missing, not a checkpoint, refused...).
    """
    return Model(load_checkpoint(path))


class Model:
    """A loaded checkpoint that separates audio at any sample rate (see the module docstring).

    Attributes:
        sample_rate: the rate the model runs at, Hz (its front end's, from the checkpoint).
        stems: the stems :meth:`separate` returns, in the model's order.
        path: the checkpoint file.
        config: the run's resolved config, as plain data (``model.config.model.hidden_size``).
        metrics: validation metrics when the checkpoint was saved (``val/sdr``, ...).
    """

    def __init__(self, checkpoint: LoadedCheckpoint):
        self.checkpoint = checkpoint
        self.path = checkpoint.path
        self.config = checkpoint.config
        self.metrics = checkpoint.metrics
        self.separator = checkpoint.separator
        self.sample_rate = int(self.separator.front_end.sample_rate)
        self.stems = list(self.separator.target_stems)
        self.channels = int(self.separator.model.audio_channels)

    def __repr__(self) -> str:
        return f"sepnet.Model('{self.path}', sample_rate={self.sample_rate}, stems={self.stems})"

    def separate(
        self, audio: np.ndarray | torch.Tensor, rate: int, *, device: str | torch.device = "auto", **knobs: Any
    ) -> dict[str, np.ndarray | torch.Tensor]:
        """Separate ``audio`` at sample rate ``rate`` into ``{stem: estimate}``.

        Args:
            audio: ``(channels, samples)`` or ``(samples,)`` mono, NumPy array or torch tensor (any
                device, any float or integer dtype read as it is: audio is expected in [-1, 1]);
                ``channels`` is 1 or the model's (2).
            rate: ``audio``'s sample rate, Hz; resampled to :attr:`sample_rate` and back.
            device: where the model runs: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``...
            **knobs: the inference knobs of ``conf/inference/default.yaml`` and their defaults:
                ``mask_scale``, ``mask_clip``, ``threshold``, ``wiener_iters``, ``precision``
                (``"fp32"`` or ``"bf16"``), ``chunk_seconds``, ``overlap``, ``batch_size``.

        Returns:
            ``{stem: estimate}`` for every stem of :attr:`stems`, each the shape of ``audio``, at
            ``rate``; float32 NumPy arrays for a NumPy input, float32 tensors on ``audio``'s device
            for a tensor.

        Raises:
            SepnetError: one line naming the argument and the fix (a shape, a rate, a knob).
        """
        unknown = sorted(set(knobs) - set(inference_defaults()) - {"precision"})
        if unknown:
            raise SepnetError(
                f"Model.separate() has no knob {', '.join(unknown)}; the knobs are "
                f"{', '.join([*sorted(set(inference_defaults()) - {'device'}), 'precision'])} (and device=)"
            )
        rate = _sample_rate(rate)
        mixture, as_input = self._mixture(audio)
        runner = build_runner(self.separator, {**inference_defaults(), **knobs, "device": device}, KNOBS_PREFIX)
        at_model = resample(mixture, rate, self.sample_rate)
        estimates = runner.separate(at_model)  # (stems, channels, samples at the model's rate)
        broken = nonfinite_stem(estimates)
        if broken is not None:
            raise SepnetError(
                f"checkpoint '{self.path}' gave NaN or inf estimates of {self.stems[broken]} for finite input: "
                f"its weights or the knobs are broken; use another checkpoint or the default knobs"
            )
        samples = mixture.shape[-1]
        back = resample(estimates.reshape(-1, estimates.shape[-1]), self.sample_rate, rate)[:, :samples]
        if back.shape[-1] < samples:  # a resampling round trip can come out a sample or two short
            back = np.pad(back, ((0, 0), (0, samples - back.shape[-1])))
        back = back.reshape(len(self.stems), self.channels, samples)
        return {stem: as_input(estimate) for stem, estimate in zip(self.stems, back)}

    def _mixture(self, audio: Any) -> tuple[np.ndarray, Any]:
        """``audio`` as finite float32 ``(model channels, samples)``, and the function that turns one stem's
        ``(model channels, samples)`` estimate back into ``audio``'s shape and type."""
        tensor = isinstance(audio, torch.Tensor)
        device = audio.device if tensor else None
        array = audio.detach().float().cpu().numpy() if tensor else np.asarray(audio, dtype=np.float32)
        shape = tuple(array.shape)
        mono = array.ndim == 1
        if mono:
            array = array[None]
        if array.ndim != 2 or array.shape[0] not in (1, self.channels) or array.shape[1] == 0:
            raise SepnetError(
                f"audio of shape {shape} cannot be separated; pass (channels, samples) with 1 or {self.channels} "
                f"channels, or (samples,) mono, with at least one sample"
            )
        if not np.isfinite(array).all():
            raise SepnetError("audio holds NaN or inf samples; pass finite audio (expected in [-1, 1])")
        channels = array.shape[0]
        mixture = np.ascontiguousarray(np.repeat(array, self.channels, axis=0) if channels == 1 else array)

        def as_input(estimate: np.ndarray) -> np.ndarray | torch.Tensor:
            out = estimate.mean(axis=0, keepdims=True) if channels == 1 else estimate
            out = np.ascontiguousarray(out.reshape(shape), dtype=np.float32)
            return torch.from_numpy(out).to(device) if tensor else out
        return mixture, as_input


def _sample_rate(rate: Any) -> int:
    """``rate`` as a positive whole number of Hz (``44100``, ``44100.0``, ``np.int64(44100)``); else one line."""
    whole = isinstance(rate, (int, np.integer)) or (isinstance(rate, float) and rate.is_integer())
    if isinstance(rate, bool) or not whole or rate <= 0:
        raise SepnetError(f"rate={rate!r} is not a sample rate; pass the audio's rate in Hz, e.g. rate=44100")
    return int(rate)
