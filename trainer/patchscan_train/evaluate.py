"""The evaluation a pathologist expects, written for every run: metrics.json, plots, report.html."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from patchscan import metrics


def evaluate(
    y: np.ndarray, scores: np.ndarray, threshold: float, groups: Sequence[str] | None = None
) -> dict[str, Any]:
    """All metrics at `threshold`, plus per-group (per-patient) results when groups are given."""
    predicted = scores >= threshold
    result: dict[str, Any] = {
        **metrics.summarize(y, predicted),
        "roc_auc": metrics.roc_auc(y, scores),
        "threshold": threshold,
        "confusion_matrix": metrics.confusion(y, predicted),
        "per_class": metrics.per_class(y, predicted),
    }
    if groups is not None:
        names = np.asarray(groups)
        result["per_group"] = {
            name: {
                **metrics.summarize(y[names == name], predicted[names == name]),
                "roc_auc": metrics.roc_auc(y[names == name], scores[names == name]),
                "positives": int(y[names == name].sum()),
            }
            for name in sorted(set(groups))
        }
    return result


def write_run_report(
    folder: Path,
    title: str,
    history: dict[str, list[float]],
    results: dict[str, Any],
    test: tuple[np.ndarray, np.ndarray],
    classes: tuple[str, str],
) -> None:
    """metrics.json, curves.png, roc.png, confusion.png and a report.html that shows them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(results, indent=2, default=float))
    _plot_curves(history, folder / "curves.png")
    _plot_roc(test[0], test[1], folder / "roc.png")
    _plot_confusion(results["test"]["confusion_matrix"], classes, folder / "confusion.png")
    (folder / "report.html").write_text(_report_html(title, results, folder, classes))


def _plot_curves(history: dict[str, list[float]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy", "auc"), strict=True):
        epochs = range(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label="train")
        ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_roc(y: np.ndarray, scores: np.ndarray, path: Path) -> None:
    fpr, tpr, _ = metrics.roc_curve(y, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot(fpr, tpr, label=f"AUC {metrics.roc_auc(y, scores):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, held-out test set")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_confusion(matrix: list[list[int]], classes: tuple[str, str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(matrix, cmap="Blues")
    for row in range(2):
        for col in range(2):
            ax.text(col, row, str(matrix[row][col]), ha="center", va="center", fontsize=13)
    ax.set_xticks([0, 1], [f"pred. {c}" for c in classes])
    ax.set_yticks([0, 1], [f"true {c}" for c in classes])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _report_html(
    title: str, results: dict[str, Any], folder: Path, classes: tuple[str, str]
) -> str:
    def image(name: str) -> str:
        data = base64.b64encode((folder / name).read_bytes()).decode()
        return f'<img alt="{name}" src="data:image/png;base64,{data}">'

    keys = ("n", "accuracy", "balanced_accuracy", "roc_auc", "precision", "recall", "f1")
    splits = {"val": "val", "test": "test"}
    splits.update(
        {k: k.replace("_", ", slide ") for k in ("val_context", "test_context") if k in results}
    )
    rows = "".join(
        f"<tr><th>{name}</th>" + "".join(f"<td>{_fmt(results[split].get(k))}</td>" for k in keys)
        for split, name in splits.items()
    )
    per_class = "".join(
        f"<tr><th>{html.escape(classes[int(c)])}</th>"
        + "".join(f"<td>{_fmt(v[k])}</td>" for k in ("precision", "recall", "f1", "support"))
        + "</tr>"
        for c, v in results["test"]["per_class"].items()
    )
    groups = results["test"].get("per_group", {})
    group_rows = "".join(
        f"<tr><th>{html.escape(g)}</th>"
        + "".join(f"<td>{_fmt(v.get(k))}</td>" for k in ("n", "positives", *keys[1:]))
        + "</tr>"
        for g, v in groups.items()
    )
    group_table = (
        "<h2>Per patient (test)</h2><table><tr><th>patient</th><th>n</th><th>positives</th>"
        + "".join(f"<th>{k}</th>" for k in keys[1:])
        + f"</tr>{group_rows}</table>"
        if groups
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Threshold {results["threshold"]:.3f} ({html.escape(results["threshold_rule"])}).
Training time {results["training_seconds"] / 60:.1f} min.</p>
<h2>Metrics</h2><table><tr><th>split</th>{"".join(f"<th>{k}</th>" for k in keys)}</tr>{rows}</table>
<h2>Per class (test)</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>
<th>support</th></tr>{per_class}</table>
{image("confusion.png")} {image("roc.png")}
<h2>Training curves</h2>{image("curves.png")}
{group_table}
</body></html>"""
