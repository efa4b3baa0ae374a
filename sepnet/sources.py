"""Where tracks come from: each source lists, per split, the files of every track.

A source only finds files; :mod:`sepnet.data` decodes them. The embedded
synthetic set is generated into the MUSDB18-HQ layout and then read by the same
:class:`StemFolderSource` as a real dataset: there is no special code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sepnet import STEMS
from sepnet.errors import SepnetError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


@dataclass(frozen=True)
class TrackFiles:
    """The files of one multitrack song.

    Attributes:
        name: track name (its folder's name).
        stems: stem name -> audio file.
        mixture: the mixture file, if the dataset has one.
        beats: a text file of beat times in seconds, one a line, if the dataset has one.
    """

    name: str
    stems: dict[str, Path]
    mixture: Path | None = None
    beats: Path | None = None


def _find_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_track_folder(folder: Path, stems: Sequence[str]) -> TrackFiles:
    """Files of the track in ``folder`` (``<stem>.<ext>`` per stem, ``mixture.<ext>``, ``beats.txt``).

    A missing stem file is kept out of ``stems``; the data module reports it.
    """
    found = {stem: path for stem in stems if (path := _find_audio(folder, stem)) is not None}
    beats = folder / "beats.txt"
    return TrackFiles(folder.name, found, _find_audio(folder, "mixture"), beats if beats.is_file() else None)


@dataclass
class StemFolderSource:
    """A MUSDB18-HQ-style tree: ``<root>/<split folder>/<track>/{mixture,bass,drums,other,vocals}.wav``.

    Args:
        root: the dataset's root folder.
        splits: sepnet split name (train/valid/test) -> folder under root.
    """

    root: str
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "valid": "valid", "test": "test"})

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    def prepare(self) -> None:
        """Check the root exists (subclasses may create it)."""
        if not self.root_path.is_dir():
            raise SepnetError(
                f"data root '{self.root_path}' does not exist; pass data.source.root=<folder with "
                f"{'/'.join(self.splits.values())} track folders> or use data=synthetic"
            )

    def tracks(self, split: str, stems: Sequence[str] = STEMS) -> list[TrackFiles]:
        """Every track folder of ``split``, sorted by name."""
        if split not in self.splits:
            raise SepnetError(f"unknown split '{split}'; this dataset has: {', '.join(self.splits)}")
        folder = self.root_path / self.splits[split]
        if not folder.is_dir():
            raise SepnetError(f"split folder '{folder}' does not exist; check data.source.root or data.source.splits")
        return [read_track_folder(d, stems) for d in sorted(folder.iterdir()) if d.is_dir()]


@dataclass
class SyntheticSource(StemFolderSource):
    """The embedded dataset: generated once into ``root`` by :mod:`sepnet.synthetic`, then read as a stem folder.

    Args:
        sample_rate: rate the files are generated at (the model's, so nothing is resampled).
        tracks_per_split: tracks in train/valid/test.
        duration: seconds per track.
        seed: generator seed; the same settings always give the same files.
    """

    sample_rate: int = 22050
    tracks_per_split: dict[str, int] = field(default_factory=lambda: {"train": 20, "valid": 5, "test": 5})
    duration: float = 10.0
    seed: int = 0

    def prepare(self) -> None:
        from sepnet.synthetic import ensure_synthetic_dataset

        ensure_synthetic_dataset(
            self.root_path,
            sample_rate=self.sample_rate,
            tracks=dict(self.tracks_per_split),
            duration=self.duration,
            seed=self.seed,
        )
