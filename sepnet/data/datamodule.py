"""The one LightningDataModule every model trains on.

Tracks are decoded once at the model's sample rate into the decoded-audio cache
(:mod:`sepnet.audio.cache`) and memory-mapped from there; training draws random,
augmented chunks (:mod:`sepnet.data.augment`), validation reads fixed, unaugmented
chunks. Every random choice of a training example comes from a generator seeded
by ``(seed, epoch, index)``: the same run gives the same batches whatever the
number of DataLoader workers, and workers never share a stream.

A batch is a dict:
    mixture (batch, channels, samples)        sum of the stems
    stems   (batch, all_stems, channels, samples), in ``data.stems`` order
    track   list of track names (for error messages; ``remix:a+b+c+d`` for a remixed example)
    beats   (batch, max_beats) int64 beat positions in samples from the chunk's start,
            padded with -1; only with ``beats=True`` (see :mod:`sepnet.data.beats`)

Loading is loud: a missing stem file, an undecodable, empty, NaN-holding or
more-than-stereo file stops the run at start-up naming the file, or, with
``data.on_error=skip``, leaves that track out with a warning. A split with no
usable track stops at start-up, never at the first batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from sepnet import STEMS
from sepnet.audio.cache import AudioCache, resolve_cache_dir
from sepnet.data.augment import Augment
from sepnet.data.beats import chunk_beat_positions, track_beat_times
from sepnet.data.sources import FolderSource, Source, TrackFiles
from sepnet.errors import SepnetError
from sepnet.numbers import is_count, is_positive

log = logging.getLogger(__name__)

LENGTH_TOLERANCE_SECONDS = 0.1
"""Stems whose lengths differ by more than this are trimmed with a warning (less: silently)."""

ON_ERROR = ("raise", "skip")


@dataclass
class Track:
    """A decoded track at the data module's rate.

    Attributes:
        name: the track's name.
        stems: one read-only ``(channels, samples)`` float32 array per stem (in
            ``data.stems`` order), all the same length; memory-mapped from the
            decoded-audio cache, so a track costs no RAM until it is sliced.
        beats: beat times in seconds, for models with a rhythm head; None unless
            the loader asked for them.
        beat_source: where ``beats`` came from (one of :data:`sepnet.data.beats.BEAT_SOURCES`).
    """

    name: str
    stems: list[np.ndarray]
    beats: np.ndarray | None = None
    beat_source: str | None = None

    @property
    def samples(self) -> int:
        return self.stems[0].shape[-1]

    def chunk(self, start: int, length: int) -> np.ndarray:
        """``(stems, channels, length)`` float32 copy of ``[start, start + length)``."""
        return np.stack([stem[:, start : start + length] for stem in self.stems])

    @property
    def audio(self) -> np.ndarray:
        """The whole track as one ``(stems, channels, samples)`` array (read into memory)."""
        return self.chunk(0, self.samples)


def load_track(
    files: TrackFiles,
    stems: Sequence[str],
    cache: AudioCache,
    warn: Callable[[str], None] = log.warning,
    beats: bool = False,
) -> Track:
    """Decode (or reuse from ``cache``) every stem of ``files`` at the cache's rate.

    Stems of unequal length are trimmed to the shortest; ``warn`` is told when
    they differ by more than :data:`LENGTH_TOLERANCE_SECONDS`. With ``beats``, the
    track's beat times come from its beat file, or else from librosa's beat tracker
    (run once, kept in ``cache``; see :func:`sepnet.data.beats.track_beat_times`).

    Raises:
        SepnetError: a stem file is missing or cannot be decoded (the message names it).
    """
    missing = [stem for stem in stems if stem not in files.stems]
    if missing:
        where = f"folder '{files.folder}'" if files.folder is not None else f"track '{files.name}'"
        raise SepnetError(
            f"{where} has no file for stem(s) {', '.join(missing)} (looked for <stem>.wav/.flac/.ogg/.mp3/.aiff); "
            "add it or remove the track"
        )
    audio = [cache.load(files.stems[stem], files.streams.get(stem)) for stem in stems]
    lengths = [a.shape[-1] for a in audio]
    length = min(lengths)
    if max(lengths) - length > LENGTH_TOLERANCE_SECONDS * cache.sample_rate:
        detail = ", ".join(f"{stem} {n / cache.sample_rate:.2f} s" for stem, n in zip(stems, lengths))
        warn(f"track '{files.name}': stems differ in length ({detail}); trimmed to the shortest")
    track = Track(files.name, [a[:, :length] for a in audio])
    if beats:
        track.beats, track.beat_source = track_beat_times(files, stems, track.stems, cache)
    return track


def with_beats(example: dict, track: Track, offset: int, samples: int, sample_rate: int) -> dict:
    """Add the chunk's padded beat positions to ``example`` when the track carries beats."""
    if track.beats is not None:
        example["beats"] = chunk_beat_positions(track.beats, offset, samples, sample_rate)
    return example


def check_sizes(sample_rate, chunk_seconds, val_chunk_seconds, batch_size, examples_per_epoch, num_workers,
                stats_chunks, val_max_chunks_per_track) -> None:
    """Refuse (one line naming the ``data.`` key and the fix) a size a DataLoader or a chunker would trip on."""
    for key, value in (("chunk_seconds", chunk_seconds), ("val_chunk_seconds", val_chunk_seconds)):
        if not is_positive(value) or round(value * sample_rate) < 1:
            raise SepnetError(f"data.{key}={value!r} is not valid; set it to a duration in seconds > 0, e.g. data.{key}=3.0")
    counts = (
        ("batch_size", batch_size, 1, 8),
        ("examples_per_epoch", examples_per_epoch, 1, 256),
        ("num_workers", num_workers, 0, 2),
        ("stats_chunks", stats_chunks, 1, 64),
    )
    if val_max_chunks_per_track is not None:
        counts += (("val_max_chunks_per_track", val_max_chunks_per_track, 1, 4),)
    for key, value, minimum, example in counts:
        if not is_count(value, minimum):
            raise SepnetError(
                f"data.{key}={value!r} is not valid; set it to a whole number >= {minimum}, e.g. data.{key}={example}"
            )


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
    """Training examples keyed by ``(epoch, index)``: a random chunk of a random track, augmented.

    Without remixing, all stems come from one track at one offset. With
    ``augment.remix_prob``, each stem comes from its own track and offset. The
    augmentation then runs with the same generator, and the mixture is the sum
    of the augmented stems.

    Args:
        tracks: the training tracks.
        chunk_samples: length of an example.
        examples_per_epoch: examples per epoch.
        seed: with (epoch, index), seeds each example's generator.
        augment: the augmentation, or None.
        targets: ``(stems,)`` bool, True for ``data.target_stems`` (for silencing).
        sample_rate: the tracks' rate (for beat positions).
        beat_stem: the stem whose track and offset give a remixed example's beats (the drums).
    """

    def __init__(
        self,
        tracks: list[Track],
        chunk_samples: int,
        examples_per_epoch: int,
        seed: int,
        augment: Augment | None = None,
        targets: np.ndarray | None = None,
        sample_rate: int = 22050,
        beat_stem: int = 0,
    ):
        self.tracks = tracks
        self.sample_rate = sample_rate
        self.beat_stem = beat_stem
        self.chunk_samples = chunk_samples
        self.examples_per_epoch = examples_per_epoch
        self.seed = seed
        self.augment = augment
        n_stems = len(tracks[0].stems) if tracks else 0
        self.targets = np.ones(n_stems, dtype=bool) if targets is None else np.asarray(targets, dtype=bool)

    def __len__(self) -> int:
        return self.examples_per_epoch

    def _pick(self, rng: np.random.Generator) -> tuple[Track, int]:
        track = self.tracks[rng.integers(len(self.tracks))]
        return track, int(rng.integers(0, track.samples - self.chunk_samples + 1))

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        rng = example_generator(self.seed, epoch, index)
        length = self.chunk_samples
        if self.augment is not None and self.augment.remix(rng):
            picks = [self._pick(rng) for _ in self.targets]
            stems = np.stack([track.stems[s][:, offset : offset + length] for s, (track, offset) in enumerate(picks)])
            name = "remix:" + "+".join(track.name for track, _ in picks)
            track, offset = picks[self.beat_stem]  # the rhythm follows the drums
        else:
            track, offset = self._pick(rng)
            stems, name = track.chunk(offset, length), track.name
        if self.augment is not None:
            stems = self.augment(stems, rng, self.targets)
        # The mixture is summed in numpy: torch's intra-op threads only add overhead per example.
        mixture = stems.sum(0)
        example = {"mixture": torch.from_numpy(mixture), "stems": torch.from_numpy(stems), "track": name}
        return with_beats(example, track, offset, length, self.sample_rate)


class FixedChunks(Dataset):
    """Validation/statistics examples: consecutive non-overlapping chunks of every track, never augmented."""

    def __init__(
        self, tracks: list[Track], chunk_samples: int, max_chunks_per_track: int | None = None, sample_rate: int = 22050
    ):
        self.tracks = tracks
        self.chunk_samples = chunk_samples
        self.sample_rate = sample_rate
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
        stems = track.chunk(start, self.chunk_samples)
        example = {"mixture": torch.from_numpy(stems.sum(0)), "stems": torch.from_numpy(stems), "track": track.name}
        return with_beats(example, track, start, self.chunk_samples, self.sample_rate)


def collate(examples: list[dict]) -> dict:
    """Batch examples: tensors are stacked with numpy (one plain copy; torch's threaded stack can be far
    slower on a busy CPU), anything else goes through torch's ``default_collate`` (names become a list)."""
    batch = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.from_numpy(np.stack([v.numpy() for v in values]))
        else:
            batch[key] = default_collate(values)
    return batch


class SeparationDataModule(L.LightningDataModule):
    """Train/valid/test data for every sepnet model.

    Args:
        source: where the tracks are (:mod:`sepnet.data.sources`).
        stems: stems read from every track, in tensor order; checked against the
            stems the dataset holds.
        target_stems: the stems the model learns (a subset of ``stems``; None: all).
            Silencing augmentation treats the others as accompaniment.
        sample_rate: the model's rate; audio at other rates is resampled once, into the cache.
        chunk_seconds: length of a training example.
        val_chunk_seconds: length of a validation chunk.
        val_max_chunks_per_track: cap on validation chunks per track (None: all).
        batch_size: examples per batch (training and validation).
        examples_per_epoch: training examples drawn per epoch.
        num_workers: DataLoader worker processes.
        persistent_workers: keep the workers alive from one epoch to the next (with
            ``num_workers > 0``) instead of starting them again for every epoch and validation.
        pin_memory: batches in page-locked memory, so the copy to a GPU is asynchronous
            (``trainer=gpu``/``ddp`` turn it on).
        seed: seeds every example's generator together with (epoch, index).
        stats_chunks: training chunks used to fit the front end's normalisation.
        augment: training augmentation (:class:`~sepnet.data.augment.Augment`), or None.
        on_error: ``raise``: a broken track stops the run, naming the file;
            ``skip``: it is left out and listed in a warning at start-up.
        cache_dir: decoded-audio cache folder; None: ``<data root>/.sepnet-cache``,
            or ``~/.cache/sepnet/audio`` when the data root is read-only.
        beats: add each example's beat positions (``batch["beats"]``), for multi-task
            models; ``module=multitask`` turns it on.
    """

    def __init__(
        self,
        source: Source,
        stems: Sequence[str] = STEMS,
        target_stems: Sequence[str] | None = None,
        sample_rate: int = 22050,
        chunk_seconds: float = 3.0,
        val_chunk_seconds: float = 5.0,
        val_max_chunks_per_track: int | None = None,
        batch_size: int = 8,
        examples_per_epoch: int = 256,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool = False,
        seed: int = 0,
        stats_chunks: int = 64,
        augment: Augment | None = None,
        on_error: str = "raise",
        cache_dir: str | None = None,
        beats: bool = False,
    ):
        super().__init__()
        self.stems = list(stems)
        self.target_stems = list(self.stems if target_stems is None else target_stems)
        if not self.stems or len(set(self.stems)) != len(self.stems):
            raise SepnetError(f"data.stems {self.stems} must name each stem once; e.g. [bass, drums, other, vocals]")
        unknown = [s for s in self.target_stems if s not in self.stems]
        if unknown or not self.target_stems:
            raise SepnetError(
                f"data.target_stems has {', '.join(unknown) or 'no stem'}; "
                f"valid target stems (data.stems): {', '.join(self.stems)}"
            )
        if on_error not in ON_ERROR:
            raise SepnetError(f"data.on_error={on_error} is not an option; use one of: {', '.join(ON_ERROR)}")
        check_sizes(
            sample_rate=sample_rate, chunk_seconds=chunk_seconds, val_chunk_seconds=val_chunk_seconds,
            batch_size=batch_size, examples_per_epoch=examples_per_epoch, num_workers=num_workers,
            stats_chunks=stats_chunks, val_max_chunks_per_track=val_max_chunks_per_track,
        )
        self.source = source
        self.sample_rate = sample_rate
        self.chunk_samples = round(chunk_seconds * sample_rate)
        self.val_chunk_samples = round(val_chunk_seconds * sample_rate)
        self.val_max_chunks_per_track = val_max_chunks_per_track
        self.batch_size = batch_size
        self.examples_per_epoch = examples_per_epoch
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.stats_chunks = stats_chunks
        self.augment = augment
        self.on_error = on_error
        self.cache_dir = cache_dir
        self.beats = beats
        self.cache: AudioCache | None = None
        self.tracks: dict[str, list[Track]] = {}
        self._stems_checked = False
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches done) of a resumed run

    @classmethod
    def from_folders(
        cls, train_dir: str, val_dir: str, test_dir: str | None = None, **kwargs
    ) -> SeparationDataModule:
        """``data=folder``: a :class:`~sepnet.data.sources.FolderSource` of ``train_dir``/``val_dir``/``test_dir``;
        the other arguments are the constructor's."""
        return cls(FolderSource(train_dir, val_dir, test_dir), **kwargs)

    @property
    def target_mask(self) -> np.ndarray:
        """``(stems,)`` bool: which of ``stems`` are targets."""
        return np.array([s in self.target_stems for s in self.stems])

    def prepare_data(self) -> None:
        self.source.prepare()

    def check_stems(self) -> None:
        """Fail at start-up when ``data.stems`` names a stem the dataset does not hold, listing those it does."""
        if self._stems_checked:
            return
        available = self.source.stem_names()
        unknown = [s for s in self.stems if s not in available]
        if unknown:
            where = self.source.describe("train")
            if not available:
                raise SepnetError(f"found no stem files in {where}; each track folder needs <stem>.wav files")
            raise SepnetError(
                f"data.stems has {', '.join(unknown)}, which {where} does not hold; "
                f"valid stems: {', '.join(available)}"
            )
        if self.augment is not None and self.augment.silence is not None and self.target_mask.all():
            log.warning(
                "augment.silence does nothing: data.target_stems is every stem; set e.g. data.target_stems=[vocals]"
            )
        self._stems_checked = True

    def audio_cache(self) -> AudioCache:
        """The decoded-audio cache (created on first use)."""
        if self.cache is None:
            folder = resolve_cache_dir(self.cache_dir, self.source.default_cache_dir())
            self.cache = AudioCache(folder, self.sample_rate)
        return self.cache

    def read_track(
        self,
        files: TrackFiles,
        skipped: list[str] | None = None,
        warn: Callable[[str], None] = log.warning,
        beats: bool = False,
        on_error: str | None = None,
    ) -> Track | None:
        """Decode one track of this data's stems through the cache: the one way training, evaluation and
        check_data read a track, so the stem checks and ``data.on_error`` hold for all of them.

        A broken track (a stem missing or undecodable) raises, naming the file and the fix, under
        ``on_error`` (default ``data.on_error``) ``raise``; under ``skip`` it gives None and its
        ``"<name> (<reason>)"`` goes to ``skipped`` (or to ``warn`` when no list is given).
        """
        self.check_stems()
        try:
            return load_track(files, self.stems, self.audio_cache(), warn=warn, beats=beats)
        except SepnetError as exc:
            if (on_error or self.on_error) == "raise":
                raise SepnetError(f"{exc} (or set data.on_error=skip to leave broken tracks out)") from exc
            reason = f"{files.name} ({exc})"
            if skipped is None:
                warn(f"skipped track {reason} (data.on_error=skip)")
            else:
                skipped.append(reason)
            return None

    def load_split(self, split: str, min_samples: int) -> list[Track]:
        """Decode (once, into the cache) every track of ``split``; refuse at start-up a split with no usable track."""
        if split in self.tracks:
            return self.tracks[split]
        self.check_stems()
        cache = self.audio_cache()
        decoded_before = cache.decoded
        tracks, skipped = [], []
        for files in self.source.tracks(split, self.stems):
            track = self.read_track(files, skipped=skipped, beats=self.beats)
            if track is not None:
                tracks.append(track)
        if cache.decoded > decoded_before:
            log.info("decoded %d %s file(s) into the cache '%s'", cache.decoded - decoded_before, split, cache.folder)
        if skipped:
            log.warning("skipped %d %s track(s) with errors (data.on_error=skip): %s", len(skipped), split, "; ".join(skipped))
        short = [t.name for t in tracks if t.samples < min_samples]
        if short:
            log.warning("skipping %d %s track(s) shorter than one chunk: %s", len(short), split, ", ".join(short))
        tracks = [t for t in tracks if t.samples >= min_samples]
        if not tracks:
            reasons = f"; {len(skipped)} skipped for errors, first: {skipped[0]}" if skipped else ""
            raise SepnetError(
                f"the {split} split of {self.source.describe(split)} has no usable track "
                f"(each needs all of {', '.join(self.stems)} and at least {min_samples / self.sample_rate:.1f} s)"
                f"{reasons}"
            )
        self.tracks[split] = tracks
        return tracks

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
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataset(self) -> RandomChunks:
        """The augmented training examples, keyed by ``(epoch, index)``."""
        return RandomChunks(
            self.tracks["train"],
            self.chunk_samples,
            self.examples_per_epoch,
            self.seed,
            self.augment,
            self.target_mask,
            self.sample_rate,
            beat_stem=self.stems.index("drums") if "drums" in self.stems else 0,
        )

    def shard(self) -> tuple[int, int]:
        """(rank, world_size) of this process: sepnet shards its data itself (the Trainer gets
        ``use_distributed_sampler=False``), so the shares are explicit and deterministic."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        sampler = EpochSampler(len(dataset), *self.shard())
        if self._resume_at is not None:
            epoch, batches_done = self._resume_at
            sampler.skip = (epoch, batches_done * self.batch_size)
        return self._loader(dataset, sampler)

    def _fixed_chunks(self, split: str) -> FixedChunks:
        return FixedChunks(self.tracks[split], self.val_chunk_samples, self.val_max_chunks_per_track, self.sample_rate)

    def val_dataloader(self, sharded: bool = True) -> DataLoader:
        """Validation chunks; under DDP this rank's share unless ``sharded=False``."""
        dataset = self._fixed_chunks("valid")
        return self._loader(dataset, ShardSampler(len(dataset), *(self.shard() if sharded else (0, 1))))

    def test_dataloader(self) -> DataLoader:
        dataset = self._fixed_chunks("test")
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
