"""The research log's lessons, checked on a finished chain: for each claim, what sepnet sees.

:func:`check_claims` reads the chain's table rows (and, for the overfitting claim, the run's
``logs/metrics.csv``) and gives one :class:`Verdict` per claim: ``seen``, ``not seen``,
``seen in k of n`` (a claim over several pairs) or ``not checked`` naming the steps it needs
when ``reproduce.steps`` left them out. The comparisons are like for like: validation SDR
against validation SDR (train steps), test SDR against test SDR at the same inference knobs
(evaluate and merge steps), and a vocals-only model against its parent's vocals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sepnet.evaluation.curves import read_curves
from sepnet.reproduction.chain import CHAIN, TRAIN, step_parents

SEEN, NOT_SEEN, NOT_CHECKED = "seen", "not seen", "not checked"


@dataclass(frozen=True)
class Verdict:
    """One claim of the log and what the chain measured.

    Attributes:
        claim: the claim, in the log's terms.
        log: what the log measured.
        evidence: what sepnet measured (dB figures, the steps they come from).
        verdict: ``seen``, ``not seen``, ``seen in k of n`` or ``not checked: ...``.
    """

    claim: str
    log: str
    evidence: str
    verdict: str


def _score(row, vocals_only: bool) -> float | None:
    value = row.vocals if vocals_only else row.sdr
    return None if value is None or math.isnan(value) else float(value)


def _vocals_only(row) -> bool:
    return "(vocals only)" in row.measured


def _missing(rows: dict, *names: str) -> list[str]:
    return [n for n in names if n not in rows]


def _unchecked(claim: str, log: str, absent: list[str]) -> Verdict:
    return Verdict(claim, log, "-", f"{NOT_CHECKED}: needs step(s) {', '.join(absent)}")


def fine_tunes_improve(rows: dict) -> Verdict:
    """Each train step started from a trained parent scores above that parent (validation SDR)."""
    claim = "fine-tuning improves on its parent"
    log = "final_tune 3.93 dB over finetune_ver1 3.80 dB; later fine-tunes fell (2.00, 2.10 dB)"
    pairs = []
    for step in CHAIN:
        if step.kind != TRAIN or step.name not in rows:
            continue
        for parent in step_parents(step):
            if parent in rows and rows[parent].kind == TRAIN:  # a merge parent has a test SDR, not a val SDR
                pairs.append((step.name, parent))
    if not pairs:
        return _unchecked(claim, log, ["a train step with its trained parent"])
    better, evidence = 0, []
    for child, parent in pairs:
        vocals = _vocals_only(rows[child])
        mine, theirs = _score(rows[child], vocals), _score(rows[parent], vocals)
        if mine is None or theirs is None:
            evidence.append(f"{child}: no score")
            continue
        better += mine > theirs
        what = "vocals " if vocals and not _vocals_only(rows[parent]) else ""
        evidence.append(f"{child} {mine:.2f} vs {parent} {what}{theirs:.2f} ({mine - theirs:+.2f})")
    verdict = SEEN if better == len(pairs) else NOT_SEEN if better == 0 else f"{SEEN} in {better} of {len(pairs)}"
    return Verdict(claim, log, "val/sdr: " + "; ".join(evidence), verdict)


def merge_beats_parents(rows: dict) -> Verdict:
    """The uniform average of two fine-tunes scores at least as well as either (test SDR, no knobs)."""
    claim = "the uniform merge of two fine-tunes is at least as good as either"
    log = "merged_3.96 3.96 dB vs final_tune 3.93 dB (finetune_ver1: 3.80 dB at mask_scale 1.2)"
    merged, parents = "crnn_large_merged_3.96", ["test_crnn_large_final_tune", "test_crnn_large_finetune_ver1_no_knobs"]
    absent = _missing(rows, merged, *parents)
    if absent:
        return _unchecked(claim, log, absent)
    scores = {name: _score(rows[name], False) for name in [merged, *parents]}
    if any(v is None for v in scores.values()):
        return Verdict(claim, log, "a score is NaN", NOT_SEEN)
    best_parent = max(scores[p] for p in parents)
    evidence = (
        f"test SDR: merge {scores[merged]:.2f} vs final_tune {scores[parents[0]]:.2f}, "
        f"finetune_ver1 {scores[parents[1]]:.2f} ({scores[merged] - best_parent:+.2f} over the better)"
    )
    return Verdict(claim, log, evidence, SEEN if scores[merged] >= best_parent else NOT_SEEN)


def training_on_overfits(rows: dict, root: Path, patience: int = 3) -> Verdict:
    """ultimate_4db (fine-tuned from the merge, no augmentation): the overfitting flag fires and val SDR falls."""
    claim = "training on without augmentation overfits (ultimate_4db)"
    log = "train loss fell to ~0 while the test SDR fell from 3.96 to 2.00 dB"
    run = "crnn_large_ultimate_4db"
    if run not in rows:
        return _unchecked(claim, log, [run])
    curves = read_curves(root / rows[run].output, run)
    divergence = curves.divergence(patience)
    scored = [s for s in curves.val_sdr if not math.isnan(s)]
    if not scored:
        return Verdict(claim, log, "no validation ran", NOT_SEEN)
    best, last = max(scored), scored[-1]
    evidence = [
        str(divergence) if divergence else f"no overfitting flag ({len(scored)} validations, patience {patience})",
        f"val/sdr best {best:.2f}, last {last:.2f}",
    ]
    sweep, merged = f"{run}_mask_scale [mask_scale=1.0]", "crnn_large_merged_3.96"
    if sweep in rows and merged in rows and None not in (_score(rows[sweep], False), _score(rows[merged], False)):
        evidence.append(f"test SDR {_score(rows[sweep], False):.2f} vs its parent merge {_score(rows[merged], False):.2f}")
    return Verdict(claim, log, "; ".join(evidence), SEEN if divergence is not None and last < best else NOT_SEEN)


def softer_masks_help(rows: dict) -> Verdict:
    """eval.mask_scale 0.8 scores above 1.0 on ultimate_4db (test SDR)."""
    claim = "mask_scale 0.8 beats 1.0 (ultimate_4db)"
    log = "2.27 dB at 0.8 vs 2.00 dB at 1.0"
    soft, plain = (f"crnn_large_ultimate_4db_mask_scale [mask_scale={v}]" for v in ("0.8", "1.0"))
    absent = _missing(rows, soft, plain)
    if absent:
        return _unchecked(claim, log, ["crnn_large_ultimate_4db_mask_scale"])
    a, b = _score(rows[soft], False), _score(rows[plain], False)
    if a is None or b is None:
        return Verdict(claim, log, "a score is NaN", NOT_SEEN)
    return Verdict(claim, log, f"test SDR {a:.2f} at 0.8 vs {b:.2f} at 1.0 ({a - b:+.2f})", SEEN if a > b else NOT_SEEN)


def blending_lands_between(rows: dict) -> Verdict:
    """final_tune x0.8 + ultimate_4db x0.2 scores between its parents: blending in a worse model costs."""
    claim = "the 0.8/0.2 blend of final_tune and ultimate_4db lands between them"
    log = "2.83 dB (mask_scale 1.1, threshold 0.1) between final_tune 3.93 and ultimate_4db 2.00 dB"
    blend, better, worse = (
        "test_crnn_large_merged_0.8_0.2_no_knobs", "test_crnn_large_final_tune", "crnn_large_ultimate_4db_mask_scale [mask_scale=1.0]",
    )  # fmt: skip
    absent = _missing(rows, blend, better, worse)
    if absent:
        return _unchecked(claim, log, absent)
    b, hi, lo = (_score(rows[n], False) for n in (blend, better, worse))
    if None in (b, hi, lo):
        return Verdict(claim, log, "a score is NaN", NOT_SEEN)
    evidence = f"test SDR, no knobs: blend {b:.2f} vs final_tune {hi:.2f}, ultimate_4db {lo:.2f}"
    return Verdict(claim, log, evidence, SEEN if min(hi, lo) <= b <= max(hi, lo) else NOT_SEEN)


def check_claims(rows: list, root: Path) -> list[Verdict]:
    """One verdict per claim of the log, from the chain's rows (``runner.Row``) under ``root``."""
    by_name = {row.step: row for row in rows}
    return [
        fine_tunes_improve(by_name),
        merge_beats_parents(by_name),
        training_on_overfits(by_name, root),
        softer_masks_help(by_name),
        blending_lands_between(by_name),
    ]
