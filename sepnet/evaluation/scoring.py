"""Scores of separated tracks: BSSEval v4 SDR, MDX new SDR and gain tracking, per track and over tracks.

Per track and stem (:func:`score_track`):

* ``sdr``: BSSEval v4 framewise SDR (:mod:`sepnet.evaluation.bsseval`, museval-exact; the
  target stems of a track are scored jointly, as ``museval.eval_mus_track``
  does), median over frames with NaN frames skipped;
* ``new_sdr``: the MDX "new SDR" of the whole track;
* ``gain``: the least-squares optimal output gain ``g* = <s, ŝ> / <ŝ, ŝ>``;
* ``sdr_gain``: ``sdr`` of ``g* · ŝ`` (what a perfect per-track gain would give).

A stem whose reference (or estimate) is silent over the whole track cannot be
scored by BSSEval (museval refuses such a track): it is NaN for ``sdr`` and
``sdr_gain``, flagged ``silent_reference``/``silent_estimate``, and the other stems
of the track are scored without it. ``new_sdr`` stays defined.

Over tracks (:func:`aggregate`): median and mean of each metric with NaN tracks
left out and counted (SiSEC reports the median over tracks of the per-track medians).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from sepnet.evaluation.bsseval import framewise_sdr, new_sdr, track_sdr

TRACK_METRICS = ("sdr", "new_sdr", "gain", "sdr_gain")
"""Per-track metrics of every stem, in the order of ``per_track.csv``."""

FULL_METRICS = ("isr", "sir", "sar")
"""Added (median over frames) by ``eval.full_metrics`` through museval."""


def is_silent(signal: np.ndarray) -> bool:
    """museval's whole-track silence test on ``(channels, samples)``: the channel sum is 0 everywhere."""
    return not np.any(np.sum(signal, axis=0, dtype=np.float64) != 0)


def optimal_gain(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``<s, ŝ> / <ŝ, ŝ>`` over all channels and samples (NaN for a silent estimate)."""
    s = reference.astype(np.float64, copy=False).ravel()
    e = estimate.astype(np.float64, copy=False).ravel()
    energy = float(np.dot(e, e))
    return float(np.dot(s, e)) / energy if energy > 0 else math.nan


def _joint_sdr(references: np.ndarray, estimates: np.ndarray, index: list[int], sample_rate: int, win: float, hop: float) -> np.ndarray:
    """Per-track SDR of the stems in ``index``, scored jointly; NaN elsewhere. Inputs (S, C, T)."""
    out = np.full(len(references), np.nan)
    if index:
        frames = framewise_sdr(
            references[index].transpose(0, 2, 1), estimates[index].transpose(0, 2, 1), sample_rate, win, hop, on_silent="nan"
        )
        out[index] = track_sdr(frames)
    return out


def score_track(
    references: np.ndarray,
    estimates: np.ndarray,
    stems: Sequence[str],
    sample_rate: int,
    win: float = 1.0,
    hop: float = 1.0,
) -> dict[str, dict]:
    """Score one separated track.

    Args:
        references: (stems, channels, samples) true stems.
        estimates: (stems, channels, samples) separated stems, same order.
        stems: names of the stems, in that order.
        sample_rate: samples per second of both.
        win, hop: BSSEval frame length and hop in seconds.

    Returns:
        ``{stem: {"sdr", "new_sdr", "gain", "sdr_gain", "silent_reference", "silent_estimate"}}``.
    """
    silent_ref = [is_silent(r) for r in references]
    silent_est = [is_silent(e) for e in estimates]
    scorable = [j for j in range(len(stems)) if not (silent_ref[j] or silent_est[j])]
    sdr = _joint_sdr(references, estimates, scorable, sample_rate, win, hop)
    gains = np.array([optimal_gain(r, e) for r, e in zip(references, estimates)])
    with_gain = estimates * np.nan_to_num(gains, nan=1.0)[:, None, None].astype(np.float32)
    sdr_gain = _joint_sdr(references, with_gain, [j for j in scorable if gains[j] != 0], sample_rate, win, hop)
    nsdr = new_sdr(references.transpose(0, 2, 1), estimates.transpose(0, 2, 1))
    return {
        stem: {
            "sdr": float(sdr[j]),
            "new_sdr": float(nsdr[j]),
            "gain": float(gains[j]),
            "sdr_gain": float(sdr_gain[j]),
            "silent_reference": silent_ref[j],
            "silent_estimate": silent_est[j],
        }
        for j, stem in enumerate(stems)
    }


def _stat(values: np.ndarray, fn) -> float:
    values = values[np.isfinite(values)]
    return float(fn(values)) if len(values) else math.nan


def aggregate(per_track: Iterable[dict[str, dict]], stems: Sequence[str]) -> dict[str, dict]:
    """Median and mean over tracks of every metric, per stem.

    Args:
        per_track: one :func:`score_track` result per track (full metrics included if present).

    Returns:
        ``{stem: {"<metric>_median", "<metric>_mean" for each metric, "tracks", "nan_tracks",
        "silent_reference_tracks", "silent_estimate_tracks"}}``; ``nan_tracks`` counts the
        tracks left out of the SDR median.
    """
    per_track = list(per_track)
    result = {}
    for stem in stems:
        rows = [t[stem] for t in per_track]
        entry: dict[str, float | int] = {}
        metrics = [m for m in (*TRACK_METRICS, *FULL_METRICS) if rows and m in rows[0]]
        for metric in metrics:
            values = np.array([r[metric] for r in rows], dtype=np.float64)
            entry[f"{metric}_median"] = _stat(values, np.median)
            entry[f"{metric}_mean"] = _stat(values, np.mean)
        entry["tracks"] = len(rows)
        entry["nan_tracks"] = sum(1 for r in rows if not math.isfinite(r["sdr"]))
        entry["silent_reference_tracks"] = sum(1 for r in rows if r["silent_reference"])
        entry["silent_estimate_tracks"] = sum(1 for r in rows if r["silent_estimate"])
        result[stem] = entry
    return result


def mean_over_stems(per_stem: dict[str, dict], key: str) -> float:
    """Mean of ``per_stem[stem][key]`` over stems, NaN stems skipped (NaN if all are)."""
    values = np.array([v[key] for v in per_stem.values()], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
