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
from PIL import Image

from patchscan import metrics
from patchscan.imaging import load_rgb
from patchscan.naming import parse_name
from patchscan.report import images, summary
from patchscan.results import TILE
from patchscan_train import cv_report
from patchscan_train.tasks import Task

# Steps beyond which a patch counts as far from the other label (Chebyshev distance, in patches).
FAR = 99


def grid_cells(paths: np.ndarray, task: Task) -> np.ndarray:
    """Each patch's (column, row) on its slide's grid of task.size[0]-pixel patches, from the
    x, y in its name; (-1, -1) for a patch with no position."""
    step = task.size[0]
    names = [parse_name(path, task.classes) for path in paths]
    return np.array(
        [
            (n.x // step, n.y // step) if n.x is not None and n.y is not None else (-1, -1)
            for n in names
        ]
    ).reshape(-1, 2)


def steps_to_other_label(
    paths: np.ndarray, groups: np.ndarray, y: np.ndarray, task: Task
) -> np.ndarray:
    """For each patch, how many grid steps (max of |dx|, |dy|) away the nearest patch of the other
    label on the same slide is: 1 for a patch touching the annotation's outline, FAR where the
    slide has one label only or the patch has no position."""
    cells = grid_cells(paths, task)
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
    paths, groups, y, nested = _nested(oof_path, task, variant)
    scores, called = nested.scores, nested.called
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, cv_report.Decisions]:
    """Paths, groups, truth, and the variant's nested decisions. ValueError when no patch has a
    position on a slide: there is no outline to measure from, nor a slide to draw."""
    with np.load(oof_path) as saved:
        paths, groups, y = saved["paths"], saved["groups"], saved["y"].astype(bool)
        raw = saved[f"oof_{variant}"].astype(np.float64)
    if (grid_cells(paths, task) < 0).all():
        raise ValueError("no patch has a position on a slide (an x, y in its name)")
    fold_of = cv_report.folds_of(groups, cv_report.record_of(oof_path))
    decisions = cv_report.nested_decisions(task, paths, groups, y, raw, fold_of)
    return paths, groups, y, decisions


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


def slide_maps(oof_path: Path, task: Task, variant: str, slides: list[str], out: Path) -> None:
    """A PNG with one row per slide: tissue | annotation | nested score, drawn as the scan's
    report draws a slide (patchscan.report.images.slide_maps: the same colours, the score's
    scale centred on the threshold each patch was decided at), each patch TILE pixels wide."""
    paths, groups, y, nested = _nested(oof_path, task, variant)
    positioned = grid_cells(paths, task)[:, 0] >= 0
    rows = []
    for slide in slides:
        mine = np.flatnonzero((groups == slide) & positioned)
        if not len(mine):
            raise ValueError(f"no positioned patches of patient {slide!r} in {oof_path}")
        maps = images.slide_maps([_tile(paths[i], task, nested, i, bool(y[i])) for i in mine])
        rows.append(
            [_enlarged(maps[name], maps["tissue"]) for name in ("tissue", "truth", "score")]
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _sheet(rows).save(out, optimize=True)


def _tile(path: str, task: Task, nested: cv_report.Decisions, i: int, truth: bool) -> summary.Tile:
    """Patch `i` as the report's slide maps take it."""
    name = parse_name(path, task.classes)
    assert name.x is not None and name.y is not None  # only positioned patches are drawn
    pixels = Image.fromarray(load_rgb(path, task.size)).resize((TILE, TILE))
    return summary.Tile(
        x=name.x,
        y=name.y,
        score=float(nested.scores[i]),
        threshold=float(nested.threshold[i]),
        positive=bool(nested.called[i]),
        review=bool(nested.review[i]),
        truth=truth,
        pixels=np.asarray(pixels),
    )


def _enlarged(pixels: np.ndarray, mosaic: np.ndarray) -> Image.Image:
    """A one-pixel-a-patch map enlarged (each patch a block) to the tissue mosaic's size."""
    size = (mosaic.shape[1], mosaic.shape[0])
    return Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST)


def _sheet(rows: list[list[Image.Image]], gap: int = TILE) -> Image.Image:
    """Rows of panels side by side, `gap` pixels of white between panels and between rows."""
    widths = [sum(p.width for p in row) + gap * (len(row) - 1) for row in rows]
    height = sum(row[0].height for row in rows) + gap * (len(rows) - 1)
    sheet = Image.new("RGB", (max(widths), height), "white")
    top = 0
    for row in rows:
        left = 0
        for panel in row:
            sheet.paste(panel, (left, top))
            left += panel.width + gap
        top += row[0].height + gap
    return sheet
