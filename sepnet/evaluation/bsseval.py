"""BSSEval v4 SDR, identical to museval's, without museval's cost.

Why this is exact
-----------------
``museval.evaluate(refs, ests, win, hop, mode="v4")`` calls
``metrics.bss_eval(..., framewise_filters=False, bsseval_sources_version=False)``
(museval 0.4.1, ``museval/__init__.py`` ``evaluate``, lines 305-350). For every
frame and source, ``_bss_decomp_mtifilt`` (``museval/metrics.py`` lines 485-501)
splits the estimate into::

    s_true   = zeropad(s, 511)                       # the reference frame
    e_spat   = P_j(s)   - s_true                      # 512-tap projection on s_j alone
    e_interf = P_all(s) - s_true - e_spat             # projection on all references
    e_artif  = -s_true - e_spat - e_interf + zeropad(ŝ)

and ``_bss_crit`` (lines 636-656, images version) returns::

    SDR = _safe_db(sum(s_true**2), sum((e_spat + e_interf + e_artif)**2))

The three error terms telescope: ``e_spat + e_interf + e_artif = ŝ - s``. The
distortion filters (``_compute_projection_filters``, the Gram-matrix solve that
is almost all of museval's run time) cancel out of the SDR; they only matter for
ISR, SIR and SAR. So per frame ``t`` and source ``j``::

    SDR[j, t] = 10 log10( Σ_{n∈t, c} s_j[n, c]² / Σ_{n∈t, c} (ŝ_j[n, c] - s_j[n, c])² )

summed over both channels, with museval's conventions reproduced here:

* lengths (``pad_or_truncate``, ``__init__.py`` lines 271-302): an estimate
  longer than the reference is cut to the reference's length, a shorter one is
  zero-padded at the end;
* frames (``Framing``, ``metrics.py`` lines 447-482): ``win`` and ``hop`` in
  samples are ``int(seconds * rate)`` as in ``eval_mus_track``; frame ``t`` is
  ``[t*hop, t*hop + win)``; there are ``floor((L - win + hop) / hop)`` of them
  if ``win < L`` (a trailing partial frame is dropped), else one frame over the
  whole signal;
* NaN (``bss_eval`` lines 302-323, ``_any_source_silent`` lines 134-138): a
  source is "silent" in a frame when the sum over its *channels* is exactly 0
  at every sample of the frame (so a left = -right frame counts as silent). If
  ANY reference or ANY estimate is silent in a frame, that frame is NaN for
  EVERY source;
* a reference or estimate that is silent over the whole (padded) track makes
  museval raise ``ValueError`` (``validate``, lines 93-115); we do the same
  unless ``on_silent="nan"``, which gives the all-NaN result the frame rule
  implies;
* ``_safe_db`` (lines 659-665): a zero error energy gives ``+inf``.

Agreement with museval is at float64 rounding level (museval forms ``ŝ - s``
through the projections, so its error energy carries rounding of order
``eps * |s|``): ~1e-12 dB on ordinary frames. The one visible difference: a frame
whose estimate equals its reference bit for bit is ``+inf`` here, while museval
returns a large finite number (~300 dB) made of that rounding noise.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from sepnet.evaluation.metrics import whole_sdr

__all__ = ["framewise_sdr", "new_sdr", "track_sdr"]


def _as_3d(x: np.ndarray) -> np.ndarray:
    """``(sources, samples[, channels])`` -> ``(sources, samples, channels)``; mono gets one channel."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"expected (sources, samples, channels) arrays, got shape {x.shape}")
    return x


def _pad_or_truncate(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """museval's ``pad_or_truncate``: make the estimates as long as the references (axis 1)."""
    n_ref, n_est = references.shape[1], estimates.shape[1]
    if n_est > n_ref:
        estimates = estimates[:, :n_ref]
    elif n_est < n_ref:
        estimates = np.pad(estimates, [(0, 0), (0, n_ref - n_est), (0, 0)], mode="constant")
    return references, estimates


def _prepare(references, estimates) -> tuple[np.ndarray, np.ndarray]:
    refs, ests = _pad_or_truncate(_as_3d(references), _as_3d(estimates))
    if refs.shape != ests.shape:
        raise ValueError(
            f"references {refs.shape} and estimates {ests.shape} must have the same (sources, -, channels)"
        )
    return refs, ests


def _frame_bounds(length: int, win: int, hop: int) -> tuple[np.ndarray, int]:
    """Start sample of each frame and the frame length, as museval's ``Framing``.

    Returns ``(starts, frame_len)`` with ``starts`` of shape ``(frames,)``; every
    frame is ``[start, start + frame_len)`` (full frames only: museval drops the
    trailing partial frame; if ``win >= length`` the single frame is the whole signal).
    """
    if win < length:
        nwin = (length - win + hop) // hop  # == floor((L - win + hop) / hop) for positive ints
        return np.arange(nwin, dtype=np.int64) * hop, win
    return np.zeros(1, dtype=np.int64), length


def _frame_reduce(per_sample: np.ndarray, starts: np.ndarray, frame_len: int, reduce=np.sum) -> np.ndarray:
    """Reduce ``per_sample`` (..., samples) over each frame -> (..., frames).

    A reshape for non-overlapping frames (the museval default), else a strided view; no copies.
    """
    n_frames = len(starts)
    if n_frames > 1 and starts[0] == 0 and np.all(np.diff(starts) == frame_len):
        n = n_frames * frame_len
        return reduce(per_sample[..., :n].reshape(per_sample.shape[:-1] + (n_frames, frame_len)), axis=-1)
    hop = int(starts[1] - starts[0]) if n_frames > 1 else 1
    view = np.lib.stride_tricks.sliding_window_view(per_sample, frame_len, axis=-1)
    return reduce(view[..., int(starts[0]) :: hop, :][..., :n_frames, :], axis=-1)


def _energies(ref: np.ndarray, est: np.ndarray, block: int = 1 << 16) -> tuple[float, float]:
    """``(Σ s², Σ (ŝ - s)²)`` in float64 over a ``(samples, channels)`` block.

    ``ŝ - s`` is museval's ``e_spat + e_interf + e_artif`` with the projections telescoped
    away. Chunks of ``block`` samples keep the float64 temporaries in cache and the sums
    are BLAS dots (~3x faster than squaring and reducing whole tracks).
    """
    num = den = 0.0
    for a in range(0, max(len(ref), 1), block):
        s = np.ascontiguousarray(ref[a : a + block], dtype=np.float64).ravel()
        err = np.subtract(est[a : a + block], s.reshape(-1, ref.shape[-1]), dtype=np.float64).ravel()
        num += float(np.dot(s, s))
        den += float(np.dot(err, err))
    return num, den


def _channel_sum_is_zero(x: np.ndarray) -> np.ndarray:
    """museval's zero test ``np.sum(x, axis=2) == 0``: (sources, samples, channels) -> (sources, samples) bool.

    For one or two channels ``x0 + x1 == 0`` holds exactly when numpy's sum is zero
    (two floats add to 0 only when they are negatives), and it is ~10x faster than a
    reduction over a length-2 axis. More channels use np.sum itself, so rounding is identical.
    """
    if x.shape[2] == 1:
        return x[..., 0] == 0
    if x.shape[2] == 2:
        return (x[..., 0] + x[..., 1]) == 0
    return np.sum(x, axis=2) == 0


def _silent_frames(zero: np.ndarray, starts: np.ndarray, frame_len: int) -> np.ndarray:
    """museval's ``_any_source_silent`` per frame: (sources, samples) bool -> (frames,) bool.

    ``zero`` is the per-sample channel-sum zero test; a frame is silent when some
    source's channel-sum is zero at every sample of it.
    """
    return np.any(_frame_reduce(zero, starts, frame_len, np.all), axis=0)


def framewise_sdr(
    references: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int = 44100,
    win: float = 1.0,
    hop: float = 1.0,
    *,
    on_silent: str = "raise",
) -> np.ndarray:
    """BSSEval v4 framewise SDR, equal to ``museval.evaluate(...)[0]`` (see module docstring).

    Args:
        references: ``(sources, samples, channels)`` (or ``(sources, samples)`` mono), any float dtype.
        estimates: same layout; a different length is cut or zero-padded like museval's ``pad_or_truncate``.
        sample_rate: samples per second; ``win`` and ``hop`` are seconds, converted as
            ``int(seconds * sample_rate)`` like ``museval.eval_mus_track``.
        win: frame length in seconds.
        hop: frame hop in seconds.
        on_silent: ``"raise"`` (museval's behaviour) raises ``ValueError`` when a whole
            reference or estimate is silent; ``"nan"`` returns all-NaN frames instead.

    Returns:
        ``(sources, frames)`` float64 SDR in dB; NaN where museval gives NaN, ``+inf`` for a
        zero-error frame. Empty input gives ``(sources, 0)``.
    """
    if on_silent not in ("raise", "nan"):
        raise ValueError(f"on_silent must be 'raise' or 'nan', got {on_silent!r}")
    refs, ests = _prepare(references, estimates)
    n_src, length, _ = refs.shape
    win_n, hop_n = int(win * sample_rate), int(hop * sample_rate)
    if win_n <= 0 or hop_n <= 0:
        raise ValueError(f"win and hop must be at least one sample, got win={win}s hop={hop}s at {sample_rate} Hz")
    if refs.size == 0:
        return np.empty((n_src, 0))

    ref_zero, est_zero = _channel_sum_is_zero(refs), _channel_sum_is_zero(ests)  # (sources, samples)
    # whole-track silence check: museval's validate() runs before any frame
    for name, zero in (("reference", ref_zero), ("estimate", est_zero)):
        silent = np.all(zero, axis=1)
        if np.any(silent) and on_silent == "raise":
            raise ValueError(
                f"{name} of source {int(np.argmax(silent))} is silent (all zeros) over the whole track: "
                "museval refuses to score it; pass on_silent='nan' to get NaN frames instead"
            )

    starts, frame_len = _frame_bounds(length, win_n, hop_n)
    num = np.empty((n_src, len(starts)))
    den = np.empty((n_src, len(starts)))
    for j in range(n_src):
        for t, a in enumerate(starts.tolist()):
            num[j, t], den[j, t] = _energies(refs[j, a : a + frame_len], ests[j, a : a + frame_len])

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sdr = 10.0 * np.log10(num / den)  # same expression as museval's _safe_db
    sdr[den == 0] = np.inf  # _safe_db: "if den == 0: return np.inf"
    nan_frames = _silent_frames(ref_zero, starts, frame_len) | _silent_frames(est_zero, starts, frame_len)
    sdr[:, nan_frames] = np.nan
    return sdr


def track_sdr(framewise: np.ndarray) -> np.ndarray:
    """Per-track SDR as museval/SiSEC aggregate it: ``(sources, frames) -> (sources,)``.

    Median over frames ignoring NaN. ``±inf`` frames are ignored too, because museval's
    ``TrackStore._q`` stores an infinite frame score as NaN before its ``np.nanmedian``.
    (TrackStore also rounds frames to 1e-5 dB; that is not reproduced.) NaN when no
    finite frame is left.
    """
    x = np.array(framewise, dtype=np.float64, copy=True)
    x[np.isinf(x)] = np.nan
    if x.shape[-1] == 0:
        return np.full(x.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice encountered"
        return np.nanmedian(x, axis=-1)


def new_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """MDX-challenge "new SDR" over the whole track: ``(sources, samples, channels) -> (sources,)``.

    ``10 log10((Σ s² + 1e-7) / (Σ (s - ŝ)² + 1e-7))`` summed over samples and channels, in
    float64, by :func:`sepnet.evaluation.metrics.whole_sdr` (the formula training uses). Lengths are
    matched like museval's ``pad_or_truncate`` so the three metrics
    of this module see the same signals.
    """
    refs, ests = _prepare(references, estimates)
    # One source at a time through the shared formula keeps the float64 temporaries to one stem's size.
    return np.array(
        [
            whole_sdr(torch.from_numpy(np.ascontiguousarray(ref)), torch.from_numpy(np.ascontiguousarray(est))).item()
            for ref, est in zip(refs, ests)
        ],
        dtype=np.float64,
    )
