"""The cross-validation table: pooled and per-patient figures from out-of-fold scores, with the
operating point, calibration and review band chosen on them, and honest estimates of each.

Choosing a threshold (or a calibration, or a band) on the same scores it is judged on flatters
it. So every figure comes twice: "fitted" (chosen on all patients' OOF scores: what ships) and
"nested" (each fold's patients judged at the choices made on the other folds' OOF scores: what a
new patient can expect).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from patchscan import metrics
from patchscan.context import SlideContext
from patchscan_train import operating
from patchscan_train.tasks import TASKS

REVIEW_TARGET = 0.05


def analyse(oof_path: Path, task_name: str) -> dict[str, Any]:
    """cv-report.json beside `oof_path`: one entry per variant."""
    task = TASKS[task_name]
    saved = np.load(oof_path)
    record = json.loads((oof_path.parent / "cv.json").read_text())
    paths, groups, y = saved["paths"], saved["groups"], saved["y"].astype(bool)
    fold_of = np.full(len(y), -1)
    for i, fold in enumerate(record["folds"]):
        fold_of[np.isin(groups, fold)] = i
    report: dict[str, Any] = {"folds": record["folds"], "epochs": record["epochs"]}
    for variant in record["variants"]:
        raw = saved[f"oof_{variant}"]
        done = ~np.isnan(raw)
        if not done.any():
            continue
        report[variant] = judge_variant(
            task, paths[done], groups[done], y[done], raw[done], fold_of[done]
        )
        report[variant]["fold_seconds"] = record["fold_seconds"][variant]
    (oof_path.parent / "cv-report.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def judge_variant(
    task: Any,
    paths: np.ndarray,
    groups: np.ndarray,
    y: np.ndarray,
    raw: np.ndarray,
    fold_of: np.ndarray,
) -> dict[str, Any]:
    """Every figure of one recipe's OOF scores (see the module's docstring)."""
    out: dict[str, Any] = {"patients": len(np.unique(groups)), "patches": len(y)}
    out["patch_alone"] = {"roc_auc": metrics.roc_auc(y, raw)}
    fitted = choose(task, paths, y, raw, groups)
    out["fitted"] = fitted.pop("choices")
    out["fitted"].update(fitted)
    nested_scores = np.zeros(len(y))
    nested_review = np.zeros(len(y), bool)
    nested_called = np.zeros(len(y), bool)
    for fold in np.unique(fold_of):
        rest, held = fold_of != fold, fold_of == fold
        choices = choose(task, paths[rest], y[rest], raw[rest], groups[rest])["choices"]
        scores = deciding_scores(task, paths[held], raw[held], choices)
        nested_scores[held] = scores
        nested_called[held] = scores >= choices["threshold"]
        band = choices["review_band"]
        nested_review[held] = (scores >= band[0]) & (scores < band[1])
    out["nested"] = figures(y, nested_scores, nested_called, nested_review, groups)
    return out


def deciding_scores(
    task: Any, paths: np.ndarray, raw: np.ndarray, choices: dict[str, Any]
) -> np.ndarray:
    """What labels a patch in the scan: the calibrated slide-context score of calibrated
    probabilities (or the calibrated probability, for a task without slide context)."""
    from patchscan.results import Calibration

    probability = np.vectorize(Calibration(*choices["calibration_probability"]))(raw)
    if task.context is None:
        return probability
    context = operating.context_scores(_shape(task), list(paths), probability, task.classes)
    return np.vectorize(Calibration(*choices["calibration_context"]))(context)


def choose(
    task: Any, paths: np.ndarray, y: np.ndarray, raw: np.ndarray, groups: np.ndarray
) -> dict[str, Any]:
    """Calibration, operating threshold and review band fitted on these OOF scores, and the
    figures they give on the same scores."""
    platt_p = operating.fit_platt(y, raw)
    probability = np.vectorize(platt_p)(raw)
    choices: dict[str, Any] = {"calibration_probability": [platt_p.a, platt_p.b]}
    scores = probability
    if task.context is not None:
        context = operating.context_scores(_shape(task), list(paths), probability, task.classes)
        platt_c = operating.fit_platt(y, context)
        choices["calibration_context"] = [platt_c.a, platt_c.b]
        scores = np.vectorize(platt_c)(context)
    threshold = operating.sensitivity_holding_threshold(y, scores, groups)
    choice = operating.review_band(y, scores, threshold, REVIEW_TARGET)
    choices.update(
        threshold=threshold,
        review_band=[choice.band.low, choice.band.high],
        review_target=REVIEW_TARGET,
        review_table=[
            [t, *_band(operating.review_band(y, scores, threshold, t))]
            for t in operating.REVIEW_TARGETS
        ],
    )
    called = scores >= threshold
    review = (scores >= choice.band.low) & (scores < choice.band.high)
    return {"choices": choices, **figures(y, scores, called, review, groups)}


def _band(choice: operating.BandChoice) -> list[float]:
    return [choice.band.low, choice.band.high, choice.decided, choice.error]


def _shape(task: Any) -> SlideContext:
    radius, self_weight = task.context
    return SlideContext(step=task.size[0], radius=radius, self_weight=self_weight, threshold=0.5)


def figures(
    y: np.ndarray, scores: np.ndarray, called: np.ndarray, review: np.ndarray, groups: np.ndarray
) -> dict[str, Any]:
    """Pooled and per-patient metrics of these calls, calibration error and the review band's
    effect."""
    pooled = {**metrics.summarize(y, called), "roc_auc": metrics.roc_auc(y, scores)}
    patients = {}
    for g in np.unique(groups):
        mine = groups == g
        patients[str(g)] = {
            **metrics.summarize(y[mine], called[mine]),
            "roc_auc": metrics.roc_auc(y[mine], scores[mine]),
            "positives": int(y[mine].sum()),
            "ece": operating.expected_calibration_error(y[mine], scores[mine]),
            "review_share": float(review[mine].mean()),
        }
    big = [p for p in patients.values() if p["positives"] >= operating.MIN_POSITIVES_PER_PATIENT]
    decided = ~review
    return {
        "pooled": pooled,
        "per_patient": patients,
        "spread": {
            key: _spread([p[key] for p in patients.values()])
            for key in ("balanced_accuracy", "recall", "specificity", "f1", "roc_auc", "ece")
        },
        "sensitivity_of_patients_with_50_positives": _spread([p["recall"] for p in big]),
        "ece": operating.expected_calibration_error(y, scores),
        "reliability": operating.reliability(y, scores),
        "review": {
            "share_reviewed": float(review.mean()),
            "decided_accuracy": float((called[decided] == y[decided]).mean())
            if decided.any()
            else None,
        },
    }


def _spread(values: list[Any]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"worst": None, "median": None}
    return {"worst": float(min(present)), "median": float(np.median(present))}
