"""The separation job behind ``python -m sepnet.separate``: audio files in, stem files out.

Finds the input files and the output layout (musdb's estimates tree for a
folder), streams each file block by block through soxr resampling and the
chunked :class:`~sepnet.inference.overlap_add.OverlapAdd` runner, writes the stems
under their final names only when complete, and applies ``separate.gain``
(a number or an ``evaluate`` run's learned per-stem gains). It lives next to the
overlap-add runner it drives; :mod:`sepnet.separate` is the command-line entry
point and documents the user-facing behaviour.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from omegaconf import DictConfig, OmegaConf

from sepnet import STEMS
from sepnet.app.progress import progress, steps
from sepnet.app.run_dir import ensure_writable
from sepnet.audio.io import audio_info, iter_audio_blocks, stereo_downmix, why_missing
from sepnet.checkpoints import checkpoint
from sepnet.commands.stem_files import StemFiles, StemFormat, stem_format
from sepnet.commands.top_band import TOP_BAND_CHOICES, shares, top_band_blocks
from sepnet.data.sources import AUDIO_SUFFIXES
from sepnet.errors import SepnetError
from sepnet.evaluation.gains import resolve_gains
from sepnet.inference.overlap_add import OverlapAdd, build_runner, nonfinite_stem
from sepnet.numbers import is_positive

log = logging.getLogger(__name__)


ACCOMPANIMENT = "accompaniment"
ON_ERROR = ("stop", "skip")  # separate.on_error: what a bad input file in a folder does
_BLOCK_SECONDS = 5.0  # read granularity; memory is dominated by the chunks, not this
PEAK_WARNING = 8.0
"""An input peaking above this (+18 dB over full scale) gets one warning: float audio is expected in
[-1, 1], and a file scaled by 1e6 separates into stems at its scale, far outside the training data's."""


# -- names and layout ---------------------------------------------------------------


def safe_name(name: str) -> str:
    """A track name that is one harmless path component.

    Separators, control and shell-hostile characters become ``_``; leading dots and
    spaces go (no hidden files, no ``..``); empty results become ``track``.
    """
    name = unicodedata.normalize("NFC", name)
    name = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|]", "_", name)
    name = name.strip().lstrip(".").strip()
    return name[:200] or "track"


def _inside(folder: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``folder``, else a :class:`SepnetError` (never write outside ``out``)."""
    root, target = folder.resolve(), path.resolve()
    if root != target and root not in target.parents:
        raise SepnetError(f"output path '{path}' would be outside out='{folder}'; rename the input track")
    return path


def track_name(path: Path) -> str:
    """The track name of an input file: its name without the suffix (and without MUSDB18's ``.stem``)."""
    name = path.name
    return name[: -len(".stem.mp4")] if name.lower().endswith(".stem.mp4") else path.stem


@dataclass(frozen=True)
class Job:
    """One input file and the folder (relative to ``out``) its stems go to."""

    audio: Path
    folder: Path


def _audio_in(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{s}" for s in AUDIO_SUFFIXES if (folder / f"{stem}{s}").is_file()), None)


def _subset(split: str) -> str:
    """musdb's subset for a split name: validation tracks live in musdb's ``train``."""
    return "train" if split in ("train", "valid") else "test"


def find_jobs(input_path: Path) -> list[Job]:
    """What to separate and where each result goes (see the module docstring)."""
    if not input_path.exists():
        reason = why_missing(input_path)
        fix = "; pass input=<audio file or folder>" if reason.startswith("does not exist") else ""
        raise SepnetError(f"input '{input_path}' {reason.removesuffix('; check the path')}{fix}")
    if input_path.is_file():
        return [Job(input_path, Path(safe_name(track_name(input_path))))]
    jobs: list[Job] = []
    splits = [d for d in sorted(input_path.iterdir()) if d.is_dir() and d.name in ("train", "valid", "test")]
    track_dirs = [(d, _subset(s.name)) for s in splits for d in sorted(s.iterdir()) if d.is_dir()]
    own = _subset(input_path.name) if input_path.name in ("train", "valid") else "test"
    track_dirs += [(d, own) for d in sorted(input_path.iterdir()) if d.is_dir() and d not in splits]
    for folder, subset in track_dirs:
        mixture = _audio_in(folder, "mixture")
        if mixture is not None:
            jobs.append(Job(mixture, Path(subset, safe_name(folder.name))))
    for f in sorted(input_path.iterdir()):
        if (f.is_file() or f.is_symlink()) and f.suffix.lower() in AUDIO_SUFFIXES:  # a broken link is reported
            jobs.append(Job(f, Path(own, safe_name(track_name(f)))))
    if not jobs:
        raise SepnetError(
            f"input folder '{input_path}' holds no audio files and no track folders with a mixture file; "
            f"pass a file or a folder of them"
        )
    check_distinct_folders(jobs)
    return jobs


def check_distinct_folders(jobs: list[Job]) -> None:
    """One line unless every job writes its own track folder (two inputs named alike would overwrite each other)."""
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.folder in seen:
            raise SepnetError(
                f"'{seen[job.folder]}' and '{job.audio}' would both be written to '{job.folder}'; rename one of them"
            )
        seen[job.folder] = job.audio


# -- streaming separation of one file ---------------------------------------------------


def _resampler(from_rate: int, to_rate: int, channels: int):
    """A function ``(frames, channels) block, last -> resampled block``; identity when rates agree."""
    if from_rate == to_rate:
        return lambda block, last=False: block
    stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality="HQ")
    return lambda block, last=False: stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


def _read_ahead(blocks, depth: int = 2):
    """Iterate ``blocks`` (a generator) in a background thread, ``depth`` items ahead.

    Decoding and resampling (soundfile, soxr and numpy release the GIL) then overlap
    the model's forward pass instead of waiting for it; an exception in the
    generator is re-raised here, and leaving the loop early stops the thread.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in blocks:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            items.put((done, exc))

    thread = threading.Thread(target=produce, name="sepnet-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()
        if hasattr(blocks, "close"):  # release the file it reads when we stopped early
            blocks.close()


def _model_estimates(runner: OverlapAdd, job: Job, rate: int, warn: bool) -> Iterator[np.ndarray]:
    """``job.audio`` through ``runner``: ``(stems, 2, n)`` float32 blocks at the input's ``rate``, exactly as
    many samples as the decoded input (a mono input is separated as two equal channels)."""
    stems = runner.stems
    to_model = _resampler(rate, runner.sample_rate, 2)
    to_input = _resampler(runner.sample_rate, rate, 2 * len(stems))
    frames: int | None = None  # decoded input length, known once the reader is done

    def model_blocks():
        nonlocal frames
        decoded, peak = 0, 0.0
        for block in iter_audio_blocks(job.audio, max(1, round(_BLOCK_SECONDS * rate))):
            decoded += block.shape[1]
            if warn and peak <= PEAK_WARNING and block.size:  # finite: iter_audio_blocks refuses NaN and inf
                peak = max(peak, float(block.max()), -float(block.min()))
                if peak > PEAK_WARNING:
                    log.warning(
                        "input '%s' peaks at %.3g, %.0f dB over full scale (audio is expected in [-1, 1]); it is "
                        "separated as it is and the stems keep its scale: rescale the file if that is not intended",
                        job.audio, peak, 20 * np.log10(peak),
                    )
            stereo = block if block.shape[0] == 2 else np.repeat(block, 2, axis=0)
            yield to_model(stereo.T).T
        frames = decoded  # before the flush below: every output after it is cut to this length
        yield to_model(np.zeros((0, 2), np.float32), last=True).T

    written = 0

    def cut(block: np.ndarray) -> np.ndarray:
        """(frames, stems*2) at the input rate -> (stems, 2, n), cut at the input's length.

        Output lags input (resampler delay, overlap-add), so nothing passes the input's
        length before that length is known.
        """
        nonlocal written
        if frames is not None:
            block = block[: max(0, frames - written)]
        written += len(block)
        return block.T.reshape(len(stems), 2, -1)

    for estimates in runner.stream(_read_ahead(model_blocks())):
        broken = nonfinite_stem(estimates)
        if broken is not None:
            raise NonFiniteEstimates(stems[broken])
        yield cut(to_input(estimates.reshape(-1, estimates.shape[-1]).T))
    yield cut(to_input(np.zeros((0, 2 * len(stems)), np.float32), last=True))
    if written < frames:  # resampling round trips can come out a sample or two short
        yield cut(np.zeros((frames - written, 2 * len(stems)), np.float32))


class NonFiniteEstimates(Exception):
    """A model gave NaN or inf for a stem (its name is the argument); the caller names the checkpoint."""


def _aligned(streams: list[Iterator[np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """Blocks of several streams of ``(..., n)`` arrays of the same total length, cut to equal lengths."""
    buffers: list[list[np.ndarray]] = [[] for _ in streams]
    held = [0] * len(streams)
    ended = [False] * len(streams)
    while True:
        for i, stream in enumerate(streams):
            while held[i] == 0 and not ended[i]:
                block = next(stream, None)
                if block is None:
                    ended[i] = True
                elif block.shape[-1]:
                    buffers[i].append(block)
                    held[i] += block.shape[-1]
        n = min(held)
        if n == 0:
            return  # every stream has the same total: one ended, so did the rest
        out = []
        for i in range(len(streams)):
            joined = np.concatenate(buffers[i], axis=-1) if len(buffers[i]) > 1 else buffers[i][0]
            out.append(joined[..., :n])
            buffers[i] = [joined[..., n:]] if joined.shape[-1] > n else []
            held[i] -= n
        yield out


def separate_file(
    runner: OverlapAdd | list[OverlapAdd],
    job: Job,
    out: Path,
    gain: float | np.ndarray,
    accompaniment: bool,
    suffix: str = ".wav",
    checkpoint_path: str | Path | list = "the checkpoint",
    *,
    weights: list[float] | None = None,
    two_stems: str | None = None,
    fmt: StemFormat | None = None,
    top_band: str = "share",
) -> list[Path]:
    """Separate ``job.audio`` into ``out/job.folder/<stem><suffix>``; returns the files written.

    ``runner`` is one model's, or a list of several (an ensemble: their estimates, each at its
    model's own rate and resampled to the input's, are averaged stem by stem with ``weights``;
    the stems are those of the first, which every other must also separate). ``gain`` is one
    number or one per stem. ``two_stems`` writes that stem and ``no_<stem>`` (everything else)
    instead of every stem; ``accompaniment`` (a single-target model) adds the input minus the
    target. ``fmt`` is the file format (default float WAV with ``suffix``).

    The stems are as long as the decoded input (for FFmpeg-decoded files that can differ from
    the header's nominal length by a codec frame), mono for mono and stereo for anything else.
    An input peaking above :data:`PEAK_WARNING` gets one warning; estimates holding NaN or
    inf stop the file with one line naming it and ``checkpoint_path``, and nothing of it
    is written (every stem file is written atomically). Returns the written paths; a line about
    clipping (integer formats, MP3) is printed when the track clipped. A file at a higher rate
    than the models' keeps the band above their Nyquist frequency, given to the stems by their
    share of the models' top band (``top_band="share"``, :mod:`sepnet.commands.top_band`;
    ``"drop"``: left out), and says so in one line.
    """
    runners = runner if isinstance(runner, list) else [runner]
    checkpoints = checkpoint_path if isinstance(checkpoint_path, list) else [checkpoint_path] * len(runners)
    fmt = fmt or StemFormat(suffix, "FLOAT", "rescale")
    info = audio_info(job.audio)
    stereo_downmix(info)  # an unknown layout fails here, before any output file is created
    rate, channels = info.sample_rate, info.channels_read
    stems = list(runners[0].stems)
    orders = [[list(r.stems).index(s) for s in stems] for r in runners]
    weights = [1.0 / len(runners)] * len(runners) if weights is None else weights
    gains = np.broadcast_to(np.asarray(gain, dtype=np.float32), (len(stems),))[:, None, None]
    if two_stems is not None:
        names = [two_stems, f"no_{two_stems}"]
    else:
        names = [*stems, *([ACCOMPANIMENT] if accompaniment else [])]
    needs_mixture = len(stems) == 1 and len(names) == 2
    folder = _inside(out, out / job.folder)
    paths = [_inside(folder, folder / f"{n}{fmt.suffix}") for n in names]  # out/<track>/<stem>: nothing nested, nothing else
    if len({p.name.casefold() for p in paths}) < len(paths) or any(p.parent != folder for p in paths):
        raise SepnetError(
            f"the checkpoint's stems {', '.join(names)} would not each write their own file in '{folder}'; "
            f"use a checkpoint whose target_stems are distinct file names"
        )

    def outputs(estimates: np.ndarray, mixture: np.ndarray | None) -> np.ndarray:
        """(stems, 2, n) estimates -> (files, channels, n): the stems as written."""
        if channels == 1:
            estimates = estimates.mean(axis=1, keepdims=True)
        if needs_mixture:
            return np.stack([estimates[0], mixture - estimates[0]])
        if two_stems is not None:
            k = stems.index(two_stems)
            return np.stack([estimates[k], estimates.sum(axis=0) - estimates[k]])
        return estimates

    model_rate = max(r.sample_rate for r in runners)
    covers = set(STEMS) <= set(stems)  # the stems add up to the mixture: they can share what the model missed
    keeps_top = rate > model_rate and top_band == "share" and covers
    if rate > model_rate:
        if keeps_top:
            where = "goes to the stems by their share of the model's top band (separate.top_band=drop leaves it out)"
        elif top_band == "share" and needs_mixture:
            where = f"stays in {names[1]} (input - {stems[0]}), as the model's stems do not cover the mixture"
        elif top_band == "share":
            where = "is left out, as the model's stems do not cover the mixture"
        else:
            where = "is left out (separate.top_band=drop)"
        print(
            f"'{job.audio}' is at {rate} Hz and the model runs at {model_rate} Hz: the band above "
            f"{model_rate // 2} Hz, which the model does not hear, {where}",
            flush=True,
        )
    model_samples = [r.count_chunks(math.ceil(info.frames * r.sample_rate / rate)) for r in runners]
    existed = folder.exists()  # False: the writers create it, and a failure removes it again
    label = f"separate {job.audio.name}"
    try:
        chunks = sum(model_samples)  # a file of one chunk has no progress of its own to show
        with (steps(label, chunks, unit="chunk") if chunks > 1 else contextlib.nullcontext(None)) as advance, \
                StemFiles(paths, rate, channels, fmt, expected_frames=info.frames) as files:
            for r in runners:
                r.on_chunk = advance
            streams = [_model_estimates(r, job, rate, warn=i == 0) for i, r in enumerate(runners)]
            if needs_mixture:
                streams.append(iter_audio_blocks(job.audio, max(1, round(_BLOCK_SECONDS * rate))))
            if keeps_top:
                reader = iter_audio_blocks(job.audio, max(1, round(_BLOCK_SECONDS * rate)))
                streams.append(top_band_blocks(reader, rate, model_rate))
            try:
                for blocks in _aligned(streams):
                    estimates = sum(w * b[order] for w, b, order in zip(weights, blocks, orders))
                    if keeps_top:  # (2, n) the models did not hear, shared by the stems
                        estimates = estimates + shares(estimates) * blocks[-1][None]
                    mixture = blocks[len(runners)] if needs_mixture else None
                    files.write(outputs(estimates * gains, mixture))
            except NonFiniteEstimates as broken:
                which = " or ".join(f"'{c}'" for c in dict.fromkeys(str(c) for c in checkpoints))
                raise SepnetError(
                    f"checkpoint {which} gave NaN or inf estimates of {broken} for '{job.audio}' "
                    f"(its input is finite), so nothing was written for it: the checkpoint's weights or the "
                    f"inference settings are broken; use another checkpoint or the default separate.* settings"
                ) from None
            finally:
                for r in runners:
                    r.on_chunk = None
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):  # an empty folder of this run's making goes too (not if it holds files)
                folder.rmdir()
        raise
    if files.clipping:
        print(f"clipping: '{job.audio}' {files.clipping}", flush=True)
    return paths


# -- the output gain ------------------------------------------------------------------------

# Inference knobs that change what the model outputs, hence the gain that fits it.
_GAIN_KNOBS = ("mask_scale", "mask_clip", "threshold", "wiener_iters")


def _same_checkpoint(results: dict, loaded: checkpoint.LoadedCheckpoint) -> bool:
    """Whether ``results`` (an evaluate run's) scored ``loaded``: the same file, or a copy of it."""
    scored = results.get("checkpoint")
    if scored and Path(scored).expanduser().resolve() == loaded.path.resolve():
        return True
    # A moved or copied checkpoint: its resolved config (which names its own run dir) and lineage agree.
    mine = {"config": loaded.config, "lineage": loaded.lineage}  # plain data (json.dumps reads dicts)
    theirs = {"config": results.get("checkpoint_config"), "lineage": results.get("lineage")}
    return json.dumps(mine, sort_keys=True, default=str) == json.dumps(theirs, sort_keys=True, default=str)


def learned_gains(path: Path, loaded: checkpoint.LoadedCheckpoint, stems: list[str], knobs) -> tuple[np.ndarray, str]:
    """Per-stem gains ``(stems,)`` from an ``evaluate`` run's ``results.json``, and where they came from.

    A run with ``eval.gain=auto`` applied the median optimal gain g* learned on the
    valid split; that is taken. Any other run reports the median g* of the split it
    scored (``per_stem.<stem>.gain_median``), taken instead. A stem without a usable
    g* (silent everywhere) keeps gain 1, as in ``eval.gain=auto``.

    Raises :class:`SepnetError` for a missing or unreadable file, or one from another
    checkpoint or other stems. Inference knobs that differ from the ones the gains
    were learned with are a warning: the gains then fit only approximately.
    """
    fix = f"pass the results.json of `python -m sepnet.evaluate ckpt={loaded.path}`, or set separate.gain=<number>"
    if not path.is_file():
        raise SepnetError(f"separate.gain_from '{path}' does not exist; {fix}")
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SepnetError(f"separate.gain_from '{path}' is not readable JSON ({exc}); {fix}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("gain"), dict):
        raise SepnetError(f"separate.gain_from '{path}' is not an evaluate run's results.json (it has no 'gain'); {fix}")
    if not _same_checkpoint(results, loaded):
        raise SepnetError(
            f"separate.gain_from '{path}' holds the gains of checkpoint '{results.get('checkpoint')}', not of "
            f"'{loaded.path}'; gains fit only the model they were learned for: {fix}"
        )
    if sorted(results["gain"]) != sorted(stems):
        raise SepnetError(
            f"separate.gain_from '{path}' has gains for {', '.join(results['gain']) or 'no stems'} but the checkpoint "
            f"separates {', '.join(stems)}; {fix}"
        )
    source = str(results.get("gain_source", ""))
    if source.startswith("auto"):
        picked, where = results["gain"], f"evaluate's eval.gain={source}"
    else:
        per_stem = results.get("per_stem") or {}
        picked = {s: (per_stem.get(s) or {}).get("gain_median") for s in stems}
        where = f"median g* of the {results.get('tracks', '?')} {results.get('split', '?')} tracks evaluate scored"
    gains = []
    for stem in stems:
        value = picked.get(stem)
        usable = is_positive(value)
        gains.append(float(value) if usable else 1.0)
    learned_knobs = results.get("knobs") or {}
    differ = [f"{k}={learned_knobs[k]} there, {knobs[k]} here" for k in _GAIN_KNOBS if k in learned_knobs and learned_knobs[k] != knobs[k]]
    if differ:
        log.warning("the gains in '%s' were learned with other inference knobs (%s); they fit only approximately",
                    path, "; ".join(differ))
    return np.array(gains, dtype=np.float32), where


def check_gain(knobs) -> float | None:
    """``separate.gain`` as a number, or None for ``auto``; a :class:`SepnetError` for a bad setting."""
    gain, gain_from = knobs.gain, knobs.get("gain_from")
    if gain == "auto":
        if gain_from in (None, ""):
            raise SepnetError(
                "separate.gain=auto reads the gains an evaluate run learned: pass "
                "separate.gain_from=<its results.json>, or set separate.gain=<number>"
            )
        return None
    if not (is_positive(gain) or isinstance(gain, DictConfig)):  # a per-stem dict is checked by resolve_gains
        raise SepnetError(
            f"separate.gain={gain!r} is not valid; set it to a number > 0, or to auto with "
            f"separate.gain_from=<results.json of an evaluate run>"
        )
    if gain_from not in (None, ""):
        raise SepnetError(
            f"separate.gain_from is set but separate.gain={gain!r}; set separate.gain=auto to use its gains, "
            "or drop separate.gain_from"
        )
    return float(gain)


def output_gains(knobs, loaded: checkpoint.LoadedCheckpoint, stems: list[str]) -> np.ndarray:
    """``(stems,)`` output gains from ``separate.gain`` (a number, ``{stem: number}``, or ``auto`` with ``separate.gain_from``)."""
    check_gain(knobs)

    def learned() -> tuple[np.ndarray, str]:
        gains, where = learned_gains(Path(str(knobs.gain_from)).expanduser(), loaded, stems, knobs)
        return gains, f"auto from '{knobs.gain_from}' ({where})"

    setting = OmegaConf.to_container(knobs.gain) if isinstance(knobs.gain, DictConfig) else knobs.gain
    gains, source = resolve_gains(setting, stems, "separate.gain", learned)
    if setting == "auto":
        print(f"gain={source}: " + ", ".join(f"{s} x{g:.3f}" for s, g in zip(stems, gains)), flush=True)
    return gains


# -- the job ------------------------------------------------------------------------------


def _paths(value, key: str) -> list[str]:
    """``ckpt`` / ``input``: one path or a list of them, as strings; one line for none."""
    items = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    items = [str(v) for v in items if v not in (None, "")]
    if not items:
        raise SepnetError(f"no {key} given; pass {key}=<path>")
    return items


def _ensemble_weights(knobs, count: int) -> list[float] | None:
    """``separate.weights`` as fractions summing to 1, one per checkpoint (None: equal)."""
    weights = knobs.get("weights")
    if weights is None:
        return None
    weights = list(weights) if OmegaConf.is_list(weights) else [weights]
    if len(weights) != count or not all(is_positive(w) for w in weights):
        raise SepnetError(
            f"separate.weights={weights} does not fit the {count} checkpoint(s) of ckpt; give {count} numbers > 0 "
            f"(they are normalised to sum to 1), or drop separate.weights for equal weights"
        )
    return [float(w) / sum(float(x) for x in weights) for w in weights]


def _check_ensemble(runners: list[OverlapAdd], ckpts: list[str]) -> None:
    """Every checkpoint of an ensemble separates the same stems (in any order), or one line."""
    first = sorted(runners[0].stems)
    for runner, path in zip(runners[1:], ckpts[1:]):
        if sorted(runner.stems) != first:
            raise SepnetError(
                f"checkpoint '{path}' separates {', '.join(runner.stems)} but '{ckpts[0]}' separates "
                f"{', '.join(runners[0].stems)}; an ensemble averages stem by stem: give checkpoints of the same stems"
            )


def run_separation(cfg: DictConfig) -> list[Path]:
    """Separate ``cfg.input`` (a path or a list) with ``cfg.ckpt`` (a path, or a list: an ensemble) into
    ``cfg.out``; returns every file written."""
    for key in ("ckpt", "input"):
        if OmegaConf.is_missing(cfg, key):
            raise SepnetError(f"no {key} given; pass {key}=<path>")
    ckpts, inputs = _paths(cfg.ckpt, "ckpt"), _paths(cfg.input, "input")
    knobs = cfg.separate
    check_gain(knobs)  # a bad setting fails before the slow work
    fmt = stem_format(knobs)
    weights = _ensemble_weights(knobs, len(ckpts))
    top_band = knobs.get("top_band", "share")
    if top_band not in TOP_BAND_CHOICES:
        raise SepnetError(
            f"separate.top_band={top_band!r} is not an option; use share (the band above the model's Nyquist goes "
            "to the stems) or drop (left out)"
        )
    on_error = knobs.get("on_error", "stop")
    if on_error not in ON_ERROR:
        raise SepnetError(
            f"separate.on_error={on_error!r} is not an option; use stop (end at the first bad file) or skip "
            "(go on, list the bad files at the end)"
        )
    jobs = [job for path in inputs for job in find_jobs(Path(path).expanduser())]
    check_distinct_folders(jobs)
    loaded = [checkpoint.load(path) for path in ckpts]
    runners = [build_runner(one.separator, knobs, "separate") for one in loaded]
    _check_ensemble(runners, ckpts)
    stems = list(runners[0].stems)
    if len(loaded) > 1 and knobs.gain == "auto":
        raise SepnetError(
            "separate.gain=auto takes the gains an evaluate run learned for one checkpoint, not for an ensemble; "
            "set separate.gain=<number> (or per stem) with several checkpoints"
        )
    gains = output_gains(knobs, loaded[0], stems)
    two_stems = knobs.get("two_stems")
    if two_stems is not None and str(two_stems) not in stems:
        raise SepnetError(
            f"separate.two_stems={two_stems} is not a stem of checkpoint '{ckpts[0]}'; it separates {', '.join(stems)}"
        )
    two_stems = None if two_stems is None else str(two_stems)
    accompaniment = bool(knobs.accompaniment) and len(stems) == 1
    out = ensure_writable(Path(cfg.out).expanduser(), key="out")  # before any audio is separated
    written, skipped = [], []
    for i, job in enumerate(progress(jobs, "separate", unit="file")):
        start = time.perf_counter()
        try:
            paths = separate_file(
                runners if len(runners) > 1 else runners[0], job, out, gains, accompaniment,
                checkpoint_path=ckpts if len(ckpts) > 1 else ckpts[0], weights=weights, two_stems=two_stems, fmt=fmt,
                top_band=top_band,
            )
        except SepnetError as exc:
            if on_error == "stop":
                raise
            skipped.append((job.audio, exc))
            print(f"[{i + 1}/{len(jobs)}] skipped {job.audio}: {exc}", flush=True)
            continue
        seconds = audio_info(job.audio).duration
        elapsed = time.perf_counter() - start
        print(
            f"[{i + 1}/{len(jobs)}] {job.audio} -> {out / job.folder}/ ({', '.join(p.stem for p in paths)}; "
            f"{seconds:.1f} s of audio in {elapsed:.1f} s, {seconds / max(elapsed, 1e-9):.1f}x real time)",
            flush=True,
        )
        written += paths
    if skipped:
        print(f"skipped {len(skipped)} of {len(jobs)} files (separate.on_error=skip):", flush=True)
        for audio, exc in skipped:
            print(f"  {audio}: {exc}", flush=True)
        raise SepnetError(
            f"{len(skipped)} of {len(jobs)} input files could not be separated (listed above); fix or remove them "
            f"and run again (the {len(jobs) - len(skipped)} others are written in '{out}')"
        )
    return written
