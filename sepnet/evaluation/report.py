"""The listening report: ``report.html`` with audio players, spectrograms and SDR per track.

One self-contained HTML file (no other files, opens from anywhere): for each of
the first ``max_tracks`` tracks, an excerpt of the mixture, of every reference and
every estimate as HTML5 ``<audio>`` players (OGG Vorbis, embedded as data URIs to
keep the file small and portable), a spectrogram image (JPEG, reference beside
estimate per stem), and the track's per-stem scores; the aggregate table on top.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from sepnet.atomic import write_text
from sepnet.evaluation.pictures import spectrogram_jpeg

_VORBIS_QUALITY = 0.6  # soundfile compression_level: 0 best quality .. 1 smallest


@dataclass
class _TrackEntry:
    name: str
    start: float
    audio: dict[str, str]  # label -> data URI
    spectrogram: str  # data URI of a JPEG
    scores: dict[str, dict]


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def encode_ogg(audio: np.ndarray, sample_rate: int) -> bytes:
    """``(channels, samples)`` -> OGG Vorbis bytes (peak-limited to [-1, 1])."""
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, audio.T, sample_rate, format="OGG", subtype="VORBIS", compression_level=_VORBIS_QUALITY)
    return buffer.getvalue()


@dataclass
class ListeningReport:
    """Collects excerpts of the first ``max_tracks`` tracks, then writes ``report.html``.

    Args:
        sample_rate: rate of the audio handed to :meth:`add`.
        stems: the estimated stems, in order.
        max_tracks: tracks included (the first ones added).
        seconds: excerpt length; taken from the middle of each track.
    """

    sample_rate: int
    stems: Sequence[str]
    max_tracks: int = 4
    seconds: float = 6.0
    tracks: list[_TrackEntry] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.tracks) >= self.max_tracks

    def add(self, name: str, mixture: np.ndarray, references: np.ndarray, estimates: np.ndarray, scores: dict) -> None:
        """Add a track: mixture (channels, samples), references/estimates (stems, channels, samples)."""
        if self.full:
            return
        length = mixture.shape[-1]
        n = min(length, max(1, round(self.seconds * self.sample_rate)))
        a = (length - n) // 2
        cut = slice(a, a + n)
        audio = {"mixture": _data_uri("audio/ogg", encode_ogg(mixture[:, cut], self.sample_rate))}
        # mixture alone on the first row (an empty panel beside it), then reference | estimate per stem
        rows = [("mixture", mixture[:, cut]), ("", np.zeros((1, 0)))]
        for j, stem in enumerate(self.stems):
            audio[f"{stem} reference"] = _data_uri("audio/ogg", encode_ogg(references[j][:, cut], self.sample_rate))
            audio[f"{stem} estimate"] = _data_uri("audio/ogg", encode_ogg(estimates[j][:, cut], self.sample_rate))
            rows += [(f"{stem} reference", references[j][:, cut]), (f"{stem} estimate", estimates[j][:, cut])]
        image = spectrogram_jpeg(rows, self.sample_rate)
        self.tracks.append(_TrackEntry(name, a / self.sample_rate, audio, _data_uri("image/jpeg", image), scores))

    def write(
        self, path: str | Path, title: str, summary: dict[str, dict], notes: Sequence[str] = (),
        all_tracks: Sequence[str] | None = None, sdr_png: bytes | None = None,
    ) -> Path:
        """Write the report; ``summary`` is :func:`sepnet.evaluation.scoring.aggregate`'s result, ``all_tracks``
        every scored track's name (to say which of them the spectrograms show), ``sdr_png`` the per-track SDR
        picture (:func:`sepnet.evaluation.pictures.sdr_figure`)."""
        path = Path(path)
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title>",
            (
                "<style>body{font-family:sans-serif;margin:1.5em;color:#222;background:#fff}"
                "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}"
                "th:first-child,td:first-child{text-align:left}.players{display:grid;grid-template-columns:repeat(2,max-content);"
                "gap:.3em 1.2em;align-items:center}section{border-top:2px solid #ddd;margin-top:1.2em;padding-top:.5em}"
                "img{max-width:100%;border:1px solid #ddd}.note{color:#555;font-size:.9em}</style></head><body>"
            ),
            f"<h1>{html.escape(title)}</h1>",
        ]
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
        total = len(all_tracks) if all_tracks is not None else len(self.tracks)
        parts.append(f"<h2>Over all {total} track{'s' if total != 1 else ''}</h2>")
        parts.append(_summary_table(summary))
        if sdr_png is not None:
            parts.append(f"<p><img alt='SDR per stem and per track' src='{_data_uri('image/png', sdr_png)}'></p>")
        shown = ", ".join(entry.name for entry in self.tracks)
        if len(self.tracks) < total:
            left = [name for name in (all_tracks or []) if name not in {e.name for e in self.tracks}]
            parts.append(
                f"<p class='note'><b>Listening and spectrograms: {len(self.tracks)} of {total} tracks</b> ({html.escape(shown)}), "
                f"the first ones (report_tracks={self.max_tracks}); not shown: {html.escape(', '.join(left))}. Every "
                f"track is in the table and the SDR picture above, and in per_track.csv.</p>"
            )
        else:
            parts.append(f"<p class='note'>Listening and spectrograms: {'all ' if total > 1 else ''}{total} track{'s' if total != 1 else ''}.</p>")
        parts.append(
            "<p class='note'>Spectrograms: mono, log frequency, one dB scale per track (0 dB: its loudest bin), "
            "reference beside estimate for each stem.</p>"
        )
        for entry in self.tracks:
            number = f"{self.tracks.index(entry) + 1} of {len(self.tracks)} shown"
            parts.append(f"<section><h2>{html.escape(entry.name)} <small class='note'>({number})</small></h2>")
            parts.append(
                f"<p class='note'>excerpt from {entry.start:.1f} s, {self.seconds:g} s at most</p>{_track_table(entry.scores)}"
            )
            parts.append("<div class='players'>")
            for label, uri in entry.audio.items():
                parts.append(
                    f"<span>{html.escape(label)}</span><audio controls preload='metadata'><source src='{uri}' type='audio/ogg'></audio>"
                )
            parts.append("</div>")
            parts.append(f"<p><img alt='spectrograms of {html.escape(entry.name)}' src='{entry.spectrogram}'></p></section>")
        parts.append("</body></html>")
        write_text(path, "\n".join(parts))
        return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.2f}"
    return html.escape(str(value))


def _summary_table(summary: dict[str, dict]) -> str:
    columns = [
        ("SDR median", "sdr_median"), ("SDR mean", "sdr_mean"), ("new SDR median", "new_sdr_median"),
        ("g* median", "gain_median"), ("SDR with g*", "sdr_gain_median"), ("NaN tracks", "nan_tracks"),
    ]
    head = "".join(f"<th>{c}</th>" for c, _ in columns)
    rows = "".join(
        f"<tr><td>{html.escape(stem)}</td>" + "".join(f"<td>{_fmt(v.get(k))}</td>" for _, k in columns) + "</tr>"
        for stem, v in summary.items()
    )
    return f"<table><tr><th>stem</th>{head}</tr>{rows}</table>"


def _track_table(scores: dict[str, dict]) -> str:
    columns = [("SDR", "sdr"), ("new SDR", "new_sdr"), ("g*", "gain"), ("SDR with g*", "sdr_gain")]
    head = "".join(f"<th>{c}</th>" for c, _ in columns)
    rows = "".join(
        f"<tr><td>{html.escape(stem)}</td>" + "".join(f"<td>{_fmt(v.get(k))}</td>" for _, k in columns) + "</tr>"
        for stem, v in scores.items()
    )
    return f"<table><tr><th>stem</th>{head}</tr>{rows}</table>"
