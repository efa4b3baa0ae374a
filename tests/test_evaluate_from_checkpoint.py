"""Evaluate from the checkpoint alone (its data settings), one embedded set per rate, and a quiet, one-line trainer."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
from conftest import TINY_SOURCE, compose_config, tiny_overrides, write_track

from sepnet.data.synthetic import ensure_synthetic_dataset
from sepnet.errors import SepnetError
from sepnet.evaluate import run_evaluation
from sepnet.train import run_training
from sepnet.training.quiet import silence_lightning_noise
from sepnet.training.run import build_trainer

SIX = ["bass", "drums", "other", "vocals", "piano", "guitar"]


@pytest.fixture(scope="module")
def six_stem_checkpoint(tmp_path_factory):
    """A tiny model trained on a stem folder of six stems (the embedded generator makes four): (checkpoint, root)."""
    root = tmp_path_factory.mktemp("six") / "songs"
    for split, count in (("train", 2), ("valid", 1), ("test", 2)):
        for i in range(count):
            write_track(root / split / f"{split}{i}", seconds=3.0, rate=22050, stems=tuple(SIX), seed=len(split) * 10 + i)
    run_dir = tmp_path_factory.mktemp("six_run")
    overrides = ["data=stem_folder", f"data.source.root={root}", f"data.stems=[{','.join(SIX)}]", "logger=none",
                 *tiny_overrides([]), "trainer.max_epochs=1"]
    _, summary = run_training(compose_config("train", overrides, run_dir))
    return summary["best_checkpoint"], root


def test_a_six_stem_checkpoint_is_evaluated_from_its_path_alone(six_stem_checkpoint, tmp_path, capsys):
    ckpt, root = six_stem_checkpoint
    results = run_evaluation(compose_config("evaluate", [f"ckpt={ckpt}", "eval.max_tracks=1"], tmp_path / "eval"))
    assert list(results["per_stem"]) == SIX and results["tracks"] == 1
    assert results["config"]["data"]["source"]["root"] == str(root)  # the folder it was trained on
    out = capsys.readouterr().out
    assert f"data from the checkpoint: data=stem_folder data.stems=[{','.join(SIX)}] data.source.root={root}" in out


def test_typed_data_settings_win_over_the_checkpoint(six_stem_checkpoint, tmp_path):
    ckpt, root = six_stem_checkpoint
    elsewhere = tmp_path / "elsewhere"
    for i in range(1):
        write_track(elsewhere / "test" / f"t{i}", seconds=3.0, rate=22050, stems=tuple(SIX), seed=99)
    cfg = compose_config("evaluate", [f"ckpt={ckpt}", "data=stem_folder", f"data.source.root={elsewhere}"], tmp_path / "eval")
    results = run_evaluation(cfg)
    assert results["config"]["data"]["source"]["root"] == str(elsewhere) and results["tracks"] == 1
    # Typed stems that leave out what the model estimates: the existing one-line refusal.
    cfg = compose_config("evaluate", [f"ckpt={ckpt}", "data=stem_folder", f"data.source.root={root}",
                                      "data.stems=[bass,drums,other,vocals]"], tmp_path / "eval2")
    with pytest.raises(SepnetError, match="the checkpoint estimates piano, guitar, which data.stems"):
        run_evaluation(cfg)


def test_the_embedded_sets_settings_come_from_the_checkpoint(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    # The tiny checkpoint was trained on the tiny embedded set (4/2/2 tracks of 4 s at tiny_data_root): evaluate
    # without typing them reads that set, not the 20/5/5 tracks of 10 s of the defaults.
    results = run_evaluation(compose_config("evaluate", [f"ckpt={tiny_checkpoint}"], tmp_path / "eval"))
    source = results["config"]["data"]["source"]
    assert source["root"] == str(tiny_data_root) and source["duration"] == 4.0 and results["tracks"] == 2
    assert "data.source.tracks_per_split=" in capsys.readouterr().out


def test_one_embedded_set_per_sample_rate(tmp_path):
    cfg = compose_config("train", ["frontend.sample_rate=44100"], tmp_path / "run")
    assert cfg.data.source.root == "data/synthetic/44100"
    assert compose_config("train", [], tmp_path / "run").data.source.root == "data/synthetic/22050"
    # A complete set is never rewritten at another rate in place: another run may be reading it.
    root = ensure_synthetic_dataset(tmp_path / "set", sample_rate=8000, tracks={"train": 1}, duration=0.5)
    before = (root / "train" / "synth_000" / "bass.wav").stat().st_mtime_ns
    with pytest.raises(SepnetError, match=r"holds the set at 8000 Hz.*needs its own folder: set data.source.root"):
        ensure_synthetic_dataset(root, sample_rate=16000, tracks={"train": 1}, duration=0.5)
    assert (root / "train" / "synth_000" / "bass.wav").stat().st_mtime_ns == before
    assert json.loads((root / "manifest.json").read_text())["sample_rate"] == 8000


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_trainer_gpu_without_a_gpu_is_one_line(tiny_data_root, tmp_path):
    cfg = compose_config("train", [f"data.source.root={tiny_data_root}", *TINY_SOURCE, "trainer=gpu"], tmp_path / "run")
    with pytest.raises(SepnetError) as error:
        build_trainer(cfg, [], [], tmp_path)
    message = str(error.value)
    assert "\n" not in message and "trainer.accelerator=gpu but this machine has no usable GPU" in message
    assert "trainer=cpu" in message


def test_lightning_noise_is_silenced_and_other_warnings_are_not(caplog):
    silence_lightning_noise()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_lightning_noise()  # filters installed inside the block, as in a run
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("The number of training batches (2) is smaller than the logging interval Trainer(...)", stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](...)")
        rank_zero_info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]
