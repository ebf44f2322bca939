"""Binary classification metrics in plain numpy, shared by the scan report and the trainer."""

from __future__ import annotations

import numpy as np


def confusion(truth: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """2x2 counts, rows = true class (negative, positive), columns = predicted class."""
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    return [
        [int(np.sum(~truth & ~predicted)), int(np.sum(~truth & predicted))],
        [int(np.sum(truth & ~predicted)), int(np.sum(truth & predicted))],
    ]


def summarize(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Accuracy, balanced accuracy and the positive class's precision / recall / F1.

    A metric whose denominator is zero (no positives at all, say) is None, never a made-up 0.
    """
    (tn, fp), (fn, tp) = confusion(truth, predicted)
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    balanced = None
    if recall is not None and specificity is not None:
        balanced = (recall + specificity) / 2
    f1 = None
    if precision is not None and recall is not None:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "n": tn + fp + fn + tp,
        "accuracy": _ratio(tn + tp, tn + fp + fn + tp),
        "balanced_accuracy": balanced,
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": f1,
    }


def per_class(truth: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Precision / recall / F1 / support for class 0 and class 1 (a classification report)."""
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    out = {}
    for name, t, p in (("0", ~truth, ~predicted), ("1", truth, predicted)):
        stats = summarize(t, p)
        out[name] = {
            "precision": stats["precision"],
            "recall": stats["recall"],
            "f1": stats["f1"],
            "support": int(np.sum(t)),
        }
    return out


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); None with one class only."""
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds they occur at."""
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    sorted_truth = truth[order]
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    tps = np.cumsum(sorted_truth)[last_of_tie]
    fps = np.cumsum(~sorted_truth)[last_of_tie]
    tpr = np.r_[0.0, tps / max(int(truth.sum()), 1)]
    fpr = np.r_[0.0, fps / max(int((~truth).sum()), 1)]
    thresholds = np.r_[np.inf, sorted_scores[last_of_tie]]
    return fpr, tpr, thresholds


def balanced_accuracy_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximises balanced accuracy (Youden's J) on these scores."""
    fpr, tpr, thresholds = roc_curve(truth, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximises the positive class's F1 on these scores.

    F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P), read off the same cumulative counts as
    the ROC curve.
    """
    fpr, tpr, thresholds = roc_curve(truth, scores)
    positives = int(np.asarray(truth, dtype=bool).sum())
    negatives = len(truth) - positives
    tp, fp = tpr[1:] * positives, fpr[1:] * negatives
    f1 = 2 * tp / np.maximum(tp + fp + positives, 1)
    return float(min(thresholds[1 + int(np.argmax(f1))], 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den
