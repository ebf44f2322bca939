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
from typing import Any, NamedTuple

import numpy as np

from patchscan import metrics
from patchscan.context import SlideContext
from patchscan_train import operating
from patchscan_train.tasks import TASKS, THRESHOLD_RULES

REVIEW_TARGET = 0.05


def analyse(oof_path: Path, task_name: str) -> dict[str, Any]:
    """cv-report.json beside `oof_path`: one entry per variant."""
    task = TASKS[task_name]
    saved = np.load(oof_path)
    record = record_of(oof_path)
    paths, groups, y = saved["paths"], saved["groups"], saved["y"].astype(bool)
    fold_of = folds_of(groups, record)
    report: dict[str, Any] = design(record)._asdict()
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


def record_of(oof_path: Path) -> dict[str, Any]:
    """The run record (cv.json) beside OOF scores: `oof.npz` in a run folder, or a copy kept
    under a prefix (docs/cv/idc/ensemble-oof.npz beside ensemble-cv.json)."""
    return json.loads(oof_path.with_name(oof_path.name.replace("oof.npz", "cv.json")).read_text())


def training_fold_count(k: int, validated: bool, count: int | None = None) -> int:
    """How many folds train each fold's models: `count`, or all there are (k-2 when one more
    fold validates beside the held-out one, k-1 without validation). ValueError out of range."""
    most = k - (2 if validated else 1)
    count = most if count is None else count
    if not 1 <= count <= most:
        raise ValueError(f"train on 1 to {most} of {k} folds, not {count}")
    return count


class Design(NamedTuple):
    """What CV runs (cv.json) or their reports (cv-report.json) must share to be averaged or
    compared: folds, epochs, how many folds trained each model and whether a validation fold
    stopped it."""

    folds: list[list[str]]
    epochs: int
    train_folds: int
    validation: bool


def design(record: dict[str, Any]) -> Design:
    """The design of a run record or report (runs from before the last two were recorded were
    validated and trained on all k-2 folds)."""
    folds, validated = record["folds"], record.get("validation", True)
    trained = record.get("train_folds") or training_fold_count(len(folds), validated)
    return Design(folds, record["epochs"], trained, validated)


def learning_curve(record: dict[str, Any]) -> bool:
    """Whether a run's fold models trained on fewer folds than there were (`cv --train-folds`):
    a point of a learning curve, whose figures are not those of the recipe on all patients."""
    run = design(record)
    return run.train_folds < training_fold_count(len(run.folds), run.validation)


def folds_of(groups: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """Each example's fold number in the run `record` (-1 for a group in none)."""
    fold_of = np.full(len(groups), -1)
    for i, fold in enumerate(record["folds"]):
        fold_of[np.isin(groups, fold)] = i
    return fold_of


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
    nested = nested_decisions(task, paths, groups, y, raw, fold_of)
    out["nested"] = figures(y, nested.scores, nested.called, nested.review, groups)
    return out


class Decisions(NamedTuple):
    """Per patch: the deciding score, the call, whether it fell in the review band, and the
    threshold it was called at."""

    scores: np.ndarray
    called: np.ndarray
    review: np.ndarray
    threshold: np.ndarray


def nested_decisions(
    task: Any,
    paths: np.ndarray,
    groups: np.ndarray,
    y: np.ndarray,
    raw: np.ndarray,
    fold_of: np.ndarray,
) -> Decisions:
    """Each fold's deciding scores, calls and review flags at the choices (calibration,
    threshold, band) fitted on the other folds' OOF scores: what a new patient gets."""
    out = Decisions(
        np.zeros(len(y)), np.zeros(len(y), bool), np.zeros(len(y), bool), np.zeros(len(y))
    )
    for fold in np.unique(fold_of):
        rest, held = fold_of != fold, fold_of == fold
        choices = choose(task, paths[rest], y[rest], raw[rest], groups[rest])["choices"]
        scores = deciding_scores(task, paths[held], raw[held], choices)
        out.scores[held] = scores
        out.called[held] = scores >= choices["threshold"]
        band = choices["review_band"]
        out.review[held] = (scores >= band[0]) & (scores < band[1])
        out.threshold[held] = choices["threshold"]
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
    # The patch alone: what labels a patch without a position (and every patch of a task
    # without slide context).
    rule = THRESHOLD_RULES[task.threshold_rule][0]
    alone = rule(y, probability)
    choices: dict[str, Any] = {
        "calibration_probability": [platt_p.a, platt_p.b],
        "threshold_probability": alone,
        "review_table_probability": _table(y, probability, alone),
    }
    scores = probability
    if task.context is not None:
        context = operating.context_scores(_shape(task), list(paths), probability, task.classes)
        platt_c = operating.fit_platt(y, context)
        choices["calibration_context"] = [platt_c.a, platt_c.b]
        scores = np.vectorize(platt_c)(context)
    threshold = rule(y, scores)
    choice = operating.review_band(y, scores, threshold, REVIEW_TARGET)
    choices.update(
        threshold=threshold,
        review_band=[choice.band.low, choice.band.high],
        review_target=REVIEW_TARGET,
        review_table=_table(y, scores, threshold),
    )
    called = scores >= threshold
    review = (scores >= choice.band.low) & (scores < choice.band.high)
    return {"choices": choices, **figures(y, scores, called, review, groups)}


def _table(y: np.ndarray, scores: np.ndarray, threshold: float) -> list[list[float]]:
    """[target, low, high, share decided, error among decided] for every review target."""
    rows = []
    for target in operating.REVIEW_TARGETS:
        choice = operating.review_band(y, scores, threshold, target)
        rows.append([target, choice.band.low, choice.band.high, choice.decided, choice.error])
    return rows


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
            **{
                key: _spread([p[key] for p in patients.values()])
                for key in ("balanced_accuracy", "recall", "specificity", "f1", "roc_auc")
            },
            "ece": _spread([p["ece"] for p in patients.values()], lower_is_better=True),
        },
        "sensitivity_of_patients_with_50_positives": _spread([p["recall"] for p in big]),
        "slide_share_error": _share_error(y, called, groups),
        "ece": operating.expected_calibration_error(y, scores),
        "reliability": operating.reliability(y, scores),
        "review": {
            "share_reviewed": float(review.mean()),
            "decided_accuracy": float((called[decided] == y[decided]).mean())
            if decided.any()
            else None,
        },
    }


# Slides with fewer patches than this are fragments whose % positive swings with a few patches.
MIN_PATCHES_FOR_SHARE = 100


def _share_error(y: np.ndarray, called: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """How far a slide's % positive (what the report prints per slide) lies from the truth, in
    points: the median and the worst slide of at least MIN_PATCHES_FOR_SHARE patches."""
    errors = [
        100 * abs(float(called[mine].mean()) - float(y[mine].mean()))
        for mine in (groups == g for g in np.unique(groups))
        if mine.sum() >= MIN_PATCHES_FOR_SHARE
    ]
    return {"median": float(np.median(errors)), "worst": float(max(errors))} if errors else {}


def _spread(values: list[Any], lower_is_better: bool = False) -> dict[str, float | None]:
    """The worst and the median patient's value (patients where it is defined)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"worst": None, "median": None}
    worst = max(present) if lower_is_better else min(present)
    return {"worst": float(worst), "median": float(np.median(present))}


def markdown(report: dict[str, Any], title: str) -> str:
    """The CV table for a model card or docs/: one row per recipe, fitted and nested."""
    run = design(report)
    training = (
        f"each fold's model trained on {run.train_folds} of the other folds and stopped early on "
        "one more"
        if run.validation
        else f"each fold's model trained on {run.train_folds} of the other folds for all "
        f"{run.epochs} epochs, its last weights kept, as the shipped model is trained"
    )
    lines = [
        f"## {title}",
        "",
        f"{len(run.folds)} folds of whole patients, {run.epochs} epochs per fold ({training}); "
        "every patch scored by the fold model that never saw its patient (out-of-fold). "
        "**fitted**: the threshold, calibration and review band chosen on all patients' "
        "out-of-fold scores and judged on them (what ships); **nested**: each fold judged at the "
        "choices made on the other folds' scores (what a new patient can expect).",
        "",
        "| recipe | choices | balanced acc. | F1 | ROC AUC | sensitivity | specificity "
        "| worst patient sensitivity (≥ 50 IDC) | median patient balanced acc. "
        "| slide % positive off by (median / worst) | ECE | reviewed | accuracy of decided |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, result in report.items():
        if not isinstance(result, dict) or "fitted" not in result:
            continue
        for kind in ("fitted", "nested"):
            x = result[kind]
            p, review = x["pooled"], x["review"]
            lines.append(
                f"| {variant} | {kind} | {_f(p['balanced_accuracy'])} | {_f(p['f1'])} "
                f"| {_f(p['roc_auc'])} | {_f(p['recall'])} | {_f(p['specificity'])} "
                f"| {_f(x['sensitivity_of_patients_with_50_positives']['worst'])} "
                f"| {_f(x['spread']['balanced_accuracy']['median'])} | {_points(x)} "
                f"| {_f(x['ece'])} "
                f"| {_pct(review['share_reviewed'])} | {_pct(review['decided_accuracy'])} |"
            )
    return "\n".join(lines) + "\n"


def _points(figures: dict[str, Any]) -> str:
    share = figures.get("slide_share_error") or {}
    if not share:
        return "–"
    return f"{share['median']:.1f} / {share['worst']:.1f} points"


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
