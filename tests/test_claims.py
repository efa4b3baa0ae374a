"""The log's claims checked on a chain's rows: seen, not seen, or not checked naming the missing steps."""

from __future__ import annotations

import csv
from pathlib import Path

from sepnet.reproduction.chain import CHAIN
from sepnet.reproduction.claims import NOT_CHECKED, NOT_SEEN, SEEN, check_claims
from sepnet.reproduction.runner import Row, earlier_rows, in_chain_order, write_table

ULTIMATE = "crnn_large_ultimate_4db"
SWEEP = "crnn_large_ultimate_4db_mask_scale"


def row(step, sdr, kind="train", vocals=None, measured="val/sdr", output=""):
    return Row(step, kind, "-", sdr, sdr if vocals is None else vocals, measured, "-", 1.0, output)


def write_metrics(run_dir: Path, train_loss: list[float], val_sdr: list[float]) -> None:
    (run_dir / "logs").mkdir(parents=True)
    with (run_dir / "logs" / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train/loss_epoch", "val/loss", "val/sdr"])
        for epoch, (loss, sdr) in enumerate(zip(train_loss, val_sdr)):
            writer.writerow([epoch, 64 * (epoch + 1), loss, "", sdr])


def chain_rows(root: Path, lessons_hold: bool) -> list[Row]:
    """A whole chain's rows where every lesson of the log holds (or every one fails)."""
    up = 1.0 if lessons_hold else -1.0
    falling = [5.0, 5.5, 5.2, 5.0, 4.9, 4.8] if lessons_hold else [5.0, 5.1, 5.2, 5.3, 5.4, 5.5]
    write_metrics(root / "ultimate", [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], falling)
    return [
        row("crnn_large_finetune", 4.0),
        row("crnn_large_finetune_ver1", 4.0),
        row("crnn_large_final_tune", 4.0 + up),
        row("crnn_large_merged_3.96", 4.0 + 2 * up, kind="merge", measured="test SDR"),
        row(ULTIMATE, 5.0, output="ultimate"),
        row(f"{SWEEP} [mask_scale=0.8]", 3.0 + up, kind="evaluate", measured="test SDR, mask_scale=0.8"),
        row(f"{SWEEP} [mask_scale=1.0]", 3.0, kind="evaluate", measured="test SDR, mask_scale=1.0"),
        row("stem_aware_finetune", 4.0 + 3 * up, vocals=4.0 + 3 * up, measured="val/sdr (vocals only)"),
        row("test_crnn_large_final_tune", 4.0, kind="evaluate", measured="test SDR"),
        row("test_crnn_large_finetune_ver1_no_knobs", 3.5, kind="evaluate", measured="test SDR"),
        row("test_crnn_large_merged_0.8_0.2_no_knobs", 3.5 if lessons_hold else 4.5, kind="evaluate"),
    ]


def test_every_claim_seen_when_the_figures_show_it(tmp_path):
    verdicts = check_claims(chain_rows(tmp_path, lessons_hold=True), tmp_path)
    assert [v.verdict for v in verdicts] == [SEEN] * 5, verdicts
    fine_tune = verdicts[0].evidence
    # final_tune over ver1, and the vocals-only fine-tune against its parent's vocals
    assert "crnn_large_final_tune 5.00 vs crnn_large_finetune_ver1 4.00 (+1.00)" in fine_tune
    assert "stem_aware_finetune 7.00 vs crnn_large_finetune vocals 4.00" in fine_tune
    assert "overfitting" in verdicts[2].evidence and "val/sdr best 5.50, last 4.80" in verdicts[2].evidence


def test_no_claim_seen_when_the_figures_contradict_it(tmp_path):
    verdicts = check_claims(chain_rows(tmp_path, lessons_hold=False), tmp_path)
    assert [v.verdict for v in verdicts] == [NOT_SEEN] * 5, verdicts
    assert "no overfitting flag" in verdicts[2].evidence


def test_half_the_fine_tunes_improving_is_said_so(tmp_path):
    rows = chain_rows(tmp_path, lessons_hold=True)
    rows = [r if r.step != "stem_aware_finetune" else row(r.step, 3.0, vocals=3.0, measured=r.measured) for r in rows]
    assert check_claims(rows, tmp_path)[0].verdict == f"{SEEN} in 1 of 2"


def test_claims_of_steps_not_run_are_not_checked_naming_the_step(tmp_path):
    verdicts = check_claims([row("crnn_long", 3.0)], tmp_path)
    assert all(v.verdict.startswith(NOT_CHECKED) for v in verdicts)
    assert ULTIMATE in verdicts[2].verdict and SWEEP in verdicts[3].verdict


def test_a_rerun_of_part_of_the_chain_keeps_the_other_rows_and_their_verdicts(tmp_path):
    rows = chain_rows(tmp_path, lessons_hold=True)
    write_table(tmp_path, rows, "medium", 1.0, complete=True)
    rerun = [s for s in CHAIN if s.name in ("crnn_large_final_tune", SWEEP)]
    kept = earlier_rows(tmp_path, rerun)
    assert {r.step for r in kept} == {r.step for r in rows} - {"crnn_large_final_tune", f"{SWEEP} [mask_scale=0.8]",
                                                                 f"{SWEEP} [mask_scale=1.0]"}
    again = [r for r in rows if r.step.split(" [")[0] in {s.name for s in rerun}]
    merged = in_chain_order(kept + again)
    assert [r.step for r in merged] == [r.step for r in in_chain_order(rows)]
    markdown = write_table(tmp_path, merged, "medium", 1.0, complete=True)
    assert "## The log's claims on this data" in markdown and markdown.count(f"| {SEEN} |") == 5
