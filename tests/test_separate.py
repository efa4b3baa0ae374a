"""sepnet.separate on real files, the overlap-add chunking behind it, and the Wiener post-filter."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import compose_config

from sepnet.commands.separation import _read_ahead
from sepnet.dsp.frontend import SpectralFrontEnd
from sepnet.dsp.wiener import wiener
from sepnet.errors import SepnetError
from sepnet.inference.overlap_add import OverlapAdd
from sepnet.inference.separator import Separator
from sepnet.models import SeparationModel
from sepnet.separate import Job, find_jobs, run_separation, safe_name, separate_file

STEMS = ["bass", "drums", "other", "vocals"]


class ConstantMasks(SeparationModel):
    """A stand-in model: the same mask value for every stem, bin and frame."""

    def __init__(self, target_stems, value=0.5, n_bins=512):
        super().__init__()
        self.target_stems, self.n_bins, self.audio_channels = list(target_stems), n_bins, 2
        self.value = value

    def forward(self, x):
        b, c, f, t = x.shape
        return torch.full((b, len(self.target_stems), c, f, t), self.value)


def constant_separator(stems, rate=8000, value=0.5):
    return Separator(SpectralFrontEnd(sample_rate=rate), ConstantMasks(stems, value)).eval()


def separate(ckpt, input_path, out, tmp_path, *overrides):
    cfg = compose_config("separate", [f"ckpt={ckpt}", f"input={input_path}", f"out={out}", *overrides], tmp_path / "run")
    return run_separation(cfg)


# -- the entry point on real files ------------------------------------------------------


def test_separate_short_mono_8k_file(tiny_checkpoint, tmp_path):
    rate, n = 8000, 1600  # 0.2 s: far shorter than a chunk
    t = np.arange(n) / rate
    sf.write(tmp_path / "beep.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    written = separate(tiny_checkpoint, tmp_path / "beep.wav", tmp_path / "out", tmp_path)
    assert sorted(p.name for p in written) == [f"{s}.wav" for s in STEMS]
    for path in written:
        assert path.parent == tmp_path / "out" / "beep"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (rate, 1, n)
        audio, _ = sf.read(path)
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_separate_48k_stereo_flac(tiny_checkpoint, tmp_path):
    rate, n = 48000, int(6.3 * 48000)  # longer than a chunk: overlap-add and streaming resampling at work
    rng = np.random.default_rng(0)
    t = np.arange(n) / rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(n)], 1)
    sf.write(tmp_path / "song.flac", audio.astype(np.float32), rate)
    written = separate(tiny_checkpoint, tmp_path / "song.flac", tmp_path / "out", tmp_path, "separate.chunk_seconds=2.5")
    assert len(written) == 4
    for path in written:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (rate, 2, n)
    assert not list((tmp_path / "out").rglob(".*.tmp"))  # no temporary file left behind


def test_single_target_model_writes_accompaniment_that_completes_the_input(tmp_path):
    rate, n = 44100, int(3.7 * 44100)
    rng = np.random.default_rng(1)
    mixture = (0.2 * rng.standard_normal((n, 2))).astype(np.float32)
    sf.write(tmp_path / "mix.wav", mixture, rate, subtype="FLOAT")
    runner = OverlapAdd(constant_separator(["vocals"], rate=22050), chunk_seconds=1.0, overlap=0.25, device="cpu")
    paths = separate_file(runner, Job(tmp_path / "mix.wav", tmp_path / "out" / "mix"), tmp_path / "out", 1.0, accompaniment=True)
    assert [p.stem for p in paths] == ["vocals", "accompaniment"]
    vocals, r1 = sf.read(paths[0], dtype="float32")
    accompaniment, r2 = sf.read(paths[1], dtype="float32")
    assert r1 == r2 == rate and vocals.shape == accompaniment.shape == mixture.shape
    # accompaniment = input - target at the input's own rate: they sum back to the input exactly,
    # high band included (the model runs at 22.05 kHz)
    np.testing.assert_allclose(vocals + accompaniment, mixture, atol=1e-6)
    # and the target is the half mask's output: half the mixture's band below 11 kHz
    assert np.std(vocals) == pytest.approx(0.5 * np.std(mixture) / np.sqrt(2), rel=0.1)


def test_folder_input_writes_the_musdb_estimates_layout(tiny_checkpoint, tiny_data_root, tmp_path):
    musdb_like = tmp_path / "musdb"
    shutil.copytree(tiny_data_root / "test", musdb_like / "test")
    out = tmp_path / "estimates"
    separate(tiny_checkpoint, musdb_like, out, tmp_path)
    names = sorted(d.name for d in (tiny_data_root / "test").iterdir() if d.is_dir())
    assert sorted(d.name for d in (out / "test").iterdir()) == names
    for name in names:
        assert sorted(p.name for p in (out / "test" / name).iterdir()) == [f"{s}.wav" for s in STEMS]
    musdb = pytest.importorskip("musdb")  # what museval.eval_mus_dir reads the estimates with
    assert [t.name for t in musdb.DB(root=str(out), is_wav=True).tracks] == names


def test_track_names_cannot_escape_the_output_folder(tmp_path):
    for hostile in ("../../etc/passwd", "..", "...", "a/b\\c", ".hidden", "x\x00y", "  "):
        name = safe_name(hostile)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name.strip()
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "..sneaky.wav", np.zeros(800, np.float32) + 0.1, 8000)
    jobs = find_jobs(tmp_path / "in")
    assert [str(j.folder) for j in jobs] == ["test/sneaky"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SepnetError, match="no audio files"):
        find_jobs(tmp_path / "empty")


def test_read_ahead_keeps_order_raises_errors_and_closes_when_left_early():
    assert list(_read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise SepnetError("'x.wav' is not a readable audio file")

    with pytest.raises(SepnetError, match="x.wav"):
        list(_read_ahead(broken()))

    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    for i in _read_ahead(endless(), depth=2):
        if i == 3:
            break
    assert closed == [True]


# -- overlap-add ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_overlap_add_streams_exactly_like_whole_track_chunking(overlap):
    sep = constant_separator(["vocals", "bass"])
    rng = np.random.default_rng(2)
    for length in (100, 7999, 8000, 8001, 30011):
        x = rng.standard_normal((2, length)).astype(np.float32)
        runner = OverlapAdd(sep, chunk_seconds=1.0, overlap=overlap, batch_size=3, device="cpu")
        whole = runner.separate(x)
        assert whole.shape == (2, 2, length)
        blocks = np.split(x, np.sort(rng.integers(0, length, 6)), axis=1)  # odd block sizes, empty ones too
        streamed = np.concatenate(list(runner.stream(blocks)), axis=-1)
        np.testing.assert_array_equal(streamed, whole)
        with torch.no_grad():
            reference = sep(torch.from_numpy(x)[None])[0].numpy()
        # chunk seams only differ from one whole-track pass by STFT edge effects
        assert np.abs(whole - reference).max() < (0.05 if overlap == 0 else 0.01)


def test_overlap_add_runs_a_model_without_a_batched_recurrent_stage_one_chunk_at_a_time():
    """Seven chunks (6 full + the end-aligned last) in batches of 4: a model that does not batch a recurrent
    stage sees one chunk per forward pass, so memory follows one chunk whatever separate.batch_size is."""
    calls = []

    class Counting(ConstantMasks):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    sep = Separator(SpectralFrontEnd(sample_rate=8000), Counting(["vocals"])).eval()
    runner = OverlapAdd(sep, chunk_seconds=1.0, overlap=0.0, batch_size=4, device="cpu")
    x = np.random.default_rng(0).standard_normal((2, 6 * 8000 + 500)).astype(np.float32)
    out = np.concatenate(list(runner.stream(np.split(x, [5000, 30000], axis=1))), axis=-1)
    assert calls == [1] * 7  # 6 full chunks + the end-aligned one
    np.testing.assert_allclose(out, runner.separate(x), atol=1e-6)


def test_overlap_add_of_a_crnn_does_not_depend_on_the_batch_and_yields_small_blocks():
    """A CRNN's chunks share one BiLSTM batch; each chunk's estimates are its own, whatever the batch."""
    from sepnet.inference.overlap_add import OUTPUT_BLOCK
    from sepnet.models import CRNN

    torch.manual_seed(0)
    model = CRNN(["vocals", "bass"], hidden_size=8, num_layers=2, encoder_channels=(4, 8), n_bins=512,
                 audio_channels=2, dropout=0.0)
    sep = Separator(SpectralFrontEnd(sample_rate=8000), model).eval()
    x = np.random.default_rng(0).standard_normal((2, 6 * 8000 + 500)).astype(np.float32)
    outputs = {}
    for batch in (1, 4, 16):
        blocks = list(OverlapAdd(sep, chunk_seconds=1.0, overlap=0.25, batch_size=batch, device="cpu").stream([x]))
        assert max(b.shape[-1] for b in blocks) <= OUTPUT_BLOCK
        outputs[batch] = np.concatenate(blocks, axis=-1)
    assert outputs[1].shape == (2, 2, x.shape[1])
    np.testing.assert_allclose(outputs[4], outputs[1], atol=1e-5)
    np.testing.assert_allclose(outputs[16], outputs[1], atol=1e-5)


def test_overlap_add_output_keeps_pace_with_an_endless_input():
    """Memory is bounded: at any time at most a chunk plus a batch of hops is held back."""
    runner = OverlapAdd(constant_separator(["vocals"]), chunk_seconds=0.5, overlap=0.2, batch_size=2, device="cpu")
    fed = 0

    def endless():
        nonlocal fed
        while True:
            fed += 1000
            yield np.ones((2, 1000), np.float32)

    emitted = 0
    for out in runner.stream(endless()):
        emitted += out.shape[-1]
        assert fed - emitted <= runner.chunk + runner.batch_size * runner.hop + 1000
        if emitted > 100_000:
            break


# -- Wiener ---------------------------------------------------------------------------------


def test_wiener_estimates_sum_to_the_mixture_and_keep_shapes():
    rng = torch.Generator().manual_seed(0)
    mixture = torch.randn(1, 2, 65, 40, dtype=torch.complex64, generator=rng)
    masks = torch.rand(1, 4, 2, 65, 40, generator=rng)
    estimates = masks * mixture[:, None]
    refined = wiener(estimates, mixture, iterations=2, block_frames=16)
    assert refined.shape == estimates.shape and refined.dtype == estimates.dtype
    torch.testing.assert_close(refined.sum(1), mixture, atol=1e-3, rtol=1e-3)
    assert torch.equal(wiener(estimates, mixture, iterations=0), estimates)
    # blockwise solving is an implementation detail: the result does not depend on the block size
    torch.testing.assert_close(wiener(estimates, mixture, 2, block_frames=7), refined, atol=1e-5, rtol=1e-4)


def test_separator_with_wiener_runs_end_to_end():
    sep = constant_separator(["vocals"], value=0.7)
    sep.wiener_iters = 1
    with torch.no_grad():
        out = sep(torch.randn(1, 2, 8000))
    assert out.shape == (1, 1, 2, 8000) and torch.isfinite(out).all()
