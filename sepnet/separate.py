"""``python -m sepnet.separate ckpt=<path> input=<file or folder> [out=separated]``: write separated stems.

    python -m sepnet.separate ckpt=best.ckpt input=song.flac             # separated/song/<stem>.wav
    python -m sepnet.separate ckpt=best.ckpt input=~/musdb18hq/test out=est  # est/test/<track>/<stem>.wav

Any audio file at any sample rate: WAV/FLAC/OGG/MP3/AIFF through libsndfile,
everything else FFmpeg decodes (M4A/AAC, Opus in WebM, WMA, the soundtrack of an
MP4/MKV/MOV video, ...) through PyAV (:mod:`sepnet.audio.io`). Each stem is written as
``<out>/<track>/<stem>.wav`` at the input's sample rate and decoded length, mono
for a mono input and stereo otherwise (more than two channels are downmixed to
stereo for the model, ITU-R BS.775 for 5.1, with one line saying so); a model
with a single target also writes ``accompaniment.wav`` (the input minus that
target, at the input's own rate, so nothing above the model's band is lost from it).

``separate.gain`` scales the stems: a number, or ``auto`` with
``separate.gain_from=<results.json>`` to apply the per-stem gains an ``evaluate``
run of the same checkpoint learned (``eval.gain=auto``: median g* on valid;
otherwise the median g* of the split it scored).

The whole path streams: the input is read block by block, resampled to the
model's rate (soxr streaming), separated in cross-faded chunks
(:mod:`sepnet.inference.overlap_add`), resampled back and appended to the output files,
which appear under their final names only when complete. Memory depends on
``separate.chunk_seconds`` and ``separate.batch_size``, not on the input length.

A folder input writes the musdb estimates layout that museval's ``eval_mus_dir``
reads, ``<out>/<subset>/<track>/<stem>.wav``: a MUSDB18-HQ-style tree
(``<split>/<track>/mixture.wav``) keeps its split (``valid`` tracks are in musdb's
``train`` subset), a folder of track folders or of audio files goes to ``test``
(``train`` if the folder itself is named train or valid). A bad file in a folder
(corrupt, unreadable, a broken link) ends the run there (``separate.on_error=stop``);
with ``separate.on_error=skip`` the other files are separated, the bad ones listed at
the end, and the exit status is still 2.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads OpenMP, which reads its wait policy once
    from sepnet.app.wait_policy import choose_wait_policy

    choose_wait_policy()

from omegaconf import DictConfig

from sepnet.app.allocator import keep_freed_memory
from sepnet.app.configs import Option
from sepnet.app.scaffold import hydra_entry_point, run_entry_point
from sepnet.commands.separation import (  # re-exported: the entry point's public names
    ACCOMPANIMENT,
    Job,
    find_jobs,
    learned_gains,
    output_gains,
    run_separation,
    safe_name,
    separate_file,
    track_name,
)
from sepnet.errors import exit_on_user_error

__all__ = [
    "ACCOMPANIMENT", "Job", "find_jobs", "learned_gains", "main", "output_gains",
    "run_separation", "safe_name", "separate", "separate_file", "track_name",
]  # fmt: skip


@exit_on_user_error
def separate(cfg: DictConfig) -> int:
    """Separate as ``cfg`` says; returns the number of files written."""
    keep_freed_memory()
    return len(run_separation(cfg))


OPTIONS = (
    Option(("-o", "--out"), "out", help="folder the stems go to, <out>/<track>/<stem>.wav (default separated)"),
    Option(("-n", "--ckpt"), "ckpt", many=True, help="checkpoint; repeat it for an ensemble"),
    Option(("-d", "--device"), "separate.device", help="cpu, cuda, cuda:1, mps or auto"),
    Option(("--two-stems",), "separate.two_stems", help="write only this stem and no_<stem>"),
    Option(("--clip-mode",), "separate.clip_mode", help="rescale or clamp, for integer samples and MP3"),
    Option(("--flac",), sets=("separate.format=flac",), help="FLAC files (24-bit)"),
    Option(("--mp3",), sets=("separate.format=mp3",), help="MP3 files"),
    Option(("--int16",), sets=("separate.bits=16",), help="16-bit WAV"),
    Option(("--int24",), sets=("separate.bits=24",), help="24-bit WAV (or FLAC)"),
    Option(("--float32",), sets=("separate.bits=float",), help="float WAV (the default)"),
)
"""Demucs' options, beside Hydra's key=value overrides (which reach every setting)."""

USAGE = """usage: python -m sepnet.separate ckpt=<ckpt> <file or folder> [more ...] [-o separated] [key=value ...]

  python -m sepnet.separate ckpt=best.ckpt song.flac                 # separated/song/<stem>.wav
  python -m sepnet.separate -n best.ckpt songs/ -o stems --mp3       # every file of songs/, MP3
  python -m sepnet.separate ckpt=[a.ckpt,b.ckpt] song.flac           # an ensemble: the mean of both"""

main = hydra_entry_point("separate", separate, positional="input", many=True, options=OPTIONS, usage=USAGE)


if __name__ == "__main__":
    run_entry_point(main)
