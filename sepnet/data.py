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
from sepnet.errors import SepnetError
from sepnet.sources import StemFolderSource, TrackFiles

log = logging.getLogger(__name__)


@dataclass
class Track:
    """A decoded track: ``audio`` (stems, channels, samples) float32 at the data module's rate."""

    name: str
    audio: np.ndarray

    @property
    def samples(self) -> int:
        return self.audio.shape[-1]


def load_track(files: TrackFiles, stems: Sequence[str], sample_rate: int) -> Track:
    """Decode every stem of ``files`` at ``sample_rate`` into one (stems, 2, samples) array.

    Stems of unequal length are trimmed to the shortest.
    """
    missing = [stem for stem in stems if stem not in files.stems]
    if missing:
        raise SepnetError(
            f"track '{files.name}' has no file for stem(s) {', '.join(missing)}; "
            f"add <stem>.wav to its folder or remove the track"
        )
    audio = [read_audio(files.stems[stem], sample_rate) for stem in stems]
    length = min(a.shape[-1] for a in audio)
    return Track(files.name, np.stack([a[:, :length] for a in audio]))


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys, so each example's randomness depends on both.

    Under DDP each rank takes every ``world_size``-th key from ``rank`` on: the
    ranks together draw the same examples as one process would, none twice. When
    ``examples`` does not divide, the last round goes on past ``examples`` (those
    keys are as good as any: they only seed generators), so every rank steps the
    same number of times. ``skip`` drops the first keys of one epoch: a run resumed
    mid-epoch goes on with the examples it had not yet trained on.
    Lightning calls :meth:`set_epoch` at the start of every training epoch.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.length = length
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip: tuple[int, int] | None = None  # (epoch, keys of this rank to drop)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.length + self.world_size - 1) // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.skip[1] if self.skip is not None and self.skip[0] == self.epoch else 0
        indices = range(self.rank + first * self.world_size, len(self) * self.world_size, self.world_size)
        return ((self.epoch, index) for index in indices)


class ShardSampler(Sampler):
    """Every ``world_size``-th index from ``rank`` on, without padding: DDP ranks share out a
    validation set so that each example is scored exactly once (Lightning's own sampler
    repeats examples to even the shares, which would bias ``val/sdr``)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, length, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def example_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one training example: a pure function of (seed, epoch, index)."""
    return np.random.default_rng([seed, epoch, index])


class RandomChunks(Dataset):
    """Training examples: a random chunk of a random track, keyed by ``(epoch, index)``."""

    def __init__(self, tracks: list[Track], chunk_samples: int, examples_per_epoch: int, seed: int):
        self.tracks = tracks
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
        return {"mixture": stems.sum(0), "stems": stems, "track": track.name}


class FixedChunks(Dataset):
    """Validation/statistics examples: consecutive non-overlapping chunks of every track, never augmented."""

    def __init__(self, tracks: list[Track], chunk_samples: int, max_chunks_per_track: int | None = None):
        self.tracks = tracks
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
        return {"mixture": stems.sum(0), "stems": stems, "track": track.name}


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
        self.tracks: dict[str, list[Track]] = {}
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches done) of a resumed run

    def prepare_data(self) -> None:
        self.source.prepare()

    def load_split(self, split: str, min_samples: int) -> list[Track]:
        """Decode every track of ``split``, refusing at start-up a split with no usable track."""
        if split not in self.tracks:
            tracks = [load_track(files, self.stems, self.sample_rate) for files in self.source.tracks(split, self.stems)]
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

    def shard(self) -> tuple[int, int]:
        """(rank, world_size) of this process: sepnet shards its data itself (the Trainer gets
        ``use_distributed_sampler=False``), so the shares are explicit and deterministic."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        dataset = RandomChunks(self.tracks["train"], self.chunk_samples, self.examples_per_epoch, self.seed)
        sampler = EpochSampler(len(dataset), *self.shard())
        if self._resume_at is not None:
            epoch, batches_done = self._resume_at
            sampler.skip = (epoch, batches_done * self.batch_size)
        return self._loader(dataset, sampler)

    def val_dataloader(self, sharded: bool = True) -> DataLoader:
        """Validation chunks; under DDP this rank's share unless ``sharded=False``."""
        dataset = FixedChunks(self.tracks["valid"], self.val_chunk_samples, self.val_max_chunks_per_track)
        return self._loader(dataset, ShardSampler(len(dataset), *(self.shard() if sharded else (0, 1))))

    def test_dataloader(self) -> DataLoader:
        dataset = FixedChunks(self.tracks["test"], self.val_chunk_samples, self.val_max_chunks_per_track)
        return self._loader(dataset, ShardSampler(len(dataset), *self.shard()))

    # -- resuming: the examples are a function of (seed, epoch, index), so the
    # position in the current epoch is all the data state a checkpoint needs --
    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = (state["epoch"], state["batches_done"]) if state else None

    def statistics_waveforms(self) -> Iterator[torch.Tensor]:
        """Unaugmented training mixtures (batch, channels, samples) for fitting the front end's statistics."""
        dataset = FixedChunks(self.load_split("train", self.chunk_samples), self.chunk_samples)
        indices = np.linspace(0, len(dataset) - 1, min(self.stats_chunks, len(dataset))).round().astype(int)
        for start in range(0, len(indices), self.batch_size):
            yield torch.stack([dataset[int(i)]["mixture"] for i in indices[start : start + self.batch_size]])
