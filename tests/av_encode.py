"""Test fixtures in formats libsndfile cannot write (M4A/AAC, Opus in WebM, multi-stream MP4), encoded with PyAV.

PyAV's wheels bundle FFmpeg's libraries, so no ffmpeg program is needed.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def encode(path: Path, streams: list[np.ndarray] | np.ndarray, rate: int, codec: str = "aac", bitrate: int = 128_000) -> Path:
    """Write ``(channels, samples)`` float audio (or a list of them: one audio stream each) to ``path``.

    The container comes from the suffix (``.m4a``, ``.webm``, ``.mp4``, ...). Frames of
    1024 samples are handed to the encoder, which re-frames and converts them itself.
    """
    streams = [streams] if isinstance(streams, np.ndarray) else list(streams)
    with av.open(str(path), "w") as container:
        outs = []
        for audio in streams:
            out = container.add_stream(codec, rate=rate, layout=_LAYOUTS[audio.shape[0]])
            out.bit_rate = bitrate
            outs.append(out)
        block = 1024
        for start in range(0, max(a.shape[1] for a in streams), block):
            for audio, out in zip(streams, outs):
                piece = np.ascontiguousarray(audio[:, start : start + block], dtype=np.float32)
                if not piece.shape[1]:
                    continue
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=_LAYOUTS[audio.shape[0]])
                frame.sample_rate, frame.pts = rate, start
                container.mux(out.encode(frame))
        for out in outs:
            container.mux(out.encode(None))
    return path


def tones(channels: int, seconds: float, rate: int, level: float = 0.3) -> np.ndarray:
    """``(channels, samples)`` float32: a different sine per channel (220 Hz, 330 Hz, ...)."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([level * np.sin(2 * np.pi * 110 * (c + 2) * t) for c in range(channels)]).astype(np.float32)


def decoded_length(path: Path, stream: int = 0) -> int:
    """Samples per channel FFmpeg decodes from audio stream ``stream`` of ``path`` (the truth for lossy codecs)."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(container.streams.audio[stream]))
