"""One training run, end to end: split → load → fit → threshold → evaluate → export → model card."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from patchscan.context import SlideContext
from patchscan.model import ModelInfo
from patchscan_train import data, nets
from patchscan_train.evaluate import evaluate, write_run_report
from patchscan_train.export import count_macs, export_onnx, onnx_throughput
from patchscan_train.modelcard import write_model_card
from patchscan_train.operating import context_scores
from patchscan_train.tasks import TASKS, THRESHOLD_RULES, Task
from patchscan_train.train import fit, predict

log = logging.getLogger(__name__)

# What a run records about its training, so that `reevaluate` can finish it again.
TRAINING_RECORD = ("history", "training_seconds", "epochs_run", "seed", "limit")


def run_training(
    task_name: str, root: Path, out: Path, epochs: int | None, seed: int, limit: int | None
) -> dict[str, Any]:
    task = TASKS[task_name]
    settings = dataclasses.replace(
        task.fit,
        epochs=epochs or task.fit.epochs,
        batch_size=task.fit.batch_size if not limit else 8,
        seed=seed,
    )
    splits = load_splits(task, root, seed, limit)
    images = {k: data.load_images(v, task.size) for k, v in splits.items()}
    model = task.build(task.size)
    history, seconds = fit(
        model,
        (images["train"], data.labels(splits["train"])),
        (images["val"], data.labels(splits["val"])),
        settings,
        task.augment,
        keras.models.load_model(task.teacher) if task.teacher else None,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{task.name}.keras")  # first: nothing after it may cost the training
    training = dict(
        history=history,
        training_seconds=seconds,
        epochs_run=len(history["loss"]),
        seed=seed,
        limit=limit,
    )
    return finish(task, model, training, splits, images, out)


def reevaluate(task_name: str, root: Path, run: Path, out: Path) -> dict[str, Any]:
    """Evaluate and export the trained model of `run` again, on the run's own split, with the
    task's current recipe (threshold rule, dihedral views, slide context): an hour of training
    is not redone to change how its model is judged or served."""
    task = TASKS[task_name]
    recorded = json.loads((run / "metrics.json").read_text())
    training = {key: recorded.get(key) for key in TRAINING_RECORD}
    if training["history"] is None:
        raise ValueError("its metrics.json has no training history (a run from before 2026-11-22)")
    splits = load_splits(task, root, training["seed"], training["limit"])
    sizes = {k: len(v) for k, v in splits.items()}
    if sizes != recorded["split_sizes"]:
        raise ValueError(f"{root} splits into {sizes}, not the run's {recorded['split_sizes']}")
    model = keras.models.load_model(run / f"{task.name}.keras")
    images = {k: data.load_images(splits[k], task.size) for k in ("val", "test")}
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != run.resolve():
        model.save(out / f"{task.name}.keras")
    return finish(task, model, training, splits, images, out)


def load_splits(
    task: Task, root: Path, seed: int, limit: int | None
) -> dict[str, list[data.Example]]:
    examples = task.examples(root)
    if limit:
        examples = _spread(examples, limit, seed)
    splits = data.split_by_group(examples, seed)
    log.info("split: %s", {k: (len(v), len({e.group for e in v})) for k, v in splits.items()})
    return splits


def finish(
    task: Task,
    model: keras.Model,
    training: dict[str, Any],
    splits: dict[str, list[data.Example]],
    images: dict[str, np.ndarray],
    out: Path,
) -> dict[str, Any]:
    """Threshold, evaluation, ONNX export, report and model card of a trained model."""
    views = nets.DIHEDRAL_VIEWS if task.dihedral_views else 1
    served = nets.averaged_over_dihedral_views(model) if task.dihedral_views else model
    y = {k: data.labels(splits[k]) for k in ("val", "test")}
    # 512 images a step, views included: 8 views of 512 photos took 6 GB.
    scores = {k: predict(served, images[k], 512 // views) for k in ("val", "test")}
    results, context = judge(task, splits, scores, y)
    results.update(
        **training,
        parameters=int(model.count_params()),
        macs=count_macs(model) * views,
        split={
            k: sorted({e.group for e in v}) if task.per_group else len(v) for k, v in splits.items()
        },
        split_sizes={k: len(v) for k, v in splits.items()},
        machine=f"{platform.machine()}, {platform.processor() or 'cpu'}",
        tensorflow=tf.__version__,
    )
    info = model_info(task, results, context, views)
    onnx = out / f"{task.name}.onnx"
    results["onnx_max_difference"] = export_onnx(served, info, onnx, images["test"][:500])
    results["onnx_images_per_second"] = onnx_throughput(onnx, images["test"])
    title = f"patchscan {task.name} model, trained {dt.date.today()}"
    write_run_report(
        out, title, training["history"], results, (y["test"], scores["test"]), task.classes
    )
    write_model_card(out / f"{task.name}.md", task, info, results)
    return {"out": str(out), "threshold": results["threshold"], **_headline(results["test"])}


def judge(
    task: Task,
    splits: dict[str, list[data.Example]],
    scores: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
) -> tuple[dict[str, Any], SlideContext | None]:
    """The threshold chosen on validation by the task's rule, val/test results at it, and the
    same with slide context for tasks that have it."""
    choose_threshold, threshold_rule = THRESHOLD_RULES[task.threshold_rule]
    threshold = choose_threshold(y["val"], scores["val"])
    groups = {k: [e.group for e in splits[k]] if task.per_group else None for k in scores}
    results: dict[str, Any] = {
        k: evaluate(y[k], scores[k], threshold, groups[k]) for k in ("val", "test")
    }
    results.update(threshold=threshold, threshold_rule=f"{threshold_rule} on the validation split")
    context = None
    if task.context:
        context, with_context = slide_context(task, splits, scores, y, choose_threshold)
        results.update(with_context)
    return results, context


def model_info(
    task: Task, results: dict[str, Any], context: SlideContext | None, views: int
) -> ModelInfo:
    """What the ONNX file will say about itself (patchscan.model reads it back)."""
    return ModelInfo(
        name=task.name,
        version=dt.date.today().strftime("%Y.%m.%d"),
        description=task.description,
        classes=task.classes,
        input_size=task.size,
        threshold=round(results["threshold"], 4),
        license=task.license,
        metrics={
            **_headline(results["test"]),
            **({"slide_context": _headline(results["test_context"])} if context else {}),
        },
        training={
            "data": task.data_summary,
            "split": f"by {task.group}",
            "split_sizes": results["split_sizes"],
            "threshold_rule": results["threshold_rule"],
            "seed": results["seed"],
            "parameters": results["parameters"],
            "macs": results["macs"],
            "training_seconds": round(results["training_seconds"]),
        },
        context=context,
        views=views,
    )


def slide_context(
    task: Task,
    splits: dict[str, list[data.Example]],
    scores: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    choose_threshold: Callable[[np.ndarray, np.ndarray], float],
) -> tuple[SlideContext, dict[str, Any]]:
    """The slide context the scan will apply, its threshold chosen on validation by the task's
    rule, and val/test results with it ("val_context", "test_context")."""
    assert task.context is not None
    radius, self_weight = task.context
    shape = SlideContext(step=task.size[0], radius=radius, self_weight=self_weight, threshold=0.5)
    smoothed = {
        k: context_scores(shape, [e.path for e in splits[k]], scores[k], task.classes)
        for k in scores
    }
    threshold = round(choose_threshold(y["val"], smoothed["val"]), 4)
    groups = {k: [e.group for e in splits[k]] for k in scores}
    results = {f"{k}_context": evaluate(y[k], smoothed[k], threshold, groups[k]) for k in smoothed}
    return dataclasses.replace(shape, threshold=threshold), results


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "accuracy", "balanced_accuracy", "roc_auc", "precision", "recall", "f1")
    return {k: (round(result[k], 4) if isinstance(result[k], float) else result[k]) for k in keys}


def _spread(examples: list[data.Example], limit: int, seed: int) -> list[data.Example]:
    """A small subset that keeps several groups and both classes (for smoke tests)."""
    rng = np.random.default_rng(seed)
    by_label = [[e for e in examples if e.label == label] for label in (0, 1)]
    picked = [
        by_label[i][j] for i in (0, 1) for j in rng.permutation(len(by_label[i]))[: limit // 2]
    ]
    return sorted(picked, key=lambda e: str(e.path))
