"""Where tracks come from: each source lists, per split, the files of every track.

A source only finds files; :mod:`sepnet.data.datamodule` decodes them (through
:mod:`sepnet.audio.cache`). Three kinds, one per ``data=`` option:

- :class:`StemFolderSource` (``data=stem_folder``): a MUSDB18-HQ-style tree
  ``<root>/{train,valid,test}/<track>/<stem>.<ext>``.
- :class:`FolderSource` (``data=folder``): one folder of track folders per split
  (``data.train_dir``, ``data.val_dir``, optional ``data.test_dir``).
- :class:`MusdbSource` (``data=musdb``): MUSDB18 (``.stem.mp4``) or MUSDB18-HQ
  (WAV folders) with the ``musdb`` package's official train/valid split.

The embedded synthetic set (:class:`SyntheticSource`) is generated into the
MUSDB18-HQ layout and then read by the same code as a real dataset.

Every source also says which stems the dataset holds (:meth:`stem_names`), so
``data.stems`` can be checked at start-up, and where a decoded-audio cache
beside the data would go (:meth:`default_cache_dir`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import yaml

from sepnet import STEMS
from sepnet.errors import SepnetError

AUDIO_SUFFIXES = (
    # libsndfile's formats first, then what FFmpeg decodes (sepnet.audio.io); the first wins for one name.
    ".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus",
    ".m4a", ".aac", ".wma", ".webm", ".mka", ".mp4", ".mkv", ".mov",
)
"""Suffixes of the audio files sources and ``separate`` pick up; the decoder is chosen by the content, not these."""
MIXTURE = "mixture"
CACHE_FOLDER = ".sepnet-cache"
"""Name of the decoded-audio cache folder a source puts beside its data by default."""


@dataclass(frozen=True)
class TrackFiles:
    """The files of one multitrack song.

    Attributes:
        name: track name (its folder's name).
        stems: stem name -> audio file (a missing stem file is simply absent).
        mixture: the mixture file, if the dataset has one.
        beats: a text file of beat times in seconds, one a line, if the dataset has one.
        folder: where the track's files are (for error messages).
        streams: stem name (or ``mixture``) -> stream index, for stems that are
            streams of one multi-stream file (MUSDB18's ``.stem.mp4``); empty otherwise.
    """

    name: str
    stems: dict[str, Path]
    mixture: Path | None = None
    beats: Path | None = None
    folder: Path | None = None
    streams: dict[str, int] = field(default_factory=dict)


class Source(Protocol):
    """What the data module needs from a dataset."""

    def prepare(self) -> None:
        """Check (or create) the data; raise :class:`SepnetError` naming the key to fix."""

    def tracks(self, split: str, stems: Sequence[str]) -> list[TrackFiles]:
        """The tracks of ``split`` (train/valid/test), sorted by name."""

    def stem_names(self) -> list[str]:
        """The stems the dataset holds."""

    def describe(self, split: str) -> str:
        """Where ``split`` lives, for messages."""

    def default_cache_dir(self) -> Path:
        """Where a decoded-audio cache beside the data would go."""


def _not_a_file(path: Path, what: str, fix: str) -> None:
    """Refuse (one line) a file given where a folder belongs: ``<what> '<path>' is a file, not a folder; <fix>``."""
    if path.is_file():
        raise SepnetError(f"{what} '{path}' is a file, not a folder; {fix}")


def _require_folder(path: Path, what: str, fix: str, *, file_what: str | None = None, file_fix: str | None = None) -> None:
    """Refuse (one line) a missing folder or a file in its place, naming the key and the fix.

    A file says ``<file_what> '<path>' is a file, not a folder; <file_fix>``, a missing
    path ``<what> '<path>' does not exist; <fix>`` (``file_*`` default to ``what``/``fix``).
    """
    _not_a_file(path, file_what or what, file_fix or fix)
    if not path.is_dir():
        raise SepnetError(f"{what} '{path}' does not exist; {fix}")


def _audio_files(folder: Path) -> dict[str, Path]:
    """``name -> file`` of the audio files in ``folder`` (``vocals.flac`` -> ``vocals``), hidden files left out.

    When one name has several formats, the first of :data:`AUDIO_SUFFIXES` wins.
    """
    found: dict[str, Path] = {}
    rank = {suffix: i for i, suffix in enumerate(AUDIO_SUFFIXES)}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or suffix not in rank or not path.is_file():
            continue
        name = path.name[: -len(suffix)]
        if name not in found or rank[suffix] < rank[found[name].suffix.lower()]:
            found[name] = path
    return found


def read_track_folder(folder: Path, stems: Sequence[str]) -> TrackFiles:
    """Files of the track in ``folder`` (``<stem>.<ext>`` per stem, ``mixture.<ext>``, ``beats.txt``).

    A missing stem file is kept out of ``stems``; the data module reports it.
    """
    audio = _audio_files(folder)
    beats = folder / "beats.txt"
    return TrackFiles(
        folder.name,
        {stem: audio[stem] for stem in stems if stem in audio},
        audio.get(MIXTURE),
        beats if beats.is_file() else None,
        folder,
    )


def _track_folders(folder: Path) -> list[Path]:
    """The track folders in ``folder``, sorted by name; hidden folders (such as a cache) are left out."""
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def _folder_stems(folders: Sequence[Path]) -> list[str]:
    """Every stem name found in any track folder under ``folders`` (the mixture excluded), sorted."""
    names: set[str] = set()
    for folder in folders:
        if folder.is_dir():
            for track in _track_folders(folder):
                names.update(_audio_files(track))
    names.discard(MIXTURE)
    return sorted(names)


@dataclass
class _RootedSource:
    """A source whose files all lie under one folder, ``data.source.root``."""

    root: str

    ROOT_NAME: ClassVar[str] = "data root"
    ROOT_FILE_FIX: ClassVar[str | None] = None

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    def _root_fix(self) -> str:
        """How to point ``data.source.root`` at the right folder, for messages."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Check the root is an existing folder (subclasses may create it or check more)."""
        _require_folder(
            self.root_path, self.ROOT_NAME, self._root_fix(), file_what="data.source.root", file_fix=self.ROOT_FILE_FIX
        )


@dataclass
class StemFolderSource(_RootedSource):
    """A MUSDB18-HQ-style tree: ``<root>/<split folder>/<track>/{mixture,bass,drums,other,vocals}.wav``.

    Args:
        root: the dataset's root folder.
        splits: sepnet split name (train/valid/test) -> folder under root.
    """

    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "valid": "valid", "test": "test"})

    ROOT_FILE_FIX: ClassVar[str | None] = "set it to the dataset's root folder"

    def _root_fix(self) -> str:
        return f"pass data.source.root=<folder with {'/'.join(self.splits.values())} track folders> or use data=synthetic"

    def split_folder(self, split: str) -> Path:
        if split not in self.splits:
            raise SepnetError(f"unknown split '{split}'; this dataset has: {', '.join(self.splits)}")
        return self.root_path / self.splits[split]

    def tracks(self, split: str, stems: Sequence[str] = STEMS) -> list[TrackFiles]:
        """Every track folder of ``split``, sorted by name."""
        folder = self.split_folder(split)
        _require_folder(folder, "split folder", "check data.source.root or data.source.splits")
        return [read_track_folder(d, stems) for d in _track_folders(folder)]

    def stem_names(self) -> list[str]:
        """The stems this dataset holds: every ``<name>.<audio ext>`` but the mixture, in any track folder."""
        return _folder_stems([self.root_path / folder for folder in self.splits.values()])

    def describe(self, split: str) -> str:
        """Where ``split`` lives, for messages."""
        return f"'{self.root_path / self.splits.get(split, split)}'"

    def default_cache_dir(self) -> Path:
        return self.root_path / CACHE_FOLDER


@dataclass
class SyntheticSource(StemFolderSource):
    """The embedded dataset: generated once into ``root`` by :mod:`sepnet.data.synthetic`, then read as a stem folder.

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
        from sepnet.data.synthetic import ensure_synthetic_dataset

        ensure_synthetic_dataset(
            self.root_path,
            sample_rate=self.sample_rate,
            tracks=dict(self.tracks_per_split),
            duration=self.duration,
            seed=self.seed,
        )


@dataclass
class FolderSource:
    """One folder of track folders per split, such as ``data/train`` and ``data/val``.

    Each track folder holds ``mixture.<ext>`` (optional) and one file per stem,
    ``<stem>.<ext>`` in any format of :data:`AUDIO_SUFFIXES` (WAV, FLAC, OGG, MP3, AIFF
    through libsndfile; M4A/AAC, Opus, WMA, WebM/MKV/MP4 soundtracks through FFmpeg).

    Args:
        train_dir: training tracks (``data.train_dir``).
        val_dir: validation tracks (``data.val_dir``).
        test_dir: test tracks (``data.test_dir``), or None.
    """

    train_dir: str
    val_dir: str
    test_dir: str | None = None

    KEYS: ClassVar[dict[str, str]] = {"train": "data.train_dir", "valid": "data.val_dir", "test": "data.test_dir"}

    def _dirs(self) -> dict[str, Path]:
        dirs = {"train": self.train_dir, "valid": self.val_dir, "test": self.test_dir}
        return {split: Path(d).expanduser() for split, d in dirs.items() if d is not None}

    def prepare(self) -> None:
        for split, folder in self._dirs().items():
            _require_folder(
                folder,
                self.KEYS[split],
                f"set {self.KEYS[split]}=<folder of track folders>",
                file_fix=f"set {self.KEYS[split]} to a folder of track folders",
            )

    def split_folder(self, split: str) -> Path:
        dirs = self._dirs()
        if split not in self.KEYS:
            raise SepnetError(f"unknown split '{split}'; this dataset has: {', '.join(dirs)}")
        if split not in dirs:
            raise SepnetError(f"no {split} tracks: {self.KEYS[split]} is not set; set it to a folder of track folders")
        return dirs[split]

    def tracks(self, split: str, stems: Sequence[str] = STEMS) -> list[TrackFiles]:
        folder = self.split_folder(split)
        _not_a_file(folder, self.KEYS[split], f"set {self.KEYS[split]} to a folder of track folders")
        if not folder.is_dir():
            raise SepnetError(f"{self.KEYS[split]} '{folder}' does not exist; set it to a folder of track folders")
        return [read_track_folder(d, stems) for d in _track_folders(folder)]

    def stem_names(self) -> list[str]:
        return _folder_stems(list(self._dirs().values()))

    def describe(self, split: str) -> str:
        folder = self._dirs().get(split)
        return f"{self.KEYS.get(split, split)} '{folder}'"

    def default_cache_dir(self) -> Path:
        dirs = [str(d.resolve()) for d in self._dirs().values()]
        return Path(os.path.commonpath(dirs)) / CACHE_FOLDER


def _musdb_setup() -> dict:
    """The ``musdb`` package's own setup file: stem file names, stream ids and the official validation tracks.

    Read from the installed package without importing it (its import chain, through
    stempeg, wants the ffmpeg program, which sepnet's own decoding does not).
    """
    spec = importlib.util.find_spec("musdb")
    if spec is None or not spec.submodule_search_locations:
        raise SepnetError("data=musdb needs the musdb package; install it with: pip install musdb")
    setup = Path(next(iter(spec.submodule_search_locations))) / "configs" / "mus.yaml"
    return yaml.safe_load(setup.read_text())


@dataclass
class MusdbSource(_RootedSource):
    """MUSDB18 / MUSDB18-HQ with the official split of the ``musdb`` package.

    ``train`` is MUSDB's train subset minus the official validation tracks,
    ``valid`` those validation tracks, ``test`` MUSDB's test subset.

    Args:
        root: the dataset root (holding ``train/`` and ``test/``).
        is_wav: True for MUSDB18-HQ (a folder of WAVs per track); False for
            MUSDB18's ``<track>.stem.mp4`` files, each stem a stream decoded once by
            FFmpeg's AAC decoder through PyAV (no ffmpeg program needed).
    """

    is_wav: bool = True

    SUBSETS: ClassVar[dict[str, str]] = {"train": "train", "valid": "train", "test": "test"}
    ROOT_NAME: ClassVar[str] = "MUSDB18 root"

    def _root_fix(self) -> str:
        return "set data.source.root=<folder holding train/ and test/>"

    def prepare(self) -> None:
        super().prepare()
        for subset in ("train", "test"):
            if not (self.root_path / subset).is_dir():
                raise SepnetError(
                    f"MUSDB18 root '{self.root_path}' has no {subset}/ folder; set data.source.root to the folder "
                    "that holds train/ and test/"
                )

    def _entries(self, subset: str) -> list[tuple[str, Path]]:
        """(track name, folder or .stem.mp4 file) of a MUSDB subset, sorted by name."""
        folder = self.root_path / subset
        if self.is_wav:
            entries = [(d.name, d) for d in _track_folders(folder)]
            if not entries and any(folder.glob("*.stem.mp4")):
                raise SepnetError(
                    f"'{folder}' holds .stem.mp4 files (MUSDB18), not WAV folders; set data.source.is_wav=false"
                )
        else:
            entries = [(p.name.removesuffix(".stem.mp4"), p) for p in sorted(folder.glob("*.stem.mp4"))]
            if not entries and _track_folders(folder):
                raise SepnetError(
                    f"'{folder}' holds track folders (MUSDB18-HQ), not .stem.mp4 files; set data.source.is_wav=true"
                )
        return entries

    def tracks(self, split: str, stems: Sequence[str] = STEMS) -> list[TrackFiles]:
        if split not in self.SUBSETS:
            raise SepnetError(f"unknown split '{split}'; MUSDB18 has: {', '.join(self.SUBSETS)}")
        setup = _musdb_setup()
        validation = set(setup["validation_tracks"])
        entries = self._entries(self.SUBSETS[split])
        if split == "train":
            entries = [(name, p) for name, p in entries if name not in validation]
        elif split == "valid":
            entries = [(name, p) for name, p in entries if name in validation]
        files = []
        for name, path in entries:
            if self.is_wav:
                files.append(read_track_folder(path, stems))
            else:
                ids = setup["stem_ids"]
                streams = {stem: int(ids[stem]) for stem in stems if stem in ids}
                streams[MIXTURE] = int(ids[MIXTURE])
                files.append(TrackFiles(name, {stem: path for stem in streams if stem != MIXTURE}, path, None, path, streams))
        return files

    def stem_names(self) -> list[str]:
        return sorted(_musdb_setup()["sources"])

    def describe(self, split: str) -> str:
        return f"MUSDB18 '{self.root_path}' ({split})"

    def default_cache_dir(self) -> Path:
        return self.root_path / CACHE_FOLDER
