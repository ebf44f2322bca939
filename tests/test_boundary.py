"""Where the CV's errors lie against the annotation's outline (patchscan-train boundary)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from PIL import Image

from patchscan.imaging import load_rgb
from patchscan.report import images
from patchscan.results import TILE
from patchscan_train.boundary import (
    FAR,
    boundary_table,
    slide_maps,
    steps_to_other_label,
)
from patchscan_train.tasks import TASKS

IDC = TASKS["idc"]
SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples" / "idc"


def patch(patient: str, x: int, y: int, label: int) -> str:
    return f"{patient}/{label}/{patient}_idx5_x{x * 50}_y{y * 50}_class{label}.png"


def test_steps_count_to_the_nearest_patch_of_the_other_label_on_the_same_slide() -> None:
    strip = [("a", x, 0, int(x >= 2)) for x in range(5)]  # 0 0 1 1 1
    diagonal = [("a", 4, 3, 0)]  # 3 steps below the last 1: max(|dx|, |dy|) = 3
    one_label = [("b", x, 0, 1) for x in range(3)]  # a slide of IDC only
    rows = strip + diagonal + one_label
    paths = np.array([patch(*row) for row in rows])
    groups = np.array([row[0] for row in rows])
    y = np.array([row[3] for row in rows], bool)
    steps = steps_to_other_label(paths, groups, y, IDC)
    assert steps.tolist() == [2, 1, 1, 2, 3, 3, FAR, FAR, FAR]


def synthetic_cv(folder: Path, patients: int = 8, side: int = 24) -> Path:
    """OOF scores of `patients` slides, each a side x side grid, IDC in its left half: right
    (0.05 / 0.95) everywhere except the two columns either side of the outline, which score the
    other way; one patient per fold."""
    rows = []
    for p in range(patients):
        for x in range(side):
            for y in range(side):
                label = int(x < side // 2)
                wrong = x in (side // 2 - 1, side // 2)
                score = 0.95 if label != wrong else 0.05
                rows.append((patch(f"p{p}", x, y, label), f"p{p}", label, score))
    paths, groups, labels, scores = (np.array(column) for column in zip(*rows, strict=True))
    folder.mkdir(parents=True)
    np.savez_compressed(
        folder / "oof.npz",
        paths=paths,
        groups=groups,
        y=labels.astype(np.int64),
        oof_plain=scores.astype(np.float32),
    )
    record = {"folds": [[f"p{p}"] for p in range(patients)], "epochs": 1}
    (folder / "cv.json").write_text(json.dumps(record))
    return folder / "oof.npz"


def test_the_table_leaves_out_the_outline_and_counts_errors_by_distance(tmp_path: Path) -> None:
    # Without slide context, which would outvote a wrong column with its right neighbours.
    patch_alone = dataclasses.replace(IDC, context=None)
    table = boundary_table(synthetic_cv(tmp_path / "cv"), patch_alone, "plain")
    rows, by_step = table["rows"], table["errors_by_step"]
    assert rows["all patches"]["patches"] == 8 * 24 * 24
    assert by_step["1"]["patches"] == 8 * 2 * 24  # the two columns touching the outline
    assert by_step["1"]["errors"] == 8 * 2 * 24  # all of them wrong
    assert sum(step["errors"] for step in by_step.values()) == table["errors"]
    away = rows["more than 1 step from the other label"]
    assert away["patches"] == 8 * 22 * 24
    assert away["errors"] == table["errors"] - by_step["1"]["errors"]
    assert away["f1"] > rows["all patches"]["f1"] and away["roc_auc"] == pytest.approx(1.0)


def test_slide_maps_draw_tissue_annotation_and_score_as_the_report_does(tmp_path: Path) -> None:
    one = np.array(sorted(str(p) for p in SAMPLES.glob("9035/*/*.png")))
    y = np.array(["class1" in p for p in one])
    # The choices need other folds' scores: the same slide again under a second name.
    paths = np.concatenate([one, [p.replace("/9035/", "/copy/") for p in one]])
    groups = np.repeat(["9035", "copy"], len(one))
    scores = np.tile(np.where(y, 0.9, 0.1), 2).astype(np.float32)
    folder = tmp_path / "cv"
    folder.mkdir()
    np.savez_compressed(
        folder / "oof.npz", paths=paths, groups=groups, y=np.tile(y, 2), oof_plain=scores
    )
    (folder / "cv.json").write_text(json.dumps({"folds": [["9035"], ["copy"]], "epochs": 1}))

    patch_alone = dataclasses.replace(IDC, context=None)  # so every call follows its own score
    slide_maps(folder / "oof.npz", patch_alone, "plain", ["9035"], tmp_path / "map.png")
    xs = np.array([int(p.split("_x")[1].split("_")[0]) for p in one])
    ys = np.array([int(p.split("_y")[1].split("_")[0]) for p in one])
    cols, rows = (xs - xs.min()) // 50, (ys - ys.min()) // 50  # the samples' grid is 50 px
    width, height = (cols.max() + 1) * TILE, (rows.max() + 1) * TILE
    image = np.asarray(Image.open(tmp_path / "map.png").convert("RGB"))
    assert image.shape[:2] == (height, 3 * width + 2 * TILE)  # tissue | annotation | score
    for path, col, row, positive in zip(one, cols, rows, y, strict=True):
        tissue = Image.fromarray(load_rgb(path, IDC.size)).resize((TILE, TILE))
        block = image[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
        np.testing.assert_array_equal(block, np.asarray(tissue))  # the patch, in its place
        top, left = row * TILE + 1, col * TILE + 1
        assert tuple(image[top, width + TILE + left]) == images.TRUTH_COLOURS[bool(positive)]
        score = image[top, 2 * (width + TILE) + left].astype(int)
        assert (score[0] > score[2]) == positive  # warm where called IDC, as in the report
    with pytest.raises(ValueError, match="patient 'nobody'"):
        slide_maps(folder / "oof.npz", IDC, "plain", ["nobody"], tmp_path / "x.png")


def test_the_command_prints_the_table_and_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from patchscan_train.cli import main

    oof = synthetic_cv(tmp_path / "cv")
    result = CliRunner().invoke(main, ["boundary", "idc", "--oof", str(oof)])
    assert result.exit_code == 0, result.output
    assert "| more than 1 step from the other label | 4,224 |" in result.output
    unplaced = tmp_path / "unplaced"
    unplaced.mkdir()
    saved = dict(np.load(oof))
    saved["paths"] = np.array([p.split("_idx5")[0] + ".png" for p in saved["paths"]])
    np.savez_compressed(unplaced / "oof.npz", **saved)
    (unplaced / "cv.json").write_text((oof.parent / "cv.json").read_text())
    nowhere = CliRunner().invoke(main, ["boundary", "idc", "--oof", str(unplaced / "oof.npz")])
    assert nowhere.exit_code == 1 and "no patch has a position on a slide" in nowhere.output
    alone = CliRunner().invoke(main, ["boundary", "idc", "--oof", str(oof), "--slides", "p0"])
    assert alone.exit_code == 2 and "--slides and --figure go together" in alone.output
    missing = CliRunner().invoke(main, ["boundary", "idc", "--oof", str(oof), "--variant", "x"])
    assert missing.exit_code == 1 and "oof_x" in missing.output


def test_light_outline_weighs_the_outline_a_quarter_in_the_training_loss() -> None:
    from patchscan_train.boundary import loss_weights
    from patchscan_train.cv import LIGHT_OUTLINE, recipe
    from patchscan_train.train import FitSettings, training_dataset

    rows = [("a", x, 0, int(x >= 2)) for x in range(5)]  # 0 0 1 1 1: x = 1, 2 on the outline
    paths = np.array([patch(*row) for row in rows])
    groups = np.array([row[0] for row in rows])
    y = np.array([row[3] for row in rows])
    assert loss_weights(IDC, paths, groups, y) is None  # plain weighs all alike
    weights = loss_weights(recipe(IDC, "light-outline"), paths, groups, y)
    assert weights is not None and weights.tolist() == [1, LIGHT_OUTLINE, LIGHT_OUTLINE, 1, 1]

    settings = FitSettings(epochs=1, batch_size=5, learning_rate=1e-3, patience=1, seed=0)
    images = np.zeros((5, 50, 50, 3), np.uint8)
    batch = next(iter(training_dataset(images, y, settings, lambda x: x, weights)))
    labels, loss_weight = batch[1].numpy(), batch[2].numpy()
    per_class = np.where(labels > 0.5, 0.5 / 0.6, 0.5 / 0.4)  # 3 of 5 positive
    assert sorted((loss_weight / per_class).round(6).tolist()) == [0.25, 0.25, 1, 1, 1]
