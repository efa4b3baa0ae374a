"""Every benchmark script runs end to end at toy size and prints its figures.

The figures themselves are never asserted (timings are not tests); these only keep
the scripts working as the code under them changes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SOURCE

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def run_benchmark(script: str, *args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_train_speed_prints_a_row_per_model():
    out = run_benchmark(
        "train_speed.py", "--models", "crnn", "unet_crnn_mtl",
        "--batch-size", "1", "--chunk-seconds", "0.5", "--steps", "1", "--warmup", "0",
    )
    for model in ("crnn", "unet_crnn_mtl"):
        row = next(line for line in out.splitlines() if line.startswith(model + " "))
        params, seconds, per_second, memory = row.split()[1:5]
        assert params.endswith("M") and float(seconds) > 0 and float(per_second) > 0 and float(memory) > 0


def test_separate_speed_prints_real_time_factor_and_memory(tiny_data_root, tmp_path):
    train = [f"data.source.root={tiny_data_root}", *TINY_SOURCE, "data.val_chunk_seconds=2.0", "data.stats_chunks=4",
             "model.hidden_size=16", "model.num_layers=1", "model.encoder_channels=[4,8,8]"]
    out = run_benchmark(
        "separate_speed.py", "--model", "crnn", "--rtf-minutes", "0.05", "--rss-minutes", "0.02", "0.05",
        "--train-steps", "2", *[f"--train-override={o}" for o in train], "--cache", str(tmp_path / "cache"),
        "--peer-hidden", "16", "--repeat", "2",
    )
    assert re.search(r"real-time|RTF", out, re.IGNORECASE), out
    assert re.search(r"wall s of each of the 2 runs", out), out
    assert re.search(r"MiB", out), out
    rows = {line.split()[0] + " " + line.split()[1]: line.split() for line in out.splitlines()
            if line.startswith(("sepnet fp32", "sepnet bf16"))}
    peer = next(line.split() for line in out.splitlines() if line.startswith("open-unmix"))
    assert sorted(rows) == ["sepnet bf16", "sepnet fp32"], out
    for cells in [*rows.values(), peer]:
        assert float(cells[-5 if cells is peer else -6]) > 0  # x real time
    sdr_fp32, sdr_bf16 = float(rows["sepnet fp32"][-2]), float(rows["sepnet bf16"][-2])
    assert abs(sdr_bf16 - sdr_fp32 - float(rows["sepnet bf16"][-1])) < 2e-3, out  # the difference column is that
    assert (tmp_path / "cache").is_dir() and list((tmp_path / "cache").rglob("best.ckpt"))  # trained once, cached


def test_eval_speed_scores_with_both_implementations():
    out = run_benchmark("eval_speed.py", "--seconds", "3", "--sample-rate", "8000")
    assert "museval" in out and "sepnet" in out, out


def test_data_speed_reads_the_embedded_dataset(tiny_data_root):
    out = run_benchmark(
        "data_speed.py", "--model", "crnn", "--batch-size", "2", "--chunk-seconds", "0.5",
        "--batches", "2", "--workers", "0", "--steps", "1",
        f"data.source.root={tiny_data_root}", *TINY_SOURCE, "data.val_chunk_seconds=2.0",
    )
    assert "batches/s" in out or "examples/s" in out, out


def test_same_budget_tabulates_each_run(tiny_data_root, tmp_path):
    config = tmp_path / "budget.yaml"
    config.write_text(yaml.safe_dump({
        "budget": [
            {"data.source.root": str(tiny_data_root)},
            {"data.source.tracks_per_split": {"train": 4, "valid": 2, "test": 2}}, {"data.source.duration": 4.0},
            {"trainer.max_epochs": 1}, {"data.examples_per_epoch": 4}, {"data.batch_size": 2},
            {"data.val_chunk_seconds": 2.0}, {"data.stats_chunks": 4},
            {"model.hidden_size": 16}, {"model.num_layers": 1},
            {"trainer.enable_progress_bar": False}, {"trainer.enable_model_summary": False},
        ],
        "runs": {"crnn": ["model=crnn"], "unet_crnn": ["model=unet_crnn"]},
    }))
    out = run_benchmark("same_budget.py", "--config", str(config), "--out", str(tmp_path / "out"), "--no-write")
    rows = [line for line in out.splitlines() if line.startswith(("| crnn", "| unet_crnn"))]
    assert len(rows) == 2, out


def gpu_smoke_dry_run(*args: str, python: str = sys.executable, env: dict | None = None) -> list[list[str]]:
    """The commands ``benchmarks/gpu_smoke.sh --dry-run`` prints, each split as the shell would."""
    import os
    import shlex

    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_smoke.sh"), "--dry-run", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, "PYTHON": python, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def test_gpu_smoke_dry_run_prints_commands_that_compose_on_the_cpu(tmp_path):
    from conftest import compose_config

    from sepnet.app.configs import check_group_choices, check_override_keys

    out = tmp_path / "smoke"
    commands = gpu_smoke_dry_run("--out", str(out))
    assert not [c for c in commands if c[1:4] == ["-m", "pip", "install"]]  # all installed here: nothing to install
    composed = []
    for command in commands:
        assert command[0] == sys.executable, command
        if command[1] == "-m":
            entry, overrides = command[2].removeprefix("sepnet."), command[3:]
            check_group_choices(overrides)  # what the entry point checks before Hydra
            check_override_keys(entry, overrides)
        else:
            assert command[1] == "benchmarks/train_speed.py", command
            entry = "train_speed"
            overrides = ["model=crnn", "run_name=bench"] + [a for a in command[2:] if "=" in a and not a.startswith("-")]
        config_name = "train" if entry == "train_speed" else entry
        composed.append((entry, compose_config(config_name, overrides, tmp_path / "compose")))
    assert [entry for entry, _ in composed] == ["train", "train", "evaluate", "separate", "train_speed"]
    (_, gpu), (_, ddp), (_, evaluate), (_, separate), (_, speed) = composed
    for cfg in (gpu, ddp, speed):
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
        assert cfg.data.num_workers > 0 and cfg.data.persistent_workers and cfg.data.pin_memory
    assert gpu.trainer.max_steps == 50 and gpu.trainer.devices == 1
    assert ddp.trainer.max_steps == 50 and ddp.trainer.devices == -1 and ddp.trainer.strategy == "ddp"
    checkpoint = str(out / "train_gpu" / "checkpoints" / "best.ckpt")
    assert evaluate.ckpt == separate.ckpt == checkpoint  # the checkpoint the single-GPU run writes
    assert evaluate.eval.device == "cuda" and separate.separate.device == "cuda"
    assert "--device" in commands[-1] and commands[-1][commands[-1].index("--device") + 1] == "cuda"


def test_gpu_smoke_installs_only_what_the_image_lacks_and_keeps_its_torch(tmp_path):
    """An image with torch and lightning only: a Python without site-packages that sees just those two."""
    import importlib.metadata
    import tomllib

    site = tmp_path / "site"
    site.mkdir()
    for name in ("torch", "lightning"):
        dist = importlib.metadata.distribution(name)
        for path in (Path(dist.locate_file(name)), Path(dist.locate_file(f"{name}-{dist.version}.dist-info"))):
            (site / path.name).symlink_to(path)
    bare = tmp_path / "python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    commands = gpu_smoke_dry_run(
        "--wheels", str(wheels), "--no-deps", python=str(bare), env={"PYTHONPATH": str(site)}
    )
    install = commands[0]
    assert install[:4] == [str(bare), "-m", "pip", "install"]
    assert install[4:8] == ["--no-index", "--find-links", str(wheels), "--no-deps"]
    torch_pins = [a for a in install if a.startswith("torch")]
    assert torch_pins == [f"torch=={importlib.metadata.version('torch')}"]  # the image's own build, kept
    assert f"lightning=={importlib.metadata.version('lightning')}" in install
    wanted = install[10:]
    assert {w.split(">")[0].split("<")[0] for w in wanted} == {
        "hydra-core", "omegaconf", "numpy", "soundfile", "soxr", "matplotlib", "pyyaml", "museval", "wandb",
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert set(wanted) <= set(declared)  # the same bounds as the package itself (wandb: its extra)
    assert [c[1:3] for c in commands[1:3]] == [["-m", "sepnet.train"]] * 2  # then the same steps as ever


@pytest.mark.slow
def test_peer_tabulates_open_unmix_and_each_sepnet_run_with_finite_numbers(tiny_data_root, tmp_path):
    """benchmarks/peer.py at toy size: a tiny Open-Unmix beside peer.yaml's own recipe row, shrunk, 2 steps each."""
    import math

    config = yaml.safe_load((BENCHMARKS / "peer.yaml").read_text())
    shrink = ["model.hidden_size=16", "model.num_layers=1", "model.encoder_channels=[4,8,8]"]
    config["runs"] = {"crnn": [*config["runs"]["sepnet_recipe"], *shrink]}  # its overrides (bf16 autocast too)
    (tmp_path / "peer.yaml").write_text(yaml.safe_dump(config))
    out = run_benchmark(
        "peer.py", "--config", str(tmp_path / "peer.yaml"), "--out", str(tmp_path / "out"),
        "--steps", "2", "--batch", "2", "--chunk-seconds", "1.0", "--peer-hidden", "16",
        f"data.source.root={tiny_data_root}", *TINY_SOURCE, "data.val_chunk_seconds=2.0", "data.stats_chunks=4",
    )
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith(("| open-unmix", "| crnn"))}
    assert sorted(rows) == ["crnn", "open-unmix"], out
    for name, line in rows.items():
        cells = [c.strip() for c in line.strip().strip("|").split("|")][1:]
        # params, 2 x (4 stems + mean), steps, train s, examples/s, minutes
        assert len(cells) == 15 and cells[0].endswith("M"), line
        numbers = [float(c.rstrip("M")) for c in cells]
        assert all(math.isfinite(x) for x in numbers), line
        assert numbers[0] > 0 and numbers[-4] == 2 and numbers[-3] > 0 and numbers[-2] > 0, line
    for name in ("open-unmix", "crnn"):  # each row's result is kept beside its run
        result = json.loads((tmp_path / "out" / name / "result.json").read_text())
        assert result["steps"] == 2 and result["scores"]["tracks"] == 2


@pytest.mark.slow
def test_the_full_band_peer_runs_open_unmix_at_its_stft_and_htdemucs_at_equal_wall_clock(tmp_path):
    """peer.py --sample-rate 44100 at toy size: data at 44.1 kHz, Open-Unmix at n_fft 4096, the full-band recipe,
    then HTDemucs (the demucs package's own model) trained for the recipe's training time and scored without +W."""
    import math

    config = yaml.safe_load((BENCHMARKS / "peer_fullband.yaml").read_text())
    assert config["sample_rate"] == 44100 and config["peer"]["n_fft"] == 4096 and config["peer"]["hop_length"] == 1024
    recipe = config["htdemucs"]["wall_clock_of"]
    config["runs"] = {recipe: [*config["runs"][recipe], "model.features=8", "model.hidden_size=8"]}
    (tmp_path / "peer.yaml").write_text(yaml.safe_dump(config))
    out = run_benchmark(
        "peer.py", "--sample-rate", "44100", "--config", str(tmp_path / "peer.yaml"), "--out", str(tmp_path / "out"),
        "--runs", "htdemucs", recipe, "open-unmix",  # htdemucs runs last whatever the order: it waits for the recipe's time
        "--steps", "2", "--batch", "2", "--chunk-seconds", "1.0", "--peer-hidden", "16",
        f"data.source.root={tmp_path / 'data'}", *TINY_SOURCE, "data.val_chunk_seconds=2.0", "data.stats_chunks=4",
    )
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert [row.split("|")[1].strip() for row in rows] == [recipe, "open-unmix", "htdemucs"], out
    assert "at 44.1 kHz" in out and f"htdemucs trained for {recipe}'s training time" in out
    results = {name: json.loads((tmp_path / "out" / name / "result.json").read_text()) for name in (recipe, "open-unmix", "htdemucs")}
    assert results["open-unmix"]["params"] > 4 * 2049 * 16  # its model estimates all 2049 bins of its 4096-point STFT
    demucs = results["htdemucs"]
    assert demucs["steps"] >= 1 and demucs["train_seconds"] >= results[recipe]["train_seconds"]
    assert demucs["scores"]["wiener"] is None and math.isfinite(demucs["scores"]["plain"]["mean"])
    assert rows[-1].count(" - ") == 5  # no +W cells for a waveform model
    import soundfile

    assert {soundfile.info(f).samplerate for f in (tmp_path / "data").rglob("*.wav")} == {44100}  # rendered at full band


def test_loss_cost_prints_each_loss_with_its_share_of_a_step():
    out = run_benchmark("loss_cost.py", "--batch-size", "1", "--chunk-seconds", "0.5", "--steps", "1", "--warmup", "0",
                        "--rows", "2", "model.features=8", "model.hidden_size=8", "model.conv_channels=0")
    rows = [line for line in out.splitlines() if line.endswith("%")]
    assert len(rows) == 2 and rows[0].startswith("magnitude (recipe)") and rows[1].startswith("waveform L1")
    assert all(float(row.split()[-2]) > 0 for row in rows)
