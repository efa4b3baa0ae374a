"""Scoring a checkpoint on a split, behind ``python -m sepnet.evaluate``.

The checkpoint supplies the model and front end (:func:`bind_checkpoint`); the data
config reads the tracks of ``split`` at the checkpoint's sample rate, each through
:meth:`SeparationDataModule.read_track`. Every track is separated whole
(:mod:`sepnet.inference.overlap_add`) and scored (:mod:`sepnet.evaluation.scoring`);
:func:`run_evaluation` writes ``results.json``, ``per_track.csv``, ``summary.md``, the
listening report and, with ``eval.full_metrics=true``, museval's per-track JSON files.
A multi-task model's rhythm head is scored too (:mod:`sepnet.evaluation.rhythm`):
``beat_f1`` in ``results.json`` (mir_eval's F-measure, mean over tracks) and
``beats.csv`` per track.
"""

from __future__ import annotations

import collections
import json
import logging
import math
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from sepnet.app.configs import CONFIG_DIR
from sepnet.app.progress import progress
from sepnet.app.run_dir import ensure_writable
from sepnet.app.tables import markdown_table, write_csv
from sepnet.atomic import write_bytes, write_text
from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.compat import differences
from sepnet.checkpoints.resume import command_line_keys
from sepnet.errors import SepnetError
from sepnet.evaluation.gains import resolve_gains
from sepnet.evaluation.pictures import figure_png, sdr_figure
from sepnet.evaluation.report import ListeningReport
from sepnet.evaluation.rhythm import beat_threshold, has_rhythm_head, score_track_beats
from sepnet.evaluation.scoring import FULL_METRICS, TRACK_METRICS, aggregate, mean_over_stems, optimal_gain, score_track
from sepnet.inference.overlap_add import OverlapAdd, build_runner, nonfinite_stem
from sepnet.models.masks import check_stem_names
from sepnet.registry import is_plain

log = logging.getLogger(__name__)

REPORT_AUTO_MAX_TRACKS = 10
"""``report=auto`` writes the listening report for splits of at most this many tracks."""


# -- configuration -----------------------------------------------------------------


def bind_checkpoint(cfg: DictConfig, loaded: checkpoint.LoadedCheckpoint) -> None:
    """Make ``cfg.frontend`` the checkpoint's settings, so ``data`` reads audio at the model's rate.

    The settings are those of the front end :func:`checkpoint.load` rebuilt (checked
    integers), never the file's ``frontend`` node itself: ``data`` interpolates
    ``${frontend.sample_rate}`` and is then instantiated, so nothing from the file
    may reach it unchecked. A ``frontend.*`` or ``data.sample_rate`` override that
    disagrees with the checkpoint is a user error: evaluation must see what the
    model was trained on.
    """
    settings = loaded.separator.front_end.settings
    front = OmegaConf.create(settings)
    given = OmegaConf.to_container(cfg.frontend, resolve=True) if cfg.get("frontend") else {}
    found = differences(settings, given, [k for k in given if k in settings], prefix="frontend")
    if found:
        first = found[0]
        raise SepnetError(
            f"{first.key}={first.b} disagrees with the checkpoint ({first.a}); the front end comes from "
            f"'{loaded.path}': drop the {first.key} override"
        )
    with open_dict(cfg):
        cfg.frontend = front
    rate = cfg.data.get("sample_rate")
    if rate != front.sample_rate:
        raise SepnetError(
            f"data.sample_rate={rate} but the checkpoint's model runs at {front.sample_rate} Hz; drop the "
            f"data.sample_rate override (it follows the checkpoint)"
        )


DATA_PATH_KEYS = ("train_dir", "val_dir", "test_dir")
"""``data=folder``'s folders, at the top of the data node; every other data option keeps its in ``data.source``."""


def _plain(value) -> bool:
    """:func:`sepnet.registry.is_plain`."""
    return is_plain(value)


def bind_data(cfg: DictConfig, loaded: checkpoint.LoadedCheckpoint, given: list[str] | None) -> list[str]:
    """Take the data settings the user did not type from the checkpoint's stored config; returns them as ``key=value``.

    ``data.stems`` always (a six-stem model reads six stems); the source's settings (the embedded set's
    ``tracks_per_split``, ``duration``, ``seed``, ``root``; a folder dataset's root or folders) when the
    checkpoint was trained on the same kind of data as ``cfg.data`` selects. ``given``: the keys the
    command line set (None: nothing known, so nothing counts as typed). Only plain values are copied
    (:func:`_plain`): no class name and no interpolation read from the file reaches ``instantiate``.
    With no ``data=`` typed, a checkpoint trained on another option (``data=stem_folder``) selects it.
    """
    stored = loaded.config.get("data") if isinstance(loaded.config, dict) else None
    if not isinstance(stored, dict):
        return []
    given = given or []

    def typed(key: str) -> bool:  # data=<option> chooses the kind of data, not the model's stems: not a key
        return any(key == g or key.startswith(g + ".") for g in given if g != "data")

    taken = []
    here = (cfg.data.get("_target_"), (cfg.data.get("source") or {}).get("_target_"))
    source = stored.get("source") if isinstance(stored.get("source"), dict) else {}
    there = (stored.get("_target_"), source.get("_target_"))
    same_kind = here == there
    if not same_kind and "data" not in given:  # the default data=synthetic: the option the checkpoint was trained on
        option = _data_option(there)
        if option is not None:
            _select_data_option(cfg, option, [g for g in given if g.startswith("data.")])
            taken.append(f"data={option}")
            same_kind = True
    stems = stored.get("stems")
    if not typed("data.stems") and isinstance(stems, list) and stems and _plain(stems) and all(isinstance(s, str) for s in stems):
        try:
            check_stem_names(stems)
        except ValueError:
            stems = None
        if stems is not None and list(stems) != list(cfg.data.get("stems") or []):
            with open_dict(cfg):
                cfg.data.stems = list(stems)
            taken.append(f"data.stems=[{','.join(stems)}]")

    if not same_kind:  # the user chose other data (data=...), or sepnet has no option of the checkpoint's kind
        return taken
    copies = [(f"data.source.{k}", source.get(k)) for k in (cfg.data.get("source") or {}) if k not in ("_target_", "sample_rate")]
    copies += [(f"data.{k}", stored.get(k)) for k in DATA_PATH_KEYS if k in cfg.data]
    for key, value in copies:
        if value is None or typed(key) or not _plain(value):
            continue
        node_key = key.removeprefix("data.")
        current = OmegaConf.select(cfg.data, node_key, throw_on_missing=False)
        if isinstance(current, DictConfig):
            current = OmegaConf.to_container(current)
        if current == value:
            continue
        value = json.loads(json.dumps(value))  # plain dicts and lists (the stored config's are StoredConfig)
        with open_dict(cfg):
            OmegaConf.update(cfg.data, node_key, value, merge=False)
        taken.append(f"{key}={_override_text(value)}")
    return taken


def _override_text(value) -> str:
    """``value`` as it would be typed on the command line: ``{train:4,valid:2}``, ``[a,b]``, ``4.0``."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_override_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_override_text(v) for v in value) + "]"
    return str(value)


def _data_option(there: tuple) -> str | None:
    """The option of ``conf/data`` whose class is the checkpoint's (``stem_folder``), or None."""
    names = [t for t in there if isinstance(t, str) and t]
    for option in sorted((Path(CONFIG_DIR) / "data").glob("*.yaml")):
        if names and f"_target_: {names[-1]}\n" in option.read_text():
            return option.stem
    return None


def _select_data_option(cfg: DictConfig, option: str, typed_keys: list[str]) -> None:
    """Make ``cfg.data`` sepnet's own ``conf/data/<option>.yaml`` (over the shared ``_common/base.yaml``, as its
    defaults list says), keeping the ``data.*`` values the command line typed."""
    folder = Path(CONFIG_DIR) / "data"
    node = OmegaConf.load(folder / f"{option}.yaml")
    defaults = node.pop("defaults", [])
    if list(defaults) != [{"_common@_here_": "base"}, "_self_"]:
        raise SepnetError(
            f"the checkpoint was trained on data={option}; evaluate cannot select it by itself: pass data={option} "
            f"and its settings"
        )
    data = OmegaConf.merge(OmegaConf.load(folder / "_common" / "base.yaml"), node)
    for key in typed_keys:
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        OmegaConf.update(data, key.removeprefix("data."), value, merge=False)
    with open_dict(cfg):
        cfg.data = data


def output_gains(cfg: DictConfig, runner: OverlapAdd, datamodule, stems: list[str]) -> tuple[np.ndarray, str]:
    """The output gain per target stem from ``eval.gain`` (a number, ``{stem: number}`` or ``auto``: learned here)."""

    def learn() -> tuple[np.ndarray, str]:
        gains, n = learn_gain(runner, datamodule, stems, cfg.eval.get("max_tracks"))
        return gains, f"auto (median g* of {n} valid tracks)"

    gain = cfg.eval.gain
    return resolve_gains(OmegaConf.to_container(gain) if isinstance(gain, DictConfig) else gain, stems, "eval.gain", learn)


def learn_gain(runner: OverlapAdd, datamodule, stems: list[str], max_tracks: int | None) -> tuple[np.ndarray, int]:
    """Median over the valid split's tracks of each stem's optimal gain g* (``eval.gain=auto``); and the track count.

    A stem with no usable g* (silent estimates everywhere) gets gain 1.
    """
    files = datamodule.source.tracks("valid", datamodule.stems)[:max_tracks]
    if not files:
        raise SepnetError(
            f"eval.gain=auto learns the gain on the valid split, but {datamodule.source.describe('valid')} holds no "
            f"tracks; add tracks there or set eval.gain to a number"
        )
    index = [datamodule.stems.index(s) for s in stems]
    gains = []
    for f in files:
        track = datamodule.read_track(f)
        if track is None:  # data.on_error=skip
            continue
        estimates = runner.separate(track.audio.sum(0))
        gains.append([optimal_gain(track.audio[i], e) for i, e in zip(index, estimates)])
    if not gains:
        raise SepnetError(
            f"eval.gain=auto: every valid track of {datamodule.source.describe('valid')} was skipped for errors "
            "(data.on_error=skip); fix those tracks or set eval.gain to a number"
        )
    with np.errstate(all="ignore"):
        learned = np.nanmedian(np.array(gains, dtype=np.float64), axis=0)
    learned = np.where(np.isfinite(learned) & (learned > 0), learned, 1.0)
    print("gain=auto, learned on valid: " + ", ".join(f"{s} x{g:.3f}" for s, g in zip(stems, learned)), flush=True)
    return learned, len(gains)


# -- full metrics through museval -----------------------------------------------------


def museval_track(references: np.ndarray, estimates: np.ndarray, sample_rate: int, win: float, hop: float) -> dict:
    """museval v4 SDR/ISR/SIR/SAR per frame of (sources, samples, channels) arrays: ``{metric: (sources, frames)}``."""
    import museval  # imports musdb -> stempeg, which needs ffmpeg: only here

    sdr, isr, sir, sar = museval.evaluate(references, estimates, win=int(win * sample_rate), hop=int(hop * sample_rate))
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


class FullMetrics:
    """Runs :func:`museval_track` for each track, in ``workers`` processes, and writes museval's JSON.

    At most ``2 * workers`` tracks wait at once, so memory stays bounded while the
    main process separates the next tracks.
    """

    def __init__(self, output_dir: Path, subset: str, sample_rate: int, win: float, hop: float, workers: int):
        self.folder = output_dir / "museval" / subset
        self.sample_rate, self.win, self.hop, self.workers = sample_rate, win, hop, max(1, int(workers))
        self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) if self.workers > 1 else None
        self.pending: collections.deque[tuple[str, list[str], dict, Future | dict]] = collections.deque()

    def submit(self, name: str, stems: list[str], scores: dict, references: np.ndarray, estimates: np.ndarray) -> None:
        """Queue a track; stems museval cannot score (silent reference or estimate) are left out."""
        keep = [j for j, s in enumerate(stems) if not (scores[s]["silent_reference"] or scores[s]["silent_estimate"])]
        for s in stems:
            scores[s].update({m: math.nan for m in FULL_METRICS})
        if not keep:
            return
        args = (references[keep].transpose(0, 2, 1), estimates[keep].transpose(0, 2, 1), self.sample_rate, self.win, self.hop)
        job = self.pool.submit(museval_track, *args) if self.pool else museval_track(*args)
        self.pending.append((name, [stems[j] for j in keep], scores, job))
        while len(self.pending) > 2 * self.workers:
            self._finish(*self.pending.popleft())

    def close(self) -> None:
        while self.pending:
            self._finish(*self.pending.popleft())
        if self.pool:
            self.pool.shutdown()

    def _finish(self, name: str, stems: list[str], scores: dict, job: Future | dict) -> None:
        import museval

        frames = job.result() if isinstance(job, Future) else job
        store = museval.TrackStore(win=self.win, hop=self.hop, track_name=name)
        for j, stem in enumerate(stems):
            store.add_target(target_name=stem, values={m: frames[m][j].tolist() for m in ("SDR", "SIR", "ISR", "SAR")})
            for metric in FULL_METRICS:
                values = frames[metric.upper()][j]
                values = values[np.isfinite(values)]
                scores[stem][metric] = float(np.median(values)) if len(values) else math.nan
        self.folder.mkdir(parents=True, exist_ok=True)
        store.save(self.folder / f"{name}.json")


# -- outputs --------------------------------------------------------------------------


def _json_safe(value):
    """NaN/inf -> None (strict JSON), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summary_markdown(results: dict) -> str:
    """The printed summary: a header and one row per stem."""
    per_stem = results["per_stem"]
    head = (
        f"**{results['checkpoint']}** on {results['split']} ({results['tracks']} tracks, {results['sample_rate']} Hz); "
        f"mask_scale {results['knobs']['mask_scale']}, mask_clip {results['knobs']['mask_clip']}, threshold "
        f"{results['knobs']['threshold']}, wiener_iters {results['knobs']['wiener_iters']}, gain {results['gain_source']}"
    )
    headers = ["stem", "gain", "SDR median", "SDR mean", "new SDR median", "new SDR mean", "g* median", "SDR with g*", "NaN tracks"]
    rows = [
        [stem, results["gain"][stem], v["sdr_median"], v["sdr_mean"], v["new_sdr_median"], v["new_sdr_mean"],
         v["gain_median"], v["sdr_gain_median"], v["nan_tracks"]]
        for stem, v in per_stem.items()
    ]
    if any("isr_median" in v for v in per_stem.values()):
        headers += ["ISR", "SIR", "SAR"]
        for row, v in zip(rows, per_stem.values()):
            row += [v["isr_median"], v["sir_median"], v["sar_median"]]
    rows.append(["**mean**", None, results["sdr"], None, results["new_sdr"], None, None, results["sdr_gain"], None] + [None] * (len(headers) - 9))
    silent = {s: v["silent_reference_tracks"] for s, v in per_stem.items() if v["silent_reference_tracks"]}
    note = ""
    if silent:
        note = "\n\nsilent reference (NaN, left out of the medians): " + ", ".join(f"{s} in {n} track(s)" for s, n in silent.items())
    if "beat_f1" in results:
        note += (
            f"\n\nrhythm head: beat F-measure {results['beat_f1']:.3f} (mir_eval, ±70 ms, mean of "
            f"{results['tracks']} tracks; reference beats: {results['beat_references']})"
        )
    return f"{head}\n\n{markdown_table(headers, rows)}{note}\n"


def write_outputs(
    output_dir: Path, results: dict, per_track: list[tuple[str, dict]], stems: list[str], beats: list[dict] | None = None
) -> str:
    """``results.json``, ``per_track.csv``, ``summary.md`` (and ``beats.csv`` for a rhythm head); returns the summary."""
    write_text(output_dir / "results.json", json.dumps(_json_safe(results), indent=2))
    if beats:
        columns = ["track", "beat_f1", "reference_beats", "estimated_beats", "reference_source"]
        write_csv(output_dir / "beats.csv", columns, [[row[c] for c in columns] for row in beats])
    metrics = [*TRACK_METRICS, *(m for m in FULL_METRICS if per_track and m in per_track[0][1][stems[0]])]
    rows = [
        [name, stem, *(scores[stem][m] for m in metrics), scores[stem]["silent_reference"], scores[stem]["silent_estimate"]]
        for name, scores in per_track
        for stem in stems
    ]
    write_csv(output_dir / "per_track.csv", ["track", "stem", *metrics, "silent_reference", "silent_estimate"], rows)
    summary = summary_markdown(results)
    write_text(output_dir / "summary.md", summary)
    return summary


# -- the run ----------------------------------------------------------------------------


def run_evaluation(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt`` on ``cfg.split`` of ``cfg.data``; returns the results dict (also written)."""
    output_dir = ensure_writable(Path(cfg.paths.output_dir))
    if cfg.get("ckpt") in (None, "???") or OmegaConf.is_missing(cfg, "ckpt"):
        raise SepnetError("no checkpoint given; pass ckpt=<path to a .ckpt written by sepnet.train>")
    loaded = checkpoint.load(cfg.ckpt)
    bind_checkpoint(cfg, loaded)
    taken = bind_data(cfg, loaded, command_line_keys())
    if taken:
        print(f"data from the checkpoint: {' '.join(taken)}", flush=True)
    if cfg.split not in ("train", "valid", "test"):
        raise SepnetError(f"split={cfg.split} is not a split; use split=valid or split=test")

    datamodule = instantiate(cfg.data)
    stems = loaded.separator.target_stems
    missing = [s for s in stems if s not in datamodule.stems]
    if missing:
        raise SepnetError(
            f"the checkpoint estimates {', '.join(missing)}, which data.stems ({', '.join(datamodule.stems)}) does not "
            f"read; add it to data.stems"
        )
    datamodule.prepare_data()
    files = datamodule.source.tracks(cfg.split, datamodule.stems)[: cfg.eval.get("max_tracks")]
    if not files:
        raise SepnetError(
            f"split={cfg.split}: {datamodule.source.describe(cfg.split)} holds no track folders; add tracks there, "
            f"point the data config at the folder that has them, or pick another split"
        )
    runner = build_runner(loaded.separator, cfg.eval, "eval")
    gain, gain_source = output_gains(cfg, runner, datamodule, stems)
    rate, index = datamodule.sample_rate, [datamodule.stems.index(s) for s in stems]

    want_report = cfg.report
    if want_report == "auto":
        want_report = len(files) <= REPORT_AUTO_MAX_TRACKS
    if not isinstance(want_report, bool):
        raise SepnetError(f"report={cfg.report!r} is not valid; set report to true, false or auto")
    report = ListeningReport(rate, stems, int(cfg.report_tracks), float(cfg.report_seconds)) if want_report else None
    full = None
    if cfg.eval.full_metrics:
        subset = "test" if cfg.split == "test" else "train"  # musdb's layout: validation tracks are in train
        full = FullMetrics(output_dir, subset, rate, cfg.eval.win, cfg.eval.hop, cfg.eval.workers)

    # A multi-task model: its rhythm head's beats on each whole track, against the track's beats.
    rhythm = has_rhythm_head(runner)
    threshold = beat_threshold(loaded.config) if rhythm else None
    per_track, beats = [], []
    try:
        for i, f in enumerate(progress(files, "evaluate")):
            track = datamodule.read_track(f, beats=rhythm)
            if track is None:  # data.on_error=skip
                continue
            mixture = track.audio.sum(0)
            references = track.audio[index]
            estimates = runner.separate(mixture) * gain[:, None, None].astype(np.float32)
            broken = nonfinite_stem(estimates)
            if broken is not None:
                raise SepnetError(
                    f"checkpoint '{cfg.ckpt}' gave NaN or inf estimates of {stems[broken]} for track '{track.name}', "
                    f"which cannot be scored: the checkpoint's weights or the eval.* settings are broken; use "
                    f"another checkpoint or the default eval.* settings"
                )
            scores = score_track(references, estimates, stems, rate, cfg.eval.win, cfg.eval.hop)
            if rhythm:
                beat_scores = score_track_beats(runner, mixture, track.beats, threshold)
                beats.append({"track": track.name, **beat_scores, "reference_source": track.beat_source})
            if full is not None:
                full.submit(track.name, stems, scores, references, estimates)
            if report is not None:
                report.add(track.name, mixture, references, estimates, scores)
            per_track.append((track.name, scores))
            log.info("%d/%d %s: %s", i + 1, len(files), track.name, {s: round(v["sdr"], 2) for s, v in scores.items()})
    finally:
        if full is not None:
            full.close()
    if not per_track:
        raise SepnetError(
            f"every {cfg.split} track of {datamodule.source.describe(cfg.split)} was skipped for errors "
            "(data.on_error=skip); fix those tracks or choose another split"
        )

    per_stem = aggregate([s for _, s in per_track], stems)
    knobs = OmegaConf.to_container(cfg.eval, resolve=True)
    results = {
        "sdr": mean_over_stems(per_stem, "sdr_median"),
        "new_sdr": mean_over_stems(per_stem, "new_sdr_median"),
        "sdr_gain": mean_over_stems(per_stem, "sdr_gain_median"),
        "sdr_per_stem": {s: v["sdr_median"] for s, v in per_stem.items()},
        "gain": {s: float(g) for s, g in zip(stems, gain)},
        "gain_source": gain_source,
        "split": cfg.split,
        "tracks": len(per_track),
        "sample_rate": rate,
        "checkpoint": str(loaded.path),
        "checkpoint_metrics": loaded.metrics,
        "checkpoint_config": loaded.config,  # plain data, as stored: never resolved
        "lineage": loaded.lineage,
        "knobs": knobs,
        "per_stem": per_stem,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if rhythm:
        results["beat_f1"] = float(np.mean([b["beat_f1"] for b in beats]))
        # A string, not numbers: the sweep table tabulates numbers, and this describes the reference.
        counts = collections.Counter(b["reference_source"] for b in beats)
        results["beat_references"] = ", ".join(f"{n} {source}" for source, n in sorted(counts.items()))
    summary = write_outputs(output_dir, results, per_track, stems, beats)
    sdr_png = figure_png(sdr_figure(per_track, stems))
    write_bytes(output_dir / "sdr_per_track.png", sdr_png)
    if report is not None:
        notes = [
            (
                f"checkpoint {loaded.path}, split {cfg.split}, {len(per_track)} tracks at {rate} Hz; "
                f"mask_scale {knobs['mask_scale']}, threshold {knobs['threshold']}, gain {gain_source}"
            ),
            "SDR: BSSEval v4 (median over 1 s frames); g*: least-squares optimal output gain.",
        ]
        report.write(output_dir / "report.html", f"sepnet evaluation: {Path(cfg.ckpt).name}", per_stem, notes,
                     all_tracks=[name for name, _ in per_track], sdr_png=sdr_png)
    print(summary, flush=True)
    print(f"results: {output_dir / 'results.json'}", flush=True)
    return results
