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


def fit_platt(y: np.ndarray, scores: np.ndarray, iterations: int = 50) -> Calibration:
    """Platt scaling on the score's logit: P = sigmoid(a * logit(score) + b), fitted by Newton's
    method on the log loss. Two numbers, so a few thousand held-out patches fit it well, and it
    keeps the order of the scores (the ROC AUC) exactly."""
    x = _logit(scores)
    t = y.astype(np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 0.5 * (1 + np.tanh(0.5 * (a * x + b)))  # the sigmoid, without exp's overflow
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
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    target: float,
    delta: float = DELTA,
    edges: int = 100,
) -> BandChoice:
    """The band [low, high) around `threshold` that leaves the most patches decided while their
    error rate stays at or under `target` with confidence 1 - `delta`.

    Candidate edges are `edges` quantiles of the calls on each side of the threshold (low among
    the negative calls, high among the positive ones; each side may also review nothing or all).
    Learn-then-Test (Angelopoulos et al. 2021) with a Bonferroni correction over the candidate
    bands: a band is valid when a binomial upper confidence bound of its decided error, at
    `delta` divided by the number of bands, is at or under `target`; of the valid bands the one
    deciding most is kept. Valid for patches exchangeable with the calibration set's.
    """
    y = y.astype(bool)
    order = np.argsort(scores, kind="mergesort")
    s, t = scores[order], y[order]
    n = len(s)
    split = int(np.searchsorted(s, threshold, side="left"))  # calls below: s[:split]
    # Prefix counts: positives among the lowest i (the negative calls' errors when decided).
    positives_below = np.r_[0, np.cumsum(t)]
    negatives_below = np.r_[0, np.cumsum(~t)]
    lows = np.unique(np.round(np.linspace(0, split, edges + 1)).astype(int))  # decide s[:i]
    highs = np.unique(np.round(np.linspace(split, n, edges + 1)).astype(int))  # decide s[j:]
    decided_low = lows[:, None]
    decided_high = n - highs[None, :]
    errors = positives_below[lows][:, None] + (negatives_below[n] - negatives_below[highs])[None, :]
    decided = decided_low + decided_high
    level = delta / (len(lows) * len(highs))
    bound = _binomial_upper_array(errors, decided, level)
    valid = (decided > 0) & (bound <= target)
    if not valid.any():
        return BandChoice(ReviewBand(float(s[0]) if n else 0.0, _above(s)), 0.0, 0.0)
    best = np.unravel_index(np.argmax(np.where(valid, decided, -1)), decided.shape)
    i, j = lows[best[0]], highs[best[1]]
    low = float(s[i]) if i < n else _above(s)
    high = float(s[j]) if j < n else _above(s)
    if i == split:
        low = threshold  # every negative call decided: the band starts at the threshold
    if j == split:
        high = threshold
    return BandChoice(
        ReviewBand(min(low, threshold), max(high, threshold)),
        float(decided[best]) / n,
        float(errors[best]) / max(float(decided[best]), 1.0),
    )


def _above(sorted_scores: np.ndarray) -> float:
    """An edge above every score: nothing is at or over it."""
    return float(np.nextafter(sorted_scores[-1], np.inf)) if len(sorted_scores) else 1.0


def _binomial_upper_array(errors: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """_binomial_upper over arrays (n = 0 gives 1: nothing decided bounds nothing)."""
    z = _normal_quantile(1 - delta)
    safe = np.maximum(n, 1).astype(np.float64)
    p = errors / safe
    centre = p + z * z / (2 * safe)
    spread = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe))
    return np.where(n > 0, (centre + spread) / (1 + z * z / safe), 1.0)


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
    "Learn-then-Test with a Bonferroni correction: of ~10,000 candidate bands (100 quantile "
    "edges each side of the threshold), those whose decided calls' error has a Wilson upper "
    "bound at 95% confidence, corrected for the number of bands, at or under the target are "
    "valid; the valid band deciding the most patches is kept"
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
