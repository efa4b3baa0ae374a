"""The one config comparison behind resume, merge, init.pretrained and evaluate."""

from __future__ import annotations

import pytest
from conftest import compose_config, write_fresh_checkpoint

from sepnet.checkpoints.checkpoint import build_separator
from sepnet.checkpoints.compat import MISSING, Difference, differences
from sepnet.checkpoints.pretrained import load_pretrained
from sepnet.errors import SepnetError


def test_differences_name_every_differing_leaf_in_order():
    a = {"model": {"_target_": "sepnet.models.CRNN", "hidden_size": 16, "layers": 2}, "seed": 1}
    b = {"model": {"_target_": "sepnet.models.CRNN", "hidden_size": 24, "dropout": 0.1}, "seed": 2}
    assert differences(a, b) == [
        Difference("model.hidden_size", 16, 24),
        Difference("model.layers", 2, MISSING),
        Difference("model.dropout", MISSING, 0.1),
        Difference("seed", 1, 2),
    ]
    assert differences(a, b, ["seed"]) == [Difference("seed", 1, 2)]
    assert differences(a, a, ["model", "nowhere.deep"]) == []
    assert str(Difference("model.layers", 2, MISSING)) == "model.layers: 2 vs missing"


def test_a_moved_class_is_the_same_class_but_another_class_is_not():
    old = {"frontend": {"_target_": "sepnet.spectral.SpectralFrontEnd"}, "model": {"_target_": "sepnet.models.crnn.CRNN"}}
    new = {"frontend": {"_target_": "sepnet.dsp.frontend.SpectralFrontEnd"}, "model": {"_target_": "sepnet.models.CRNN"}}
    assert differences(old, new) == []
    assert differences(new, {**new, "model": {"_target_": "sepnet.models.UNetCRNN"}}) == [
        Difference("model._target_", "sepnet.models.CRNN", "sepnet.models.UNetCRNN")
    ]
    # Names outside sepnet's registry compare as text.
    assert differences({"data": {"_target_": "x.Y"}}, {"data": {"_target_": "x.Z"}}) != []


def test_pretrained_parent_with_another_stft_is_refused_naming_both_values(tiny_run, tmp_path):
    parent = tmp_path / "parent.ckpt"
    write_fresh_checkpoint(tiny_run(), parent, seed=1)
    separator = build_separator(tiny_run("frontend.n_fft=2048"))
    with pytest.raises(SepnetError) as error:
        load_pretrained(separator, parent)
    assert str(error.value) == (
        f"init.pretrained '{parent}' was trained with frontend.n_fft=1024 (this run: 2048); set those to match the parent"
    )


def test_evaluate_refuses_a_front_end_override_that_disagrees_with_the_checkpoint(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    from test_evaluate import evaluate_overrides

    from sepnet.evaluate import evaluate

    overrides = evaluate_overrides(tiny_checkpoint, tiny_data_root, "report=false", "eval.max_tracks=1")
    cfg = compose_config("evaluate", [*overrides, "+frontend.n_fft=2048"], tmp_path / "run")
    with pytest.raises(SystemExit):
        evaluate(cfg)
    assert capsys.readouterr().err.strip() == (
        f"sepnet: error: frontend.n_fft=2048 disagrees with the checkpoint (1024); the front end comes from "
        f"'{tiny_checkpoint}': drop the frontend.n_fft override"
    )
