"""<name>.md: what the model is for, what it was trained on, how well it does.

Shipped beside the ONNX file, in tool/patchscan/models/ (package data, so in the wheel too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patchscan.model import ModelInfo
from patchscan_train.tasks import Task


def write_model_card(path: Path, task: Task, info: ModelInfo, results: dict[str, Any]) -> None:
    test, val = results["test"], results["val"]
    per_group = test.get("per_group", {})
    group_lines = "\n".join(
        f"| {name} | {g['n']} | {g['positives']} | {_f(g['balanced_accuracy'])} | {_f(g['roc_auc'])} |"
        for name, g in per_group.items()
    )
    groups_section = (
        "\n## Per held-out patient\n\n| patient | patches | IDC | balanced acc. | ROC AUC |\n"
        f"|---|---|---|---|---|\n{group_lines}\n"
        if per_group
        else ""
    )
    split = results["split"]
    split_text = (
        "\n".join(f"- {k}: {', '.join(v)}" for k, v in split.items())
        if isinstance(split["train"], list)
        else ", ".join(f"{k} {v} images" for k, v in split.items())
    )
    path.write_text(
        f"""# patchscan model `{info.name}` {info.version}

{info.description}. Output: probability of **{info.positive}**; label {info.positive} when
probability ≥ {info.threshold} (threshold {results["threshold_rule"]}).

**Intended use:** research and triage support; it points a person at patches or images worth a
look. **Not a diagnostic device**; not validated on data from other sites, scanners or cameras.

## Data and split
{task.data_summary}. Split {info.training["split"]} (seed {results["seed"]}), no group in two
splits; sizes {results["split_sizes"]}.
{split_text}

## Held-out test results

| metric | validation | test |
|---|---|---|
{chr(10).join(f"| {k} | {_f(val[k])} | {_f(test[k])} |" for k in ("accuracy", "balanced_accuracy", "roc_auc", "precision", "recall", "f1"))}

Confusion matrix (test; rows true {info.classes[0]}, {info.classes[1]}; columns predicted):
{test["confusion_matrix"]}
{groups_section}{_context_section(info, results)}
## Model
{_first_sentence(task.build.__doc__)} Input {info.input_size[0]}x{info.input_size[1]} RGB scaled
to [0, 1] (patchscan.imaging).{_views_sentence(info)}{_teacher_sentence(task)}
{results["parameters"]:,} parameters, {results["macs"] / 1e6:.1f} M multiply-accumulates per image,
{results["onnx_images_per_second"]:,.0f} images/s in onnxruntime on the training machine (batch 64).
Trained {results["epochs_run"]} epochs in {results["training_seconds"] / 60:.1f} min on
{results["machine"]} (TensorFlow {results["tensorflow"]}). ONNX vs Keras max difference on 500
test images: {results.get("onnx_max_difference", float("nan")):.1e}.

## License
{info.license}
"""
    )


def _context_section(info: ModelInfo, results: dict[str, Any]) -> str:
    """How `patchscan scan` labels a slide's patches (patchscan.context), and how well."""
    context = info.context
    if context is None:
        return ""
    val, test = results["val_context"], results["test_context"]
    rows = "\n".join(
        f"| {k} | {_f(val[k])} | {_f(test[k])} |"
        for k in ("accuracy", "balanced_accuracy", "roc_auc", "precision", "recall", "f1")
    )
    return f"""
## With slide context (what `patchscan scan` reports for a slide's patches)
A patch whose name gives its position (x, y) is labelled by the weighted mean of its probability
(weight {context.self_weight:g}) and those of the patches of its slide up to {context.radius} steps
({context.step} px each) away, at threshold {context.threshold} (chosen on validation by the same
rule). Patches without a position are labelled by their own probability, as above.

| metric | validation | test |
|---|---|---|
{rows}

Confusion matrix (test): {test["confusion_matrix"]}
"""


def _views_sentence(info: ModelInfo) -> str:
    if info.views == 1:
        return ""
    return (
        f"\nEach image's probability is the mean over its {info.views} flips and right-angle rotations"
        " (inside the ONNX graph); every figure here, speed included, is of that mean."
    )


def _teacher_sentence(task: Task) -> str:
    if task.teacher is None:
        return ""
    return (
        f"\nTrained towards the mean of each label and the probability that {task.teacher.stem}"
        " (an earlier, bigger model) gives the same augmented image."
    )


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _first_sentence(docstring: str | None) -> str:
    """The architecture's one-line summary, from its builder's docstring (nets.py)."""
    return " ".join((docstring or "").split("\n\n")[0].split())


CALIBRATION_HEADING = "## Calibration and review band"


def write_calibration_section(path: Path, figures: dict[str, Any]) -> None:
    """Put (or replace) the card's calibration section: what the probabilities mean and what
    the review band guarantees, in plain words, with the test split's figures."""
    val, test = figures["val"], figures["test"]
    band = test["review"]["band"]
    section = f"""{CALIBRATION_HEADING}

Probabilities are calibrated (Platt scaling, a = {figures["calibration"][0]:.3f},
b = {figures["calibration"][1]:.3f}, fitted on the validation split): of the images given 0.8, about
80% are positive. Expected calibration error on the test split: {test["ece_raw"]:.3f} before,
{test["ece"]:.3f} after (validation {val["ece"]:.3f}). The threshold, in calibrated units, is
{figures["threshold"]:.4f}: the same calls as before.

**Needs review.** A call whose calibrated probability lies in [{band[0]:.3f}, {band[1]:.3f}) is
marked `review = yes` in the CSV: on the validation split, the calls outside that band were wrong
at most 5% of the time (95% confidence; `--review-error` picks another rate). On the held-out test
split, {100 * test["review"]["share_reviewed"]:.1f}% of images fell in the band and the others
were called right {100 * test["review"]["decided_accuracy"]:.1f}% of the time.
"""
    text = path.read_text()
    if CALIBRATION_HEADING in text:
        before, _, after = text.partition(CALIBRATION_HEADING)
        rest = after.split("\n## ", 1)
        text = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
