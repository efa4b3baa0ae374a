"""A run stopped by SIGTERM saves last.ckpt, and resuming it ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_RUN, TINY_SOURCE

from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY, read_checkpoint
from sepnet.errors import SepnetError
from sepnet.train import run_training

# Longer epochs than TINY_RUN's, so the signal lands inside a training epoch.
EPOCHS = ["trainer.max_epochs=2", "data.examples_per_epoch=16"]


def weights(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("separator.")}


@pytest.mark.slow
def test_sigterm_then_resume_matches_uninterrupted_run(tiny_run, tiny_data_root, tmp_path):
    straight_module, _ = run_training(tiny_run(*EPOCHS, output_dir=tmp_path / "straight"))
    straight = weights(straight_module.state_dict())

    run_dir = tmp_path / "stopped"
    last = run_dir / "checkpoints" / "last.ckpt"
    overrides = [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *TINY_RUN, *EPOCHS, "logger=csv"]
    process = subprocess.Popen(
        [sys.executable, "-m", "sepnet.train", *overrides, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert last.is_file(), process.communicate()[1][-3000:]
    first_save_step = read_checkpoint(last)["global_step"]
    process.send_signal(signal.SIGTERM)  # during epoch 1 (an epoch is 4 steps)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("sepnet: training stopped by SIGTERM at epoch ")
    assert message.endswith(f"saved {last}; continue with: python -m sepnet.train resume={run_dir}")
    stopped = read_checkpoint(last)
    assert first_save_step < stopped["global_step"] < 8  # saved at the signal, not at an epoch's end
    rows_before = (run_dir / "logs" / "metrics.csv").read_text().splitlines()

    resumed_module, summary = run_training(tiny_run(*EPOCHS, f"resume={run_dir}", output_dir=tmp_path / "unused"))
    resumed = weights(resumed_module.state_dict())
    assert resumed.keys() == straight.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    final = read_checkpoint(last)
    assert final["global_step"] == 8 and final["epoch"] == 1
    # The resumed run wrote on into the stopped run's dir and kept its metrics.
    assert summary["last_checkpoint"] == str(last)
    rows_after = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    assert len(rows_after) > len(rows_before) and rows_after[0].split(",")[0] == rows_before[0].split(",")[0]
    assert not (tmp_path / "unused" / "checkpoints").exists()


def test_resume_refuses_another_model(tiny_run, tmp_path):
    run_training(tiny_run("trainer.max_epochs=1", output_dir=tmp_path / "small"))
    with pytest.raises(SepnetError) as error:
        run_training(tiny_run("model.hidden_size=24", f"resume={tmp_path / 'small'}", output_dir=tmp_path / "big"))
    last = tmp_path / "small" / "checkpoints" / "last.ckpt"
    assert str(error.value) == (
        f"cannot resume from '{last}' with model.hidden_size=24: the run was trained with model.hidden_size=16; "
        "a resumed run goes on as it was: drop that override (only where and how long it runs may change, e.g. "
        f"trainer.max_epochs), or start a new run from its weights with init.pretrained={last}"
    )


def test_a_checkpoint_naming_the_old_classes_still_resumes(tiny_run, tmp_path):
    """A last.ckpt written before the sub-packages names its classes by their old paths; those name the
    same registered classes as today's config, so the run resumes instead of being refused as another model."""
    run_training(tiny_run("trainer.max_epochs=1", output_dir=tmp_path / "old"))
    last = tmp_path / "old" / "checkpoints" / "last.ckpt"
    raw = read_checkpoint(last)
    config = raw[CHECKPOINT_KEY]["config"]
    assert config["frontend"]["_target_"] == "sepnet.dsp.frontend.SpectralFrontEnd"
    config["frontend"]["_target_"] = "sepnet.spectral.SpectralFrontEnd"  # the module before the sub-packages
    config["model"]["_target_"] = "sepnet.models.crnn.CRNN"  # its module-qualified name, as older runs stored it
    torch.save(raw, last)
    _, summary = run_training(tiny_run("trainer.max_epochs=2", f"resume={tmp_path / 'old'}", output_dir=tmp_path / "unused"))
    resumed = read_checkpoint(summary["last_checkpoint"])
    assert summary["last_checkpoint"] == str(last) and resumed["epoch"] == 1


def test_ckpt_path_last_without_checkpoint_starts_fresh(tiny_run, tmp_path):
    with pytest.raises(SepnetError, match="does not exist"):
        run_training(tiny_run(f"resume={tmp_path / 'nowhere'}"))
    cfg = tiny_run("ckpt_path=last", "trainer.max_epochs=1")
    _, summary = run_training(cfg)
    assert read_checkpoint(summary["last_checkpoint"])["epoch"] == 0
