"""The Python API (sepnet/api.py): README's example runs as printed; any rate in, the same rate out; one line per mistake."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_fresh_checkpoint

import sepnet
from sepnet.api import Model, inference_defaults
from sepnet.audio.io import resample
from sepnet.errors import SepnetError
from sepnet.inference.overlap_add import build_runner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_example() -> str:
    """The ```python block of README's "Separate from Python" section."""
    section = README.read_text().split("### Separate from Python", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return block


def test_readme_example_runs_as_printed(tiny_checkpoint, tmp_path):
    shutil.copy(tiny_checkpoint, tmp_path / "best.ckpt")
    rate, samples = 44100, 44100 * 2 + 17  # not the model's 22050 Hz, and an odd length
    song = 0.1 * np.random.default_rng(0).standard_normal((samples, 2)).astype(np.float32)
    sf.write(tmp_path / "song.wav", song, rate, subtype="FLOAT")
    (tmp_path / "example.py").write_text(readme_example())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    model = sepnet.load(tmp_path / "best.ckpt")
    assert model.sample_rate == 22050  # the checkpoint's, read from it
    for stem in model.stems:
        info = sf.info(tmp_path / f"{stem}.wav")
        assert (info.samplerate, info.frames, info.channels) == (rate, samples, 2)
    assert run.stdout.strip() == f"22050 {model.stems} torch.Size([{samples}])"


@pytest.fixture
def model_at(tiny_run, tmp_path):
    """``model_at(rate) -> Model``: an untrained tiny model whose front end runs at ``rate``."""

    def make(rate: int) -> Model:
        path = tmp_path / f"at_{rate}.ckpt"
        cfg = tiny_run(f"frontend.sample_rate={rate}", output_dir=tmp_path / f"run_{rate}")
        write_fresh_checkpoint(cfg, path, seed=1, fill_statistics=-2.0)
        return sepnet.load(path)

    return make


def runner_for(model: Model, **knobs):
    return build_runner(model.separator, {**inference_defaults(), **knobs, "device": "cpu"}, "separate")


def test_the_rate_comes_from_the_checkpoint_and_audio_is_resampled_in_and_out(model_at):
    model = model_at(16000)
    assert model.sample_rate == 16000 and model.channels == 2
    mixture = 0.1 * np.random.default_rng(1).standard_normal((2, 44100 + 5)).astype(np.float32)
    # At the model's own rate nothing is resampled: the one inference path's estimates, exactly.
    at_model = model.separate(mixture[:, :16000], 16000, device="cpu")
    direct = runner_for(model).separate(mixture[:, :16000])
    for i, stem in enumerate(model.stems):
        np.testing.assert_array_equal(at_model[stem], direct[i])
    # At 44.1 kHz: resampled to 16 kHz with soxr, separated there, resampled back to 44.1 kHz and the input's length.
    stems = model.separate(mixture, 44100, device="cpu")
    at_16k = runner_for(model).separate(resample(mixture, 44100, 16000))  # (stems, 2, 16001)
    expected = resample(at_16k.reshape(-1, at_16k.shape[-1]), 16000, 44100)
    expected = expected[:, : mixture.shape[-1]].reshape(len(model.stems), 2, -1)
    assert list(stems) == model.stems
    for i, stem in enumerate(model.stems):
        assert stems[stem].shape == mixture.shape and stems[stem].dtype == np.float32
        np.testing.assert_allclose(stems[stem][..., : expected.shape[-1]], expected[i], atol=1e-6)
    # ... and not what the low-level separator would give fed the 44.1 kHz samples as they are.
    unresampled = runner_for(model).separate(mixture)
    assert not np.allclose(stems[model.stems[0]], unresampled[0], atol=1e-3)


def test_mono_tensors_and_knobs(model_at):
    model = model_at(22050)
    mono = 0.1 * torch.randn(20000, generator=torch.Generator().manual_seed(2))
    stems = model.separate(mono, 22050, device="cpu", mask_scale=0.5, threshold=0.1)
    stereo = np.stack([mono.numpy()] * 2)
    direct = runner_for(model, mask_scale=0.5, threshold=0.1).separate(stereo)
    for i, stem in enumerate(model.stems):
        assert isinstance(stems[stem], torch.Tensor) and stems[stem].shape == mono.shape
        torch.testing.assert_close(stems[stem], torch.from_numpy(direct[i].mean(0)))
    plain = model.separate(mono.numpy(), 22050.0, device="cpu")  # a float rate that is a whole number is fine
    assert isinstance(plain[model.stems[0]], np.ndarray)
    assert not np.allclose(plain[model.stems[0]], stems[model.stems[0]].numpy())  # the knobs reached the masks
    wiener = model.separate(stereo, 22050, device="cpu", wiener_iters=1, precision="bf16")
    assert all(np.isfinite(wiener[s]).all() and wiener[s].shape == stereo.shape for s in model.stems)


@pytest.mark.parametrize(
    "audio,rate,knobs,line",
    [
        (np.zeros((3, 100), np.float32), 44100, {}, r"^audio of shape \(3, 100\) cannot be separated; pass \(channels, samples\) with 1 or 2 channels"),
        (np.zeros((2, 2, 100), np.float32), 44100, {}, r"^audio of shape \(2, 2, 100\) cannot be separated"),
        (np.zeros((2, 0), np.float32), 44100, {}, r"with at least one sample$"),
        (np.full((2, 100), np.nan, np.float32), 44100, {}, r"^audio holds NaN or inf samples; pass finite audio"),
        (np.zeros((2, 100), np.float32), 0, {}, r"^rate=0 is not a sample rate; pass the audio's rate in Hz, e.g. rate=44100$"),
        (np.zeros((2, 100), np.float32), 44100.5, {}, r"^rate=44100.5 is not a sample rate"),
        (np.zeros((2, 100), np.float32), 44100, {"mask_scal": 2.0}, r"^Model.separate\(\) has no knob mask_scal; the knobs are batch_size, chunk_seconds,"),
        (np.zeros((2, 100), np.float32), 44100, {"mask_scale": -1.0}, r"^separate.mask_scale=-1.0 is not valid; set it to a number > 0$"),
        (np.zeros((2, 100), np.float32), 44100, {"precision": "fp8"}, r"^separate.precision='fp8' is not valid"),
    ],
)
def test_a_mistake_is_one_line(model_at, audio, rate, knobs, line):
    model = model_at(22050)
    with pytest.raises(SepnetError, match=line) as refused:
        model.separate(audio, rate, device="cpu", **knobs)
    assert "\n" not in str(refused.value)


def test_a_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(SepnetError, match=r"^checkpoint '.*nothing.ckpt' does not exist; pass the path of a .ckpt"):
        sepnet.load(tmp_path / "nothing.ckpt")


def test_import_sepnet_stays_light():
    code = (
        "import sys, sepnet; light = 'torch' not in sys.modules; "
        "from sepnet import load, Model; import sepnet.api; "
        "print(light, load is sepnet.api.load, Model is sepnet.api.Model, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "True", "True"]
    with pytest.raises(AttributeError, match="has no attribute 'lod'"):
        sepnet.lod  # noqa: B018
