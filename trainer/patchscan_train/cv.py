"""Patient-level cross-validation: every patient's patches scored by a model that never saw them.

One train/val/test split judges a model on 8 patients, and a threshold fitted on 6 validation
patients did not carry to new slides. K folds of whole patients give out-of-fold (OOF)
probabilities for all of them: the pooled and per-patient figures that show the spread a new
patient can expect, and the data on which the operating point, the calibration and the review
band are chosen.

Each fold trains on K-2 folds, stops early on one more (the next fold) and scores the held-out
one (or, with `validate=False`, trains on all K-1 other folds for the fixed epochs, as the
shipped model trains). Variants (recipes) train fold by fold side by side, so that runs cut
short still compare like with like. The OOF scores are saved after every fold (oof.npz);
`analyse` works from them alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patchscan import stain
from patchscan_train import data
from patchscan_train.boundary import loss_weights
from patchscan_train.cv_report import design, training_fold_count
from patchscan_train.tasks import TASKS, Task
from patchscan_train.variants import (
    TEST_TIME,
    VARIANTS,
    ensemble_name,
    members_of,
    scored_recipe,
)

log = logging.getLogger(__name__)


def patient_folds(examples: Sequence[data.Example], k: int, seed: int) -> list[list[str]]:
    """`k` disjoint sets of groups (patients), each with positives where there are enough.

    Groups are ordered by their number of positives (ties shuffled by `seed`) and dealt out in a
    snake (1..k, k..1, ...), so every fold gets a share of the heavy and the light patients.
    """
    positives: dict[str, int] = {}
    for example in examples:
        positives[example.group] = positives.get(example.group, 0) + example.label
    names = sorted(positives)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda name: -positives[name])
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, name in enumerate(names):
        lap, place = divmod(i, k)
        folds[place if lap % 2 == 0 else k - 1 - place].append(name)
    return [sorted(fold) for fold in folds]


def validation_fold(held_out: int, k: int) -> int:
    """The fold that stops fold `held_out`'s models early: the one after it."""
    return (held_out + 1) % k


def training_patients(
    folds: Sequence[Sequence[str]], held_out: int, count: int | None, validated: bool = True
) -> list[str]:
    """The patients fold `held_out`'s models train on: the `count` folds (all there are if
    None) after its validation fold, or after the held-out fold itself when the models train
    without validation."""
    k = len(folds)
    count = training_fold_count(k, validated, count)
    first = 2 if validated else 1
    return [name for step in range(first, first + count) for name in folds[(held_out + step) % k]]


def standardised(
    images: np.ndarray, groups: np.ndarray, target: stain.ColourStats | None
) -> tuple[np.ndarray, dict[str, stain.ColourStats | None]]:
    """Every group's (slide's) patches mapped onto `target` by its own colour statistics, as the
    scan does (stain.py); a copy. Also returns each group's statistics."""
    out = images.copy()
    stats: dict[str, stain.ColourStats | None] = {}
    for name in np.unique(groups):
        members = np.flatnonzero(groups == name)
        stats[name] = slide = stain.slide_stats(images[members[:: max(1, len(members) // 256)]])
        if slide is not None and target is not None:
            out[members] = stain.standardise(images[members], slide, target)
    return out, stats


def run_cv(
    task_name: str,
    root: Path,
    out: Path,
    k: int,
    epochs: int,
    seed: int,
    variants: Sequence[str] = VARIANTS,
    limit: int | None = None,
    train_folds: int | None = None,
    validate: bool = True,
) -> Path:
    """Train and score every fold of every variant; returns the OOF file (written as it goes).

    Without `validate`, each fold's models train on all the other folds for all `epochs` and
    keep their last weights, as `final` trains the shipped model: no early stopping on a
    validation fold of 4 patients, whose ROC AUC jumps from epoch to epoch.

    `train_folds` trains each fold's models on only that many of the k-2 training folds (the
    ones after its validation fold, in turn): the same held-out patients, scored by models that
    saw fewer patients, for a learning curve. Each epoch then has fewer steps, while the
    learning-rate schedule keeps its shape over `epochs`. More epochs to make up the steps did
    worse (12 patients at 20 epochs: ROC AUC 0.864 against 0.914 at 10): early stopping on a
    noisy validation fold then keeps weights from before the learning rate has come down."""
    from patchscan_train.run import _spread
    from patchscan_train.train import predict

    unscored = [v for v in variants if v in TEST_TIME and scored_recipe(v) not in variants]
    if unscored:
        raise ValueError(
            f"{', '.join(unscored)} score the plain recipe's models: add --variant plain"
        )

    trained_on = training_fold_count(k, validate, train_folds)
    task = TASKS[task_name]
    examples = task.examples(root)
    if limit:
        examples = _spread(examples, limit, seed)
    folds = patient_folds(examples, k, seed)
    groups = np.array([e.group for e in examples])
    paths = np.array([str(e.path) for e in examples])
    y = data.labels(examples)
    images = data.load_images(examples, task.size)
    out.mkdir(parents=True, exist_ok=True)
    oof = {v: np.full(len(examples), np.nan, np.float32) for v in variants}
    record: dict[str, Any] = {
        "task": task.name,
        "folds": folds,
        "epochs": epochs,
        "seed": seed,
        "validation": validate,
        "train_folds": trained_on,
        "variants": list(variants),
        "fold_seconds": {v: [] for v in variants},
    }
    # A patch's loss weight depends on its own slide's labels only: the same in every fold.
    recipes = {v: recipe(task, v) for v in variants if v not in TEST_TIME}
    weights = {v: loss_weights(r, paths, groups, y) for v, r in recipes.items()}
    for i, fold in enumerate(folds):
        test = np.isin(groups, fold)
        val = np.isin(groups, folds[validation_fold(i, k)]) if validate else None
        train = np.isin(groups, training_patients(folds, i, train_folds, validate))
        for variant, trained in recipes.items():
            started = time.monotonic()
            prepared = _prepared(variant, images, groups, train)
            model = _fold_model(trained, prepared, y, train, val, epochs, seed, weights[variant])
            oof[variant][test] = predict(model, prepared[test])
            _timed(record, variant, started, i, k)
            for scoring in (v for v in variants if v in TEST_TIME and scored_recipe(v) == variant):
                started = time.monotonic()
                oof[scoring][test] = _scored_at_test(scoring, model, images, groups, train, test)
                _timed(record, scoring, started, i, k)
            _save(out, paths, groups, y, oof, record)
    return out / "oof.npz"


def merge_runs(runs: Sequence[Path], variant: str, out: Path) -> Path:
    """The out-of-fold scores of an ensemble: the mean of `variant`'s probabilities over CV runs
    of it on the same folds, each run one member trained alike (so the mean of the fold models
    that held a patient out is that patient's out-of-fold score). The runs' own single-model
    scores are kept beside it (`variant #1`, ...), for the spread between trainings.

    Two trainings of one recipe differ (TensorFlow's CPU kernels are not deterministic across
    threads): on the idc folds by 0.019 in nested balanced accuracy and 0.018 in ROC AUC.
    Averaging them is the cheapest way to a model that does not depend on that draw."""
    if len(runs) < 2:
        raise ValueError("an ensemble needs two runs or more")
    saved = [np.load(run / "oof.npz") for run in runs]
    records = [json.loads((run / "cv.json").read_text()) for run in runs]
    first = records[0]
    for run, record, scores in zip(runs, records, saved, strict=True):
        if design(record) != design(first):
            raise ValueError(f"{run}: other folds, epochs or training folds than {runs[0]}")
        if not np.array_equal(scores["paths"], saved[0]["paths"]):
            raise ValueError(f"{run}: other patches than {runs[0]}")
        if f"oof_{variant}" not in scores or np.isnan(scores[f"oof_{variant}"]).any():
            raise ValueError(f"{run}: no complete out-of-fold scores of {variant}")
    members = [s[f"oof_{variant}"].astype(np.float64) for s in saved]
    name = ensemble_name(variant, len(runs))
    oof = {name: np.mean(members, axis=0).astype(np.float32)}
    oof.update({f"{variant} #{i + 1}": m.astype(np.float32) for i, m in enumerate(members)})
    seconds = [r["fold_seconds"][variant] for r in records]
    record = {
        **{k: first[k] for k in ("task", "seed")},
        **design(first)._asdict(),
        "variants": list(oof),
        "runs": [str(run) for run in runs],
        "fold_seconds": {
            name: [sum(fold) for fold in zip(*seconds, strict=True)],
            **{f"{variant} #{i + 1}": s for i, s in enumerate(seconds)},
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    _save(out, saved[0]["paths"], saved[0]["groups"], saved[0]["y"], oof, record)
    return out / "oof.npz"


# light-outline's weight for a patch on the annotation's outline (boundary.loss_weights).
LIGHT_OUTLINE = 0.25


def recipe(task: Task, variant: str) -> Task:
    """The task as this variant trains it (each member of an ensemble of it alike)."""
    variant = members_of(variant)[0]
    if variant == "strong-colour":
        from patchscan_train.augment import for_histology_strong

        return dataclasses.replace(task, augment=for_histology_strong)
    if variant == "light-outline":
        return dataclasses.replace(task, outline_weight=LIGHT_OUTLINE)
    return task


def _prepared(
    variant: str, images: np.ndarray, groups: np.ndarray, train: np.ndarray
) -> np.ndarray:
    if variant in ("plain", "strong-colour", "light-outline"):
        return images
    if variant == "reinhard":
        # The target is the average training slide: the held-out patients' colours never set it.
        _, stats = standardised(images[train], groups[train], None)
        target = stain.ColourStats.mean_of(s for s in stats.values() if s is not None)
        return standardised(images, groups, target)[0]
    raise ValueError(f"unknown variant {variant!r}")


def _scored_at_test(
    scoring: str,
    model: Any,
    images: np.ndarray,
    groups: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
) -> np.ndarray:
    """The held-out patches' scores by a trained fold model, adapted at test time (TEST_TIME)."""
    from patchscan_train.adapt import adapted_scores
    from patchscan_train.train import predict

    if scoring.endswith("+reinhard"):
        return predict(model, _prepared("reinhard", images, groups, train)[test])
    if scoring.endswith("+adabn"):
        return adapted_scores(model, images[test], groups[test])
    if scoring.endswith("+adabn-half"):
        return adapted_scores(model, images[test], groups[test], share=0.5)
    raise ValueError(f"unknown test-time scoring {scoring!r}")


def _timed(record: dict[str, Any], variant: str, started: float, i: int, k: int) -> None:
    seconds = time.monotonic() - started
    record["fold_seconds"][variant].append(round(seconds))
    log.info("fold %d/%d %s: %.0f s", i + 1, k, variant, seconds)


def _fold_model(
    task: Task,
    images: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray | None,
    epochs: int,
    seed: int,
    weights: np.ndarray | None = None,
) -> Any:
    """One fold's model of `task`'s recipe, trained on `train` (each example's loss times its
    `weights`, when given) and stopped early on `val`, or for all epochs without it."""
    from patchscan_train.train import fit

    settings = dataclasses.replace(
        task.fit,
        epochs=epochs,
        patience=min(task.fit.patience, 4),
        seed=seed,
        batch_size=task.fit.batch_size if train.sum() > 1000 else 8,
    )
    model = task.build(task.size)
    train_weights = None if weights is None else weights[train]
    fit(
        model,
        (images[train], y[train]),
        None if val is None else (images[val], y[val]),
        settings,
        task.augment,
        weights=train_weights,
    )
    return model


def _save(
    out: Path,
    paths: np.ndarray,
    groups: np.ndarray,
    y: np.ndarray,
    oof: dict[str, np.ndarray],
    record: dict[str, object],
) -> None:
    np.savez_compressed(
        out / "oof.npz",
        paths=paths,
        groups=groups,
        y=y,
        **{f"oof_{v}": s for v, s in oof.items()},
    )
    (out / "cv.json").write_text(json.dumps(record, indent=2))
