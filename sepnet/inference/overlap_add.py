"""Whole-track separation in overlapping, cross-faded chunks, with memory bounded by the chunk size.

``evaluate`` and ``separate`` both go through :class:`OverlapAdd`, which feeds a
:class:`~sepnet.inference.separator.Separator` fixed-length chunks and blends them back::

    mixture blocks (channels, n) at the model's rate, any block sizes
      -> chunks of ``chunk_seconds`` every ``chunk_seconds * (1 - overlap)``,
         ``batch_size`` chunks per forward pass, on ``device`` (a CRNN's BiLSTM sees
         them as one batch, its other stages one chunk at a time:
         :meth:`~sepnet.inference.separator.Separator.separate_chunks`)
      -> each chunk's estimates weighted by a trapezoid window (linear ramps over
         the overlap, flat elsewhere) and summed; the sum of weights is divided
         out, so any window shape and the track's two ends come out unscaled
      -> estimate blocks (stems, channels, m <= OUTPUT_BLOCK) as soon as no later chunk can touch them

The last chunk is aligned to the end of the track (a full chunk ending at the
last sample, so no chunk is shorter than ``chunk_seconds`` unless the whole
track is) and joins the last batch when there is room; a track shorter than one
chunk is separated in one piece.

At any time the object holds about ``chunk + batch_size * hop`` samples of
input and about one chunk of estimates, whatever the
track's length: :meth:`OverlapAdd.stream` is a generator, so a caller reading and
writing files block by block (``separate``) never holds a whole track.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from sepnet.inference.separator import PRECISIONS, InferenceSettings, Separator

MAX_CHUNK_SECONDS = 600.0
"""Longest ``chunk_seconds``: a chunk goes through the model whole (its STFT, activations, masks and
estimates: gigabytes for 10 minutes at 44.1 kHz), and longer tracks are chunked anyway; ``1e9`` would
ask for terabytes."""

OUTPUT_BLOCK = 1 << 15
"""Most samples per yielded block (1.5 s at 22.05 kHz). A batch finishes up to ``batch_size``
chunks of output at once; handing it on in cache-sized blocks keeps the caller's resampling,
transposes and writes off freshly mapped memory (a 144 s block took those steps 8 s instead of 1)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else as torch names it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def nonfinite_stem(estimates: np.ndarray) -> int | None:
    """The index of the first stem of ``(stems, channels, samples)`` estimates holding NaN or inf, or None.

    Two reductions (min and max, which propagate NaN) and no temporary array: the check every
    estimate passes before ``separate`` writes it or ``evaluate`` scores it.
    """
    if estimates.size == 0 or (np.isfinite(estimates.min()) and np.isfinite(estimates.max())):
        return None
    return next(i for i, stem in enumerate(estimates) if not np.isfinite(stem).all())


def crossfade_window(length: int, fade: int, fade_in: bool = True, fade_out: bool = True) -> np.ndarray:
    """A trapezoid ``(length,)`` float32: linear ramps of ``fade`` samples, 1 in between.

    Ramps never reach 0 (``(i + 1) / (fade + 1)``), so the weight sum is positive
    everywhere; a fade-out and the next chunk's fade-in over the same ``fade``
    samples sum to exactly 1.
    """
    window = np.ones(length, dtype=np.float32)
    fade = min(fade, length)
    if fade > 0:
        ramp = (np.arange(1, fade + 1, dtype=np.float32)) / (fade + 1)
        if fade_in:
            window[:fade] = ramp
        if fade_out:
            window[length - fade :] = np.minimum(window[length - fade :], ramp[::-1])
    return window


class _MixtureBuffer:
    """Input samples from absolute position ``start`` on, kept as the blocks they came in.

    A chunk is assembled from the blocks it spans when it is read; joining every new 5 s
    block onto the buffer copied the whole buffer each time, O(batch²).
    """

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []  # (channels, n) blocks, consecutive
        self.start = 0

    def append(self, block: np.ndarray) -> None:
        self.parts.append(block)

    def read(self, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start + length)`` as one ``(channels, length)`` array (a view when in one block)."""
        pieces, position, end = [], self.start, start + length
        for part in self.parts:
            a, b = max(start - position, 0), min(end - position, part.shape[-1])
            if a < b:
                pieces.append(part[:, a:b])
            position += part.shape[-1]
            if position >= end:
                break
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=-1)

    def drop_before(self, position: int) -> None:
        """Forget the samples before ``position`` (no chunk will read them again)."""
        while self.parts and self.start + self.parts[0].shape[-1] <= position:
            self.start += self.parts.pop(0).shape[-1]
        if self.parts and position > self.start:
            self.parts[0] = self.parts[0][:, position - self.start :]
            self.start = position


class OverlapAdd:
    """Separate mixtures of any length chunk by chunk.

    Args:
        separator: the waveform separator (its knobs apply to every chunk).
        chunk_seconds: chunk length in seconds at the separator's sample rate.
        overlap: fraction of a chunk shared with the next one, in [0, 1); the
            cross-fade spans the shared part.
        batch_size: chunks per forward pass.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...;
            the separator is moved there.
    """

    def __init__(
        self,
        separator: Separator,
        chunk_seconds: float = 10.0,
        overlap: float = 0.1,
        batch_size: int = 4,
        device: str | torch.device | None = "auto",
    ):
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if chunk_seconds <= 0 or batch_size < 1:
            raise ValueError(f"chunk_seconds must be > 0 and batch_size >= 1, got {chunk_seconds}, {batch_size}")
        self.device = resolve_device(device)
        self.separator = separator.to(self.device).eval()
        self.sample_rate = int(separator.front_end.sample_rate)
        self.chunk = max(1, round(chunk_seconds * self.sample_rate))
        self.fade = min(round(overlap * self.chunk), self.chunk - 1)
        self.hop = self.chunk - self.fade
        self.batch_size = batch_size
        self.window = crossfade_window(self.chunk, self.fade)
        self.on_chunk: Callable[[], None] | None = None  # called after each chunk is separated (progress)

    @property
    def stems(self) -> list[str]:
        return self.separator.target_stems

    @torch.inference_mode()
    def _run(self, chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
        """``(channels, samples)`` chunks of equal length -> their ``(stems, channels, samples)`` float32 estimates, in turn."""
        tensors = [torch.from_numpy(c).to(self.device, torch.float32) for c in chunks]
        for estimates in self.separator.iter_separated(tensors):
            yield estimates.float().cpu().numpy()

    def count_chunks(self, samples: int) -> int:
        """How many chunks :meth:`stream` separates for a mixture of ``samples`` samples (at the model's rate)."""
        if samples <= 0:
            return 0
        if samples <= self.chunk:
            return 1
        full = (samples - self.chunk) // self.hop + 1
        return full + (1 if (full - 1) * self.hop + self.chunk < samples else 0)

    def separate(self, mixture: np.ndarray) -> np.ndarray:
        """A whole in-memory track: ``(channels, samples)`` -> ``(stems, channels, samples)`` float32."""
        return np.concatenate(list(self.stream([mixture])), axis=-1)

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Separate a mixture given as consecutive blocks.

        Args:
            blocks: ``(channels, n)`` float arrays at the separator's sample rate, any ``n``
                (empty blocks are fine); together they are the mixture.

        Yields:
            ``(stems, channels, m)`` float32 blocks; together exactly as many samples as came in.
        """
        chunk, hop = self.chunk, self.hop
        mixture = _MixtureBuffer()
        acc: np.ndarray | None = None  # weighted estimate sums from absolute position out_start
        wsum = np.zeros(0, dtype=np.float32)
        out_start = 0
        total = 0  # samples received
        next_start = 0  # start of the next full chunk
        covered = 0  # end of the last full chunk enumerated
        pending: list[int] = []  # starts of full chunks waiting for a batch

        def accumulate(start: int, output: np.ndarray, window: np.ndarray) -> None:
            """Add one chunk's ``(stems, channels, n)`` estimates, weighted by ``window``, at ``start``."""
            nonlocal acc, wsum
            n = output.shape[-1]
            grow = start + n - out_start - wsum.shape[0]
            if grow > 0:
                zeros = np.zeros((*output.shape[:-1], grow), np.float32)
                acc = zeros if acc is None else np.concatenate([acc, zeros], -1)
                wsum = np.concatenate([wsum, np.zeros(grow, np.float32)])
            a = start - out_start
            acc[..., a : a + n] += np.multiply(output, window, out=output)  # the batch's own array: no copy
            wsum[a : a + n] += window

        def emit(upto: int) -> Iterator[np.ndarray]:
            """The finished estimates before ``upto``, in blocks of at most ``OUTPUT_BLOCK`` samples."""
            nonlocal acc, wsum, out_start
            n = upto - out_start
            if n <= 0 or acc is None:
                return
            done, done_weights = acc[..., :n], wsum[:n]
            acc, wsum, out_start = acc[..., n:], wsum[n:], upto
            for a in range(0, n, OUTPUT_BLOCK):
                yield done[..., a : a + OUTPUT_BLOCK] / done_weights[a : a + OUTPUT_BLOCK]

        def run(starts: list[int], lengths: list[int], windows: list[np.ndarray], limit: int) -> Iterator[np.ndarray]:
            """Separate the chunks at ``starts`` in one forward pass and yield what they finish.

            Each chunk's estimates are added as the separator yields them and the output before
            the next chunk's start emitted (``limit`` after the last), so neither the estimates
            nor the accumulator span more than about one chunk, not the batch:
            a batch-sized accumulator is a freshly mapped array per batch, which made adding
            16 chunks 30x slower than this.
            """
            outputs = self._run([mixture.read(s, n) for s, n in zip(starts, lengths)])
            for i, (start, output, window) in enumerate(zip(starts, outputs, windows)):
                accumulate(start, output, window)
                if self.on_chunk is not None:
                    self.on_chunk()
                yield from emit(starts[i + 1] if i + 1 < len(starts) else limit)

        def flush_pending(limit: int) -> Iterator[np.ndarray]:
            if pending:
                starts = pending.copy()
                pending.clear()
                yield from run(starts, [chunk] * len(starts), [self.window] * len(starts), limit)

        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 2:
                raise ValueError(f"mixture blocks must be (channels, samples), got shape {block.shape}")
            if block.shape[-1] == 0:
                continue
            mixture.append(block)
            total += block.shape[-1]
            while next_start + chunk <= total:
                pending.append(next_start)
                covered = next_start + chunk
                next_start += hop
                if len(pending) == self.batch_size:
                    yield from flush_pending(min(next_start, total - chunk))
            # Nothing before min(next pending chunk, total - chunk) can change any more:
            # later full chunks start at >= next_start > total - chunk, and the end-aligned
            # last chunk starts at >= total - chunk.
            yield from emit(min(pending[0] if pending else next_start, total - chunk))
            mixture.drop_before(min(pending[0] if pending else next_start, total - chunk))

        if total == 0:
            return
        if covered < total:
            start = max(0, total - chunk)
            length = total - start
            first = covered == 0  # the track is shorter than a chunk: one piece, no fades
            window = crossfade_window(length, 0 if first else self.fade, fade_out=False)
            if length == chunk and len(pending) < self.batch_size:
                # A full-length last chunk rides in the last batch: one forward pass fewer.
                # Starts stay in order: the last one is >= covered - chunk, the last full chunk's.
                pending.append(start)
                windows = [self.window] * (len(pending) - 1) + [window]
                starts = pending.copy()
                pending.clear()
                yield from run(starts, [chunk] * len(starts), windows, total)
            else:
                yield from flush_pending(start)
                yield from run([start], [length], [window], total)
        yield from flush_pending(total)
        yield from emit(total)


def build_runner(separator: Separator, knobs, prefix: str) -> OverlapAdd:
    """An :class:`OverlapAdd` over ``separator``'s front end and model with the inference knobs of a config node.

    ``knobs`` (``conf/inference/default.yaml``, pulled in as both nodes) holds ``mask_scale``, ``mask_clip``, ``threshold``, ``wiener_iters``,
    ``chunk_seconds``, ``overlap``, ``batch_size`` and ``device`` (the ``eval`` node of
    ``conf/evaluate.yaml`` or ``separate`` of ``conf/separate.yaml``); ``prefix`` names
    that node in error messages.
    """
    from sepnet.errors import SepnetError  # local: keeps this module importable without the rest
    from sepnet.numbers import is_count, is_positive, is_real

    checks = {
        "mask_scale": (is_positive, "a number > 0"),
        "threshold": (lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
        "mask_clip": (lambda v: isinstance(v, bool), "true or false"),
        "wiener_iters": (lambda v: is_count(v, 0), "an integer >= 0"),
        "chunk_seconds": (
            lambda v: is_positive(v) and v <= MAX_CHUNK_SECONDS,
            f"a number of seconds in (0, {MAX_CHUNK_SECONDS:g}] (longer tracks are separated in chunks anyway)",
        ),
        "overlap": (lambda v: is_real(v) and 0 <= v < 1, "a fraction in [0, 1)"),
        "batch_size": (lambda v: is_count(v, 1), "an integer >= 1"),
    }
    for key, (ok, what) in checks.items():
        value = knobs[key]
        if not ok(value):
            raise SepnetError(f"{prefix}.{key}={value!r} is not valid; set it to {what}")
    precision = knobs.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise SepnetError(
            f"{prefix}.precision={precision!r} is not valid; set it to fp32 (the default) or bf16 "
            "(bf16 autocast around the mask model only)"
        )
    device = knobs["device"]
    try:
        device = resolve_device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise SepnetError(f"{prefix}.device={knobs['device']!r} cannot be used ({exc}); use auto or cpu") from None
    settings = InferenceSettings(
        mask_scale=float(knobs["mask_scale"]),
        threshold=float(knobs["threshold"]),
        mask_clip=bool(knobs["mask_clip"]),
        wiener_iters=int(knobs["wiener_iters"]),
        precision=str(precision),
    )
    # A new Separator around the loaded front end and model: the knobs are constructor arguments.
    return OverlapAdd(
        Separator(separator.front_end, separator.model, settings),
        chunk_seconds=float(knobs["chunk_seconds"]),
        overlap=float(knobs["overlap"]),
        batch_size=int(knobs["batch_size"]),
        device=device,
    )
