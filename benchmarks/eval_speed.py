"""museval.evaluate vs sepnet.evaluation.bsseval.framewise_sdr on one synthetic track.

Makes a stereo 44.1 kHz track of 4 music-like sources (4 minutes by default) and
separator-like estimates, scores them with both, and prints the largest SDR
difference over frames museval scores, whether the NaN patterns agree, both wall
times and the speed-up. museval computes SDR, ISR, SIR and SAR together; that is
the price users pay today for its SDR.

    python benchmarks/eval_speed.py              # full 4 minutes (museval takes minutes)
    python benchmarks/eval_speed.py --seconds 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sepnet.evaluation.bsseval import framewise_sdr, track_sdr

STEMS = ("bass", "drums", "other", "vocals")


def make_track(seconds: float, sr: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """References and estimates, both ``(4, samples, 2)`` float32 like decoded audio."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    refs = np.zeros((4, n, 2))
    beat = sr // 2
    # bass: low harmonic tone, one note per beat
    f = 55.0 * 2 ** (rng.integers(0, 12, n // beat + 1) / 12)
    phase = 2 * np.pi * np.cumsum(np.repeat(f, beat)[:n]) / sr
    env = np.exp(-(np.arange(n) % beat) / (0.3 * sr))
    refs[0] = (np.sin(phase) + 0.3 * np.sin(2 * phase))[:, None] * env[:, None] * [0.8, 0.8]
    # drums: decaying noise bursts on every half beat
    for onset in range(0, n, beat // 2):
        k = min(n - onset, beat // 2)
        hit = rng.standard_normal((k, 2)) * np.exp(-np.arange(k) / (0.03 * sr))[:, None]
        refs[1, onset : onset + k] += 0.6 * hit
    # other: chord of slowly detuned sines with tremolo
    refs[2] = (
        sum(np.sin(2 * np.pi * f0 * (1 + 0.002 * np.sin(0.3 * t)) * t) for f0 in (261.6, 329.6, 392.0))[:, None]
        * (0.3 + 0.1 * np.sin(2 * np.pi * 4 * t))[:, None]
        * [0.6, 0.4]
    )
    # vocals: vibrato tone with phrase gaps (exact silence -> museval NaN frames)
    f0 = 220 * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    vphase = 2 * np.pi * np.cumsum(f0) / sr
    phrases = (np.floor(t / 4) % 4 != 3).astype(float)
    refs[3] = (sum(np.sin(k * vphase) / k for k in range(1, 8)) * 0.4 * phrases)[:, None] * [0.7, 0.7]

    filtered = refs + 0.3 * np.roll(refs, 1, axis=1) - 0.1 * np.roll(refs, 5, axis=1)
    leak = 0.1 * (refs.sum(0, keepdims=True) - refs)
    ests = 0.9 * filtered + leak + 0.01 * rng.standard_normal(refs.shape)
    return refs.astype(np.float32), ests.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="track length (default: 240 = 4 minutes)")
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-museval", action="store_true", help="time sepnet only")
    args = parser.parse_args()

    sr = args.sample_rate
    refs, ests = make_track(args.seconds, sr, args.seed)
    print(f"track: {args.seconds:g} s, {sr} Hz, {refs.shape[0]} sources x {refs.shape[2]} channels")

    framewise_sdr(refs[:, :sr], ests[:, :sr], sr)  # warm-up (imports, allocator)
    t0 = time.perf_counter()
    ours = framewise_sdr(refs, ests, sr)
    t_ours = time.perf_counter() - t0
    print(f"sepnet.evaluation.bsseval.framewise_sdr: {t_ours:.3f} s")
    print("sepnet track SDR (median):", dict(zip(STEMS, np.round(track_sdr(ours), 3).tolist(), strict=True)))
    if args.skip_museval:
        return

    import museval  # slow import (musdb -> stempeg checks ffmpeg); kept out of the timing

    t0 = time.perf_counter()
    theirs = museval.evaluate(refs, ests, win=sr, hop=sr)[0]
    t_museval = time.perf_counter() - t0
    print(f"museval.evaluate (v4, all 4 metrics): {t_museval:.1f} s")

    same_nan = ours.shape == theirs.shape and np.array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(theirs) & ~np.isnan(ours) if ours.shape == theirs.shape else np.zeros(0, bool)
    diff = float(np.max(np.abs(ours[ok] - theirs[ok]))) if ok.any() else float("nan")
    print(f"frames: {theirs.shape[1]}, NaN frames: {int(np.isnan(theirs[0]).sum())}")
    print(f"NaN pattern equal: {same_nan}")
    print(f"max |SDR diff| over non-NaN frames: {diff:.3e} dB")
    print(f"speed-up: {t_museval / t_ours:.0f}x")


if __name__ == "__main__":
    main()
