"""The inference knobs are written once (conf/inference) and reach the Separator as constructor arguments."""

import torch
from conftest import compose_config
from omegaconf import OmegaConf

from sepnet.app.configs import CONFIG_DIR
from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.inference.overlap_add import build_runner
from sepnet.inference.separator import InferenceSettings, Separator
from sepnet.models import SeparationModel

SHARED = ["mask_scale", "mask_clip", "threshold", "wiener_iters", "chunk_seconds", "overlap", "batch_size", "device"]


def test_evaluate_and_separate_share_the_inference_group_at_their_own_keys(tmp_path):
    evaluate = compose_config("evaluate", ["ckpt=x", "eval.mask_scale=1.5"], tmp_path / "e")
    separate = compose_config("separate", ["ckpt=x", "input=y", "separate.wiener_iters=2"], tmp_path / "s")
    shared = OmegaConf.to_container(OmegaConf.load(f"{CONFIG_DIR}/inference/default.yaml"))
    assert list(shared) == SHARED
    assert {k: evaluate.eval[k] for k in SHARED} == {**shared, "mask_scale": 1.5}
    assert {k: separate.separate[k] for k in SHARED} == {**shared, "wiener_iters": 2}
    # Each command keeps its own keys, and neither gets a top-level `inference` node.
    assert "win" in evaluate.eval and "gain_from" in separate.separate and "gain_from" not in evaluate.eval
    assert "inference" not in evaluate and "inference" not in separate


def test_build_runner_passes_the_knobs_to_a_new_separator_leaving_the_loaded_one_untouched(tmp_path):
    class HalfMasks(SeparationModel):
        def __init__(self):
            super().__init__()
            self.target_stems, self.n_bins, self.audio_channels = ["vocals"], 64, 2

        def forward(self, x):
            return torch.full((x.shape[0], 1, *x.shape[1:]), 0.5)

    loaded = Separator(SpectralFrontEnd(n_fft=126, hop_length=32, n_bins=64), HalfMasks())
    knobs = compose_config("evaluate", ["ckpt=x", "eval.mask_scale=4", "eval.device=cpu"], tmp_path).eval
    runner = build_runner(loaded, knobs, "eval")
    assert runner.separator.inference == InferenceSettings(mask_scale=4.0)
    assert loaded.inference == InferenceSettings()
    assert runner.separator.model is loaded.model and runner.separator.front_end is loaded.front_end
    masks = torch.full((1, 1, 2, 64, 3), 0.5)
    assert torch.equal(runner.separator.postprocess(masks), torch.ones_like(masks))  # scaled then clipped
