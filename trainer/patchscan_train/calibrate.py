"""Calibration and the review band for a shipped model, from its own validation split.

For a task without cross-validation (skin), the validation images the threshold was chosen on
are scored again through patchscan's own onnxruntime session, exactly as a scan scores them; a
Platt scaling and the review bands are fitted there and written into the model's metadata, and
the test split says how they hold on images neither saw.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from patchscan import metrics
from patchscan.imaging import load_rgb
from patchscan.model import Model, Session
from patchscan.pipeline import batch_size_for
from patchscan.results import Labels
from patchscan_train import data, operating
from patchscan_train.export import rewrite_metadata
from patchscan_train.tasks import TASKS

log = logging.getLogger(__name__)


def calibrate_shipped(
    task_name: str, root: Path, model_path: Path, out: Path, seed: int = 0
) -> dict:
    """Fit, write into `model_path` and return the figures (validation and test). The raw
    scores are kept in out/scores.npz, keyed by the model's sha256: a second fit is seconds."""
    task = TASKS[task_name]
    model = Model.open(model_path)
    splits = data.split_by_group(task.examples(root), seed)
    raw = cached_scores(out / "scores.npz", model, splits)
    y = {k: data.labels(splits[k]).astype(bool) for k in raw}
    platt = operating.fit_platt(y["val"], raw["val"])
    calibrated = {k: np.vectorize(platt)(v) for k, v in raw.items()}
    threshold = round(platt(model.info.threshold), 6)  # the same decisions, in calibrated units
    review = operating.review_metadata(
        {"probability": (y["val"], calibrated["val"], threshold)},
        {task.group + "s": len({e.group for e in splits["val"]}), "images": len(raw["val"])},
    )
    info = dataclasses.replace(
        model.info,
        threshold=threshold,
        calibration={"probability": {"a": platt.a, "b": platt.b}},
        review=review,
    )
    labels = Labels.of(info)
    figures = {k: judged(y[k], raw[k], calibrated[k], labels) for k in raw}
    info = dataclasses.replace(info, metrics={**info.metrics, "review": figures["test"]["review"]})
    rewrite_metadata(model_path, info)
    return {"threshold": threshold, "calibration": [platt.a, platt.b], **figures}


def cached_scores(
    cache: Path, model: Model, splits: dict[str, list[data.Example]]
) -> dict[str, np.ndarray]:
    """Validation and test scores of `model`, from `cache` when it holds this model's."""
    if cache.is_file():
        saved = np.load(cache)
        if str(saved["sha256"]) == model.sha256:
            return {k: saved[k] for k in ("val", "test")}
    session = Session(model)
    raw = {k: scores(session, splits[k]) for k in ("val", "test")}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, sha256=model.sha256, **raw)
    return raw


def scores(session: Session, examples: list[data.Example]) -> np.ndarray:
    """P(positive) through the scan's own session, batched as the scan batches."""
    size, batch = session.info.input_size, batch_size_for(session.info)
    out = []
    for start in range(0, len(examples), batch):
        pixels = np.stack([load_rgb(e.path, size) for e in examples[start : start + batch]])
        out.append(session.predict(pixels))
        if start % (50 * batch) == 0:
            log.info("scored %d / %d", start + len(pixels), len(examples))
    return np.concatenate(out)


def judged(y: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, labels: Labels) -> dict:
    """Calibration error before and after, and what the default review band does."""
    called = calibrated >= labels.threshold
    band = labels.review
    assert band is not None
    review = (calibrated >= band.low) & (calibrated < band.high)
    decided = ~review
    return {
        "ece_raw": operating.expected_calibration_error(y, raw),
        "ece": operating.expected_calibration_error(y, calibrated),
        "reliability": operating.reliability(y, calibrated),
        **metrics.summarize(y, called),
        "roc_auc": metrics.roc_auc(y, calibrated),
        "review": {
            "band": [band.low, band.high],
            "share_reviewed": round(float(review.mean()), 4),
            "decided_accuracy": round(float((called[decided] == y[decided]).mean()), 4),
        },
    }
