"""Where the out-of-fold errors lie against the annotation: how far each patch is from a patch of
the other label on its slide, and the CV figures with the patches at the border left out.

The idc labels come from regions a pathologist outlined on each whole slide at low
magnification; a 50x50 patch takes the label of the region it falls in. A patch next to the
outline may hold both tissues, and a region drawn round a core or a field labels its stroma too.
No model can be more right than that line, so this says how much of the CV's error sits on it
(`patchscan-train boundary`), and draws slides as tissue | annotation | score for a person to
judge the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from patchscan import metrics
from patchscan.naming import parse_name
from patchscan_train import cv_report
from patchscan_train.tasks import Task

# Steps beyond which a patch counts as far from the other label (Chebyshev distance, in patches).
FAR = 99


def steps_to_other_label(
    paths: np.ndarray, groups: np.ndarray, y: np.ndarray, task: Task
) -> np.ndarray:
    """For each patch, how many grid steps (max of |dx|, |dy|) away the nearest patch of the other
    label on the same slide is: 1 for a patch touching the annotation's outline, FAR where the
    slide has one label only or the patch has no position."""
    step = task.size[0]
    names = [parse_name(path, task.classes) for path in paths]
    cells = np.array(
        [
            (n.x // step, n.y // step) if n.x is not None and n.y is not None else (-1, -1)
            for n in names
        ]
    )
    out = np.full(len(y), FAR)
    for g in np.unique(groups):
        mine = np.flatnonzero((groups == g) & (cells[:, 0] >= 0))
        for label in (True, False):
            same, other = mine[y[mine] == label], mine[y[mine] != label]
            if len(same) and len(other):
                gaps = np.abs(cells[same, None, :] - cells[None, other, :]).max(axis=2)
                out[same] = np.minimum(gaps.min(axis=1), FAR)
    return out


def loss_weights(
    task: Task, paths: np.ndarray, groups: np.ndarray, y: np.ndarray
) -> np.ndarray | None:
    """Each example's weight in the training loss: task.outline_weight for a patch touching the
    other label, 1 elsewhere; None when the task weighs all alike. A patch's weight depends on
    its own slide's labels only, so the held-out patients never set a training weight."""
    if task.outline_weight == 1.0:
        return None
    return np.where(steps_to_other_label(paths, groups, y, task) == 1, task.outline_weight, 1.0)


def boundary_table(
    oof_path: Path, task: Task, variant: str, beyond: tuple[int, ...] = (1, 2, 3)
) -> dict[str, Any]:
    """The variant's nested figures on every patch and on the patches more than each of `beyond`
    steps from the other label, and where its errors lie by distance."""
    paths, groups, y, scores, called = _nested(oof_path, task, variant)
    steps = steps_to_other_label(paths, groups, y, task)
    rows = {"all patches": _row(y, scores, called, np.ones(len(y), bool))}
    for b in beyond:
        rows[f"more than {b} step{'s' if b > 1 else ''} from the other label"] = _row(
            y, scores, called, steps > b
        )
    wrong = called != y
    by_step = {
        str(d): {"patches": int((steps == d).sum()), "errors": int((wrong & (steps == d)).sum())}
        for d in range(1, max(beyond) + 2)
    }
    farther = steps > max(beyond) + 1
    by_step[f"more than {max(beyond) + 1}"] = {
        "patches": int(farther.sum()),
        "errors": int((wrong & farther).sum()),
    }
    return {"variant": variant, "rows": rows, "errors_by_step": by_step, "errors": int(wrong.sum())}


def _nested(
    oof_path: Path, task: Task, variant: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paths, groups, truth, and the variant's nested deciding scores and calls."""
    with np.load(oof_path) as saved:
        paths, groups, y = saved["paths"], saved["groups"], saved["y"].astype(bool)
        raw = saved[f"oof_{variant}"].astype(np.float64)
    fold_of = cv_report.folds_of(groups, cv_report.record_of(oof_path))
    scores, called, _ = cv_report.nested_decisions(task, paths, groups, y, raw, fold_of)
    return paths, groups, y, scores, called


def _row(y: np.ndarray, scores: np.ndarray, called: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    summary = metrics.summarize(y[keep], called[keep])
    return {
        "patches": int(keep.sum()),
        "positives": int(y[keep].sum()),
        "balanced_accuracy": summary["balanced_accuracy"],
        "f1": summary["f1"],
        "roc_auc": metrics.roc_auc(y[keep], scores[keep]),
        "errors": int((called[keep] != y[keep]).sum()),
    }


def markdown(table: dict[str, Any]) -> str:
    """The table as the model card's markdown."""
    lines = [
        "| which patches | patches | IDC | balanced acc. | F1 | ROC AUC | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in table["rows"].items():
        lines.append(
            f"| {name} | {r['patches']:,} | {r['positives']:,} | {r['balanced_accuracy']:.3f} | "
            f"{r['f1']:.3f} | {r['roc_auc']:.3f} | {r['errors']:,} |"
        )
    steps = ", ".join(
        f"{d}: {v['errors']:,} of {v['patches']:,}" for d, v in table["errors_by_step"].items()
    )
    return "\n".join(lines) + f"\n\nErrors by steps from the other label: {steps}.\n"


def slide_maps(
    oof_path: Path, task: Task, variant: str, slides: list[str], out: Path, cell: int = 6
) -> None:
    """A PNG with one row per slide: its patches as tissue, the annotation (red IDC, blue not)
    and the nested deciding score (blue 0 to red 1), each patch `cell` pixels wide."""
    from PIL import Image

    from patchscan.imaging import load_rgb

    paths, groups, y, scores, _ = _nested(oof_path, task, variant)
    step = task.size[0]
    rows = []
    for slide in slides:
        mine = np.flatnonzero(groups == slide)
        if not len(mine):
            raise ValueError(f"no patient {slide!r} in {oof_path}")
        names = [parse_name(paths[i], task.classes) for i in mine]
        xs = np.array([n.x // step for n in names])
        ys = np.array([n.y // step for n in names])
        width, height = (xs.max() + 1) * cell, (ys.max() + 1) * cell
        panels = [Image.new("RGB", (width, height), "black") for _ in range(3)]
        for i, x, yy in zip(mine, xs, ys, strict=True):
            at = (int(x) * cell, int(yy) * cell)
            tissue = Image.fromarray(load_rgb(paths[i], task.size)).resize((cell, cell))
            panels[0].paste(tissue, at)
            panels[1].paste(
                (220, 30, 30) if y[i] else (40, 60, 220), (*at, at[0] + cell, at[1] + cell)
            )
            red = round(255 * float(scores[i]))
            panels[2].paste((red, 40, 255 - red), (*at, at[0] + cell, at[1] + cell))
        row = Image.new("RGB", (3 * width + 2 * cell, height), "white")
        for k, panel in enumerate(panels):
            row.paste(panel, (k * (width + cell), 0))
        rows.append(row)
    sheet = Image.new(
        "RGB", (max(r.width for r in rows), sum(r.height + cell for r in rows)), "white"
    )
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height + cell
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
