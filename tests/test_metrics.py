import numpy as np
import pytest

from patchscan import metrics


def test_summary_against_hand_counts() -> None:
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    predicted = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    assert metrics.confusion(truth, predicted) == [[4, 1], [1, 2]]
    s = metrics.summarize(truth, predicted)
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert s["f1"] == pytest.approx(2 / 3)


def test_undefined_metrics_are_none_not_zero() -> None:
    s = metrics.summarize(np.array([0, 0]), np.array([0, 0]))
    assert s["recall"] is None and s["balanced_accuracy"] is None and s["accuracy"] == 1.0


def test_auc_counts_ties_half_and_matches_pair_counting() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + truth * 0.3, 1)  # many ties
    pos, neg = scores[truth], scores[~truth]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert metrics.roc_auc(truth, scores) == pytest.approx(pairs)
    assert metrics.roc_auc(np.ones(3), np.ones(3)) is None


def test_roc_curve_ends_and_threshold_rule() -> None:
    truth = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr, _ = metrics.roc_curve(truth, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert metrics.balanced_accuracy_threshold(truth, scores) == pytest.approx(0.8)


def test_f1_threshold_is_the_best_of_every_cut() -> None:
    rng = np.random.default_rng(4)
    truth = rng.random(300) < 0.2
    scores = np.round(np.where(truth, rng.beta(4, 2, 300), rng.beta(2, 4, 300)), 2)  # with ties
    best = metrics.f1_threshold(truth, scores)

    def f1_at(cut: float) -> float:
        return metrics.summarize(truth, scores >= cut)["f1"] or 0.0

    assert f1_at(best) == pytest.approx(max(f1_at(cut) for cut in np.unique(scores)))
    assert f1_at(best) > f1_at(metrics.balanced_accuracy_threshold(truth, scores)) - 1e-12
