"""Export (sepnet/export.py, sepnet/inference/export.py): every conf/model option at its tiny size, in ONNX
(run by onnxruntime) and TorchScript (run by torch), gives sepnet's masks and estimates within 1e-4 from
the JSON's front end alone, at dynamic batch and frame counts; a model a format cannot hold is one line."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import compose_config, tiny_size, write_fresh_checkpoint
from omegaconf import OmegaConf

from sepnet.app.configs import CONFIG_DIR
from sepnet.checkpoints.checkpoint import build_separator
from sepnet.errors import SepnetError
from sepnet.inference.export import FORMATS, TOLERANCE, export
from sepnet.inference.separator import Separator
from sepnet.models.contract import SeparationModel

MODEL_OPTIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
CANNOT_EXPORT: dict[str, str] = {"mel_roformer": "onnx"}
"""``option -> format`` of a conf/model option that a format cannot hold (each refused in one line): the
mel-band RoFormer's overlapping bands (a bin's mask averaged over the bands holding it) trace to an ONNX
graph whose masks differ from sepnet's; TorchScript holds it."""
ROOT = Path(__file__).resolve().parents[1]


def tiny_separator(option: str, tmp_path: Path, seed: int = 0) -> Separator:
    """conf/model/<option>.yaml at its tiny size, seeded weights and non-trivial normalisation statistics."""
    cfg = compose_config("train", [f"model={option}", *tiny_size([f"model={option}"])], tmp_path)
    torch.manual_seed(seed)
    separator = build_separator(cfg).eval()
    with torch.no_grad():
        separator.front_end.bin_mean.normal_(-3.0, 0.5)
        separator.front_end.bin_std.uniform_(0.5, 2.0)
    return separator


def numpy_front_end(wave: np.ndarray, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """(batch, channels, samples) -> (model input, complex STFT (batch, channels, n_bins, frames)), from the JSON only."""
    n_fft, hop, bins = spec["n_fft"], spec["hop_length"], spec["n_bins"]
    assert (spec["window"], spec["window_periodic"], spec["center"], spec["pad_mode"]) == ("hann", True, True, "reflect")
    padded = np.pad(wave.astype(np.float64), [(0, 0), (0, 0), (n_fft // 2, n_fft // 2)], mode="reflect")
    frames = 1 + (padded.shape[-1] - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    starts = hop * np.arange(frames)
    segments = padded[..., starts[:, None] + np.arange(n_fft)]  # (batch, channels, frames, n_fft)
    stft = np.fft.rfft(segments * window, axis=-1)[..., :bins].swapaxes(-1, -2)  # (batch, channels, bins, frames)
    if spec["input_kind"] == "log_magnitude":
        mean, std = np.asarray(spec["bin_mean"])[:, None], np.asarray(spec["bin_std"])[:, None]
        model_input = (np.log1p(np.abs(stft)) - mean) / std
    else:
        model_input = np.concatenate([stft.real, stft.imag], axis=1)
    return model_input.astype(np.float32), stft


def run_file(path: Path, fmt: str, model_input: np.ndarray) -> np.ndarray:
    """The exported file run by its own runtime: onnxruntime for ONNX, torch.jit for TorchScript."""
    if fmt == "onnx":
        onnx.checker.check_model(str(path), full_check=True)  # a valid ONNX graph, shapes inferred
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (name,) = [i.name for i in session.get_inputs()]
        return session.run(None, {name: model_input})[0]
    with torch.no_grad():
        return torch.jit.load(str(path)).eval()(torch.from_numpy(model_input)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_every_model_exports_and_gives_sepnets_masks_and_estimates(option, fmt, tmp_path):
    separator = tiny_separator(option, tmp_path)
    if option in CANNOT_EXPORT and CANNOT_EXPORT[option] == fmt:
        with pytest.raises(SepnetError, match=rf"^\w+ cannot be exported to {fmt}: [^\n]+$"):
            export(separator, fmt, tmp_path / f"model{FORMATS[fmt]}")
        return
    path, described = export(separator, fmt, tmp_path / f"model{FORMATS[fmt]}")
    spec = json.loads(described.read_text())
    assert described == tmp_path / "model.json" and spec["format"] == fmt
    assert spec["stems"] == separator.target_stems and spec["sample_rate"] == separator.front_end.sample_rate
    assert spec["input_kind"] == separator.model.input_kind and len(spec["bin_std"]) == spec["n_bins"]
    rng = np.random.default_rng(0)
    # Dynamic axes: batches of 1 and 3, frame counts the export never saw (20 and 49; it traced 64).
    for batch, samples in ((1, 5000), (3, 12345)):
        wave = (0.1 * rng.standard_normal((batch, 2, samples))).astype(np.float32)
        model_input, stft = numpy_front_end(wave, spec)
        with torch.no_grad():
            expected_input, spec_torch = separator.analyse(torch.from_numpy(wave))
            expected_masks = separator.model(expected_input).numpy()
            expected = torch.stack(separator.separate_chunks(list(torch.from_numpy(wave)))).numpy()
        np.testing.assert_allclose(model_input, expected_input.numpy(), atol=TOLERANCE, rtol=0)  # the JSON suffices
        masks = run_file(path, fmt, model_input)
        parts = (2,) if spec["mask_kind"] == "complex" else ()  # complex masks: real and imaginary parts last
        assert masks.shape == expected_masks.shape == (batch, len(spec["stems"]), 2, spec["n_bins"], stft.shape[-1], *parts)
        np.testing.assert_allclose(masks, expected_masks, atol=TOLERANCE, rtol=0)
        # The estimates: masks x the mixture's STFT -> iSTFT, outside the file.
        estimates = separator.apply_masks(torch.from_numpy(masks), torch.from_numpy(stft).to(spec_torch.dtype), samples)
        np.testing.assert_allclose(estimates.numpy(), expected, atol=TOLERANCE, rtol=0)


class WithSTFTInside(SeparationModel):
    """A model that runs an STFT in its forward pass, which ONNX cannot hold (as the anchors' users found)."""

    def __init__(self):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = ["vocals"], 513, 2
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        spec = torch.stft(x.reshape(-1, x.shape[-1]), 8, 2, window=torch.hann_window(8), return_complex=True)
        return torch.sigmoid(self.scale * spec.abs().mean() + x)[:, None]


class FramesBakedIn(SeparationModel):
    """A model whose forward branches on the frame count in Python: a traced export keeps one branch."""

    def __init__(self):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = ["vocals"], 513, 2
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        masks = torch.sigmoid(self.scale * x)[:, None]
        return masks if x.shape[-1] % 2 == 0 else 1 - masks


def toy_separator(model: SeparationModel) -> Separator:
    from sepnet.dsp.frontend import SpectralFrontEnd

    return Separator(SpectralFrontEnd(n_bins=513), model).eval()


@pytest.mark.parametrize(
    "model,fmt,why",
    [
        (WithSTFTInside(), "onnx", r"SymbolicValueError: STFT does not currently support complex types"),
        (FramesBakedIn(), "torchscript", r"its masks differ from sepnet's by [\d.e+-]+ \(more than 0.0001\)"),
        (FramesBakedIn(), "onnx", r"its masks differ from sepnet's by"),
    ],
)
def test_a_model_a_format_cannot_hold_is_one_line_and_writes_nothing(model, fmt, why, tmp_path):
    name = type(model).__name__
    with pytest.raises(SepnetError, match=rf"^{name} cannot be exported to {fmt}: .*{why}.*; export it as ") as refused:
        export(toy_separator(model), fmt, tmp_path / "model.out")
    assert "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def readme_export_commands() -> list[list[str]]:
    """The ``python -m sepnet.export ...`` lines of README's "Export" section, as argv (comments dropped)."""
    section = (ROOT / "README.md").read_text().split("### Export: ONNX and TorchScript", 1)[1].split("\n#", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("python -m sepnet.export")]
    return [shlex.split(line, comments=True)[2:] for line in lines]


def test_the_readme_export_commands_run_as_printed(tiny_run, tmp_path):
    ckpt = tmp_path / "outputs" / "best.ckpt"
    write_fresh_checkpoint(tiny_run(output_dir=tmp_path / "run"), ckpt, seed=3, fill_statistics=-2.0)
    commands = readme_export_commands()
    assert [c[2] for c in commands] == ["format=onnx", "format=torchscript"]
    for argv, expected in zip(commands, (tmp_path / "outputs" / "best.onnx", tmp_path / "model.pt")):
        argv = [f"ckpt={ckpt}" if a.startswith("ckpt=") else a for a in argv]  # README's placeholder path
        run = subprocess.run(
            [sys.executable, "-m", *argv], cwd=tmp_path, capture_output=True, text=True,
            timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert expected.is_file() and expected.with_suffix(".json").is_file()
        assert run.stdout.splitlines()[-2:] == [
            f"{'onnx' if expected.suffix == '.onnx' else 'torchscript'}: {expected.relative_to(tmp_path) if expected.parent == tmp_path else expected}",
            f"front end: {(expected.relative_to(tmp_path) if expected.parent == tmp_path else expected).with_suffix('.json')}",
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt", "outputs"]  # no log folder
    bad = subprocess.run(
        [sys.executable, "-m", "sepnet.export", f"ckpt={ckpt}", "format=tflite"], cwd=tmp_path, capture_output=True,
        text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].endswith(
        "format=tflite is not an export format; use format=onnx or format=torchscript"
    )


def test_conf_export_defaults():
    cfg = OmegaConf.load(Path(CONFIG_DIR) / "export.yaml")
    assert cfg.format == "onnx" and cfg.out is None
