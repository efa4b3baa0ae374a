"""sepnet.merge: weighted means of compatible checkpoints, loud refusals of incompatible ones."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config, write_fresh_checkpoint

from sepnet.checkpoints import checkpoint
from sepnet.merge import merge


def merge_config(tmp_path, *overrides):
    return compose_config("merge", list(overrides), tmp_path / "merge_run")


def test_weighted_mean_is_elementwise_and_weights_are_normalised(tiny_run, tmp_path, capsys):
    cfg = tiny_run()
    a = write_fresh_checkpoint(cfg, tmp_path / "a.ckpt", seed=1, fill_statistics=1.0)
    b = write_fresh_checkpoint(cfg, tmp_path / "b.ckpt", seed=2, fill_statistics=2.0)
    out = tmp_path / "blend.ckpt"
    merge(merge_config(tmp_path, f"ckpts=[{tmp_path / 'a.ckpt'},{tmp_path / 'b.ckpt'}]", "weights=[4,1]", f"out={out}"))
    assert "normalised to [0.8, 0.2]" in capsys.readouterr().out

    merged = torch.load(out, weights_only=True)
    state = merged["state_dict"]
    averaged = 0
    for key, value in state.items():
        if key.endswith(("num_batches_tracked", "fitted")):
            assert torch.equal(value, a[key]), key  # integer/bool buffers: the first's, never averaged
        elif key.startswith("separator.front_end.bin_"):
            assert torch.equal(value, a[key]), key  # statistics differ: the first's
        else:
            assert torch.allclose(value, 0.8 * a[key] + 0.2 * b[key], atol=1e-6), key
            averaged += not torch.equal(a[key], b[key])
    assert averaged > 10  # the check above compared tensors that really differ
    assert int(state["separator.model.encoder.0.norm.num_batches_tracked"]) == 11

    loaded = checkpoint.load(out)  # what evaluate, separate and init.pretrained read
    assert loaded.lineage["parents"] == [str((tmp_path / "a.ckpt").resolve()), str((tmp_path / "b.ckpt").resolve())]
    assert loaded.lineage["merge"]["weights"] == pytest.approx([0.8, 0.2])
    assert loaded.lineage["merge"]["requested_weights"] == [4.0, 1.0]
    assert loaded.lineage["merge"]["parent_metrics"] == [{"val/sdr": 1.0}, {"val/sdr": 2.0}]
    with torch.no_grad():
        assert loaded.separator(torch.randn(1, 2, 4096)).shape == (1, 4, 2, 4096)


def test_uniform_by_default_without_a_message(tiny_run, tmp_path, capsys):
    cfg = tiny_run()
    a = write_fresh_checkpoint(cfg, tmp_path / "a.ckpt", seed=1)
    b = write_fresh_checkpoint(cfg, tmp_path / "b.ckpt", seed=2)
    out = tmp_path / "mean.ckpt"
    merge(merge_config(tmp_path, f"ckpts=[{tmp_path / 'a.ckpt'},{tmp_path / 'b.ckpt'}]", f"out={out}"))
    assert "normalised" not in capsys.readouterr().out
    key = "separator.model.bottleneck.lstm.weight_hh_l0"
    assert torch.allclose(torch.load(out, weights_only=True)["state_dict"][key], (a[key] + b[key]) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (["model.hidden_size=8"], "model.hidden_size is 16 vs 8"),
        (["frontend.n_fft=2048"], "frontend.n_fft is 1024 vs 2048"),
        (["data.stems=[bass,drums,vocals]"], "model.target_stems"),
    ],
)
def test_incompatible_checkpoints_are_refused_naming_the_difference(tiny_run, tmp_path, capsys, other, named):
    write_fresh_checkpoint(tiny_run(), tmp_path / "a.ckpt", seed=1)
    write_fresh_checkpoint(tiny_run(*other), tmp_path / "b.ckpt", seed=2)
    with pytest.raises(SystemExit) as exit_info:
        merge(merge_config(tmp_path, f"ckpts=[{tmp_path / 'a.ckpt'},{tmp_path / 'b.ckpt'}]", f"out={tmp_path / 'x.ckpt'}"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sepnet: error: cannot merge")
    assert named in err
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.parametrize(("weights", "named"), [("[1,-1]", "negative"), ("[0,0]", "sum to 0"), ("[1,1,1]", "3 values for 2 ckpts")])
def test_bad_weights_are_refused(tiny_run, tmp_path, capsys, weights, named):
    cfg = tiny_run()
    write_fresh_checkpoint(cfg, tmp_path / "a.ckpt", seed=1)
    write_fresh_checkpoint(cfg, tmp_path / "b.ckpt", seed=2)
    with pytest.raises(SystemExit):
        merge(merge_config(tmp_path, f"ckpts=[{tmp_path / 'a.ckpt'},{tmp_path / 'b.ckpt'}]", f"weights={weights}", f"out={tmp_path / 'x.ckpt'}"))
    assert named in capsys.readouterr().err
