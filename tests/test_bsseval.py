"""sepnet.evaluation.bsseval against museval itself (museval and ffmpeg are installed in CI).

Signals are short (4.5 s at 44.1 kHz, 2 stereo sources) because every museval
call solves its 2048x2048 filter system and projects every frame (~2 s each).
"""

from __future__ import annotations

import numpy as np
import pytest

from sepnet.evaluation.bsseval import framewise_sdr, new_sdr, track_sdr

SR = 44100
SECONDS = 4.5  # 4 full 1 s frames + a partial one museval drops
TOL_DB = 1e-6


@pytest.fixture(scope="module")
def museval():
    return pytest.importorskip("museval", reason="museval (and ffmpeg/ffprobe on PATH) is needed to compare against")


def _music_like(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Two stereo 'stems' ``(2, n, 2)``: a harmonic tone with vibrato and note envelopes, and noise-burst drums."""
    t = np.arange(n) / sr
    f0 = 196.0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    notes = 0.5 + 0.5 * np.cos(2 * np.pi * 2 * t) ** 2  # two notes per second
    tone = tone * notes
    tone = np.stack([0.8 * tone, 0.6 * np.roll(tone, 7)], axis=1)  # pan + tiny inter-channel delay

    drums = np.zeros(n)
    for onset in np.arange(0, n, sr // 4):
        k = min(n - onset, sr // 8)
        drums[onset : onset + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / (0.02 * sr))
    drums = np.stack([drums, 0.9 * drums + 0.05 * rng.standard_normal(n)], axis=1)
    return np.stack([tone, 0.5 * drums])


def _estimate(rng: np.random.Generator, refs: np.ndarray) -> np.ndarray:
    """Plausible separator output: filtered target + leaked interference + noise."""
    filtered = refs + 0.3 * np.roll(refs, 1, axis=1) - 0.1 * np.roll(refs, 3, axis=1)
    interference = 0.15 * refs[::-1]
    return 0.9 * filtered + interference + 0.01 * rng.standard_normal(refs.shape)


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(1234)
    n = int(SECONDS * SR)
    refs = _music_like(rng, n, SR)
    refs[1, SR : 2 * SR] = 0.0  # drums silent for exactly frame 1 -> museval: frame 1 NaN for ALL sources
    ests = _estimate(rng, refs)
    ests[1, SR : 2 * SR] = 1e-3 * rng.standard_normal((SR, 2))  # estimate leaks into the silent frame
    return refs, ests


def _assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(theirs)
    assert np.max(np.abs(ours[ok] - theirs[ok])) < TOL_DB


def test_matches_museval_v4(museval, signals):
    refs, ests = signals
    theirs = museval.evaluate(refs, ests, win=SR, hop=SR)[0]
    ours = framewise_sdr(refs, ests, SR)
    _assert_same(ours, theirs)
    assert ours.shape == (2, 4)  # trailing half frame dropped, as museval does
    assert np.isnan(ours[:, 1]).all() and not np.isnan(ours[:, [0, 2, 3]]).any()


def test_matches_museval_overlapping_frames(museval, signals):
    refs, ests = signals
    theirs = museval.evaluate(refs, ests, win=SR, hop=SR // 2)[0]
    _assert_same(framewise_sdr(refs, ests, SR, win=1.0, hop=0.5), theirs)


def test_shorter_estimate_is_zero_padded(museval, signals):
    refs, ests = signals
    short = ests[:, : int(2.5 * SR)]  # frames 3 and 4 of the estimate become all-zero -> NaN
    theirs = museval.evaluate(refs, short, win=SR, hop=SR)[0]
    ours = framewise_sdr(refs, short, SR)
    _assert_same(ours, theirs)
    assert np.isnan(ours[:, 3]).all()


def test_longer_float32_estimate_is_truncated(museval, signals):
    refs, ests = signals
    longer = np.concatenate([ests, ests[:, :1234]], axis=1).astype(np.float32)
    theirs = museval.evaluate(refs, longer, win=SR, hop=SR)[0]
    _assert_same(framewise_sdr(refs, longer, SR), theirs)


def test_window_longer_than_track(museval, signals):
    refs, ests = (x[:, : SR // 2] for x in signals)
    theirs = museval.evaluate(refs, ests, win=SR, hop=SR)[0]  # one frame: the whole half second
    ours = framewise_sdr(refs, ests, SR)
    assert ours.shape == (2, 1)
    _assert_same(ours, theirs)


def test_channel_sum_silence(museval, signals):
    # left = -right in one frame: museval sums the channels before its zero test,
    # so that frame counts as silent and is NaN for every source
    refs, ests = (x[:, : 2 * SR].copy() for x in signals)
    refs[1, SR:] = signals[0][1, 2 * SR : 3 * SR]  # frame 1 of the drums must not be plain silence here
    ests[0, SR:, 1] = -ests[0, SR:, 0]
    theirs = museval.evaluate(refs, ests, win=SR, hop=SR)[0]
    ours = framewise_sdr(refs, ests, SR)
    _assert_same(ours, theirs)
    assert np.isnan(ours[:, 1]).all() and not np.isnan(ours[:, 0]).any()


@pytest.mark.parametrize("which", ["reference", "estimate"])
def test_fully_silent_source_raises_like_museval(museval, signals, which):
    refs, ests = (x.copy() for x in signals)
    (refs if which == "reference" else ests)[1] = 0.0
    with pytest.raises(ValueError):
        museval.evaluate(refs, ests, win=SR, hop=SR)
    with pytest.raises(ValueError, match=which):
        framewise_sdr(refs, ests, SR)
    assert np.isnan(framewise_sdr(refs, ests, SR, on_silent="nan")).all()


def test_perfect_frame_is_inf(signals):
    # museval's error term goes through its projections, so it returns ~300-400 dB of
    # rounding noise here instead; _safe_db's intent (zero error -> +inf) is kept.
    refs, ests = (x.copy() for x in signals)
    ests[:, :SR] = refs[:, :SR]
    sdr = framewise_sdr(refs, ests, SR)
    assert np.isposinf(sdr[:, 0]).all()


def test_track_sdr_matches_museval_trackstore(museval):
    frames = np.array([[1.0, np.inf, np.nan, 3.0, 2.5], [np.nan] * 5, [-4.0, 7.0, np.nan, np.nan, -np.inf]])
    store = museval.TrackStore(win=1, hop=1, track_name="t")
    for i, row in enumerate(frames):
        store.add_target(f"s{i}", {m: row.tolist() for m in ("SDR", "SIR", "ISR", "SAR")})
    df = store.df
    theirs = df[df.metric == "SDR"].groupby("target").score.median().reindex(["s0", "s1", "s2"]).to_numpy()
    np.testing.assert_allclose(track_sdr(frames), theirs, equal_nan=True)
    np.testing.assert_allclose(track_sdr(frames), [2.5, np.nan, 1.5], equal_nan=True)


def test_new_sdr(signals):
    refs, ests = signals
    expected = [
        10 * np.log10((np.sum(s**2) + 1e-7) / (np.sum((s - e) ** 2) + 1e-7)) for s, e in zip(refs, ests, strict=True)
    ]
    np.testing.assert_allclose(new_sdr(refs, ests), expected, rtol=1e-12)
    energy = np.sum(refs**2, axis=(1, 2))
    np.testing.assert_allclose(new_sdr(refs, refs), 10 * np.log10((energy + 1e-7) / 1e-7), rtol=1e-12)
    assert new_sdr(np.zeros((1, 10, 2)), np.zeros((1, 10, 2))).tolist() == [0.0]


def test_import_does_not_need_museval():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['museval'] = None; import sepnet.evaluation.bsseval as b; "
        "print(b.framewise_sdr.__name__, 'museval' in sys.modules and sys.modules['museval'] is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["framewise_sdr", "False"]
