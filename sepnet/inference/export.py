"""Export a separator's mask model to ONNX or TorchScript, with its front end described in JSON.

What the formats can hold is the mask model; the STFT and iSTFT stay outside (ONNX has
no operator for them), so an exported model runs inside the caller's own STFT::

    waveform (batch, channels, samples) at front_end["sample_rate"]
      -> STFT (n_fft, hop_length, periodic Hann window, centred with reflect padding)
         keep bins 0..n_bins-1                   complex (batch, channels, n_bins, frames)
      -> the model's input, front_end["input_kind"]:
         "log_magnitude": (log1p(|X|) - bin_mean[:, None]) / bin_std[:, None]
         "complex": real parts, then imaginary parts, on the channel axis
                                                 float32 (batch, input_channels, n_bins, frames)
      -> exported file                           masks (batch, stems, channels, n_bins, frames) in [0, 1]
      -> masks x STFT (the mixture's phase), Nyquist side restored as zeros -> iSTFT -> stems

The JSON beside the file (:func:`front_end_description`) holds every number of the first
and last steps. Batch and frames are dynamic axes in both formats: any batch, any number
of frames. Recurrent stages (the CRNNs' BiLSTM, the band-split model's) export as ONNX
``LSTM`` nodes. The file is checked against sepnet on inputs of two frame counts before
:func:`export` returns; a model that cannot be exported, or whose export disagrees, is
refused in one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sepnet import __version__
from sepnet.atomic import write_bytes, write_text
from sepnet.errors import SepnetError
from sepnet.inference.separator import Separator

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
"""Export formats and the suffix each file gets."""
OPSET = 17
"""ONNX opset written (onnxruntime 1.16 and later run it)."""
TOLERANCE = 1e-4
"""Largest difference allowed between the exported model's masks and sepnet's."""
PROBE_FRAMES = (37, 64)
"""Frame counts the export is checked at: an odd one and another, so a frame count baked in is caught."""
INPUT_NAME, OUTPUT_NAME = "spectrogram", "masks"


class MaskModel(nn.Module):
    """The exportable part of a separator: the model's input ``(batch, input_channels, n_bins, frames)``
    -> masks ``(batch, stems, audio_channels, n_bins, frames)``, float32 (auxiliary heads left out)."""

    def __init__(self, separator: Separator):
        super().__init__()
        self.model = separator.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def front_end_description(separator: Separator, fmt: str, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """What a caller needs around the exported file: STFT settings, normalisation statistics, stems, shapes."""
    front_end, model = separator.front_end, separator.model
    return {
        "format": fmt,
        "sepnet_version": __version__,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "model": type(model).__name__,
        "sample_rate": int(front_end.sample_rate),
        "n_fft": int(front_end.n_fft),
        "hop_length": int(front_end.hop_length),
        "n_bins": int(front_end.n_bins),
        "window": "hann",
        "window_periodic": True,
        "center": True,
        "pad_mode": "reflect",
        "input_kind": model.input_kind,
        "mask_kind": model.mask_kind,
        "audio_channels": int(model.audio_channels),
        "input_channels": int(model.input_channels),
        "stems": list(model.target_stems),
        "bin_mean": [float(v) for v in front_end.bin_mean.detach().cpu()],
        "bin_std": [float(v) for v in front_end.bin_std.detach().cpu()],
        "input": {"name": INPUT_NAME, "shape": ["batch", int(model.input_channels), int(front_end.n_bins), "frames"]},
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(model.target_stems), int(model.audio_channels), int(front_end.n_bins), "frames"],
        },
    }


def probe_input(separator: Separator, frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A model input ``(batch, input_channels, n_bins, frames)`` from the front end of a noise mixture."""
    front_end = separator.front_end
    generator = torch.Generator().manual_seed(seed)
    channels = separator.model.audio_channels
    wave = 0.1 * torch.randn(batch, channels, (frames - 1) * front_end.hop_length, generator=generator)
    with torch.no_grad():
        model_input, _ = separator.analyse(wave.to(front_end.bin_mean.device))
    return model_input.float()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' notes (legacy exporter, tracer's constant shapes checked by the probes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _refusal(separator: Separator, fmt: str, why: str) -> SepnetError:
    text = " ".join(why.split())[:300]
    return SepnetError(
        f"{type(separator.model).__name__} cannot be exported to {fmt}: {text}; export it as "
        f"{'torchscript' if fmt == 'onnx' else 'onnx'} or separate with sepnet itself (sepnet.load(ckpt).separate)"
    )


def to_bytes(separator: Separator, fmt: str) -> bytes:
    """The exported mask model (:class:`MaskModel`, on the CPU, in eval mode) as the bytes of its file.

    Raises:
        SepnetError: one line when the exporter cannot hold the model.
    """
    if fmt not in FORMATS:
        raise SepnetError(f"format={fmt!r} is not an export format; use one of {', '.join(FORMATS)}")
    separator = separator.cpu().eval()
    wrapper = MaskModel(separator).eval()
    example = probe_input(separator, PROBE_FRAMES[-1], batch=2)
    buffer = io.BytesIO()
    try:
        with _quiet(), torch.no_grad():
            if fmt == "onnx":
                torch.onnx.export(
                    wrapper,
                    (example,),
                    buffer,
                    dynamo=False,  # the TorchScript-based exporter: no onnxscript needed, LSTMs as ONNX LSTM nodes
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch", 3: "frames"}, OUTPUT_NAME: {0: "batch", 4: "frames"}},
                )
            else:
                traced = torch.jit.trace(wrapper, (example,), check_trace=False)
                torch.jit.save(traced, buffer)
    except Exception as exc:  # noqa: BLE001 - whatever the exporter cannot hold is one line naming the model
        raise _refusal(separator, fmt, f"{type(exc).__name__}: {exc}") from None
    return buffer.getvalue()


def run_exported(data: bytes | str | Path, fmt: str, model_input: np.ndarray) -> np.ndarray:
    """Run an exported file (its bytes or path) on ``(batch, input_channels, n_bins, frames)`` float32 -> masks."""
    model_input = np.ascontiguousarray(model_input, dtype=np.float32)
    if fmt == "onnx":
        import onnx  # the export extra's
        import onnxruntime

        onnx.checker.check_model(data if isinstance(data, bytes) else str(data))  # a valid graph, before running it

        source = data if isinstance(data, bytes) else str(data)
        session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
        return session.run([OUTPUT_NAME], {INPUT_NAME: model_input})[0]
    loaded = torch.jit.load(io.BytesIO(data) if isinstance(data, bytes) else str(data), map_location="cpu")
    with torch.no_grad(), torch.jit.optimized_execution(False):  # a check: the profiling passes cost seconds
        return loaded(torch.from_numpy(model_input)).numpy()


def check_exported(separator: Separator, data: bytes, fmt: str) -> float:
    """The largest difference between the exported model's masks and sepnet's over :data:`PROBE_FRAMES`
    (and batch sizes 1 and 3); one line when it exceeds :data:`TOLERANCE` or the file does not run."""
    worst = 0.0
    for frames, batch in zip(PROBE_FRAMES, (1, 3)):
        model_input = probe_input(separator, frames, batch=batch, seed=frames)
        with torch.no_grad():
            expected = separator.model(model_input).float().numpy()
        try:
            got = run_exported(data, fmt, model_input.numpy())
        except Exception as exc:  # noqa: BLE001 - an exported file that does not run is the export's failure
            raise _refusal(separator, fmt, f"the exported file fails at {frames} frames ({type(exc).__name__}: {exc})")
        if got.shape != expected.shape:
            raise _refusal(separator, fmt, f"at {frames} frames it gives masks {got.shape}, sepnet {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= TOLERANCE:
        raise _refusal(separator, fmt, f"its masks differ from sepnet's by {worst:.3g} (more than {TOLERANCE:g})")
    return worst


def export(separator: Separator, fmt: str, out: str | Path, checkpoint: str | Path | None = None) -> tuple[Path, Path]:
    """Write the mask model to ``out`` and its front end to ``out`` with the suffix ``.json``; returns both paths.

    The file is checked against sepnet (:func:`check_exported`) before anything is written.
    """
    data = to_bytes(separator, fmt)
    check_exported(separator, data, fmt)
    out = Path(out).expanduser()
    description = out.with_suffix(".json")
    fix = "choose another out=<path>"
    write_bytes(out, data, fix=fix, label=f"export '{out}'")
    text = json.dumps(front_end_description(separator, fmt, checkpoint), indent=1) + "\n"
    write_text(description, text, fix=fix, label=f"front-end description '{description}'")
    return out, description
