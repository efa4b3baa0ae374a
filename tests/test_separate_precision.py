"""``separate.precision``: bf16 autocast around the mask model, everything else float32; bad values end in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf
import torch
from conftest import compose_config

from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.inference.separator import InferenceSettings, Separator
from sepnet.models import SeparationModel
from sepnet.separate import run_separation

STEMS = ["bass", "drums", "other", "vocals"]


def write_song(path, rate=44100, seconds=3.0):
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.1 * rng.standard_normal(t.size) * np.exp(-((t * 4) % 1) * 20)
    right = 0.2 * np.sin(2 * np.pi * 330 * t) + 0.5 * left
    sf.write(path, np.stack([left, right], 1).astype(np.float32), rate)


def separate_with(ckpt, song, out, tmp_path, precision):
    cfg = compose_config(
        "separate", [f"ckpt={ckpt}", f"input={song}", f"out={out}", f"separate.precision={precision}",
                     "separate.chunk_seconds=1.5"], tmp_path / f"run_{precision}",
    )
    return {p.stem: sf.read(p, dtype="float32")[0] for p in run_separation(cfg)}


def test_bf16_separates_end_to_end_close_to_fp32(tiny_checkpoint, tmp_path):
    song = tmp_path / "song.wav"
    write_song(song)
    fp32 = separate_with(tiny_checkpoint, song, tmp_path / "fp32", tmp_path, "fp32")
    bf16 = separate_with(tiny_checkpoint, song, tmp_path / "bf16", tmp_path, "bf16")
    assert sorted(fp32) == sorted(bf16) == STEMS
    differ = False
    for stem in STEMS:
        a, b = fp32[stem], bf16[stem]
        assert a.shape == b.shape == (3 * 44100, 2) and np.isfinite(b).all()
        snr = 10 * np.log10(np.sum(a.astype(np.float64) ** 2) / max(np.sum((a - b).astype(np.float64) ** 2), 1e-20))
        assert snr > 25.0, f"{stem}: bf16 output only {snr:.1f} dB from fp32's"
        differ |= not np.array_equal(a, b)
    assert differ  # bf16 really ran: its rounding shows in some stem


class DtypeRecorder(SeparationModel):
    """Masks of 0.5 computed by a Linear (an autocast op); records the dtype the model saw it produce."""

    def __init__(self):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = list(STEMS), 128, 2
        self.linear = torch.nn.Linear(1, 1)
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        y = self.linear(x[..., None])[..., 0]
        self.seen.append(y.dtype)
        return (y * 0 + 0.5)[:, None].expand(-1, len(STEMS), -1, -1, -1)


def test_bf16_covers_the_model_only_and_returns_float32_stems():
    model = DtypeRecorder()
    front_end = SpectralFrontEnd(sample_rate=8000, n_fft=254, hop_length=64, n_bins=128)
    mixture = torch.randn(1, 2, 4000)
    fp32 = Separator(front_end, model, InferenceSettings())(mixture)
    bf16 = Separator(front_end, model, InferenceSettings(precision="bf16"))(mixture)
    assert model.seen == [torch.float32, torch.bfloat16]
    assert fp32.dtype == bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, atol=0, rtol=0)  # masks of exactly 0.5: the float32 rest is unchanged


def test_unknown_precision_is_one_line(tiny_checkpoint, tmp_path):
    song = tmp_path / "song.wav"
    write_song(song, seconds=0.5)
    result = subprocess.run(
        [sys.executable, "-m", "sepnet.separate", f"ckpt={tiny_checkpoint}", f"input={song}", f"out={tmp_path / 'out'}",
         "separate.precision=fp16", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    line = (
        "sepnet: error: separate.precision='fp16' is not valid; set it to fp32 (the default) or bf16 "
        "(bf16 autocast around the mask model only)"
    )
    assert result.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "out").exists()
