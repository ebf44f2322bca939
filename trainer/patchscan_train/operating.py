"""How a model's scores become calls, chosen on held-out patients: slide-context scores, the
operating threshold, calibration and the "needs review" band.

Everything here is numpy on (truth, score, patient) arrays, so it runs on the out-of-fold scores
of cross-validation (cv.py) as well as on one split's validation scores (run.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from patchscan import metrics
from patchscan.context import SlideContext
from patchscan.naming import parse_name
from patchscan.results import Calibration, ReviewBand

# Patients with fewer positives than this have too few for their own sensitivity to mean much
# (the floor counts patients with >= 50 IDC patches).
MIN_POSITIVES_PER_PATIENT = 50
# The operating point keeps every such patient's sensitivity at or above this.
SENSITIVITY_FLOOR = 0.75


def context_scores(
    context: SlideContext, paths: Sequence[Any], scores: np.ndarray, classes: tuple[str, str]
) -> np.ndarray:
    """Each patch's slide-context score, from the patches of its own slide among `paths`."""
    names = [parse_name(path, classes) for path in paths]
    out = scores.astype(np.float64)
    slides: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        slides.setdefault(name.group, []).append(i)
    for members in slides.values():
        patches = [(names[i].x, names[i].y, float(scores[i])) for i in members]
        out[members] = context.scores(patches)  # type: ignore[arg-type]
    return out


def sensitivity_holding_threshold(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray, floor: float = SENSITIVITY_FLOOR
) -> float:
    """The threshold that maximises pooled F1 among those that keep every patient with at least
    MIN_POSITIVES_PER_PATIENT positives at or above `floor` sensitivity.

    Pooled F1 alone favours the patients with the most patches; a new patient's slide needs its
    own cancer found. If no threshold holds the floor for all, the one that does best for the
    worst patient is taken.
    """
    y = y.astype(bool)
    candidates = np.unique(np.quantile(scores, np.linspace(0.005, 0.995, 400)))
    big = [g for g in np.unique(groups) if y[groups == g].sum() >= MIN_POSITIVES_PER_PATIENT]
    worst = np.array([_worst_sensitivity(y, scores, groups, big, t) for t in candidates])
    f1 = np.array([_f1(y, scores >= t) for t in candidates])
    holding = worst >= floor
    if holding.any():
        return float(candidates[holding][np.argmax(f1[holding])])
    return float(candidates[np.argmax(worst)])


def _worst_sensitivity(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray, big: list[str], t: float
) -> float:
    if not big:
        return 1.0
    return min(float(((scores >= t) & y)[groups == g].sum() / y[groups == g].sum()) for g in big)


def _f1(y: np.ndarray, called: np.ndarray) -> float:
    tp = float((called & y).sum())
    return 2 * tp / max(float(called.sum()) + float(y.sum()), 1.0)


def fit_platt(y: np.ndarray, scores: np.ndarray, iterations: int = 50) -> Calibration:
    """Platt scaling on the score's logit: P = sigmoid(a * logit(score) + b), fitted by Newton's
    method on the log loss. Two numbers, so a few thousand held-out patches fit it well, and it
    keeps the order of the scores (the ROC AUC) exactly."""
    x = _logit(scores)
    t = y.astype(np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * x + b)))
        w = np.maximum(p * (1 - p), 1e-12)
        gradient = np.array([np.sum((p - t) * x), np.sum(p - t)])
        hessian = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return Calibration(float(a), float(b))


def _logit(scores: np.ndarray) -> np.ndarray:
    p = np.clip(scores.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def expected_calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """The mean gap between predicted probability and observed frequency, over equal-width bins
    weighted by how many predictions fall in each."""
    edges = np.minimum((probabilities * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = edges == b
        if members.any():
            total += members.sum() * abs(probabilities[members].mean() - y[members].mean())
    return float(total / len(y))


def reliability(y: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[list[float]]:
    """[mean predicted, observed frequency, count] per equal-width bin, for the diagram."""
    edges = np.minimum((probabilities * bins).astype(int), bins - 1)
    return [
        [float(probabilities[edges == b].mean()), float(y[edges == b].mean()), int(m)]
        for b in range(bins)
        if (m := int((edges == b).sum()))
    ]


@dataclass(frozen=True)
class BandChoice:
    band: ReviewBand
    decided: float  # share of patches decided (not sent to review) on the calibration set
    error: float  # error rate among them


# The review band's confidence: the chosen band's error among decided patches is at or under
# the target with this probability (Learn-then-Test, fixed-sequence).
DELTA = 0.05
REVIEW_TARGETS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20)


def review_band(
    y: np.ndarray, scores: np.ndarray, threshold: float, target: float, delta: float = DELTA
) -> BandChoice:
    """The narrowest band [low, high) around `threshold` whose decided patches' error rate is at
    or under `target` with confidence 1 - `delta`.

    The bands form one family, from everything reviewed to nothing: a share `s` of each side's
    calls, those nearest the threshold, go to review. Learn-then-Test (Angelopoulos et al. 2021)
    by fixed-sequence testing: from s = 1 down, each band is accepted while a binomial upper
    confidence bound of its error among decided patches stays at or under `target`; the last one
    accepted is chosen. Valid for patches exchangeable with the calibration set's.
    """
    y = y.astype(bool)
    below, above = np.sort(scores[scores < threshold]), np.sort(scores[scores >= threshold])
    chosen = BandChoice(ReviewBand(0.0, 1.0 + 1e-9), 0.0, 0.0)
    for share in np.linspace(1.0, 0.0, 101):
        low = _quantile_edge(below, 1.0 - share, default=threshold)
        high = _quantile_edge(above, share, default=threshold)
        decided = (scores < low) | (scores >= high)
        n = int(decided.sum())
        errors = int((decided & ((scores >= high) != y)).sum())
        if n and _binomial_upper(errors, n, delta) > target:
            break
        chosen = BandChoice(ReviewBand(low, high), n / len(y), errors / max(n, 1))
    return chosen


def _quantile_edge(sorted_scores: np.ndarray, share: float, default: float) -> float:
    """The score below which `share` of `sorted_scores` lie (an edge between patches)."""
    if len(sorted_scores) == 0:
        return default
    index = round(share * len(sorted_scores))
    if index <= 0:
        return float(sorted_scores[0])
    if index >= len(sorted_scores):
        return float(np.nextafter(sorted_scores[-1], np.inf))
    return float(sorted_scores[index])


def _binomial_upper(errors: int, n: int, delta: float) -> float:
    """An upper 1 - delta confidence bound on an error rate (Wilson score interval, one-sided)."""
    z = _normal_quantile(1 - delta)
    p = errors / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def _normal_quantile(q: float) -> float:
    """The standard normal quantile by bisection on erf (no scipy in the runtime)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def per_patient(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, t: float) -> dict:
    """Each patient's metrics at threshold `t`."""
    return {
        str(g): {
            **metrics.summarize(y[groups == g], scores[groups == g] >= t),
            "roc_auc": metrics.roc_auc(y[groups == g], scores[groups == g]),
            "positives": int(y[groups == g].sum()),
        }
        for g in np.unique(groups)
    }


REVIEW_METHOD = (
    "Learn-then-Test, fixed-sequence: from everything reviewed to nothing, each band whose "
    "decided calls' error has a 95% Wilson upper bound at or under the target is accepted; "
    "the narrowest accepted band is kept"
)


def review_metadata(
    sets: dict[str, tuple[np.ndarray, np.ndarray, float]], calibration_set: dict[str, Any]
) -> dict[str, Any]:
    """The model's `review` metadata (patchscan.results.review_bands reads it): for each kind of
    score (name -> truth, calibrated scores, threshold), a band per error-rate target."""
    return {
        "target": 0.05,
        "confidence": 1 - DELTA,
        "method": REVIEW_METHOD,
        "calibration_set": calibration_set,
        "bands": {
            kind: [
                [target, choice.band.low, choice.band.high]
                for target in REVIEW_TARGETS
                for choice in [review_band(y, scores, threshold, target)]
            ]
            for kind, (y, scores, threshold) in sets.items()
        },
    }
