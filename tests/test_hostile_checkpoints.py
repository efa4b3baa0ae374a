"""Careless and hostile checkpoints and inputs (issue 26): no silent NaN, bounded cost before any refusal.

Every checkpoint here is crafted from a tiny separator built through the registry, then
given a config, a tensor or a pickle that lies. Each must end in one line naming the file
and what is wrong, within 5 s and 1 GB of memory above the interpreter's, and nothing
non-finite may ever be written or scored.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickletools
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_SOURCE, compose_config
from omegaconf import OmegaConf
from torch import nn

from sepnet import __version__
from sepnet.app.configs import CONFIG_DIR
from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.merging import merge_checkpoints
from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.errors import SepnetError
from sepnet.evaluate import run_evaluation
from sepnet.evaluation.lineage import collect_lineage
from sepnet.inference.overlap_add import OverlapAdd, build_runner, nonfinite_stem
from sepnet.inference.separator import Separator
from sepnet.models import SeparationModel
from sepnet.registry import MODEL, RefusedConfig, build
from sepnet.separate import Job, run_separation, separate_file

STEMS = ["bass", "drums", "other", "vocals"]
FRONT_END = {"_target_": "sepnet.dsp.frontend.SpectralFrontEnd", "sample_rate": 8000, "n_fft": 126, "hop_length": 32, "n_bins": 64}
CRNN = {
    "_target_": "sepnet.models.CRNN", "target_stems": STEMS, "hidden_size": 8, "num_layers": 1,
    "encoder_channels": [4, 4], "n_bins": 64, "audio_channels": 2, "dropout": 0.0,
}  # fmt: skip
BAND_SPLIT = {
    "_target_": "sepnet.models.BandSplitRNN", "target_stems": STEMS, "n_bins": 64, "audio_channels": 2,
    "features": 8, "hidden_size": 8, "num_layers": 1, "band_widths": [8, 16], "band_counts": [4, 2],
}  # fmt: skip
SECONDS, MEGABYTES = 5.0, 1024
"""What any crafted checkpoint may cost before its refusal: seconds, and MB of peak RSS above the baseline."""


def craft(path: Path, model: dict = CRNN, front_end: dict = FRONT_END, stored: dict | None = None, edit=None) -> Path:
    """A sepnet checkpoint of an untrained separator built from ``model`` and ``front_end``.

    ``stored`` replaces nodes of the config written into the file (``{"model": {...}}``), so the
    config can lie about the tensors; ``edit(state)`` changes the tensors before they are written.
    """
    separator = checkpoint.build_separator({"model": model, "frontend": front_end})
    state = {f"separator.{k}": v for k, v in separator.state_dict().items()}
    if edit is not None:
        edit(state)
    config = {"model": model, "frontend": front_end, **(stored or {})}
    info = {"config": config, "lineage": {}, "metrics": {}, "version": __version__}
    checkpoint.write_checkpoint({"state_dict": state, checkpoint.CHECKPOINT_KEY: info}, path)
    return path


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


# -- 1. merge weights -------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -float("inf"), "x", None])
def test_merge_refuses_a_weight_that_is_not_a_finite_number_before_reading_any_file(tmp_path, weight):
    with pytest.raises(SepnetError) as exc:  # the files do not exist: the weights are checked first
        merge_checkpoints([tmp_path / "a.ckpt", tmp_path / "b.ckpt"], [weight, 1.0])
    one_line(exc, "weights=", "merge weights must be finite numbers >= 0")


def test_merge_command_line_with_nan_weight_is_one_line(tmp_path):
    a, b = craft(tmp_path / "a.ckpt"), craft(tmp_path / "b.ckpt")
    run = subprocess.run(
        [sys.executable, "-m", "sepnet.merge", f"ckpts=[{a},{b}]", "weights=[nan,1]", f"out={tmp_path / 'm.ckpt'}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        (
            "sepnet: error: weights=[nan, 1] holds nan, not a finite number; merge weights must be finite numbers "
            ">= 0, e.g. weights=[0.8,0.2]"
        )
    ]
    assert not (tmp_path / "m.ckpt").exists()


# -- 2. non-finite tensors and statistics -------------------------------------------------------


def _set(name: str, value: float, index: int | None = 0):
    def edit(state: dict) -> None:
        tensor = state[f"separator.{name}"]
        if index is None:
            tensor.fill_(value)
        else:
            tensor.view(-1)[index] = value

    return edit


@pytest.mark.parametrize(
    ("name", "value", "index", "said"),
    [
        ("model.decoder.0.conv.weight", float("nan"), 0, "holds NaN or inf in tensor 'model.decoder.0.conv.weight'"),
        ("model.encoder.0.norm.running_var", float("inf"), 1, "holds NaN or inf in tensor 'model.encoder.0.norm.running_var'"),
        ("front_end.bin_mean", float("nan"), None, "holds NaN or inf in tensor 'front_end.bin_mean' (64 of 64 values)"),
        ("front_end.bin_std", 0.0, 3, "holds front_end.bin_std <= 0 (smallest 0)"),
        ("front_end.bin_std", -1.0, None, "holds front_end.bin_std <= 0 (smallest -1)"),
    ],
)
def test_non_finite_weights_or_statistics_are_refused_naming_file_and_tensor(tmp_path, name, value, index, said):
    separator = checkpoint.build_separator({"model": CRNN, "frontend": FRONT_END})
    assert f"{name}" in separator.state_dict(), sorted(separator.state_dict())
    path = craft(tmp_path / "bad.ckpt", edit=_set(name, value, index))
    with pytest.raises(SepnetError) as exc:
        checkpoint.load(path)
    one_line(exc, f"checkpoint '{path}'", said)


# -- 3. stem names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stems", "said"),
    [
        (["bass", "bass", "other", "vocals"], "names 'bass' twice"),
        (["vocals", "Vocals"], "names 'vocals' and 'Vocals'"),
        (["a/b", "drums"], "holds 'a/b', which is not a safe file name"),
        (["..", "drums"], "holds '..', which is not a safe file name"),
        ([".hidden", "drums"], "holds '.hidden'"),
        (["", "drums"], "holds ''"),
        (["drums\x1b[31m", "bass"], "model.target_stems[0] is 'drums\\x1b[31m', which holds control characters"),
        (["drums\n", "bass"], "model.target_stems[0] is 'drums\\n', which holds control characters"),
        (["C:evil", "bass"], "holds 'C:evil'"),
    ],
)
def test_stem_names_that_repeat_or_are_not_file_names_are_refused(tmp_path, stems, said):
    with pytest.raises(RefusedConfig) as exc:  # in the user's own config: at build time
        build(MODEL, {**CRNN, "target_stems": stems}, "model")
    one_line(exc, said)
    path = craft(tmp_path / "stems.ckpt", stored={"model": {**CRNN, "target_stems": stems}})
    with pytest.raises(SepnetError) as exc:  # in a checkpoint: before any tensor is allocated
        checkpoint.load(path)
    one_line(exc, f"checkpoint '{path}' was refused: ", said)


class ConstantMasks(SeparationModel):
    """A stand-in model outside the registry (no stem checks): the same mask for every stem; ``value`` may be NaN."""

    def __init__(self, target_stems, value=0.5):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = list(target_stems), 512, 2
        self.value = value

    def forward(self, x):
        b, c, f, t = x.shape
        return torch.full((b, len(self.target_stems), c, f, t), self.value)


def runner_of(model: nn.Module, rate: int = 8000) -> OverlapAdd:
    return OverlapAdd(Separator(SpectralFrontEnd(sample_rate=rate), model).eval(), chunk_seconds=1.0, device="cpu")


def write_noise(path: Path, seconds: float = 1.0, rate: int = 8000, scale: float = 0.1) -> Path:
    noise = scale * np.random.default_rng(0).standard_normal((round(seconds * rate), 2))
    sf.write(path, noise.astype(np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("stems", [["../escaped", "bass"], ["a/b", "bass"], ["bass", "BASS"]])
def test_separate_writes_each_stem_once_and_only_inside_its_track_folder(tmp_path, stems):
    song = write_noise(tmp_path / "song.wav")
    out = tmp_path / "out"
    with pytest.raises(SepnetError) as exc:
        separate_file(runner_of(ConstantMasks(stems)), Job(song, Path("song")), out, 1.0, False)
    assert "rename the input track" in str(exc.value) or "would not each write their own file" in str(exc.value)
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
    assert not (tmp_path / "escaped.wav").exists()


# -- 4. finiteness of what is written and scored ------------------------------------------------


def test_nonfinite_stem_finds_the_first_broken_stem():
    estimates = np.zeros((4, 2, 100), np.float32)
    assert nonfinite_stem(estimates) is None
    assert nonfinite_stem(estimates[:, :, :0]) is None
    estimates[2, 1, 50] = np.inf
    assert nonfinite_stem(estimates) == 2
    estimates[1, 0, 0] = np.nan
    assert nonfinite_stem(estimates) == 1


def test_separate_stops_at_non_finite_estimates_and_writes_nothing(tmp_path):
    ckpt = craft(tmp_path / "ok.ckpt")
    song = write_noise(tmp_path / "song.wav")
    out = tmp_path / "out"
    # A scale that overflows float32: every estimate becomes inf or NaN (as a broken model's would).
    overrides = ["separate.mask_scale=1e39", "separate.mask_clip=false", "separate.device=cpu"]
    cfg = compose_config("separate", [f"ckpt={ckpt}", f"input={song}", f"out={out}", *overrides], tmp_path / "run")
    with pytest.raises(SepnetError) as exc:
        run_separation(cfg)
    one_line(exc, f"checkpoint '{ckpt}' gave NaN or inf estimates of bass for '{song}'", "nothing was written")
    assert not (out / "song").exists()
    assert not any(p.is_file() for p in out.rglob("*"))


def test_evaluate_refuses_to_score_non_finite_estimates(tiny_data_root, tmp_path):
    front_end = {**FRONT_END, "sample_rate": 22050, "n_fft": 1024, "hop_length": 256, "n_bins": 512}
    ckpt = craft(tmp_path / "ok.ckpt", {**CRNN, "n_bins": 512}, front_end)
    overrides = [f"ckpt={ckpt}", f"data.source.root={tiny_data_root}", *TINY_SOURCE, "report=false",
                 "eval.mask_scale=1e39", "eval.mask_clip=false", "eval.max_tracks=1", "eval.device=cpu"]  # fmt: skip
    with pytest.raises(SepnetError) as exc:
        run_evaluation(compose_config("evaluate", overrides, tmp_path / "run"))
    one_line(exc, f"checkpoint '{ckpt}' gave NaN or inf estimates of", "which cannot be scored")
    assert not (tmp_path / "run" / "results.json").exists()


# -- 5. an absurd input peak ------------------------------------------------------------------


def test_an_input_peaking_far_above_full_scale_gets_one_warning_and_is_separated(tmp_path, caplog):
    song = write_noise(tmp_path / "loud.wav", seconds=2.0, scale=1e5)  # float WAV peaking near 4e5
    with caplog.at_level(logging.WARNING, logger="sepnet.commands.separation"):
        written = separate_file(runner_of(ConstantMasks(STEMS)), Job(song, Path("loud")), tmp_path / "out", 1.0, False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"input '{song}' peaks at" in warnings[0] and "dB over full scale" in warnings[0]
    assert len(written) == 4 and all(p.is_file() for p in written)
    caplog.clear()
    quiet = write_noise(tmp_path / "quiet.wav")
    with caplog.at_level(logging.WARNING, logger="sepnet.commands.separation"):
        separate_file(runner_of(ConstantMasks(STEMS)), Job(quiet, Path("quiet")), tmp_path / "out", 1.0, False)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


# -- 6 and 7. cost before refusal -----------------------------------------------------------------


def _patched_numel(pickled: bytes, numel: int) -> bytes:
    """``pickled`` (torch's protocol-2 pickles, one or several back to back) with the first storage's
    declared element count set to ``numel`` (both encoded as 4-byte BININT: same length)."""
    stream = io.BytesIO(pickled)
    while stream.tell() < len(pickled):
        ops = list(pickletools.genops(stream))
        for i, (op, _, _) in enumerate(ops):
            if op.name == "BINPERSID":
                tuple_at = max(k for k in range(i) if ops[k][0].name == "TUPLE")  # legacy ids end with a None
                count_op, count, at = ops[max(k for k in range(tuple_at) if ops[k][0].name == "BININT")]
                assert count_op.name == "BININT" and count >= 1 << 16, (count_op.name, count)
                return pickled[:at] + b"J" + struct.pack("<i", numel) + pickled[at + 5 :]
    raise AssertionError("no storage in the pickle")


def forge_declared_size(source: Path, target: Path, numel: int) -> Path:
    """``source`` (torch's zip format) rewritten with its first storage declaring ``numel`` elements."""
    with zipfile.ZipFile(source) as z, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in z.infolist():
            data = z.read(info.filename)
            out.writestr(info.filename, _patched_numel(data, numel) if info.filename.endswith("data.pkl") else data)
    return target


def forge_directory(source: Path, target: Path, numel: int) -> Path:
    """``source``'s first storage declaring ``numel`` float32s, and the zip directory claiming its entry holds them."""
    forge_declared_size(source, target, numel)
    with zipfile.ZipFile(target) as z:
        name = next(i.filename for i in z.infolist() if "/data/" in i.filename).encode()
    data = bytearray(target.read_bytes())
    central = data.rindex(name) - 46  # the central directory's record of the entry
    assert data[central : central + 4] == b"PK\x01\x02"
    data[central + 20 : central + 28] = struct.pack("<II", 4 * numel, 4 * numel)  # compressed, uncompressed sizes
    target.write_bytes(bytes(data))
    return target


def big_tensor_checkpoint(path: Path, legacy: bool = False) -> Path:
    """A sepnet-like checkpoint whose first storage holds 70,000 float32s (its count a 4-byte BININT)."""
    torch.save(
        {"state_dict": {"separator.model.w": torch.zeros(70_000)}, "sepnet": {"config": {}}},
        path, _use_new_zipfile_serialization=not legacy,
    )  # fmt: skip
    return path


def test_an_honest_rewritten_zip_still_loads(tmp_path):
    honest = forge_declared_size(big_tensor_checkpoint(tmp_path / "a.ckpt"), tmp_path / "b.ckpt", 70_000)
    assert checkpoint.read_checkpoint(honest)["state_dict"]["separator.model.w"].shape == (70_000,)
    legacy = big_tensor_checkpoint(tmp_path / "legacy.ckpt", legacy=True)
    assert checkpoint.read_checkpoint(legacy)["state_dict"]["separator.model.w"].shape == (70_000,)


def hostile_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (crafted checkpoint, what its refusal must say)."""
    folder.mkdir(parents=True, exist_ok=True)
    big = big_tensor_checkpoint(folder / "big.ckpt")
    legacy = folder / "legacy6gb.ckpt"
    legacy.write_bytes(_patched_numel(big_tensor_checkpoint(folder / "legacy.ckpt", legacy=True).read_bytes(), 1_500_000_000))
    exceeds = "exceeds what the file holds"
    return {
        "hidden_size=1e7": (craft(folder / "h.ckpt", stored={"model": {**CRNN, "hidden_size": 10**7}}), "shape-mismatched"),
        "crnn num_layers=1e4": (craft(folder / "l.ckpt", stored={"model": {**CRNN, "num_layers": 10**4}}), "builds more than"),
        "band-split num_layers=1e4": (
            craft(folder / "bl.ckpt", BAND_SPLIT, stored={"model": {**BAND_SPLIT, "num_layers": 10**4}}), "builds more than",
        ),
        "1e7 bands": (
            craft(folder / "b.ckpt", BAND_SPLIT, stored={"model": {**BAND_SPLIT, "band_widths": [1], "band_counts": [10**7]}}),
            "the bands cover 10000000 bins",
        ),
        "n_bins=1e7": (
            craft(folder / "nb.ckpt", BAND_SPLIT, stored={
                "model": {**BAND_SPLIT, "n_bins": 10**7, "band_widths": [1], "band_counts": [10**7]},
            }),
            "model.n_bins is 10000000 but frontend.n_bins is 64",
        ),
        "encoder 1e4 blocks": (
            craft(folder / "e.ckpt", stored={"model": {**CRNN, "encoder_channels": [4] * 10**4}}), "n_bins=64 must be divisible",
        ),
        "hop_length=1": (craft(folder / "hop.ckpt", stored={"frontend": {**FRONT_END, "hop_length": 1}}), "hop_length must be in 8..126"),
        "n_fft=2^30": (craft(folder / "fft.ckpt", stored={"frontend": {**FRONT_END, "n_fft": 2**30}}), "n_fft must be in 16..65536"),
        "sample_rate=1e9": (
            craft(folder / "sr.ckpt", stored={"frontend": {**FRONT_END, "sample_rate": 10**9}}), "sample_rate must be in 1000..384000",
        ),
        "hidden_size=-5": (craft(folder / "neg.ckpt", stored={"model": {**CRNN, "hidden_size": -5}}), "RuntimeError: Trying to create"),
        "6 GB declared in a zip": (forge_declared_size(big, folder / "zip6gb.ckpt", 1_500_000_000), exceeds),
        "4 GB claimed by the directory": (forge_directory(big, folder / "dir4gb.ckpt", 1_000_000_000), exceeds),
        "6 GB declared, legacy format": (legacy, exceeds),
    }


def test_crafted_checkpoints_are_refused_in_one_line_within_5_s_and_1_gb(tmp_path):
    files = hostile_files(tmp_path / "hostile")
    script = textwrap.dedent(f"""
        import json, resource, sys, time
        from sepnet.checkpoints import checkpoint
        from sepnet.errors import SepnetError
        checkpoint.load({str(craft(tmp_path / "warm.ckpt"))!r})  # imports and first-call costs are the baseline
        results = {{}}
        for name, path in json.loads(sys.argv[1]).items():
            before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
            try:
                checkpoint.load(path)
                said = None
            except SepnetError as exc:
                said = str(exc)
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            results[name] = [said, time.perf_counter() - start, grown]
        print(json.dumps(results))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps({k: str(p) for k, (p, _) in files.items()})],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for name, (path, expected) in files.items():
        said, seconds, megabytes = results[name]
        assert said is not None, f"{name}: loaded"
        assert "\n" not in said and f"'{path}'" in said and expected in said, f"{name}: {said}"
        assert "may be truncated" not in said
        assert seconds < SECONDS and megabytes < MEGABYTES, f"{name}: {seconds:.1f} s, {megabytes:.0f} MB"


def test_lineage_leaves_out_a_checkpoint_declaring_more_than_it_holds(tmp_path, caplog):
    forged, honest = (tmp_path / "outputs" / name / "2026-01-01_00-00-00" / "checkpoints" for name in ("forged", "honest"))
    forged.mkdir(parents=True)
    honest.mkdir(parents=True)
    forge_declared_size(big_tensor_checkpoint(tmp_path / "big.ckpt"), forged / "best.ckpt", 1_500_000_000)
    craft(honest / "best.ckpt")
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        graph = collect_lineage(tmp_path / "outputs")
    assert time.perf_counter() - start < SECONDS
    assert len(graph.nodes) == 1
    assert any("left out" in r.getMessage() and "exceeds what the file holds" in r.getMessage() for r in caplog.records)


# -- 8. chunk_seconds -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["separate", "eval"])
@pytest.mark.parametrize("seconds", [1e9, 601.0])
def test_chunk_seconds_beyond_ten_minutes_is_one_line_not_a_memory_error(prefix, seconds):
    knobs = OmegaConf.load(Path(CONFIG_DIR) / "inference" / "default.yaml")
    knobs.chunk_seconds, knobs.device = seconds, "cpu"
    separator = checkpoint.build_separator({"model": CRNN, "frontend": FRONT_END})
    with pytest.raises(SepnetError) as exc:
        build_runner(separator, knobs, prefix)
    one_line(exc, f"{prefix}.chunk_seconds={seconds!r} is not valid; set it to a number of seconds in (0, 600]")
    knobs.chunk_seconds = 600.0
    assert build_runner(separator, knobs, prefix).chunk == 600 * 8000
