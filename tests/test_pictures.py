"""The pictures users read: compare across runs (losses of different kinds, TensorBoard logs), the evaluate
report's spectrograms and its per-track SDR picture. Each is rendered, decoded and its size checked."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SOURCE, compose_config
from PIL import Image

from sepnet.evaluation.curves import compare, draw, read_curves
from sepnet.evaluation.pictures import figure_png, sdr_figure, spectrogram_figure, spectrogram_jpeg

LONG = ["experiment=crnn_large_final_tune", "optim.lr=1e-4", "data.examples_per_epoch=2048",
        "data.source.root=/a/rather/long/path/to/the/dataset/folder/that/once/squashed/the/panels"]


def csv_run(root: Path, name: str, loss: str, overrides: list[str], scale: float) -> Path:
    run = root / name / "2026-01-01_00-00-00"
    (run / "logs").mkdir(parents=True)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "config_resolved.yaml").write_text(f"model:\n  hidden_size: 16\nloss:\n  _target_: sepnet.training.losses.{loss}\n")
    lines = ["epoch,step,train/loss,train/loss_epoch,val/loss,val/sdr"]
    for epoch in range(3):
        for step in range(epoch * 4, epoch * 4 + 4):
            lines.append(f"{epoch},{step},{scale / (1 + step):.4f},,,")
        lines.append(f"{epoch},{epoch * 4 + 3},,,{scale / (2 + epoch):.4f},{1.0 + epoch:.2f}")
    (run / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def tensorboard_run(root: Path) -> Path:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from torch.utils.tensorboard import SummaryWriter

    run = root / "tb" / "2026-01-02_00-00-00"
    (run / "tensorboard").mkdir(parents=True)
    (run / "config_resolved.yaml").write_text("loss:\n  _target_: sepnet.training.losses.MaskBCELoss\n")
    writer = SummaryWriter(str(run / "tensorboard"))
    for epoch in range(3):
        for step in range(epoch * 4, epoch * 4 + 4):
            writer.add_scalar("train/loss", 0.5 / (1 + step), step)
            writer.add_scalar("epoch", epoch, step)
        writer.add_scalar("val/loss", 0.4 / (1 + epoch), step)
        writer.add_scalar("val/sdr", 0.5 + epoch, step)
    writer.close()
    return run


def decoded(path_or_bytes) -> Image.Image:
    image = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
    image.load()  # decodes every pixel
    return image


def test_compare_reads_tensorboard_and_keeps_losses_of_different_kinds_apart(tmp_path):
    runs = tmp_path / "outputs"
    csv_run(runs, "bce", "MaskBCELoss", LONG, 0.7)
    csv_run(runs, "magnitude", "MaskedMagnitudeLoss", ["experiment=sepnet_band_split", "optim.lr=3e-4"], 0.05)
    tb = tensorboard_run(runs)

    curves = read_curves(tb, "tb")  # a run logged with logger=tensorboard only
    assert curves.steps == list(range(12)) and curves.epochs == [0, 1, 2] and curves.best() == (2.5, 2)
    assert curves.loss == "MaskBCELoss"

    out, markdown = compare([runs], tmp_path / "report")
    image = decoded(out)
    assert image.size[0] >= 1400 and image.size[1] >= 700
    series = json.loads(out.with_suffix(".json").read_text())
    assert [s["loss"] for s in series] == ["MaskBCELoss", "MaskedMagnitudeLoss", "MaskBCELoss"]
    assert "tb/2026-01-02_00-00-00" in markdown

    fig = draw(series)
    titles = [ax.get_title() for ax in fig.axes]
    # One pair of loss panels per kind of loss, named; the BCE runs share theirs, the MSE run has its own.
    assert titles == ["training loss (MaskBCELoss)", "validation loss (MaskBCELoss)", "val/sdr (dB)",
                      "training loss (MaskedMagnitudeLoss)", "validation loss (MaskedMagnitudeLoss)"]
    assert len(fig.axes[0].get_lines()) == 2 * 2 and len(fig.axes[3].get_lines()) == 2
    # The legend is the figure's, below the panels: no panel holds one, and its labels are wrapped.
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0].startswith("1. bce/2026-01-01_00-00-00") and all(len(line) <= 75 for lab in labels for line in lab.splitlines())
    fig.canvas.draw()
    legend_box = legend.get_window_extent()
    assert all(legend_box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # below every panel


def test_one_kind_of_loss_keeps_three_panels(tmp_path):
    runs = tmp_path / "outputs"
    csv_run(runs, "a", "MaskBCELoss", ["optim.lr=1e-3"], 0.7)
    csv_run(runs, "b", "MaskBCELoss", ["optim.lr=1e-4"], 0.6)
    out, _ = compare([runs], tmp_path / "report")
    fig = draw(json.loads(out.with_suffix(".json").read_text()))
    assert [ax.get_title() for ax in fig.axes] == ["training loss (MaskBCELoss)", "validation loss (MaskBCELoss)", "val/sdr (dB)"]
    assert decoded(out).size[0] >= 1400


def rows_of_a_track(rate: int = 22050):
    from sepnet.data.synthetic import generate_track

    stems, _ = generate_track(3, 3.0, rate)
    mixture = sum(stems.values())
    rows = [("mixture", mixture), ("", np.zeros((1, 0)))]
    for name, audio in stems.items():
        rows += [(f"{name} reference", audio), (f"{name} estimate", 0.5 * audio)]
    return rows


def test_spectrograms_have_log_frequency_a_db_colour_bar_and_readable_labels():
    rate = 22050
    rows = rows_of_a_track(rate)
    fig = spectrogram_figure(rows, rate)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]
    assert len(panels) == 9 and all(ax.get_yscale() == "log" for ax in panels)
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "dB" in bar.get_ylabel()
    assert all(label.get_fontsize() >= 9 for ax in panels for label in ax.get_yticklabels())
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["50", "100", "200", "500", "1k", "2k", "5k", "10k"]
    jpeg = decoded(spectrogram_jpeg(rows, rate))
    assert jpeg.format == "JPEG" and jpeg.size[0] >= 1000 and jpeg.size[1] >= 1000


def test_sdr_picture_shows_every_track_and_says_what_is_left_out():
    stems = ["bass", "drums", "other", "vocals"]
    rng = np.random.default_rng(0)
    per_track = [(f"track {i}", {s: {"sdr": float(rng.normal(3, 1))} for s in stems}) for i in range(5)]
    per_track[2][1]["vocals"]["sdr"] = math.nan
    fig = sdr_figure(per_track, stems)
    left, right = fig.axes[:2]
    assert "1 NaN" in left.get_title() and [t.get_text() for t in left.get_xticklabels()] == stems
    assert [t.get_text() for t in right.get_xticklabels()] == [f"track {i}" for i in range(5)]
    png = decoded(figure_png(fig))
    assert png.format == "PNG" and png.size[0] >= 1000 and png.size[1] >= 400


@pytest.fixture(scope="module")
def evaluated_run(tiny_checkpoint, tiny_data_root, tmp_path_factory):
    from sepnet.evaluate import run_evaluation

    run_dir = tmp_path_factory.mktemp("evaluate_pictures")
    cfg = compose_config("evaluate", [f"ckpt={tiny_checkpoint}", f"data.source.root={tiny_data_root}", *TINY_SOURCE,
                                      "report_tracks=1"], run_dir)
    run_evaluation(cfg)
    return run_dir


def test_evaluate_writes_the_sdr_picture_and_the_report_says_which_tracks_it_shows(evaluated_run):
    png = decoded(evaluated_run / "sdr_per_track.png")
    assert png.size[0] >= 1000 and png.size[1] >= 400
    report = (evaluated_run / "report.html").read_text()
    assert "Listening and spectrograms: 1 of 2 tracks</b> (synth_006)" in report
    assert "not shown: synth_007" in report and "data:image/png;base64," in report
