"""The shipped model of a cross-validated recipe: trained on every patient, judged by its CV.

Cross-validation (cv.py) says how the recipe does on patients it never saw and chooses, on all
patients' out-of-fold scores, the calibration, the operating thresholds and the review bands
(cv_report.py). The model that ships is the same recipe trained on all of them, for the same
number of epochs, with those choices in its metadata; its card's headline figures are the CV's
nested ones, the honest estimate for a new patient's slide.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from patchscan import stain
from patchscan.context import SlideContext
from patchscan.imaging import load_rgb
from patchscan.model import ModelInfo, read_info
from patchscan.naming import parse_name
from patchscan_train import data, nets
from patchscan_train.boundary import loss_weights
from patchscan_train.cv import recipe
from patchscan_train.cv_report import design, learning_curve, markdown
from patchscan_train.export import count_macs, export_onnx, onnx_throughput
from patchscan_train.operating import REVIEW_METHOD
from patchscan_train.tasks import TASKS, THRESHOLD_RULES
from patchscan_train.train import fit
from patchscan_train.variants import members_of

log = logging.getLogger(__name__)


class NotShippable(ValueError):
    """A CV run whose figures would not describe the model `final` trains from it."""


def train_final(task_name: str, root: Path, cv: Path, variant: str, out: Path) -> dict[str, Any]:
    """Train `variant` of `task_name` on all of `root`, export out/<task>.onnx and its card."""
    task = recipe(TASKS[task_name], variant)
    report = json.loads((cv / "cv-report.json").read_text())
    record = json.loads((cv / "cv.json").read_text())
    if learning_curve(record):
        raise NotShippable(
            f"{cv} trained each fold's models on {record['train_folds']} folds only (a learning "
            "curve): its figures are not the recipe's on all patients; ship from a full run"
        )
    result = report[variant]
    examples = task.examples(root)
    images = data.load_images(examples, task.size)
    y = data.labels(examples)
    weights = loss_weights(
        task,
        np.array([str(e.path) for e in examples]),
        np.array([e.group for e in examples]),
        y,
    )
    model, history, seconds = _trained(task, variant, record, images, y, weights)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{task.name}.keras")
    info = final_info(task, result, record, examples, int(model.count_params()), seconds, variant)
    if task.context is not None:
        info = dataclasses.replace(info, stain=colour_range(task, examples))
    onnx = out / f"{task.name}.onnx"
    rng = np.random.default_rng(0)
    check = images[rng.choice(len(images), min(500, len(images)), replace=False)]
    figures = {
        "onnx_max_difference": export_onnx(model, info, onnx, check),
        "onnx_images_per_second": onnx_throughput(onnx, check),
        "macs": count_macs(model),
        "history": history[0] if len(history) == 1 else history,
        "training_seconds": seconds,
    }
    (out / "metrics.json").write_text(
        json.dumps({**figures, "cv": result}, indent=2, default=float)
    )
    write_final_card(out / f"{task.name}.md", task, info, report, variant, figures)
    return {"out": str(out), **info.metrics}


def _trained(
    task: Any,
    variant: str,
    record: dict[str, Any],
    images: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[Any, list[dict[str, list[float]]], float]:
    """The recipe trained on every image: one model, or for an ensemble (plain-x2) each member
    alike with its own seed (the CV's seed, then the next ones) and their probabilities averaged
    in one network, so the scan still runs one ONNX file. Also each member's history, and the
    total training time."""
    members = members_of(variant)[1]
    models, histories, total = [], [], 0.0
    for member in range(members):
        seed = record["seed"] + member
        settings = dataclasses.replace(task.fit, epochs=record["epochs"], seed=seed)
        model = task.build(task.size)
        history, seconds = fit(model, (images, y), None, settings, task.augment, weights=weights)
        models.append(model)
        histories.append(history)
        total += seconds
    return (models[0] if members == 1 else nets.mean_of(models)), histories, total


def rewrite_card(task_name: str, run: Path, cv_folders: list[Path], variant: str) -> Path:
    """The card of a finished final run, from the CV reports of several runs on the same folds
    (the first holds `variant`, the shipped recipe); the ONNX file is left as it is."""
    report = merged_reports([json.loads((f / "cv-report.json").read_text()) for f in cv_folders])
    task = recipe(TASKS[task_name], variant)
    info = read_info(run / f"{task.name}.onnx")
    figures = json.loads((run / "metrics.json").read_text())
    card = run / f"{task.name}.md"
    write_final_card(card, task, info, report, variant, figures)
    return card


def merged_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report with every recipe of `reports`, which must share their design
    (cv_report.design). A recipe already there by name, or by its very figures under another name
    (a run that is also an ensemble's member, `plain #2`), is not added twice."""
    merged = dict(reports[0])
    for other in reports[1:]:
        if design(other) != design(merged):
            raise ValueError(
                "the CV runs differ in their folds, epochs or training folds: not comparable"
            )
        known = {_figures(v) for v in merged.values() if isinstance(v, dict) and "nested" in v}
        for name, result in other.items():
            repeated = isinstance(result, dict) and "nested" in result and _figures(result) in known
            if name not in merged and not repeated:
                merged[name] = result
    return merged


def _figures(result: dict[str, Any]) -> str:
    """A recipe's pooled nested figures to 6 places, as text: the same scores analysed twice
    (once as an ensemble's member) differ in their last bits, and NaN equals itself here."""
    pooled = result["nested"]["pooled"]
    return json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in pooled.items()})


def final_info(
    task: Any,
    result: dict[str, Any],
    record: dict[str, Any],
    examples: list[data.Example],
    parameters: int,
    seconds: float,
    variant: str = "plain",
) -> ModelInfo:
    """The metadata the scan reads: thresholds, calibration and review bands from the CV."""
    fitted, nested = result["fitted"], result["nested"]
    members = members_of(variant)[1]
    context = None
    if task.context is not None:
        radius, self_weight = task.context
        context = SlideContext(task.size[0], radius, self_weight, round(fitted["threshold"], 6))
    calibration = {"probability": _platt(fitted["calibration_probability"])}
    bands = {"probability": _bands(fitted["review_table_probability"])}
    if context is not None:
        calibration["context"] = _platt(fitted["calibration_context"])
        bands["context"] = _bands(fitted["review_table"])
    patients = len({e.group for e in examples})
    return ModelInfo(
        name=task.name,
        version=dt.datetime.now().strftime("%Y.%m.%d.%H%M"),
        description=task.description,
        classes=task.classes,
        input_size=task.size,
        threshold=round(fitted["threshold_probability"], 6),
        license=task.license,
        metrics={
            **_headline(nested["pooled"]),
            "estimate": f"{len(record['folds'])}-fold cross-validation by {task.group}, nested",
            "worst_patient_sensitivity": nested["sensitivity_of_patients_with_50_positives"][
                "worst"
            ],
            "ece": round(nested["ece"], 4),
            "review": nested["review"],
        },
        training={
            "data": task.data_summary,
            "split": f"by {task.group}: {len(record['folds'])}-fold cross-validation; the shipped "
            f"model trained on all {patients} {task.group}s",
            "split_sizes": {"all": len(examples)},
            "threshold_rule": f"{THRESHOLD_RULES[task.threshold_rule][1]} on all patients' "
            "out-of-fold scores",
            "seed": record["seed"],
            **({"members": members} if members > 1 else {}),
            "epochs": record["epochs"],
            "parameters": parameters,
            "training_seconds": round(seconds),
        },
        context=context,
        calibration=calibration,
        review={
            "target": 0.05,
            "confidence": 0.95,
            "method": REVIEW_METHOD,
            "calibration_set": {f"{task.group}s": patients, "patches": len(examples)},
            "bands": bands,
        },
    )


# A slide further than this from the training slides' colours, in their standard deviations, is
# flagged. Leaving each of the 32 patients out in turn, one (9177, a 26-patch fragment) lies
# past it (5.8); the next are at 3.0 and 2.9.
DRIFT_LIMIT = 4.0


def colour_range(task: Any, examples: list[data.Example]) -> dict[str, Any]:
    """The training slides' colour statistics, measured as the scan measures a slide (its
    lattice sample of patches, stain.sampled): their mean, their spread across slides, and the
    drift limit past which the scan flags a slide."""
    sums: dict[str, np.ndarray] = {}
    for example in examples:
        name = parse_name(example.path, task.classes)
        if (
            name.x is not None
            and name.y is not None
            and stain.sampled(name.x, name.y, task.size[0])
        ):
            patch = stain.colour_sums(load_rgb(example.path, task.size))
            sums[example.group] = sums.get(example.group, np.zeros(7)) + patch
    slides = [s for s in (stain.stats_from_sums(tuple(v)) for v in sums.values()) if s]
    reference = stain.ColourStats.mean_of(slides)
    spread = {
        "mean": list(np.std([s.mean for s in slides], axis=0)),
        "std": list(np.std([s.std for s in slides], axis=0)),
    }
    return {
        "space": "l-alpha-beta (Reinhard et al. 2001), tissue pixels only",
        "reference": reference.to_metadata(),
        "spread": spread,
        "drift_limit": DRIFT_LIMIT,
        "slides": len(slides),
    }


def _platt(pair: list[float]) -> dict[str, float]:
    return {"a": round(pair[0], 6), "b": round(pair[1], 6)}


def _bands(table: list[list[float]]) -> list[list[float]]:
    return [[target, round(low, 6), round(high, 6)] for target, low, high, *_ in table]


def _headline(pooled: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "accuracy", "balanced_accuracy", "roc_auc", "precision", "recall", "f1")
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in pooled.items() if k in keys}


def write_final_card(
    path: Path,
    task: Any,
    info: ModelInfo,
    report: dict[str, Any],
    variant: str,
    figures: dict[str, Any],
) -> None:
    """The model card: the CV table first (with its ablation rows), then what ships."""
    result = report[variant]
    nested = result["nested"]
    patients_n = len(nested["per_patient"])
    patients = "\n".join(
        f"| {name} | {p['n']} | {p['positives']} | {_f(p['recall'])} | {_f(p['specificity'])} "
        f"| {_f(p['balanced_accuracy'])} | {_f(p['roc_auc'])} | {100 * p['review_share']:.0f}% |"
        for name, p in sorted(nested["per_patient"].items(), key=lambda kv: -kv[1]["positives"])
    )
    band = info.review["bands"]["context" if info.context else "probability"][3]  # type: ignore[index]
    reliability = "\n".join(f"| {m:.2f} | {o:.2f} | {n} |" for m, o, n in nested["reliability"])
    context = info.context
    path.write_text(
        f"""# patchscan model `{info.name}` {info.version}

{info.description}. Output: the calibrated probability of **{info.positive}**.

**Intended use:** research and triage support; it points a person at patches worth a look.
**Not a diagnostic device**; the figures below are from one dataset's {patients_n} patients (one
lab, one scanner).

{markdown(report, "Cross-validation by patient (the headline)")}
The shipped recipe is **{variant}**. Rows named `#N` are the networks an ensemble averages, each
judged alone; rows for other recipes are ablations, trained and judged fold by fold on the same
patients.

## Per patient (nested, {variant})

| patient | patches | IDC | sensitivity | specificity | balanced acc. | ROC AUC | reviewed |
|---|---|---|---|---|---|---|---|
{patients}

## How a patch is called
{_context_words(context)}
- Calibration (Platt scaling on out-of-fold scores): a calibrated probability of 0.8 is right
  about 80% of the time on the cross-validated patients. Expected calibration error: pooled
  {nested["ece"]:.3f}, median patient {nested["spread"]["ece"]["median"]:.3f}, worst
  {nested["spread"]["ece"]["worst"]:.3f} (nested).
- Operating threshold {context.threshold if context else info.threshold:.4f} (slide-context
  score; {info.threshold:.4f} for a patch alone): {info.training["threshold_rule"]}.

Reliability (nested; mean predicted, observed frequency, patches):

| predicted | observed | patches |
|---|---|---|
{reliability}

## Needs review
A call whose score lies in [{band[1]:.3f}, {band[2]:.3f}) is marked `review = yes` in the CSV
(its label stays the decision at the threshold). Outside that band, the calls on the
cross-validated patients were wrong at most 5% of the time, at 95% confidence ({REVIEW_METHOD}).
Nested, {100 * nested["review"]["share_reviewed"]:.1f}% of patches went to review and the
others were called right {100 * nested["review"]["decided_accuracy"]:.1f}% of the time.
`--review-error` picks another rate (bands for 1% to 20% are stored). Errors on one patient are
not independent: a slide unlike these 32 can fall outside the guarantee.

## Model
{_members_words(info, variant)}Trained on all {info.training["split_sizes"]["all"]:,} patches of the {patients_n} patients,
{info.training["epochs"]} epochs ({figures["training_seconds"] / 60:.1f} min on
{platform.machine()}, TensorFlow {tf.__version__}); {info.training["parameters"]:,} parameters,
{figures["macs"] / 1e6:.1f} M multiply-accumulates per patch,
{figures["onnx_images_per_second"]:,.0f} patches/s in onnxruntime here. ONNX vs Keras max
difference on 500 patches: {figures["onnx_max_difference"]:.1e}. {task.data_summary}.

## License
{info.license}
"""
    )


def _members_words(info: ModelInfo, variant: str) -> str:
    members = info.training.get("members", 1)
    if members == 1:
        return ""
    first = info.training["seed"]
    return (
        f"An ensemble: {members} networks of the same recipe, trained alike from seeds {first} to "
        f"{first + members - 1}, their probabilities averaged inside the one ONNX file (the CV "
        f"row `{variant}` judges exactly this: the mean of as many independently trained fold "
        "models). "
    )


def _context_words(context: SlideContext | None) -> str:
    if context is None:
        return "- Each image is called by its own calibrated probability."
    return (
        f"- A patch with a position (x, y in its name) is called by its slide-context score: the "
        f"weighted mean of its calibrated probability (weight {context.self_weight:g}) and its "
        f"slide neighbours' up to {context.radius} patches away, calibrated in turn. A patch "
        "without a position is called by its own calibrated probability."
    )


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"
