"""sepnet.evaluate on a real tiny checkpoint, its scoring rules, the sweep table and the listening report."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from io import BytesIO

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_SOURCE, compose_config

from sepnet.evaluate import run_evaluation
from sepnet.evaluation.bsseval import framewise_sdr, track_sdr
from sepnet.evaluation.scoring import aggregate, score_track

SR = 22050


def evaluate_overrides(ckpt, root, *extra):
    return [f"ckpt={ckpt}", f"data.source.root={root}", *TINY_SOURCE, *extra]


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint, tiny_data_root, tmp_path_factory):
    """One evaluation of the tiny checkpoint on the embedded test split: (run dir, results, stdout)."""
    run_dir = tmp_path_factory.mktemp("evaluate")
    cfg = compose_config("evaluate", evaluate_overrides(tiny_checkpoint, tiny_data_root), run_dir)
    results = run_evaluation(cfg)
    return run_dir, results


def test_evaluate_writes_results_per_track_and_summary(evaluated, tiny_checkpoint, capsys):
    run_dir, results = evaluated
    for name in ("results.json", "per_track.csv", "summary.md", "report.html"):
        assert (run_dir / name).is_file(), name
    stored = json.loads((run_dir / "results.json").read_text())
    assert stored["checkpoint"] == str(tiny_checkpoint)
    assert stored["tracks"] == 2 and stored["split"] == "test" and stored["sample_rate"] == SR
    assert stored["checkpoint_config"]["model"]["hidden_size"] == 16  # the model came from the checkpoint
    assert stored["config"]["frontend"]["sample_rate"] == SR  # ... and so did the front end
    assert "parents" in stored["lineage"]

    rows = list(csv.DictReader((run_dir / "per_track.csv").open()))
    assert len(rows) == 2 * 4
    for stem in ("bass", "drums", "other", "vocals"):
        sdr = [float(r["sdr"]) for r in rows if r["stem"] == stem]
        gains = [float(r["gain"]) for r in rows if r["stem"] == stem]
        assert all(math.isfinite(v) for v in sdr)
        per_stem = stored["per_stem"][stem]
        assert per_stem["sdr_median"] == pytest.approx(np.median(sdr))
        assert per_stem["sdr_mean"] == pytest.approx(np.mean(sdr))
        assert per_stem["gain_median"] == pytest.approx(np.median(gains))
        assert per_stem["sdr_gain_median"] >= per_stem["sdr_median"] - 1e-9  # the optimal gain never hurts
    assert stored["sdr"] == pytest.approx(np.mean([stored["per_stem"][s]["sdr_median"] for s in stored["per_stem"]]))
    assert results["sdr"] == pytest.approx(stored["sdr"])
    assert "| vocals |" in (run_dir / "summary.md").read_text()


def test_scores_match_a_direct_bsseval_of_the_separated_track(tiny_checkpoint, tiny_data_root):
    """The per-track SDR is museval-v4-style: the target stems scored jointly, median over 1 s frames."""
    from sepnet.checkpoints import checkpoint
    from sepnet.inference.overlap_add import OverlapAdd

    audio = np.stack([sf.read(tiny_data_root / "test" / "synth_006" / f"{s}.wav", dtype="float32")[0].T
                      for s in ("bass", "drums", "other", "vocals")])
    estimates = OverlapAdd(checkpoint.load(tiny_checkpoint).separator, chunk_seconds=1.5, overlap=0.2).separate(audio.sum(0))
    scores = score_track(audio, estimates, ["bass", "drums", "other", "vocals"], SR)
    direct = track_sdr(framewise_sdr(audio.transpose(0, 2, 1), estimates.transpose(0, 2, 1), SR))
    assert [scores[s]["sdr"] for s in scores] == pytest.approx(direct.tolist())


def test_silent_target_is_nan_counted_and_others_still_scored():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((3, 2, 3 * SR)).astype(np.float32)
    refs[1] = 0.0  # this track has no "drums"
    ests = (0.8 * refs + 0.1 * rng.standard_normal(refs.shape)).astype(np.float32)
    stems = ["bass", "drums", "vocals"]
    scores = score_track(refs, ests, stems, SR)
    assert math.isnan(scores["drums"]["sdr"]) and scores["drums"]["silent_reference"]
    expected = track_sdr(framewise_sdr(refs[[0, 2]].transpose(0, 2, 1), ests[[0, 2]].transpose(0, 2, 1), SR))
    assert [scores["bass"]["sdr"], scores["vocals"]["sdr"]] == pytest.approx(expected.tolist())
    other_track = score_track(refs[[0, 0, 2]], ests[[0, 0, 2]], stems, SR)
    summary = aggregate([scores, other_track], stems)
    assert summary["drums"]["nan_tracks"] == 1 and summary["drums"]["silent_reference_tracks"] == 1
    assert summary["drums"]["sdr_median"] == pytest.approx(other_track["drums"]["sdr"])  # NaN track left out


def test_gain_tracking_finds_a_too_quiet_output():
    rng = np.random.default_rng(1)
    refs = rng.standard_normal((2, 2, 2 * SR)).astype(np.float32)
    ests = (refs / 3.1 + 0.01 * rng.standard_normal(refs.shape)).astype(np.float32)  # the log's "x3.1"
    scores = score_track(refs, ests, ["vocals", "other"], SR)
    for s in scores.values():
        assert s["gain"] == pytest.approx(3.1, rel=0.01)
        assert s["sdr_gain"] > s["sdr"] + 5  # the scale error dominated the SDR


@pytest.mark.slow
def test_gain_auto_applies_the_median_gain_learned_on_valid(tiny_checkpoint, tiny_data_root, tmp_path):
    from sepnet.checkpoints import checkpoint
    from sepnet.evaluation.scoring import optimal_gain
    from sepnet.inference.overlap_add import OverlapAdd

    cfg = compose_config("evaluate", evaluate_overrides(tiny_checkpoint, tiny_data_root, "eval.gain=auto", "report=false"), tmp_path)
    results = run_evaluation(cfg)
    runner = OverlapAdd(checkpoint.load(tiny_checkpoint).separator)
    gains = []
    for track in sorted((tiny_data_root / "valid").iterdir()):
        audio = np.stack([sf.read(track / f"{s}.wav", dtype="float32")[0].T for s in ("bass", "drums", "other", "vocals")])
        gains.append([optimal_gain(r, e) for r, e in zip(audio, runner.separate(audio.sum(0)))])
    expected = np.median(gains, axis=0)
    assert list(results["gain"].values()) == pytest.approx(expected.tolist(), rel=1e-4)
    assert results["gain_source"].startswith("auto")


@pytest.mark.slow
def test_full_metrics_write_museval_json(tiny_checkpoint, tiny_data_root, tmp_path):
    pytest.importorskip("museval")
    overrides = evaluate_overrides(tiny_checkpoint, tiny_data_root, "eval.full_metrics=true", "eval.max_tracks=1", "report=false")
    results = run_evaluation(compose_config("evaluate", overrides, tmp_path))
    track_json = json.loads((tmp_path / "museval" / "test" / "synth_006.json").read_text())
    assert [t["name"] for t in track_json["targets"]] == ["bass", "drums", "other", "vocals"]
    frames = track_json["targets"][3]["frames"]
    museval_sdr = np.nanmedian([f["metrics"]["SDR"] for f in frames])
    assert results["per_stem"]["vocals"]["sdr_median"] == pytest.approx(museval_sdr, abs=1e-3)
    assert all(math.isfinite(results["per_stem"]["vocals"][f"{m}_median"]) for m in ("isr", "sir", "sar"))
    assert "sar" in (tmp_path / "per_track.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_mask_scale_multirun_writes_a_sweep_table(tiny_checkpoint, tiny_data_root, tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "-m", "sepnet.evaluate", "-m", "eval.mask_scale=0.5,1.0,2.0", "report=false", "eval.max_tracks=1",
        *evaluate_overrides(tiny_checkpoint, tiny_data_root), f"hydra.sweep.dir={sweep}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1", "2"):
        assert (sweep / job / "results.json").is_file()
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [r["eval.mask_scale"] for r in rows] == ["0.5", "1.0", "2.0"]
    sdrs = [float(r["sdr"]) for r in rows]
    assert len(set(sdrs)) == 3  # the knob changed the scores
    for r, job in zip(rows, ("0", "1", "2")):
        assert float(r["sdr"]) == pytest.approx(json.loads((sweep / job / "results.json").read_text())["sdr"])
    assert "| eval.mask_scale |" in (sweep / "sweep.md").read_text()
    assert "sweep (3 jobs)" in result.stdout


def test_user_mistakes_are_one_line(tiny_checkpoint, tiny_data_root, tmp_path, capsys):
    from sepnet.evaluate import evaluate

    cases = {
        f"ckpt={tmp_path / 'nope.ckpt'}": f"checkpoint '{tmp_path / 'nope.ckpt'}' does not exist",
        "eval.mask_scale=-1": "eval.mask_scale=-1 is not valid",
        "data.sample_rate=44100": "data.sample_rate=44100 but the checkpoint's model runs at 22050 Hz",
    }
    for override, message in cases.items():
        overrides = evaluate_overrides(tiny_checkpoint, tiny_data_root, "report=false", "eval.max_tracks=1")
        cfg = compose_config("evaluate", [*overrides, override], tmp_path / "run")
        with pytest.raises(SystemExit) as exit_info:
            evaluate(cfg)
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"sepnet: error: {message}"), lines


# -- the listening report ------------------------------------------------------------


class _Audio(HTMLParser):
    """Collects every <audio> element and the src of the <source> elements inside it."""

    def __init__(self):
        super().__init__()
        self.audio: list[list[str]] = []
        self.images: list[str] = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "audio":
            self.audio.append([attrs["src"]] if attrs.get("src") else [])
            self._inside = True
        elif tag == "source" and self._inside:
            self.audio[-1].append(attrs.get("src") or "")
        elif tag == "img":
            self.images.append(attrs.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "audio":
            self._inside = False


def _chromium(*args, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (make system-deps installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_report_renders_in_headless_chromium_with_every_audio_sourced(evaluated, tmp_path):
    run_dir, _ = evaluated
    report = run_dir / "report.html"
    assert report.stat().st_size < 4_000_000  # compressed excerpts keep it small

    shot = tmp_path / "report.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1000,1400", report.as_uri(), tmp_path=tmp_path)
    assert shot.is_file(), result.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1000)
    assert pixels.std() > 0.05  # not blank
    assert (pixels.min(-1) < 0.5).mean() > 0.01  # text, tables and spectrograms, not an empty page

    dom = _chromium("--dump-dom", report.as_uri(), tmp_path=tmp_path).stdout
    parsed = _Audio()
    parsed.feed(dom)
    assert len(parsed.audio) == 2 * (1 + 2 * 4)  # 2 tracks x (mixture + 4 references + 4 estimates)
    for sources in parsed.audio:
        assert sources and all(sources)
        payload = re.match(r"data:audio/ogg;base64,(.*)", sources[0]).group(1)
        import base64

        audio, rate = sf.read(BytesIO(base64.b64decode(payload)))
        assert rate == SR and len(audio) > SR  # a decodable excerpt of the 4 s track
    # The SDR picture (PNG), then one spectrogram image (JPEG) per track.
    assert len(parsed.images) == 3 and parsed.images[0].startswith("data:image/png;base64,")
    assert all(src.startswith("data:image/jpeg;base64,") for src in parsed.images[1:])


def test_sweep_table_reads_train_summaries_too(tmp_path, capsys):
    """The same callback tabulates a train sweep from each job's summary.json."""
    from omegaconf import OmegaConf

    from sepnet.app.hydra_callbacks import SweepTable

    for job, (lr, sdr) in enumerate([("1e-3", 1.5), ("1e-4", 2.25)]):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n- trainer.max_epochs=2\n")
        summary = {"best_val_sdr": sdr, "best_epoch": 1, "val_sdr_per_stem": {"vocals": sdr + 1}, "best_checkpoint": "x.ckpt"}
        (tmp_path / str(job) / "summary.json").write_text(json.dumps(summary))
    SweepTable().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [(r["job"], r["optim.lr"], float(r["best_val_sdr"]), float(r["val_sdr_per_stem.vocals"])) for r in rows] == [
        ("0", "1e-3", 1.5, 2.5), ("1", "1e-4", 2.25, 3.25)]
    assert "trainer.max_epochs" not in rows[0]  # only what the sweep varied
    assert "| optim.lr |" in capsys.readouterr().out


def test_one_spectrogram_picture_serves_the_report_and_the_loggers():
    """The report's JPEG and the loggers' RGB array are the same figure: a tone shows as a bright row."""
    import io as _io

    from PIL import Image

    from sepnet.evaluation.pictures import log_spectrogram, spectrogram_jpeg, spectrogram_rgb

    rate = 8000
    t = np.arange(rate) / rate
    tone = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32)  # (channels, samples)
    spec = log_spectrogram(tone)
    assert spec.shape == (513, (rate - 1024) // 256 + 1)
    assert abs(int(spec.mean(1).argmax()) - 1000 * 1024 // rate) <= 1
    rows = [("tone", tone), ("silence", np.zeros((2, rate), np.float32))]
    rgb = spectrogram_rgb(rows, rate)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    jpeg = Image.open(_io.BytesIO(spectrogram_jpeg(rows, rate, columns=1)))
    assert jpeg.format == "JPEG" and jpeg.size[0] > 0 and abs(jpeg.size[0] / jpeg.size[1] - rgb.shape[1] / rgb.shape[0]) < 0.05


def test_evaluate_reads_tracks_as_training_does_so_data_on_error_applies(tiny_checkpoint, tiny_data_root, tmp_path):
    """A broken test track stops the evaluation naming the file, or is left out under data.on_error=skip."""
    from sepnet.errors import SepnetError

    root = tmp_path / "data"
    shutil.copytree(tiny_data_root, root)
    broken = root / "test" / "synth_006" / "vocals.wav"
    broken.write_bytes(b"not audio at all")
    cfg = compose_config("evaluate", evaluate_overrides(tiny_checkpoint, root, "report=false"), tmp_path / "raise")
    with pytest.raises(SepnetError, match=r"vocals\.wav.*data\.on_error=skip"):
        run_evaluation(cfg)
    cfg = compose_config(
        "evaluate", evaluate_overrides(tiny_checkpoint, root, "report=false", "data.on_error=skip"), tmp_path / "skip"
    )
    assert run_evaluation(cfg)["tracks"] == 1
