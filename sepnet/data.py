"""The one LightningDataModule every model trains on.

Tracks are decoded once at the model's sample rate and kept as arrays; training
draws random chunks, validation reads fixed chunks. Every random choice of a
training example comes from a generator seeded by ``(seed, epoch, index)``: the
same run gives the same batches whatever the number of DataLoader workers, and
workers never share a stream.

A batch is a dict:
    mixture (batch, channels, samples)        sum of the stems
    stems   (batch, all_stems, channels, samples), in ``data.stems`` order
    track   list of track names (for error messages)
    beats   (batch, max_beats) int64 beat positions in samples from the chunk's start,
            padded with -1; only with ``beats=True`` (see :mod:`sepnet.beats`)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sepnet import STEMS
from sepnet.audio import read_audio
from sepnet.beats import chunk_beat_positions, drum_onset_times, read_beat_file
from sepnet.errors import SepnetError
from sepnet.sources import StemFolderSource, TrackFiles

log = logging.getLogger(__name__)


@dataclass
class Track:
    """A decoded track: ``audio`` (stems, channels, samples) float32 at the data module's rate.

    ``beats``: beat times in seconds (beats,), when the data module was asked for them.
    """

    name: str
    audio: np.ndarray
    beats: np.ndarray | None = None

    @property
    def samples(self) -> int:
        return self.audio.shape[-1]


def load_track(files: TrackFiles, stems: Sequence[str], sample_rate: int, beats: bool = False) -> Track:
    """Decode every stem of ``files`` at ``sample_rate`` into one (stems, 2, samples) array.

    Stems of unequal length are trimmed to the shortest. With ``beats``, the
    track's beat times come from its beat file, or else from its drums' onsets.
    """
    missing = [stem for stem in stems if stem not in files.stems]
    if missing:
        raise SepnetError(
            f"track '{files.name}' has no file for stem(s) {', '.join(missing)}; "
            f"add <stem>.wav to its folder or remove the track"
        )
    audio = [read_audio(files.stems[stem], sample_rate) for stem in stems]
    length = min(a.shape[-1] for a in audio)
    track = Track(files.name, np.stack([a[:, :length] for a in audio]))
    if beats:
        track.beats = track_beat_times(files, track, stems, sample_rate)
    return track


def track_beat_times(files: TrackFiles, track: Track, stems: Sequence[str], sample_rate: int) -> np.ndarray:
    """(beats,) seconds: the track's beat file when it has one, else the onsets of its drums stem."""
    if files.beats is not None:
        return read_beat_file(files.beats)
    if "drums" not in stems:
        raise SepnetError(
            f"track '{files.name}' has no beats.txt and data.stems has no drums to derive beats from; "
            f"add drums to data.stems or a beats.txt to the track"
        )
    return drum_onset_times(track.audio[list(stems).index("drums")], sample_rate)


def with_beats(example: dict, track: Track, offset: int, samples: int, sample_rate: int) -> dict:
    """Add the chunk's padded beat positions to ``example`` when the track carries beats."""
    if track.beats is not None:
        example["beats"] = chunk_beat_positions(track.beats, offset, samples, sample_rate)
    return example


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys, so each example's randomness depends on both.

    Lightning calls :meth:`set_epoch` at the start of every training epoch.
    """

    def __init__(self, length: int):
        self.length = length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in range(self.length))


def example_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one training example: a pure function of (seed, epoch, index)."""
    return np.random.default_rng([seed, epoch, index])


class RandomChunks(Dataset):
    """Training examples: a random chunk of a random track, keyed by ``(epoch, index)``."""

    def __init__(self, tracks: list[Track], chunk_samples: int, examples_per_epoch: int, seed: int, sample_rate: int = 22050):
        self.tracks = tracks
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self.examples_per_epoch = examples_per_epoch
        self.seed = seed

    def __len__(self) -> int:
        return self.examples_per_epoch

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        rng = example_generator(self.seed, epoch, index)
        track = self.tracks[rng.integers(len(self.tracks))]
        offset = int(rng.integers(0, track.samples - self.chunk_samples + 1))
        stems = torch.from_numpy(track.audio[..., offset : offset + self.chunk_samples].copy())
        example = {"mixture": stems.sum(0), "stems": stems, "track": track.name}
        return with_beats(example, track, offset, self.chunk_samples, self.sample_rate)


class FixedChunks(Dataset):
    """Validation/statistics examples: consecutive non-overlapping chunks of every track, never augmented."""

    def __init__(
        self, tracks: list[Track], chunk_samples: int, max_chunks_per_track: int | None = None, sample_rate: int = 22050
    ):
        self.tracks = tracks
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self.index = [
            (t, start)
            for t, track in enumerate(tracks)
            for start in list(range(0, track.samples - chunk_samples + 1, chunk_samples))[:max_chunks_per_track]
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        t, start = self.index[i]
        track = self.tracks[t]
        stems = torch.from_numpy(track.audio[..., start : start + self.chunk_samples].copy())
        example = {"mixture": stems.sum(0), "stems": stems, "track": track.name}
        return with_beats(example, track, start, self.chunk_samples, self.sample_rate)


class SeparationDataModule(L.LightningDataModule):
    """Train/valid/test data for every sepnet model.

    Args:
        source: where the tracks are (:mod:`sepnet.sources`).
        stems: stems read from every track, in tensor order.
        sample_rate: the model's rate; audio at other rates is resampled on load.
        chunk_seconds: length of a training example.
        val_chunk_seconds: length of a validation chunk.
        val_max_chunks_per_track: cap on validation chunks per track (None: all).
        batch_size: examples per batch (training and validation).
        examples_per_epoch: training examples drawn per epoch.
        num_workers: DataLoader worker processes.
        seed: seeds every example's generator together with (epoch, index).
        stats_chunks: training chunks used to fit the front end's normalisation.
        beats: add each example's beat positions (``batch["beats"]``), for multi-task
            models; ``module=multitask`` turns it on.
    """

    def __init__(
        self,
        source: StemFolderSource,
        stems: Sequence[str] = STEMS,
        sample_rate: int = 22050,
        chunk_seconds: float = 3.0,
        val_chunk_seconds: float = 5.0,
        val_max_chunks_per_track: int | None = None,
        batch_size: int = 8,
        examples_per_epoch: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        stats_chunks: int = 64,
        beats: bool = False,
    ):
        super().__init__()
        unknown = [s for s in stems if s not in STEMS]
        if unknown:
            raise SepnetError(f"unknown stem(s) {', '.join(unknown)} in data.stems; valid stems: {', '.join(STEMS)}")
        self.source = source
        self.stems = list(stems)
        self.sample_rate = sample_rate
        self.chunk_samples = round(chunk_seconds * sample_rate)
        self.val_chunk_samples = round(val_chunk_seconds * sample_rate)
        self.val_max_chunks_per_track = val_max_chunks_per_track
        self.batch_size = batch_size
        self.examples_per_epoch = examples_per_epoch
        self.num_workers = num_workers
        self.seed = seed
        self.stats_chunks = stats_chunks
        self.beats = beats
        self.tracks: dict[str, list[Track]] = {}

    def prepare_data(self) -> None:
        self.source.prepare()

    def load_split(self, split: str, min_samples: int) -> list[Track]:
        """Decode every track of ``split``, refusing at start-up a split with no usable track."""
        if split not in self.tracks:
            tracks = [load_track(files, self.stems, self.sample_rate, self.beats) for files in self.source.tracks(split, self.stems)]
            short = [t.name for t in tracks if t.samples < min_samples]
            if short:
                log.warning("skipping %d %s track(s) shorter than one chunk: %s", len(short), split, ", ".join(short))
            tracks = [t for t in tracks if t.samples >= min_samples]
            if not tracks:
                raise SepnetError(
                    f"the {split} split of '{self.source.root}' has no usable track "
                    f"(each needs all of {', '.join(self.stems)} and at least {min_samples / self.sample_rate:.1f} s)"
                )
            self.tracks[split] = tracks
        return self.tracks[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.load_split("train", self.chunk_samples)
        if stage in ("fit", "validate", None):
            self.load_split("valid", self.val_chunk_samples)
        if stage == "test":
            self.load_split("test", self.val_chunk_samples)

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = RandomChunks(
            self.tracks["train"], self.chunk_samples, self.examples_per_epoch, self.seed, self.sample_rate
        )
        return self._loader(dataset, EpochSampler(len(dataset)))

    def val_dataloader(self) -> DataLoader:
        return self._loader(FixedChunks(
            self.tracks["valid"], self.val_chunk_samples, self.val_max_chunks_per_track, self.sample_rate
        ))

    def test_dataloader(self) -> DataLoader:
        return self._loader(FixedChunks(
            self.tracks["test"], self.val_chunk_samples, self.val_max_chunks_per_track, self.sample_rate
        ))

    def statistics_waveforms(self) -> Iterator[torch.Tensor]:
        """Unaugmented training mixtures (batch, channels, samples) for fitting the front end's statistics."""
        dataset = FixedChunks(self.load_split("train", self.chunk_samples), self.chunk_samples)
        indices = np.linspace(0, len(dataset) - 1, min(self.stats_chunks, len(dataset))).round().astype(int)
        for start in range(0, len(indices), self.batch_size):
            yield torch.stack([dataset[int(i)]["mixture"] for i in indices[start : start + self.batch_size]])
